//! payments: handler tests through `app()` with `oneshot` (no server), and one test of the real
//! binary on an ephemeral port.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use payments::{AppState, app};
use serde_json::{Value, json};
use service_kit::TrustedPeers;
use service_kit::testing::{Binary, Resp, logged_messages};

const ALICE: &str = "3f0c8a4e-0000-4000-8000-00000000a11c";
const BOB: &str = "3f0c8a4e-0000-4000-8000-000000000b0b";
const GATEWAY: &str = "127.0.0.1:50000";

fn state() -> AppState {
    AppState::new(100, TrustedPeers::loopback()).unwrap()
}

/// A request from `peer` with request id `rid-test`, as `user` (role `user`) when given.
fn request(
    method: &str,
    uri: &str,
    user: Option<&str>,
    body: Option<Value>,
    peer: &str,
) -> Request<Body> {
    let mut headers = vec![("x-request-id", "rid-test")];
    if let Some(user) = user {
        headers.extend([("x-user-id", user), ("x-user-roles", "user")]);
    }
    service_kit::testing::request(method, uri, &headers, body, Some(peer))
}

async fn send(state: &AppState, req: Request<Body>) -> Resp {
    service_kit::testing::send(app(state.clone()), req).await
}

async fn pay(state: &AppState, user: &str, body: Value) -> Resp {
    send(
        state,
        request("POST", "/api/payments/", Some(user), Some(body), GATEWAY),
    )
    .await
}

#[tokio::test]
async fn capture_answers_like_the_monolith_but_served_by_the_service() {
    let state = state();
    let resp = pay(&state, ALICE, json!({"order_id": 7, "amount": "12.5"})).await;
    assert_eq!(resp.status, StatusCode::CREATED, "{}", resp.body);
    let body = resp.body.as_object().unwrap();
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "amount",
            "created_at",
            "id",
            "order_id",
            "served_by",
            "status"
        ]
    );
    assert_eq!(resp.body["order_id"], 7);
    assert_eq!(resp.body["amount"], "12.50");
    assert_eq!(resp.body["status"], "captured");
    assert_eq!(resp.body["served_by"], "payments-service");
    assert_eq!(resp.headers["x-served-by"], "payments");
    assert_eq!(resp.headers["x-request-id"], "rid-test");
}

#[tokio::test]
async fn list_shows_only_the_callers_payments_newest_first() {
    let state = state();
    pay(&state, ALICE, json!({"order_id": 1, "amount": 10})).await;
    pay(&state, BOB, json!({"order_id": 2, "amount": "3.00"})).await;
    pay(&state, ALICE, json!({"order_id": 3, "amount": "1.99"})).await;
    let resp = send(
        &state,
        request("GET", "/api/payments/", Some(ALICE), None, GATEWAY),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    let got: Vec<(u64, &str)> = resp
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["order_id"].as_u64().unwrap(),
                p["amount"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [(3, "1.99"), (1, "10.00")]);
}

#[tokio::test]
async fn identity_is_required_and_believed_only_from_trusted_peers() {
    let state = state();
    let anonymous = send(
        &state,
        request("GET", "/api/payments/", None, None, GATEWAY),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        anonymous.body["type"],
        "urn:problem-type:payments:unauthorized"
    );
    assert_eq!(anonymous.body["request_id"], "rid-test");
    let trusted = pay(&state, ALICE, json!({"order_id": 1, "amount": "1.00"})).await;
    assert_eq!(trusted.status, StatusCode::CREATED, "trusted peer");
    let forged = send(
        &state,
        request(
            "POST",
            "/api/payments/",
            Some(ALICE),
            Some(json!({"order_id": 1, "amount": "1.00"})),
            "192.0.2.10:1234",
        ),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(state.store.len(), 1, "nothing stored for the forged call");
}

#[tokio::test]
async fn invalid_bodies_are_422_with_the_monolith_messages() {
    let state = state();
    let cases = [
        (json!({}), vec!["order_id", "amount"]),
        (json!({"order_id": 0, "amount": "1.00"}), vec!["order_id"]),
        (json!({"order_id": 1, "amount": "0"}), vec!["amount"]),
        (json!({"order_id": 1, "amount": "1.001"}), vec!["amount"]),
        (
            json!({"order_id": "x", "amount": "abc"}),
            vec!["order_id", "amount"],
        ),
    ];
    for (body, fields) in cases {
        let resp = pay(&state, ALICE, body.clone()).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(resp.error_fields(), fields, "{body}");
    }
    let decimals = pay(&state, ALICE, json!({"order_id": 1, "amount": "1.001"})).await;
    assert_eq!(
        decimals.body["errors"][0]["message"],
        "Ensure that there are no more than 2 decimal places."
    );
    assert!(state.store.is_empty());
}

/// The real binary: ready line, a capture over TCP, the request id in its JSON logs, SIGTERM.
#[tokio::test]
async fn the_binary_serves_logs_the_request_id_and_stops_on_sigterm() {
    let svc = Binary::start("payments", env!("CARGO_BIN_EXE_payments"), |cmd, addr| {
        cmd.env("PAYMENTS_LISTEN", addr)
            .env_remove("TRUSTED_GATEWAYS");
    })
    .await;
    let (port, base) = (svc.port, &svc.base);
    assert!(
        svc.proc
            .stdout()
            .contains(&format!("payments listening on http://127.0.0.1:{port}")),
        "{}",
        svc.proc.stdout()
    );

    let client = testkit::http_client();
    let created = client
        .post(format!("{base}/api/payments/"))
        .header("x-user-id", ALICE)
        .header("x-request-id", "rid-pay-1")
        .json(&json!({"order_id": 42, "amount": "99.90"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-served-by"], "payments");
    let body: Value = created.json().await.unwrap();
    assert_eq!(
        (&body["amount"], &body["served_by"]),
        (&json!("99.90"), &json!("payments-service"))
    );

    testkit::eventually(
        "the request id in the JSON logs",
        Duration::from_secs(5),
        || {
            let messages = logged_messages(&svc.proc.stderr(), "rid-pay-1");
            async move {
                (messages.iter().any(|m| m == "payment captured")
                    && messages.iter().any(|m| m == "request completed"))
                .then_some(())
            }
        },
    )
    .await;

    svc.stop().await;
}

/// The binary continues the caller's W3C trace (exported over OTLP/HTTP to a real receiver)
/// and its log lines carry the request id and the trace id.
#[tokio::test]
async fn the_binary_continues_the_callers_trace_and_logs_the_request_id() {
    let receiver = testkit::otlp::OtlpReceiver::start().await;
    let svc = Binary::start("payments", env!("CARGO_BIN_EXE_payments"), |cmd, addr| {
        cmd.env("PAYMENTS_LISTEN", addr)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    })
    .await;
    let resp = testkit::http_client()
        .get(format!("{}/healthz", svc.base))
        .header("x-request-id", "rid-trace-2")
        .header("traceparent", testkit::otlp::CALLER_TRACEPARENT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    testkit::otlp::assert_continued_caller_trace(&receiver, &svc.proc, "payments", "rid-trace-2")
        .await;
}
