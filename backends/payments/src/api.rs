//! The payments API — the same contract as the monolith's payments app:
//!
//! | method, path | who | answer |
//! |---|---|---|
//! | `POST /api/payments/` `{order_id, amount}` | any caller | 201 `{id, order_id, amount, status: "captured", served_by: "payments-service", created_at}` |
//! | `GET /api/payments/` | any caller | 200, the caller's payments, newest first |
//!
//! `amount` is a decimal with at most two places, given as a string ("12.50") or a number, and
//! answered as a string, like the monolith. Errors: 401 without identity, 415/400/422 for bad
//! bodies (422 lists `errors: [{field, message}]` with the monolith's messages).
//! (`GET /healthz` and `GET /metrics` are the shell's, `service_kit::shell`.)

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use service_kit::store::Stored;
use service_kit::{Caller, FieldError, JsonBody, Problem};

use crate::AppState;
use crate::store::{Cents, Payment};

/// DRF's DecimalField(max_digits=12, decimal_places=2): at most 10 digits before the point.
const MAX_INTEGER_DIGITS: usize = 10;

pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<Vec<Stored<Payment>>> {
    Json(state.store.for_user(&caller.subject))
}

pub async fn capture(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<Stored<Payment>>), Problem> {
    let (order_id, amount) = validate(&body).map_err(Problem::validation)?;
    let payment = state
        .store
        .add(Payment::captured(&caller.subject, order_id, amount));
    tracing::info!(
        payment_id = payment.id,
        order_id,
        amount = %amount,
        user_id = %caller.subject,
        "payment captured"
    );
    Ok((StatusCode::CREATED, Json(payment)))
}

/// `(order_id, amount)`, or every complaint about the body.
pub fn validate(body: &Value) -> Result<(u64, Cents), Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("", "expected a JSON object")]);
    };
    let mut errors = Vec::new();
    let order_id = match object.get("order_id") {
        None | Some(Value::Null) => Err("This field is required.".to_string()),
        Some(value) => parse_order_id(value),
    }
    .map_err(|m| errors.push(FieldError::new("order_id", m)))
    .ok();
    let amount = match object.get("amount") {
        None | Some(Value::Null) => Err("This field is required.".to_string()),
        Some(value) => parse_amount(value),
    }
    .map_err(|m| errors.push(FieldError::new("amount", m)))
    .ok();
    match (order_id, amount) {
        (Some(order_id), Some(amount)) => Ok((order_id, amount)),
        _ => Err(errors),
    }
}

fn parse_order_id(value: &Value) -> Result<u64, String> {
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        None => Err("A valid integer is required.".into()),
        Some(id) if id < 1 => Err("Ensure this value is greater than or equal to 1.".into()),
        Some(id) => u64::try_from(id).map_err(|_| "A valid integer is required.".into()),
    }
}

/// "12.5", "12.50", 12.5, 12 → 1250 cents; more than two decimal places, signs other than a
/// leading minus, exponents and non-positive amounts are refused.
pub fn parse_amount(value: &Value) -> Result<Cents, String> {
    const INVALID: &str = "A valid number is required.";
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err(INVALID.into()),
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(INVALID.into());
    }
    // Trailing zeros past two places do not change the value (12.500 == 12.50).
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 2 {
        return Err("Ensure that there are no more than 2 decimal places.".into());
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > MAX_INTEGER_DIGITS {
        return Err(format!(
            "Ensure that there are no more than {MAX_INTEGER_DIGITS} digits before the decimal point."
        ));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| INVALID.to_string())?
    };
    let fraction: i64 = format!("{fraction:0<2}")
        .parse()
        .map_err(|_| INVALID.to_string())?;
    let cents = whole * 100 + fraction;
    if negative || cents < 1 {
        return Err("Ensure this value is greater than or equal to 0.01.".into());
    }
    Ok(Cents(cents))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn amounts_parse_like_the_monoliths_decimal_field() {
        for (input, cents) in [
            (json!("12.50"), 1250),
            (json!("12.5"), 1250),
            (json!(12.5), 1250),
            (json!(7), 700),
            (json!("0.01"), 1),
            (json!(".5"), 50),
            (json!("12.500"), 1250),
            (json!("9999999999.99"), 999_999_999_999),
        ] {
            assert_eq!(parse_amount(&input), Ok(Cents(cents)), "{input}");
        }
        for input in [
            json!("0"),
            json!("-5"),
            json!("1.001"),
            json!("abc"),
            json!("1e3"),
            json!(""),
            json!("."),
            json!("+1"),
            json!(true),
            json!("12345678901.00"),
        ] {
            assert!(parse_amount(&input).is_err(), "{input} must be refused");
        }
    }

    #[test]
    fn order_ids_are_positive_integers() {
        assert_eq!(parse_order_id(&json!(7)), Ok(7));
        assert_eq!(parse_order_id(&json!("7")), Ok(7));
        assert!(parse_order_id(&json!(0)).is_err());
        assert!(parse_order_id(&json!(1.5)).is_err());
        assert!(parse_order_id(&json!("x")).is_err());
    }
}
