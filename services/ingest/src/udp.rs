//! Jaeger agent protocols over UDP: one `Agent.emitBatch` message per datagram, compact thrift
//! on `:6831`, binary thrift on `:6832`.
//!
//! UDP has no backpressure: the receive loop never waits for Kafka. Each datagram is decoded and
//! published in its own task, at most `udp_max_in_flight` at once per socket; a datagram that
//! cannot be written (Kafka unavailable, too many in flight, malformed, too large) is dropped,
//! counted in `tailsift_ingest_udp_datagrams_dropped_total{protocol, reason}` and logged at debug.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics as m;
use crate::pipeline::{IngestError, Pipeline, Protocol};
use crate::receive::Decode;

/// Binds a UDP socket with a large receive buffer (`SO_RCVBUF`; on Linux `SO_RCVBUFFORCE` is
/// tried when the kernel capped the first, which works for root / `CAP_NET_ADMIN`). Returns the
/// socket and the effective buffer size the kernel reports.
pub fn bind(what: &str, addr: SocketAddr, rcvbuf: usize) -> std::io::Result<(UdpSocket, usize)> {
    let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}"));
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(named)?;
    let _ = s.set_recv_buffer_size(rcvbuf);
    #[cfg(target_os = "linux")]
    if s.recv_buffer_size().unwrap_or(0) < rcvbuf {
        use std::os::fd::AsRawFd;
        let v: libc::c_int = rcvbuf.min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: a valid socket fd, a pointer to a c_int and its size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    s.bind(&addr.into()).map_err(named)?;
    s.set_nonblocking(true).map_err(named)?;
    let effective = s.recv_buffer_size().unwrap_or(0);
    let std: std::net::UdpSocket = s.into();
    Ok((UdpSocket::from_std(std).map_err(named)?, effective))
}

fn dropped(protocol: Protocol, reason: &'static str) {
    metrics::counter!(m::UDP_DROPPED, "protocol" => protocol.as_str(), "reason" => reason).increment(1);
}

/// Receives datagrams until `shutdown`, then waits for the datagrams in flight.
pub async fn serve(
    socket: UdpSocket,
    protocol: Protocol,
    decode: Decode,
    pipeline: Arc<Pipeline>,
    max_datagram: usize,
    max_in_flight: usize,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(max_in_flight));
    // One byte more than the limit, to tell a datagram at the limit from a longer one.
    let mut buf = vec![0u8; max_datagram + 1];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(protocol = protocol.as_str(), error = %e, "UDP receive error");
                    continue;
                }
            },
        };
        if n > max_datagram {
            metrics::counter!(m::REQUESTS, "protocol" => protocol.as_str(), "outcome" => "too_large").increment(1);
            dropped(protocol, "too_large");
            tracing::debug!(protocol = protocol.as_str(), %from, "datagram longer than {max_datagram} bytes dropped");
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            dropped(protocol, "overloaded");
            tracing::debug!(protocol = protocol.as_str(), %from, "too many datagrams in flight: dropped");
            continue;
        };
        let data = buf[..n].to_vec();
        let pipeline = pipeline.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let decoded = decode(&data);
            let malformed = decoded.is_err();
            let mut lease = pipeline.lease();
            match pipeline.export_translated(protocol, decoded, &mut lease).await {
                Ok(_) => {}
                Err(IngestError::Invalid(msg)) => {
                    dropped(protocol, if malformed { "malformed" } else { "invalid" });
                    tracing::debug!(protocol = protocol.as_str(), %from, error = %msg, "datagram dropped");
                }
                Err(IngestError::Unavailable(e)) => {
                    dropped(protocol, "unavailable");
                    tracing::debug!(protocol = protocol.as_str(), %from, error = %e, "datagram dropped: Kafka unavailable");
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn udp_sockets_get_the_large_receive_buffer() {
        let (sock, effective) = bind("test", "127.0.0.1:0".parse().unwrap(), 8 << 20).unwrap();
        assert!(sock.local_addr().unwrap().port() > 0);
        // Root (CI, containers) bypasses net.core.rmem_max with SO_RCVBUFFORCE; Linux reports
        // twice the size set.
        #[cfg(target_os = "linux")]
        if unsafe { libc::geteuid() } == 0 {
            assert!(effective >= 8 << 20, "effective SO_RCVBUF {effective}");
        }
        assert!(effective > 0);
    }
}
