//! Pure, synchronous policy evaluation: native and OTel `tail_sampling` documents, compiled once,
//! decided per trace.
//!
//! Pure, synchronous tail-sampling policy evaluation: no I/O, no async, no
//! clock reads (the current time is passed in). A sampling worker buffers a
//! whole trace, fills a [`TraceData`] from the span bytes it owns, and calls
//! [`PolicyEngine::decide`].
//!
//! ```
//! use tailsift_policy::{PolicyDocument, PolicyEngine, SpanData, StatusCode, TraceData};
//!
//! let doc = PolicyDocument::from_yaml(r#"
//! policies:
//!   - name: errors
//!     status_code: { codes: [ERROR] }
//!   - name: ten-percent
//!     probabilistic: { percentage: 10 }
//! "#).unwrap();
//! let mut engine = PolicyEngine::compile(&doc).unwrap();
//! let trace = TraceData {
//!     trace_id: [7; 16],
//!     spans: vec![SpanData { status: StatusCode::Error, ..Default::default() }],
//!     ..Default::default()
//! };
//! let d = engine.decide(&trace, /* seed */ 0, /* now_unix_nano */ 0);
//! assert!(d.keep);
//! assert_eq!(d.policy.as_deref(), Some("errors"));
//! assert_eq!(d.sampling_probability, 1.0);
//! ```
//!
//! ## Input model
//!
//! The sampler decodes only what policies read. [`PolicyEngine::requirements`]
//! lists the span and resource attribute keys it must extract into
//! [`SpanData::attributes`] and [`SpanData::resource_attributes`] (the latter
//! is a slice so that all spans of one resource share one decoded list).
//! `service.name` is never listed: rules read [`SpanData::service`]. Strings
//! are borrowed ([`SpanData<'a>`], [`AttrValue<'a>`]). The trace duration is
//! `max(end_unix_nano) - min(start_unix_nano)` over all spans; a span is a
//! root when its `parent_span_id` is `None` (or all zeros). Span events and
//! the instrumentation scope are only needed (and only decoded) when an OTTL
//! condition reads them ([`Requirements::span_events`],
//! [`Requirements::scope`]); [`TraceData::size_bytes`] is what
//! `bytes_limiting` charges.
//!
//! ## Native policy documents
//!
//! YAML or JSON (same schema, unknown fields are errors). A document is a
//! `version` (optional, default 0), optionally `semantics: native` (default)
//! or `otel_tail_sampling` (plus `sample_on_first_match` for the latter; see
//! the last section), and an ordered list of policies; each policy has a
//! unique `name`, an optional `match` filter and exactly one policy type key
//! (nested policies may omit the name, except composite sub-policies):
//!
//! | type | settings | matches when |
//! |---|---|---|
//! | `always` | `{}` | always |
//! | `drop` | `policies: [..]` (may be empty with a `match`) | filter and all sub-policies match → trace dropped (top level only) |
//! | `status_code` | `codes: [ERROR, OK, UNSET]` | some span has one of the codes |
//! | `latency` | `threshold_ms`, optional `upper_threshold_ms` | `threshold_ms <= duration <= upper_threshold_ms` (ms, inclusive) |
//! | `probabilistic` | `percentage` (0..=100) | consistent sampling, see below |
//! | `otel_probabilistic` | `hash_salt`, `sampling_percentage` | the collector's FNV-1a rule, see below |
//! | `rate_limiting` | `spans_per_second` and/or `traces_per_second`, `burst_seconds` (default 1) | token buckets have room |
//! | `string_attribute` | `key`, `values`, `regex` (bool), `invert`, `scope` | some attribute `key` has a string value equal to (or, with `regex`, matching) one of `values` |
//! | `numeric_attribute` | `key`, `min`, `max` (at least one), `invert`, `scope` | some int/double value in `[min, max]` |
//! | `boolean_attribute` | `key`, `value`, `invert`, `scope` | some bool value equals `value` |
//! | `span_count` | `min` (default 0), `max` | `min <= spans <= max` |
//! | `trace_state` | `key`, `values` | some span's W3C tracestate has a member `key=<one of values>` |
//! | `and` | `policies: [..]` | all sub-policies match (in order, short-circuit) |
//! | `not` | `policy: {..}` | the sub-policy does not match |
//! | `composite` | `max_total_spans_per_second`, `policies`, `rate_allocation: [{policy, percent}]` | see below |
//! | `ottl_condition` | `error_mode` (`propagate` default, `ignore`, `silent`), `span: [..]`, `spanevent: [..]` (at least one condition) | some span satisfies a `span` condition or some span event a `spanevent` condition (see *OTTL conditions*) |
//! | `bytes_limiting` | `bytes_per_second`, `burst_capacity` (bytes, default 2 × `bytes_per_second`) | the byte token bucket has room for the trace's [`TraceData::size_bytes`] |
//! | `trace_flags` | `{}` | some span has the W3C `sampled` flag (bit 0 of `Span.flags`) |
//!
//! `scope` is `span` (default), `resource` or `any`; `invert: true` matches
//! traces where *no* span (or resource) has a matching value, including
//! traces without the attribute. Regexes (`regex: true`, `{regex: ..}`) use
//! the `regex` crate's RE2-like syntax and are unanchored, like the
//! collector's: write `^...$` for a full match.
//!
//! **Service and span-name matching** uses the `match` filter, allowed on any
//! policy (also nested ones):
//!
//! ```yaml
//! - name: checkout-cart
//!   match:
//!     service: checkout            # exact, a list [a, b], or {regex: "..."}
//!     span_name: { regex: "^GET /cart" }
//!     root_only: false             # true: only root spans count
//!   probabilistic: { percentage: 50 }
//! ```
//!
//! The filter holds when at least one span satisfies all given criteria;
//! the policy then behaves as `and: [filter, policy]`.
//!
//! ## Decision semantics (native)
//!
//! 1. `drop` policies are evaluated first (in document order). If one
//!    matches, the trace is dropped and [`Decision::policy`] is its name —
//!    drop beats every keep.
//! 2. Otherwise the other policies are evaluated in document order; the
//!    **first** one that matches keeps the trace and is the reason
//!    ([`Decision::policy`]). Later policies are not evaluated.
//! 3. If none matches, the trace is not kept (`policy: None`).
//!
//! **Rate limiting consumes budget only when the top-level policy containing
//! it is the one that decides** (keeps, or drops for a `drop` policy). The
//! engine first evaluates a stateful policy without consuming, and only when
//! it decides evaluates it again committing the consumption. So in
//! `and: [probabilistic 10%, rate_limiting 100/s]` the bucket only pays for
//! traces that were actually kept, and a policy listed after an earlier
//! keeping policy never consumes for that trace.
//!
//! `bytes_limiting` is a rate limiter too (consumed only when deciding,
//! scaled by the budget share): a bucket of `burst_capacity` bytes, full at
//! start, refilled at `bytes_per_second`; a trace passes when the bucket
//! holds at least its size (a trace of unknown size, 0, always passes).
//!
//! Rate limiters are token buckets in exact integer arithmetic: they start
//! full with `burst_seconds × rate` tokens and refill continuously at
//! `rate` per second of the `now_unix_nano` passed to
//! [`PolicyEngine::decide`] (a clock going back refills nothing). A trace
//! costs its span count from the span bucket and 1 from the trace bucket and
//! passes only if every configured bucket has enough (a trace larger than
//! the span capacity never passes).
//!
//! **Budget scope.** With `budget_scope: cluster` (the default) the rates
//! of rate limiters and composite budgets are for the whole cluster: the
//! sampler calls [`PolicyEngine::set_budget_share`] with the fraction of the
//! spans topic's partitions it owns, and every budget is scaled to it.
//! `budget_scope: worker` keeps every budget whole on every worker.
//!
//! **Composite** (as in the OTel collector): the total span budget per
//! second of `now_unix_nano / 1e9` is divided among the ordered
//! sub-policies by `rate_allocation` percentages (sum <= 100; sub-policies
//! without an entry share the unallocated rest equally). The first
//! sub-policy that matches decides: the trace is kept if that sub-policy's
//! span counter for the current second plus the trace's spans stays within
//! its allocation (and the composite's total within the maximum), otherwise
//! it is not kept by the composite (later sub-policies are not tried).
//! Counters reset when the second changes.
//!
//! [`Decision::sampling_probability`] is 1.0 for deterministic keeps
//! (status, latency, attributes, rate limits, composite budgets), `p` for
//! probabilistic keeps (the smallest along an `and`; `1 - p` for a
//! `not(probabilistic)`); [`Decision::adjusted_count`] is its inverse.
//! [`Decision::threshold`] and [`Decision::randomness`] are set when a
//! consistent probabilistic rule took part in keeping the trace (the largest
//! threshold along an `and`); write [`Decision::ot_tracestate`] into the
//! kept spans' tracestate under the `ot` key.
//!
//! ## OTTL conditions
//!
//! `ottl_condition` evaluates OpenTelemetry Transformation Language
//! conditions as the collector does: spans in order, for each span its
//! `span` conditions (OTTL span context) then each of its events against
//! the `spanevent` conditions (span event context); the first true
//! condition samples the trace. Conditions are parsed and compiled once
//! (unknown paths or functions, bad regexes, wrong argument counts are
//! validation errors with the condition and column:
//! `policies[2].ottl_condition.span[0]: column 17: unknown path "attributs"`).
//! Conditions longer than 4096 bytes or nested deeper than 64 levels are
//! rejected.
//!
//! **Evaluation errors** (e.g. `Double("abc")`, `Substring` out of range, a
//! converter used as a condition returning nil, division by zero): with
//! `error_mode: propagate` (the default, as upstream) the policy fails —
//! under OTel semantics it records no decision (neither sampled nor "not
//! sampled"), and it fails an enclosing `and`/`drop`/`composite` (`not`
//! passes it through); under native semantics it does not match. With
//! `ignore` or `silent` the failing condition counts as false and the next
//! one is tried.
//!
//! The supported language subset (upstream's grammar and rules):
//!
//! * **Syntax**: `or`, `and` (binds tighter), `not` (once per operand),
//!   parentheses, comparisons `== != < <= > >=`, arithmetic `+ - * /`
//!   (and unary `-`), literals: strings (`"..."` with Go escapes: `\\` `\"`
//!   `\n` `\t` `\xHH` `\uHHHH`..., so a regex digit class is written
//!   `"\\d"`), ints, floats, `true`/`false`, `nil`, bytes `0x0a1b`, and the
//!   enums `SPAN_KIND_UNSPECIFIED|INTERNAL|SERVER|CLIENT|PRODUCER|CONSUMER`
//!   and `STATUS_CODE_UNSET|OK|ERROR`. Named arguments (`pattern = "x"`)
//!   are accepted.
//! * **Span paths** (optionally prefixed `span.`): `name`, `kind`,
//!   `kind.string` (`"Server"`...), `status.code`, `status.message`,
//!   `attributes["k"]`, `trace_id`, `trace_id.string`, `span_id`,
//!   `span_id.string`, `parent_span_id`, `parent_span_id.string`,
//!   `trace_state`, `trace_state["k"]` (`""` when absent),
//!   `start_time_unix_nano`, `end_time_unix_nano`, `start_time`,
//!   `end_time` (times: `end_time - start_time` is a duration),
//!   `dropped_attributes_count`, `dropped_events_count`,
//!   `dropped_links_count`; `resource.attributes["k"]`;
//!   `instrumentation_scope.name` / `.version` / `.attributes["k"]` (also
//!   `scope.`).
//! * **Span event paths** (optionally prefixed `spanevent.`): `name`,
//!   `time_unix_nano`, `time`, `attributes["k"]`,
//!   `dropped_attributes_count`, plus every span path as `span.<path>`, and
//!   `resource.` / `instrumentation_scope.` paths.
//! * **Converters**: `IsMatch(target, pattern)` (pattern: a string literal,
//!   Rust `regex` syntax, unanchored; a nil target is false), `Len` (string
//!   bytes), `Int`, `Double`, `Bool`, `String` (nil stays nil; `Int` of a
//!   non-integer string is nil, `Double` of a non-number string is an
//!   error), `IsString`, `IsInt`, `IsDouble`, `IsBool`, `IsRootSpan()`
//!   (span context only), `HasPrefix(target, "p")`, `HasSuffix(target,
//!   "s")`, `Substring(target, start, length)`, `ToLowerCase`,
//!   `ToUpperCase`, `TraceID(0x..16 bytes)`, `SpanID(0x..8 bytes)`,
//!   `Duration("1.5s")` (Go duration syntax). Any other name is a
//!   validation error listing these.
//! * **Comparison rules** (upstream `compare.go`): `nil == nil`; `nil` and
//!   a value are only `!=` (so an absent attribute satisfies `!= "x"` and
//!   `== nil`, never `==`/`<`/`>`); values of different types are only
//!   `!=`, except ints and floats, which compare numerically; strings
//!   compare byte-wise, bools `false < true`; IDs only `==`/`!=` with IDs.
//!   Arithmetic: int op int is int (Go wrapping), mixed is float, `/ 0`
//!   is an error; `time - time`, `time ± duration`, `duration ± duration`.
//!
//! Not supported (validation errors): editors, `cache`, list/map literals,
//! whole-map paths (`attributes` without a key), nested indexing
//! (`attributes["a"]["b"]`), indexing a converter result,
//! `resource.dropped_attributes_count`,
//! `instrumentation_scope.dropped_attributes_count`, `links`,
//! `event_index`, `IsMap`/`IsList` and every other converter. Map, list
//! and bytes attribute values are not decoded: they equal nothing and are
//! only `!=` anything (upstream compares their contents).
//!
//! ## Consistent probabilistic sampling
//!
//! Every worker must keep the same traces, so the decision is a pure
//! function of (trace ID, seed, probability), following the OpenTelemetry
//! probability-sampling specification with *explicit randomness*:
//!
//! ```text
//! R = SipHash-2-4(k0 = seed, k1 = 0, message = the 16 trace-ID bytes) >> 8
//!     (key bytes: seed.to_le_bytes() followed by 8 zero bytes;
//!      the 64-bit result is read as in the reference implementation)
//! T = 2^56 - round(p · 2^56)      (round half away from zero; = round((1-p)·2^56)
//!                                  except on exact ties; p >= 1 → 0, p <= 0 → 2^56)
//! keep  ⇔  R >= T
//! ```
//!
//! See [`randomness`], [`threshold_for`], [`consistent_keep`]. The decision
//! is monotone (kept at `p` ⇒ kept at every `p' > p`), different seeds give
//! independent kept sets, and a seed of 0 is valid. Test vectors
//! (`randomness(trace_id, seed)` as 14 hex digits):
//!
//! | trace ID | seed | R |
//! |---|---|---|
//! | `00000000000000000000000000000000` | 0 | `32caecc2801729` |
//! | `000102030405060708090a0b0c0d0e0f` | 0 | `c902632ed88f89` |
//! | `000102030405060708090a0b0c0d0e0f` | 42 | `79ef95e8824fd0` |
//! | `ffffffffffffffffffffffffffffffff` | `u64::MAX` | `3be95b4a82953c` |
//! | `4bf92f3577b34da6a3ce929d0e0e4736` | 0 | `ec8d2924f854aa` |
//! | `4bf92f3577b34da6a3ce929d0e0e4736` | `0x5eed` | `19fbd0e62e4a3c` |
//!
//! **Tracestate.** [`ot_tracestate`] produces the W3C `tracestate` value of
//! the `ot` key: `th:<T>;rv:<R>` where `<T>` is `T` as 14 lower-case hex
//! digits with trailing zeros removed (`"0"` when `T = 0`, keep-all) and
//! `<R>` is `R` as exactly 14 lower-case hex digits, e.g. `p = 0.5` gives
//! `th:8;rv:...`, `p = 0.1` gives `th:e6666666666666;rv:...`. The `rv`
//! field is required because `R` comes from the seeded hash, not from the
//! trace ID's random bits; consumers computing adjusted counts from `th`
//! obtain `1/p`.
//!
//! [`stress_decision`] is the stateless fallback (same rule, policy name
//! [`STRESS_POLICY`]).
//!
//! ## OpenTelemetry Collector `tail_sampling` compatibility
//!
//! [`PolicyDocument::from_otel_tail_sampling_yaml`] accepts the collector's
//! processor configuration unchanged (either a mapping with `policies:` —
//! other keys like `decision_wait`, `num_traces`,
//! `expected_new_traces_per_sec`, `decision_cache` are ignored,
//! `sample_on_first_match` is honoured — or a collector config with
//! `processors: {tail_sampling: ...}`). Supported types: `always_sample`,
//! `latency`, `numeric_attribute`, `probabilistic`, `status_code`,
//! `string_attribute`, `rate_limiting`, `span_count`, `trace_state`,
//! `boolean_attribute`, `and`, `not`, `drop`, `composite`,
//! `ottl_condition` (`error_mode`, `span`, `spanevent`; an empty
//! `error_mode` is `propagate`, upstream's default while its
//! `defaultOTTLErrorModeIgnore` feature gate is off), `bytes_limiting`
//! (`bytes_per_second`, `burst_capacity`) and `trace_flags`.
//!
//! The imported document has [`Semantics::OtelTailSampling`], which
//! reproduces the collector's decisions:
//!
//! * **All** policies are evaluated in order (so every rate limiter that
//!   samples consumes budget, as upstream), except that evaluation stops at
//!   the first matching `drop` policy, and at the first sampling policy when
//!   `sample_on_first_match` is set.
//! * Final decision: a matching `drop` policy → dropped; else any
//!   *inverted not-sampled* decision → not sampled (an `invert_match` rule
//!   that found a match vetoes every sample; [`Decision::policy`] names it);
//!   else any *sampled* → kept (reason: the first sampling policy); else an
//!   *inverted sampled* decision with no plain *not sampled* decision from
//!   any policy (including non-matching `drop` policies) → kept; else not
//!   sampled.
//! * `invert_match` on string/numeric/boolean attributes yields the
//!   collector's inverted decisions at the top level; inside `and`, `drop`
//!   and `composite` an inverted sample counts as a match and an inverted
//!   not-sample as a non-match; `not` swaps sampled/not sampled and passes
//!   inverted decisions through unchanged.
//! * Attribute rules look at resource and span attributes (`scope: any`).
//!   Collector quirks are kept: a non-string value reads as `""`, empty span
//!   string values never match, empty exact values are ignored, a non-int
//!   value reads as 0 for `numeric_attribute` (ints only), a non-bool as
//!   `false`.
//! * `latency` uses whole milliseconds: `duration >= threshold_ms` without
//!   an upper bound, `threshold_ms < duration <= upper_threshold_ms` with one
//!   (`upper_threshold_ms: 0` means none). `span_count` `max_spans: 0` means
//!   no maximum. `numeric_attribute` bounds are optional.
//! * `probabilistic` uses the collector's own hash, so decisions match
//!   upstream for the same salt: `h = FNV-1a-64(hash_salt bytes ++ 16
//!   trace-ID bytes)` (empty salt → `"default-hash-seed"`), kept iff
//!   `h <= floor(round64((2^64 - 1) · sampling_percentage/100))` where
//!   `round64` rounds to 64 significant bits, nearest-even (Go `big.Float`).
//!   Unlike the native sampler this is not seeded by the cluster seed,
//!   not expressible as an OpenTelemetry threshold (no `th`/`rv` is
//!   reported; `sampling_probability` is the percentage / 100), and it
//!   hashes with FNV, whose weaker mixing is fine for random trace IDs.
//!   See [`otel_trace_hash`], [`otel_probabilistic_threshold`].
//! * `rate_limiting` (`spans_per_second`) is the collector's token bucket:
//!   capacity 2 × `spans_per_second`, starting full.
//! * `bytes_limiting` is the collector's byte token bucket (capacity
//!   `burst_capacity`, or 2 × `bytes_per_second` when it is <= 0, starting
//!   full); the trace costs its OTLP-encoded size, which the sampler takes
//!   from the buffered records (the collector: `TracesSize` of the batches).
//! * `ottl_condition`: an evaluation error under `propagate` records no
//!   decision for the policy (see *OTTL conditions*).
//! * `composite`: sub-policies are evaluated in `composite_sub_policy`
//!   order (`policy_order` is accepted but, as upstream, not used); a
//!   sub-policy's budget is `percent`% of `max_total_spans_per_second`
//!   (truncated to whole spans), an equal share for an entry with
//!   `percent <= 0`, and **zero for a sub-policy without a
//!   `rate_allocation` entry** (upstream behaviour, even though its README
//!   suggests an `always_sample` sub-policy fills the remaining capacity).
//!
//! Deliberate differences: percentages outside 0..=100, empty
//! `status_codes`/`values`, empty keys, `upper_threshold_ms <
//! threshold_ms`, `rate_limiting` and `bytes_limiting` rates <= 0, and composite allocations over
//! 100% or naming unknown sub-policies are validation errors; tracestate
//! parsing is lenient (a malformed header does not prevent matching its
//! well-formed members); regexes use Rust `regex` syntax (almost identical
//! to Go's RE2) and need no `cache_max_size`. An imported document can be
//! written out with [`PolicyDocument::to_yaml`] and keeps its semantics.
//!
//! ## Validation
//!
//! [`PolicyDocument::from_yaml`] / [`PolicyDocument::from_json`] /
//! [`PolicyDocument::validate`] / [`PolicyEngine::compile`] report errors
//! with the path of the problem, e.g.
//! `policies[2].string_attribute.values: must not be empty`,
//! `policies[0].name: duplicate name "errors"`,
//! `policies[1].string_attribute.values[0]: invalid regex: ...`,
//! `policies[3].composite.rate_allocation: percentages sum to 120, must be <= 100`,
//! `policies[4].sample: unknown field `sample`, expected one of ...`
//! (unknown policy type), `policies[1].latency.threshold_ms: invalid type:
//! string "fast", expected u64 at line 5 column 20` (parse errors, located
//! with `serde_path_to_error`). Parse errors are [`PolicyError::Parse`];
//! semantic problems are all collected in [`PolicyError::Invalid`].

