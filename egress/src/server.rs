//! The listener: an accept loop on 127.0.0.1 (TCP_NODELAY on every accepted socket, so SSE
//! frames leave as they come), HTTP/1.1 with keep-alive, a deadline for the request head
//! (slow clients are dropped), a cap on concurrent connections, and graceful shutdown: stop
//! accepting, let open responses finish for [`EgressConfig::shutdown_grace`], drop the rest
//! (which meters them), then flush the usage store.
//!
//! [`EgressConfig::shutdown_grace`]: crate::EgressConfig::shutdown_grace

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::proxy::Egress;

impl Egress {
    /// Binds the configured listen address.
    pub async fn bind(&self) -> Result<TcpListener> {
        let addr = self.config().listen;
        TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))
    }

    /// Serves `listener` until `shutdown` turns true (or its sender is dropped), then shuts
    /// down gracefully and flushes the usage store.
    pub async fn serve(&self, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let egress = self.clone();
        let stop = shutdown.clone();
        accept_loop(
            listener,
            self.config().max_connections,
            self.config().shutdown_grace,
            shutdown,
            "egress",
            move |stream| {
                let egress = egress.clone();
                let stop = stop.clone();
                async move { egress.connection(TokioIo::new(stream), stop).await }
            },
        )
        .await;
        if let Err(e) = self.usage_store().flush().await {
            tracing::error!(error = %e, "Usage not flushed at shutdown.");
        }
    }

    async fn connection<IO>(&self, io: IO, mut shutdown: watch::Receiver<bool>)
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let egress = self.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let egress = egress.clone();
            async move { Ok::<_, Infallible>(egress.handle(req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config().header_timeout)
            .max_buf_size(256 * 1024)
            .keep_alive(true)
            .serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "Egress connection ended with an error.");
                }
            }
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// The accept loop both listeners share: TCP_NODELAY on every accepted socket, at most `max`
/// connections at once (more wait in the listen backlog), each handled by `handle` on its own
/// task; when `shutdown` turns true (or its sender is dropped) it stops accepting, gives open
/// connections `grace` to finish and cuts the rest.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    max: usize,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    handle: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max));
    let mut conns = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let served = handle(stream);
                    conns.spawn(async move {
                        served.await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(listener = what, error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            listener = what,
            open = conns.len(),
            "Connections still open after the shutdown grace; closing them."
        );
        conns.shutdown().await;
    }
}
