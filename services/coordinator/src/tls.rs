//! TLS (rustls with the ring provider) for the admin port (`admin.tls`) and the Raft/Watch gRPC
//! port (`raft.tls`), and the client side used by the Raft network, the forwarding of writes and
//! the samplers' watch (`tailsift_proto::ClientOptions`).
//!
//! Certificates and keys are PEM files. They are read once at startup (a replaced certificate
//! takes effect on restart); `validate()` reads them too, so a bad file is reported with its
//! config key before anything is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tailsift_config::ConfigError;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))
}

/// The certificates in a PEM file (at least one).
fn certs(key: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    tailsift_proto::tls::pem_certs(key, path, pem)
}

fn private_key(key: &str, path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration for `cert_file` and `key_file` (errors name `<section>.cert_file`
/// or `<section>.key_file`), offering `alpn`.
fn server_config(
    section: &str,
    cert_file: &Path,
    key_file: &Path,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, ConfigError> {
    let cert_key = format!("{section}.cert_file");
    let key_key = format!("{section}.key_file");
    let chain = certs(&cert_key, cert_file, &read(&cert_key, cert_file)?)?;
    let key = private_key(&key_key, key_file, &read(&key_key, key_file)?)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid(section, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            ConfigError::invalid(
                &key_key,
                format!("{} with {}: {e}", key_file.display(), cert_file.display()),
            )
        })?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// Checks that a certificate chain and its key load (for `validate()`).
pub(crate) fn check_server_files(section: &str, cert_file: &Path, key_file: &Path) -> Result<(), ConfigError> {
    server_config(section, cert_file, key_file, &[]).map(|_| ())
}

/// Reads a PEM file of CA certificates (at least one), returned as PEM for tonic (shared with
/// the workers, in `tailsift-proto`).
pub use tailsift_proto::tls::read_ca;

/// The admin port's rustls configuration (HTTP/1.1).
pub fn admin_server_config(t: &AdminTls) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    server_config("admin.tls", &t.cert_file, &t.key_file, &[b"http/1.1"]).map(Arc::new)
}

/// The gRPC port's tonic TLS configuration.
pub fn raft_server_tls(t: &RaftTls) -> Result<tonic::transport::ServerTlsConfig, ConfigError> {
    check_server_files("raft.tls", &t.cert_file, &t.key_file)?;
    let cert = read("raft.tls.cert_file", &t.cert_file)?;
    let key = read("raft.tls.key_file", &t.key_file)?;
    Ok(tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .timeout(HANDSHAKE_TIMEOUT))
}

/// An accepting TLS socket for `axum::serve`: TCP connections are accepted and their handshakes
/// run concurrently in the background (a slow or failing client holds up no one); only completed
/// handshakes are handed to the server. Dropping it closes the socket.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let tls = TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (sock, addr) = tokio::select! {
                    _ = tx.closed() => return,
                    r = tcp.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "admin accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(sock)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "admin TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "admin TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local, acceptor })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The acceptor only stops when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
/// TLS of `raft.listen`. With it, this node serves Raft and Watch over TLS only and dials the
/// other coordinators with `https://` (every member must then serve TLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftTls {
    /// PEM certificate chain served on `raft.listen`; its names must cover the host part of this
    /// node's `raft_addr` (and of the sampler's `coordinator.endpoints`).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: PathBuf,
    /// PEM CA certificate(s) that the other coordinators' certificates are verified against.
    pub ca_file: PathBuf,
}

/// TLS of `admin.listen`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTls {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: PathBuf,
}
