//! notifications: handler tests through `app()` with `oneshot` (no server), and one test of the
//! real binary on an ephemeral port.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use notifications::{AppState, app};
use serde_json::{Value, json};
use service_kit::TrustedPeers;
use service_kit::testing::{Binary, Resp, logged_messages, request};

const ALICE: &str = "3f0c8a4e-0000-4000-8000-00000000a11c";
const BOB: &str = "3f0c8a4e-0000-4000-8000-000000000b0b";
const GATEWAY: &str = "127.0.0.1:50000";

/// (name, headers, peer) of a request expected to be rejected.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

fn state() -> AppState {
    AppState::new(100, TrustedPeers::loopback()).unwrap()
}

async fn send(state: &AppState, req: Request<Body>) -> Resp {
    service_kit::testing::send(app(state.clone()), req).await
}

/// `GET uri` from the gateway with `headers`.
async fn get(state: &AppState, uri: &str, headers: &[(&str, &str)]) -> Resp {
    send(state, request("GET", uri, headers, None, Some(GATEWAY))).await
}

/// `POST /api/notifications/` from the gateway with `headers` and `body`.
async fn post(state: &AppState, headers: &[(&str, &str)], body: Option<Value>) -> Resp {
    send(
        state,
        request("POST", "/api/notifications/", headers, body, Some(GATEWAY)),
    )
    .await
}

fn service() -> Vec<(&'static str, &'static str)> {
    vec![
        ("x-user-id", "service:monolith"),
        ("x-user-roles", "service"),
    ]
}

async fn create(state: &AppState, user: &str, message: &str) -> Resp {
    let body = json!({"user_id": user, "kind": "order_placed", "message": message});
    post(state, &service(), Some(body)).await
}

#[tokio::test]
async fn create_returns_201_with_the_stored_notification() {
    let state = state();
    let resp = create(&state, ALICE, "Order #1 placed").await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    assert_eq!(resp.body["id"], 1);
    assert_eq!(resp.body["user_id"], ALICE);
    assert_eq!(resp.body["kind"], "order_placed");
    assert_eq!(resp.body["message"], "Order #1 placed");
    let created_at = resp.body["created_at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(created_at).is_ok(), "{created_at}");
    assert_eq!(resp.headers["x-served-by"], "notifications");
    assert_eq!(state.store.len(), 1);
}

#[tokio::test]
async fn list_shows_the_callers_notifications_newest_first() {
    let state = state();
    create(&state, ALICE, "first").await;
    create(&state, BOB, "bob's").await;
    create(&state, ALICE, "second").await;
    let resp = get(&state, "/api/notifications/", &[("x-user-id", ALICE)]).await;
    assert_eq!(resp.status, StatusCode::OK);
    let messages: Vec<&str> = resp
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["second", "first"]);
}

