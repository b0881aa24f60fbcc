//! The Jaeger remote sampling API on the admin port: `GET /api/sampling?service=NAME`, the
//! endpoint Jaeger SDKs and the OpenTelemetry `jaegerremote` samplers poll (Jaeger agent's
//! `:5778/sampling`, collector's `:14268/api/sampling`). Unauthenticated, like Jaeger's own
//! endpoint: it only reveals sampling rates. It answers with a head-sampling strategy derived from
//! the current policy document; the tail decision is still made by the samplers.
//!
//! Mapping, over the **top-level** policies in document order (nested `and`/`not`/`composite`/
//! `drop` policies and regex filters are not expressible in a Jaeger strategy and are skipped):
//!
//! * A policy *applies to the service* when it has no `match.service`, or its `match.service` is
//!   the service name exactly or a list containing it.
//! * The service's strategy comes from the first applying policy **without** `match.span_name`
//!   that is `probabilistic` (`percentage / 100`), `otel_probabilistic`
//!   (`sampling_percentage / 100`) → `PROBABILISTIC` with that `samplingRate`; or
//!   `rate_limiting` with `traces_per_second` → `RATE_LIMITING` with `maxTracesPerSecond` (the
//!   rate, rounded down, at least 1).
//! * Without one, the default is `PROBABILISTIC` with `samplingRate` 1.0 (send everything; the
//!   tail samplers decide), which is also the answer before any policy was published.
//! * For a `PROBABILISTIC` answer, every applying `probabilistic`/`otel_probabilistic` policy
//!   whose `match.span_name` is exact or a list adds one entry per span name to
//!   `operationSampling.perOperationStrategies` (first policy wins per name);
//!   `defaultSamplingProbability` is the service's rate and `defaultLowerBoundTracesPerSecond` is
//!   0. `operationSampling` is only present when there is at least one per-operation entry.
//!
//! `service` missing or empty, or longer than [`MAX_SERVICE_LEN`] bytes → 400 with a plain-text
//! message, as Jaeger answers. The answer's types ([`JaegerStrategy`]) are in the OpenAPI document.
//!
//! The endpoint is public and polled by every SDK, so answers come from a [`SamplingCache`]: the
//! policy document is parsed and compiled once per policy version, and the answers of that version
//! are kept per service name (at most [`MAX_CACHED_SERVICES`]; names beyond are answered from the
//! cached document without being stored). A new version replaces the whole cache.
//!
//! The same answer is served at `GET /sampling?service=NAME`, the Jaeger agent's path (`:5778/sampling`),
//! which is what clients configured with only a host and port ask for (OpenTelemetry JS
//! `JaegerRemoteSampler`, Go `jaegerremote`'s default URL).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tailsift_policy::{MatchFilter, NamedPolicy, PolicyDocument, PolicyKind, StringMatch};
use utoipa::{IntoParams, ToSchema};

use super::{AdminError, AdminState};
use crate::store::View;

/// Rate of the default strategy (no applying policy): keep everything at the head.
pub const DEFAULT_SAMPLING_RATE: f64 = 1.0;

/// Longest `service` name answered, in bytes; a longer one is a 400.
pub const MAX_SERVICE_LEN: usize = 512;

/// Most answers cached per policy version (service names come from untrusted query strings).
pub const MAX_CACHED_SERVICES: usize = 4096;

/// The parsed document and the serialized answers of one policy version.
struct Versioned {
    version: u64,
    doc: OnceLock<Option<PolicyDocument>>,
    answers: DashMap<String, Bytes>,
}

impl Versioned {
    fn new(version: u64) -> Arc<Self> {
        Arc::new(Versioned {
            version,
            doc: OnceLock::new(),
            answers: DashMap::new(),
        })
    }
}

/// Jaeger sampling answers of the newest policy version this node has seen (see the module
/// documentation). Shared by all requests of one admin router.
pub struct SamplingCache {
    node: String,
    current: RwLock<Arc<Versioned>>,
    compiles: AtomicU64,
}

impl SamplingCache {
    pub fn new(node: impl Into<String>) -> Self {
        SamplingCache {
            node: node.into(),
            current: RwLock::new(Versioned::new(0)),
            compiles: AtomicU64::new(0),
        }
    }

