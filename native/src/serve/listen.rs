//! The accept loop: the router on hyper's HTTP/1 connections, with what `axum::serve` leaves out.
//!
//! `axum::serve` gives hyper no timer, so hyper's deadline for a request's headers never runs, and
//! it accepts connections without bound: a client that opens sockets and sends a few header bytes
//! now and then (slowloris) would hold them forever. Here every connection has a header deadline
//! (counted from the previous response on a keep-alive connection, so idle connections close too)
//! and open connections are bounded; at the bound, new ones wait in the kernel's backlog.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub(crate) struct ConnectionLimits {
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` until `shutdown` completes, then stops accepting and waits for open connections
/// (running completions end within their max_tokens).
pub(crate) async fn serve(listener: TcpListener, app: Router, limits: ConnectionLimits, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait for some to close, do not spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Stream chunks are small and should leave at once.
        let _ = stream.set_nodelay(true);
        let conn =
            http1::Builder::new().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
