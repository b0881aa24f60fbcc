//! Synthetic, realistic-looking traces.
//!
//! A [`Generator`] produces [`GeneratedTrace`]s from a [`TraceShape`] (the service topology and
//! the distributions of trace size, errors and latency) and a `u64` seed. The same shape, seed
//! and end timestamps always give the same traces, so tests and benchmark runs are reproducible.
//!
//! Every trace has exactly one root span (a `SERVER` span of the first service, with an empty
//! `parent_span_id`); every other span's parent is a span of the same trace. Calls between
//! services appear as a `CLIENT` span in the caller and a `SERVER` span in the callee, database
//! calls as `CLIENT` spans carrying `db.*` attributes, and in-process work as `INTERNAL` spans.
//! The spans are grouped by service into OTLP [`ResourceSpans`] (resource attribute
//! `service.name`, one instrumentation scope per service).

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How a service is called by the others (and so which attributes its spans carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceProtocol {
    /// HTTP server: operations are routes such as `GET /api/cart`.
    Http,
    /// gRPC server: operations are methods such as `oteldemo.CartService/GetCart`.
    Grpc,
}

/// A database (or cache) that a service talks to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSpec {
    /// `db.system`, e.g. `postgresql`, `redis`, `mongodb`.
    pub system: String,
    /// `db.name`.
    pub name: String,
    /// Host name used for `net.peer.name`.
    pub host: String,
    /// Tables (or key prefixes, or collections) that statements touch.
    pub tables: Vec<String>,
}

/// One service of the simulated application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// `service.name`.
    pub name: String,
    /// How the service is called.
    pub protocol: ServiceProtocol,
    /// Operations the service serves: `"METHOD /route"` for HTTP services, `"pkg.Service/Method"`
    /// for gRPC services.
    pub operations: Vec<String>,
    /// Names of the services it calls.
    pub calls: Vec<String>,
    /// The database it uses, if any.
    pub database: Option<DatabaseSpec>,
}

impl ServiceSpec {
    fn new(name: &str, protocol: ServiceProtocol, operations: &[&str], calls: &[&str]) -> Self {
        ServiceSpec {
            name: name.to_string(),
            protocol,
            operations: operations.iter().map(|s| s.to_string()).collect(),
            calls: calls.iter().map(|s| s.to_string()).collect(),
            database: None,
        }
    }

    fn with_db(mut self, system: &str, name: &str, host: &str, tables: &[&str]) -> Self {
        self.database = Some(DatabaseSpec {
            system: system.to_string(),
            name: name.to_string(),
            host: host.to_string(),
            tables: tables.iter().map(|s| s.to_string()).collect(),
        });
        self
    }
}

/// The default topology: a small web shop whose entry point is `frontend`.
pub fn default_services() -> Vec<ServiceSpec> {
    use ServiceProtocol::{Grpc, Http};
    vec![
        ServiceSpec::new(
            "frontend",
            Http,
            &[
                "GET /",
                "GET /api/products",
                "GET /api/products/{id}",
                "GET /api/cart",
                "POST /api/cart",
                "POST /api/checkout",
                "GET /api/recommendations",
                "POST /api/login",
            ],
            &[
                "product-catalog",
                "cart",
                "checkout",
                "recommendation",
                "auth",
                "currency",
            ],
        ),
        ServiceSpec::new(
            "checkout",
            Grpc,
            &["oteldemo.CheckoutService/PlaceOrder"],
            &["cart", "payment", "shipping", "email", "inventory", "currency"],
        )
        .with_db("postgresql", "orders", "orders-db", &["orders", "order_items"]),
        ServiceSpec::new(
            "cart",
            Grpc,
            &[
                "oteldemo.CartService/GetCart",
                "oteldemo.CartService/AddItem",
                "oteldemo.CartService/EmptyCart",
            ],
            &[],
        )
        .with_db("redis", "0", "cart-cache", &["cart"]),
        ServiceSpec::new(
            "product-catalog",
            Grpc,
            &[
                "oteldemo.ProductCatalogService/ListProducts",
                "oteldemo.ProductCatalogService/GetProduct",
                "oteldemo.ProductCatalogService/SearchProducts",
            ],
            &["inventory"],
        )
        .with_db("postgresql", "catalog", "catalog-db", &["products", "categories"]),
        ServiceSpec::new(
            "payment",
            Http,
            &["POST /v1/charge", "POST /v1/refund"],
            &["fraud-detection"],
        )
        .with_db("postgresql", "payments", "payments-db", &["charges", "ledger"]),
        ServiceSpec::new("fraud-detection", Grpc, &["oteldemo.FraudService/Score"], &[]).with_db(
            "mongodb",
            "fraud",
            "fraud-mongo",
            &["signals"],
        ),
        ServiceSpec::new(
            "shipping",
            Http,
            &["POST /get-quote", "POST /ship-order"],
            &["currency"],
        ),
        ServiceSpec::new("email", Http, &["POST /send_order_confirmation"], &[]),
        ServiceSpec::new(
            "inventory",
            Grpc,
            &["oteldemo.InventoryService/Reserve", "oteldemo.InventoryService/Check"],
            &[],
        )
        .with_db("mysql", "inventory", "inventory-db", &["stock", "reservations"]),
        ServiceSpec::new(
            "recommendation",
            Grpc,
            &["oteldemo.RecommendationService/ListRecommendations"],
            &["product-catalog"],
        ),
        ServiceSpec::new(
            "auth",
            Grpc,
            &["oteldemo.AuthService/ValidateToken", "oteldemo.AuthService/Login"],
            &[],
        )
        .with_db("redis", "1", "session-cache", &["session"]),
        ServiceSpec::new("currency", Grpc, &["oteldemo.CurrencyService/Convert"], &[]),
    ]
}

