//! Test support for services built on this crate (feature `testing`): requests as the gateway
//! would send them, answered by the router through `oneshot` (no server, no socket); and the
//! service's real binary on a free port ([`Binary`]), with its JSON log lines.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// An answer, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON; a body that is not JSON is a JSON string of its text.
    pub body: Value,
}

impl Resp {
    /// The `field` of each of a 422's `errors`, in order (none when there are none).
    pub fn error_fields(&self) -> Vec<&str> {
        self.body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["field"].as_str())
            .collect()
    }
}

/// A request with `headers`, a JSON `body` (with its content type) if any, and `peer` as the
/// connection's peer address (`None`: no connect info, as a bare `oneshot` has none).
///
/// # Panics
/// On a header or peer that does not parse (a test's own mistake).
pub fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
    peer: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let built = match body {
        Some(b) => builder
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => builder.body(Body::empty()),
    };
    let mut req = built.expect("a well-formed test request");
    if let Some(peer) = peer {
        let peer: SocketAddr = peer.parse().expect("a socket address");
        req.extensions_mut().insert(ConnectInfo(peer));
    }
    req
}

/// `req`, answered by `app`.
///
/// # Panics
/// When the body cannot be read (it always can from a router).
pub async fn send(app: Router, req: Request<Body>) -> Resp {
    let resp = match app.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("a readable body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Resp {
        status,
        headers,
        body,
    }
}

/// A service's binary, running on a free 127.0.0.1 port (killed on drop).
pub struct Binary {
    pub proc: testkit::Proc,
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Binary {
    /// Starts `path` (the test's `CARGO_BIN_EXE_<name>`) with `RUST_LOG=info`; `configure` tells
    /// it the address to listen on (by flag or by environment variable) and sets anything else.
    /// Returns once `/healthz` answers.
    pub async fn start(name: &str, path: &str, configure: impl FnOnce(&mut Command, &str)) -> Self {
        let port = testkit::free_port();
        let mut cmd = Command::new(path);
        cmd.env("RUST_LOG", "info");
        configure(&mut cmd, &format!("127.0.0.1:{port}"));
        let proc = testkit::Proc::spawn(name, cmd);
        let base = format!("http://127.0.0.1:{port}");
        testkit::wait_http_ok(&format!("{base}/healthz"), Duration::from_secs(20)).await;
        Binary { proc, port, base }
    }

    /// Stops it with SIGTERM and asserts a clean exit (status 0) within 10 s.
    ///
    /// # Panics
    /// When it does not exit, or exits otherwise.
    pub async fn stop(mut self) {
        self.proc.signal("TERM");
        assert_eq!(
            self.proc.wait_exit(Duration::from_secs(10)).await,
            Some(0),
            "{}",
            self.proc.stderr()
        );
    }
}

/// The `message`s of the JSON log lines (`stderr`) that mention `request_id`.
pub fn logged_messages(stderr: &str, request_id: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.to_string().contains(request_id))
        .filter_map(|l| l["fields"]["message"].as_str().map(str::to_string))
        .collect()
}
