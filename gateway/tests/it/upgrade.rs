//! Upgraded connections (WebSocket) through the gateway: the handshake and frames both ways,
//! which timeouts apply once a connection is upgraded (`response` no longer does,
//! `upgraded_idle` does), and how sessions settle the target's circuit breaker.
//!
//! The origin is an in-process tokio-tungstenite echo server ([`WsOrigin`]); the client is
//! tokio-tungstenite too.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Gateway, RawResponse, WAIT, Want, WsOrigin, metric_series, one_route};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A breaker that trips fast: 5 requests, more than half failing; open for 1s.
const FAST_BREAKER: &str = "circuit_breaker: { min_requests: 5, failure_ratio: 0.5, window: 10s, open_for: 1s, half_open_requests: 2 }";

/// A WebSocket handshake through the gateway; asserts the `101`.
async fn connect(gw: &Gateway, path: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{}{path}", gw.port);
    let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
        .await
        .unwrap_or_else(|_| panic!("no handshake answer for {url} in {WAIT:?}"))
        .unwrap_or_else(|e| panic!("handshake {url}: {e:?}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// The next text or binary message (a bounded wait); pings and pongs are skipped.
async fn next_data(ws: &mut Ws) -> Message {
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no message in {WAIT:?}"));
        match next {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return m,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Sends `msg` and asserts it comes back unchanged.
async fn assert_echo(ws: &mut Ws, msg: Message) {
    ws.send(msg.clone()).await.unwrap();
    let back = next_data(ws).await;
    assert!(back == msg, "sent {} bytes, got back {back:?}", msg.len());
}

/// Waits (at most 10 s) until the peer ends the connection (a close frame, the stream's end,
/// or a reset); returns how long that took. After a close frame it reads on (bounded) until the
/// stream ends, so the close handshake completes.
async fn closed_within(ws: &mut Ws) -> Duration {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut ended = None;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, ws.next()).await else {
            panic!("not closed after {:?}", started.elapsed());
        };
        match next {
            None | Some(Err(_)) => return ended.unwrap_or_else(|| started.elapsed()),
            Some(Ok(Message::Close(_))) => {
                ended.get_or_insert_with(|| started.elapsed());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => panic!("expected the end, got {other:?}"),
        }
    }
}

/// The client closes: sends a close frame and reads until the stream ends (bounded).
async fn client_close(ws: &mut Ws) {
    ws.close(None).await.unwrap();
    closed_within(ws).await;
}

#[tokio::test]
async fn text_binary_and_control_frames_flow_both_ways() {
    let origin = WsOrigin::start().await;
    let gw = Gateway::start(&one_route(&origin.addr())).await;
    let mut ws = connect(&gw, "/chat?room=1").await;

    assert_echo(&mut ws, Message::text("hello")).await;
    assert_echo(&mut ws, Message::text("héllo, wörld ✓")).await;
    assert_echo(&mut ws, Message::binary(vec![0u8, 1, 2, 0xff, 0])).await;
    // Larger than any one read or write buffer on the way.
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    assert_echo(&mut ws, Message::binary(big)).await;
    // A ping reaches the origin, whose pong comes back.
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    match pong {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    client_close(&mut ws).await;
    assert_eq!(origin.sessions(), 1);
}

#[tokio::test]
async fn an_upgraded_connection_outlives_the_routes_response_timeout() {
    outlives_response_timeout_with(|addr| {
        format!(
            "upstreams:
  ws: {{ targets: [{addr}] }}
routes:
  - name: ws
    match: {{ path_prefix: / }}
    upstream: ws
    timeouts: {{ response: 500ms }}
"
        )
    })
    .await;
}

#[tokio::test]
async fn an_upgraded_connection_outlives_the_upstreams_response_timeout() {
    outlives_response_timeout_with(|addr| {
        format!(
            "upstreams:
  ws: {{ targets: [{addr}], timeouts: {{ response: 500ms }} }}
routes:
  - name: ws
    match: {{ path_prefix: / }}
    upstream: ws
"
        )
    })
    .await;
}

/// With `config(origin address)` (a response timeout of 500ms somewhere), a session silent
/// for 1.5 s still echoes.
async fn outlives_response_timeout_with(config: impl Fn(&str) -> String) {
    let origin = WsOrigin::start().await;
    let gw = Gateway::start(&config(&origin.addr())).await;
    let mut ws = connect(&gw, "/chat").await;
    assert_echo(&mut ws, Message::text("before")).await;
    // The scenario: the session stays silent three times the response timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_echo(&mut ws, Message::text("after")).await;
    client_close(&mut ws).await;
    assert_eq!(origin.sessions(), 1);
}

#[tokio::test]
async fn a_silent_upgraded_connection_is_closed_after_upgraded_idle_a_talking_one_is_not() {
    let origin = WsOrigin::start().await;
    let gw = Gateway::start(&format!(
        "upstreams:
  plain: {{ targets: [{a}] }}
  short: {{ targets: [{a}], timeouts: {{ upgraded_idle: 1s }}, {FAST_BREAKER} }}
routes:
  - name: route
    match: {{ path_prefix: /route/ }}
    upstream: plain
    timeouts: {{ upgraded_idle: 1s }}
  - name: upstream
    match: {{ path_prefix: /upstream/ }}
    upstream: short
",
        a = origin.addr()
    ))
    .await;
    let mut by_route = connect(&gw, "/route/idle").await;
    let mut by_upstream = connect(&gw, "/upstream/idle").await;
    // More silent sessions on the upstream whose breaker trips after 5 failures: their ends
    // at upgraded_idle must not count as failures.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(connect(&gw, "/upstream/silent").await);
    }
    let mut talking = connect(&gw, "/route/talking").await;
    assert_echo(&mut by_route, Message::text("one")).await;
    assert_echo(&mut by_upstream, Message::text("one")).await;

    let talk = async {
        // The scenario: a message every 400ms for 2.4s, never silent for the 1s allowed.
        for i in 0..6 {
            assert_echo(&mut talking, Message::text(format!("tick {i}"))).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert_echo(&mut talking, Message::text("still here")).await;
    };
    let (route_idle, upstream_idle, ()) = tokio::join!(
        closed_within(&mut by_route),
        closed_within(&mut by_upstream),
        talk
    );
    for (what, took) in [("route", route_idle), ("upstream", upstream_idle)] {
        assert!(
            took >= Duration::from_millis(900),
            "{what}: closed after {took:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{what}: closed after {took:?}"
        );
    }
    client_close(&mut talking).await;
    for ws in &mut silent {
        closed_within(ws).await;
    }
    let t = gw.target_state("short", &origin.addr()).await;
    assert_eq!(t["circuit_breaker"]["state"], "closed", "{t}");
    assert_eq!(t["circuit_breaker"]["failures"], 0, "{t}");
    let text = gw.metrics().await;
    let errors: Vec<_> = metric_series(&text, "gateway_requests_total", &[])
        .into_iter()
        .filter(|(labels, _)| labels.contains("status=\"5"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn websocket_sessions_and_their_ends_are_breaker_successes() {
    let origin = WsOrigin::start().await;
    let target = origin.addr();
    let gw = Gateway::start(&format!(
        "upstreams:
  ws:
    targets: [{target}]
    {FAST_BREAKER}
routes:
  - name: ws
    match: {{ path_prefix: / }}
    upstream: ws
"
    ))
    .await;

    // 20 sessions, each echoing once: 10 closed by the client, 5 by the origin with a close
    // frame, 5 by the origin dropping the connection.
    for i in 0..20 {
        let path = match i % 4 {
            0 | 2 => "/chat",
            1 => "/close-after-echo",
            _ => "/drop-after-echo",
        };
        let mut ws = connect(&gw, path).await;
        assert_echo(&mut ws, Message::text(format!("session {i}"))).await;
        if path == "/chat" {
            client_close(&mut ws).await;
        } else {
            closed_within(&mut ws).await;
        }
    }
    assert_eq!(origin.sessions(), 20);

    let sessions = r#"gateway_requests_total{method="GET",route="ws",status="101",upstream="ws"}"#;
    assert_eq!(gw.wait_metric(sessions, Want::AtLeast(20.0)).await, 20.0);
    let text = gw.metrics().await;
    let errors: Vec<_> = metric_series(&text, "gateway_requests_total", &[("route", "ws")])
        .into_iter()
        .filter(|(labels, _)| labels.contains("status=\"5"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let t = gw.target_state("ws", &target).await;
    assert_eq!(t["circuit_breaker"]["state"], "closed", "{t}");
    assert_eq!(t["circuit_breaker"]["failures"], 0, "{t}");
    let opened = format!(
        r#"gateway_circuit_breaker_transitions_total{{target="{target}",to="open",upstream="ws"}}"#
    );
    assert_eq!(gw.metric(&opened).await.unwrap_or(0.0), 0.0);
    // And the next session still gets through.
    let mut ws = connect(&gw, "/chat").await;
    assert_echo(&mut ws, Message::text("one more")).await;
    client_close(&mut ws).await;
}

/// A WebSocket handshake for `path` written by hand, and the answer read up to the end of its
/// `content-length` body (bounded): tungstenite's client keeps only the body bytes that came
/// with the head, so it cannot show a refusal's body.
async fn raw_handshake(port: u16, path: &str) -> RawResponse {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let parsed = RawResponse::parse(&buf);
            let length = parsed.header("content-length").and_then(|v| v.parse().ok());
            if buf.windows(4).any(|w| w == b"\r\n\r\n")
                && length.is_some_and(|n: usize| parsed.body.len() >= n)
            {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, read).await;
    RawResponse::parse(&buf)
}

#[tokio::test]
async fn an_origin_refusing_the_upgrade_passes_its_answer_through() {
    let origin = WsOrigin::start().await;
    let gw = Gateway::start(&one_route(&origin.addr())).await;

    let refused = raw_handshake(gw.port, "/refuse").await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(refused.body, "no websocket here", "{refused:?}");
    // tungstenite's client sees the same status.
    let url = format!("ws://127.0.0.1:{}/refuse", gw.port);
    let answer = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
        .await
        .unwrap_or_else(|_| panic!("no handshake answer in {WAIT:?}"));
    match answer {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        Err(e) => panic!("expected the origin's 400, got {e:?}"),
        Ok((_, resp)) => panic!("the upgrade went through: {resp:?}"),
    }
    assert_eq!(origin.sessions(), 0);
    // The gateway is not stuck after refusals: a real session works next.
    let mut ws = connect(&gw, "/chat").await;
    assert_echo(&mut ws, Message::text("after a refusal")).await;
    client_close(&mut ws).await;
}