/// Why a [`TraceShape`] is not usable as given. [`Generator::new`] repairs such shapes (it
/// clamps and drops what is invalid); call [`TraceShape::validate`] to reject them instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    /// The topology has no service.
    #[error("the trace shape has no service")]
    NoServices,
    /// A service calls a service that is not defined.
    #[error("service {from:?} calls unknown service {to:?}")]
    UnknownService {
        /// The caller.
        from: String,
        /// The undefined callee.
        to: String,
    },
    /// A service has no operation.
    #[error("service {0:?} has no operation")]
    NoOperations(String),
    /// Two services have the same name.
    #[error("service {0:?} is defined twice")]
    DuplicateService(String),
    /// The span count bounds are inconsistent.
    #[error("span count bounds are invalid: need 1 <= min_spans ({min}) <= max_spans ({max})")]
    SpanBounds {
        /// `min_spans`.
        min: usize,
        /// `max_spans`.
        max: usize,
    },
    /// A rate or fraction is not within `[0, 1]`.
    #[error("{name} must be within [0, 1], got {value}")]
    Fraction {
        /// Which field.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// A duration is zero or the typical duration is not below the slow threshold.
    #[error("median_duration ({median:?}) must be non-zero and below slow_threshold ({threshold:?})")]
    Durations {
        /// `median_duration`.
        median: Duration,
        /// `slow_threshold`.
        threshold: Duration,
    },
}

/// What the generated traces look like: topology and distributions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceShape {
    /// The services; the first one is the entry point that owns every root span.
    pub services: Vec<ServiceSpec>,
    /// Fewest spans in a trace (at least 1).
    pub min_spans: usize,
    /// Most spans in a trace.
    pub max_spans: usize,
    /// Median span count of ordinary traces (log-normal around it).
    pub median_spans: usize,
    /// Fraction of "large" traces, whose span count is log-uniform between `4 * median_spans`
    /// and `max_spans`.
    pub large_trace_fraction: f64,
    /// Fraction of traces containing at least one span with status `ERROR`.
    pub error_rate: f64,
    /// Fraction of traces whose root span lasts at least `slow_threshold`.
    pub slow_rate: f64,
    /// Root duration at or above which a trace is slow.
    pub slow_threshold: Duration,
    /// Median root duration of the other traces (log-normal, kept below `slow_threshold`).
    pub median_duration: Duration,
    /// Log-normal shape parameter of root durations (0.8 gives a visible tail).
    pub duration_sigma: f64,
}

impl Default for TraceShape {
    fn default() -> Self {
        TraceShape {
            services: default_services(),
            min_spans: 1,
            max_spans: 300,
            median_spans: 8,
            large_trace_fraction: 0.05,
            error_rate: 0.05,
            slow_rate: 0.02,
            slow_threshold: Duration::from_secs(1),
            median_duration: Duration::from_millis(40),
            duration_sigma: 0.8,
        }
    }
}

impl TraceShape {
    /// Checks the shape; [`Generator::new`] accepts any shape but repairs invalid values.
    pub fn validate(&self) -> Result<(), ShapeError> {
        if self.services.is_empty() {
            return Err(ShapeError::NoServices);
        }
        let mut names = HashSet::new();
        for s in &self.services {
            if !names.insert(s.name.as_str()) {
                return Err(ShapeError::DuplicateService(s.name.clone()));
            }
            if s.operations.is_empty() {
                return Err(ShapeError::NoOperations(s.name.clone()));
            }
        }
        for s in &self.services {
            if let Some(to) = s.calls.iter().find(|c| !names.contains(c.as_str())) {
                return Err(ShapeError::UnknownService {
                    from: s.name.clone(),
                    to: to.clone(),
                });
            }
        }
        if self.min_spans == 0 || self.min_spans > self.max_spans {
            return Err(ShapeError::SpanBounds {
                min: self.min_spans,
                max: self.max_spans,
            });
        }
        for (name, value) in [
            ("error_rate", self.error_rate),
            ("slow_rate", self.slow_rate),
            ("large_trace_fraction", self.large_trace_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ShapeError::Fraction { name, value });
            }
        }
        if self.median_duration.is_zero() || self.median_duration >= self.slow_threshold {
            return Err(ShapeError::Durations {
                median: self.median_duration,
                threshold: self.slow_threshold,
            });
        }
        Ok(())
    }

    /// A copy with invalid values replaced by usable ones (see [`TraceShape::validate`]).
    fn repaired(mut self) -> Self {
        let defaults = TraceShape::default();
        let mut seen = HashSet::new();
        self.services
            .retain(|s| !s.operations.is_empty() && seen.insert(s.name.clone()));
        if self.services.is_empty() {
            self.services = defaults.services;
        }
        self.min_spans = self.min_spans.max(1);
        self.max_spans = self.max_spans.max(self.min_spans);
        self.median_spans = self.median_spans.clamp(self.min_spans, self.max_spans);
        let fraction = |v: f64| {
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        self.error_rate = fraction(self.error_rate);
        self.slow_rate = fraction(self.slow_rate);
        self.large_trace_fraction = fraction(self.large_trace_fraction);
        if self.slow_threshold.is_zero() {
            self.slow_threshold = defaults.slow_threshold;
        }
        if self.median_duration.is_zero() || self.median_duration >= self.slow_threshold {
            self.median_duration = self.slow_threshold / 10;
        }
        if !self.duration_sigma.is_finite() || self.duration_sigma < 0.0 {
            self.duration_sigma = defaults.duration_sigma;
        }
        self
    }
}

