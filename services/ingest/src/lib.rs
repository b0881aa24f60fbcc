//! The ingest node: receivers, admission limits, split, publish, acknowledge only what Kafka
//! acknowledged.
//!
//! Receives spans over OTLP/gRPC and OTLP/HTTP, Zipkin (HTTP: v2 JSON and proto3, v1 JSON and
//! thrift) and Jaeger (agent UDP compact and binary thrift, collector HTTP thrift and gRPC),
//! translating the latter to OTLP with `tailsift-translate`, splits every request by trace ID without decoding
//! spans ([`tailsift_otlp::split_by_trace`]), and publishes one Kafka record per trace per request,
//! keyed by the hex trace ID, to the spans topic. A request is acknowledged only after Kafka
//! acknowledged all of its records; when Kafka cannot take more, clients get OTLP's retryable
//! errors (gRPC `UNAVAILABLE`, HTTP 503 with `Retry-After`).
//!
//! `tailsift standalone` runs the same node on an in-process log instead of Kafka
//! ([`run_on`] with [`Transport::InProcess`]): same keys, partitioner, limits and answers, a full
//! log being answered like a full producer queue.

pub mod admission;
mod body;
pub mod config;
pub mod grpc;
pub mod http;
pub mod jaeger;
pub mod metrics;
pub mod pipeline;
pub mod publisher;
mod receive;
pub mod server;
pub mod udp;
pub mod zipkin;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::Producer;
use tailsift_kafka::memlog::MemLog;
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
    /// Zipkin HTTP (`zipkin.listen`), when enabled.
    pub zipkin: Option<TcpListener>,
    /// Jaeger collector HTTP (`jaeger.http_listen`), when enabled.
    pub jaeger_http: Option<TcpListener>,
    /// Jaeger collector gRPC (`jaeger.grpc_listen`), when enabled.
    pub jaeger_grpc: Option<TcpListener>,
    /// Jaeger agent compact thrift over UDP (`jaeger.compact_udp_listen`), when enabled.
    pub jaeger_compact_udp: Option<tokio::net::UdpSocket>,
    /// Jaeger agent binary thrift over UDP (`jaeger.binary_udp_listen`), when enabled.
    pub jaeger_binary_udp: Option<tokio::net::UdpSocket>,
}

/// The bound addresses of the Zipkin and Jaeger receivers (`None`: disabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverAddrs {
    pub zipkin: Option<SocketAddr>,
    pub jaeger_http: Option<SocketAddr>,
    pub jaeger_grpc: Option<SocketAddr>,
    pub jaeger_compact_udp: Option<SocketAddr>,
    pub jaeger_binary_udp: Option<SocketAddr>,
}

impl Listeners {
    /// Binds the addresses from the config.
    pub async fn bind(cfg: &IngestConfig) -> Result<Self, std::io::Error> {
        Ok(Listeners {
            grpc: tailsift_telemetry::bind("OTLP/gRPC", cfg.otlp.grpc_listen).await?,
            http: tailsift_telemetry::bind("OTLP/HTTP", cfg.otlp.http_listen).await?,
            admin: tailsift_telemetry::bind("admin", cfg.admin.listen).await?,
            zipkin: match cfg.zipkin.enabled {
                true => Some(tailsift_telemetry::bind("Zipkin", cfg.zipkin.listen).await?),
                false => None,
            },
            jaeger_http: bind_opt("Jaeger HTTP", cfg.jaeger.enabled, cfg.jaeger.http_listen).await?,
            jaeger_grpc: bind_opt("Jaeger gRPC", cfg.jaeger.enabled, cfg.jaeger.grpc_listen).await?,
            jaeger_compact_udp: bind_udp("Jaeger compact thrift (UDP)", cfg, cfg.jaeger.compact_udp_listen)?,
            jaeger_binary_udp: bind_udp("Jaeger binary thrift (UDP)", cfg, cfg.jaeger.binary_udp_listen)?,
        })
    }

    /// The bound addresses of the Zipkin and Jaeger receivers.
    pub fn receiver_addrs(&self) -> std::io::Result<ReceiverAddrs> {
        fn tcp(l: &Option<TcpListener>) -> std::io::Result<Option<SocketAddr>> {
            l.as_ref().map(|l| l.local_addr()).transpose()
        }
        fn udp(l: &Option<tokio::net::UdpSocket>) -> std::io::Result<Option<SocketAddr>> {
            l.as_ref().map(|l| l.local_addr()).transpose()
        }
        Ok(ReceiverAddrs {
            zipkin: tcp(&self.zipkin)?,
            jaeger_http: tcp(&self.jaeger_http)?,
            jaeger_grpc: tcp(&self.jaeger_grpc)?,
            jaeger_compact_udp: udp(&self.jaeger_compact_udp)?,
            jaeger_binary_udp: udp(&self.jaeger_binary_udp)?,
        })
    }

    /// The bound addresses: (gRPC, HTTP, admin).
    pub fn addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr, SocketAddr)> {
        Ok((
            self.grpc.local_addr()?,
            self.http.local_addr()?,
            self.admin.local_addr()?,
        ))
    }
}

