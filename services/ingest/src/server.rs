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

use std::time::Duration;

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
        keepalive(&stream, timeouts.idle);
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
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