/// The summary of one generated trace, without its spans: what a verifier needs to check how
/// the trace was sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceRecord {
    /// The trace ID (hex-encoded in JSON).
    #[serde(with = "hex_trace_id")]
    pub trace_id: [u8; 16],
    /// Number of spans.
    pub spans: usize,
    /// Whether at least one span has status `ERROR`.
    pub is_error: bool,
    /// Whether the root span lasts at least the slow threshold.
    pub is_slow: bool,
    /// Root span duration in nanoseconds.
    pub duration_ns: u64,
}

impl TraceRecord {
    /// The trace ID as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }
}

mod hex_trace_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(id))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let text = String::deserialize(d)?;
        let mut id = [0u8; 16];
        hex::decode_to_slice(&text, &mut id).map_err(serde::de::Error::custom)?;
        Ok(id)
    }
}

/// One generated trace: its properties and its spans grouped by service.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedTrace {
    /// Random non-zero trace ID.
    pub trace_id: [u8; 16],
    /// Number of spans.
    pub spans: usize,
    /// Whether at least one span has status `ERROR` (code 2).
    pub is_error: bool,
    /// Whether the root span lasts at least [`TraceShape::slow_threshold`].
    pub is_slow: bool,
    /// Root span duration in nanoseconds.
    pub duration_ns: u64,
    /// `service.name` of the root span.
    pub root_service: String,
    /// Name of the root span.
    pub root_name: String,
    /// The spans, one `ResourceSpans` per service (in order of first appearance, the root's
    /// service first), each with a single `ScopeSpans`.
    pub resource_spans: Vec<ResourceSpans>,
}

impl GeneratedTrace {
    /// The span-less summary of this trace.
    pub fn record(&self) -> TraceRecord {
        TraceRecord {
            trace_id: self.trace_id,
            spans: self.spans,
            is_error: self.is_error,
            is_slow: self.is_slow,
            duration_ns: self.duration_ns,
        }
    }

    /// The trace ID as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// Number of services the trace touches.
    pub fn service_count(&self) -> usize {
        self.resource_spans.len()
    }

    /// All spans of the trace.
    pub fn iter_spans(&self) -> impl Iterator<Item = &Span> {
        self.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
    }

    /// The whole trace as one export request.
    pub fn into_request(self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: self.resource_spans,
        }
    }
}

/// Builds an OTLP string attribute.
pub(crate) fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Builds an OTLP integer attribute.
pub(crate) fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(value)),
        }),
        ..Default::default()
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The topology with service names resolved to indices.
#[derive(Debug)]
struct Topology {
    calls: Vec<Vec<usize>>,
}

/// What a span does.
#[derive(Debug, Clone)]
enum Op {
    /// The callee side of a call (or the root), serving `operation`.
    Server { operation: usize },
    /// The caller side of a call to `callee`'s `operation`.
    Client { callee: usize, operation: usize },
    /// A database call.
    Db { table: usize, verb: usize },
    /// In-process work.
    Internal { name: usize },
}

#[derive(Debug)]
struct Node {
    service: usize,
    parent: Option<usize>,
    op: Op,
    span_id: [u8; 8],
    start: u64,
    end: u64,
    error: bool,
    /// Where the trace's failure originated (records an `exception` event).
    error_origin: bool,
    children: usize,
}

const INTERNAL_NAMES: &[&str] = &[
    "validate-request",
    "load-session",
    "compute-price",
    "apply-discounts",
    "serialize-response",
    "render-template",
    "acquire-lock",
    "check-feature-flags",
    "transform-payload",
    "cache-lookup",
];

const SQL_VERBS: &[&str] = &["SELECT", "SELECT", "SELECT", "INSERT", "UPDATE", "DELETE"];
const REDIS_VERBS: &[&str] = &["GET", "HGETALL", "SET", "HSET", "EXPIRE", "DEL"];
const MONGO_VERBS: &[&str] = &["find", "find", "aggregate", "insert", "update"];
const LANGUAGES: &[&str] = &["go", "java", "python", "nodejs", "rust", "dotnet"];

fn db_verbs(system: &str) -> &'static [&'static str] {
    match system {
        "redis" | "memcached" => REDIS_VERBS,
        "mongodb" => MONGO_VERBS,
        _ => SQL_VERBS,
    }
}

/// Deterministic trace generator.
#[derive(Debug)]
pub struct Generator {
    shape: TraceShape,
    topology: Topology,
    rng: StdRng,
    generated: u64,
}

