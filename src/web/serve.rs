//! Serves the router on the HTTP listener: an accept loop under the HTTP
//! connection quotas (`--http-max-connections`, `--http-max-connections-per-ip`
//! and the shared overrides), one HTTP/1.1 connection task each with a
//! header-read timeout (`--http-header-timeout-ms`, hyper's, which also bounds
//! how long a kept-alive connection waits for its next request) and an idle
//! timeout (`--http-idle-timeout-ms`), WebSocket upgrades, and graceful
//! shutdown. With `--http-tls` each socket is wrapped in TLS before hyper
//! sees it (the handshake bounded by `--authentication-timeout-ms`).
//!
//! A connection's quota permit travels inside its socket wrapper, so an
//! upgraded WebSocket keeps counting against the caps until it closes.
//! Must never: look at requests (that is the router's).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::NodeConfig;
use crate::limits::{ConnectionPermit, ConnectionQuotas};

/// How long in-flight requests may take to finish after a shutdown signal
/// before their connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What a connection over its address's cap is told before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain\r\ncontent-length: 33\r\nconnection: close\r\n\r\n\
too many connections from address";

/// The HTTP listener's limits, from the node's flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    /// Headers of a request must be complete this long after the server
    /// starts waiting for them (None: no limit).
    pub header_timeout: Option<Duration>,
    /// A connection without traffic for this long is closed (None: never).
    pub idle_timeout: Option<Duration>,
}

impl HttpLimits {
    pub(crate) fn from_config(config: &NodeConfig) -> Self {
        let millis = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        HttpLimits {
            header_timeout: millis(config.http_header_timeout_ms),
            idle_timeout: millis(config.http_idle_timeout_ms),
        }
    }
}

/// Serve `router` on `listener` until `shutdown` turns true, then let
/// in-flight requests finish (at most `SHUTDOWN_GRACE`).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    config: &NodeConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let handshake_timeout = Duration::from_millis(config.authentication_timeout_ms.max(1));
    let quotas = ConnectionQuotas::new(
        "http",
        config.http_max_connections,
        config.http_max_connections_per_ip,
        &config.max_connections_per_ip_overrides,
    );
    let limits = HttpLimits::from_config(config);
    let open = crate::metrics::global().connections("http");
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let slot = tokio::select! {
            s = quotas.slot() => match s { Some(s) => s, None => break },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((stream, peer)) => match quotas.admit(slot, peer.ip()) {
                Some(permit) => {
                    let _ = stream.set_nodelay(true);
                    let io = MeteredStream::new(stream, permit, open.opened());
                    let activity = io.activity.clone();
                    let (router, shutdown) = (router.clone(), shutdown.clone());
                    match &tls {
                        None => {
                            tasks.spawn(connection(io, activity, router, limits, shutdown));
                        }
                        Some(acceptor) => {
                            // Session cookies are marked Secure on a TLS connection.
                            let router = router.layer(axum::Extension(super::auth::ServedOverTls));
                            // The handshake is bounded, so a client stalling in
                            // it gives its connection slot back.
                            let handshake = acceptor.accept(io);
                            tasks.spawn(async move {
                                match tokio::time::timeout(handshake_timeout, handshake).await {
                                    Ok(Ok(io)) => {
                                        connection(io, activity, router, limits, shutdown).await
                                    }
                                    Ok(Err(e)) => {
                                        tracing::debug!(error = %e, "HTTP TLS handshake failed")
                                    }
                                    Err(_) => tracing::debug!("HTTP TLS handshake timed out"),
                                }
                            });
                        }
                    }
                }
                // Best effort: the socket may not take it, and is closed either way.
                None => drop(stream.try_write(TOO_MANY_CONNECTIONS)),
            },
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    // Every connection task saw the signal and closes once its request is done.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "HTTP connections still busy after the shutdown grace period; closing them"
        );
    }
}

/// Serve one connection: HTTP/1.1 with upgrades, the header timeout (hyper's
/// timer), the idle timeout, and a graceful close on shutdown.
async fn connection<I>(
    io: I,
    activity: Arc<Activity>,
    router: Router,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
        .with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    let mut idle_closing = false;
    loop {
        let idle_at = limits.idle_timeout.map(|t| activity.last() + t);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection closed");
                }
                return;
            }
            _ = shutdown.wait_for(|s| *s), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = sleep_until(idle_at) => {
                if activity.last() + limits.idle_timeout.unwrap_or_default() > Instant::now() {
                    continue;
                }
                if idle_closing {
                    tracing::debug!("HTTP connection dropped: no traffic after asking it to close");
                    return;
                }
                // Idle between requests closes now; a request in progress
                // finishes first (and the connection is dropped if that stalls).
                idle_closing = true;
                closing = true;
                activity.touch();
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Sleeps until `at` (forever when None).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// When a connection last moved bytes, in ms since it opened.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A client socket that records when it last moved bytes and holds the
/// connection's quota permit, both for as long as the socket lives (through
/// a WebSocket upgrade too).
struct MeteredStream {
    stream: TcpStream,
    activity: Arc<Activity>,
    _permit: ConnectionPermit,
    /// Counts the connection in `kafka_network_connections{listener="http"}`.
    _open: crate::metrics::Connection,
}

impl MeteredStream {
    fn new(stream: TcpStream, permit: ConnectionPermit, open: crate::metrics::Connection) -> Self {
        MeteredStream {
            stream,
            activity: Arc::new(Activity {
                opened: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
            _permit: permit,
            _open: open,
        }
    }

    /// Record traffic when `poll` moved bytes.
    fn metered<T>(
        &self,
        poll: Poll<io::Result<T>>,
        moved: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(Ok(value)) = &poll {
            if moved(value) {
                self.activity.touch();
            }
        }
        poll
    }
}

impl AsyncRead for MeteredStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        let after = buf.filled().len();
        this.metered(poll, |_| after > before)
    }
}

impl AsyncWrite for MeteredStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.metered(poll, |n| *n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.metered(poll, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
