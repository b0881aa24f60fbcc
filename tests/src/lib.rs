//! The end-to-end test harness: a real broker (tansu) on a free port, in-process nodes on port 0.
//!
//! Harness for Tailsift's end-to-end tests: a real Kafka-protocol broker (tansu) started as a
//! child process on a free loopback port, in-process service nodes bound to port 0, and helpers
//! to read topics back.
//!
//! The broker binary is found via `TAILSIFT_TANSU`, then the project's tool cache
//! (`$HOME/.cache/tailsift/tansu-<version>/bin/tansu`, installed by `deploy/install-tansu.sh`),
//! then `PATH`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// The tansu version the project installs.
pub const TANSU_VERSION: &str = "0.6.0";

/// Finds the tansu binary or panics with how to install it.
pub fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TAILSIFT_TANSU") {
        return PathBuf::from(p);
    }
    if let Ok(home) = std::env::var("HOME") {
        let p = PathBuf::from(home).join(format!(".cache/tailsift/tansu-{TANSU_VERSION}/bin/tansu"));
        if p.exists() {
            return p;
        }
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.exists())
    }) {
        return p;
    }
    panic!("tansu broker not found: run `bash deploy/install-tansu.sh` (or the test command `bash tests/run.sh`), or set TAILSIFT_TANSU");
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Storage for a broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `memory://`: fast, lost on stop.
    Memory,
    /// `sqlite://`: survives a restart of the broker.
    Durable,
}

/// A tansu broker child process. Killed on drop.
pub struct Broker {
    pub port: u16,
    storage: Storage,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    pub fn start(storage: Storage) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = Broker {
            port: free_port(),
            storage,
            dir,
            child: None,
        };
        b.spawn();
        b
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let storage = match self.storage {
            Storage::Memory => "memory://tansu/".to_string(),
            // tansu resolves sqlite paths relative to its working directory.
            Storage::Durable => "sqlite://tansu.db".to_string(),
        };
        let log = std::fs::File::create(self.dir.path().join("broker.log")).expect("broker log");
        let child = Command::new(tansu_binary())
            .arg("broker")
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &storage,
            ])
            .current_dir(self.dir.path())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("starting tansu");
        self.child = Some(child);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start listening: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (SIGKILL). Its data survives with [`Storage::Durable`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// Record headers (name, value), in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Reads every record of `topic` from the beginning of every partition, until `want` records were
/// read or `timeout` passed (then returns what it has).
pub fn read_topic(brokers: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Record> {
    read_topic_until(brokers, topic, want, None, timeout)
}

/// [`read_topic`], then on until no record came for `quiet`: tansu 0.6 can report a high
/// watermark below its last record, so a count taken from the watermarks may stop short.
pub fn read_topic_until_quiet(
    brokers: &str,
    topic: &str,
    at_least: usize,
    quiet: Duration,
    timeout: Duration,
) -> Vec<Record> {
    read_topic_until(brokers, topic, at_least, Some(quiet), timeout)
}

fn read_topic_until(
    brokers: &str,
    topic: &str,
    want: usize,
    quiet: Option<Duration>,
    timeout: Duration,
) -> Vec<Record> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("tailsift-test-reader-{}", rand::random::<u64>()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut last = Instant::now();
    while Instant::now() < deadline {
        if out.len() >= want && quiet.is_none_or(|q| last.elapsed() >= q) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last = Instant::now();
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().unwrap_or_default().to_vec(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers: m
                        .headers()
                        .map(|h| {
                            use rdkafka::message::Headers;
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            }
            Some(Err(e)) => eprintln!("read_topic: {e}"),
            None => {}
        }
    }
    out
}

/// Partition count of `topic`.
pub fn partition_count(brokers: &str, topic: &str) -> usize {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("client");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0)
}

/// An in-process ingest node.
pub struct IngestNode {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), tailsift_ingest::Error>>,
    /// The Zipkin and Jaeger receivers (all bound to 127.0.0.1:0 unless overridden).
    pub receivers: tailsift_ingest::ReceiverAddrs,
}

impl IngestNode {
    /// Starts a node on port 0 with `overrides` (`key.path`, value) on top of test defaults.
    pub async fn start(brokers: &str, topic: &str, overrides: &[(&str, &str)]) -> IngestNode {
        let mut sets: Vec<(String, String)> = vec![
            ("kafka.brokers".into(), brokers.into()),
            ("kafka.topic".into(), topic.into()),
            ("kafka.topic_spec.partitions".into(), "4".into()),
            ("kafka.probe_interval".into(), "200ms".into()),
            ("otlp.grpc_listen".into(), "127.0.0.1:0".into()),
            ("otlp.http_listen".into(), "127.0.0.1:0".into()),
            ("admin.listen".into(), "127.0.0.1:0".into()),
            ("zipkin.listen".into(), "127.0.0.1:0".into()),
            ("jaeger.http_listen".into(), "127.0.0.1:0".into()),
            ("jaeger.grpc_listen".into(), "127.0.0.1:0".into()),
            ("jaeger.compact_udp_listen".into(), "127.0.0.1:0".into()),
            ("jaeger.binary_udp_listen".into(), "127.0.0.1:0".into()),
        ];
        sets.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cfg: tailsift_ingest::IngestConfig = tailsift_config::Sources {
            sets,
            ..Default::default()
        }
        .load()
        .expect("test config is valid");
        let listeners = tailsift_ingest::Listeners::bind(&cfg).await.expect("bind");
        let (grpc, http, admin) = listeners.addrs().unwrap();
        let receivers = listeners.receiver_addrs().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tailsift_ingest::run(cfg, listeners, shutdown.clone()));
        let node = IngestNode {
            grpc,
            http,
            admin,
            shutdown,
            task,
            receivers,
        };
        node.wait_ready(Duration::from_secs(30)).await;
        node
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        let url = format!("http://{}/readyz", self.admin);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "ingest node not ready after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("ingest task")
            .expect("ingest node exits cleanly");
    }
}

