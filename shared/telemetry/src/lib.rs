//! Logging, the Prometheus recorder and the `/metrics`, `/healthz`, `/readyz` admin endpoints every
//! role serves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `--log-format` is neither `text` nor `json`.
    #[error("unknown log format `{0}` (expected text or json)")]
    UnknownFormat(String),
    /// The log level is not a valid `EnvFilter` directive.
    #[error("invalid log level `{filter}`: {source}")]
    InvalidLevel {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
}

impl std::str::FromStr for LogFormat {
    type Err = LoggingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(LoggingError::UnknownFormat(other.to_string())),
        }
    }
}

/// Installs the global `tracing` subscriber. `filter` is an `EnvFilter` directive such as `info`
/// or `tailsift_ingest=debug,info`. Calling it twice is harmless (the first call wins).
pub fn init_logging(filter: &str, format: LogFormat) -> Result<(), LoggingError> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|source| LoggingError::InvalidLevel {
        filter: filter.to_string(),
        source,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// Histogram buckets for durations in seconds: 100 µs to 60 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle, so
/// several nodes can run in one test process).
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by a test); keep ours for rendering.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Readiness flag shared between a service and its `/readyz` endpoint.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    reason: Arc<std::sync::Mutex<String>>,
}

impl Readiness {
    pub fn new() -> Self {
        let r = Readiness::default();
        r.set(false, "starting");
        r
    }

    pub fn set(&self, ready: bool, reason: &str) {
        self.ready.store(ready, Ordering::Release);
        if let Ok(mut g) = self.reason.lock() {
            reason.clone_into(&mut g);
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn reason(&self) -> String {
        self.reason.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

#[derive(Clone)]
struct AdminState {
    handle: PrometheusHandle,
    readiness: Readiness,
}

/// The admin router: `GET /metrics` (Prometheus text format), `GET /healthz` (the process is
/// alive), `GET /readyz` (200 while the service can do its job, 503 with the reason otherwise).
/// Services may merge their own routes into it.
pub fn admin_router(readiness: Readiness) -> Router {
    let state = AdminState {
        handle: prometheus(),
        readiness,
    };
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(state)
}

async fn metrics_handler(State(s): State<AdminState>) -> impl IntoResponse {
    s.handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.handle.render(),
    )
}

async fn ready_handler(State(s): State<AdminState>) -> impl IntoResponse {
    if s.readiness.is_ready() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", s.readiness.reason()),
        )
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds a TCP listener, with an error that names what it was for.
pub async fn bind(what: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener, std::io::Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}")))
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logging_errors_keep_their_messages() {
        let e = "xml".parse::<LogFormat>().unwrap_err();
        assert_eq!(e.to_string(), "unknown log format `xml` (expected text or json)");
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        // An invalid filter fails before anything is installed.
        let e = init_logging("info,=[", LogFormat::Text).unwrap_err();
        assert!(matches!(e, LoggingError::InvalidLevel { .. }));
        assert!(e.to_string().starts_with("invalid log level `info,=[`: "), "{e}");
    }
}
