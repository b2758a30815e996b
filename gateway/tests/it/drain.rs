//! SIGTERM drains: in-flight requests finish, then the process exits 0 without waiting out the
//! whole drain timeout.

use std::time::{Duration, Instant};

use crate::support::{Echo, Gateway, Want, get_json, one_route};

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let a = Echo::start("a").await;
    let mut gw = Gateway::start(&one_route(&a.addr())).await;
    let url = gw.url("/slow");
    let slow = tokio::spawn(async move { get_json(&url, &[("x-echo-delay-ms", "1500")]).await });
    // SIGTERM only once the gateway holds the request (the origin holds it for 1.5s).
    gw.wait_metric("gateway_requests_in_flight", Want::AtLeast(1.0))
        .await;
    let sent = Instant::now();
    gw.proc.signal("TERM");

    let (status, v) = slow.await.unwrap();
    assert_eq!(status, 200, "the in-flight request finished");
    assert_eq!(v["server"], "a");
    let code = gw.proc.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "{}", gw.proc.stderr());
    // Drain timeout is 10s; exit follows the last request, not the timeout.
    assert!(
        sent.elapsed() < Duration::from_secs(6),
        "exit took {:?}",
        sent.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
            .await
            .is_err(),
        "still accepting"
    );
}
