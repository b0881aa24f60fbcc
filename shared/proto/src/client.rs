//! The client side of `raft.listen`: [`ClientOptions`] (how to reach a coordinator: CA, token)
//! and the worker's client of the `Watch` service ([`CoordinatorClient`], [`watch`],
//! [`report_applied`]).

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Request;

use crate::v1::watch_client::WatchClient;
use crate::v1::{AppliedReport, PolicyUpdate, WatchRequest};

/// How a client reaches `raft.listen`: the CA certificates an `https://` endpoint is verified
/// against, and the bearer token sent with every call. Cheap to clone.
#[derive(Clone, Default)]
pub struct ClientOptions {
    ca_pem: Option<Arc<Vec<u8>>>,
    token: Option<MetadataValue<Ascii>>,
}

/// The token cannot be sent as gRPC metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token must be visible ASCII characters")]
pub struct InvalidToken;

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("tls", &self.ca_pem.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientOptions {
    /// `ca_pem`: PEM CA certificates (for `https://` endpoints); `token`: sent as
    /// `authorization: Bearer <token>` (visible ASCII).
    pub fn new(ca_pem: Option<Vec<u8>>, token: Option<&str>) -> Result<Self, InvalidToken> {
        let token = token
            .map(|t| MetadataValue::try_from(format!("Bearer {t}")).map_err(|_| InvalidToken))
            .transpose()?;
        Ok(ClientOptions {
            ca_pem: ca_pem.map(Arc::new),
            token,
        })
    }

    /// `https://host:port` when a CA is configured, else `http://host:port`: how coordinators
    /// dial each other's `raft_addr`.
    pub fn url(&self, host_port: &str) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{host_port}")
    }

    /// An endpoint for `url`, with TLS (verified against the CA) when it is `https://`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, tonic::transport::Error> {
        let ep = Endpoint::from_shared(url.to_string())?;
        if !url.starts_with("https://") {
            return Ok(ep);
        }
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &self.ca_pem {
            tls = tls.ca_certificate(Certificate::from_pem(ca.as_slice()));
        }
        ep.tls_config(tls)
    }

    /// A request carrying the token.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        r
    }
}

/// Why a watch or a report failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("{endpoint}: {message}")]
    Failed { endpoint: String, message: String },
}

/// A connection to one coordinator's `Watch` service, authenticated with the options' token.
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    endpoint: String,
    options: ClientOptions,
    client: WatchClient<Channel>,
    /// Bounds each call (connecting is bounded by the connect timeout).
    call_timeout: Duration,
}

impl CoordinatorClient {
    /// Connects to `endpoint` (`http://host:port` or `https://host:port`, a coordinator's
    /// `raft.listen`) within `connect_timeout`; the connection is kept alive with HTTP/2 pings
    /// (a dead coordinator is noticed within about 10 s). Each call must start answering within
    /// twice `connect_timeout`.
    pub async fn connect(
        endpoint: &str,
        options: &ClientOptions,
        connect_timeout: Duration,
    ) -> Result<Self, WatchError> {
        let ep = options
            .endpoint(endpoint)
            .map_err(|source| WatchError::Endpoint {
                endpoint: endpoint.to_string(),
                source,
            })?
            .connect_timeout(connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        Self::connect_to(endpoint, options, ep, connect_timeout * 2).await
    }

    async fn connect_to(
        endpoint: &str,
        options: &ClientOptions,
        ep: Endpoint,
        call_timeout: Duration,
    ) -> Result<Self, WatchError> {
        let failed = |message: String| WatchError::Failed {
            endpoint: endpoint.to_string(),
            message,
        };
        let channel = tokio::time::timeout(call_timeout, ep.connect())
            .await
            .map_err(|_| failed("no answer in time".into()))?
            .map_err(|e| failed(e.to_string()))?;
        Ok(CoordinatorClient {
            endpoint: endpoint.to_string(),
            options: options.clone(),
            client: WatchClient::new(channel),
            call_timeout,
        })
    }

    fn failed(&self, message: String) -> WatchError {
        WatchError::Failed {
            endpoint: self.endpoint.clone(),
            message,
        }
    }

    /// Starts a watch from the policy version the worker has (0: none); see `Watch.Watch` in
    /// `proto/tailsift/coordinator/v1/watch.proto`.
    pub async fn watch(&mut self, from_version: u64) -> Result<tonic::Streaming<PolicyUpdate>, WatchError> {
        let req = self.options.request(WatchRequest { from_version });
        match tokio::time::timeout(self.call_timeout, self.client.watch(req)).await {
            Err(_) => Err(self.failed("no answer in time".into())),
            Ok(Err(s)) => Err(self.failed(s.to_string())),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// Tells the coordinator what the worker runs.
    pub async fn report_applied(&mut self, report: AppliedReport) -> Result<(), WatchError> {
        let req = self.options.request(report);
        match tokio::time::timeout(self.call_timeout, self.client.report_applied(req)).await {
            Err(_) => Err(self.failed("no answer in time".into())),
            Ok(Err(s)) => Err(self.failed(s.to_string())),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

/// Connects to `endpoint` (`http://host:port` or `https://host:port`, a coordinator's
/// `raft.listen`) and starts a watch, authenticated with `options`' token.
pub async fn watch(
    endpoint: &str,
    options: &ClientOptions,
    from_version: u64,
    connect_timeout: Duration,
) -> Result<tonic::Streaming<PolicyUpdate>, WatchError> {
    CoordinatorClient::connect(endpoint, options, connect_timeout)
        .await?
        .watch(from_version)
        .await
}

/// Tells the coordinator at `endpoint` which version a worker applies (`report`), on a new
/// connection that is closed afterwards; `timeout` bounds connecting and the call.
pub async fn report_applied(
    endpoint: &str,
    options: &ClientOptions,
    report: AppliedReport,
    timeout: Duration,
) -> Result<(), WatchError> {
    let ep = options
        .endpoint(endpoint)
        .map_err(|source| WatchError::Endpoint {
            endpoint: endpoint.to_string(),
            source,
        })?
        .connect_timeout(timeout)
        .timeout(timeout);
    CoordinatorClient::connect_to(endpoint, options, ep, timeout * 2)
        .await?
        .report_applied(report)
        .await
}