#[tokio::test]
async fn admins_may_read_anyone_and_others_may_not() {
    let state = state();
    create(&state, BOB, "for bob").await;
    let uri = format!("/api/notifications/?user_id={BOB}");
    let admin = get(
        &state,
        &uri,
        &[("x-user-id", ALICE), ("x-user-roles", "user,admin")],
    )
    .await;
    assert_eq!(admin.status, StatusCode::OK);
    assert_eq!(admin.body[0]["message"], "for bob");
    let user = get(
        &state,
        &uri,
        &[("x-user-id", ALICE), ("x-user-roles", "user")],
    )
    .await;
    assert_eq!(user.status, StatusCode::FORBIDDEN);
    assert_eq!(user.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn identity_is_required_and_believed_only_from_trusted_peers() {
    let state = state();
    create(&state, ALICE, "secret").await;
    let cases: [Case; 4] = [
        ("no identity", &[], Some(GATEWAY)),
        (
            "untrusted peer",
            &[("x-user-id", ALICE)],
            Some("10.1.2.3:4000"),
        ),
        ("no connect info", &[("x-user-id", ALICE)], None),
        (
            "malformed subject",
            &[("x-user-id", "has space")],
            Some(GATEWAY),
        ),
    ];
    for (name, headers, peer) in cases {
        let mut headers = headers.to_vec();
        headers.push(("x-request-id", "rid-401"));
        let resp = send(
            &state,
            request("GET", "/api/notifications/", &headers, None, peer),
        )
        .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            resp.headers["content-type"], "application/problem+json",
            "{name}"
        );
        assert_eq!(
            resp.headers["www-authenticate"], "Bearer realm=\"api\"",
            "{name}"
        );
        assert_eq!(
            resp.body["type"], "urn:problem-type:notifications:unauthorized",
            "{name}"
        );
        assert_eq!(resp.body["request_id"], "rid-401", "{name}");
    }
    // IPv6 loopback and IPv4-mapped loopback are trusted by default.
    for peer in ["[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
        let resp = send(
            &state,
            request(
                "GET",
                "/api/notifications/",
                &[("x-user-id", ALICE)],
                None,
                Some(peer),
            ),
        )
        .await;
        assert_eq!(resp.status, StatusCode::OK, "{peer}");
    }
    // A configured network is trusted.
    let wide = AppState::new(10, TrustedPeers::parse("10.0.0.0/8").unwrap()).unwrap();
    let resp = send(
        &wide,
        request(
            "GET",
            "/api/notifications/",
            &[("x-user-id", ALICE)],
            None,
            Some("10.1.2.3:4000"),
        ),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn only_services_and_admins_may_create() {
    let state = state();
    let body = json!({"user_id": BOB, "kind": "promo", "message": "hi"});
    let user = post(
        &state,
        &[("x-user-id", ALICE), ("x-user-roles", "user")],
        Some(body.clone()),
    )
    .await;
    assert_eq!(user.status, StatusCode::FORBIDDEN);
    let anonymous = post(&state, &[], Some(body.clone())).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let admin = post(
        &state,
        &[("x-user-id", ALICE), ("x-user-roles", "admin")],
        Some(body),
    )
    .await;
    assert_eq!(admin.status, StatusCode::CREATED);
    assert_eq!(state.store.len(), 1);
}

#[tokio::test]
async fn invalid_bodies_are_problems() {
    let state = state();
    let long = "x".repeat(2001);
    let cases = [
        (json!({"kind": "k", "message": "m"}), vec!["user_id"]),
        (
            json!({"user_id": "bad id", "kind": "k", "message": "m"}),
            vec!["user_id"],
        ),
        (
            json!({"user_id": BOB, "kind": "", "message": "m"}),
            vec!["kind"],
        ),
        (
            json!({"user_id": BOB, "kind": "k", "message": long}),
            vec!["message"],
        ),
        (
            json!({"user_id": 5, "kind": "k"}),
            vec!["user_id", "message"],
        ),
    ];
    for (body, fields) in cases {
        let resp = post(&state, &service(), Some(body.clone())).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(resp.error_fields(), fields, "{body}");
    }
    let mut malformed = request(
        "POST",
        "/api/notifications/",
        &service(),
        None,
        Some(GATEWAY),
    );
    malformed
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    *malformed.body_mut() = Body::from("{not json");
    assert_eq!(
        send(&state, malformed).await.status,
        StatusCode::BAD_REQUEST
    );
    let no_type = post(&state, &service(), None).await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(state.store.is_empty());
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_made_otherwise() {
    let state = state();
    let kept = send(
        &state,
        request(
            "GET",
            "/healthz",
            &[("x-request-id", "rid-abc.1_X")],
            None,
            None,
        ),
    )
    .await;
    assert_eq!(kept.status, StatusCode::OK);
    assert_eq!(kept.body, json!({"status": "ok"}));
    assert_eq!(kept.headers["x-request-id"], "rid-abc.1_X");
    for bad in ["has space", &"x".repeat(129)] {
        let made = send(
            &state,
            request("GET", "/healthz", &[("x-request-id", bad)], None, None),
        )
        .await;
        let id = made.headers["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems_and_metrics_count_requests() {
    let state = state();
    let missing = send(
        &state,
        request("GET", "/nope", &[("x-request-id", "rid-404")], None, None),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["request_id"], "rid-404");
    assert_eq!(missing.headers["x-served-by"], "notifications");
    let wrong = send(
        &state,
        request("DELETE", "/api/notifications/", &[], None, None),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers["content-type"], "application/problem+json");
    create(&state, ALICE, "m").await;

    let metrics = send(&state, request("GET", "/metrics", &[], None, None)).await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains(r#"notifications_http_requests_total{method="POST",route="/api/notifications/",status="201"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"notifications_http_requests_total{method="GET",route="unmatched",status="404"} 1"#
        ),
        "{text}"
    );
}

/// The real binary: the ready line, the API over TCP (the peer is really 127.0.0.1), the request
/// id in the JSON logs, and a clean stop on SIGTERM.
#[tokio::test]
async fn the_binary_serves_logs_the_request_id_and_stops_on_sigterm() {
    let svc = Binary::start(
        "notifications",
        env!("CARGO_BIN_EXE_notifications"),
        |cmd, addr| {
            cmd.args(["--listen", addr]).env_remove("TRUSTED_GATEWAYS");
        },
    )
    .await;
    let (port, base) = (svc.port, &svc.base);
    assert!(
        svc.proc.stdout().contains(&format!(
            "notifications listening on http://127.0.0.1:{port}"
        )),
        "{}",
        svc.proc.stdout()
    );

    let client = testkit::http_client();
    let created = client
        .post(format!("{base}/api/notifications/"))
        .header("x-user-id", "service:monolith")
        .header("x-user-roles", "service")
        .header("x-request-id", "rid-binary-1")
        .json(&json!({"user_id": ALICE, "kind": "order_placed", "message": "Order #9 placed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-request-id"], "rid-binary-1");
    let listed: Value = client
        .get(format!("{base}/api/notifications/"))
        .header("x-user-id", ALICE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["message"], "Order #9 placed");

    let messages = testkit::eventually(
        "the request id in the JSON logs",
        Duration::from_secs(5),
        || {
            let messages = logged_messages(&svc.proc.stderr(), "rid-binary-1");
            async move { (messages.len() >= 2).then_some(messages) }
        },
    )
    .await;
    assert!(
        messages.iter().any(|m| m == "notification stored"),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m == "request completed"),
        "{messages:?}"
    );

    svc.stop().await;
}

/// The binary continues the caller's W3C trace: its server span (exported over OTLP/gRPC to a
/// real receiver) is a child of the caller's span, and its log lines carry the request id and
/// the trace id.
#[tokio::test]
async fn the_binary_continues_the_callers_trace_and_logs_the_request_id() {
    let receiver = testkit::otlp::OtlpReceiver::start().await;
    let svc = Binary::start(
        "notifications",
        env!("CARGO_BIN_EXE_notifications"),
        |cmd, addr| {
            cmd.args(["--listen", addr])
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint())
                .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL");
        },
    )
    .await;
    let created = testkit::http_client()
        .post(format!("{}/api/notifications/", svc.base))
        .header("x-user-id", "service:monolith")
        .header("x-user-roles", "service")
        .header("x-request-id", "rid-trace-1")
        .header("traceparent", testkit::otlp::CALLER_TRACEPARENT)
        .json(&json!({"user_id": ALICE, "kind": "order_placed", "message": "traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    testkit::otlp::assert_continued_caller_trace(
        &receiver,
        &svc.proc,
        "notifications",
        "rid-trace-1",
    )
    .await;
}
