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
//! | `deterministic` | `sample_rate` (N >= 1), `hash` (`consistent` default, `refinery_sha1`) | 1 in N by trace ID, see "Refinery samplers" |
//! | `dynamic` | `sample_rate` (goal), `clear_frequency` (30s), `field_list`, `use_trace_length`, `max_keys` (500), `unit` | per-key rate, dynsampler `AvgSampleRate` |
//! | `ema_dynamic` | `goal_sample_rate` (10), `adjustment_interval` (15s), `weight` (0.5), `age_out_value` (= weight), `burst_multiple` (2), `burst_detection_delay` (3), `field_list`, `use_trace_length`, `max_keys`, `unit` | per-key rate, dynsampler `EMASampleRate` |
//! | `ema_throughput` | `goal_throughput_per_sec` (100), `initial_sample_rate` (10), `adjustment_interval`, `weight`, `age_out_value`, `burst_multiple`, `burst_detection_delay`, `field_list` (may be empty), `use_trace_length`, `max_keys`, `unit` | per-key rate, dynsampler `EMAThroughput` |
//! | `windowed_throughput` | `goal_throughput_per_sec` (100), `update_frequency` (1s), `lookback_frequency` (30 × update), `field_list`, `use_trace_length`, `max_keys`, `unit` | per-key rate, dynsampler `WindowedThroughput` |
//! | `total_throughput` | `goal_throughput_per_sec` (100), `clear_frequency` (30s), `field_list`, `use_trace_length`, `max_keys`, `unit` | per-key rate, dynsampler `TotalThroughput` |
//! | `rules` | `rules: [{name, scope, conditions, drop / sample_rate / sampler}]`, `unmatched` (`keep` default, `pass`) | Refinery's rules-based sampler |
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
//! processor configuration unchanged: a bare policy list, a mapping with
//! `policies:` and the processor's options, or a collector config with
//! `processors: {tail_sampling: ...}`. [`PolicyDocument::parse`] with no
//! format tells these, native documents and Refinery rules apart by their
//! shape ([`detect`]; an ambiguous document is an error naming the formats it
//! could be). The processor's options land in [`DecisionOptions`], which
//! every worker applies with the policy: `decision_wait`,
//! `decision_wait_after_root_received` (when absent the root span does not
//! bring the decision forward, as upstream), `num_traces` (upstream evicts the
//! oldest trace undecided; Tailsift decides it early), `decision_cache` sizes,
//! `maximum_trace_size_bytes` (a larger trace is not sampled, as upstream);
//! `sample_on_first_match` is honoured; `expected_new_traces_per_sec`,
//! `block_on_overflow` and `drop_pending_traces_on_shutdown` are accepted and
//! need nothing (Kafka holds what is not decided; pending traces are handed
//! over, never dropped). Unknown options are errors. Supported types:
//! `always_sample`, `latency`, `numeric_attribute`, `probabilistic`,
//! `status_code`, `string_attribute`, `rate_limiting`, `span_count`,
//! `trace_state`, `boolean_attribute`, `and`, `not`, `drop`, `composite`,
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
//! ## Refinery samplers
//!
//! The last seven types reproduce the samplers of Honeycomb Refinery
//! (`sample/*.go`, with the rate algorithms of `dynsampler-go`). A sampler
//! policy matches when it keeps the trace. Every keep is a **consistent**
//! decision at probability `1 / N` for the trace's sample rate `N`
//! (`threshold_for(1/N)`, `R >= T` as above), so [`Decision::sampling_probability`]
//! is `1/N`, [`Decision::adjusted_count`] is `N` (Refinery's `SampleRate`
//! on kept spans, up to float rounding), and [`Decision::threshold`],
//! [`Decision::randomness`] and [`Decision::ot_tracestate`] are set (rate 1
//! gives `th:0`). Refinery itself draws `rand.Intn(N) == 0`; a seeded
//! consistent draw keeps the decision reproducible on every worker and
//! expressible as an OpenTelemetry threshold.
//!
//! **`deterministic`** keeps 1 in `sample_rate` by trace ID. `hash:
//! consistent` (default) is the consistent sampling above with the cluster
//! seed (the same traces as `probabilistic: {percentage: 100/N}`).
//! `hash: refinery_sha1` is Refinery's rule bit for bit: `v` = first 4
//! bytes, big-endian, of `SHA-1(trace-ID string ++ "5VQ8l2jE5aJLPVqk")`
//! (the ID in lower-case hex, only its last 8 bytes when the first 8 are
//! zero, as Honeycomb's OTLP translation writes it), kept iff
//! `v <= u32::MAX / N`. It ignores the seed and reports no `th` (not a
//! threshold scheme), only the adjusted count `N`. See
//! [`refinery_deterministic_keep`].
//!
//! **Dynamic samplers** count traffic per *key* over intervals of the
//! `now_unix_nano` passed to [`PolicyEngine::decide`] and serve rates
//! computed from the previous interval(s):
//!
//! * `dynamic`: at the end of each `clear_frequency` interval, with `c_k`
//!   the key counts, `goal = Σc / sample_rate`, every key gets a goal of
//!   `max(1, log10(c_k) · goal / Σ log10(c_k))`, keys in sorted order, and
//!   keys under their goal get rate 1 and hand the unused room to the
//!   following keys; otherwise `rate = ceil(c_k / goal_k)`. Rare keys are
//!   kept whole, frequent keys thinned, the total near `Σc / sample_rate`.
//!   Before the first interval ends every key gets `sample_rate`; an
//!   interval without traffic clears the rates (unknown keys: rate 1).
//! * `ema_dynamic`: the same split over an exponential moving average of
//!   the counts (`avg = weight · count + (1 - weight) · avg`, keys whose
//!   average falls below `age_out_value` are forgotten), recomputed every
//!   `adjustment_interval`. Burst detection: after `burst_detection_delay`
//!   intervals, when the current interval's count reaches `burst_multiple`
//!   × the average total, rates are recomputed at once and the interval
//!   restarts (the bursting trace still gets the old rate).
//! * `ema_throughput`: the same EMA, with the goal count
//!   `goal_throughput_per_sec × adjustment_interval` instead of a goal rate;
//!   `initial_sample_rate` before the first adjustment.
//! * `windowed_throughput`: every `update_frequency`, the counts of the
//!   last `lookback_frequency` (whole update intervals) are split equally
//!   among their keys: `rate = max(1, trunc(c_k / (goal × lookback / keys)))`.
//! * `total_throughput`: the same equal split over the last
//!   `clear_frequency` interval.
//!
//! A trace counts for its span count (`unit: spans`, the default: Refinery
//! counts events, and throughput goals are spans per second) or for 1
//! (`unit: traces`: traces per second). Intervals roll when `now` passes
//! the end of the current one (several missed intervals act as one
//! interval with traffic and one without); a clock going back less than an
//! interval (windowed: the lookback) keeps counting into the current one,
//! further back restarts the interval at `now`; nothing panics. A sampler
//! is consulted once per [`PolicyEngine::decide`] (it is counted even when
//! a rate limiter in the same `and` later refuses the trace).
//!
//! **Key.** `field_list` is sorted; for each field the distinct values over
//! all spans (stringified like Go: integers in decimal, floats shortest,
//! `true`/`false`) are sorted and written each followed by `•`, then `,`
//! (fields without values are skipped); then `<value>,` for each
//! `root.`-prefixed field present on the root span (Go `%v`, so `1e+06`);
//! then the span count when `use_trace_length`. As in Refinery at most 99
//! distinct values enter a key; Tailsift also truncates keys to 1024 bytes.
//! **Cardinality cap:** at most `max_keys` keys (default 500, at most
//! 1,000,000) are tracked per interval (windowed: per window); traffic of
//! further keys is counted, and rated, under one shared overflow key, so
//! memory stays bounded and a flood of unique keys is still thinned.
//! (Refinery stops counting such keys and keeps them at rate 1.)
//!
//! **Fields** (keys and rule conditions) read Refinery's flattened span:
//! a span attribute, else a resource attribute, else a field derived from
//! the span: `name`, `service.name`, `trace.trace_id`, `trace.span_id`,
//! `trace.parent_id` (absent on roots), `type`/`span.kind` (`server`,
//! `client`, ...), `status_code` (0/1/2), `error` (true on error spans,
//! else absent), `duration_ms` (float), `trace.trace_state`,
//! `meta.signal_type` (`trace`). `root.<field>` reads the root span (the
//! first span without a parent). Computed fields: `?.NUM_DESCENDANTS` (the
//! span count) and, a Tailsift addition, `?.HTTP_STATUS_CLASS` (`1xx` ..
//! `5xx` from `http.response.status_code`, else `http.status_code`).
//! Attribute values that are arrays, maps or bytes read as absent.
//! `span.num_links`, `span.num_events`, `status_message`, `library.*`,
//! `parent_name` and other `meta.*` fields are not in Tailsift's span model
//! and are validation errors. [`PolicyEngine::requirements`] lists every
//! field as a span and resource attribute to extract.
//!
//! **`rules`**: the first rule whose conditions all hold decides: `drop:
//! true` drops, `sample_rate: N` keeps 1 in N, `sampler:` hands the trace
//! to a nested sampler (any type but `rules`; its state is the rule's
//! own). No conditions: the rule always matches. No rule matches: the
//! trace is kept at rate 1 (Refinery), or with `unmatched: pass` the
//! policy does not match and later policies decide. Conditions have
//! `field` or `fields` (the first present one is used), an `operator`
//! (`=`, `!=`, `>`, `>=`, `<`, `<=`, `starts-with`, `contains`,
//! `does-not-contain`, `exists`, `not-exists`, `has-root-span`, `matches`
//! (a `regex` crate regex, unanchored), `in`, `not-in`), a `value` and an
//! optional `datatype` (`string`, `int`, `float`, `bool`). Refinery's
//! semantics are kept, including its corners: without a datatype numbers
//! compare with numbers, strings with strings and bools with bools, and
//! anything else does not match; with a datatype both sides are converted
//! (`int` parses strings and truncates floats; `string` compares Go `%v`
//! text, so an absent field reads as `<nil>`); `starts-with`, `contains`,
//! `does-not-contain`, `matches` and `in`/`not-in` (without an `int`/`float`
//! datatype) compare `%v` text, so negative operators match spans without
//! the field. `scope: trace` (default) lets each condition be met by a
//! different span; `scope: span` needs one span meeting all of them.
//! `has-root-span: true/false` checks for a root span (trace scope only).
//!
//! **Cluster-wide budgets.** Throughput goals (`ema_throughput`,
//! `windowed_throughput`, `total_throughput`) are for the whole cluster
//! under `budget_scope: cluster`: each worker enforces its
//! [`PolicyEngine::set_budget_share`] of the goal (from the next rate
//! computation on), so the workers together keep about the goal. Goal
//! *sample rates* (`dynamic`, `ema_dynamic`, `deterministic`, rules'
//! `sample_rate`) are not scaled: a rate is a ratio, and each worker sees
//! its share of every key's traffic (partitions are assigned by trace ID),
//! so the same ratio on every worker is the same ratio for the cluster.
//! (The log-weighted split depends mildly on absolute counts, so per-key
//! rates can differ a little from one node seeing all traffic.) Each trace
//! is decided by one worker; two engines fed the same traces, times and
//! seed make identical decisions.
//!
//! **Importing Refinery's `rules.yaml`.** [`PolicyDocument::from_refinery_rules_yaml`]
//! accepts a Refinery v2 rules file (`RulesVersion: 2`, `Samplers:
//! {__default__: {...}, <env>: {...}}`, sampler keys `DeterministicSampler`,
//! `RulesBasedSampler`, `DynamicSampler`, `EMADynamicSampler`,
//! `EMAThroughputSampler`, `WindowedThroughputSampler`,
//! `TotalThroughputSampler` with their CamelCase options) and maps the
//! `__default__` sampler (Tailsift has one policy per cluster; pick another
//! environment with [`PolicyDocument::from_refinery_rules_yaml_env`]) onto
//! one native policy named `refinery/<env>`. Unknown keys, operators and
//! datatypes are errors with their path. Mapping details: zero or missing
//! options take Refinery's defaults; `DeterministicSampler` uses `hash:
//! refinery_sha1`; a rule with a `Sampler` ignores `Drop`/`SampleRate`, and
//! a rule with neither a sampler, `Drop` nor a `SampleRate >= 1` keeps
//! nothing (as in Refinery) and becomes `drop: true`; durations are Go
//! durations (`30s`, `1m0s`). Refinery's throughput goals are per instance
//! unless `UseClusterSize: true`, so the document gets `budget_scope:
//! worker`, or `cluster` when every throughput sampler sets
//! `UseClusterSize` (mixing both is an error). Not supported (errors):
//! `CheckNestedFields: true`, v1 TOML rules. Other differences from
//! Refinery: keep decisions are consistent draws (see above); rules with
//! identical downstream samplers do not share state; a failed condition
//! (bad regex, unconvertible value) is a validation error where Refinery
//! logs it and falls back; `has-root-span` under `scope: span` is an error
//! (Refinery's docs call it unusable there); the decision reports the
//! policy name, not Refinery's rule-reason string.
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
// `model`, `error`, `go_duration` (Go's duration syntax), `consistent` (SipHash consistent sampling),
// `otel_hash` (the collector's FNV hash), `sha1` (Refinery's deterministic
// hash), `dynamic` (dynsampler rate algorithms) and `sampler_policy` (the
// Refinery sampler settings) depend on nothing else here;
// `document` (the policy document model) on `model`, `error` and
// `sampler_policy`; `fields` (Refinery field lookup and keys) on `model`,
// `error` and `sha1`; `conditions` (rule conditions) on `fields` and
// `sampler_policy`; `sampler` (compiled Refinery samplers) on those plus
// `dynamic` and `consistent`; `engine` on the document model and
// `sampler`; `otel_import` and `refinery_import` (the collector and
// Refinery importers) on the document model; `format` (format detection)
// on `error` only; `load` (parse + validate entry points) on the document,
// the importers, `format` and the engine; `ottl` (the OTTL condition
// language: lexer, parser, compiler, evaluator) on `model` only, used by
// `engine` for `ottl_condition`.
mod conditions;
mod consistent;
mod document;
mod dynamic;
mod engine;
mod error;
mod fields;
mod format;
mod go_duration;
mod load;
mod model;
mod otel_hash;
mod otel_import;
mod ottl;
mod refinery_import;
mod sampler;
mod sampler_policy;
mod sha1;

