//! Compiled Refinery-style samplers: `deterministic`, the dynamic per-key
//! samplers and `rules`. The engine holds one [`SamplerNode`] per sampler
//! policy and asks it for a [`SamplerOutcome`].
//!
//! Every keep is decided by the crate's consistent sampling at probability
//! `1 / rate` (except `deterministic` with `hash: refinery_sha1`), so kept
//! traces carry the OpenTelemetry threshold and an adjusted count of
//! `rate`. Depends on `sampler_policy`, `fields`, `conditions`, `dynamic`,
//! `sha1`, `consistent`, `model` and `error`.

use crate::conditions::{rule_matches, Condition};
use crate::consistent::threshold_for;
use crate::dynamic::{Algorithm, EmaParams, KeyedRates};
use crate::error::Issue;
use crate::fields::KeySpec;
use crate::model::{Requirements, TraceData};
use crate::sampler_policy::{
    CountUnit, DeterministicHash, Interval, RuleScope, SamplerPolicy, SamplingRule, Unmatched,
};
use crate::sha1::refinery_deterministic_keep;

const SEC: u64 = 1_000_000_000;
const DEFAULT_MAX_KEYS: u64 = 500;
const MAX_MAX_KEYS: u64 = 1_000_000;

/// What a sampler decided for one trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SamplerOutcome {
    pub keep: bool,
    /// Keep probability (`1 / rate`).
    pub prob: f64,
    /// The consistent-sampling threshold used, if any.
    pub threshold: Option<u64>,
}

impl SamplerOutcome {
    const DROP: SamplerOutcome = SamplerOutcome {
        keep: false,
        prob: 1.0,
        threshold: None,
    };
    const KEEP: SamplerOutcome = SamplerOutcome {
        keep: true,
        prob: 1.0,
        threshold: None,
    };

    /// Keep with probability `1 / rate`, consistently.
    fn at_rate(rate: u64, randomness: u64) -> SamplerOutcome {
        let rate = rate.max(1);
        let prob = 1.0 / rate as f64;
        let threshold = threshold_for(prob);
        SamplerOutcome {
            keep: randomness >= threshold,
            prob,
            threshold: Some(threshold),
        }
    }
}

/// What the engine passes in for one trace.
pub(crate) struct SamplerInput<'t, 'a> {
    pub trace: &'t TraceData<'a>,
    /// `randomness(trace_id, seed)`.
    pub randomness: u64,
    pub now: u64,
    /// Identifies the current `decide` call (a node evaluated twice for the
    /// same trace counts it once and answers the same).
    pub seq: u64,
}

#[derive(Debug, Clone)]
struct Keyed {
    key: KeySpec,
    unit: CountUnit,
    rates: KeyedRates,
}

#[derive(Debug, Clone)]
enum Action {
    Drop,
    Rate(u64),
    Sampler(Box<Kind>),
}

#[derive(Debug, Clone)]
struct Rule {
    scope: RuleScope,
    conditions: Vec<Condition>,
    action: Action,
}

#[derive(Debug, Clone)]
enum Kind {
    Deterministic { rate: u64, sha1: bool },
    Keyed(Box<Keyed>),
    Rules { rules: Vec<Rule>, unmatched_keep: bool },
}

/// A compiled sampler policy.
#[derive(Debug, Clone)]
pub(crate) struct SamplerNode {
    kind: Kind,
    last: Option<(u64, SamplerOutcome)>,
}

impl SamplerNode {
    /// Decides one trace (the same answer when asked again in the same
    /// `decide` call).
    pub(crate) fn eval(&mut self, input: &SamplerInput<'_, '_>) -> SamplerOutcome {
        if let Some((seq, o)) = self.last {
            if seq == input.seq {
                return o;
            }
        }
        let o = self.kind.eval(input);
        self.last = Some((input.seq, o));
        o
    }

    /// Enforces `share` of every throughput goal (cluster budget scope).
    pub(crate) fn set_share(&mut self, share: f64) {
        self.kind.set_share(share);
    }

