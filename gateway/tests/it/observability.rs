//! Correlation, traces and access logs, end to end: the real gateway exports spans to a real
//! OTLP receiver process (`testkit`'s `otlp-receiver`, gRPC and HTTP/protobuf), continues and
//! forwards W3C trace context, and writes JSON access-log lines.

use std::path::{Path, PathBuf};

use serde_json::Value;
use testkit::otlp::OtlpReceiver;
use testkit::{eventually, free_port};

use crate::support::{AuthService, Echo, Gateway, WAIT, Want, get_json, one_route};

const INCOMING_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const INCOMING_SPAN: &str = "b7ad6b7169203331";

fn observability(endpoint: &str, protocol: &str, ratio: f64, log: &Path, sample: f64) -> String {
    format!(
        "observability:\n  service_name: gw-test\n  access_log: {{ format: json, output: {}, sample_successful: {sample} }}\n  otlp: {{ endpoint: \"{endpoint}\", protocol: {protocol}, sample_ratio: {ratio}, timeout: 1s }}\n",
        log.display()
    )
}

fn access_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The access-log line of `request_id`, once written.
async fn logged(path: &Path, request_id: &str) -> Value {
    let path = path.to_path_buf();
    eventually(
        &format!("the access-log line of {request_id}"),
        WAIT,
        || {
            let line = access_log(&path)
                .into_iter()
                .find(|l| l["request_id"] == request_id);
            async move { line }
        },
    )
    .await
}

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("access.log")
}

fn find<'a>(spans: &'a [Value], service: &str, kind: &str) -> Option<&'a Value> {
    spans
        .iter()
        .find(|s| s["service_name"] == service && s["kind"] == kind)
}

