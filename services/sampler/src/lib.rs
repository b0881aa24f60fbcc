//! The sampling worker: consume, buffer whole traces, decide, export, commit only past decided
//! traces.
//!
//! Consumes the spans topic in a consumer group (cooperative-sticky), buffers whole traces per
//! partition ([`engine`]), decides them with the policy crate, exports kept traces
//! ([`export`]), and commits offsets only up to the lowest offset still needed. Decisions are
//! also written to a decisions topic, so whoever owns a partition next skips traces already
//! exported and routes late spans by the earlier decision.
//!
//! The run loop (`consume`, here) reads through [`RecordSource`] ([`source`]): a Kafka consumer
//! group polled on its own thread ([`source::kafka`], whose rebalance callbacks run the graceful
//! handover and decisions preload of `shared`), or (in `tailsift standalone`) the in-process log of
//! [`tailsift_kafka::memlog`] ([`source::memlog`]), which has the same offsets, keys and
//! partitioning and commits the same way, but no decisions topic. The engine state has one owner,
//! a mutex in `shared` whose lock order is documented there.

pub mod annotate;
pub mod cache;
pub mod capture;
pub mod config;
pub mod coordination;
pub mod decisions;
pub mod engine;
pub mod export;
pub mod extract;
pub mod metrics;
pub mod policy_test;
mod readback;
mod shared;
pub mod source;
#[cfg(test)]
mod source_tests;
pub mod summary;
pub mod whatif;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tailsift_policy::{PolicyDocument, PolicyEngine};
use tailsift_telemetry::Readiness;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::SamplerConfig;
use engine::{ActivePolicy, Engine, EngineConfig};
use shared::Shared;
use source::{kafka::Ctx, kafka::KafkaSource, memlog::LogSource};
pub use source::{RecordSource, SourceRecord, Transport};

/// Errors that stop a sampler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("policy: {0}")]
    Policy(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka: {0}")]
    KafkaSetup(#[from] tailsift_kafka::Error),
    #[error(
        "kafka: cannot create topic {topic}: kafka.topic_spec.replication_factor {replication_factor} is more than the {brokers} broker(s) of the cluster"
    )]
    ReplicationFactor {
        topic: String,
        replication_factor: i32,
        brokers: usize,
    },
    #[error("kafka: topic {topic} (created with kafka.topic_spec, replication_factor {replication_factor}): {source}")]
    CreateTopic {
        topic: String,
        replication_factor: i32,
        source: tailsift_kafka::Error,
    },
    #[error("exporter: {0}")]
    Export(#[from] export::SetupError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The policy used when none is configured: keep every trace with an error, every trace slower
/// than one second, and 10% of the rest (consistently, by trace ID and hash seed).
pub const DEFAULT_POLICY: &str = r#"
policies:
  - name: errors
    status_code: { codes: [ERROR] }
  - name: slow
    latency: { threshold_ms: 1000 }
  - name: baseline
    probabilistic: { percentage: 10 }
"#;

/// Loads and compiles the configured policy.
pub fn load_policy(cfg: &config::PolicyConfig) -> Result<(PolicyDocument, PolicyEngine), Error> {
    let doc = match &cfg.file {
        None => PolicyDocument::from_yaml(DEFAULT_POLICY).map_err(|e| Error::Policy(e.to_string()))?,
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| Error::Policy(format!("reading {}: {e}", path.display())))?;
            let parsed = PolicyDocument::parse(&text, cfg.format.policy_format()).map(|(doc, _)| doc);
            parsed.map_err(|e| Error::Policy(format!("{}: {e}", path.display())))?
        }
    };
    doc.validate().map_err(|e| Error::Policy(e.to_string()))?;
    let engine = PolicyEngine::compile(&doc).map_err(|e| Error::Policy(e.to_string()))?;
    Ok((doc, engine))
}

/// Sockets a sampler serves on.
pub struct Listeners {
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(cfg: &SamplerConfig) -> std::io::Result<Self> {
        Ok(Listeners {
            admin: tailsift_telemetry::bind("admin", cfg.admin.listen).await?,
        })
    }
}