#![warn(missing_docs)]

// Module layering (no cycles; checked by the workspace's module-cycle test):
// `model`, `error`, `consistent` (SipHash consistent sampling) and
// `otel_hash` (the collector's FNV hash) depend on nothing else here;
// `document` (the policy document model) on `model` and `error`;
// `engine` and `otel_import` (the collector `tail_sampling` importer) on the
// document model; `load` (parse + validate entry points) on all three.
// `ottl` (OTTL condition language: lexer, parser, compiler, evaluator)
// depends on `model` only; `engine` uses it for `ottl_condition`.
mod consistent;
mod document;
mod engine;
mod error;
mod load;
mod model;
mod otel_hash;
mod otel_import;
mod ottl;

pub use consistent::{
    adjusted_count, consistent_keep, decode_threshold, encode_threshold, ot_tracestate, parse_ot_tracestate,
    probability_for_threshold, randomness, siphash24, threshold_for, MAX_THRESHOLD,
};
pub use document::{
    AndPolicy, AttributeScope, BooleanAttributePolicy, BudgetScope, BytesLimitingPolicy, CompositePolicy, DropPolicy,
    LatencyPolicy, MatchFilter, NamedPolicy, NotPolicy, NumericAttributePolicy, OtelProbabilisticPolicy,
    OttlConditionPolicy, OttlErrorMode, PolicyDocument, PolicyKind, ProbabilisticPolicy, RateAllocation,
    RateLimitingPolicy, Semantics, SpanCountPolicy, StatusCodePolicy, StringAttributePolicy, StringMatch,
    TraceStatePolicy,
};
pub use engine::{stress_decision, Decision, PolicyEngine, STRESS_POLICY};
pub use error::{Issue, PolicyError};
pub use model::{AttrValue, Requirements, SpanData, SpanEventData, StatusCode, TraceData, SERVICE_NAME_KEY};
pub use otel_hash::{
    fnv1a64, otel_probabilistic_keep, otel_probabilistic_threshold, otel_trace_hash, DEFAULT_HASH_SALT,
};