    /// Keys held in memory by the dynamic samplers (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn tracked_keys(&self) -> usize {
        self.kind.tracked_keys()
    }
}

impl Kind {
    fn eval(&mut self, input: &SamplerInput<'_, '_>) -> SamplerOutcome {
        match self {
            Kind::Deterministic { rate, sha1: true } => {
                if refinery_deterministic_keep(input.trace.trace_id, *rate) {
                    SamplerOutcome {
                        keep: true,
                        prob: 1.0 / (*rate).max(1) as f64,
                        threshold: None,
                    }
                } else {
                    SamplerOutcome::DROP
                }
            }
            Kind::Deterministic { rate, sha1: false } => SamplerOutcome::at_rate(*rate, input.randomness),
            Kind::Keyed(k) => {
                let key = k.key.build(input.trace);
                let count = match k.unit {
                    CountUnit::Spans => input.trace.spans.len().max(1) as f64,
                    CountUnit::Traces => 1.0,
                };
                let rate = k.rates.sample_rate(&key, count, input.now);
                SamplerOutcome::at_rate(rate, input.randomness)
            }
            Kind::Rules { rules, unmatched_keep } => {
                for rule in rules.iter_mut() {
                    if !rule_matches(&rule.conditions, rule.scope, input.trace) {
                        continue;
                    }
                    return match &mut rule.action {
                        Action::Drop => SamplerOutcome::DROP,
                        Action::Rate(r) => SamplerOutcome::at_rate(*r, input.randomness),
                        Action::Sampler(s) => s.eval(input),
                    };
                }
                if *unmatched_keep {
                    SamplerOutcome::KEEP
                } else {
                    SamplerOutcome::DROP
                }
            }
        }
    }

    fn set_share(&mut self, share: f64) {
        match self {
            Kind::Keyed(k) => k.rates.set_share(share),
            Kind::Rules { rules, .. } => {
                for r in rules {
                    if let Action::Sampler(s) = &mut r.action {
                        s.set_share(share);
                    }
                }
            }
            Kind::Deterministic { .. } => {}
        }
    }

    #[cfg(test)]
    fn tracked_keys(&self) -> usize {
        match self {
            Kind::Keyed(k) => k.rates.tracked_keys(),
            Kind::Rules { rules, .. } => rules
                .iter()
                .map(|r| match &r.action {
                    Action::Sampler(s) => s.tracked_keys(),
                    _ => 0,
                })
                .sum(),
            Kind::Deterministic { .. } => 0,
        }
    }
}

// ---------------------------------------------------------------------------
// Compilation

struct Compiler<'i> {
    issues: &'i mut Vec<Issue>,
    req: &'i mut Requirements,
}

/// Validates and compiles a sampler policy; problems are added to `issues`
/// with paths under `path` (`policies[0].dynamic`).
pub(crate) fn compile(p: &SamplerPolicy, path: &str, issues: &mut Vec<Issue>, req: &mut Requirements) -> SamplerNode {
    let mut c = Compiler { issues, req };
    SamplerNode {
        kind: c.sampler(p, path, false),
        last: None,
    }
}