/// The value of a Prometheus sample line `name{labels} value` (labels given as they appear,
/// e.g. `protocol="otlp_grpc"`), summed over series matching all given labels.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Groups decoded records by trace ID (hex).
pub fn spans_by_trace(records: &[Record]) -> HashMap<String, Vec<opentelemetry_proto::tonic::trace::v1::Span>> {
    use prost::Message as _;
    let mut out: HashMap<String, Vec<_>> = HashMap::new();
    for r in records {
        let req = tailsift_otlp::ExportTraceServiceRequest::decode(r.payload.as_slice()).expect("record decodes");
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.entry(hex::encode(&s.trace_id)).or_default().push(s);
                }
            }
        }
    }
    out
}

/// Path of a workspace binary (`tailsift`, `tailsift-loadgen`), built by the test command
/// before the tests run.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test-binary>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` (the test command does)",
        p.display()
    );
    p
}

/// A child process killed on drop.
pub struct ChildGuard(pub Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An OTLP/gRPC sink standing in for Jaeger or Tempo: records every span it receives, counts
/// duplicates, can be switched "down" (answers UNAVAILABLE), and can refuse for good
/// (INVALID_ARGUMENT) every request holding a span of a given name ([`Sink::refuse_span_name`]).
#[derive(Clone, Default)]
pub struct Sink {
    inner: std::sync::Arc<SinkInner>,
}

#[derive(Default)]
struct SinkInner {
    spans: std::sync::Mutex<HashMap<[u8; 16], HashMap<Vec<u8>, opentelemetry_proto::tonic::trace::v1::Span>>>,
    duplicates: std::sync::atomic::AtomicU64,
    duplicate_ids: std::sync::Mutex<Vec<([u8; 16], Vec<u8>)>>,
    requests: std::sync::atomic::AtomicU64,
    down: std::sync::atomic::AtomicBool,
    refuse_name: std::sync::Mutex<Option<String>>,
    refused: std::sync::atomic::AtomicU64,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<tailsift_otlp::ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
        tonic::Status,
    > {
        use std::sync::atomic::Ordering;
        if self.inner.down.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("sink is down"));
        }
        let request = request.into_inner();
        if let Some(name) = self.inner.refuse_name.lock().unwrap().as_deref() {
            let spans = request
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans);
            if spans.clone().any(|s| s.name == name) {
                self.inner.refused.fetch_add(1, Ordering::SeqCst);
                return Err(tonic::Status::invalid_argument(format!(
                    "spans named {name} are refused"
                )));
            }
        }
        self.inner.requests.fetch_add(1, Ordering::SeqCst);
        let mut map = self.inner.spans.lock().unwrap();
        for rs in request.resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let Ok(tid) = <[u8; 16]>::try_from(s.trace_id.as_slice()) else {
                        continue;
                    };
                    let span_id = s.span_id.clone();
                    if map.entry(tid).or_default().insert(span_id.clone(), s).is_some() {
                        self.inner.duplicates.fetch_add(1, Ordering::SeqCst);
                        self.inner.duplicate_ids.lock().unwrap().push((tid, span_id));
                    }
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