    /// How many times a policy document was parsed and compiled (once per version seen).
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// The JSON answer for `service` under the policy of `view`.
    pub fn answer(&self, view: &View, service: &str) -> Bytes {
        let slot = self.slot(view.registry.policy_version());
        if let Some(a) = slot.answers.get(service) {
            ::metrics::counter!(crate::metrics::SAMPLING_CACHE_LOOKUPS, "node" => self.node.clone(), "result" => "hit")
                .increment(1);
            return a.clone();
        }
        ::metrics::counter!(crate::metrics::SAMPLING_CACHE_LOOKUPS, "node" => self.node.clone(), "result" => "miss")
            .increment(1);
        let doc = slot.doc.get_or_init(|| {
            self.compiles.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!(crate::metrics::SAMPLING_CACHE_COMPILES, "node" => self.node.clone()).increment(1);
            // The stored document was validated before it was committed; re-parsing cannot fail
            // unless the policy crate changed, in which case the default strategy is served.
            view.registry.current().and_then(|p| p.format.check(&p.document).ok())
        });
        let body = Bytes::from(serde_json::to_vec(&strategy(doc.as_ref(), service)).unwrap_or_default());
        if slot.answers.len() < MAX_CACHED_SERVICES {
            slot.answers.insert(service.to_owned(), body.clone());
        }
        body
    }

    /// The cache of `version`: the current one, a new one replacing an older current one, or,
    /// for a view older than the current one (a request racing an apply), a throwaway one.
    fn slot(&self, version: u64) -> Arc<Versioned> {
        {
            let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
            if cur.version == version {
                return cur.clone();
            }
        }
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if cur.version == version {
            cur.clone()
        } else if cur.version > version {
            Versioned::new(version)
        } else {
            *cur = Versioned::new(version);
            cur.clone()
        }
    }
}

/// `?service=NAME`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SamplingQuery {
    /// The service name (1 to 512 bytes).
    #[serde(default)]
    #[param(required = true, min_length = 1, max_length = 512)]
    service: Option<String>,
}

/// A sampling rate, 0 to 1.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbabilisticSampling {
    pub sampling_rate: f64,
}

/// A rate limit.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitingSampling {
    pub max_traces_per_second: i64,
}

/// The rate of one operation (span name).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStrategy {
    pub operation: String,
    pub probabilistic_sampling: ProbabilisticSampling,
}

/// Per-operation rates.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationSampling {
    pub default_sampling_probability: f64,
    pub default_lower_bound_traces_per_second: f64,
    pub per_operation_strategies: Vec<OperationStrategy>,
}

/// `PROBABILISTIC` or `RATE_LIMITING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StrategyType {
    Probabilistic,
    RateLimiting,
}

/// A Jaeger sampling strategy (the JSON of Jaeger's `SamplingStrategyResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JaegerStrategy {
    pub strategy_type: StrategyType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilistic_sampling: Option<ProbabilisticSampling>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limiting_sampling: Option<RateLimitingSampling>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_sampling: Option<OperationSampling>,
}

fn matches(m: &StringMatch, name: &str) -> Option<bool> {
    match m {
        StringMatch::Exact(v) => Some(v == name),
        StringMatch::OneOf(vs) => Some(vs.iter().any(|v| v == name)),
        StringMatch::Regex(_) => None,
    }
}

fn applies(filter: Option<&MatchFilter>, service: &str) -> bool {
    match filter.and_then(|f| f.service.as_ref()) {
        None => true,
        Some(m) => matches(m, service) == Some(true),
    }
}

fn rate(p: &NamedPolicy) -> Option<f64> {
    match &p.kind {
        PolicyKind::Probabilistic(x) => Some(x.percentage / 100.0),
        PolicyKind::OtelProbabilistic(x) => Some(x.sampling_percentage / 100.0),
        _ => None,
    }
}