impl Compiler<'_> {
    fn issue(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue::new(path, message));
    }

    fn rate(&mut self, v: u64, path: &str) -> u64 {
        if v == 0 {
            self.issue(path, "must be >= 1");
        }
        v.max(1)
    }

    fn interval(&mut self, v: Option<Interval>, default: u64, path: &str) -> u64 {
        let ns = v.map_or(default, |i| i.nanos);
        if !(1_000_000..=86_400 * SEC).contains(&ns) {
            self.issue(
                path,
                format!("must be between 1ms and 24h, got {}", Interval { nanos: ns }),
            );
        }
        ns.clamp(1_000_000, 86_400 * SEC)
    }

    fn max_keys(&mut self, v: Option<u64>, path: &str) -> usize {
        let n = v.unwrap_or(DEFAULT_MAX_KEYS);
        if !(1..=MAX_MAX_KEYS).contains(&n) {
            self.issue(path, format!("must be between 1 and {MAX_MAX_KEYS}, got {n}"));
        }
        n.clamp(1, MAX_MAX_KEYS) as usize
    }

    fn goal(&mut self, v: Option<f64>, path: &str) -> f64 {
        let g = v.unwrap_or(100.0);
        if !(g.is_finite() && g > 0.0 && g <= 1e12) {
            self.issue(path, format!("must be > 0 and <= 1e12, got {g}"));
            return 100.0;
        }
        g
    }

    fn ema(
        &mut self,
        weight: Option<f64>,
        age_out: Option<f64>,
        burst_multiple: Option<f64>,
        delay: Option<u64>,
        at: &str,
    ) -> EmaParams {
        let w = weight.unwrap_or(0.5);
        if !(w > 0.0 && w <= 1.0) {
            self.issue(format!("{at}.weight"), format!("must be > 0 and <= 1, got {w}"));
        }
        let age = age_out.unwrap_or(w);
        if !(age.is_finite() && age >= 0.0) {
            self.issue(format!("{at}.age_out_value"), format!("must be >= 0, got {age}"));
        }
        let burst = burst_multiple.unwrap_or(2.0);
        if !(burst.is_finite() && burst > 0.0) {
            self.issue(format!("{at}.burst_multiple"), format!("must be > 0, got {burst}"));
        }
        EmaParams {
            weight: w.clamp(f64::MIN_POSITIVE, 1.0),
            age_out: age,
            burst_multiple: burst,
            burst_detection_delay: delay.unwrap_or(3),
        }
    }

    fn key(&mut self, fields: &[String], use_len: bool, required: bool, at: &str) -> KeySpec {
        if required && fields.is_empty() {
            self.issue(format!("{at}.field_list"), "must not be empty");
        }
        KeySpec::new(fields, use_len, &format!("{at}.field_list"), self.issues, self.req)
    }

    fn keyed(&mut self, key: KeySpec, unit: CountUnit, algo: Algorithm, interval: u64, max_keys: usize) -> Kind {
        Kind::Keyed(Box::new(Keyed {
            key,
            unit,
            rates: KeyedRates::new(algo, interval, max_keys),
        }))
    }

    fn sampler(&mut self, p: &SamplerPolicy, path: &str, nested: bool) -> Kind {
        let at = format!("{path}.{}", p.type_name());
        match p {
            SamplerPolicy::Deterministic(d) => {
                let rate = self.rate(d.sample_rate, &format!("{at}.sample_rate"));
                if d.hash == DeterministicHash::RefinerySha1 && rate > u64::from(u32::MAX) {
                    self.issue(format!("{at}.sample_rate"), "must be <= 4294967295 with refinery_sha1");
                }
                Kind::Deterministic {
                    rate,
                    sha1: d.hash == DeterministicHash::RefinerySha1,
                }
            }
            SamplerPolicy::Dynamic(d) => {
                let goal_rate = self.rate(d.sample_rate, &format!("{at}.sample_rate"));
                let interval = self.interval(d.clear_frequency, 30 * SEC, &format!("{at}.clear_frequency"));
                let max_keys = self.max_keys(d.max_keys, &format!("{at}.max_keys"));
                let key = self.key(&d.field_list, d.use_trace_length, true, &at);
                self.keyed(key, d.unit, Algorithm::AvgSampleRate { goal_rate }, interval, max_keys)
            }
            SamplerPolicy::EmaDynamic(d) => {
                let goal_rate = self.rate(d.goal_sample_rate.unwrap_or(10), &format!("{at}.goal_sample_rate"));
                let interval = self.interval(d.adjustment_interval, 15 * SEC, &format!("{at}.adjustment_interval"));
                let max_keys = self.max_keys(d.max_keys, &format!("{at}.max_keys"));
                let ema = self.ema(
                    d.weight,
                    d.age_out_value,
                    d.burst_multiple,
                    d.burst_detection_delay,
                    &at,
                );
                let key = self.key(&d.field_list, d.use_trace_length, true, &at);
                self.keyed(
                    key,
                    d.unit,
                    Algorithm::EmaSampleRate { goal_rate, ema },
                    interval,
                    max_keys,
                )
            }
            SamplerPolicy::EmaThroughput(d) => {
                let goal_per_sec = self.goal(d.goal_throughput_per_sec, &format!("{at}.goal_throughput_per_sec"));
                let initial_rate = self.rate(
                    d.initial_sample_rate.unwrap_or(10),
                    &format!("{at}.initial_sample_rate"),
                );
                let interval = self.interval(d.adjustment_interval, 15 * SEC, &format!("{at}.adjustment_interval"));
                let max_keys = self.max_keys(d.max_keys, &format!("{at}.max_keys"));
                let ema = self.ema(
                    d.weight,
                    d.age_out_value,
                    d.burst_multiple,
                    d.burst_detection_delay,
                    &at,
                );
                let key = self.key(&d.field_list, d.use_trace_length, false, &at);
                let algo = Algorithm::EmaThroughput {
                    goal_per_sec,
                    initial_rate,
                    ema,
                };
                self.keyed(key, d.unit, algo, interval, max_keys)
            }
            SamplerPolicy::WindowedThroughput(d) => {
                let goal_per_sec = self.goal(d.goal_throughput_per_sec, &format!("{at}.goal_throughput_per_sec"));
                let update = self.interval(d.update_frequency, SEC, &format!("{at}.update_frequency"));
                let lookback_ns = d.lookback_frequency.map_or(30 * update, |i| i.nanos);
                if lookback_ns < update {
                    self.issue(format!("{at}.lookback_frequency"), "must be at least update_frequency");
                }
                let lookback = (lookback_ns / update).clamp(1, 100_000);
                let max_keys = self.max_keys(d.max_keys, &format!("{at}.max_keys"));
                let key = self.key(&d.field_list, d.use_trace_length, false, &at);
                let algo = Algorithm::WindowedThroughput { goal_per_sec, lookback };
                self.keyed(key, d.unit, algo, update, max_keys)
            }
            SamplerPolicy::TotalThroughput(d) => {
                let goal_per_sec = self.goal(d.goal_throughput_per_sec, &format!("{at}.goal_throughput_per_sec"));
                let interval = self.interval(d.clear_frequency, 30 * SEC, &format!("{at}.clear_frequency"));
                let max_keys = self.max_keys(d.max_keys, &format!("{at}.max_keys"));
                let key = self.key(&d.field_list, d.use_trace_length, true, &at);
                self.keyed(
                    key,
                    d.unit,
                    Algorithm::TotalThroughput { goal_per_sec },
                    interval,
                    max_keys,
                )
            }
            SamplerPolicy::Rules(r) => {
                if nested {
                    self.issue(&at, "a rule's sampler cannot be another rules sampler");
                }
                if r.rules.is_empty() {
                    self.issue(format!("{at}.rules"), "must not be empty");
                }
                let rules = r
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, rule)| self.rule(rule, &format!("{at}.rules[{i}]")))
                    .collect();
                Kind::Rules {
                    rules,
                    unmatched_keep: r.unmatched == Unmatched::Keep,
                }
            }
        }
    }

    fn rule(&mut self, r: &SamplingRule, at: &str) -> Rule {
        let conditions = r
            .conditions
            .iter()
            .enumerate()
            .map(|(i, c)| Condition::compile(c, r.scope, &format!("{at}.conditions[{i}]"), self.issues, self.req))
            .collect();
        let actions = usize::from(r.drop) + usize::from(r.sample_rate.is_some()) + usize::from(r.sampler.is_some());
        if actions != 1 {
            self.issue(
                at,
                "a rule needs exactly one of `drop: true`, `sample_rate` or `sampler`",
            );
        }
        let action = if let Some(s) = &r.sampler {
            Action::Sampler(Box::new(self.sampler(s, &format!("{at}.sampler"), true)))
        } else if r.drop {
            Action::Drop
        } else {
            Action::Rate(self.rate(r.sample_rate.unwrap_or(1), &format!("{at}.sample_rate")))
        };
        Rule {
            scope: r.scope,
            conditions,
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consistent::randomness;
    use crate::model::{AttrValue, SpanData};

    fn node(yaml: &str) -> SamplerNode {
        let p: SamplerPolicy = serde_yaml::from_str(yaml).unwrap();
        let mut issues = Vec::new();
        let mut req = Requirements::default();
        let n = compile(&p, "p", &mut issues, &mut req);
        assert!(issues.is_empty(), "{issues:?}");
        n
    }

    /// A flood of unique keys: memory stays bounded by `max_keys` and the
    /// overflow key still gets thinned to the goal.
    fn flood(yaml: &str, traces: u64, max_tracked: usize) -> u64 {
        let mut s = node(yaml);
        let mut kept = 0u64;
        let mut peak = 0usize;
        for i in 0..traces {
            let id = i.to_string();
            let span = SpanData {
                attributes: vec![("user.id", AttrValue::Str(&id))],
                ..Default::default()
            };
            let mut tid = [0u8; 16];
            tid[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
            let trace = TraceData {
                trace_id: tid,
                spans: vec![span],
                size_bytes: 0,
            };
            // 100,000 traces per second.
            let input = SamplerInput {
                trace: &trace,
                randomness: randomness(tid, 7),
                now: i * 10_000,
                seq: i + 1,
            };
            kept += u64::from(s.eval(&input).keep);
            if i % 997 == 0 {
                peak = peak.max(s.tracked_keys());
            }
        }
        assert!(peak <= max_tracked, "{yaml}: {peak} keys held");
        kept
    }

    #[test]
    fn a_million_unique_keys_stay_bounded() {
        let n = 1_000_000;
        let kept = flood(
            "dynamic: { sample_rate: 10, clear_frequency: 1s, field_list: [user.id], max_keys: 100 }",
            n,
            2 * 101,
        );
        // ~1 in 10 (plus the 100 admitted keys per interval at rate 1).
        assert!((70_000..=130_000).contains(&kept), "{kept}");
    }

    #[test]
    fn unique_key_floods_for_every_dynamic_sampler() {
        for (yaml, bound) in [
            (
                "ema_dynamic: { goal_sample_rate: 10, adjustment_interval: 1s, field_list: [user.id], max_keys: 100 }",
                101 + 101 + 203,
            ),
            (
                "ema_throughput: { goal_throughput_per_sec: 1000, adjustment_interval: 1s, field_list: [user.id], max_keys: 100 }",
                101 + 101 + 203,
            ),
            (
                "windowed_throughput: { goal_throughput_per_sec: 1000, update_frequency: 1s, lookback_frequency: 5s, field_list: [user.id], max_keys: 100 }",
                101 * 7 + 101,
            ),
            (
                "total_throughput: { goal_throughput_per_sec: 1000, clear_frequency: 1s, field_list: [user.id], max_keys: 100 }",
                2 * 101,
            ),
        ] {
            let kept = flood(yaml, 300_000, bound);
            assert!(kept > 0 && kept < 150_000, "{yaml}: {kept}");
        }
    }

    #[test]
    fn repeated_evaluation_in_one_decision_counts_once() {
        let mut s = node("total_throughput: { goal_throughput_per_sec: 1, clear_frequency: 1s, field_list: [k] }");
        let trace = TraceData::default();
        let input = |seq| SamplerInput {
            trace: &trace,
            randomness: 0,
            now: 5,
            seq,
        };
        let first = s.eval(&input(1));
        assert_eq!(s.eval(&input(1)), first);
        s.eval(&input(2));
        let Kind::Keyed(k) = &s.kind else { panic!() };
        // Two decisions, one empty key: counted twice, not three times.
        assert_eq!(k.rates.tracked_keys(), 1);
    }
}
