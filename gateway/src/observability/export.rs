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

/// Spans per export request while the exporter keeps up. An export is one burst of CPU on a
/// core the proxy may share (~90 µs fixed, plus each span's encoding), and requests arriving
/// during it wait: at 1% sampling on the 2-core benchmark machine, 32-span batches instead of
/// 128 took the policy path's p99 at 8 connections from ~1.4 to ~1.1 ms (bench/README.md).
const SMALL_BATCH: usize = 32;
/// Spans per export request when a backlog is queued (high sampling ratios, busy proxies):
/// there the fixed cost per request dominates, and 32-span batches cost 5% more CPU per request
/// than 128-span ones at 100% sampling (8-span batches, 65% more).
const MAX_BATCH: usize = 128;
/// How long a span waits for its batch to fill before it is sent anyway.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// Export failures are logged at most this often (each one is counted).
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(30);

/// What the queue carries: spans (boxed in production), or a flush request acknowledged once
/// every span queued before it was handed to the exporter.
enum Msg<T> {
    Span(T),
    Flush(oneshot::Sender<()>),
}

/// The span processor the gateway's tracer provider uses when `observability.otlp` is set.
#[derive(Debug)]
pub struct QueueProcessor {
    tx: mpsc::Sender<Msg<Box<SpanData>>>,
    dropped: IntCounter,
    flush_timeout: Duration,
}

