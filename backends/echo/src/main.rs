//! `echo`: a fast origin for tests and benchmarks. It answers every request with JSON describing
//! what it saw (method, path, query, headers, body size, its own name), and takes knobs, as
//! request headers or query parameters:
//!
//! | header | query | effect |
//! |---|---|---|
//! | `x-echo-status: 503` | `echo_status=503` | answer with that status |
//! | `x-echo-delay-ms: 250` | `echo_delay_ms=250` | wait before answering |
//! | `x-echo-body-bytes: 1048576` | `echo_body_bytes=1048576` | stream that many bytes instead of JSON |
//!
//! Request bodies are read as a stream and counted, never buffered, so uploads of any size pass.
//! `GET /healthz` answers 200. With `--log`, every other request is logged to stderr as one JSON
//! line with its `X-Request-ID` and the trace it continues (`trace_id` and `parent_span_id` from a
//! well-formed W3C `traceparent`), so a test can follow a request id and a trace through the
//! gateway to this origin. Try it:
//!
//! ```text
//! cargo run -p echo -- --listen 127.0.0.1:9000 --name a &
//! curl -s 'localhost:9000/hello?x=1' -H 'x-echo-status: 201'
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Parser, Clone)]
#[command(name = "echo", about = "An origin that describes the request it saw")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Name reported in every answer (`server`), to tell origins apart.
    #[arg(long, default_value = "echo")]
    name: String,
    /// Log each request (request id, trace) as a JSON line on stderr.
    #[arg(long)]
    log: bool,
}

const CHUNK: usize = 64 * 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listen {}: {e}", args.listen))?;
    println!(
        "echo {} listening on http://{}",
        args.name,
        listener.local_addr()?
    );
    let name: &'static str = Box::leak(args.name.into_boxed_str());
    let log = args.log;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, name, peer, log));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn knob<T: std::str::FromStr>(req: &Request<Incoming>, header: &str, query: &str) -> Option<T> {
    if let Some(v) = req.headers().get(header).and_then(|v| v.to_str().ok()) {
        return v.trim().parse().ok();
    }
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if k == query { v.parse().ok() } else { None }
    })
}

async fn handle(
    req: Request<Incoming>,
    name: &'static str,
    peer: SocketAddr,
    log: bool,
) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == "/healthz" {
        return Ok(json(
            StatusCode::OK,
            serde_json::json!({ "status": "ok", "server": name }),
        ));
    }
    let status = knob::<u16>(&req, "x-echo-status", "echo_status")
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    if log {
        log_request(&req, name, status);
    }
    let delay = knob::<u64>(&req, "x-echo-delay-ms", "echo_delay_ms");
    let body_bytes = knob::<u64>(&req, "x-echo-body-bytes", "echo_body_bytes");

    let (parts, mut body) = req.into_parts();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    received += d.len() as u64;
                }
            }
            Err(_) => break,
        }
    }
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(n) = body_bytes {
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let chunks = n / CHUNK as u64;
        let tail = (n % CHUNK as u64) as usize;
        let tail_chunk = chunk.slice(..tail);
        let frames = stream::iter(
            (0..chunks)
                .map(move |_| chunk.clone())
                .chain(std::iter::once(tail_chunk).filter(|c| !c.is_empty()))
                .map(|c| Ok::<_, Infallible>(Frame::data(c))),
        );
        let resp = Response::builder()
            .status(status)
            .header("content-type", "application/octet-stream")
            .header("content-length", n.to_string())
            .header("x-echo-server", name)
            .body(BodyExt::boxed(StreamBody::new(frames)))
            .unwrap_or_default();
        return Ok(resp);
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        let v = serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned());
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::Array(list)) => list.push(v),
            Some(existing) => *existing = serde_json::Value::Array(vec![existing.clone(), v]),
            None => {
                headers.insert(k.as_str().to_string(), v);
            }
        }
    }
    Ok(json(
        status,
        serde_json::json!({
            "server": name,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body_bytes": received,
            "peer": peer.to_string(),
        }),
    ))
}

/// One JSON line on stderr: the request id and the trace this request continues.
fn log_request(req: &Request<Incoming>, name: &str, status: StatusCode) {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let (trace_id, parent) = header("traceparent")
        .and_then(trace_ids)
        .map_or((None, None), |(t, p)| (Some(t), Some(p)));
    eprintln!(
        "{}",
        serde_json::json!({
            "message": "request",
            "server": name,
            "request_id": header("x-request-id"),
            "trace_id": trace_id,
            "parent_span_id": parent,
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "status": status.as_u16(),
        })
    );
}

/// Trace id and parent span id of a well-formed `00-<32 hex>-<16 hex>-<2 hex>` traceparent.
fn trace_ids(tp: &str) -> Option<(&str, &str)> {
    let mut parts = tp.trim().split('-');
    let (v, t, p, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    (hex(v, 2) && hex(t, 32) && hex(p, 16) && hex(f, 2) && parts.next().is_none()).then_some((t, p))
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec(&v).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(Full::new(Bytes::from(body))))
        .unwrap_or_default()
}
