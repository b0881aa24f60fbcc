//! The TCP listeners of the receivers, with timeouts, so that no client can hold a connection or
//! its memory forever.
//!
//! - HTTP/1 (OTLP/HTTP, Zipkin, Jaeger HTTP): a request's headers must arrive within
//!   `limits.read_timeout` (hyper's header read timeout; it also runs while a kept-alive connection
//!   waits for its next request, so an idle HTTP/1 connection is closed after it), and its body
//!   within `limits.read_timeout` after the headers ([`crate::body`]).
//! - gRPC (OTLP/gRPC, Jaeger gRPC, HTTP/2): a request's message must arrive within
//!   `limits.read_timeout` after its headers ([`crate::grpc::admit`]); a connection silent for
//!   `limits.idle_timeout` is sent an HTTP/2 PING and closed when it is not answered within
//!   `limits.read_timeout`.
//! - Every accepted socket has TCP keepalive probes after `limits.idle_timeout` of silence, so
//!   vanished peers are noticed.
//! - Open connections across every TCP receiver of the node are capped at
//!   `limits.max_connections` ([`Connections`]): at the cap a receiver holds the connection it
//!   just accepted unserved and accepts no other (further clients wait in the kernel's backlog,
//!   then time out and retry) until a connection closes, so no client opening connections in a
//!   loop can exhaust the node's file descriptors and stop every other client's accepts (at most
//!   one unserved connection per receiver beyond the cap). Waits are counted.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics as m;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Connection timeouts (from `limits.*`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub read: Duration,
    pub idle: Duration,
}

/// The node's open-connection budget (`limits.max_connections`), shared by its TCP receivers.
#[derive(Debug, Clone)]
pub struct Connections {
    slots: Arc<Semaphore>,
}

/// One open connection's slot: released (and the gauge lowered) when the connection is dropped.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(m::CONNECTIONS).decrement(1.0);
    }
}

impl Connections {
    pub fn new(max: usize) -> Self {
        Connections {
            slots: Arc::new(Semaphore::new(max)),
        }
    }

    /// A slot for the next connection; at the cap, waits (counted once per wait) until one closes.
    pub async fn slot(&self) -> Option<Slot> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return None,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                metrics::counter!(m::CONNECTION_LIMIT_WAITS).increment(1);
                tracing::debug!("limits.max_connections reached: not accepting until a connection closes");
                self.slots.clone().acquire_owned().await.ok()?
            }
        };
        metrics::gauge!(m::CONNECTIONS).increment(1.0);
        Some(Slot(permit))
    }
}

/// An accepted connection holding its [`Slot`].
pub struct Counted<IO> {
    io: IO,
    _slot: Slot,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Counted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// `incoming` accepting only while the node has a connection slot free.
pub fn limited<S, IO>(
    incoming: S,
    connections: Connections,
) -> impl Stream<Item = Result<Counted<IO>, std::io::Error>> + Send + 'static
where
    S: Stream<Item = Result<IO, std::io::Error>> + Unpin + Send + 'static,
    IO: Send + 'static,
{
    futures::stream::unfold((incoming, connections), |(mut incoming, connections)| async move {
        let next = incoming.next().await?;
        // At the cap the accepted connection waits, unserved, and no other is accepted.
        let slot = connections.slot().await?;
        Some((next.map(|io| Counted { io, _slot: slot }), (incoming, connections)))
    })
}

fn keepalive(stream: &tokio::net::TcpStream, idle: Duration) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(Duration::from_secs(10).min(idle));
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&ka);
    let _ = stream.set_nodelay(true);
}

/// Serves `router` over HTTP/1 on `listener` until `shutdown`, then stops accepting and waits for
/// the connections to finish their requests (kept-alive ones are closed after their answer).
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    connections: Connections,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.read)
        .keep_alive(true);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // At the cap the accepted connection waits, unserved, and this listener accepts no other.
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = connections.slot() => match s {
                Some(s) => s,
                None => break,
            },
        };
        keepalive(&stream, timeouts.idle);
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A gRPC server builder with the HTTP/2 and TCP timeouts, and the accepted-socket stream for it.
pub fn grpc_server(
    listener: TcpListener,
    timeouts: Timeouts,
) -> (tonic::transport::Server, tonic::transport::server::TcpIncoming) {
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(timeouts.idle))
        .with_keepalive_interval(Some(Duration::from_secs(10).min(timeouts.idle)));
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(timeouts.idle))
        .http2_keepalive_timeout(Some(timeouts.read))
        .tcp_nodelay(true);
    (server, incoming)
}
