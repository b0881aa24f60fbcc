//! Ingest node configuration. Every field has a documented default; see the crate README section
//! in the top-level README for the YAML layout.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tailsift_config::{ConfigError, Validate};
use tailsift_kafka::{Connection, TopicSpec};

/// `tailsift ingest` configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    pub otlp: OtlpConfig,
    pub zipkin: ZipkinConfig,
    pub jaeger: JaegerConfig,
    pub admin: AdminConfig,
    pub kafka: KafkaConfig,
    pub limits: Limits,
}

/// OTLP receivers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// OTLP/gRPC listen address. Default `0.0.0.0:4317`.
    pub grpc_listen: SocketAddr,
    /// OTLP/HTTP listen address (`POST /v1/traces`). Default `0.0.0.0:4318`.
    pub http_listen: SocketAddr,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            grpc_listen: "0.0.0.0:4317".parse().unwrap(),
            http_listen: "0.0.0.0:4318".parse().unwrap(),
        }
    }
}

/// The Zipkin receiver: `POST /api/v2/spans` (JSON, proto3) and `POST /api/v1/spans` (JSON,
/// thrift), what Envoy and Zipkin clients send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZipkinConfig {
    /// Default `true`.
    pub enabled: bool,
    /// Default `0.0.0.0:9411`.
    pub listen: SocketAddr,
}

impl Default for ZipkinConfig {
    fn default() -> Self {
        ZipkinConfig {
            enabled: true,
            listen: "0.0.0.0:9411".parse().unwrap(),
        }
    }
}

/// The Jaeger receivers. Each listen address can be set to `null` to turn that receiver off;
/// `enabled: false` turns all of them off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JaegerConfig {
    /// Default `true`.
    pub enabled: bool,
    /// Agent `emitBatch`, compact thrift over UDP (what Jaeger clients send). Default
    /// `0.0.0.0:6831`.
    pub compact_udp_listen: Option<SocketAddr>,
    /// Agent `emitBatch`, binary thrift over UDP. Default `0.0.0.0:6832`.
    pub binary_udp_listen: Option<SocketAddr>,
    /// Collector HTTP `POST /api/traces` with a binary-thrift `Batch`. Default `0.0.0.0:14268`.
    pub http_listen: Option<SocketAddr>,
    /// Collector gRPC `jaeger.api_v2.CollectorService/PostSpans`. Default `0.0.0.0:14250`.
    pub grpc_listen: Option<SocketAddr>,
    /// `SO_RCVBUF` asked for the UDP sockets (the kernel may cap it: raise `net.core.rmem_max`;
    /// when running as root the cap is bypassed). Default `8388608` (8 MiB).
    pub udp_receive_buffer_bytes: usize,
    /// Largest datagram read; longer ones are dropped and counted. Default `65000`, as the Jaeger
    /// agent.
    pub udp_max_datagram_bytes: usize,
    /// Datagrams being decoded or written to Kafka at once, per UDP socket; past it new datagrams
    /// are dropped and counted (UDP has no backpressure). Default `1024`.
    pub udp_max_in_flight: usize,
}

impl Default for JaegerConfig {
    fn default() -> Self {
        JaegerConfig {
            enabled: true,
            compact_udp_listen: Some("0.0.0.0:6831".parse().unwrap()),
            binary_udp_listen: Some("0.0.0.0:6832".parse().unwrap()),
            http_listen: Some("0.0.0.0:14268".parse().unwrap()),
            grpc_listen: Some("0.0.0.0:14250".parse().unwrap()),
            udp_receive_buffer_bytes: 8 << 20,
            udp_max_datagram_bytes: 65_000,
            udp_max_in_flight: 1024,
        }
    }
}

/// The admin endpoint (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Default `0.0.0.0:9464`.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "0.0.0.0:9464".parse().unwrap(),
        }
    }
}

/// Record compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
    Gzip,
    Snappy,
}

impl Compression {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
        }
    }
}

/// Producer acknowledgement level: `all` (or `-1`), `1` or `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    All,
    Leader,
    None,
}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(-1) => Ok(Acks::All),
            Raw::Int(1) => Ok(Acks::Leader),
            Raw::Int(0) => Ok(Acks::None),
            Raw::Str(s) if s == "all" || s == "-1" => Ok(Acks::All),
            Raw::Str(s) if s == "1" => Ok(Acks::Leader),
            Raw::Str(s) if s == "0" => Ok(Acks::None),
            _ => Err(serde::de::Error::custom("expected all, 1 or 0")),
        }
    }
}