async fn bind_opt(what: &str, enabled: bool, addr: Option<SocketAddr>) -> std::io::Result<Option<TcpListener>> {
    match addr {
        Some(a) if enabled => Ok(Some(tailsift_telemetry::bind(what, a).await?)),
        _ => Ok(None),
    }
}

fn bind_udp(
    what: &str,
    cfg: &IngestConfig,
    addr: Option<SocketAddr>,
) -> std::io::Result<Option<tokio::net::UdpSocket>> {
    let Some(addr) = addr.filter(|_| cfg.jaeger.enabled) else {
        return Ok(None);
    };
    let want = cfg.jaeger.udp_receive_buffer_bytes;
    let (sock, got) = udp::bind(what, addr, want)?;
    // Linux reports twice the size set (bookkeeping overhead included).
    if got < want {
        tracing::warn!(
            receiver = what, requested = want, effective = got,
            "UDP receive buffer smaller than jaeger.udp_receive_buffer_bytes; raise net.core.rmem_max, or bursts of spans will be dropped by the kernel"
        );
    }
    Ok(Some(sock))
}

/// Where an ingest node writes its records.
#[derive(Clone)]
pub enum Transport {
    /// The spans topic of the Kafka cluster in `kafka.*`.
    Kafka,
    /// The in-process log of `tailsift standalone` (same keys, partitioner, limits and answers;
    /// of `kafka.*` only `max_record_bytes` is used).
    InProcess(Arc<MemLog>),
}

/// Runs an ingest node until `shutdown` is cancelled, then stops accepting, lets in-flight
/// requests finish, flushes the producer and returns.
pub async fn run(cfg: IngestConfig, listeners: Listeners, shutdown: CancellationToken) -> Result<(), Error> {
    run_on(cfg, Transport::Kafka, listeners, shutdown).await
}

