//! The JSON access log: one line per request, written by a dedicated thread.
//!
//! The request path serialises the line and `try_send`s it into a bounded channel; when the
//! writer falls behind (a slow disk, a blocked stdout pipe) lines are dropped and counted in
//! `gateway_access_log_lines_dropped_total`, never waited for.
//!
//! Successful requests (status < 400) are sampled by `sample_successful`; errors (and requests
//! that got no response) are always logged. The shape is documented in `docs/observability.md`:
//!
//! ```json
//! {"time":"2026-01-02T03:04:05.678Z","request_id":"…","trace_id":"…","client_ip":"203.0.113.9",
//!  "method":"GET","route":"users","path":"/api/users/7","status":200,"upstream":"monolith",
//!  "target":"127.0.0.1:8000","duration_ms":3.2,"bytes_sent":512,"bytes_received":0,
//!  "user_id":"42"}
//! ```

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

use prometheus::IntCounter;
use serde::Serialize;

use crate::config::model::{AccessLog, AccessLogOutput};

/// One access-log line. `path` is the normalised path without the query string: queries may
/// carry secrets (tokens, emails) and never reach the log.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    pub method: &'a str,
    /// The route name; empty when no route matched.
    pub route: &'a str,
    pub path: &'a str,
    /// 0 when no response was sent (the client went away).
    pub status: u16,
    pub upstream: &'a str,
    /// The side of a split route the request was placed on (before any fallback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<&'a str>,
    /// `ip:port` of the last upstream attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
    pub duration_ms: f64,
    pub bytes_sent: usize,
    pub bytes_received: usize,
    /// Upstream attempts (more than 1 after retries or a fallback).
    pub attempts: u32,
    /// Why the route's fallback answered (`unavailable`, `connect_error`, `timeout`, `reset`,
    /// `status`), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<&'static str>,
    /// The token's `sub`, when the request was authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
}

impl Line<'_> {
    pub fn time_now() -> String {
        humantime::format_rfc3339_millis(SystemTime::now()).to_string()
    }
}

/// Whether a request's line is written: errors always, successes at `ratio` (`roll` is a
/// uniform random number in [0, 1)).
pub fn keep(status: u16, ratio: f64, roll: f64) -> bool {
    status == 0 || status >= 400 || roll < ratio
}

/// The initial capacity of a line's buffer.
const LINE_CAPACITY: usize = 512;

/// Opens (creating it when missing) an access-log file for appending: what the writer does at
/// start, and what `gateway validate` does to check that it can.
pub fn open_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The handle the request path writes through.
pub struct Writer {
    tx: SyncSender<Msg>,
    sample_successful: Arc<AtomicU64>,
    dropped: IntCounter,
}

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

impl Writer {
    /// Opens the output (a file is appended to; it is created if missing) and starts the
    /// writer thread.
    pub fn start(cfg: &AccessLog, dropped: IntCounter) -> Result<Writer, String> {
        let out: Box<dyn Write + Send> = match &cfg.output {
            AccessLogOutput::Stdout => Box::new(std::io::stdout()),
            AccessLogOutput::Stderr => Box::new(std::io::stderr()),
            AccessLogOutput::File(path) => Box::new(
                open_file(path).map_err(|e| format!("access log {}: {e}", path.display()))?,
            ),
        };
        let (tx, rx) = sync_channel(cfg.buffer);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, out))
            .map_err(|e| format!("access log writer thread: {e}"))?;
        Ok(Writer {
            tx,
            sample_successful: Arc::new(AtomicU64::new(cfg.sample_successful.to_bits())),
            dropped,
        })
    }

    pub fn set_sample_successful(&self, ratio: f64) {
        self.sample_successful
            .store(ratio.to_bits(), Ordering::Relaxed);
    }

    /// Whether a request with this status is logged (sampling applied).
    pub fn wants(&self, status: u16) -> bool {
        let ratio = f64::from_bits(self.sample_successful.load(Ordering::Relaxed));
        keep(status, ratio, rand::random::<f64>())
    }

    /// Queues a line; drops (and counts) it when the writer is behind.
    pub fn write(&self, line: &Line<'_>) {
        // Sized for a typical line (~300 bytes) so serialising does not grow the buffer through
        // 8, 16, ... 512 bytes: those reallocations were ~4k instructions per request.
        let mut buf = Vec::with_capacity(LINE_CAPACITY);
        if serde_json::to_writer(&mut buf, line).is_err() {
            return;
        }
        buf.push(b'\n');
        match self.tx.try_send(Msg::Line(buf)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Waits (bounded) until the lines queued so far are written; used at shutdown.
    pub fn flush(&self) {
        let (ack, done) = sync_channel(1);
        if self.tx.try_send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(std::time::Duration::from_secs(2));
        }
    }
}

/// How often the writer wakes to drain the queue. Requests never wake it: a wake-up per line
/// (a futex call and a context switch on the request's core) cost more than building the line.
const WRITER_TICK: std::time::Duration = std::time::Duration::from_millis(20);

fn write_lines(rx: Receiver<Msg>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    loop {
        // Sends do not unpark this thread; only the tick does.
        std::thread::park_timeout(WRITER_TICK);
        loop {
            match rx.try_recv() {
                Ok(Msg::Line(l)) => {
                    let _ = out.write_all(&l);
                }
                Ok(Msg::Flush(ack)) => {
                    let _ = out.flush();
                    let _ = ack.send(());
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_always_kept_successes_are_sampled() {
        assert!(keep(500, 0.0, 0.99));
        assert!(keep(404, 0.0, 0.99));
        assert!(keep(0, 0.0, 0.99));
        assert!(!keep(200, 0.0, 0.0));
        assert!(keep(200, 1.0, 0.999));
        assert!(keep(302, 0.1, 0.05));
        assert!(!keep(302, 0.1, 0.5));
    }

    #[test]
    fn lines_reach_the_file_in_order_and_overflow_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let dropped = IntCounter::new("d", "d").unwrap();
        let w = Writer::start(
            &AccessLog {
                output: AccessLogOutput::File(path.clone()),
                sample_successful: 1.0,
                buffer: 4,
            },
            dropped.clone(),
        )
        .unwrap();
        for i in 0..3 {
            let path = format!("/p/{i}");
            w.write(&Line {
                time: Line::time_now(),
                request_id: "r",
                trace_id: None,
                client_ip: None,
                method: "GET",
                route: "x",
                path: &path,
                status: 200,
                upstream: "u",
                target: Some("127.0.0.1:1"),
                duration_ms: 1.0,
                bytes_sent: 1,
                bytes_received: 0,
                attempts: 1,
                fallback: None,
                side: None,
                user_id: None,
            });
        }
        w.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let paths: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["path"].to_string())
            .collect();
        assert_eq!(paths, ["\"/p/0\"", "\"/p/1\"", "\"/p/2\""]);
        assert_eq!(dropped.get(), 0);
    }
}