impl Sink {
    /// Starts the sink on a free port; returns it and its endpoint (`http://127.0.0.1:PORT`).
    pub async fn start() -> (Sink, String) {
        Sink::start_with_limit(64 << 20).await
    }

    /// Like [`Sink::start`], with the gRPC server's maximum decoded (decompressed) message size
    /// set to `max_message_bytes`: larger requests are refused by the server itself (gzip:
    /// RESOURCE_EXHAUSTED; plain: OUT_OF_RANGE), as real backends do (4 MiB is usual).
    pub async fn start_with_limit(max_message_bytes: usize) -> (Sink, String) {
        let sink = Sink::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(
            sink.clone(),
        )
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message_bytes);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (sink, format!("http://{addr}"))
    }

    /// Starts an OTLP/HTTP listener (`POST /v1/traces`, protobuf, gzip or not) recording into the
    /// same sink; returns its endpoint (`http://127.0.0.1:PORT`).
    pub async fn start_http(&self) -> String {
        use axum::http::{HeaderMap, StatusCode};
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService as _;
        use prost::Message as _;
        use tonic::Request;
        let sink = self.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                        let mut out = Vec::new();
                        if std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out).is_err() {
                            return (StatusCode::BAD_REQUEST, Vec::new());
                        }
                        out
                    } else {
                        body.to_vec()
                    };
                    let Ok(req) = tailsift_otlp::ExportTraceServiceRequest::decode(raw.as_slice()) else {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    };
                    match sink.export(Request::new(req)).await {
                        Ok(r) => (StatusCode::OK, r.into_inner().encode_to_vec()),
                        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// From now on, refuse for good (INVALID_ARGUMENT) every request holding a span named `name`.
    pub fn refuse_span_name(&self, name: &str) {
        *self.inner.refuse_name.lock().unwrap() = Some(name.to_string());
    }

    /// Requests refused by [`Sink::refuse_span_name`].
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests accepted.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Spans received per trace (distinct span IDs).
    pub fn traces(&self) -> HashMap<[u8; 16], HashMap<Vec<u8>, opentelemetry_proto::tonic::trace::v1::Span>> {
        self.inner.spans.lock().unwrap().clone()
    }

    pub fn span_count(&self) -> usize {
        self.inner.spans.lock().unwrap().values().map(|t| t.len()).sum()
    }

    pub fn duplicates(&self) -> u64 {
        self.inner.duplicates.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// (trace ID hex, span ID hex) of every span received more than once.
    pub fn duplicate_ids(&self) -> Vec<(String, String)> {
        self.inner
            .duplicate_ids
            .lock()
            .unwrap()
            .iter()
            .map(|(t, s)| (hex::encode(t), hex::encode(s)))
            .collect()
    }

    /// Waits until the number of spans received stops changing for `quiet`.
    pub async fn wait_quiet(&self, quiet: Duration, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = (self.span_count(), Instant::now());
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let n = self.span_count();
            if n != last.0 {
                last = (n, Instant::now());
            } else if last.1.elapsed() >= quiet {
                return;
            }
        }
    }
}

/// An in-process sampler.
pub struct SamplerNode {
    pub admin: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), tailsift_sampler::Error>>,
}

/// Test defaults for samplers: short waits so tests finish quickly.
pub fn sampler_sets(brokers: &str, topic: &str, group: &str, export: &str) -> Vec<(String, String)> {
    vec![
        ("kafka.brokers".into(), brokers.into()),
        ("kafka.topic".into(), topic.into()),
        ("kafka.group_id".into(), group.into()),
        ("kafka.decisions_topic".into(), format!("{topic}-decisions")),
        ("export.endpoint".into(), export.into()),
        ("export.batch_timeout".into(), "50ms".into()),
        ("export.initial_backoff".into(), "50ms".into()),
        ("export.max_backoff".into(), "500ms".into()),
        ("export.timeout".into(), "3s".into()),
        ("decision.send_delay".into(), "500ms".into()),
        ("decision.decision_wait".into(), "4s".into()),
        ("kafka.commit_interval".into(), "200ms".into()),
        // tansu 0.6 skips the rest of a batch when fetching from inside it.
        ("kafka.resume_lookback_records".into(), "10000".into()),
    ]
}