/// POST /api/auth/login through the gateway is one trace: gateway server span → gateway client
/// span (the upstream attempt) → auth-service server span. The request id is in the response,
/// the access log, the gateway's span and the auth-service's log lines.
#[tokio::test]
async fn a_login_through_the_gateway_is_one_trace_across_both_services() {
    let receiver = OtlpReceiver::start().await;
    let auth = AuthService::start_extra(&format!(
        "otlp: {{ endpoint: \"{}\", protocol: grpc }}\n",
        receiver.grpc_endpoint()
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_path(&dir);
    let gw = Gateway::start(&format!(
        "{}upstreams:\n  auth: {{ targets: [127.0.0.1:{}] }}\nroutes:\n  - name: auth\n    match: {{ path_prefix: /api/auth/ }}\n    upstream: auth\n    auth: optional\n{}",
        auth.gateway_auth_block(),
        auth.port,
        observability(&receiver.grpc_endpoint(), "grpc", 1.0, &log, 1.0)
    ))
    .await;
    auth.register_and_login("trace@example.com").await;

    let client = testkit::http_client();
    let resp = client
        .post(gw.url("/api/auth/login?next=secret-in-query"))
        .header("x-request-id", "rid-login-1")
        .header("user-agent", "obs-test/1.0")
        .json(&serde_json::json!({"email": "trace@example.com", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "rid-login-1");
    let token = resp.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    let line = logged(&log, "rid-login-1").await;
    let trace_id = line["trace_id"].as_str().unwrap().to_string();
    assert_eq!(trace_id.len(), 32);
    assert_eq!(line["path"], "/api/auth/login");
    assert!(!line.to_string().contains("secret-in-query"), "{line}");

    let spans = receiver
        .wait_trace(&trace_id, WAIT, |s| {
            find(s, "gw-test", "server").is_some()
                && find(s, "gw-test", "client").is_some()
                && find(s, "auth-service", "server").is_some()
        })
        .await;
    let server = find(&spans, "gw-test", "server").unwrap();
    let client_span = find(&spans, "gw-test", "client").unwrap();
    let upstream = find(&spans, "auth-service", "server").unwrap();
    assert_eq!(
        server["parent_span_id"], "",
        "a new trace starts at the gateway"
    );
    assert_eq!(client_span["parent_span_id"], server["span_id"]);
    assert_eq!(upstream["parent_span_id"], client_span["span_id"]);
    assert_eq!(server["transport"], "grpc");

    assert_eq!(server["name"], "POST auth");
    let a = &server["attributes"];
    assert_eq!(a["http.request.method"], "POST");
    assert_eq!(a["url.path"], "/api/auth/login");
    assert_eq!(a["http.route"], "/api/auth/*");
    assert_eq!(a["http.response.status_code"], 200);
    assert_eq!(a["client.address"], "127.0.0.1");
    assert_eq!(a["server.address"], "127.0.0.1");
    assert_eq!(a["network.protocol.version"], "1.1");
    assert_eq!(a["request_id"], "rid-login-1");
    assert_eq!(a["user_agent.original"], "obs-test/1.0");
    assert!(!server.to_string().contains("secret-in-query"));
    assert!(
        server["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "auth" && e["attributes"]["auth.result"] == "anonymous"),
        "{server}"
    );
    let c = &client_span["attributes"];
    assert_eq!(c["server.address"], "127.0.0.1");
    assert_eq!(c["server.port"], auth.port);
    assert_eq!(c["http.response.status_code"], 200);
    assert_eq!(upstream["name"], "POST /api/auth/login");

    // The auth-service logged the same request id and trace id.
    let auth_logged = eventually("the auth-service's log line", WAIT, || {
        let found = auth
            .proc
            .stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| {
                l["span"]["request_id"] == "rid-login-1"
                    && l["fields"]["message"] == "request completed"
            });
        async move { found }
    })
    .await;
    assert_eq!(auth_logged["span"]["trace_id"], trace_id.as_str());

    // An authenticated request: the access log names the user (the token's `sub`).
    let me = client
        .get(gw.url("/api/auth/me"))
        .bearer_auth(&token)
        .header("x-request-id", "rid-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    let line = logged(&log, "rid-me-1").await;
    assert_eq!(line["user_id"], me["id"], "{line} {me}");
    let spans = receiver
        .wait_trace(line["trace_id"].as_str().unwrap(), WAIT, |s| {
            find(s, "gw-test", "server").is_some()
        })
        .await;
    let server = find(&spans, "gw-test", "server").unwrap();
    assert!(
        server["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "auth" && e["attributes"]["auth.result"] == "allowed"),
        "{server}"
    );
    drop(gw);
}

/// A valid incoming traceparent is continued (the upstream gets a child of the gateway's
/// span, never the caller's span id); an invalid one is replaced by a new trace. Over
/// OTLP/HTTP this time.
#[tokio::test]
async fn traceparent_is_continued_when_valid_and_replaced_when_not_over_http() {
    let receiver = OtlpReceiver::start().await;
    let echo = Echo::start_logging("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_path(&dir);
    let gw = Gateway::start(&format!(
        "{}{}",
        one_route(&echo.addr()),
        observability(&receiver.http_endpoint(), "http", 1.0, &log, 1.0)
    ))
    .await;

    let incoming = format!("00-{INCOMING_TRACE}-{INCOMING_SPAN}-01");
    let (status, seen) = get_json(
        &gw.url("/continued"),
        &[
            ("traceparent", &incoming),
            ("tracestate", "vendor=abc"),
            ("x-request-id", "rid-cont-1"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let upstream_tp = seen["headers"]["traceparent"].as_str().unwrap().to_string();
    let parts: Vec<&str> = upstream_tp.split('-').collect();
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], INCOMING_TRACE, "the trace is continued");
    assert_ne!(
        parts[2], INCOMING_SPAN,
        "the upstream's parent is the gateway's span"
    );
    assert_eq!(parts[3], "01");
    assert_eq!(seen["headers"]["tracestate"], "vendor=abc");
    assert_eq!(seen["headers"]["x-request-id"], "rid-cont-1");

    let spans = receiver
        .wait_trace(INCOMING_TRACE, WAIT, |s| s.len() >= 2)
        .await;
    let server = find(&spans, "gw-test", "server").unwrap();
    let client = find(&spans, "gw-test", "client").unwrap();
    assert_eq!(server["transport"], "http");
    assert_eq!(server["parent_span_id"], INCOMING_SPAN);
    assert_eq!(client["parent_span_id"], server["span_id"]);
    assert_eq!(
        client["span_id"], parts[2],
        "the upstream got the client span's id"
    );
    assert_eq!(server["attributes"]["request_id"], "rid-cont-1");
    assert_eq!(logged(&log, "rid-cont-1").await["trace_id"], INCOMING_TRACE);
    // The origin logged the same request id, in the same trace, under the client span.
    let origin = eventually("the echo's log line", WAIT, || {
        let found = echo
            .proc
            .stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["request_id"] == "rid-cont-1");
        async move { found }
    })
    .await;
    assert_eq!(origin["trace_id"], INCOMING_TRACE);
    assert_eq!(origin["parent_span_id"], client["span_id"]);

    for bad in [
        format!("00-{INCOMING_TRACE}-{}-01", "0".repeat(16)),
        format!("00-{}-{INCOMING_SPAN}-01", "0".repeat(32)),
        format!("00-{INCOMING_TRACE}-{INCOMING_SPAN}"),
        "not-a-traceparent".to_string(),
    ] {
        let (status, seen) = get_json(
            &gw.url("/replaced"),
            &[("traceparent", &bad), ("tracestate", "vendor=abc")],
        )
        .await;
        assert_eq!(status, 200);
        let tp = seen["headers"]["traceparent"].as_str().unwrap();
        assert!(!tp.contains(INCOMING_TRACE), "{bad} → {tp}");
        assert!(!tp.contains(INCOMING_SPAN), "{bad} → {tp}");
        assert_eq!(tp.len(), 55, "{tp}");
        assert!(
            seen["headers"].get("tracestate").is_none(),
            "a tracestate without its trace is dropped"
        );
    }

    let m = gw
        .metric("gateway_upstream_duration_seconds_count{route=\"all\",upstream=\"a\"}")
        .await
        .unwrap_or(0.0);
    assert!(m >= 5.0, "one observation per attempt: {m}");
}

/// Sampling ratio 0 exports nothing; the ratio is reloadable, and after a reload to 1.0 the
/// next request's spans arrive (the queue is in order, so the earlier ones would have too).
#[tokio::test]
async fn sample_ratio_zero_exports_nothing_and_a_reload_turns_it_up() {
    let receiver = OtlpReceiver::start().await;
    let echo = Echo::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_path(&dir);
    let body = |ratio: f64| {
        format!(
            "{}{}",
            one_route(&echo.addr()),
            observability(&receiver.grpc_endpoint(), "grpc", ratio, &log, 1.0)
        )
    };
    let gw = Gateway::start(&body(0.0)).await;
    for i in 0..10 {
        let (status, seen) = get_json(
            &gw.url("/unsampled"),
            &[("x-request-id", &format!("rid-uns-{i}"))],
        )
        .await;
        assert_eq!(status, 200);
        let tp = seen["headers"]["traceparent"].as_str().unwrap();
        assert!(tp.ends_with("-00"), "not sampled, still propagated: {tp}");
    }

    gw.write_config(&body(1.0));
    gw.proc.signal("HUP");
    let trace_id = eventually("a sampled request after the reload", WAIT, || {
        let url = gw.url("/sampled");
        async move {
            let (_, seen) = get_json(&url, &[]).await;
            let tp = seen["headers"]["traceparent"].as_str()?.to_string();
            tp.ends_with("-01")
                .then(|| tp.split('-').nth(1).unwrap().to_string())
        }
    })
    .await;
    receiver.wait_trace(&trace_id, WAIT, |s| s.len() >= 2).await;
    let unsampled: Vec<String> = access_log(&log)
        .iter()
        .filter(|l| l["path"] == "/unsampled")
        .map(|l| l["trace_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(unsampled.len(), 10);
    let exported: Vec<Value> = receiver.spans();
    for id in &unsampled {
        assert!(
            !exported.iter().any(|s| s["trace_id"] == id.as_str()),
            "trace {id} was exported at ratio 0"
        );
    }
}

/// A collector that is not there changes nothing for clients: every request succeeds, and the
/// spans that could not be delivered are counted.
#[tokio::test]
async fn a_dead_collector_costs_clients_nothing_and_drops_are_counted() {
    let echo = Echo::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_path(&dir);
    let closed = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::start(&format!(
        "{}{}",
        one_route(&echo.addr()),
        observability(&closed, "grpc", 1.0, &log, 1.0)
    ))
    .await;
    for i in 0..20 {
        let (status, _) = get_json(&gw.url(&format!("/dead/{i}")), &[]).await;
        assert_eq!(status, 200);
    }
    let dropped = gw
        .wait_metric("gateway_trace_spans_dropped_total", Want::AtLeast(40.0))
        .await;
    assert!(dropped >= 40.0, "two spans per request: {dropped}");
    assert_eq!(
        gw.metric("gateway_access_log_lines_dropped_total").await,
        Some(0.0)
    );
    // Still serving.
    let (status, _) = get_json(&gw.url("/after"), &[]).await;
    assert_eq!(status, 200);
}

/// The access log: one JSON line per request with the documented fields, successful requests
/// sampled, errors always logged, never a query string.
#[tokio::test]
async fn access_log_shape_sampling_errors_and_no_query_string() {
    let echo = Echo::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_path(&dir);
    let body = |sample: f64| {
        format!(
            "{}observability:\n  access_log: {{ format: json, output: {}, sample_successful: {sample} }}\n",
            one_route(&echo.addr()),
            log.display()
        )
    };
    let gw = Gateway::start(&body(0.0)).await;
    for i in 0..10 {
        let (status, _) = get_json(
            &gw.url("/ok/x?token=hunter2"),
            &[("x-request-id", &format!("rid-ok-{i}"))],
        )
        .await;
        assert_eq!(status, 200);
    }
    let failed = crate::support::raw(
        gw.port,
        b"GET /fail//%7e/../y?password=hunter2 HTTP/1.1\r\nHost: x\r\nX-Echo-Status: 503\r\nX-Request-ID: rid-err-1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(failed.status, 503);
    let err = logged(&log, "rid-err-1").await;
    for field in [
        "time",
        "request_id",
        "trace_id",
        "client_ip",
        "method",
        "route",
        "path",
        "status",
        "upstream",
        "target",
        "duration_ms",
        "bytes_sent",
        "bytes_received",
        "attempts",
    ] {
        assert!(err.get(field).is_some(), "{field} missing: {err}");
    }
    assert_eq!(err["status"], 503);
    assert_eq!(err["method"], "GET");
    assert_eq!(err["route"], "all");
    assert_eq!(err["path"], "/fail/y", "normalised, without the query");
    assert_eq!(err["upstream"], "a");
    assert_eq!(err["target"], echo.addr());
    assert_eq!(err["client_ip"], "127.0.0.1");
    assert_eq!(err["attempts"], 1);
    assert!(err["bytes_sent"].as_u64().unwrap() > 0);
    assert!(err.get("user_id").is_none());
    let time = err["time"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(time).is_ok(), "RFC 3339: {time}");
    // A gateway-made error (no route would be 404; here a bad path is 400) is logged too.
    let bad = crate::support::raw(
        gw.port,
        b"GET /a/%2F/b HTTP/1.1\r\nHost: x\r\nX-Request-ID: rid-bad-1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(logged(&log, "rid-bad-1").await["status"], 400);
    let lines = access_log(&log);
    assert!(
        !lines.iter().any(|l| l["status"] == 200),
        "successes are not logged at sample_successful: 0"
    );

    gw.write_config(&body(1.0));
    gw.proc.signal("HUP");
    eventually("successes logged after the reload", WAIT, || {
        let url = gw.url("/ok/again?token=hunter2");
        let log = log.clone();
        async move {
            let _ = get_json(&url, &[]).await;
            access_log(&log)
                .iter()
                .any(|l| l["status"] == 200)
                .then_some(())
        }
    })
    .await;
    let ok = access_log(&log)
        .into_iter()
        .find(|l| l["status"] == 200)
        .unwrap();
    assert_eq!(ok["path"], "/ok/again");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("hunter2"), "a query string reached the log");
}

/// A retried request: one client span per attempt, the failed one with `error.type`, the
/// retry with `http.request.resend_count`; the upstream got the second attempt's span id.
#[tokio::test]
async fn each_upstream_attempt_is_its_own_client_span() {
    let receiver = OtlpReceiver::start().await;
    let echo = Echo::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_path(&dir);
    let closed = format!("127.0.0.1:{}", free_port());
    let gw = Gateway::start(&format!(
        "upstreams:\n  a:\n    targets: [{closed}, {}]\n    retries: {{ attempts: 1 }}\n    circuit_breaker: {{ enabled: false }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: a\n{}",
        echo.addr(),
        observability(&receiver.grpc_endpoint(), "grpc", 1.0, &log, 1.0)
    ))
    .await;
    // Round robin: within two requests one starts on the closed target and is retried.
    let mut retried = None;
    for i in 0..2 {
        let rid = format!("rid-retry-{i}");
        let (status, seen) = get_json(&gw.url("/r"), &[("x-request-id", &rid)]).await;
        assert_eq!(status, 200);
        let line = logged(&log, &rid).await;
        if line["attempts"] == 2 {
            retried = Some((line, seen));
        }
    }
    let (line, seen) = retried.expect("one request was retried");
    let trace_id = line["trace_id"].as_str().unwrap();
    let spans = receiver.wait_trace(trace_id, WAIT, |s| s.len() >= 3).await;
    let server = find(&spans, "gw-test", "server").unwrap();
    let clients: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "client").collect();
    assert_eq!(clients.len(), 2, "{spans:?}");
    for c in &clients {
        assert_eq!(c["parent_span_id"], server["span_id"]);
    }
    let failed = clients
        .iter()
        .find(|c| c["attributes"].get("http.request.resend_count").is_none())
        .unwrap();
    let resent = clients
        .iter()
        .find(|c| c["attributes"]["http.request.resend_count"] == 1)
        .unwrap();
    assert_eq!(failed["status"], "error");
    assert!(failed["attributes"]["error.type"].is_string(), "{failed}");
    assert_eq!(resent["attributes"]["http.response.status_code"], 200);
    let tp = seen["headers"]["traceparent"].as_str().unwrap();
    assert_eq!(tp.split('-').nth(2).unwrap(), resent["span_id"]);
}

/// Without an `observability:` block nothing is exported, but trace context is still honoured
/// (the plain route of the benchmark takes this path): a valid caller's trace is continued with
/// the gateway's own span id and its `tracestate`; an invalid one is replaced and its
/// `tracestate` dropped.
#[tokio::test]
async fn without_observability_trace_context_is_still_continued_or_replaced() {
    let echo = Echo::start("a").await;
    let gw = Gateway::start(&one_route(&echo.addr())).await;
    let incoming = format!("00-{INCOMING_TRACE}-{INCOMING_SPAN}-01");
    let (status, seen) = get_json(
        &gw.url("/continued"),
        &[("traceparent", &incoming), ("tracestate", "vendor=abc")],
    )
    .await;
    assert_eq!(status, 200);
    let tp = seen["headers"]["traceparent"].as_str().unwrap();
    assert!(tp.starts_with(&format!("00-{INCOMING_TRACE}-")), "{tp}");
    assert!(
        !tp.contains(INCOMING_SPAN),
        "the gateway names its own span: {tp}"
    );
    assert_eq!(seen["headers"]["tracestate"], "vendor=abc");

    let (status, seen) = get_json(
        &gw.url("/replaced"),
        &[
            ("traceparent", "not-a-traceparent"),
            ("tracestate", "vendor=abc"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let tp = seen["headers"]["traceparent"].as_str().unwrap();
    assert_eq!(tp.len(), 55, "a new trace: {tp}");
    assert!(seen["headers"].get("tracestate").is_none(), "{seen}");
}

/// A split route's side is in the access log (`side`, and `fallback` when the fallback
/// answered) and on the server span (`gateway.split.side`, and the cohort's
/// `gateway.cohort.bucket`).
#[tokio::test]
async fn the_split_side_is_logged_and_on_the_server_span() {
    let receiver = OtlpReceiver::start().await;
    let (new, old) = (Echo::start("new").await, Echo::start("old").await);
    let dir = tempfile::tempdir().unwrap();
    let log = log_path(&dir);
    let gw = Gateway::start(&format!(
        "upstreams:\n  new: {{ targets: [{n}] }}\n  old: {{ targets: [{o}] }}\ncohorts:\n  all: {{ by: header.x-user }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    split: {{ to: new, percent: 100, cohort: all, rest: old }}\n{obs}",
        n = new.addr(),
        o = old.addr(),
        obs = observability(&receiver.grpc_endpoint(), "grpc", 1.0, &log, 1.0)
    ))
    .await;
    let (status, _) = get_json(
        &gw.url("/x"),
        &[("x-request-id", "rid-side"), ("x-user", "7")],
    )
    .await;
    assert_eq!(status, 200);
    let line = logged(&log, "rid-side").await;
    assert_eq!(line["side"], "new", "{line}");
    assert_eq!(line["upstream"], "new");
    assert!(line.get("fallback").is_none(), "{line}");
    let (_, _) = get_json(&gw.url("/x"), &[("x-request-id", "rid-rest")]).await;
    assert_eq!(
        logged(&log, "rid-rest").await["side"],
        "old",
        "no key: rest"
    );
    let trace_id = line["trace_id"].as_str().unwrap();
    let spans = receiver.wait_trace(trace_id, WAIT, |s| s.len() >= 2).await;
    let server = find(&spans, "gw-test", "server").unwrap();
    assert_eq!(
        server["attributes"]["gateway.split.side"], "new",
        "{server}"
    );
    let bucket = gateway::split::Position::of(gateway::split::seed("all"), b"7").bucket();
    assert_eq!(
        server["attributes"]["gateway.cohort.bucket"], bucket,
        "{server}"
    );
}

/// A shadow copy is a client span of its own in the request's trace (`gateway.shadow:
/// candidate`), a child of the server span beside the attempt's (the `traceparent` the
/// candidate gets is checked in `shadow.rs`).
#[tokio::test]
async fn a_shadow_copy_is_its_own_client_span_in_the_requests_trace() {
    let receiver = OtlpReceiver::start().await;
    let primary = Echo::start("p").await;
    let candidate = Echo::start("c").await;
    let dir = tempfile::tempdir().unwrap();
    let log = log_path(&dir);
    let gw = Gateway::start(&format!(
        "upstreams:\n  p: {{ targets: [{}] }}\n  c: {{ targets: [{}] }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: p\n    shadow: {{ upstream: c }}\n{}",
        primary.addr(),
        candidate.addr(),
        observability(&receiver.grpc_endpoint(), "grpc", 1.0, &log, 1.0)
    ))
    .await;
    let (status, _) = get_json(&gw.url("/r"), &[("x-request-id", "rid-shadow-span")]).await;
    assert_eq!(status, 200);
    let line = logged(&log, "rid-shadow-span").await;
    let trace_id = line["trace_id"].as_str().unwrap();
    let spans = receiver.wait_trace(trace_id, WAIT, |s| s.len() >= 3).await;
    let server = find(&spans, "gw-test", "server").unwrap();
    let clients: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "client").collect();
    assert_eq!(clients.len(), 2, "{spans:?}");
    let copy = clients
        .iter()
        .find(|c| c["attributes"]["gateway.shadow"] == "candidate")
        .unwrap_or_else(|| panic!("no shadow span in {clients:?}"));
    let attempt = clients
        .iter()
        .find(|c| c["attributes"].get("gateway.shadow").is_none())
        .unwrap();
    assert_eq!(copy["parent_span_id"], server["span_id"]);
    assert_eq!(attempt["parent_span_id"], server["span_id"]);
    assert_ne!(copy["span_id"], attempt["span_id"]);
    assert_eq!(copy["attributes"]["gateway.upstream"], "c");
    assert_eq!(copy["attributes"]["http.response.status_code"], 200);
}