impl Generator {
    /// A generator for `shape`, seeded with `seed`. Invalid shape values are repaired (see
    /// [`TraceShape::validate`] to reject them instead).
    pub fn new(shape: TraceShape, seed: u64) -> Self {
        let shape = shape.repaired();
        let calls = shape
            .services
            .iter()
            .map(|s| {
                s.calls
                    .iter()
                    .filter_map(|c| shape.services.iter().position(|t| &t.name == c))
                    .collect()
            })
            .collect();
        Generator {
            shape,
            topology: Topology { calls },
            rng: StdRng::seed_from_u64(seed),
            generated: 0,
        }
    }

    /// The (repaired) shape in use.
    pub fn shape(&self) -> &TraceShape {
        &self.shape
    }

    /// Number of traces generated so far.
    pub fn generated(&self) -> u64 {
        self.generated
    }

    /// A trace ending now.
    pub fn next_trace(&mut self) -> GeneratedTrace {
        self.next_trace_at(now_unix_nanos())
    }

    /// A trace whose root span ends at `end_unix_nano`.
    pub fn next_trace_at(&mut self, end_unix_nano: u64) -> GeneratedTrace {
        self.generate(end_unix_nano, usize::MAX)
    }

    /// A trace whose root span ends at `end_unix_nano`, with at most `max_spans` spans (at
    /// least one). Used to hit an exact total span count.
    pub fn next_trace_capped(&mut self, end_unix_nano: u64, max_spans: usize) -> GeneratedTrace {
        self.generate(end_unix_nano, max_spans.max(1))
    }

