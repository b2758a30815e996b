//! The notifications API — the same contract as the monolith's notifications app:
//!
//! | method, path | who | answer |
//! |---|---|---|
//! | `POST /api/notifications/` `{user_id, kind, message}` | a caller with role `service` or `admin` | 201 `{id, user_id, kind, message, created_at}` |
//! | `GET /api/notifications/` | any caller | 200, the caller's notifications, newest first |
//! | `GET /api/notifications/?user_id=U` | role `admin` (or U is the caller) | 200, U's notifications |
//!
//! Errors: 401 without identity, 403 without the role, 415/400/422 for bad bodies.
//! (`GET /healthz` and `GET /metrics` are the shell's, `service_kit::shell`.)

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::Value;
use service_kit::identity::is_valid_subject;
use service_kit::store::Stored;
use service_kit::{Caller, FieldError, JsonBody, Problem};

use crate::AppState;
use crate::store::Notification;

/// Roles allowed to create notifications for any user (the service-to-service API).
pub const SERVICE_ROLES: &[&str] = &["service", "admin"];
const MAX_KIND: usize = 64;
const MAX_MESSAGE: usize = 2000;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Stored<Notification>>>, Problem> {
    let user_id = match query.get("user_id") {
        None => caller.subject.as_str(),
        Some(other) if *other == caller.subject => other.as_str(),
        Some(other) if caller.has_role("admin") => other.as_str(),
        Some(_) => {
            return Err(Problem::forbidden(
                "only admins may read another user's notifications",
            ));
        }
    };
    Ok(Json(state.store.for_user(user_id)))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<Stored<Notification>>), Problem> {
    if !caller.has_any_role(SERVICE_ROLES) {
        return Err(Problem::forbidden(
            "requires one of the roles: service, admin",
        ));
    }
    let new = validate(&body).map_err(Problem::validation)?;
    let created = state.store.add(new);
    tracing::info!(
        notification_id = created.id,
        user_id = %created.record.user_id,
        kind = %created.record.kind,
        by = %caller.subject,
        "notification stored"
    );
    Ok((StatusCode::CREATED, Json(created)))
}

/// The body's fields, or every complaint about them (DRF's messages, for parity).
pub fn validate(body: &Value) -> Result<Notification, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("", "expected a JSON object")]);
    };
    let mut errors = Vec::new();
    let mut text = |name: &str, max: usize| -> Option<String> {
        match object.get(name) {
            None | Some(Value::Null) => {
                errors.push(FieldError::new(name, "This field is required."))
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                errors.push(FieldError::new(name, "This field may not be blank."));
            }
            Some(Value::String(s)) if s.chars().count() > max => {
                errors.push(FieldError::new(
                    name,
                    format!("Ensure this field has no more than {max} characters."),
                ));
            }
            Some(Value::String(s)) => return Some(s.trim().to_string()),
            Some(_) => errors.push(FieldError::new(name, "Not a valid string.")),
        }
        None
    };
    let user_id = text("user_id", 128);
    let kind = text("kind", MAX_KIND);
    let message = text("message", MAX_MESSAGE);
    if let Some(u) = &user_id
        && !is_valid_subject(u)
    {
        errors.push(FieldError::new(
            "user_id",
            "This value does not match the required pattern.",
        ));
    }
    match (user_id, kind, message) {
        (Some(user_id), Some(kind), Some(message)) if errors.is_empty() => Ok(Notification {
            user_id,
            kind,
            message,
        }),
        _ => Err(errors),
    }
}
