//! A real OTLP trace receiver for tests: the OTLP/gRPC `TraceService` (tonic, the generated
//! server of `opentelemetry-proto`) and OTLP/HTTP `POST /v1/traces` (protobuf), each on its own
//! listener. Every span received is written as one JSON line to the output file:
//!
//! ```json
//! {"transport":"grpc","service_name":"gateway","trace_id":"…","span_id":"…",
//!  "parent_span_id":"…","name":"GET users","kind":"server","status":"error",
//!  "attributes":{"http.route":"/api/users/*"},"events":[{"name":"auth","attributes":{}}]}
//! ```
//!
//! The `otlp-receiver` binary runs [`serve`]; tests start it with [`OtlpReceiver::start`] and read
//! the lines with [`OtlpReceiver::spans`].

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::{Map, Value, json};

use crate::{Proc, cargo_bin, eventually, free_port};

/// Where received spans go (one JSON line each, flushed per request).
#[derive(Clone)]
struct Sink(Arc<Mutex<std::fs::File>>);

impl Sink {
    fn write(&self, transport: &str, req: &ExportTraceServiceRequest) {
        let mut out = String::new();
        for line in span_lines(transport, req) {
            out.push_str(&line.to_string());
            out.push('\n');
        }
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = f.write_all(out.as_bytes());
        let _ = f.flush();
    }
}

struct Grpc(Sink);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.write("grpc", request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves gRPC on `grpc` and HTTP on `http` until the process ends, appending spans to `out`.
/// Prints `otlp-receiver grpc=ADDR http=ADDR` once both listen.
pub async fn serve(grpc: SocketAddr, http: SocketAddr, out: &Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)?;
    let sink = Sink(Arc::new(Mutex::new(file)));

    let grpc_listener = tokio::net::TcpListener::bind(grpc).await?;
    let http_listener = tokio::net::TcpListener::bind(http).await?;
    let (grpc_addr, http_addr) = (grpc_listener.local_addr()?, http_listener.local_addr()?);

    let http_sink = sink.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let sink = http_sink.clone();
            async move {
                let is_proto = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/x-protobuf"));
                if !is_proto {
                    return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                }
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        sink.write("http", &req);
                        let resp = ExportTraceServiceResponse {
                            partial_success: None,
                        };
                        (StatusCode::OK, resp.encode_to_vec())
                    }
                    Err(_) => (StatusCode::BAD_REQUEST, Vec::new()),
                }
            }
        }),
    );
    println!("otlp-receiver grpc={grpc_addr} http={http_addr}");
    let _ = std::io::stdout().flush();

    let grpc_server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Grpc(sink)))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc_listener));
    let http_server = axum::serve(http_listener, app);
    tokio::select! {
        r = grpc_server => r?,
        r = http_server => r?,
    }
    Ok(())
}

/// One JSON object per span of the request.
fn span_lines(transport: &str, req: &ExportTraceServiceRequest) -> Vec<Value> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or(Value::Null);
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let kind = match s.kind {
                    1 => "internal",
                    2 => "server",
                    3 => "client",
                    4 => "producer",
                    5 => "consumer",
                    _ => "unspecified",
                };
                let status = match s.status.as_ref().map(|st| st.code) {
                    Some(1) => "ok",
                    Some(2) => "error",
                    _ => "unset",
                };
                let events: Vec<Value> = s
                    .events
                    .iter()
                    .map(|e| json!({"name": e.name, "attributes": attributes(&e.attributes)}))
                    .collect();
                out.push(json!({
                    "transport": transport,
                    "service_name": service,
                    "trace_id": hex(&s.trace_id),
                    "span_id": hex(&s.span_id),
                    "parent_span_id": hex(&s.parent_span_id),
                    "name": s.name,
                    "kind": kind,
                    "status": status,
                    "attributes": attributes(&s.attributes),
                    "events": events,
                }));
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, value)))
        .collect()
}

fn value(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(value).collect()),
        Some(any_value::Value::KvlistValue(l)) => Value::Object(attributes(&l.values)),
        Some(any_value::Value::BytesValue(b)) => json!(hex(b)),
        _ => Value::Null,
    }
}

/// A running `otlp-receiver` process (killed by PID on drop).
pub struct OtlpReceiver {
    _proc: Proc,
    grpc_port: u16,
    http_port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl OtlpReceiver {
    /// Starts the receiver on two ephemeral ports and waits until it listens.
    pub async fn start() -> OtlpReceiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("spans.jsonl");
        let (grpc_port, http_port) = (free_port(), free_port());
        let mut cmd = Command::new(cargo_bin("otlp-receiver"));
        cmd.args([
            "--grpc",
            &format!("127.0.0.1:{grpc_port}"),
            "--http",
            &format!("127.0.0.1:{http_port}"),
            "--out",
        ])
        .arg(&out);
        let proc = Proc::spawn("otlp-receiver", cmd);
        eventually("otlp-receiver to listen", Duration::from_secs(20), || {
            let ready = proc.stdout().contains("otlp-receiver grpc=");
            async move { ready.then_some(()) }
        })
        .await;
        OtlpReceiver {
            _proc: proc,
            grpc_port,
            http_port,
            out,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT` of the gRPC listener.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// `http://127.0.0.1:PORT` of the HTTP listener (the exporter adds `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until spans of `trace_id` satisfy `done`, and returns them.
    pub async fn wait_trace(
        &self,
        trace_id: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        eventually(&format!("spans of trace {trace_id}"), timeout, || {
            let spans: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|s| s["trace_id"] == trace_id)
                .collect();
            let ok = done(&spans);
            async move { ok.then_some(spans) }
        })
        .await
    }
}

/// A caller's `traceparent` for tests of trace continuation, and its two ids.
pub const CALLER_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
pub const CALLER_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Checks that `service` (a running process with JSON logs on stderr) continued the caller's
/// trace ([`CALLER_TRACEPARENT`]) for the request with `request_id`: the receiver got its server
/// span as a child of the caller's span, and its log lines carry both ids.
pub async fn assert_continued_caller_trace(
    receiver: &OtlpReceiver,
    proc: &Proc,
    service: &str,
    request_id: &str,
) {
    let wait = Duration::from_secs(20);
    let spans = receiver
        .wait_trace(CALLER_TRACE_ID, wait, |spans| {
            spans
                .iter()
                .any(|s| s["service_name"] == service && s["kind"] == "server")
        })
        .await;
    let server = spans
        .iter()
        .find(|s| s["service_name"] == service && s["kind"] == "server")
        .expect("a server span");
    assert_eq!(server["parent_span_id"], CALLER_SPAN_ID, "{server}");
    let line = eventually(
        &format!("a {service} log line with request id {request_id}"),
        wait,
        || {
            let found = proc
                .stderr()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["span"]["request_id"] == request_id);
            async move { found }
        },
    )
    .await;
    assert_eq!(line["span"]["trace_id"], CALLER_TRACE_ID, "{line}");
}
