//! Span export that never slows a request: finished spans go into a bounded queue
//! (`try_send`, never a wait); one thread with its own small tokio runtime batches them and
//! sends them with the OTLP exporter (gRPC through tonic, or HTTP/protobuf).
//!
//! Every span that does not reach the collector is counted in
//! `gateway_trace_spans_dropped_total`: the queue was full, or the export failed (collector
//! down, timeout). A dead collector therefore costs one failed export per batch on the
//! exporter thread, and nothing on the request path.
//!
//! This replaces the SDK's `BatchSpanProcessor` because that one neither exposes its drop count
//! nor counts spans lost to failed exports.

use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter as _, SpanProcessor};
use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};

use crate::config::model::{Otlp, OtlpProtocol};

/// Spans per export request. Small on purpose: encoding a batch is one burst of CPU on a core
/// the proxy may share, and 512-span batches showed as a 2 ms p99 at 5% sampling on a 2-core
/// machine (bench/README.md); 128 halved it.
const MAX_BATCH: usize = 128;
/// How long a span waits for its batch to fill before it is sent anyway.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// Export failures are logged at most this often (each one is counted).
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(30);

enum Msg {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The span processor the gateway's tracer provider uses when `observability.otlp` is set.
#[derive(Debug)]
pub struct QueueProcessor {
    tx: mpsc::Sender<Msg>,
    dropped: IntCounter,
    flush_timeout: Duration,
}

impl QueueProcessor {
    /// Starts the exporter thread. The exporter is built there, inside that thread's runtime
    /// (tonic and hyper need one); a build failure is logged and every span is then counted
    /// as dropped.
    pub fn start(cfg: Otlp, resource: Resource, dropped: IntCounter) -> QueueProcessor {
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        let flush_timeout = cfg.timeout + BATCH_DELAY + DRAIN_TICK;
        let worker_dropped = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "OTLP export disabled: cannot start its runtime");
                        return;
                    }
                };
                rt.block_on(run(cfg, resource, rx, worker_dropped));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "OTLP export disabled: cannot start its thread");
        }
        QueueProcessor {
            tx,
            dropped,
            flush_timeout,
        }
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(Msg::Span(Box::new(span))).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (ack, done) = oneshot::channel();
        self.tx
            .try_send(Msg::Flush(ack))
            .map_err(|_| OTelSdkError::InternalFailure("export queue full or closed".into()))?;
        // Called off the request path only (shutdown, tests); bounded wait.
        let deadline = Instant::now() + self.flush_timeout;
        let mut done = done;
        loop {
            match done.try_recv() {
                Ok(()) => return Ok(()),
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(OTelSdkError::InternalFailure("exporter stopped".into()));
                }
                Err(oneshot::error::TryRecvError::Empty) if Instant::now() < deadline => {
                    std::thread::park_timeout(Duration::from_millis(5));
                }
                Err(oneshot::error::TryRecvError::Empty) => {
                    return Err(OTelSdkError::Timeout(self.flush_timeout));
                }
            }
        }
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.force_flush()
    }
}

fn build_exporter(cfg: &Otlp) -> Result<SpanExporter, String> {
    let built = match cfg.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(cfg.endpoint.clone())
            .with_protocol(Protocol::Grpc)
            .with_timeout(cfg.timeout)
            .build(),
        OtlpProtocol::Http => SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", cfg.endpoint))
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(cfg.timeout)
            .build(),
    };
    built.map_err(|e| e.to_string())
}

/// How often the exporter thread wakes to take the queued spans. Request threads never wake
/// it (no futex call and context switch on the proxy's core per sampled request), the same
/// rule as the access-log writer. The queue (`otlp.queue_size`, default 4096) must hold one
/// tick of spans: at 20 ms that is ~200,000 spans/s before any is dropped.
const DRAIN_TICK: Duration = Duration::from_millis(20);

async fn run(cfg: Otlp, resource: Resource, mut rx: mpsc::Receiver<Msg>, dropped: IntCounter) {
    let mut exporter = match build_exporter(&cfg) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::error!(error = %e, "OTLP exporter cannot be built; spans are dropped");
            None
        }
    };
    if let Some(e) = &mut exporter {
        e.set_resource(&resource);
    }
    let mut batch: Vec<SpanData> = Vec::with_capacity(MAX_BATCH);
    let mut last_failure_log: Option<Instant> = None;
    // When the oldest span of `batch` was taken from the queue.
    let mut oldest: Option<tokio::time::Instant> = None;
    loop {
        // `try_recv` registers no waker, so senders never wake this thread; only the tick does.
        tokio::time::sleep(DRAIN_TICK).await;
        loop {
            match rx.try_recv() {
                Ok(Msg::Span(span)) => {
                    oldest.get_or_insert_with(tokio::time::Instant::now);
                    batch.push(*span);
                    if batch.len() >= MAX_BATCH {
                        send(&exporter, &mut batch, &cfg, &dropped, &mut last_failure_log).await;
                        oldest = None;
                    }
                }
                Ok(Msg::Flush(ack)) => {
                    send(&exporter, &mut batch, &cfg, &dropped, &mut last_failure_log).await;
                    oldest = None;
                    let _ = ack.send(());
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    send(&exporter, &mut batch, &cfg, &dropped, &mut last_failure_log).await;
                    return;
                }
            }
        }
        // The oldest span waited long enough for its batch to fill: send what there is.
        if oldest.is_some_and(|t| t.elapsed() >= BATCH_DELAY) {
            send(&exporter, &mut batch, &cfg, &dropped, &mut last_failure_log).await;
            oldest = None;
        }
    }
}

async fn send(
    exporter: &Option<SpanExporter>,
    batch: &mut Vec<SpanData>,
    cfg: &Otlp,
    dropped: &IntCounter,
    last_failure_log: &mut Option<Instant>,
) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::replace(batch, Vec::with_capacity(MAX_BATCH));
    let n = spans.len() as u64;
    let Some(exporter) = exporter else {
        dropped.inc_by(n);
        return;
    };
    // The exporter retries a few times within its own timeout per attempt; this bounds the
    // whole export so a black-holed collector cannot stall the queue for longer.
    let result = tokio::time::timeout(cfg.timeout * 2, exporter.export(spans)).await;
    let error = match result {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {:?}", cfg.timeout * 2),
    };
    dropped.inc_by(n);
    if last_failure_log.is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY) {
        *last_failure_log = Some(Instant::now());
        tracing::warn!(
            spans = n,
            error = %error,
            "OTLP export failed; spans dropped (counted in gateway_trace_spans_dropped_total, logged at most every 30s)"
        );
    }
}