impl SamplerNode {
    pub async fn start(sets: Vec<(String, String)>) -> SamplerNode {
        let mut sets = sets;
        sets.push(("admin.listen".into(), "127.0.0.1:0".into()));
        let cfg: tailsift_sampler::SamplerConfig = tailsift_config::Sources {
            sets,
            ..Default::default()
        }
        .load()
        .expect("test sampler config is valid");
        let listeners = tailsift_sampler::Listeners::bind(&cfg).await.expect("bind");
        let admin = listeners.admin.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tailsift_sampler::run(cfg, listeners, shutdown.clone()));
        let node = SamplerNode { admin, shutdown, task };
        // Ready once the topics exist and the consumer is subscribed.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("http://{admin}/readyz")).await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "sampler not ready after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        node
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("sampler task").expect("sampler exits cleanly");
    }
}

// ---------------------------------------------------------------------------------------------
// Coordinators

/// Admin token of the test coordinator clusters (name `ops`, role admin).
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";
/// Read-only token of the test coordinator clusters (name `viewer`).
pub const READ_TOKEN: &str = "reader-token-0123456789";
/// `raft.cluster_token` of the test coordinator clusters.
pub const CLUSTER_TOKEN: &str = "cluster-token-0123456789";

/// A CA and a certificate for `127.0.0.1` and `localhost` signed by it, generated at test time
/// (rcgen), as PEM files in a temporary directory.
pub struct TestPki {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl TestPki {
    pub fn generate() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "tailsift test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "tailsift test server");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, pem: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).expect("write PEM");
            p
        };
        TestPki {
            ca_file: write("ca.pem", &ca_cert.pem()),
            cert_file: write("server.pem", &cert.pem()),
            key_file: write("server.key", &key.serialize_pem()),
            ca_pem: ca_cert.pem().into_bytes(),
            _dir: dir,
        }
    }
}

enum CoordinatorRun {
    /// `tailsift_coordinator::run` on the caller's runtime.
    Task {
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), tailsift_coordinator::Error>>,
    },
    /// A `tailsift coordinator` child process.
    Process(Child),
}

/// In-process coordinators on loopback ports, each with its own data directory. Node `i` has
/// Raft id `i + 1`. Stopped nodes keep their ports and data, so they can be restarted.
pub struct CoordinatorCluster {
    configs: Vec<tailsift_coordinator::CoordinatorConfig>,
    /// For nodes run as processes ([`start_processes`](Self::start_processes)): each node's
    /// config file.
    process_configs: Option<Vec<PathBuf>>,
    runs: Vec<Option<CoordinatorRun>>,
    _dirs: Vec<tempfile::TempDir>,
    http: reqwest::Client,
    scheme: &'static str,
}

impl CoordinatorCluster {
    /// Publishes a YAML policy through node `i`'s admin API (admin token); returns its version.
    pub async fn put_policy(&self, i: usize, doc: &str) -> u64 {
        let (st, body) = self
            .request(
                i,
                "PUT",
                "/v1/policy",
                Some(ADMIN_TOKEN),
                Some(serde_json::json!({ "document": doc, "format": "yaml" })),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        body["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {body}"))
    }

    /// Node `i`'s admin API address.
    pub fn admin_addr(&self, i: usize) -> std::net::SocketAddr {
        self.configs[i].admin.listen
    }

    /// Starts `n` coordinators bootstrapped as one cluster (fast Raft timings), with
    /// `raft.cluster_token` [`CLUSTER_TOKEN`], over plaintext.
    pub async fn start(n: usize) -> CoordinatorCluster {
        Self::start_with(n, None).await
    }

    /// Like [`start`](Self::start), with TLS on both ports (`admin.tls`, `raft.tls`) when `pki`
    /// is given; the cluster's HTTP client then trusts its CA.
    pub async fn start_with(n: usize, pki: Option<&TestPki>) -> CoordinatorCluster {
        Self::start_opts(n, pki, true, false).await
    }

