//! The HTTP listener: accepts connections up to a cap, serves each with
//! hyper under a header-read deadline, and shuts down gracefully.
//!
//! What it defends against: idle or slow-header connections that would
//! otherwise stay open for good and exhaust the process's file descriptors
//! (then `/healthz` and every login time out). The deadline closes a
//! connection that has not sent a whole request head within
//! `http.header_timeout_secs` of being ready for one, which covers both
//! slowloris-style trickling and idle keep-alive connections; the cap keeps
//! what is open below the descriptor limit, which `zync` raises at start.
//! With TLS, the handshake must also finish within that deadline.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Descriptors kept free of HTTP connections: UDP sockets, the database,
/// files, WebSockets already upgraded.
const RESERVED_DESCRIPTORS: u64 = 256;
/// How long to wait after the process ran out of descriptors before
/// accepting again (what axum and hyper's examples do too).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);

/// The listener's bounds.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time to send a request head, from when the connection is ready.
    pub header_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// Raises the soft open-file limit to the hard limit (best effort, logged)
/// and returns `wanted` connections, lowered if they would not fit under
/// it.
pub fn fit_connections_to_descriptors(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = getrlimit(Resource::Nofile),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
    let Some(soft) = limit.current else {
        tracing::info!("open-file limit: unlimited");
        return wanted;
    };
    let room = soft.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize;
    if wanted > room {
        tracing::warn!(
            open_file_limit = soft,
            "http.max_connections lowered from {wanted} to {room} to fit the open-file limit (raise it with `ulimit -n` or systemd's LimitNOFILE)"
        );
        return room;
    }
    tracing::info!(
        open_file_limit = soft,
        max_connections = wanted,
        "HTTP limits"
    );
    wanted
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown`
/// completes; then stops accepting, lets each connection finish its
/// request, and returns once all have closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Connections hold a receiver each; closing the sender starts their
    // graceful shutdown, and `closed()` tells when the last one is gone.
    let (stopping, stop) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors (or similar): wait rather than spin.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let app = app.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(tls) = tls else {
                return serve_connection(stream, app, remote, limits, stop).await;
            };
            match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, app, remote, limits, stop).await,
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        });
    }
    drop(stop);
    drop(listener);
    // Wakes every connection's `changed()`; each drops its receiver when done.
    let _ = stopping.send(());
    stopping.closed().await;
}

/// Serves HTTP/1.1 (and WebSocket upgrades) on one accepted connection
/// until the peer closes it or `stop` asks for a graceful end.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    remote: SocketAddr,
    limits: HttpLimits,
    mut stop: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = app.map_request(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        request
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "HTTP connection ended");
            }
            return;
        }
        _ = stop.changed() => connection.as_mut().graceful_shutdown(),
    }
    if let Err(e) = connection.await {
        tracing::debug!(%remote, error = %e, "HTTP connection ended");
    }
}

/// Errors that concern one connection only (the peer went away before it
/// was accepted).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