impl QueueProcessor {
    /// Starts the exporter thread. The exporter is built there, inside that thread's runtime
    /// (tonic and hyper need one); a build failure is logged and every span is then counted
    /// as dropped.
    pub fn start(cfg: Otlp, resource: Resource, dropped: IntCounter) -> QueueProcessor {
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        // A flush waits for one tick and the export in progress (bounded by twice the timeout);
        // exports already queued ahead of it may take longer, so a flush is best effort.
        let flush_timeout = DRAIN_TICK + cfg.timeout * 2;
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

/// How often the exporter thread wakes to take the queued spans. Requests do not wake it (no
/// futex call and context switch on the proxy's core per sampled request), the same rule as the
/// access-log writer. The queue (`otlp.queue_size`, default 4096) holds what arrives in one tick
/// plus one export's round trip: ~200,000 spans/s at 20 ms when the collector answers at once.
const DRAIN_TICK: Duration = Duration::from_millis(20);

async fn run(
    cfg: Otlp,
    resource: Resource,
    rx: mpsc::Receiver<Msg<Box<SpanData>>>,
    dropped: IntCounter,
) {
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
    let sink = OtlpSink {
        exporter,
        timeout: cfg.timeout,
        dropped,
        last_failure_log: None,
    };
    drain(rx, sink).await;
}

/// Where [`drain`] hands its batches: the OTLP exporter, or a recorder in tests.
trait BatchSink<T> {
    fn send(&mut self, batch: Vec<T>) -> impl Future<Output = ()> + Send;
}

/// The exporter thread's loop: every [`DRAIN_TICK`] it takes what is queued, sends full batches
/// at once and a partial one when its oldest span has waited [`BATCH_DELAY`]; a flush sends
/// what is batched and then acknowledges; when every sender is gone it sends the rest and
/// returns. A batch is full at [`SMALL_BATCH`] spans, or at [`MAX_BATCH`] when at least that
/// many are waiting at the tick.
async fn drain<T: Send, S: BatchSink<T>>(mut rx: mpsc::Receiver<Msg<T>>, mut sink: S) {
    let mut batch: Vec<T> = Vec::with_capacity(MAX_BATCH);
    // When the oldest span of `batch` was taken from the queue.
    let mut oldest: Option<tokio::time::Instant> = None;
    loop {
        // Senders do not wake this task; only the tick does (`try_recv` waits for nothing).
        tokio::time::sleep(DRAIN_TICK).await;
        let backlog = rx.len() + batch.len() >= MAX_BATCH;
        let full_at = if backlog { MAX_BATCH } else { SMALL_BATCH };
        loop {
            match rx.try_recv() {
                Ok(Msg::Span(span)) => {
                    oldest.get_or_insert_with(tokio::time::Instant::now);
                    batch.push(span);
                    if batch.len() >= full_at {
                        send_batch(&mut sink, &mut batch).await;
                        oldest = None;
                    }
                }
                Ok(Msg::Flush(ack)) => {
                    send_batch(&mut sink, &mut batch).await;
                    oldest = None;
                    let _ = ack.send(());
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    send_batch(&mut sink, &mut batch).await;
                    return;
                }
            }
        }
        // The oldest span waited long enough for its batch to fill: send what there is.
        if oldest.is_some_and(|t| t.elapsed() >= BATCH_DELAY) {
            send_batch(&mut sink, &mut batch).await;
            oldest = None;
        }
    }
}

async fn send_batch<T, S: BatchSink<T>>(sink: &mut S, batch: &mut Vec<T>) {
    if !batch.is_empty() {
        let full = std::mem::replace(batch, Vec::with_capacity(MAX_BATCH));
        sink.send(full).await;
    }
}

/// Sends batches with the OTLP exporter; every span that does not arrive is counted.
struct OtlpSink {
    exporter: Option<SpanExporter>,
    timeout: Duration,
    dropped: IntCounter,
    last_failure_log: Option<Instant>,
}

impl BatchSink<Box<SpanData>> for OtlpSink {
    async fn send(&mut self, batch: Vec<Box<SpanData>>) {
        let n = batch.len() as u64;
        let Some(exporter) = &self.exporter else {
            self.dropped.inc_by(n);
            return;
        };
        let spans: Vec<SpanData> = batch.into_iter().map(|s| *s).collect();
        // The exporter retries a few times within its own timeout per attempt; this bounds the
        // whole export so a black-holed collector cannot stall the queue for longer.
        let result = tokio::time::timeout(self.timeout * 2, exporter.export(spans)).await;
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout * 2),
        };
        self.dropped.inc_by(n);
        if self
            .last_failure_log
            .is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY)
        {
            self.last_failure_log = Some(Instant::now());
            tracing::warn!(
                spans = n,
                error = %error,
                "OTLP export failed; spans dropped (counted in gateway_trace_spans_dropped_total, logged at most every 30s)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A batch and when it was sent (paused time since the test started).
    type Sent = (Duration, Vec<u32>);

    /// Records each batch with the (paused) time since the test started when it was sent.
    #[derive(Clone)]
    struct Recorder {
        start: tokio::time::Instant,
        sent: Arc<Mutex<Vec<Sent>>>,
    }

    impl BatchSink<u32> for Recorder {
        async fn send(&mut self, batch: Vec<u32>) {
            let at = self.start.elapsed();
            self.sent.lock().unwrap().push((at, batch));
        }
    }

    fn batches(r: &Recorder) -> Vec<Sent> {
        r.sent.lock().unwrap().clone()
    }

    fn start() -> (
        mpsc::Sender<Msg<u32>>,
        Recorder,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel(1024);
        let rec = Recorder {
            start: tokio::time::Instant::now(),
            sent: Arc::default(),
        };
        let task = tokio::spawn(drain(rx, rec.clone()));
        (tx, rec, task)
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_partial_batch_waits_for_the_batch_delay_then_goes_out() {
        let (tx, rec, _task) = start();
        for i in 0..3 {
            tx.try_send(Msg::Span(i)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            batches(&rec).is_empty(),
            "sent before its delay: {:?}",
            batches(&rec)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = batches(&rec);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1, [0, 1, 2]);
        // Taken at the first tick (20 ms), sent at the first tick at least 500 ms later.
        assert_eq!(sent[0].0, DRAIN_TICK * 26);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn full_batches_go_out_at_the_next_tick_and_the_rest_after_its_delay() {
        let (tx, rec, _task) = start();
        let n = (MAX_BATCH * 2 + 10) as u32;
        for i in 0..n {
            tx.try_send(Msg::Span(i)).unwrap();
        }
        tokio::time::sleep(DRAIN_TICK + Duration::from_millis(1)).await;
        let sent = batches(&rec);
        assert_eq!(sent.len(), 2, "two full batches at the first tick");
        assert!(
            sent.iter()
                .all(|(at, b)| *at == DRAIN_TICK && b.len() == MAX_BATCH)
        );
        tokio::time::sleep(BATCH_DELAY + DRAIN_TICK).await;
        let sent = batches(&rec);
        assert_eq!(sent.len(), 3);
        let all: Vec<u32> = sent.into_iter().flat_map(|(_, b)| b).collect();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "every span once, in order");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn without_a_backlog_batches_are_small() {
        let (tx, rec, _task) = start();
        let n = (SMALL_BATCH * 2 + 6) as u32;
        assert!((n as usize) < MAX_BATCH);
        for i in 0..n {
            tx.try_send(Msg::Span(i)).unwrap();
        }
        tokio::time::sleep(DRAIN_TICK + Duration::from_millis(1)).await;
        let sizes: Vec<usize> = batches(&rec).iter().map(|(_, b)| b.len()).collect();
        assert_eq!(
            sizes,
            [SMALL_BATCH, SMALL_BATCH],
            "two small batches at the first tick"
        );
        // Later ticks see no backlog either: a batch filling across ticks goes out small.
        for i in n..n + SMALL_BATCH as u32 {
            tx.try_send(Msg::Span(i)).unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(DRAIN_TICK).await;
        let sent = batches(&rec);
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[2].1.len(), SMALL_BATCH, "the 6 left over and 26 more");
        let all: Vec<u32> = sent.into_iter().flat_map(|(_, b)| b).collect();
        assert_eq!(
            all,
            (0..n + 26).collect::<Vec<_>>(),
            "every span once, in order"
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_flush_is_acknowledged_after_what_was_queued_before_it_is_sent() {
        let (tx, rec, _task) = start();
        tx.try_send(Msg::Span(7)).unwrap();
        let (ack, done) = oneshot::channel();
        tx.try_send(Msg::Flush(ack)).unwrap();
        tx.try_send(Msg::Span(8)).unwrap();
        done.await.unwrap();
        assert_eq!(batches(&rec), [(DRAIN_TICK, vec![7])]);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn when_the_senders_are_gone_the_rest_is_sent_and_the_loop_ends() {
        let (tx, rec, task) = start();
        tx.try_send(Msg::Span(1)).unwrap();
        tx.try_send(Msg::Span(2)).unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(batches(&rec), [(DRAIN_TICK, vec![1, 2])]);
    }
}
