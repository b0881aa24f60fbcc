//! Authentication on `raft.listen` and the client options of every gRPC caller of it.
//!
//! Server side, [`Guarded`] wraps each service where it is mounted (`lib.rs`):
//!
//! * `tailsift.coordinator.v1.Watch` (`Watch`, `ReportApplied`) needs `authorization: Bearer
//!   <token>` with any token of `admin.tokens` (role `read_only` is enough); it also counts the
//!   open Watch streams (`tailsift_coordinator_watchers_connected`) and the workers known
//!   (`tailsift_coordinator_workers_reported`).
//! * `tailsift.coordinator.v1.Raft` needs `authorization: Bearer <raft.cluster_token>` when that
//!   is set; without it Raft RPCs are not authenticated (the port must be private).
//!
//! Tokens are compared in constant time against every candidate. A missing or wrong token is
//! answered with 16 UNAUTHENTICATED before the request reaches the service.
//!
//! Client side, [`ClientOptions`] (from `tailsift-proto`) carries the CA to verify an `https://`
//! endpoint with and the token to send.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderMap};
use http_body_util::BodyExt;
use subtle::ConstantTimeEq;
use tonic::Status;

use crate::config::Token;
use crate::watch::Workers;

/// The bearer token of an `authorization` header (or gRPC metadata entry); empty when none.
pub(crate) fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("")
}

/// The configured token equal to `given`, comparing against every one in constant time (no
/// early exit, so timing does not tell which matched).
pub(crate) fn find_token<'a>(tokens: &'a [Token], given: &str) -> Option<&'a Token> {
    let mut found = None;
    for t in tokens {
        let eq: bool = given.as_bytes().ct_eq(t.token.as_bytes()).into();
        if eq && !given.is_empty() {
            found = Some(t);
        }
    }
    found
}

/// What a guarded service requires.
#[derive(Clone)]
enum Check {
    /// Any `admin.tokens` token (the Watch service).
    AnyToken(Arc<Vec<Token>>),
    /// `raft.cluster_token`, when set (the Raft service).
    Cluster(Option<Arc<str>>),
}

/// A gRPC service behind a token check (see the module documentation).
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    check: Check,
    node: Arc<str>,
    workers: Option<Workers>,
}

impl<S> Guarded<S> {
    /// The Watch service of node `node`: any admin token; counts watchers and workers.
    pub fn watch(inner: S, tokens: Vec<Token>, node: u64, workers: Workers) -> Self {
        let node: Arc<str> = node.to_string().into();
        ::metrics::gauge!(crate::metrics::WATCHERS_CONNECTED, "node" => node.to_string()).set(0.0);
        ::metrics::gauge!(crate::metrics::WORKERS_REPORTED, "node" => node.to_string()).set(workers.len() as f64);
        Guarded {
            inner,
            check: Check::AnyToken(Arc::new(tokens)),
            node,
            workers: Some(workers),
        }
    }

    /// The Raft service: `cluster_token` when set, otherwise open.
    pub fn raft(inner: S, cluster_token: Option<String>, node: u64) -> Self {
        Guarded {
            inner,
            check: Check::Cluster(cluster_token.map(Into::into)),
            node: node.to_string().into(),
            workers: None,
        }
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let given = bearer(headers);
        match &self.check {
            Check::AnyToken(tokens) => find_token(tokens, given).is_some(),
            Check::Cluster(None) => true,
            Check::Cluster(Some(t)) => !given.is_empty() && bool::from(given.as_bytes().ct_eq(t.as_bytes())),
        }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

/// Holds one unit of a gauge while alive.
struct Held(::metrics::Gauge);

impl Held {
    fn new(g: ::metrics::Gauge) -> Self {
        g.increment(1.0);
        Held(g)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

type Resp = http::Response<tonic::body::Body>;

impl<S> tower_service::Service<http::Request<tonic::body::Body>> for Guarded<S>
where
    S: tower_service::Service<http::Request<tonic::body::Body>, Response = Resp, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if !self.allows(req.headers()) {
            let msg = match self.check {
                Check::AnyToken(_) => "a valid bearer token (admin.tokens) is required",
                Check::Cluster(_) => "the cluster token (raft.cluster_token) is required",
            };
            return Box::pin(async move { Ok(Status::unauthenticated(msg).into_http()) });
        }
        // What to count once the service has answered (only the Watch service has workers).
        let path = req.uri().path();
        let after = match &self.workers {
            Some(_) if path.ends_with("/Watch") => After::Stream,
            Some(w) if path.ends_with("/ReportApplied") => After::Workers(w.clone()),
            _ => After::Nothing,
        };
        let fut = self.inner.call(req);
        let node = self.node.clone();
        Box::pin(async move {
            let resp = fut.await?;
            match after {
                After::Stream => {
                    // Counted until the response stream is dropped: it ended, or the client left.
                    let held =
                        Held::new(::metrics::gauge!(crate::metrics::WATCHERS_CONNECTED, "node" => node.to_string()));
                    let (parts, body) = resp.into_parts();
                    let body = body.map_frame(move |f| {
                        let _ = &held;
                        f
                    });
                    Ok(http::Response::from_parts(parts, tonic::body::Body::new(body)))
                }
                After::Workers(w) => {
                    ::metrics::gauge!(crate::metrics::WORKERS_REPORTED, "node" => node.to_string()).set(w.len() as f64);
                    Ok(resp)
                }
                After::Nothing => Ok(resp),
            }
        })
    }
}

enum After {
    Nothing,
    /// A Watch stream: counted in `watchers_connected` while open.
    Stream,
    /// A report: `workers_reported` is refreshed.
    Workers(Workers),
}

/// How a client reaches `raft.listen` (CA, bearer token); lives in `tailsift-proto` with the
/// other client code.
pub use tailsift_proto::client::{ClientOptions, InvalidToken};
