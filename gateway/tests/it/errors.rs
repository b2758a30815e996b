//! 404 / 502 / 504 / 503 as problem+json, each with the request id in the body and header.

use std::time::{Duration, Instant};

use crate::support::{Echo, Gateway, one_route};

fn assert_problem(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &serde_json::Value,
    slug: &str,
) {
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("urn:problem-type:gateway:{slug}"));
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(
        body["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
    // No internal detail leaks: no addresses, no error chains.
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("Peer"),
        "{text}"
    );
}

#[tokio::test]
async fn no_route_unreachable_and_timeout() {
    let slow = Echo::start("slow").await;
    let dead_port = testkit::free_port();
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  dead: {{ targets: [127.0.0.1:{dead_port}] }}
  slow: {{ targets: [{slow}], timeouts: {{ connect: 1s, response: 300ms }} }}
routes:
  - name: dead
    match: {{ path_prefix: /dead/ }}
    upstream: dead
  - name: slow
    match: {{ path_prefix: /slow/ }}
    upstream: slow
"#,
        slow = slow.addr()
    ))
    .await;
    let client = testkit::http_client();

    let resp = client
        .get(gw.url("/nowhere"))
        .header("x-request-id", "req-404")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let headers = resp.headers().clone();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_problem(404, &headers, &body, "no-route");
    assert_eq!(body["request_id"], "req-404");

    let resp = client.get(gw.url("/dead/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let headers = resp.headers().clone();
    assert_problem(
        502,
        &headers,
        &resp.json().await.unwrap(),
        "upstream-unreachable",
    );

    let started = Instant::now();
    let resp = client
        .get(gw.url("/slow/x"))
        .header("x-echo-delay-ms", "3000")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 504);
    let headers = resp.headers().clone();
    assert_problem(
        504,
        &headers,
        &resp.json().await.unwrap(),
        "upstream-timeout",
    );
    assert!(
        took < Duration::from_millis(2500),
        "504 took {took:?}, the timeout is 300ms"
    );

    // The same upstream answers normally within its timeout.
    let resp = client
        .get(gw.url("/slow/x"))
        .header("x-echo-delay-ms", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Errors are counted by route and status.
    let m = gw.metrics().await;
    assert!(
        m.contains(
            r#"gateway_requests_total{method="GET",route="dead",status="502",upstream="dead"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"gateway_requests_total{method="GET",route="",status="404",upstream=""} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn upstream_statuses_pass_through_untouched() {
    let a = Echo::start("a").await;
    let gw = Gateway::start(&one_route(&a.addr())).await;
    let resp = testkit::http_client()
        .get(gw.url("/x"))
        .header("x-echo-status", "503")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().contains_key("x-request-id"));
}