/// [`run`], writing to `transport`.
pub async fn run_on(
    cfg: IngestConfig,
    transport: Transport,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    tailsift_telemetry::prometheus();
    metrics::describe();
    let (grpc_addr, http_addr, admin_addr) = listeners.addrs()?;
    let receivers = listeners.receiver_addrs()?;
    let readiness = Readiness::new();
    let kafka_up = Arc::new(AtomicBool::new(false));
    let budget = admission::Budget::new(cfg.limits.max_in_flight_bytes);
    let publisher = Arc::new(match &transport {
        Transport::Kafka => Publisher::new(&cfg.kafka, budget.clone(), kafka_up.clone())?,
        Transport::InProcess(log) => Publisher::in_process(log.clone(), budget.clone()),
    });
    let admission = admission::Admission::new(
        budget,
        cfg.limits.max_concurrent_requests,
        cfg.limits.max_request_bytes,
        cfg.limits.read_timeout,
        cfg.limits.retry_after,
    );
    let timeouts = server::Timeouts {
        read: cfg.limits.read_timeout,
        idle: cfg.limits.idle_timeout,
    };
    let connections = server::Connections::new(cfg.limits.max_connections);
    let pipeline = Arc::new(Pipeline::new(publisher.clone(), cfg.kafka.max_record_bytes));

    // Kafka probe: drives readiness, creates the topic when missing, fails requests fast while
    // the cluster is unreachable. The in-process log is always there.
    let probe = match publisher.producer() {
        Some(producer) => Some(tokio::spawn(probe_loop(
            cfg.clone(),
            producer.clone(),
            kafka_up,
            readiness.clone(),
            shutdown.clone(),
        ))),
        None => {
            readiness.set(true, "ok");
            None
        }
    };

    let admin = tokio::spawn(tailsift_telemetry::serve_http(
        listeners.admin,
        tailsift_telemetry::admin_router(readiness.clone()),
        shutdown.clone(),
    ));
    let http = tokio::spawn(server::serve_http(
        listeners.http,
        http::router(pipeline.clone(), admission.clone()),
        timeouts,
        connections.clone(),
        shutdown.clone(),
    ));
    let grpc_svc = grpc::OtlpGrpc::new(pipeline.clone(), admission.clone());
    let grpc_shutdown = shutdown.clone();
    let (mut grpc_server, grpc_incoming) = server::grpc_server(listeners.grpc, timeouts);
    let grpc = tokio::spawn(
        grpc_server
            .add_service(grpc_svc)
            .serve_with_incoming_shutdown(server::limited(grpc_incoming, connections.clone()), async move {
                grpc_shutdown.cancelled().await
            }),
    );
    // Zipkin and Jaeger receivers: translated to OTLP, then the same path.
    let mut extra: Vec<tokio::task::JoinHandle<Result<(), Error>>> = Vec::new();
    if let Some(l) = listeners.zipkin {
        let f = server::serve_http(
            l,
            zipkin::router(pipeline.clone(), admission.clone()),
            timeouts,
            connections.clone(),
            shutdown.clone(),
        );
        extra.push(tokio::spawn(async move { f.await.map_err(Error::from) }));
    }
    if let Some(l) = listeners.jaeger_http {
        let f = server::serve_http(
            l,
            jaeger::http_router(pipeline.clone(), admission.clone()),
            timeouts,
            connections.clone(),
            shutdown.clone(),
        );
        extra.push(tokio::spawn(async move { f.await.map_err(Error::from) }));
    }
    if let Some(l) = listeners.jaeger_grpc {
        let sd = shutdown.clone();
        let (mut srv, incoming) = server::grpc_server(l, timeouts);
        let f = srv
            .add_service(jaeger::JaegerGrpc::new(pipeline.clone(), admission.clone()))
            .serve_with_incoming_shutdown(server::limited(incoming, connections.clone()), async move {
                sd.cancelled().await
            });
        extra.push(tokio::spawn(async move { f.await.map_err(Error::from) }));
    }
    let (max_dgram, max_in_flight) = (cfg.jaeger.udp_max_datagram_bytes, cfg.jaeger.udp_max_in_flight);
    for (sock, protocol, decode) in [
        (
            listeners.jaeger_compact_udp,
            pipeline::Protocol::JaegerThriftCompactUdp,
            tailsift_translate::jaeger::decode_agent_compact as receive::Decode,
        ),
        (
            listeners.jaeger_binary_udp,
            pipeline::Protocol::JaegerThriftBinaryUdp,
            tailsift_translate::jaeger::decode_agent_binary as receive::Decode,
        ),
    ] {
        if let Some(sock) = sock {
            let f = udp::serve(
                sock,
                protocol,
                decode,
                pipeline.clone(),
                max_dgram,
                max_in_flight,
                shutdown.clone(),
            );
            extra.push(tokio::spawn(async move {
                f.await;
                Ok(())
            }));
        }
    }
    tracing::info!(
        zipkin = ?receivers.zipkin, jaeger_http = ?receivers.jaeger_http, jaeger_grpc = ?receivers.jaeger_grpc,
        jaeger_compact_udp = ?receivers.jaeger_compact_udp, jaeger_binary_udp = ?receivers.jaeger_binary_udp,
        "Zipkin and Jaeger receivers listening"
    );
    match &transport {
        Transport::Kafka => {
            tracing::info!(%grpc_addr, %http_addr, %admin_addr, topic = %cfg.kafka.topic, brokers = %cfg.kafka.brokers, "ingest node listening")
        }
        Transport::InProcess(log) => {
            tracing::info!(%grpc_addr, %http_addr, %admin_addr, partitions = log.partitions(), "ingest node listening (in-process log)")
        }
    }

    shutdown.cancelled().await;
    tracing::info!("ingest node stopping: draining requests");
    readiness.set(false, "shutting down");
    let (g, h) = tokio::join!(grpc, http);
    let mut extra_results = Vec::new();
    for t in extra {
        extra_results.push(t.await);
    }
    if let Some(probe) = probe {
        let _ = probe.await;
    }
    let flush = publisher.clone();
    let timeout = cfg.kafka.delivery_timeout;
    tokio::task::spawn_blocking(move || flush.close(timeout)).await.ok();
    let _ = admin.await;
    tracing::info!(queued = publisher.queued(), "ingest node stopped");
    g.map_err(join_err)??;
    h.map_err(join_err)??;
    for r in extra_results {
        r.map_err(join_err)??;
    }
    Ok(())
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Io(std::io::Error::other(e.to_string()))
}

async fn probe_loop(
    cfg: IngestConfig,
    producer: publisher::IngestProducer,
    kafka_up: Arc<AtomicBool>,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let topic = cfg.kafka.topic.clone();
    let timeout = cfg.kafka.probe_interval.max(Duration::from_secs(1));
    let mut last: Option<bool> = None;
    loop {
        let p = producer.clone();
        let t = topic.clone();
        let probe = tokio::task::spawn_blocking(move || {
            let md = p
                .client()
                .fetch_metadata(Some(&t), timeout)
                .map_err(|e| e.to_string())?;
            let exists = md
                .topics()
                .iter()
                .any(|mt| mt.name() == t && mt.error().is_none() && !mt.partitions().is_empty());
            Ok::<bool, String>(exists)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let status = match probe {
            Ok(true) => Ok(()),
            Ok(false) if cfg.kafka.topic_spec.create => {
                match tailsift_kafka::ensure_topic(&cfg.kafka.connection(), &topic, &cfg.kafka.topic_spec, timeout)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!("creating topic {topic}: {e}")),
                }
            }
            Ok(false) => Err(format!(
                "topic {topic} does not exist and kafka.topic_spec.create is false"
            )),
            Err(e) => Err(format!("Kafka metadata: {e}")),
        };
        let up = status.is_ok();
        kafka_up.store(up, Ordering::Release);
        ::metrics::gauge!(metrics::KAFKA_READY).set(if up { 1.0 } else { 0.0 });
        ::metrics::gauge!(metrics::PRODUCER_QUEUE).set(producer.in_flight_count() as f64);
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
        let wait = if up {
            cfg.kafka.probe_interval
        } else {
            cfg.kafka.probe_interval.min(Duration::from_millis(500))
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