/// Where and how spans are published.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap brokers. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// `client.id` reported to the brokers. Default `tailsift-ingest`.
    pub client_id: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`, ...), applied last.
    pub properties: std::collections::BTreeMap<String, String>,
    /// The spans topic. Default `tailsift-spans`.
    pub topic: String,
    /// Used when the topic is missing and `topic_spec.create` is true.
    pub topic_spec: TopicSpec,
    /// Default `lz4`.
    pub compression: Compression,
    /// Default `all`. Anything but `all` turns idempotence off.
    pub acks: Acks,
    /// Idempotent producer (no duplicates from producer retries). Default `true`.
    pub idempotence: bool,
    /// How long the producer waits to fill a batch (librdkafka `linger.ms`): also the most it adds
    /// to a request's answer, which bounds what a client with few requests in flight can send.
    /// Default `10ms`: at 25% load ~26% less CPU per span than 5 ms, the same saturation
    /// throughput with 32 requests in flight; 20 ms saves more CPU but costs such clients a third
    /// of their throughput (docs/benchmarks.md, ingest matrix).
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Maximum batch size in bytes. Default `1000000`.
    pub batch_bytes: usize,
    /// Largest record payload; traces larger than this in one request are written as several
    /// records. Must stay under the topic's `max.message.bytes`. Default `900000`.
    pub max_record_bytes: usize,
    /// Producer queue limits: when full, clients get a retryable error. Defaults `100000`
    /// messages and `262144` KiB.
    pub queue_max_messages: usize,
    pub queue_max_kbytes: usize,
    /// How long a record may wait for Kafka before the request fails with a retryable error.
    /// Default `10s`.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Interval of the metadata probe that drives `/readyz`. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: Connection::default().brokers,
            client_id: "tailsift-ingest".into(),
            properties: Default::default(),
            topic: "tailsift-spans".into(),
            topic_spec: TopicSpec::default(),
            compression: Compression::Lz4,
            acks: Acks::All,
            idempotence: true,
            linger: Duration::from_millis(10),
            batch_bytes: 1_000_000,
            max_record_bytes: 900_000,
            queue_max_messages: 100_000,
            queue_max_kbytes: 262_144,
            delivery_timeout: Duration::from_secs(10),
            probe_interval: Duration::from_secs(2),
        }
    }
}

/// Request and memory limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body, after decompression, for both gRPC and HTTP; a larger
    /// `Content-Length` is refused (413) before the body is read. Default `16777216` (16 MiB).
    pub max_request_bytes: usize,
    /// The node's in-flight byte budget, across all requests: request bodies from their first
    /// byte read (the `Content-Length` is reserved up front), decompressed and converted bodies,
    /// and records until Kafka acknowledged them, each held until its request is answered. A
    /// request the budget cannot take gets a retryable error (HTTP 503 with `Retry-After`, gRPC
    /// `UNAVAILABLE`). Default `268435456` (256 MiB).
    pub max_in_flight_bytes: usize,
    /// Requests in progress at once across every HTTP and gRPC receiver; one more gets a
    /// retryable error at once (never queued). Default `512`.
    pub max_concurrent_requests: usize,
    /// TCP connections open at once across every receiver of the node (OTLP, Zipkin, Jaeger
    /// HTTP and gRPC). At the cap the receivers stop accepting until a connection closes: new
    /// clients wait in the kernel's backlog (then time out and retry), so no client can use up
    /// the node's file descriptors. Keep it below the process's open-file limit. Default `4096`.
    pub max_connections: usize,
    /// Time allowed for a request's headers, then for its whole body (HTTP/1: 408 and the
    /// connection closed; gRPC: `DEADLINE_EXCEEDED`); also how long an idle HTTP/1 keep-alive
    /// connection stays open, and how long an HTTP/2 keepalive PING may go unanswered. Default
    /// `30s`.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Silence after which a gRPC (HTTP/2) connection is sent a keepalive PING, and after which
    /// TCP keepalive probes start on every receiver connection. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// `Retry-After` sent with HTTP 503 answers. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 16 << 20,
            max_in_flight_bytes: 256 << 20,
            max_concurrent_requests: 512,
            max_connections: 4096,
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            retry_after: Duration::from_secs(1),
        }
    }
}

impl KafkaConfig {
    /// The connection settings of this section.
    pub fn connection(&self) -> Connection {
        Connection {
            brokers: self.brokers.clone(),
            client_id: self.client_id.clone(),
            properties: self.properties.clone(),
        }
    }
}

impl Validate for IngestConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        k.connection().validate("kafka").map_err(kafka_err)?;
        k.topic_spec.validate("kafka.topic_spec").map_err(kafka_err)?;
        if k.topic.is_empty() {
            return Err(ConfigError::invalid("kafka.topic", "must not be empty"));
        }
        if k.idempotence && k.acks != Acks::All {
            return Err(ConfigError::invalid("kafka.idempotence", "requires kafka.acks: all"));
        }
        if k.max_record_bytes < 1024 {
            return Err(ConfigError::invalid("kafka.max_record_bytes", "must be at least 1024"));
        }
        if k.batch_bytes < k.max_record_bytes {
            return Err(ConfigError::invalid(
                "kafka.batch_bytes",
                "must be at least kafka.max_record_bytes",
            ));
        }
        if k.queue_max_messages == 0 || k.queue_max_kbytes == 0 {
            return Err(ConfigError::invalid(
                "kafka.queue_max_messages",
                "queue limits must be positive",
            ));
        }
        if k.delivery_timeout < Duration::from_millis(100) {
            return Err(ConfigError::invalid("kafka.delivery_timeout", "must be at least 100ms"));
        }
        if k.probe_interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid("kafka.probe_interval", "must be at least 100ms"));
        }
        let j = &self.jaeger;
        if j.udp_receive_buffer_bytes < 65_536 || j.udp_receive_buffer_bytes > 1 << 30 {
            return Err(ConfigError::invalid(
                "jaeger.udp_receive_buffer_bytes",
                "must be between 65536 and 1073741824",
            ));
        }
        if !(512..=65_535).contains(&j.udp_max_datagram_bytes) {
            return Err(ConfigError::invalid(
                "jaeger.udp_max_datagram_bytes",
                "must be between 512 and 65535",
            ));
        }
        if j.udp_max_in_flight == 0 {
            return Err(ConfigError::invalid("jaeger.udp_max_in_flight", "must be at least 1"));
        }
        let l = &self.limits;
        if l.max_request_bytes < 1024 {
            return Err(ConfigError::invalid(
                "limits.max_request_bytes",
                "must be at least 1024",
            ));
        }
        if l.max_in_flight_bytes < l.max_request_bytes {
            return Err(ConfigError::invalid(
                "limits.max_in_flight_bytes",
                "must be at least limits.max_request_bytes, or a large request could never be admitted",
            ));
        }
        if l.max_in_flight_bytes > u32::MAX as usize {
            return Err(ConfigError::invalid(
                "limits.max_in_flight_bytes",
                "must be below 4 GiB",
            ));
        }
        if !(1..=1_000_000).contains(&l.max_concurrent_requests) {
            return Err(ConfigError::invalid(
                "limits.max_concurrent_requests",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=1_000_000).contains(&l.max_connections) {
            return Err(ConfigError::invalid(
                "limits.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        if l.read_timeout < Duration::from_millis(100) {
            return Err(ConfigError::invalid("limits.read_timeout", "must be at least 100ms"));
        }
        if l.idle_timeout < Duration::from_secs(1) {
            return Err(ConfigError::invalid("limits.idle_timeout", "must be at least 1s"));
        }
        Ok(())
    }
}

fn kafka_err(e: tailsift_kafka::SettingsError) -> ConfigError {
    let tailsift_kafka::SettingsError::Invalid { key, reason } = e;
    ConfigError::invalid(key, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailsift_config::Sources;

    fn load(yaml: &str) -> Result<IngestConfig, ConfigError> {
        Sources {
            file: Some(("t.yaml".into(), yaml.into())),
            ..Default::default()
        }
        .load()
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = load("").unwrap();
        assert_eq!(c.otlp.grpc_listen.port(), 4317);
        assert_eq!(c.otlp.http_listen.port(), 4318);
        assert_eq!(c.kafka.topic, "tailsift-spans");
        assert_eq!(c.kafka.acks, Acks::All);
        assert!(c.kafka.idempotence);
        assert_eq!(c.kafka.compression, Compression::Lz4);
        assert!(c.zipkin.enabled);
        assert_eq!(c.zipkin.listen.port(), 9411);
        assert!(c.jaeger.enabled);
        assert_eq!(c.jaeger.compact_udp_listen.map(|a| a.port()), Some(6831));
        assert_eq!(c.jaeger.binary_udp_listen.map(|a| a.port()), Some(6832));
        assert_eq!(c.jaeger.http_listen.map(|a| a.port()), Some(14268));
        assert_eq!(c.jaeger.grpc_listen.map(|a| a.port()), Some(14250));
        assert_eq!(c.jaeger.udp_receive_buffer_bytes, 8 << 20);
        assert_eq!(c.jaeger.udp_max_datagram_bytes, 65_000);
        assert_eq!(c.limits.max_concurrent_requests, 512);
        assert_eq!(c.limits.max_in_flight_bytes, 256 << 20);
        assert_eq!(c.limits.read_timeout, Duration::from_secs(30));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn receivers_can_be_turned_off() {
        let c =
            load("zipkin: {enabled: false}\njaeger: {grpc_listen: null, compact_udp_listen: '127.0.0.1:0'}\n").unwrap();
        assert!(!c.zipkin.enabled);
        assert_eq!(c.jaeger.grpc_listen, None);
        assert_eq!(c.jaeger.compact_udp_listen, Some("127.0.0.1:0".parse().unwrap()));
        assert!(c.jaeger.http_listen.is_some());
    }

    #[test]
    fn full_file_parses() {
        let c = load(
            "otlp: {grpc_listen: '127.0.0.1:1', http_listen: '127.0.0.1:2'}\nadmin: {listen: '127.0.0.1:3'}\n\
             kafka:\n  brokers: a:1,b:2\n  topic: spans\n  compression: zstd\n  linger: 20ms\n  properties: {security.protocol: plaintext}\n  topic_spec: {partitions: 4}\n\
             limits: {max_request_bytes: 2048, max_in_flight_bytes: 4096, retry_after: 2s, max_concurrent_requests: 8, read_timeout: 5s, idle_timeout: 2m}\n",
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "a:1,b:2");
        assert_eq!(c.kafka.properties["security.protocol"], "plaintext");
        assert_eq!(c.kafka.compression, Compression::Zstd);
        assert_eq!(c.kafka.linger, Duration::from_millis(20));
        assert_eq!(c.kafka.topic_spec.partitions, 4);
        assert_eq!(c.limits.retry_after, Duration::from_secs(2));
        assert_eq!(c.limits.max_concurrent_requests, 8);
        assert_eq!(c.limits.read_timeout, Duration::from_secs(5));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(120));
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (yaml, key) in [
            ("kafka: {acks: '1'}", "kafka.idempotence"),
            ("kafka: {topic: ''}", "kafka.topic"),
            ("kafka: {brokers: ''}", "kafka.brokers"),
            ("kafka: {topic_spec: {partitions: 0}}", "kafka.topic_spec.partitions"),
            ("limits: {max_request_bytes: 10}", "limits.max_request_bytes"),
            (
                "limits: {max_request_bytes: 4096, max_in_flight_bytes: 2048}",
                "limits.max_in_flight_bytes",
            ),
            ("kafka: {compression: brotli}", "kafka.compression"),
            ("limits: {max_concurrent_requests: 0}", "limits.max_concurrent_requests"),
            ("limits: {read_timeout: 1ms}", "limits.read_timeout"),
            ("limits: {idle_timeout: 10ms}", "limits.idle_timeout"),
            ("limits: {read_timeout: soon}", "limits.read_timeout"),
            ("kafka: {acks: 2}", "kafka.acks"),
            ("otlp: {grpc_listen: nowhere}", "otlp.grpc_listen"),
            ("otlp: {grpc_port: 1}", "otlp"),
            ("zipkin: {listen: nowhere}", "zipkin.listen"),
            ("zipkin: {port: 9411}", "zipkin"),
            ("jaeger: {grpc_listen: 'x:y'}", "jaeger.grpc_listen"),
            (
                "jaeger: {udp_max_datagram_bytes: 100000}",
                "jaeger.udp_max_datagram_bytes",
            ),
            (
                "jaeger: {udp_receive_buffer_bytes: 10}",
                "jaeger.udp_receive_buffer_bytes",
            ),
            ("jaeger: {udp_max_in_flight: 0}", "jaeger.udp_max_in_flight"),
            ("jaeger: {thrift_listen: '0.0.0.0:1'}", "jaeger"),
        ] {
            let e = load(yaml).unwrap_err().to_string();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }
}