    fn standard_normal(&mut self) -> f64 {
        // Box-Muller; 1 - u is in (0, 1] so the logarithm is finite.
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn span_count(&mut self) -> usize {
        let (min, max) = (self.shape.min_spans, self.shape.max_spans);
        let median = self.shape.median_spans;
        let large = self.rng.random_bool(self.shape.large_trace_fraction);
        let n = if large && max > median {
            let lo = (median.saturating_mul(4)).clamp(min, max) as f64;
            let hi = max as f64;
            let u: f64 = self.rng.random();
            (lo.ln() + u * (hi.ln() - lo.ln())).exp().round()
        } else {
            let z = self.standard_normal();
            (median as f64 * (0.8 * z).exp()).round()
        };
        (n.max(0.0) as usize).clamp(min, max)
    }

    fn root_duration(&mut self, slow: bool) -> u64 {
        let threshold = self.shape.slow_threshold.as_nanos() as f64;
        let d = if slow {
            // Exponential tail above the threshold (mean 1.5x the threshold above it),
            // capped at 20x the threshold.
            let u: f64 = 1.0 - self.rng.random::<f64>();
            threshold * (1.0 + (-1.5 * u.ln()).min(19.0))
        } else {
            let median = self.shape.median_duration.as_nanos() as f64;
            let mut d = threshold;
            for _ in 0..8 {
                let z = self.standard_normal();
                d = median * (self.shape.duration_sigma * z).exp();
                if d < threshold {
                    break;
                }
            }
            if d >= threshold {
                d = threshold * self.rng.random_range(0.5..0.95);
            }
            d
        };
        (d as u64).max(1_000)
    }

    fn new_span_id(&mut self, used: &mut HashSet<[u8; 8]>) -> [u8; 8] {
        loop {
            let mut id = [0u8; 8];
            self.rng.fill(&mut id);
            if id != [0u8; 8] && used.insert(id) {
                return id;
            }
        }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    fn operation_of(&mut self, service: usize) -> usize {
        self.rng.random_range(0..self.shape.services[service].operations.len())
    }

    fn generate(&mut self, end_unix_nano: u64, cap: usize) -> GeneratedTrace {
        self.generated += 1;
        let mut trace_id = [0u8; 16];
        while trace_id == [0u8; 16] {
            self.rng.fill(&mut trace_id);
        }
        let n = self.span_count().min(cap);
        let is_error = self.rng.random_bool(self.shape.error_rate);
        let is_slow = self.rng.random_bool(self.shape.slow_rate);
        let duration = self.root_duration(is_slow);

        let mut nodes = self.build_tree(n);
        self.assign_times(&mut nodes, end_unix_nano, duration);
        if is_error {
            self.inject_error(&mut nodes);
        }
        let root_service = self.shape.services[0].name.clone();
        let root_name = self.span_name(&nodes[0]);
        let resource_spans = self.group_by_service(&trace_id, &nodes);
        GeneratedTrace {
            trace_id,
            spans: nodes.len(),
            is_error,
            is_slow,
            duration_ns: nodes[0].end - nodes[0].start,
            root_service,
            root_name,
            resource_spans,
        }
    }

    /// The span tree, parents always before their children.
    fn build_tree(&mut self, n: usize) -> Vec<Node> {
        let mut used = HashSet::with_capacity(n);
        let root_id = self.new_span_id(&mut used);
        let root_op = self.operation_of(0);
        let mut nodes = Vec::with_capacity(n);
        nodes.push(Node {
            service: 0,
            parent: None,
            op: Op::Server { operation: root_op },
            span_id: root_id,
            start: 0,
            end: 0,
            error: false,
            error_origin: false,
            children: 0,
        });
        // Spans that may have children: SERVER and INTERNAL ones.
        let mut expandable = vec![0usize];
        while nodes.len() < n {
            let remaining = n - nodes.len();
            let parent = expandable[self.rng.random_range(0..expandable.len())];
            let service = nodes[parent].service;
            let callees_len = self.topology.calls[service].len();
            let has_db = self.shape.services[service].database.is_some();
            // The first call out of the root is always a remote call when possible, so that most
            // traces span several services.
            let force_rpc = parent == 0 && nodes[0].children == 0 && callees_len > 0;
            let roll: f64 = self.rng.random();
            nodes[parent].children += 1;
            if remaining >= 2 && callees_len > 0 && (force_rpc || roll < 0.5) {
                let callee = self.topology.calls[service][self.rng.random_range(0..callees_len)];
                let operation = self.operation_of(callee);
                let client_id = self.new_span_id(&mut used);
                let server_id = self.new_span_id(&mut used);
                nodes.push(Node {
                    service,
                    parent: Some(parent),
                    op: Op::Client { callee, operation },
                    span_id: client_id,
                    start: 0,
                    end: 0,
                    error: false,
                    error_origin: false,
                    children: 1,
                });
                nodes.push(Node {
                    service: callee,
                    parent: Some(nodes.len() - 1),
                    op: Op::Server { operation },
                    span_id: server_id,
                    start: 0,
                    end: 0,
                    error: false,
                    error_origin: false,
                    children: 0,
                });
                expandable.push(nodes.len() - 1);
            } else if has_db && roll < 0.8 {
                let (tables, verbs) = match &self.shape.services[service].database {
                    Some(db) => (db.tables.len().max(1), db_verbs(&db.system).len()),
                    None => (1, 1),
                };
                let table = self.rng.random_range(0..tables);
                let verb = self.rng.random_range(0..verbs);
                let id = self.new_span_id(&mut used);
                nodes.push(Node {
                    service,
                    parent: Some(parent),
                    op: Op::Db { table, verb },
                    span_id: id,
                    start: 0,
                    end: 0,
                    error: false,
                    error_origin: false,
                    children: 0,
                });
            } else {
                let name = self.rng.random_range(0..INTERNAL_NAMES.len());
                let id = self.new_span_id(&mut used);
                nodes.push(Node {
                    service,
                    parent: Some(parent),
                    op: Op::Internal { name },
                    span_id: id,
                    start: 0,
                    end: 0,
                    error: false,
                    error_origin: false,
                    children: 0,
                });
                expandable.push(nodes.len() - 1);
            }
        }
        nodes
    }

    /// Start and end times: the root ends at `end` and lasts `duration`, every child lies within
    /// its parent.
    fn assign_times(&mut self, nodes: &mut [Node], end: u64, duration: u64) {
        let end = end.max(duration + 1);
        nodes[0].start = end - duration;
        nodes[0].end = end;
        for i in 1..nodes.len() {
            let Some(p) = nodes[i].parent else { continue };
            let (ps, pe) = (nodes[p].start, nodes[p].end);
            let pd = pe - ps;
            let remote_server = matches!(nodes[i].op, Op::Server { .. }) && matches!(nodes[p].op, Op::Client { .. });
            let (start, stop) = if pd < 4 {
                (ps, pe)
            } else if remote_server {
                // Network latency on both sides of the call.
                let a = (pd as f64 * self.rng.random_range(0.01..0.06)) as u64;
                let b = (pd as f64 * self.rng.random_range(0.01..0.06)) as u64;
                (ps + a, (pe - b).max(ps + a + 1))
            } else {
                let offset = (pd as f64 * self.rng.random_range(0.0..0.6)) as u64;
                let start = ps + offset;
                let len = ((pe - start) as f64 * self.rng.random_range(0.05..0.95)) as u64;
                (start, (start + len.max(1)).min(pe))
            };
            nodes[i].start = start;
            nodes[i].end = stop.max(start);
        }
    }

    /// Marks one span as failed and propagates the failure up the call chain, sometimes.
    fn inject_error(&mut self, nodes: &mut [Node]) {
        // Prefer leaves (database calls, callee servers without children, internal work).
        let leaves: Vec<usize> = (1..nodes.len()).filter(|&i| nodes[i].children == 0).collect();
        let origin = if leaves.is_empty() { 0 } else { self.pick(&leaves) };
        nodes[origin].error = true;
        nodes[origin].error_origin = true;
        let mut current = origin;
        while let Some(p) = nodes[current].parent {
            // A client whose server failed fails too; otherwise errors are sometimes handled.
            let propagate = match (&nodes[p].op, &nodes[current].op) {
                (Op::Client { .. }, Op::Server { .. }) => true,
                _ => self.rng.random_bool(0.6),
            };
            if !propagate {
                break;
            }
            nodes[p].error = true;
            current = p;
        }
    }

    fn span_name(&self, node: &Node) -> String {
        let services = &self.shape.services;
        match &node.op {
            Op::Server { operation } => services[node.service].operations[*operation].clone(),
            Op::Client { callee, operation } => {
                let op = &services[*callee].operations[*operation];
                match services[*callee].protocol {
                    ServiceProtocol::Http => op.split(' ').next().unwrap_or("GET").to_string(),
                    ServiceProtocol::Grpc => op.clone(),
                }
            }
            Op::Db { table, verb } => match &services[node.service].database {
                Some(db) => {
                    let verb = db_verbs(&db.system)[*verb];
                    let table = db.tables.get(*table).map(String::as_str).unwrap_or("data");
                    match db.system.as_str() {
                        "redis" | "memcached" => verb.to_string(),
                        "mongodb" => format!("{verb} {table}"),
                        _ => format!("{verb} {}.{table}", db.name),
                    }
                }
                None => "db.query".to_string(),
            },
            Op::Internal { name } => INTERNAL_NAMES[*name].to_string(),
        }
    }

    fn http_attributes(&mut self, method_route: &str, error: bool, attrs: &mut Vec<KeyValue>) -> String {
        let (method, route) = method_route.split_once(' ').unwrap_or(("GET", method_route));
        let target = route.replace("{id}", &self.rng.random_range(1..5000).to_string());
        let status = if error {
            self.pick(&[500i64, 500, 502, 503])
        } else if method == "POST" {
            self.pick(&[200i64, 200, 200, 201])
        } else {
            200
        };
        attrs.push(kv_str("http.method", method));
        attrs.push(kv_str("http.route", route));
        attrs.push(kv_str("http.target", target.clone()));
        attrs.push(kv_str("http.scheme", "http"));
        attrs.push(kv_int("http.status_code", status));
        target
    }

    fn grpc_attributes(&mut self, method: &str, error: bool, attrs: &mut Vec<KeyValue>) {
        let (service, method) = method.split_once('/').unwrap_or((method, ""));
        let code = if error { self.pick(&[2i64, 13, 14, 4]) } else { 0 };
        attrs.push(kv_str("rpc.system", "grpc"));
        attrs.push(kv_str("rpc.service", service));
        attrs.push(kv_str("rpc.method", method));
        attrs.push(kv_int("rpc.grpc.status_code", code));
    }

    fn span_attributes(&mut self, node: &Node) -> (Vec<KeyValue>, SpanKind, Vec<Event>) {
        let mut attrs = Vec::with_capacity(8);
        let mut events = Vec::new();
        let service = &self.shape.services[node.service];
        let kind = match &node.op {
            Op::Server { operation } => {
                let protocol = service.protocol;
                let op = service.operations[*operation].clone();
                let host = service.name.clone();
                match protocol {
                    ServiceProtocol::Http => {
                        self.http_attributes(&op, node.error, &mut attrs);
                        attrs.push(kv_str("net.host.name", host));
                        attrs.push(kv_int("net.host.port", 8080));
                        if node.parent.is_none() {
                            let agent = self.pick(&[
                                "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                                "Mozilla/5.0 (Macintosh) Safari/605.1.15",
                                "okhttp/4.12.0",
                                "python-requests/2.32",
                            ]);
                            attrs.push(kv_str("user_agent.original", agent));
                            attrs.push(kv_str(
                                "client.address",
                                format!(
                                    "10.{}.{}.{}",
                                    self.rng.random_range(0..255),
                                    self.rng.random_range(0..255),
                                    self.rng.random_range(1..255)
                                ),
                            ));
                        }
                    }
                    ServiceProtocol::Grpc => {
                        self.grpc_attributes(&op, node.error, &mut attrs);
                        attrs.push(kv_str("net.host.name", host));
                        attrs.push(kv_int("net.host.port", 50051));
                    }
                }
                SpanKind::Server
            }
            Op::Client { callee, operation } => {
                let callee = &self.shape.services[*callee];
                let protocol = callee.protocol;
                let op = callee.operations[*operation].clone();
                let peer = callee.name.clone();
                match protocol {
                    ServiceProtocol::Http => {
                        let target = self.http_attributes(&op, node.error, &mut attrs);
                        attrs.push(kv_str("http.url", format!("http://{peer}:8080{target}")));
                        attrs.push(kv_str("net.peer.name", peer));
                        attrs.push(kv_int("net.peer.port", 8080));
                    }
                    ServiceProtocol::Grpc => {
                        self.grpc_attributes(&op, node.error, &mut attrs);
                        attrs.push(kv_str("net.peer.name", peer));
                        attrs.push(kv_int("net.peer.port", 50051));
                    }
                }
                SpanKind::Client
            }
            Op::Db { table, verb } => {
                if let Some(db) = service.database.clone() {
                    let verb = db_verbs(&db.system)[*verb];
                    let table = db.tables.get(*table).cloned().unwrap_or_else(|| "data".into());
                    let id = self.rng.random_range(1..100_000);
                    let statement = match db.system.as_str() {
                        "redis" | "memcached" => format!("{verb} {table}:{id}"),
                        "mongodb" => {
                            format!("{{\"{verb}\": \"{table}\", \"filter\": {{\"_id\": \"?\"}}}}")
                        }
                        _ => match verb {
                            "INSERT" => format!("INSERT INTO {table} VALUES (?, ?, ?)"),
                            "UPDATE" => format!("UPDATE {table} SET updated_at = ? WHERE id = ?"),
                            "DELETE" => format!("DELETE FROM {table} WHERE id = ?"),
                            _ => format!("SELECT * FROM {table} WHERE id = ?"),
                        },
                    };
                    attrs.push(kv_str("db.system", db.system.clone()));
                    attrs.push(kv_str("db.name", db.name.clone()));
                    attrs.push(kv_str("db.operation", verb));
                    attrs.push(kv_str("db.statement", statement));
                    if !matches!(db.system.as_str(), "redis" | "memcached" | "mongodb") {
                        attrs.push(kv_str("db.sql.table", table));
                    }
                    attrs.push(kv_str("net.peer.name", db.host.clone()));
                    let port = match db.system.as_str() {
                        "redis" => 6379,
                        "mongodb" => 27017,
                        "mysql" => 3306,
                        _ => 5432,
                    };
                    attrs.push(kv_int("net.peer.port", port));
                }
                SpanKind::Client
            }
            Op::Internal { .. } => {
                attrs.push(kv_str("code.namespace", format!("{}.handlers", service.name)));
                attrs.push(kv_int("app.items", self.rng.random_range(0..50)));
                attrs.push(kv_bool("app.cache_hit", self.rng.random_bool(0.7)));
                SpanKind::Internal
            }
        };
        if node.error_origin {
            // The span where the failure originated records the exception.
            let (ty, msg) = match &node.op {
                Op::Db { .. } => ("DatabaseError", "connection reset by peer"),
                Op::Internal { .. } => ("ValueError", "invalid state while processing request"),
                Op::Client { .. } => ("TimeoutError", "deadline exceeded calling downstream"),
                Op::Server { .. } => ("InternalError", "unhandled exception in request handler"),
            };
            events.push(Event {
                time_unix_nano: node.end,
                name: "exception".to_string(),
                attributes: vec![kv_str("exception.type", ty), kv_str("exception.message", msg)],
                dropped_attributes_count: 0,
            });
        }
        (attrs, kind, events)
    }

    fn resource_for(&mut self, service: usize) -> Resource {
        let spec = &self.shape.services[service];
        let name = spec.name.clone();
        let instance = self.rng.random_range(0..3);
        let language = LANGUAGES[service % LANGUAGES.len()];
        Resource {
            attributes: vec![
                kv_str("service.name", name.clone()),
                kv_str("service.namespace", "shop"),
                kv_str("service.version", format!("1.{}.{}", service % 7, service % 3)),
                kv_str("service.instance.id", format!("{name}-{instance}")),
                kv_str("host.name", format!("{name}-{instance}.prod.internal")),
                kv_str("deployment.environment", "loadtest"),
                kv_str("telemetry.sdk.name", "opentelemetry"),
                kv_str("telemetry.sdk.language", language),
            ],
            dropped_attributes_count: 0,
            ..Default::default()
        }
    }

    fn group_by_service(&mut self, trace_id: &[u8; 16], nodes: &[Node]) -> Vec<ResourceSpans> {
        // Services in order of first appearance.
        let mut order: Vec<usize> = Vec::new();
        for node in nodes {
            if !order.contains(&node.service) {
                order.push(node.service);
            }
        }
        let mut groups: Vec<Vec<Span>> = order.iter().map(|_| Vec::new()).collect();
        for node in nodes {
            let (attributes, kind, events) = self.span_attributes(node);
            let parent = node.parent.map(|p| &nodes[p]);
            let remote_parent = parent.is_some_and(|p| p.service != node.service);
            let status = if node.error {
                Some(Status {
                    message: "request failed".to_string(),
                    code: StatusCode::Error as i32,
                })
            } else {
                None
            };
            let span = Span {
                trace_id: trace_id.to_vec(),
                span_id: node.span_id.to_vec(),
                trace_state: String::new(),
                parent_span_id: parent.map(|p| p.span_id.to_vec()).unwrap_or_default(),
                // W3C "sampled", plus "has is_remote" (0x100) and "is_remote" (0x200).
                flags: if remote_parent { 0x301 } else { 0x101 },
                name: self.span_name(node),
                kind: kind as i32,
                start_time_unix_nano: node.start,
                end_time_unix_nano: node.end,
                attributes,
                dropped_attributes_count: 0,
                events,
                dropped_events_count: 0,
                links: Vec::new(),
                dropped_links_count: 0,
                status,
            };
            let group = order.iter().position(|&s| s == node.service).unwrap_or(0);
            groups[group].push(span);
        }
        let version = env!("CARGO_PKG_VERSION").to_string();
        let mut out = Vec::with_capacity(order.len());
        for (service, spans) in order.into_iter().zip(groups) {
            let resource = self.resource_for(service);
            out.push(ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: format!("tailsift-loadgen/{}", self.shape.services[service].name),
                        version: version.clone(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    spans,
                    schema_url: "https://opentelemetry.io/schemas/1.21.0".to_string(),
                }],
                schema_url: String::new(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NOW: u64 = 1_750_000_000_000_000_000;

    fn generate(shape: TraceShape, seed: u64, n: usize) -> Vec<GeneratedTrace> {
        let mut g = Generator::new(shape, seed);
        (0..n).map(|i| g.next_trace_at(NOW + i as u64)).collect()
    }

    #[test]
    fn default_shape_is_valid() {
        assert_eq!(TraceShape::default().validate(), Ok(()));
    }

    #[test]
    fn invalid_shapes_are_reported_and_repaired() {
        let shape = TraceShape {
            min_spans: 10,
            max_spans: 5,
            ..TraceShape::default()
        };
        assert!(matches!(shape.validate(), Err(ShapeError::SpanBounds { .. })));
        let mut g = Generator::new(shape, 1);
        assert_eq!(g.next_trace_at(NOW).spans, 10);

        let mut shape = TraceShape::default();
        shape.services[0].calls.push("nowhere".into());
        assert!(matches!(shape.validate(), Err(ShapeError::UnknownService { .. })));
        let shape = TraceShape {
            error_rate: 1.5,
            ..TraceShape::default()
        };
        assert!(matches!(shape.validate(), Err(ShapeError::Fraction { .. })));
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = generate(TraceShape::default(), 42, 200);
        let b = generate(TraceShape::default(), 42, 200);
        assert_eq!(a, b);
        let c = generate(TraceShape::default(), 43, 200);
        assert_ne!(a[0].trace_id, c[0].trace_id);
    }

    #[test]
    fn structure_is_a_single_rooted_tree() {
        for t in generate(TraceShape::default(), 7, 2000) {
            assert_ne!(t.trace_id, [0u8; 16]);
            let spans: Vec<&Span> = t.iter_spans().collect();
            assert_eq!(spans.len(), t.spans);
            let ids: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), *s)).collect();
            assert_eq!(ids.len(), spans.len(), "span IDs are unique");
            let roots: Vec<_> = spans.iter().filter(|s| s.parent_span_id.is_empty()).collect();
            assert_eq!(roots.len(), 1, "exactly one root");
            assert_eq!(roots[0].kind, SpanKind::Server as i32);
            assert_eq!(
                roots[0].end_time_unix_nano - roots[0].start_time_unix_nano,
                t.duration_ns
            );
            for s in &spans {
                assert_eq!(s.trace_id, t.trace_id);
                assert_eq!(s.span_id.len(), 8);
                assert_ne!(s.span_id, vec![0u8; 8]);
                assert!(s.start_time_unix_nano <= s.end_time_unix_nano);
                if !s.parent_span_id.is_empty() {
                    let parent = ids
                        .get(s.parent_span_id.as_slice())
                        .expect("parent is a span of the same trace");
                    assert!(parent.start_time_unix_nano <= s.start_time_unix_nano);
                    assert!(s.end_time_unix_nano <= parent.end_time_unix_nano);
                }
            }
            let has_error = spans.iter().any(|s| s.status.as_ref().is_some_and(|st| st.code == 2));
            assert_eq!(has_error, t.is_error);
            for rs in &t.resource_spans {
                let resource = rs.resource.as_ref().expect("resource");
                assert!(resource.attributes.iter().any(|kv| kv.key == "service.name"));
                assert_eq!(rs.scope_spans.len(), 1);
            }
        }
    }

    #[test]
    fn span_count_bounds_are_respected() {
        let shape = TraceShape {
            min_spans: 3,
            max_spans: 40,
            median_spans: 6,
            large_trace_fraction: 0.2,
            ..TraceShape::default()
        };
        let traces = generate(shape, 3, 3000);
        assert!(traces.iter().all(|t| (3..=40).contains(&t.spans)));
        assert!(traces.iter().any(|t| t.spans >= 30), "large traces occur");
        let default = generate(TraceShape::default(), 3, 3000);
        assert!(default.iter().all(|t| (1..=300).contains(&t.spans)));
        let small = default.iter().filter(|t| t.spans <= 20).count();
        assert!(small > 2500, "most traces are small: {small}");
        assert!(default.iter().any(|t| t.spans > 100), "there is a tail of large traces");
        let multi = default.iter().filter(|t| t.service_count() >= 2).count();
        assert!(multi > 2000, "most traces span several services: {multi}");
    }

    #[test]
    fn capped_traces_respect_the_cap() {
        let mut g = Generator::new(TraceShape::default(), 9);
        for cap in [1usize, 2, 5, 17] {
            for _ in 0..50 {
                assert!(g.next_trace_capped(NOW, cap).spans <= cap);
            }
        }
    }

    #[test]
    fn error_and_slow_fractions_match_the_configuration() {
        let shape = TraceShape {
            error_rate: 0.1,
            slow_rate: 0.05,
            ..TraceShape::default()
        };
        let threshold = shape.slow_threshold.as_nanos() as u64;
        let traces = generate(shape, 11, 5000);
        let errors = traces.iter().filter(|t| t.is_error).count() as f64 / 5000.0;
        let slow = traces.iter().filter(|t| t.is_slow).count() as f64 / 5000.0;
        assert!((errors - 0.1).abs() < 0.02, "error fraction {errors}");
        assert!((slow - 0.05).abs() < 0.015, "slow fraction {slow}");
        for t in &traces {
            assert_eq!(t.is_slow, t.duration_ns >= threshold, "{t:?}");
        }
        let none = generate(
            TraceShape {
                error_rate: 0.0,
                slow_rate: 0.0,
                ..TraceShape::default()
            },
            11,
            1000,
        );
        assert!(none.iter().all(|t| !t.is_error && !t.is_slow));
    }

    #[test]
    fn timestamps_are_near_the_requested_end() {
        let mut g = Generator::new(TraceShape::default(), 5);
        let now = now_unix_nanos();
        let t = g.next_trace();
        for s in t.iter_spans() {
            assert!(s.end_time_unix_nano <= now + 60_000_000_000);
            assert!(s.start_time_unix_nano + 120_000_000_000 >= now);
        }
    }

    #[test]
    fn trace_record_json_uses_hex_ids() {
        let t = generate(TraceShape::default(), 1, 1).remove(0);
        let rec = t.record();
        let json = serde_json::to_string(&rec).expect("serialize");
        assert!(json.contains(&t.trace_id_hex()));
        let back: TraceRecord = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, rec);
    }
}