/// Waits until the spans topic exists; returns its partition count.
async fn wait_for_topic(
    cfg: &SamplerConfig,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<Option<usize>, Error> {
    loop {
        match tailsift_kafka::topic_partitions(&cfg.kafka.connection(), &cfg.kafka.topic, Duration::from_secs(5)).await
        {
            Ok(Some(n)) => return Ok(Some(n)),
            Ok(None) => readiness.set(false, &format!("waiting for topic {}", cfg.kafka.topic)),
            Err(e) => readiness.set(false, &format!("Kafka: {e}")),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Creates `topic` unless it exists, with `kafka.topic_spec` and `partitions` (the spans topic's
/// count), as every topic a sampler creates is (a dead-letter topic too).
///
/// A replication factor above the brokers the cluster reports is refused here, with the key,
/// as Apache Kafka does (some brokers, e.g. tansu, would accept it).
pub async fn create_topic(kafka: &config::KafkaConfig, topic: &str, partitions: i32) -> Result<(), Error> {
    let spec = kafka.created_topic_spec(partitions);
    let conn = kafka.connection();
    let timeout = Duration::from_secs(10);
    let failed = |source| Error::CreateTopic {
        topic: topic.to_string(),
        replication_factor: spec.replication_factor,
        source,
    };
    if tailsift_kafka::topic_partitions(&conn, topic, timeout)
        .await
        .map_err(failed)?
        .is_some()
    {
        return Ok(());
    }
    if spec.replication_factor > 1 {
        let brokers = broker_count(&conn, &kafka.topic, timeout).await.map_err(failed)?;
        if spec.replication_factor as usize > brokers {
            return Err(Error::ReplicationFactor {
                topic: topic.to_string(),
                replication_factor: spec.replication_factor,
                brokers,
            });
        }
    }
    tailsift_kafka::ensure_topic(&conn, topic, &spec, timeout)
        .await
        .map(drop)
        .map_err(failed)
}

/// The brokers in the cluster's metadata (asked about the existing `topic`).
async fn broker_count(
    conn: &tailsift_kafka::Connection,
    topic: &str,
    timeout: Duration,
) -> Result<usize, tailsift_kafka::Error> {
    let client: BaseConsumer = conn.client_config().create()?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        client
            .fetch_metadata(Some(&topic), timeout)
            .map(|md| md.brokers().len())
    })
    .await
    .map_err(|e| tailsift_kafka::Error::Metadata(e.to_string()))?
    .map_err(Into::into)
}

/// Runs a sampler on Kafka until `shutdown` is cancelled; then hands its partitions over
/// gracefully (decides buffered traces, exports them, commits) and returns.
pub async fn run(cfg: SamplerConfig, listeners: Listeners, shutdown: CancellationToken) -> Result<(), Error> {
    run_on(cfg, Transport::Kafka, listeners, shutdown).await
}

/// [`run`], reading `transport`.
pub async fn run_on(
    cfg: SamplerConfig,
    transport: Transport,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    tailsift_telemetry::prometheus();
    metrics::describe();
    let readiness = Readiness::new();
    let worker_id = coordination::worker_id(&cfg.coordinator, listeners.admin.local_addr()?.port());
    let admin = tokio::spawn(tailsift_telemetry::serve_http(
        listeners.admin,
        tailsift_telemetry::admin_router(readiness.clone()),
        shutdown.clone(),
    ));
    let (doc, policy_engine) = load_policy(&cfg.policy)?;
    tracing::info!(
        version = doc.version,
        policies = policy_engine.policy_names().count(),
        seed = cfg.policy.hash_seed,
        "policy loaded"
    );

    // The decisions producer (Kafka only) and the partition count (budget shares).
    let (decisions, total_partitions) = match &transport {
        Transport::Kafka => {
            let Some(partitions) = wait_for_topic(&cfg, &readiness, &shutdown).await? else {
                let _ = admin.await;
                return Ok(());
            };
            create_topic(&cfg.kafka, &cfg.kafka.decisions_topic, partitions as i32).await?;
            if cfg.export.kind == config::ExportKind::Kafka {
                create_topic(&cfg.kafka, &cfg.export.kafka_topic, partitions as i32).await?;
            }
            if let Some(topic) = &cfg.export.dead_letter_topic {
                create_topic(&cfg.kafka, topic, partitions as i32).await?;
            }
            let (decisions, _) = tailsift_kafka::served::ServedProducer::start_delivering(
                cfg.kafka
                    .connection()
                    .client_config()
                    .set("acks", "all")
                    .set("linger.ms", "20")
                    .set("compression.type", "lz4")
                    .set("message.timeout.ms", "30000"),
            )?;
            (Some(decisions), partitions)
        }
        Transport::InProcess(log) => (None, log.partitions() as usize),
    };

    // With coordinators configured, the version persisted by an earlier run wins over the file.
    let initial_policy = if cfg.coordinator.endpoints.is_empty() {
        None
    } else {
        coordination::initial(&cfg.coordinator)
    };
    let from_version = initial_policy.as_ref().map_or(0, |p| p.version);
    let mut engine = Engine::new(
        EngineConfig::from_config(&cfg.decision, &cfg.memory),
        initial_policy.unwrap_or(ActivePolicy {
            version: doc.version,
            seed: cfg.policy.hash_seed,
            engine: policy_engine,
        }),
        Instant::now(),
    );
    engine.set_total_partitions(total_partitions);
    let (export_tx, export_rx) = mpsc::channel(cfg.export.queue_traces);
    let (readback_tx, readback_rx) = std::sync::mpsc::sync_channel(cfg.export.queue_traces);
    let exporter = export::Exporter::new(&cfg.export, &cfg.kafka)?;
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        export_tx,
        readback_tx,
        decisions,
        decisions_topic: cfg.kafka.decisions_topic.clone(),
        spans_topic: cfg.kafka.topic.clone(),
        decisions_replay: cfg.kafka.decisions_replay,
        conn: cfg.kafka.connection(),
        handover_timeout: cfg.export.timeout * 3,
        resume_lookback: cfg.kafka.resume_lookback_records,
        rebalancing: AtomicBool::new(false),
    });

    let captures = Arc::new(capture::Captures::default());
    let coordination = {
        let shared = shared.clone();
        let with_engine = move |f: &mut dyn FnMut(&mut Engine)| f(&mut shared.engine.lock().unwrap());
        tokio::spawn(coordination::run(
            cfg.coordinator.clone(),
            worker_id,
            from_version,
            with_engine,
            captures.clone(),
            shutdown.clone(),
        ))
    };
    let capture_runner = tokio::spawn(capture::run(
        captures,
        shared.clone(),
        capture::RunnerConfig {
            export: cfg.export.clone(),
            kafka: cfg.kafka.clone(),
            decision_wait: cfg.decision.decision_wait,
            partitions: total_partitions as i32,
            kafka_transport: matches!(transport, Transport::Kafka),
        },
        shutdown.clone(),
    ));

    // Export task: acknowledgements go straight to the engine (they unpin offsets).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
    let export_shutdown = CancellationToken::new();
    let exporter_task = tokio::spawn(export::run_exporter(
        exporter,
        cfg.export.clone(),
        export_rx,
        done_tx,
        export_shutdown.clone(),
    ));
    let acker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(id) = done_rx.recv().await {
                shared.engine.lock().unwrap().on_export_done(id);
            }
        })
    };

    // Traces buffered as an index are read back from the log by a thread of its own (blocking
    // reads); it runs until after the final handover, which waits for its answers.
    let readback_stop = CancellationToken::new();
    let reader = if cfg.memory.mode == config::BufferMode::Memory {
        None
    } else {
        let log: Box<dyn readback::LogReader> = match &transport {
            Transport::Kafka => Box::new(readback::KafkaLog::new(&cfg.kafka.connection(), &cfg.kafka.topic)?),
            Transport::InProcess(log) => Box::new(readback::MemLogReader::new(log.clone())),
        };
        let (shared, stop) = (shared.clone(), readback_stop.clone());
        let lookback = cfg.kafka.resume_lookback_records;
        Some(
            std::thread::Builder::new()
                .name("tailsift-readback".into())
                .spawn(move || readback::run(log, readback_rx, shared, lookback, stop))?,
        )
    };

    match transport {
        Transport::Kafka => {
            let mut cc = cfg.kafka.connection().client_config();
            cc.set("group.id", &cfg.kafka.group_id)
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "1000")
                .set("max.poll.interval.ms", "300000")
                // librdkafka's 500 ms default adds up to that much to every decision's latency on
                // a quiet partition (docs/benchmarks.md); 100 ms costs a few idle fetches a second.
                .set("fetch.wait.max.ms", "100")
                // What librdkafka prefetches while the engine is busy: its default (64 MiB) is
                // memory that grows when the sampler falls behind, outside the buffer's limits;
                // 16 MiB is hundreds of fetches' worth at any rate one sampler decides.
                .set("queued.max.messages.kbytes", "16384");
            for (k, v) in &cfg.kafka.properties {
                cc.set(k, v);
            }
            let consumer: BaseConsumer<Ctx> = cc.create_with_context(Ctx { shared: shared.clone() })?;
            consumer.subscribe(&[&cfg.kafka.topic])?;
            readiness.set(true, "ok");
            tracing::info!(topic = %cfg.kafka.topic, group = %cfg.kafka.group_id, export = ?cfg.export.kind, endpoint = %cfg.export.endpoint, "sampler consuming");
            let source = Arc::new(KafkaSource::start(consumer, cfg.kafka.topic.clone())?);
            consume(source.clone(), &shared, &cfg, &readiness, &shutdown).await;
            // Leaving the group may wait for the broker: off the runtime.
            let _ = tokio::task::spawn_blocking(move || {
                source.consumer.unsubscribe();
                drop(source);
            })
            .await;
        }
        Transport::InProcess(log) => {
            let source = Arc::new(LogSource::assign_all(log, &shared));
            readiness.set(true, "ok");
            tracing::info!(export = ?cfg.export.kind, endpoint = %cfg.export.endpoint, output = %cfg.export.output, "sampler consuming the in-process log");
            consume(source, &shared, &cfg, &readiness, &shutdown).await;
        }
    }

    readback_stop.cancel();
    if let Some(reader) = reader {
        let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    }
    let _ = coordination.await;
    let _ = capture_runner.await;
    export_shutdown.cancel();
    let _ = exporter_task.await;
    acker.abort();
    let _ = admin.await;
    tracing::info!("sampler stopped");
    Ok(())
}