/// The Jaeger strategy for `service` under `doc` (`None`: no policy published yet).
pub fn strategy(doc: Option<&PolicyDocument>, service: &str) -> JaegerStrategy {
    let policies: &[NamedPolicy] = doc.map_or(&[], |d| d.policies.as_slice());
    let applying = || policies.iter().filter(|p| applies(p.filter.as_ref(), service));
    let span_filter = |p: &NamedPolicy| p.filter.as_ref().and_then(|f| f.span_name.clone());

    let mut service_rate = None;
    for p in applying().filter(|p| span_filter(p).is_none()) {
        if let Some(r) = rate(p) {
            service_rate = Some(r.clamp(0.0, 1.0));
            break;
        }
        if let PolicyKind::RateLimiting(rl) = &p.kind {
            if let Some(tps) = rl.traces_per_second {
                return JaegerStrategy {
                    strategy_type: StrategyType::RateLimiting,
                    probabilistic_sampling: None,
                    rate_limiting_sampling: Some(RateLimitingSampling {
                        max_traces_per_second: (tps.floor() as i64).max(1),
                    }),
                    operation_sampling: None,
                };
            }
        }
    }
    let default = service_rate.unwrap_or(DEFAULT_SAMPLING_RATE);

    let mut ops: Vec<(String, f64)> = Vec::new();
    for p in applying() {
        let (Some(names), Some(r)) = (span_filter(p), rate(p)) else {
            continue;
        };
        let names = match names {
            StringMatch::Exact(v) => vec![v],
            StringMatch::OneOf(vs) => vs,
            StringMatch::Regex(_) => continue,
        };
        for n in names {
            if !ops.iter().any(|(o, _)| *o == n) {
                ops.push((n, r.clamp(0.0, 1.0)));
            }
        }
    }
    JaegerStrategy {
        strategy_type: StrategyType::Probabilistic,
        probabilistic_sampling: Some(ProbabilisticSampling { sampling_rate: default }),
        rate_limiting_sampling: None,
        operation_sampling: (!ops.is_empty()).then(|| OperationSampling {
            default_sampling_probability: default,
            default_lower_bound_traces_per_second: 0.0,
            per_operation_strategies: ops
                .into_iter()
                .map(|(operation, r)| OperationStrategy {
                    operation,
                    probabilistic_sampling: ProbabilisticSampling { sampling_rate: r },
                })
                .collect(),
        }),
    }
}

#[utoipa::path(get, path = "/api/sampling", operation_id = "jaeger_sampling",
    summary = "Jaeger remote sampling strategy for a service, derived from the current policy (unauthenticated, like Jaeger's endpoint)",
    params(SamplingQuery),
    responses((status = 200, description = "strategy", body = JaegerStrategy),
        (status = 400, description = "service missing, or longer than 512 bytes", content_type = "text/plain", body = String)))]
pub async fn serve(s: State<AdminState>, q: Query<SamplingQuery>) -> Result<Response, AdminError> {
    answer(s, q)
}

#[utoipa::path(get, path = "/sampling", operation_id = "jaeger_sampling_agent_path", summary = "The same as /api/sampling, at the Jaeger agent's path (unauthenticated)",
    params(SamplingQuery),
    responses((status = 200, description = "strategy", body = JaegerStrategy),
        (status = 400, description = "service missing, or longer than 512 bytes", content_type = "text/plain", body = String)))]
pub async fn serve_agent_path(s: State<AdminState>, q: Query<SamplingQuery>) -> Result<Response, AdminError> {
    answer(s, q)
}

