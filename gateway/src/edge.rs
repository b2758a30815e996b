//! The proxy listeners' connection loop: every HTTP/1 request head is read here and checked by
//! [`request_head::scan`] before pingora parses it.
//!
//! pingora offers no hook between reading a request head and parsing it, and it answers its own
//! parse failures with a bare `400`. So the gateway owns the HTTP/1 connection loop that
//! pingora's `HttpServerApp` would run: for each request it reads the head off the socket,
//! refuses a bad one with problem+json (then closes: the rest of the stream cannot be
//! trusted), and otherwise hands the bytes it read to a new pingora session as its
//! "pipelined prefix", which pingora parses without reading the socket again. Everything after
//! the head (bodies, upgrades, keep-alive reuse, the proxy phases) is pingora's, unchanged.
//! HTTP/2 connections (ALPN `h2` on the TLS listener) go straight to pingora: they have no
//! request line to check.
//!
//! The loop mirrors pingora's own (`pingora_core::apps`, `impl ServerApp for HttpServerApp`):
//! the same 60 s keep-alive wait for the next request, no reuse once shutdown has started, the
//! same per-connection settings carried from one request to the next.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{ALPN, Stream};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::request_head::{self, HeadError};
use crate::respond::GatewayError;

/// How long an open connection may wait for the next request's first bytes, and each read of
/// a head may take (pingora's default keep-alive, kept as it was).
const KEEPALIVE: Duration = Duration::from_secs(60);
/// The first read's buffer; it grows while a head is incomplete, up to `MAX_HEAD`.
const INITIAL_BUFFER: usize = 4096;

pub struct Edge {
    proxy: Arc<HttpProxy<Proxy>>,
    metrics: Arc<Metrics>,
}

impl Edge {
    pub fn new(proxy: HttpProxy<Proxy>, metrics: Arc<Metrics>) -> Self {
        Edge {
            proxy: Arc::new(proxy),
            metrics,
        }
    }
}

/// What reading one request head ended with.
enum Read {
    /// A head that passed, and every byte read so far (the head and what followed it).
    Head(BytesMut),
    /// The client closed or went quiet before sending a request: close without a word.
    Gone,
    /// A head that was refused.
    Refused(HeadError),
}

#[async_trait]
impl ServerApp for Edge {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.proxy.process_new(stream, shutdown).await;
        }
        let mut carried = None;
        loop {
            let head = match read_head(&mut stream, shutdown).await {
                Read::Head(head) => head,
                Read::Gone => return None,
                Read::Refused(e) => {
                    self.refuse(&mut stream, e).await;
                    return None;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            if *shutdown.borrow() {
                session.set_keepalive(None);
            } else {
                session.set_keepalive(Some(KEEPALIVE.as_secs()));
            }
            session.set_keepalive_reuses_remaining(None);
            if let Some(settings) = carried.take() {
                pingora_core::apps::HttpPersistentSettings::apply_to_session(
                    settings,
                    &mut session,
                );
            }
            session.set_pipelined_prefix(head);
            let reused = self.proxy.process_new_http(session, shutdown).await?;
            let (next, settings) = reused.consume();
            stream = next;
            carried = settings;
        }
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

impl Edge {
    /// Answers a refused head with problem+json and closes the connection.
    async fn refuse(&self, stream: &mut Stream, e: HeadError) {
        let request_id = crate::request_id::generate();
        let err = GatewayError::BadHead(e);
        let response = crate::respond::raw_close(&err, &request_id);
        self.metrics
            .malformed_requests
            .with_label_values(&[e.reason()])
            .inc();
        let status = err.problem().status;
        let mut buf = [0u8; 3];
        self.metrics
            .requests
            .with_label_values(&[
                "",
                "OTHER",
                crate::metrics::status_str(status, &mut buf),
                "",
            ])
            .inc();
        tracing::info!(
            request_id,
            reason = e.reason(),
            status,
            "request head refused: {e}"
        );
        // Best effort: the client may already be gone.
        let _ = pingora_timeout::timeout(KEEPALIVE, stream.write_all(&response)).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
}

/// Resolves once shutdown has started (never, if the server is gone without saying so).
async fn stopping(shutdown: &mut ShutdownWatch) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Reads until a complete head (checked) is in the buffer, the client leaves, or the head is
/// refused. Nothing read yet and shutdown started: the connection is closed.
async fn read_head(stream: &mut Stream, shutdown: &ShutdownWatch) -> Read {
    let mut buf = BytesMut::with_capacity(INITIAL_BUFFER);
    let mut shutdown = shutdown.clone();
    loop {
        let idle = buf.is_empty();
        // pingora's own coarse timer, as its reads use: far cheaper than a tokio timer entry.
        let read = pingora_timeout::timeout(KEEPALIVE, stream.read_buf(&mut buf));
        let n = if idle {
            tokio::select! {
                biased;
                n = read => n,
                _ = stopping(&mut shutdown) => return Read::Gone,
            }
        } else {
            read.await
        };
        match n {
            Ok(Ok(n)) if n > 0 => {}
            // Closed, failed or quiet for too long: as pingora, close without an answer.
            _ => return Read::Gone,
        }
        match request_head::scan(&buf) {
            Ok(Some(_)) => return Read::Head(buf),
            Ok(None) => {}
            Err(e) => return Read::Refused(e),
        }
    }
}