    /// Like [`start`](Self::start), with the default Raft timings (heartbeat 250 ms, election
    /// timeout 1-2 s) instead of the fast ones.
    pub async fn start_default_timings(n: usize) -> CoordinatorCluster {
        Self::start_opts(n, None, false, false).await
    }

    /// Like [`start`](Self::start) (default Raft timings unless `fast_raft`), each node a
    /// `tailsift coordinator` process of the workspace's build (so its CPU and memory can be read
    /// from `/proc`, [`pid`](Self::pid)); stopped with SIGTERM.
    pub async fn start_processes(n: usize, fast_raft: bool) -> CoordinatorCluster {
        Self::start_opts(n, None, fast_raft, true).await
    }

    /// The process id of node `i` when it runs as a process.
    pub fn pid(&self, i: usize) -> Option<u32> {
        match self.runs.get(i)?.as_ref()? {
            CoordinatorRun::Process(c) => Some(c.id()),
            CoordinatorRun::Task { .. } => None,
        }
    }

    async fn start_opts(n: usize, pki: Option<&TestPki>, fast_raft: bool, processes: bool) -> CoordinatorCluster {
        use tailsift_coordinator::config::{Member, Role, Token};
        let mut raft = Vec::new();
        let mut admin = Vec::new();
        for _ in 0..n {
            raft.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind raft"));
            admin.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind admin"));
        }
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                id: i as u64 + 1,
                raft_addr: raft[i].local_addr().unwrap().to_string(),
                admin_addr: admin[i].local_addr().unwrap().to_string(),
            })
            .collect();
        let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().expect("tempdir")).collect();
        let tokens = vec![
            Token {
                name: "ops".into(),
                token: ADMIN_TOKEN.into(),
                role: Role::Admin,
            },
            Token {
                name: "viewer".into(),
                token: READ_TOKEN.into(),
                role: Role::ReadOnly,
            },
        ];
        let configs: Vec<_> = (0..n)
            .map(|i| {
                let mut c = tailsift_coordinator::CoordinatorConfig::default();
                c.node_id = i as u64 + 1;
                c.data_dir = dirs[i].path().to_path_buf();
                c.raft.listen = raft[i].local_addr().unwrap();
                if fast_raft {
                    c.raft.heartbeat_interval = Duration::from_millis(100);
                    c.raft.election_timeout_min = Duration::from_millis(500);
                    c.raft.election_timeout_max = Duration::from_millis(1000);
                }
                c.raft.snapshot_after_entries = 3;
                c.cluster.members = members.clone();
                c.admin.listen = admin[i].local_addr().unwrap();
                c.admin.tokens = tokens.clone();
                c.raft.cluster_token = Some(CLUSTER_TOKEN.into());
                if let Some(p) = pki {
                    c.raft.tls = Some(tailsift_coordinator::config::RaftTls {
                        cert_file: p.cert_file.clone(),
                        key_file: p.key_file.clone(),
                        ca_file: p.ca_file.clone(),
                    });
                    c.admin.tls = Some(tailsift_coordinator::config::AdminTls {
                        cert_file: p.cert_file.clone(),
                        key_file: p.key_file.clone(),
                    });
                }
                tailsift_config::Validate::validate(&c).expect("valid coordinator config");
                c
            })
            .collect();
        let mut http = reqwest::Client::builder();
        if let Some(p) = pki {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&p.ca_pem).expect("CA PEM"));
        }
        let process_configs = processes.then(|| {
            assert!(pki.is_none(), "coordinator processes run over plaintext");
            configs
                .iter()
                .zip(&dirs)
                .map(|(c, dir)| {
                    let path = dir.path().join("coordinator.yaml");
                    let ms = |d: Duration| format!("{}ms", d.as_millis());
                    std::fs::write(
                        &path,
                        format!(
                            "admin:\n  tokens:\n    - {{name: ops, token: {ADMIN_TOKEN}, role: admin}}\n    - {{name: viewer, token: {READ_TOKEN}, role: read_only}}\nraft:\n  heartbeat_interval: {}\n  election_timeout_min: {}\n  election_timeout_max: {}\n  snapshot_after_entries: {}\n  cluster_token: {CLUSTER_TOKEN}\n",
                            ms(c.raft.heartbeat_interval),
                            ms(c.raft.election_timeout_min),
                            ms(c.raft.election_timeout_max),
                            c.raft.snapshot_after_entries
                        ),
                    )
                    .expect("write coordinator config");
                    path
                })
                .collect()
        });
        let mut cluster = CoordinatorCluster {
            configs,
            process_configs,
            runs: Vec::new(),
            _dirs: dirs,
            http: http.build().expect("HTTP client"),
            scheme: if pki.is_some() { "https" } else { "http" },
        };
        for (i, (r, a)) in raft.into_iter().zip(admin).enumerate() {
            let run = if cluster.process_configs.is_some() {
                // The process binds the same ports (a free-port race, as with `free_port`).
                drop((r, a));
                cluster.spawn_process(i)
            } else {
                cluster.spawn(i, tailsift_coordinator::Listeners { raft: r, admin: a })
            };
            cluster.runs.push(Some(run));
        }
        cluster
    }

    fn spawn(&self, i: usize, listeners: tailsift_coordinator::Listeners) -> CoordinatorRun {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tailsift_coordinator::run(
            self.configs[i].clone(),
            listeners,
            shutdown.clone(),
        ));
        CoordinatorRun::Task { shutdown, task }
    }

    fn spawn_process(&self, i: usize) -> CoordinatorRun {
        let c = &self.configs[i];
        let files = self.process_configs.as_ref().expect("process mode");
        let mut cmd = Command::new(workspace_bin("tailsift"));
        cmd.arg("coordinator")
            .arg("--config")
            .arg(&files[i])
            .arg("--data-dir")
            .arg(&c.data_dir)
            .args(["--node-id", &c.node_id.to_string()])
            .args(["--raft-listen", &c.raft.listen.to_string()])
            .args(["--admin-listen", &c.admin.listen.to_string()])
            .args(["--log-level", "warn"]);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(c.data_dir.join("coordinator.log"))
            .expect("coordinator log file");
        for m in &c.cluster.members {
            cmd.args(["--member", &format!("{}={},{}", m.id, m.raft_addr, m.admin_addr)]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tailsift coordinator");
        CoordinatorRun::Process(child)
    }

    /// Stops node `i` and waits until it has shut down (a process: SIGTERM, and it must exit 0).
    pub async fn stop(&mut self, i: usize) {
        match self.runs[i].take() {
            Some(CoordinatorRun::Task { shutdown, task }) => {
                shutdown.cancel();
                let res = tokio::time::timeout(Duration::from_secs(20), task)
                    .await
                    .expect("coordinator stops");
                res.expect("coordinator task").expect("coordinator ran without error");
            }
            Some(CoordinatorRun::Process(mut child)) => {
                let term = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .expect("kill -TERM");
                assert!(term.success(), "kill -TERM coordinator {i}");
                let deadline = Instant::now() + Duration::from_secs(20);
                let status = loop {
                    if let Some(st) = child.try_wait().expect("wait for coordinator") {
                        break st;
                    }
                    if Instant::now() > deadline {
                        drop(ChildGuard(Some(child)));
                        panic!("coordinator {i} did not stop within 20 s of SIGTERM");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                assert!(status.success(), "coordinator {i} exited with {status}");
            }
            None => {}
        }
    }

    pub async fn stop_all(&mut self) {
        for i in 0..self.runs.len() {
            self.stop(i).await;
        }
    }

    /// Restarts a stopped node on its old ports with its data directory.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.runs[i].is_none(), "node {i} is running");
        let c = &self.configs[i];
        let deadline = Instant::now() + Duration::from_secs(20);
        let listeners = loop {
            let r = tokio::net::TcpListener::bind(c.raft.listen).await;
            let a = tokio::net::TcpListener::bind(c.admin.listen).await;
            match (r, a) {
                (Ok(raft), Ok(admin)) => break tailsift_coordinator::Listeners { raft, admin },
                (r, a) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot rebind ports of node {i}: {:?} {:?}",
                        r.err(),
                        a.err()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let run = if self.process_configs.is_some() {
            drop(listeners);
            self.spawn_process(i)
        } else {
            self.spawn(i, listeners)
        };
        self.runs[i] = Some(run);
        self.assert_running(i).await;
    }

    /// Panics with the node's error if it has stopped by itself (a short grace period first).
    pub async fn assert_running(&mut self, i: usize) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match self.runs[i].as_mut() {
            Some(CoordinatorRun::Task { task, .. }) if task.is_finished() => {
                let Some(CoordinatorRun::Task { task, .. }) = self.runs[i].take() else {
                    unreachable!()
                };
                panic!("coordinator {i} stopped: {:?}", task.await);
            }
            Some(CoordinatorRun::Process(child)) => {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("coordinator {i} exited: {st}");
                }
            }
            _ => {}
        }
    }

    /// Node `i`'s admin API base URL (`http://` or `https://`).
    pub fn admin_url(&self, i: usize) -> String {
        format!("{}://{}", self.scheme, self.configs[i].admin.listen)
    }

    /// Node `i`'s gRPC (Raft and Watch) URL, as samplers configure it in `coordinator.endpoints`.
    pub fn grpc_url(&self, i: usize) -> String {
        format!("{}://{}", self.scheme, self.configs[i].raft.listen)
    }

    /// Sends a request to node `i`'s admin API; returns the status and the JSON body.
    pub async fn request(
        &self,
        i: usize,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{}", self.admin_url(i), path);
        let mut r = self
            .http
            .request(method.parse().expect("method"), url)
            .timeout(Duration::from_secs(30));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = match r.send().await {
            Ok(r) => r,
            Err(e) => return (0, serde_json::Value::String(format!("request failed: {e}"))),
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// Waits (up to 30 s) until every node in `nodes` names the same leader, which is one of
    /// them, in the same term; returns its index.
    /// The leader `nodes` (0-based) all agree on, if they do and it is one of them.
    pub async fn leader_of(&self, nodes: &[usize]) -> Option<usize> {
        let mut seen = Vec::new();
        for &i in nodes {
            let (st, s) = self
                .request(i, "GET", "/v1/cluster/status", Some(READ_TOKEN), None)
                .await;
            if st != 200 {
                return None;
            }
            seen.push((s["leader"].as_u64(), s["term"].as_u64()));
        }
        let (Some(id), Some(term)) = *seen.first()? else {
            return None;
        };
        let idx = (id as usize).checked_sub(1)?;
        (nodes.contains(&idx) && seen.iter().all(|s| *s == (Some(id), Some(term)))).then_some(idx)
    }

    pub async fn wait_for_leader(&self, nodes: &[usize]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut seen = Vec::new();
            for &i in nodes {
                let (st, s) = self
                    .request(i, "GET", "/v1/cluster/status", Some(READ_TOKEN), None)
                    .await;
                if st == 200 {
                    seen.push((s["leader"].as_u64(), s["term"].as_u64()));
                }
            }
            if seen.len() == nodes.len() {
                if let (Some(id), Some(term)) = seen[0] {
                    let idx = id as usize - 1;
                    if nodes.contains(&idx) && seen.iter().all(|s| *s == (Some(id), Some(term))) {
                        return idx;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader among {nodes:?}: {seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to 30 s) until node `i` has applied policy version `version`; returns its
    /// `GET /v1/policy` body.
    pub async fn wait_for_version(&self, i: usize, version: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (st, p) = self.request(i, "GET", "/v1/policy", Some(READ_TOKEN), None).await;
            if st == 200 && p["version"].as_u64() == Some(version) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} did not reach policy version {version}: {st} {p}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for CoordinatorCluster {
    fn drop(&mut self) {
        for r in self.runs.iter_mut().flatten() {
            match r {
                CoordinatorRun::Task { shutdown, .. } => shutdown.cancel(),
                CoordinatorRun::Process(child) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

/// A request holding one span of trace `trace_id` (span ID `span_id`, parent `parent` or a root),
/// timestamped now, with status ERROR when `error`.
pub fn single_span_request(
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    error: bool,
) -> tailsift_otlp::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let span = Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: "op".into(),
        start_time_unix_nano: now,
        end_time_unix_nano: now + 1000,
        status: error.then(|| Status {
            code: status::StatusCode::Error as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    tailsift_otlp::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The `tailsift_*` metric names a PromQL expression reads (a histogram's `_bucket`, `_sum` and
/// `_count` series name their histogram). Used to check that dashboards and alert rules only read
/// metrics the services export.
pub fn promql_metric_names(expr: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while let Some(at) = expr[i..].find("tailsift_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        if start == 0 || !word(bytes[start - 1]) {
            let name = &expr[start..end];
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|base| base.ends_with("_seconds")))
                .unwrap_or(name);
            out.insert(name.to_string());
        }
        i = end;
    }
    out
}