/// The run loop, over any [`RecordSource`]: records into the engine, decision ticks, outputs to
/// the exporter (pausing the source while the export queue is full), periodic commits of the
/// committable offsets and lag; on `shutdown`, the graceful handover of every partition.
async fn consume<S: RecordSource>(
    source: Arc<S>,
    shared: &Arc<Shared>,
    cfg: &SamplerConfig,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) {
    let mut tick = tokio::time::interval(cfg.decision.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut commit_tick = tokio::time::interval(cfg.kafka.commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_committed: HashMap<i32, i64> = HashMap::new();
    let mut processed_through: HashMap<i32, i64> = HashMap::new();
    let mut paused = false;
    let mut lag_at = Instant::now();

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let mut e = shared.engine.lock().unwrap();
                e.on_tick(Instant::now());
                let drained = shared.drain(&mut e);
                set_paused(&*source, shared, &mut e, &mut paused, !drained);
            }
            _ = commit_tick.tick() => {
                commit(&*source, shared, &mut last_committed);
                if lag_at.elapsed() >= Duration::from_secs(5) {
                    lag_at = Instant::now();
                    source.clone().report_lag();
                }
            }
            msg = source.recv() => match msg {
                Ok(m) => {
                    let (p, off) = (m.partition, m.offset);
                    if !processed_through.contains_key(&p) {
                        tracing::debug!(partition = p, offset = off, "first record of partition");
                    }
                    let seen = processed_through.entry(p).or_insert(-1);
                    if off <= *seen {
                        ::metrics::counter!(crate::metrics::REPLAYED_RECORDS).increment(1);
                    } else {
                        *seen = off;
                    }
                    let mut e = shared.engine.lock().unwrap();
                    e.on_record(p, off, m.timestamp_ms, m.value, Instant::now());
                    let drained = shared.drain(&mut e);
                    set_paused(&*source, shared, &mut e, &mut paused, !drained);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }

    tracing::info!("sampler stopping: handing partitions over");
    readiness.set(false, "shutting down");
    let parts = shared.engine.lock().unwrap().partitions();
    let s = shared.clone();
    // The handover blocks; run it where blocking is fine.
    tokio::task::spawn_blocking(move || {
        source.stop();
        s.handover(&|offsets| source.commit(offsets, true), &parts)
    })
    .await
    .ok();
}

/// Pauses or resumes the source. The engine is told too, and while a rebalance callback runs:
/// either way records may be waiting, so no partition's clock follows the wall clock.
fn set_paused<S: RecordSource>(source: &S, shared: &Shared, engine: &mut Engine, paused: &mut bool, want: bool) {
    engine.set_paused(want || shared.rebalancing.load(Ordering::Acquire), Instant::now());
    if *paused == want {
        return;
    }
    if source.pause(want).is_ok() {
        *paused = want;
        ::metrics::gauge!(crate::metrics::PAUSED).set(if want { 1.0 } else { 0.0 });
        if want {
            tracing::warn!("export queue full: consumption paused");
        } else {
            tracing::info!("export queue drained: consumption resumed");
        }
    }
}

fn commit<S: RecordSource>(source: &S, shared: &Shared, last: &mut HashMap<i32, i64>) {
    let offsets = shared.engine.lock().unwrap().committable();
    let mut fresh = Vec::new();
    for (p, o) in offsets {
        if last.get(&p).is_some_and(|l| *l >= o) {
            continue;
        }
        fresh.push((p, o));
        last.insert(p, o);
        ::metrics::gauge!(crate::metrics::COMMITTED_OFFSET, "partition" => p.to_string()).set(o as f64);
    }
    if !fresh.is_empty() {
        if let Err(e) = source.commit(&fresh, false) {
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
}