fn answer(State(s): State<AdminState>, Query(q): Query<SamplingQuery>) -> Result<Response, AdminError> {
    let service = q.service.unwrap_or_default();
    if service.is_empty() {
        return Err(AdminError::PlainBadRequest(
            "'service' parameter must be provided\n".into(),
        ));
    }
    if service.len() > MAX_SERVICE_LEN {
        return Err(AdminError::PlainBadRequest(format!(
            "'service' parameter is longer than {MAX_SERVICE_LEN} bytes\n"
        )));
    }
    let body = s.sampling.answer(&s.c.view(), &service);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, PolicyFormat, Registry};
    use serde_json::{json, Value};

    /// The answer as JSON, as served.
    fn strategy(doc: Option<&PolicyDocument>, service: &str) -> Value {
        serde_json::to_value(super::strategy(doc, service)).unwrap()
    }

    fn put(r: &mut Registry, yaml: &str) -> View {
        r.apply(&Command::PutPolicy {
            author: "t".into(),
            time_unix_ms: 0,
            format: PolicyFormat::Yaml,
            document: yaml.into(),
            note: String::new(),
        })
        .unwrap();
        View {
            last_applied: None,
            registry: r.clone(),
        }
    }

    fn rate_of(b: &Bytes) -> Value {
        serde_json::from_slice::<Value>(b).unwrap()["probabilisticSampling"]["samplingRate"].clone()
    }

    #[test]
    fn answers_are_compiled_once_per_version_and_the_cache_is_bounded() {
        let cache = SamplingCache::new("1");
        let mut r = Registry::default();
        assert_eq!(rate_of(&cache.answer(&View::default(), "a")), 1.0);
        assert_eq!(cache.compiles(), 1);

        let v1 = put(
            &mut r,
            "policies:\n  - name: p\n    probabilistic: { percentage: 20 }\n",
        );
        assert_eq!(rate_of(&cache.answer(&v1, "a")), 0.2);
        assert_eq!(rate_of(&cache.answer(&v1, "a")), 0.2);
        assert_eq!(rate_of(&cache.answer(&v1, "b")), 0.2);
        assert_eq!(cache.compiles(), 2, "one compile for version 1, whatever the requests");

        // Untrusted names: the answers of one version stay bounded, and are still right.
        for i in 0..MAX_CACHED_SERVICES + 10 {
            cache.answer(&v1, &format!("svc-{i}"));
        }
        assert_eq!(cache.current.read().unwrap().answers.len(), MAX_CACHED_SERVICES);
        assert_eq!(rate_of(&cache.answer(&v1, "not-cached")), 0.2);
        assert_eq!(cache.compiles(), 2);

        // A new version replaces the cache; a request still holding the older view is answered
        // from that view, without evicting the new version.
        let v2 = put(
            &mut r,
            "policies:\n  - name: p\n    probabilistic: { percentage: 30 }\n",
        );
        assert_eq!(rate_of(&cache.answer(&v2, "a")), 0.3);
        assert_eq!(rate_of(&cache.answer(&v1, "a")), 0.2);
        assert_eq!(rate_of(&cache.answer(&v2, "a")), 0.3);
        assert_eq!(cache.compiles(), 4);
        assert_eq!(cache.current.read().unwrap().version, 2);
        assert_eq!(cache.current.read().unwrap().answers.len(), 1);
    }

    fn doc(yaml: &str) -> PolicyDocument {
        crate::state::PolicyFormat::Yaml.check(yaml).unwrap()
    }

    #[test]
    fn no_policy_is_the_default_rate() {
        assert_eq!(
            strategy(None, "a"),
            json!({ "strategyType": "PROBABILISTIC", "probabilisticSampling": { "samplingRate": 1.0 } })
        );
        let d = doc("policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n");
        assert_eq!(strategy(Some(&d), "a")["probabilisticSampling"]["samplingRate"], 1.0);
    }

    #[test]
    fn services_operations_and_rate_limits() {
        let d = doc(concat!(
            "policies:\n",
            "  - name: errors\n    status_code: { codes: [ERROR] }\n",
            "  - name: cart-get\n    match: { service: checkout, span_name: [GET /cart, POST /cart] }\n    probabilistic: { percentage: 50 }\n",
            "  - name: any-health\n    match: { span_name: /health }\n    probabilistic: { percentage: 0 }\n",
            "  - name: regex-op\n    match: { span_name: { regex: '^x' } }\n    probabilistic: { percentage: 70 }\n",
            "  - name: checkout\n    match: { service: [checkout, payments] }\n    probabilistic: { percentage: 20 }\n",
            "  - name: ads\n    match: { service: ads }\n    rate_limiting: { traces_per_second: 7.9 }\n",
            "  - name: rest\n    probabilistic: { percentage: 10 }\n",
        ));
        assert_eq!(
            strategy(Some(&d), "checkout"),
            json!({
                "strategyType": "PROBABILISTIC",
                "probabilisticSampling": { "samplingRate": 0.2 },
                "operationSampling": {
                    "defaultSamplingProbability": 0.2,
                    "defaultLowerBoundTracesPerSecond": 0.0,
                    "perOperationStrategies": [
                        { "operation": "GET /cart", "probabilisticSampling": { "samplingRate": 0.5 } },
                        { "operation": "POST /cart", "probabilisticSampling": { "samplingRate": 0.5 } },
                        { "operation": "/health", "probabilisticSampling": { "samplingRate": 0.0 } },
                    ],
                },
            })
        );
        let p = strategy(Some(&d), "payments");
        assert_eq!(p["probabilisticSampling"]["samplingRate"], 0.2);
        assert_eq!(
            p["operationSampling"]["perOperationStrategies"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            strategy(Some(&d), "ads"),
            json!({ "strategyType": "RATE_LIMITING", "rateLimitingSampling": { "maxTracesPerSecond": 7 } })
        );
        assert_eq!(
            strategy(Some(&d), "other")["probabilisticSampling"]["samplingRate"],
            0.1
        );
        // The unfiltered rate limit applies to every service that has no earlier own rule.
        let d = doc("policies:\n  - name: a\n    match: { service: a }\n    probabilistic: { percentage: 30 }\n  - name: cap\n    rate_limiting: { traces_per_second: 0.5 }\n");
        assert_eq!(strategy(Some(&d), "a")["probabilisticSampling"]["samplingRate"], 0.3);
        assert_eq!(strategy(Some(&d), "b")["rateLimitingSampling"]["maxTracesPerSecond"], 1);
    }
}
