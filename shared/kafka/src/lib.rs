//! Kafka connection settings, topic creation and probes, and the in-process partitioned log of
//! `tailsift standalone`.
//!
//! Kafka plumbing shared by Tailsift roles: connection settings, topic creation and metadata
//! probes (used by `/readyz`), and [`memlog`], the in-process partitioned log that stands in for
//! the spans topic in `tailsift standalone`.

pub mod memlog;
pub mod served;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

/// How to reach the cluster. Shared by producers and consumers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Connection {
    /// Comma-separated bootstrap brokers. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// `client.id` reported to the brokers. Default `tailsift`.
    pub client_id: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`, ...), applied last.
    pub properties: BTreeMap<String, String>,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            brokers: "127.0.0.1:9092".into(),
            client_id: "tailsift".into(),
            properties: BTreeMap::new(),
        }
    }
}

impl Connection {
    /// A client config with the connection settings applied.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Checks the settings; `prefix` is the config path of this section, e.g. `kafka`.
    pub fn validate(&self, prefix: &str) -> Result<(), SettingsError> {
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err(SettingsError::invalid(
                format!("{prefix}.brokers"),
                "must name at least one broker",
            ));
        }
        Ok(())
    }
}

/// Topic settings used when the topic must be created.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicSpec {
    /// Create the topic at start-up if it does not exist. Default `true`.
    pub create: bool,
    /// Partition count for a created topic. Default `12`. Partitions are the unit of sampler
    /// parallelism: at most this many samplers share the work.
    pub partitions: i32,
    /// Replication factor for a created topic. Default `1`; use 3 on a production cluster.
    pub replication_factor: i32,
    /// Topic-level configs for a created topic (e.g. `retention.ms`).
    pub configs: BTreeMap<String, String>,
}

impl Default for TopicSpec {
    fn default() -> Self {
        TopicSpec {
            create: true,
            partitions: 12,
            replication_factor: 1,
            configs: BTreeMap::new(),
        }
    }
}

impl TopicSpec {
    /// Checks the settings; `prefix` is the config path of this section, e.g. `kafka.topic_spec`.
    pub fn validate(&self, prefix: &str) -> Result<(), SettingsError> {
        if self.partitions < 1 {
            return Err(SettingsError::invalid(
                format!("{prefix}.partitions"),
                "must be at least 1",
            ));
        }
        if self.replication_factor < 1 {
            return Err(SettingsError::invalid(
                format!("{prefix}.replication_factor"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A Kafka setting that fails validation, displayed as `key: reason`
/// (`kafka.brokers: must name at least one broker`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The setting at config path `key` is invalid.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl SettingsError {
    fn invalid(key: String, reason: &str) -> Self {
        SettingsError::Invalid {
            key,
            reason: reason.to_string(),
        }
    }
}

/// Kafka errors surfaced by this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("creating topic {topic}: {code}")]
    CreateTopic { topic: String, code: RDKafkaErrorCode },
    #[error("kafka metadata: {0}")]
    Metadata(String),
}

/// Creates `topic` with `spec` unless it already exists. Returns `true` when it was created.
pub async fn ensure_topic(conn: &Connection, topic: &str, spec: &TopicSpec, timeout: Duration) -> Result<bool, Error> {
    if topic_partitions(conn, topic, timeout).await?.is_some() {
        return Ok(false);
    }
    let admin: AdminClient<DefaultClientContext> = conn.client_config().create()?;
    let mut new = NewTopic::new(topic, spec.partitions, TopicReplication::Fixed(spec.replication_factor));
    for (k, v) in &spec.configs {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin.create_topics([&new], &opts).await?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return Ok(false),
            Err((t, code)) => return Err(Error::CreateTopic { topic: t, code }),
        }
    }
    tracing::info!(topic, partitions = spec.partitions, "created Kafka topic");
    Ok(true)
}

/// The partition count of `topic`, or `None` when the topic does not exist. The blocking
/// metadata call runs on the blocking pool with a client of its own.
pub async fn topic_partitions(conn: &Connection, topic: &str, timeout: Duration) -> Result<Option<usize>, Error> {
    let client: rdkafka::consumer::BaseConsumer = conn.client_config().create()?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || partitions_of(client.client(), &topic, timeout))
        .await
        .map_err(|e| Error::Metadata(e.to_string()))?
}

/// Blocking: the partition count of `topic` as `client` sees it, `None` when missing.
pub fn partitions_of<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, Error> {
    let md = client.fetch_metadata(Some(topic), timeout)?;
    match md.topics().iter().find(|t| t.name() == topic) {
        None => Ok(None),
        Some(t) => match t.error() {
            None if !t.partitions().is_empty() => Ok(Some(t.partitions().len())),
            None => Ok(None),
            Some(e) => {
                let code = RDKafkaErrorCode::from(e);
                if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                    Ok(None)
                } else {
                    Err(Error::Metadata(format!("topic {topic}: {code}")))
                }
            }
        },
    }
}

/// A cheap liveness probe of the cluster: fetches metadata for `topic` (or all topics).
pub fn probe<C: ClientContext>(client: &Client<C>, topic: Option<&str>, timeout: Duration) -> Result<(), Error> {
    let md = client.fetch_metadata(topic, timeout)?;
    if md.brokers().is_empty() {
        return Err(Error::Metadata("no brokers in metadata".into()));
    }
    Ok(())
}