pub use consistent::{
    adjusted_count, consistent_keep, decode_threshold, encode_threshold, ot_tracestate, parse_ot_tracestate,
    probability_for_threshold, randomness, siphash24, threshold_for, MAX_THRESHOLD,
};
pub use document::{
    AndPolicy, AttributeScope, BooleanAttributePolicy, BudgetScope, BytesLimitingPolicy, CompositePolicy,
    DecisionOptions, DropPolicy, LatencyPolicy, MatchFilter, NamedPolicy, NotPolicy, NumericAttributePolicy,
    OtelProbabilisticPolicy, OttlConditionPolicy, OttlErrorMode, Oversized, PolicyDocument, PolicyKind,
    ProbabilisticPolicy, RateAllocation, RateLimitingPolicy, Semantics, SpanCountPolicy, StatusCodePolicy,
    StringAttributePolicy, StringMatch, TraceStatePolicy,
};
pub use engine::{stress_decision, Decision, PolicyEngine, STRESS_POLICY};
pub use error::{Issue, PolicyError};
pub use format::{detect, PolicyFormat};
pub use model::{AttrValue, Requirements, SpanData, SpanEventData, StatusCode, TraceData, SERVICE_NAME_KEY};
pub use otel_hash::{
    fnv1a64, otel_probabilistic_keep, otel_probabilistic_threshold, otel_trace_hash, DEFAULT_HASH_SALT,
};
pub use sampler_policy::{
    ConditionScalar, ConditionValue, CountUnit, DeterministicHash, DeterministicPolicy, DynamicPolicy,
    EmaDynamicPolicy, EmaThroughputPolicy, Interval, RuleCondition, RuleDatatype, RuleOperator, RuleScope, RulesPolicy,
    SamplerPolicy, SamplingRule, TotalThroughputPolicy, Unmatched, WindowedThroughputPolicy,
};
pub use sha1::{refinery_deterministic_keep, refinery_trace_id_string};
