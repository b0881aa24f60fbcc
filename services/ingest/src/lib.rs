//! The Tailsift ingest node.
//!
//! Receives spans over OTLP/gRPC and OTLP/HTTP, splits every request by trace ID without decoding
//! spans ([`tailsift_otlp::split_by_trace`]), and publishes one Kafka record per trace per request,
//! keyed by the hex trace ID, to the spans topic. A request is acknowledged only after Kafka
//! acknowledged all of its records; when Kafka cannot take more, clients get OTLP's retryable
//! errors (gRPC `UNAVAILABLE`, HTTP 503 with `Retry-After`).

pub mod config;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod publisher;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::Producer;
use tailsift_telemetry::Readiness;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::IngestConfig;
use pipeline::Pipeline;
use publisher::Publisher;

/// Errors that stop an ingest node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating Kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("OTLP/gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// The sockets an ingest node serves on. Tests bind port 0 and read the addresses back.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the addresses from the config.
    pub async fn bind(cfg: &IngestConfig) -> Result<Self, std::io::Error> {
        Ok(Listeners {
            grpc: tailsift_telemetry::bind("OTLP/gRPC", cfg.otlp.grpc_listen).await?,
            http: tailsift_telemetry::bind("OTLP/HTTP", cfg.otlp.http_listen).await?,
            admin: tailsift_telemetry::bind("admin", cfg.admin.listen).await?,
        })
    }

    /// The bound addresses: (gRPC, HTTP, admin).
    pub fn addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr, SocketAddr)> {
        Ok((self.grpc.local_addr()?, self.http.local_addr()?, self.admin.local_addr()?))
    }
}

/// Runs an ingest node until `shutdown` is cancelled, then stops accepting, lets in-flight
/// requests finish, flushes the producer and returns.
pub async fn run(cfg: IngestConfig, listeners: Listeners, shutdown: CancellationToken) -> Result<(), Error> {
    tailsift_telemetry::prometheus();
    metrics::describe();
    let (grpc_addr, http_addr, admin_addr) = listeners.addrs()?;
    let readiness = Readiness::new();
    let kafka_up = Arc::new(AtomicBool::new(false));
    let publisher = Arc::new(Publisher::new(&cfg.kafka, cfg.limits.max_in_flight_bytes, kafka_up.clone())?);
    let pipeline = Arc::new(Pipeline::new(publisher.clone(), cfg.kafka.max_record_bytes));

    // Kafka probe: drives readiness, creates the topic when missing, fails requests fast while
    // the cluster is unreachable.
    let probe = tokio::spawn(probe_loop(cfg.clone(), publisher.clone(), kafka_up, readiness.clone(), shutdown.clone()));

    let admin = tokio::spawn(tailsift_telemetry::serve_http(
        listeners.admin,
        tailsift_telemetry::admin_router(readiness.clone()),
        shutdown.clone(),
    ));
    let http = tokio::spawn(tailsift_telemetry::serve_http(
        listeners.http,
        http::router(pipeline.clone(), cfg.limits.max_request_bytes, cfg.limits.retry_after),
        shutdown.clone(),
    ));
    let grpc_svc = grpc::OtlpGrpc::new(pipeline.clone(), cfg.limits.max_request_bytes);
    let grpc_shutdown = shutdown.clone();
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(grpc_svc)
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listeners.grpc), async move {
                grpc_shutdown.cancelled().await
            }),
    );
    tracing::info!(%grpc_addr, %http_addr, %admin_addr, topic = %cfg.kafka.topic, brokers = %cfg.kafka.brokers, "ingest node listening");

    shutdown.cancelled().await;
    tracing::info!("ingest node stopping: draining requests");
    readiness.set(false, "shutting down");
    let (g, h) = tokio::join!(grpc, http);
    let _ = probe.await;
    let flush = publisher.clone();
    let timeout = cfg.kafka.delivery_timeout;
    tokio::task::spawn_blocking(move || flush.close(timeout)).await.ok();
    let _ = admin.await;
    tracing::info!(queued = publisher.producer().in_flight_count(), "ingest node stopped");
    g.map_err(join_err)??;
    h.map_err(join_err)??;
    Ok(())
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Io(std::io::Error::other(e.to_string()))
}

async fn probe_loop(
    cfg: IngestConfig,
    publisher: Arc<Publisher>,
    kafka_up: Arc<AtomicBool>,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let topic = cfg.kafka.topic.clone();
    let timeout = cfg.kafka.probe_interval.max(Duration::from_secs(1));
    let mut last: Option<bool> = None;
    loop {
        let p = publisher.clone();
        let t = topic.clone();
        let probe = tokio::task::spawn_blocking(move || {
            let md = p.producer().client().fetch_metadata(Some(&t), timeout).map_err(|e| e.to_string())?;
            let exists = md.topics().iter().any(|mt| mt.name() == t && mt.error().is_none() && !mt.partitions().is_empty());
            Ok::<bool, String>(exists)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let status = match probe {
            Ok(true) => Ok(()),
            Ok(false) if cfg.kafka.topic_spec.create => {
                match tailsift_kafka::ensure_topic(&cfg.kafka.connection(), &topic, &cfg.kafka.topic_spec, timeout).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!("creating topic {topic}: {e}")),
                }
            }
            Ok(false) => Err(format!("topic {topic} does not exist and kafka.topic_spec.create is false")),
            Err(e) => Err(format!("Kafka metadata: {e}")),
        };
        let up = status.is_ok();
        kafka_up.store(up, Ordering::Release);
        ::metrics::gauge!(metrics::KAFKA_READY).set(if up { 1.0 } else { 0.0 });
        ::metrics::gauge!(metrics::PRODUCER_QUEUE).set(publisher.producer().in_flight_count() as f64);
        match &status {
            Ok(()) => readiness.set(true, "ok"),
            Err(e) => readiness.set(false, e),
        }
        if last != Some(up) {
            match &status {
                Ok(()) => tracing::info!(%topic, "Kafka reachable, ingest ready"),
                Err(e) => tracing::warn!(error = %e, "Kafka not reachable, answering retryable errors"),
            }
            last = Some(up);
        }
        // Probe faster while down, so recovery is noticed quickly.
        let wait = if up { cfg.kafka.probe_interval } else { cfg.kafka.probe_interval.min(Duration::from_millis(500)) };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
