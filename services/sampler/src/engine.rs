//! The sampler's state machine: per-partition trace buffers, decision timers, the decision
//! cache, memory limits and the offset watermark. Synchronous and free of I/O: the run loop
//! feeds it records, ticks and export acknowledgements, and carries out what it emits.
//!
//! Time: each partition has its own clock, an estimate of when the records being consumed were
//! produced. Deadlines (`send_delay`, `decision_wait`) are measured on it, so a worker that lags
//! behind or replays after a crash never decides a trace before the spans produced with it have
//! been consumed. Record timestamps come from other processes and are not trusted blindly:
//! - a timestamp beyond wall clock + `max_clock_skew` is clamped to it (and counted); zero,
//!   negative and absent timestamps carry no information;
//! - the clock moves to the median of the last three timestamps, so one skewed record (ahead or
//!   behind) moves nothing, and never past the worker's wall clock (nobody consumes records
//!   produced in the future);
//! - when record timestamps have not moved the clock for [`IDLE_GRACE`] (an idle partition, or
//!   records without usable timestamps) it advances at wall-clock rate, so decisions never stop;
//!   not while consumption is paused or the worker itself stalled (records may be waiting).
//!
//! A trace's deadline is the partition clock when its first span was consumed (or the record's own
//! timestamp, if later and not beyond the wall clock) plus the wait, so a skewed timestamp on its
//! own record cannot shorten it. A backstop decides every trace at the latest its wait +
//! `max_clock_skew` of the engine's running time after its first span (or root) was consumed,
//! whatever the clocks say; time while consumption is paused or the worker stalled does not count.
//!
//! Offsets: a partition's committable offset is the lowest offset still needed, i.e. the first
//! record of the oldest undecided trace, or of a kept trace (or late span) whose export is not yet
//! acknowledged; when nothing is pending, the offset after the last record consumed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tailsift_policy::{Decision, DecisionOptions, Oversized, PolicyEngine, Requirements, TraceData};

/// The rule name of traces dropped for being over `max_trace_bytes` with `oversized: drop`.
pub const OVERSIZED_POLICY: &str = "maximum_trace_size_bytes";

use crate::annotate::{stamp_request, Stamp};
use crate::cache::{Cached, DecisionCache};
pub use crate::config::BufferMode;
use crate::extract::{scan_record, trace_data, Resources};
use crate::metrics as m;
use crate::summary::{unzigzag, zigzag, SummaryScratch, TraceSummary};
use tailsift_otlp::wire::{put_varint, read_varint};

mod arena;
use arena::{FrozenArena, FrozenRef};

pub type TraceId = [u8; 16];

/// A partition whose clock no record moved for this long advances at wall-clock rate.
pub const IDLE_GRACE: Duration = Duration::from_millis(500);

/// Timing and memory settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub send_delay: Duration,
    pub decision_wait: Duration,
    pub max_trace_spans: usize,
    pub max_trace_bytes: usize,
    /// Record timestamps beyond wall clock + this are clamped.
    pub max_clock_skew: Duration,
    pub cache_ttl: Duration,
    pub cache_max: usize,
    pub soft_limit_bytes: usize,
    pub hard_limit_bytes: usize,
    pub stress_probability: f64,
    /// Most traces buffered; past it the oldest are decided early. From the policy's
    /// `decision.max_traces` (the OTel collector's `num_traces`); no limit by default.
    pub max_traces: usize,
    /// A trace over `max_trace_bytes` is not sampled (the policy's `decision.oversized: drop`,
    /// the OTel collector's `maximum_trace_size_bytes`) instead of decided on what arrived.
    pub oversized_drop: bool,
    /// How buffered traces hold their spans (`memory.mode`).
    pub buffer_mode: BufferMode,
    /// Hybrid mode: span bytes held before traces switch to an index.
    pub span_bytes_budget: usize,
}

impl EngineConfig {
    /// The engine settings of a worker's `decision` and `memory` configuration sections.
    pub fn from_config(d: &crate::config::DecisionConfig, m: &crate::config::MemoryConfig) -> Self {
        EngineConfig {
            send_delay: d.send_delay,
            decision_wait: d.decision_wait,
            max_trace_spans: d.max_trace_spans,
            max_trace_bytes: d.max_trace_bytes,
            max_clock_skew: d.max_clock_skew,
            cache_ttl: d.cache_ttl,
            cache_max: d.cache_max,
            soft_limit_bytes: m.soft_limit_bytes,
            hard_limit_bytes: m.hard_limit_bytes,
            stress_probability: m.stress_probability,
            max_traces: usize::MAX,
            oversized_drop: false,
            buffer_mode: m.mode,
            span_bytes_budget: m.span_bytes_budget(),
        }
    }
}

/// A compiled policy with its version and the hash seed in force.
pub struct ActivePolicy {
    pub version: u64,
    pub seed: u64,
    pub engine: PolicyEngine,
}

/// A candidate policy evaluated beside the live one on every trace the live policy decides
/// (stress-relief decisions excepted), with the live policy's hash seed; it never changes a
/// decision.
pub struct ShadowPolicy {
    /// The coordinator's shadow revision.
    pub revision: u64,
    pub engine: PolicyEngine,
}

/// What the shadow policy would have done since it was installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShadowTally {
    pub revision: u64,
    pub traces: u64,
    pub shadow_kept: u64,
    pub live_kept: u64,
    pub both_kept: u64,
    /// Shadow keeps by the shadow rule that kept.
    pub by_policy: BTreeMap<String, u64>,
    /// Live keeps, of the same traces, by the live rule that kept.
    pub live_by_policy: BTreeMap<String, u64>,
}

/// Live overrides of the engine's timing and memory settings (`None`: the configured value).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveSettings {
    pub decision_wait: Option<Duration>,
    pub send_delay: Option<Duration>,
    pub soft_limit_bytes: Option<usize>,
    pub hard_limit_bytes: Option<usize>,
    pub stress_probability: Option<f64>,
}

/// Why a trace was decided when it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Root span seen and `send_delay` passed.
    Root,
    /// `decision_wait` after the first span.
    Timeout,
    /// Span count or size over the per-trace limit.
    Limit,
    /// Buffer over the soft memory limit: oldest traces first.
    Pressure,
    /// Stress relief: decided span by span.
    Stress,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Root => "root",
            Trigger::Timeout => "timeout",
            Trigger::Limit => "limit",
            Trigger::Pressure => "pressure",
            Trigger::Stress => "stress",
        }
    }
}

/// Spans to export: one kept trace (or late spans of one), stamped.
#[derive(Debug, Clone)]
pub struct ExportJob {
    pub id: u64,
    pub partition: i32,
    pub trace_id: TraceId,
    /// An encoded `ExportTraceServiceRequest` (records concatenated: a valid protobuf merge).
    pub payload: Vec<u8>,
    pub spans: usize,
}

/// A decision to publish to the decisions topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub partition: i32,
    pub trace_id: TraceId,
    /// `Some` for kept traces.
    pub kept: Option<Arc<Stamp>>,
    /// Records of the trace up to this offset were exported (kept traces).
    pub exported_through: i64,
}

/// Records to read back from the spans log (a trace buffered as an index): answered with
/// [`Engine::on_read_back`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBackJob {
    pub id: u64,
    pub partition: i32,
    pub trace_id: TraceId,
    /// The trace's record offsets, ascending.
    pub offsets: Vec<i64>,
    /// The records' size in bytes (what the reader will hold for the trace).
    pub bytes: usize,
}

/// What the run loop must do.
#[derive(Debug, Clone)]
pub enum Output {
    Export(ExportJob),
    Decision(DecisionRecord),
    ReadBack(ReadBackJob),
}

/// Indexes held over this many bytes are not frozen (see [`TraceBuf::settle`]).
pub const MAX_FROZEN_BYTES: usize = 16 << 10;

/// Where a buffered trace's spans are.
enum Body {
    /// The records themselves.
    Memory(Box<MemoryBody>),
    /// A summary the policies are evaluated on, and where the records are in the log.
    Index(Box<IndexBody>),
    /// An index frozen into its bytes ([`IndexBody::freeze`]), in the partition's
    /// [`FrozenArena`]: a trace whose root span came (most likely complete, so idle until
    /// decided). A record arriving for it thaws it first.
    Frozen(FrozenRef),
}

struct MemoryBody {
    records: Vec<Bytes>,
    /// The records' offsets (to switch the trace to an index).
    offsets: Vec<i64>,
    span_ids: HashSet<[u8; 8]>,
}

struct IndexBody {
    summary: TraceSummary,
    /// Each record's offset (ascending) and a fingerprint of its span IDs (a record again, a
    /// client's retry, is skipped).
    records: Vec<(i64, u64)>,
    /// The requirements generation ([`Engine::req_gen`]) every record was summarised under;
    /// `None` when they differ (a policy change while the trace was buffered).
    req_gen: Option<u64>,
}

impl IndexBody {
    fn new() -> Self {
        IndexBody {
            summary: TraceSummary::new(),
            records: Vec::new(),
            req_gen: None,
        }
    }

    /// Adds a record.
    fn push(
        &mut self,
        trace_id: TraceId,
        record: &[u8],
        offset: i64,
        span_ids: &[[u8; 8]],
        req: &Requirements,
        req_gen: u64,
    ) {
        self.req_gen = match (self.records.is_empty(), self.req_gen) {
            (true, _) => Some(req_gen),
            (false, Some(g)) if g == req_gen => Some(g),
            _ => None,
        };
        self.summary.push_record(trace_id, record, req);
        self.records.push((offset, fingerprint(span_ids)));
    }

    fn shrink(&mut self) {
        self.summary.shrink();
        self.records.shrink_to_fit();
    }

    /// The index of a trace buffered in memory so far.
    fn from_records(trace_id: TraceId, records: &[Bytes], offsets: &[i64], req: &Requirements, req_gen: u64) -> Self {
        let mut ix = IndexBody::new();
        for (r, o) in records.iter().zip(offsets) {
            ix.push(trace_id, r, *o, &scan_record(r).span_ids, req, req_gen);
        }
        ix.shrink();
        ix
    }

    fn held(&self) -> usize {
        std::mem::size_of::<IndexBody>()
            + self.summary.heap_bytes()
            + self.records.capacity() * std::mem::size_of::<(i64, u64)>()
    }

    /// The index in one byte string: the requirements generation (0: mixed), the records
    /// (offset deltas as zigzag varints, fingerprints as 8 bytes) and the frozen summary.
    /// Written into a scratch buffer and stored in `arena`.
    fn freeze(&self, arena: &mut FrozenArena) -> FrozenRef {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|out| {
            out.clear();
            put_varint(out, self.req_gen.unwrap_or(0));
            put_varint(out, self.records.len() as u64);
            let mut prev = 0i64;
            for &(offset, fp) in &self.records {
                put_varint(out, zigzag(offset.wrapping_sub(prev)));
                prev = offset;
                out.extend_from_slice(&fp.to_le_bytes());
            }
            self.summary.freeze(out);
            let frozen = arena.alloc(out);
            // A huge trace's scratch is not kept.
            if out.capacity() > 1 << 20 {
                *out = Vec::new();
            }
            frozen
        })
    }

    /// What [`IndexBody::freeze`] wrote (`None` only for bytes it did not write).
    fn thaw(buf: &[u8]) -> Option<IndexBody> {
        let mut pos = 0usize;
        let varint = |pos: &mut usize| read_varint(buf, pos, 0).ok();
        let req_gen = Some(varint(&mut pos)?).filter(|g| *g != 0);
        let n = usize::try_from(varint(&mut pos)?).ok()?;
        // Each record takes at least 9 bytes: the count cannot exceed what is left.
        let mut records = Vec::with_capacity(n.min(buf.len() / 9));
        let mut prev = 0i64;
        for _ in 0..n {
            let offset = prev.wrapping_add(unzigzag(varint(&mut pos)?));
            let fp = u64::from_le_bytes(buf.get(pos..pos.checked_add(8)?)?.try_into().ok()?);
            pos += 8;
            records.push((offset, fp));
            prev = offset;
        }
        let summary = TraceSummary::thaw(buf, &mut pos)?;
        Some(IndexBody {
            summary,
            records,
            req_gen,
        })
    }
}

/// What a read-back is for.
enum ReadThen {
    /// A kept trace: export what is read, stamped.
    Export(Arc<Stamp>),
    /// The policy changed while the trace was buffered and its summary lacks what the new one
    /// reads: decide on the records.
    Decide(Trigger),
}

struct Reading {
    partition: i32,
    trace_id: TraceId,
    first_offset: i64,
    last_offset: i64,
    spans: usize,
    then: ReadThen,
}

/// The spans of a decided trace, as the engine holds them.
enum Payload<'a> {
    Records(&'a [Bytes]),
    /// Record offsets, and the records' bytes.
    Offsets(Vec<i64>, usize),
}

/// One fingerprint of a record's span IDs (order-independent).
fn fingerprint(span_ids: &[[u8; 8]]) -> u64 {
    span_ids.iter().fold(0x9E37_79B9_7F4A_7C15u64, |acc, id| {
        let x = u64::from_le_bytes(*id).wrapping_mul(0xff51_afd7_ed55_8ccd);
        acc.wrapping_add(x ^ (x >> 29))
    })
}

/// What both the live and the shadow policy read.
fn union_requirements(a: &Requirements, b: Option<&Requirements>) -> Requirements {
    let mut r = a.clone();
    if let Some(b) = b {
        r.span_attributes.extend(b.span_attributes.iter().cloned());
        r.resource_attributes.extend(b.resource_attributes.iter().cloned());
        r.event_attributes.extend(b.event_attributes.iter().cloned());
        r.scope_attributes.extend(b.scope_attributes.iter().cloned());
        r.all_attributes |= b.all_attributes;
        r.span_events |= b.span_events;
        r.scope |= b.scope;
        r.trace_level &= b.trace_level;
    }
    r
}

/// One buffered trace's bookkeeping: 64 bytes, as there is one per trace in the map, whatever
/// the trace holds (the counts are 32-bit: a trace reaching `u32::MAX` spans or bytes is
/// decided then, see [`TraceBuf::saturated`]).
struct TraceBuf {
    body: Body,
    first_offset: i64,
    /// Partition-clock milliseconds.
    deadline: i64,
    /// Engine active-time milliseconds ([`Engine::active_ms`]): decided by then whatever the
    /// partition clock says.
    backstop: i64,
    /// The last record's offset, after `first_offset` (a trace reaching `u32::MAX` is decided).
    last_delta: u32,
    /// When its first record was consumed: milliseconds since the engine started
    /// ([`Engine::since_start`]), wrapping (ages are taken with `wrapping_sub`: right for traces
    /// younger than 49 days).
    first_seen: u32,
    /// Bytes this trace holds (its records in memory, or its index).
    held: u32,
    spans: u32,
    /// The trace's size: its records' bytes (what `max_trace_bytes` limits), wherever they are.
    bytes: u32,
    root_seen: bool,
}

impl TraceBuf {
    /// Span bytes held in memory (0 for an index).
    fn span_bytes(&self) -> usize {
        match self.body {
            Body::Memory(_) => self.bytes as usize,
            Body::Index(_) | Body::Frozen(_) => 0,
        }
    }

    fn held(&self) -> usize {
        self.held as usize
    }

    fn update_held(&mut self) {
        let held = match &self.body {
            Body::Memory(_) => self.bytes as usize,
            Body::Index(ix) => ix.held(),
            Body::Frozen(r) => r.len(),
        };
        self.held = u32::try_from(held).unwrap_or(u32::MAX);
    }

    /// The last record's offset; past `u32::MAX` after the first (a trace decided for it), the
    /// records' own list says.
    fn last_offset(&self) -> i64 {
        let listed = match &self.body {
            _ if self.last_delta < u32::MAX => None,
            Body::Memory(mb) => mb.offsets.last().copied(),
            Body::Index(ix) => ix.records.last().map(|(o, _)| *o),
            Body::Frozen(_) => None,
        };
        listed.unwrap_or(self.first_offset + i64::from(self.last_delta))
    }

    /// A count reached its 32-bit limit: the trace is decided now (far past any sane
    /// `max_trace_spans` and `max_trace_bytes`).
    fn saturated(&self) -> bool {
        self.spans == u32::MAX || self.bytes == u32::MAX || self.last_delta == u32::MAX
    }

    /// Adds a record's counts.
    fn add(&mut self, offset: i64, spans: usize, bytes: usize) {
        self.last_delta = sat_u32(offset.saturating_sub(self.first_offset).max(0) as u64);
        self.spans = sat_u32(u64::from(self.spans) + spans as u64);
        self.bytes = sat_u32(u64::from(self.bytes) + bytes as u64);
    }

    /// Freezes an index whose trace's root came (see [`Body::Frozen`]), unless it is over
    /// [`MAX_FROZEN_BYTES`]: a large trace saves little by it, and records still coming for it
    /// would each thaw and freeze the whole index again.
    fn settle(&mut self, arena: &mut FrozenArena) {
        if let (true, Body::Index(ix)) = (self.root_seen, &self.body) {
            if ix.held() <= MAX_FROZEN_BYTES {
                self.body = Body::Frozen(ix.freeze(arena));
            }
        }
    }

    /// Thaws a frozen index (a record came for it, or it is being decided).
    fn thaw(&mut self, arena: &mut FrozenArena) {
        if let Body::Frozen(r) = self.body {
            let ix = IndexBody::thaw(arena.get(r)).expect("an index frozen by IndexBody::freeze thaws");
            arena.free(r);
            self.body = Body::Index(Box::new(ix));
        }
    }
}

fn sat_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

struct Pending {
    partition: i32,
    offset: i64,
    decision: Option<DecisionRecord>,
}

#[derive(Default)]
struct Partition {
    traces: HashMap<TraceId, TraceBuf>,
    /// Undecided traces by first offset (also their age order).
    by_offset: BTreeMap<i64, TraceId>,
    /// Offsets pinned by unacknowledged exports (multiset).
    pinned: BTreeMap<i64, u32>,
    /// Decision deadlines of undecided traces, on the partition clock. Entries are not removed
    /// when a trace is decided early or its deadline moves earlier (a heap cannot): they are
    /// skipped when they come up, and [`Partition::compact_timers`] drops them when they are more
    /// than a quarter of the live traces, so the heaps stay proportional to the traces buffered.
    /// An entry names its trace by first offset (a key of `by_offset`: 8 bytes, not a 16-byte
    /// trace ID, in what can be four entries per trace).
    timers: BinaryHeap<Reverse<(i64, i64)>>,
    /// Backstops of undecided traces, on the engine's active time.
    backstops: BinaryHeap<Reverse<(i64, i64)>>,
    /// The offset after the last record consumed; `None` before the first.
    next_offset: Option<i64>,
    /// Bytes held by its traces ([`TraceBuf::held`]), and of them span bytes (memory bodies).
    bytes: usize,
    span_bytes: usize,
    /// Its frozen indexes.
    arena: FrozenArena,
    clock: PartitionClock,
    /// Records below this offset are ignored (see [`Engine::resume_from`]).
    resume_from: i64,
    /// Being handed over (see [`Engine::leave`]): no record is taken and no trace decided.
    leaving: bool,
}

/// A partition's clock (see the module documentation).
#[derive(Default)]
struct PartitionClock {
    /// Milliseconds since the epoch; `None` before the first record.
    ms: Option<i64>,
    /// `ms` is the wall clock at the first record, not yet corrected by record timestamps (three
    /// are needed): the first median replaces it even when lower (a replay of old records).
    provisional: bool,
    /// When `ms` last moved (or time stopped counting, see [`PartitionClock::restart_grace`]).
    moved_at: Option<Instant>,
    /// The last two usable record timestamps, newest last.
    recent: [Option<i64>; 2],
}

impl PartitionClock {
    /// The clock now; the wall clock until it is known.
    fn now(&self, wall_ms: i64) -> i64 {
        self.ms.unwrap_or(wall_ms)
    }

    /// Takes a record and its (sanitized) timestamp into account. Returns how far the clock moved
    /// back (when record time replaced the provisional wall-clock start), or 0.
    fn on_record(&mut self, ts: Option<i64>, wall_ms: i64, now: Instant) -> i64 {
        if self.ms.is_none() {
            self.ms = Some(wall_ms);
            self.moved_at = Some(now);
            self.provisional = true;
        }
        let Some(ts) = ts else { return 0 };
        let [a, b] = self.recent;
        self.recent = [b, Some(ts)];
        if let (Some(a), Some(b)) = (a, b) {
            let mut v = [a, b, ts];
            v.sort_unstable();
            let median = v[1].min(wall_ms);
            if self.provisional {
                self.provisional = false;
                let back = self.ms.unwrap_or(median).saturating_sub(median).max(0);
                self.ms = Some(median);
                self.moved_at = Some(now);
                return back;
            }
            self.advance_to(median, now);
        }
        0
    }

    fn advance_to(&mut self, ms: i64, now: Instant) {
        if self.ms.is_none_or(|c| ms > c) {
            self.ms = Some(ms);
            self.moved_at = Some(now);
        }
    }

    /// Advances at wall-clock rate when no record moved the clock for [`IDLE_GRACE`].
    fn follow_wall(&mut self, now: Instant, wall_ms: i64) {
        let (Some(ms), Some(at)) = (self.ms, self.moved_at) else {
            return;
        };
        let idle = now.saturating_duration_since(at);
        if idle >= IDLE_GRACE {
            let step = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
            self.advance_to(ms.saturating_add(step).min(wall_ms), now);
            // Also when capped by the wall clock: time from here on counts afresh.
            self.moved_at = Some(now);
        }
    }

    /// Forgets elapsed time: the worker stalled or consumption was paused, so records may be
    /// waiting to be consumed.
    fn restart_grace(&mut self, now: Instant) {
        if self.moved_at.is_some() {
            self.moved_at = Some(now);
        }
    }
}

/// How many entries a timer heap may hold for `live` traces before it is rebuilt.
fn timer_limit(live: usize) -> usize {
    live + live / 4 + 64
}

/// A timer heap of one entry per trace, with room up to [`timer_limit`] (rebuilt before it
/// would grow, so its allocation is not doubled in steady state).
fn timer_heap(traces: &HashMap<TraceId, TraceBuf>, at: impl Fn(&TraceBuf) -> i64) -> BinaryHeap<Reverse<(i64, i64)>> {
    let mut v = Vec::with_capacity(timer_limit(traces.len()) + 1);
    v.extend(traces.values().map(|t| Reverse((at(t), t.first_offset))));
    BinaryHeap::from(v)
}

impl Partition {
    /// Rebuilds the timer heaps from the live traces (one entry each, at its current deadline
    /// and backstop) when stale entries are over a quarter of them ([`timer_limit`]): amortised
    /// O(1) per entry pushed. A trace whose root comes last has a stale entry in each heap, so
    /// without this the heaps would keep about two entries per trace, and their capacity
    /// (doubling) up to four.
    fn compact_timers(&mut self) {
        let most = timer_limit(self.traces.len());
        if self.timers.len() > most {
            self.timers = timer_heap(&self.traces, |t| t.deadline);
        }
        if self.backstops.len() > most {
            self.backstops = timer_heap(&self.traces, |t| t.backstop);
        }
    }

    /// Copies the frozen indexes into a fresh arena when the chunks of the old one are mostly
    /// free space kept by a few long-lived indexes ([`FrozenArena::wasteful`]).
    fn compact_arena(&mut self) {
        if !self.arena.wasteful() {
            return;
        }
        let mut fresh = FrozenArena::default();
        for t in self.traces.values_mut() {
            if let Body::Frozen(r) = t.body {
                t.body = Body::Frozen(fresh.alloc(self.arena.get(r)));
            }
        }
        self.arena = fresh;
    }

    /// The undecided trace whose first record is at `first_offset`.
    fn trace_at(&self, first_offset: i64) -> Option<(TraceId, &TraceBuf)> {
        let id = *self.by_offset.get(&first_offset)?;
        self.traces.get(&id).map(|t| (id, t))
    }

    fn watermark(&self) -> Option<i64> {
        let next = self.next_offset?;
        let a = self.by_offset.keys().next().copied().unwrap_or(next);
        let b = self.pinned.keys().next().copied().unwrap_or(next);
        Some(a.min(b).min(next))
    }

    fn pin(&mut self, offset: i64) {
        *self.pinned.entry(offset).or_default() += 1;
    }

    fn unpin(&mut self, offset: i64) {
        if let Some(n) = self.pinned.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                self.pinned.remove(&offset);
            }
        }
    }
}

/// Counters the engine keeps for tests and status (metrics are exported as they happen).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub spans: u64,
    pub kept_traces: u64,
    pub dropped_traces: u64,
    pub late_kept_spans: u64,
    pub late_dropped_spans: u64,
    pub replay_skipped_records: u64,
    pub duplicate_records: u64,
    pub stress_decisions: u64,
    pub clock_skewed_records: u64,
    /// Spans exported (kept traces and late spans of kept traces).
    pub kept_spans: u64,
    /// Kept traces by the rule (policy name) that kept, since the engine started; at most
    /// [`MAX_RULE_COUNTS`] names (further names are counted under [`OTHER_RULES`]).
    pub kept_by_policy: BTreeMap<String, u64>,
}

/// The most rule names counted per tally (reported to the coordinators, which accept 1000).
pub const MAX_RULE_COUNTS: usize = 999;
/// The name further rules are counted under once [`MAX_RULE_COUNTS`] names are counted.
pub const OTHER_RULES: &str = "(other rules)";

/// Adds one to `name` in `counts`, or to [`OTHER_RULES`] when `counts` is full.
fn count_rule(counts: &mut BTreeMap<String, u64>, name: &str) {
    if let Some(n) = counts.get_mut(name) {
        *n += 1;
    } else if counts.len() < MAX_RULE_COUNTS {
        counts.insert(name.to_string(), 1);
    } else {
        *counts.entry(OTHER_RULES.to_string()).or_default() += 1;
    }
}

/// The sampler state machine.
pub struct Engine {
    cfg: EngineConfig,
    /// The configuration the engine was created with (live settings override `cfg` from it).
    configured: EngineConfig,
    /// The policy's decision options and the live settings, layered over `configured` into
    /// `cfg` (live settings over policy options over the worker's configuration).
    options: DecisionOptions,
    live: LiveSettings,
    policy: ActivePolicy,
    shadow: Option<(ShadowPolicy, ShadowTally)>,
    /// Partitions of the spans topic, when known (budget share).
    total_partitions: Option<usize>,
    partitions: HashMap<i32, Partition>,
    cache: DecisionCache,
    /// Bytes held by buffered traces, and of them span bytes (memory bodies).
    buffered_bytes: usize,
    span_bytes: usize,
    buffered_traces: usize,
    /// Traces buffered as an index.
    index_traces: usize,
    stress: bool,
    next_export: u64,
    pending: HashMap<u64, Pending>,
    /// Read-backs not answered yet (their first offsets are pinned).
    reading: HashMap<u64, Reading>,
    /// What the live and shadow policies read (index summaries keep it), and its generation.
    req: Requirements,
    req_gen: u64,
    out: VecDeque<Output>,
    /// Maps `Instant`s to wall-clock milliseconds.
    base: (Instant, i64),
    /// The last tick.
    last_step: Option<Instant>,
    /// Consumption is paused (export backpressure): partition clocks do not follow the wall clock.
    paused: bool,
    /// Milliseconds the engine has been running and consuming: ticks no further apart than
    /// [`IDLE_GRACE`], not paused. Backstops run on it, so no timestamp can stop a decision.
    active_ms: i64,
    pub stats: Stats,
}

impl Engine {
    pub fn new(cfg: EngineConfig, policy: ActivePolicy, now: Instant) -> Self {
        let options = policy.engine.decision_options();
        metrics::gauge!(m::POLICY_VERSION).set(policy.version as f64);
        metrics::gauge!(m::POLICY_APPLIED_AT).set(wall_ms_now() as f64 / 1000.0);
        let mut e = Engine {
            cache: DecisionCache::new(cfg.cache_ttl, cfg.cache_max, now),
            configured: cfg.clone(),
            options: DecisionOptions::default(),
            live: LiveSettings::default(),
            cfg,
            policy,
            shadow: None,
            total_partitions: None,
            partitions: HashMap::new(),
            buffered_bytes: 0,
            span_bytes: 0,
            buffered_traces: 0,
            index_traces: 0,
            stress: false,
            next_export: 0,
            pending: HashMap::new(),
            reading: HashMap::new(),
            req: Requirements::default(),
            req_gen: 0,
            out: VecDeque::new(),
            base: (now, wall_ms_now()),
            last_step: None,
            paused: false,
            active_ms: 0,
            stats: Stats::default(),
        };
        if !options.is_empty() {
            e.options = options;
            e.reconfigure();
        }
        e.update_requirements();
        e
    }

    /// Recomputes what index summaries keep after a policy or shadow change; a new generation
    /// when it changed (traces summarised under another one are read back to be decided).
    fn update_requirements(&mut self) {
        let req = union_requirements(
            self.policy.engine.requirements(),
            self.shadow.as_ref().map(|(s, _)| s.engine.requirements()),
        );
        if req != self.req || self.req_gen == 0 {
            self.req = req;
            self.req_gen += 1;
        }
    }

    /// Installs a new policy version. Takes effect between traces: every trace is decided under
    /// exactly one version.
    pub fn set_policy(&mut self, policy: ActivePolicy) {
        tracing::info!(
            from = self.policy.version,
            to = policy.version,
            "policy version applied"
        );
        metrics::gauge!(m::POLICY_VERSION).set(policy.version as f64);
        if policy.version != self.policy.version {
            metrics::gauge!(m::POLICY_APPLIED_AT).set(wall_ms_now() as f64 / 1000.0);
        }
        let options = policy.engine.decision_options();
        self.policy = policy;
        self.update_requirements();
        self.rebudget();
        if options != self.options {
            self.options = options;
            self.reconfigure();
        }
    }

    pub fn policy_version(&self) -> u64 {
        self.policy.version
    }

    /// Installs (or with `None` removes) the shadow policy; its tally starts from zero.
    pub fn set_shadow(&mut self, shadow: Option<ShadowPolicy>) {
        tracing::info!(revision = shadow.as_ref().map(|s| s.revision), "shadow policy applied");
        metrics::gauge!(m::SHADOW_REVISION).set(shadow.as_ref().map_or(0.0, |s| s.revision as f64));
        self.shadow = shadow.map(|s| {
            let tally = ShadowTally {
                revision: s.revision,
                ..Default::default()
            };
            (s, tally)
        });
        self.update_requirements();
        self.rebudget();
    }

    /// What the shadow policy would have kept so far (`None` without a shadow).
    pub fn shadow_tally(&self) -> Option<&ShadowTally> {
        self.shadow.as_ref().map(|(_, t)| t)
    }

    /// Applies live setting overrides on top of the configured values. Deadlines already set
    /// for buffered traces stay; new ones use the new timing.
    pub fn set_live_settings(&mut self, s: &LiveSettings) {
        self.live = *s;
        self.reconfigure();
    }

    /// Layers the live settings over the policy's decision options over the worker's
    /// configuration into the settings in force.
    fn reconfigure(&mut self) {
        let (c, o, s) = (&self.configured, self.options, self.live);
        let ms = Duration::from_millis;
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        self.cfg.decision_wait = s.decision_wait.or(o.wait_ms.map(ms)).unwrap_or(c.decision_wait);
        self.cfg.send_delay = s.send_delay.or(o.wait_after_root_ms.map(ms)).unwrap_or(c.send_delay);
        self.cfg.soft_limit_bytes = s.soft_limit_bytes.unwrap_or(c.soft_limit_bytes);
        self.cfg.hard_limit_bytes = s.hard_limit_bytes.unwrap_or(c.hard_limit_bytes);
        self.cfg.stress_probability = s.stress_probability.unwrap_or(c.stress_probability);
        self.cfg.max_traces = o.max_traces.map(size).unwrap_or(c.max_traces);
        self.cfg.max_trace_bytes = o.max_trace_bytes.map(size).unwrap_or(c.max_trace_bytes);
        self.cfg.oversized_drop = o.oversized == Some(Oversized::Drop);
        self.cfg.cache_max = o.cache_traces.map(size).unwrap_or(c.cache_max);
        self.cache.set_max(self.cfg.cache_max);
        tracing::info!(
            decision_wait = ?self.cfg.decision_wait,
            send_delay = ?self.cfg.send_delay,
            soft_limit_bytes = self.cfg.soft_limit_bytes,
            hard_limit_bytes = self.cfg.hard_limit_bytes,
            stress_probability = self.cfg.stress_probability,
            max_traces = self.cfg.max_traces,
            max_trace_bytes = self.cfg.max_trace_bytes,
            oversized_drop = self.cfg.oversized_drop,
            cache_max = self.cfg.cache_max,
            "decision settings in force (live settings > policy options > configuration)"
        );
    }

    /// The timing and memory settings in force.
    pub fn settings(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn assign(&mut self, partition: i32) {
        // The partition's skew counter exists (at 0) from assignment on, so dashboards and alerts
        // see a series before the first skewed record.
        metrics::counter!(m::CLOCK_SKEWED_RECORDS, "partition" => partition.to_string()).increment(0);
        self.partitions.entry(partition).or_default();
        self.rebudget();
    }

    /// The number of partitions of the spans topic: with it, the policy's cluster-wide budgets
    /// (rate limits, composite totals) are scaled to this worker's share of the partitions.
    pub fn set_total_partitions(&mut self, n: usize) {
        self.total_partitions = Some(n);
        self.rebudget();
    }

    /// The fraction of the cluster's traffic this worker decides: partitions owned / total.
    pub fn budget_share(&self) -> f64 {
        match self.total_partitions {
            Some(n) if n > 0 => (self.partitions.len() as f64 / n as f64).min(1.0),
            _ => 1.0,
        }
    }

    fn rebudget(&mut self) {
        let share = self.budget_share();
        self.policy.engine.set_budget_share(share);
        if let Some((s, _)) = self.shadow.as_mut() {
            s.engine.set_budget_share(share);
        }
        metrics::gauge!(m::BUDGET_SHARE).set(share);
    }

    /// Records before `offset` on `partition` were handled by a previous owner (its committed
    /// offset): they are ignored if the consumer delivers them.
    pub fn resume_from(&mut self, partition: i32, offset: i64) {
        self.partitions.entry(partition).or_default().resume_from = offset;
        self.rebudget();
    }

    /// Starts the handover of `partition`: from now on its records are not taken (not even as
    /// consumed: the commit stays at or below them) and none of its traces is decided, so that
    /// what the handover waits for (the exports and decision records of what was decided) can
    /// only shrink. Without it a trace decided between the handover's last check and its commit
    /// would be exported here and, with no decision record yet, again by the next owner.
    pub fn leave(&mut self, partition: i32) {
        if let Some(st) = self.partitions.get_mut(&partition) {
            st.leaving = true;
        }
    }

    pub fn partitions(&self) -> Vec<i32> {
        let mut p: Vec<i32> = self.partitions.keys().copied().collect();
        p.sort_unstable();
        p
    }

    /// Remembers decisions read back from the decisions topic.
    pub fn preload(&mut self, rec: &DecisionRecord, now: Instant) {
        match &rec.kept {
            Some(stamp) => self.cache.keep(rec.trace_id, stamp.clone(), rec.exported_through, now),
            None => self.cache.drop_trace(&rec.trace_id, now),
        }
    }

    /// The run loop paused (`true`) or resumed consumption. While paused, records may be waiting
    /// in Kafka, so no partition counts as idle and the clocks only follow record time.
    pub fn set_paused(&mut self, paused: bool, now: Instant) {
        if self.paused != paused {
            self.paused = paused;
            for part in self.partitions.values_mut() {
                part.clock.restart_grace(now);
            }
        }
    }

    /// Takes the next thing to do.
    pub fn pop_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Puts back an output that could not be handed over yet (its order is kept).
    pub fn push_front_output(&mut self, o: Output) {
        self.out.push_front(o);
    }

    pub fn outputs_pending(&self) -> usize {
        self.out.len()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    pub fn buffered_traces(&self) -> usize {
        self.buffered_traces
    }

    pub fn in_stress(&self) -> bool {
        self.stress
    }

    /// Exports not yet acknowledged (and read-backs not yet answered), for `partition` or all.
    pub fn unacked_exports(&self, partition: Option<i32>) -> usize {
        let of = |p: i32| partition.is_none_or(|x| x == p);
        self.pending.values().filter(|p| of(p.partition)).count()
            + self.reading.values().filter(|r| of(r.partition)).count()
    }

    /// Whether read-back `id` is still waited for (not answered, partition not revoked).
    pub fn reading(&self, id: u64) -> bool {
        self.reading.contains_key(&id)
    }

    /// Span bytes held in memory (traces buffered with their records).
    pub fn span_bytes(&self) -> usize {
        self.span_bytes
    }

    /// Traces buffered as an index.
    pub fn index_traces(&self) -> usize {
        self.index_traces
    }

    /// The offset to commit for each partition (lowest still needed).
    pub fn committable(&self) -> Vec<(i32, i64)> {
        let mut v: Vec<(i32, i64)> = self
            .partitions
            .iter()
            .filter_map(|(p, st)| Some((*p, st.watermark()?)))
            .collect();
        v.sort_unstable();
        v
    }

    /// Milliseconds since the engine started, wrapping at 2^32 (~49 days; see
    /// [`TraceBuf::first_seen`]).
    fn since_start(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.base.0).as_millis() as u32
    }

    fn wall_ms(&self, now: Instant) -> i64 {
        self.base
            .1
            .saturating_add(millis(now.saturating_duration_since(self.base.0)))
    }

    /// Notes a tick at `now`. A long gap since the previous tick means the worker itself stalled
    /// (a slow machine, a long callback): records may be waiting in the client, so no partition
    /// counts as idle yet, and the gap is not active time.
    fn observe(&mut self, now: Instant) {
        if let Some(t) = self.last_step {
            let gap = now.saturating_duration_since(t);
            if gap > IDLE_GRACE {
                for part in self.partitions.values_mut() {
                    part.clock.restart_grace(now);
                }
            } else if !self.paused {
                self.active_ms = self.active_ms.saturating_add(millis(gap));
            }
        }
        self.last_step = Some(now);
    }

    /// Consumes one record. `timestamp_ms` is the record's (producer) timestamp; `None` uses
    /// `now`.
    pub fn on_record(&mut self, partition: i32, offset: i64, timestamp_ms: Option<i64>, payload: Bytes, now: Instant) {
        let scan = scan_record(&payload);
        let wall = self.wall_ms(now);
        // A record of a partition this worker does not own (fetched before a revocation and
        // delivered after it) belongs to the new owner, which replays it.
        let Some(part) = self.partitions.get_mut(&partition) else {
            metrics::counter!(m::RECORDS_NOT_OWNED).increment(1);
            tracing::debug!(partition, offset, "record of a partition not owned, skipped");
            return;
        };
        if part.leaving {
            metrics::counter!(m::RECORDS_NOT_OWNED).increment(1);
            tracing::debug!(partition, offset, "record of a partition being handed over, skipped");
            return;
        }
        if offset < part.resume_from {
            return;
        }
        let ts = sanitize_timestamp(timestamp_ms, wall, self.cfg.max_clock_skew, partition);
        if timestamp_ms.is_some_and(|t| t > 0) && ts != timestamp_ms {
            self.stats.clock_skewed_records += 1;
        }
        let shift = part.clock.on_record(ts, wall, now);
        if shift > 0 {
            // Deadlines set on the provisional (wall) clock move to the record clock.
            for t in part.traces.values_mut() {
                t.deadline = t.deadline.saturating_sub(shift);
            }
            part.timers = part
                .traces
                .values()
                .map(|t| Reverse((t.deadline, t.first_offset)))
                .collect();
        }
        // A trace's own timestamp may only make its deadlines later (it is unconfirmed).
        let clock = part.clock.now(wall).max(ts.map_or(i64::MIN, |t| t.min(wall)));
        let active = self.active_ms;
        part.next_offset = Some(part.next_offset.map_or(offset + 1, |n| n.max(offset + 1)));
        self.stats.records += 1;
        metrics::counter!(m::RECORDS_CONSUMED).increment(1);
        let spans = scan.span_ids.len();
        self.stats.spans += spans as u64;
        metrics::counter!(m::SPANS_CONSUMED).increment(spans as u64);
        let Some(trace_id) = scan.trace_id else {
            metrics::counter!(m::RECORDS_INVALID).increment(1);
            return;
        };
        match self.cache.get(&trace_id) {
            Some(Cached::Kept { exported_through, .. }) if offset <= exported_through => {
                tracing::debug!(trace = %hex::encode(trace_id), partition, offset, exported_through, "replayed record of an exported trace skipped");
                self.stats.replay_skipped_records += 1;
                metrics::counter!(m::REPLAY_SKIPPED_SPANS).increment(spans as u64);
                return;
            }
            Some(Cached::Kept { stamp, .. }) => {
                tracing::debug!(trace = %hex::encode(trace_id), partition, offset, spans, "late span of a kept trace");
                self.stats.late_kept_spans += spans as u64;
                metrics::counter!(m::LATE_SPANS, "outcome" => "kept").increment(spans as u64);
                self.export(partition, trace_id, &[payload], spans, offset, offset, stamp, now);
                return;
            }
            Some(Cached::Dropped) => {
                tracing::debug!(trace = %hex::encode(trace_id), partition, offset, spans, "late span of a dropped trace");
                self.stats.late_dropped_spans += spans as u64;
                metrics::counter!(m::LATE_SPANS, "outcome" => "dropped").increment(spans as u64);
                return;
            }
            None => {}
        }
        let len = payload.len();
        let index = match self.cfg.buffer_mode {
            BufferMode::Memory => false,
            BufferMode::Index => true,
            BufferMode::Hybrid => self.span_bytes.saturating_add(len) > self.cfg.span_bytes_budget,
        };
        let (req, req_gen) = (&self.req, self.req_gen);
        let since_start = self.since_start(now);
        let part = self.partitions.get_mut(&partition).expect("inserted above");
        // (decide now, held and span bytes before and after, the trace became an index)
        let (decide_now, before, after, indexed) = match part.traces.get_mut(&trace_id) {
            Some(t) => {
                t.thaw(&mut part.arena);
                let duplicate = !scan.span_ids.is_empty()
                    && match &t.body {
                        Body::Memory(mb) => scan.span_ids.iter().all(|s| mb.span_ids.contains(s)),
                        Body::Index(ix) => {
                            let f = fingerprint(&scan.span_ids);
                            ix.records.iter().any(|(_, g)| *g == f)
                        }
                        Body::Frozen(_) => unreachable!("thawed above"),
                    };
                if duplicate {
                    t.settle(&mut part.arena);
                    // The same spans again (a client retried a request): nothing new.
                    self.stats.duplicate_records += 1;
                    metrics::counter!(m::DUPLICATE_SPANS).increment(spans as u64);
                    return;
                }
                let before = (t.held(), t.span_bytes());
                let mut indexed = false;
                if index {
                    if let Body::Memory(mb) = &t.body {
                        t.body = Body::Index(Box::new(IndexBody::from_records(
                            trace_id,
                            &mb.records,
                            &mb.offsets,
                            req,
                            req_gen,
                        )));
                        indexed = true;
                    }
                }
                match &mut t.body {
                    Body::Memory(mb) => {
                        mb.span_ids.extend(scan.span_ids.iter().copied());
                        mb.records.push(payload);
                        mb.offsets.push(offset);
                    }
                    Body::Index(ix) => ix.push(trace_id, &payload, offset, &scan.span_ids, req, req_gen),
                    Body::Frozen(_) => unreachable!("thawed above"),
                }
                t.add(offset, spans, len);
                if scan.has_root && !t.root_seen {
                    t.root_seen = true;
                    let d = clock.saturating_add(millis(self.cfg.send_delay));
                    if d < t.deadline {
                        t.deadline = d;
                        part.timers.push(Reverse((d, t.first_offset)));
                    }
                    let b = active.saturating_add(millis(self.cfg.send_delay + self.cfg.max_clock_skew));
                    if b < t.backstop {
                        t.backstop = b;
                        part.backstops.push(Reverse((b, t.first_offset)));
                    }
                }
                t.settle(&mut part.arena);
                t.update_held();
                let decide_now = t.spans as usize > self.cfg.max_trace_spans
                    || t.bytes as usize > self.cfg.max_trace_bytes
                    || t.saturated();
                (decide_now, before, (t.held(), t.span_bytes()), indexed)
            }
            None if self.stress => {
                self.stress_decide(partition, trace_id, payload, spans, offset, now);
                return;
            }
            None => {
                let wait = if scan.has_root {
                    self.cfg.send_delay
                } else {
                    self.cfg.decision_wait
                };
                let deadline = clock.saturating_add(millis(wait));
                part.timers.push(Reverse((deadline, offset)));
                let backstop = active.saturating_add(millis(wait + self.cfg.max_clock_skew));
                part.backstops.push(Reverse((backstop, offset)));
                part.by_offset.insert(offset, trace_id);
                let body = if index {
                    let mut ix = IndexBody::new();
                    ix.push(trace_id, &payload, offset, &scan.span_ids, req, req_gen);
                    Body::Index(Box::new(ix))
                } else {
                    Body::Memory(Box::new(MemoryBody {
                        span_ids: scan.span_ids.iter().copied().collect(),
                        records: vec![payload],
                        offsets: vec![offset],
                    }))
                };
                let mut t = TraceBuf {
                    body,
                    first_offset: offset,
                    deadline,
                    backstop,
                    last_delta: 0,
                    first_seen: since_start,
                    held: 0,
                    spans: 0,
                    bytes: 0,
                    root_seen: scan.has_root,
                };
                t.add(offset, spans, len);
                t.settle(&mut part.arena);
                t.update_held();
                let after = (t.held(), t.span_bytes());
                let t_saturated = t.saturated();
                part.traces.insert(trace_id, t);
                self.buffered_traces += 1;
                let decide_now = spans > self.cfg.max_trace_spans || len > self.cfg.max_trace_bytes || t_saturated;
                (decide_now, (0, 0), after, index)
            }
        };
        part.compact_timers();
        part.bytes = part.bytes + after.0 - before.0;
        part.span_bytes = part.span_bytes + after.1 - before.1;
        self.buffered_bytes = self.buffered_bytes + after.0 - before.0;
        self.span_bytes = self.span_bytes + after.1 - before.1;
        if indexed {
            self.index_traces += 1;
            metrics::gauge!(m::INDEX_TRACES).set(self.index_traces as f64);
        }
        if decide_now {
            self.decide(partition, trace_id, Trigger::Limit, now);
        }
        self.relieve_pressure(now);
    }

    fn relieve_pressure(&mut self, now: Instant) {
        if self.buffered_bytes > self.cfg.hard_limit_bytes && !self.stress {
            self.stress = true;
            metrics::gauge!(m::STRESS_RELIEF).set(1.0);
            tracing::warn!(
                buffered_bytes = self.buffered_bytes,
                "entering stress relief: deciding spans without buffering"
            );
        }
        // Over the soft limit or the trace count limit: decide the oldest traces.
        let since_start = self.since_start(now);
        while self.buffered_bytes > self.cfg.soft_limit_bytes || self.buffered_traces > self.cfg.max_traces {
            let oldest = self
                .partitions
                .iter()
                .filter(|(_, st)| !st.leaving)
                .filter_map(|(p, st)| {
                    st.by_offset
                        .values()
                        .next()
                        .map(|t| (*p, *t, since_start.wrapping_sub(st.traces[t].first_seen)))
                })
                .max_by_key(|(_, _, age)| *age);
            match oldest {
                Some((p, t, _)) => self.decide(p, t, Trigger::Pressure, now),
                None => break,
            }
        }
    }

    /// Decides every trace whose timer expired; leaves stress relief when pressure is gone.
    pub fn on_tick(&mut self, now: Instant) {
        let wall = self.wall_ms(now);
        self.observe(now);
        let parts: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, st)| !st.leaving)
            .map(|(p, _)| *p)
            .collect();
        for p in parts {
            let clock = {
                let part = self.partitions.get_mut(&p).expect("listed");
                part.compact_timers();
                part.compact_arena();
                if !self.paused {
                    part.clock.follow_wall(now, wall);
                }
                part.clock.now(wall)
            };
            loop {
                let part = self.partitions.get_mut(&p).expect("listed");
                let Some(Reverse((at, first))) = part.timers.peek().copied() else {
                    break;
                };
                if at > clock {
                    break;
                }
                part.timers.pop();
                let due = part
                    .trace_at(first)
                    .filter(|(_, t)| t.deadline <= clock)
                    .map(|(tid, t)| (tid, t.root_seen));
                if let Some((tid, root)) = due {
                    self.decide(p, tid, if root { Trigger::Root } else { Trigger::Timeout }, now);
                }
            }
            let active = self.active_ms;
            loop {
                let part = self.partitions.get_mut(&p).expect("listed");
                let Some(Reverse((at, first))) = part.backstops.peek().copied() else {
                    break;
                };
                if at > active {
                    break;
                }
                part.backstops.pop();
                if let Some((tid, t)) = part.trace_at(first).filter(|(_, t)| t.backstop <= active) {
                    let root = t.root_seen;
                    metrics::counter!(m::CLOCK_BACKSTOPS).increment(1);
                    tracing::debug!(trace = %hex::encode(tid), partition = p, "decided by the real-time backstop (the partition clock lags)");
                    self.decide(p, tid, if root { Trigger::Root } else { Trigger::Timeout }, now);
                }
            }
        }
        if self.stress && self.buffered_bytes < self.cfg.soft_limit_bytes / 2 {
            self.stress = false;
            metrics::gauge!(m::STRESS_RELIEF).set(0.0);
            tracing::info!(buffered_bytes = self.buffered_bytes, "leaving stress relief");
        }
        metrics::gauge!(m::TRACES_BUFFERED).set(self.buffered_traces as f64);
        metrics::gauge!(m::BYTES_BUFFERED).set(self.buffered_bytes as f64);
        metrics::gauge!(m::SPAN_BYTES_BUFFERED).set(self.span_bytes as f64);
    }

    /// Forgets a partition (after its handover). Undecided traces are left to the next owner,
    /// which replays them from the committed offset; pending exports are forgotten too (their
    /// acknowledgements will be ignored).
    pub fn revoke(&mut self, partition: i32) {
        if let Some(st) = self.partitions.remove(&partition) {
            self.buffered_bytes -= st.bytes;
            self.span_bytes -= st.span_bytes;
            self.buffered_traces -= st.traces.len();
            self.index_traces -= st
                .traces
                .values()
                .filter(|t| matches!(t.body, Body::Index(_) | Body::Frozen(_)))
                .count();
            metrics::gauge!(m::INDEX_TRACES).set(self.index_traces as f64);
        }
        self.pending.retain(|_, p| p.partition != partition);
        self.reading.retain(|_, r| r.partition != partition);
        self.out.retain(|o| match o {
            Output::Export(j) => j.partition != partition,
            Output::ReadBack(j) => j.partition != partition,
            Output::Decision(_) => true,
        });
        self.rebudget();
    }

    /// An export was acknowledged by the backend.
    pub fn on_export_done(&mut self, id: u64) {
        if let Some(p) = self.pending.remove(&id) {
            if let Some(st) = self.partitions.get_mut(&p.partition) {
                st.unpin(p.offset);
            }
            if let Some(d) = p.decision {
                self.out.push_back(Output::Decision(d));
            }
        }
    }

    fn decide(&mut self, partition: i32, trace_id: TraceId, trigger: Trigger, now: Instant) {
        let Some(part) = self.partitions.get_mut(&partition).filter(|p| !p.leaving) else {
            return;
        };
        let Some(mut t) = part.traces.remove(&trace_id) else {
            return;
        };
        let held = t.held();
        t.thaw(&mut part.arena);
        part.by_offset.remove(&t.first_offset);
        let span_bytes = t.span_bytes();
        part.bytes -= held;
        part.span_bytes -= span_bytes;
        self.buffered_bytes -= held;
        self.span_bytes -= span_bytes;
        self.buffered_traces -= 1;
        let age_ms = self.since_start(now).wrapping_sub(t.first_seen);
        metrics::histogram!(m::DECISION_LATENCY).record(f64::from(age_ms) / 1000.0);
        let (spans, bytes, last_offset) = (t.spans as usize, t.bytes as usize, t.last_offset());
        let is_oversized = trigger == Trigger::Limit && self.cfg.oversized_drop && bytes > self.cfg.max_trace_bytes;
        let oversized = || Decision::dropped(Some(OVERSIZED_POLICY.to_string()));
        match t.body {
            Body::Memory(mb) => {
                let records = mb.records;
                let decision = if is_oversized {
                    oversized()
                } else {
                    self.evaluate_records(trace_id, &records)
                };
                self.apply(
                    partition,
                    trace_id,
                    decision,
                    trigger,
                    Payload::Records(&records),
                    spans,
                    t.first_offset,
                    last_offset,
                    now,
                );
            }
            Body::Index(ix) => {
                self.index_traces -= 1;
                metrics::gauge!(m::INDEX_TRACES).set(self.index_traces as f64);
                let IndexBody {
                    summary,
                    records,
                    req_gen,
                } = *ix;
                let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
                let decision = if is_oversized {
                    oversized()
                } else if req_gen == Some(self.req_gen) {
                    let mut scratch = SummaryScratch::default();
                    let data = summary.trace_data(trace_id, &mut scratch);
                    self.evaluate(&data, None)
                } else {
                    // Summarised for another policy: decide on the records.
                    self.read_back(
                        partition,
                        trace_id,
                        (offsets, bytes),
                        ReadThen::Decide(trigger),
                        spans,
                        t.first_offset,
                        last_offset,
                    );
                    return;
                };
                self.apply(
                    partition,
                    trace_id,
                    decision,
                    trigger,
                    Payload::Offsets(offsets, bytes),
                    spans,
                    t.first_offset,
                    last_offset,
                    now,
                );
            }
            Body::Frozen(_) => unreachable!("thawed above"),
        }
    }

    /// The live decision on a trace's records (and the shadow's, tallied).
    fn evaluate_records(&mut self, trace_id: TraceId, records: &[Bytes]) -> Decision {
        let mut res = Resources::new();
        let req = self.policy.engine.requirements().clone();
        let data = trace_data(trace_id, records, &req, &mut res);
        match self.shadow.as_ref().map(|(s, _)| s.engine.requirements().clone()) {
            Some(shadow_req) => {
                let mut res = Resources::new();
                let shadow_data = trace_data(trace_id, records, &shadow_req, &mut res);
                self.evaluate(&data, Some(&shadow_data))
            }
            None => self.evaluate(&data, None),
        }
    }

    /// The live policy's decision on `data`; the shadow's on `shadow_data` (or `data`) is tallied.
    fn evaluate(&mut self, data: &TraceData<'_>, shadow_data: Option<&TraceData<'_>>) -> Decision {
        let now_nanos = unix_nanos();
        let decision = self.policy.engine.decide(data, self.policy.seed, now_nanos);
        if let Some((shadow, tally)) = self.shadow.as_mut() {
            let sd = shadow
                .engine
                .decide(shadow_data.unwrap_or(data), self.policy.seed, now_nanos);
            tally.traces += 1;
            tally.live_kept += u64::from(decision.keep);
            let name = sd.policy.clone().unwrap_or_else(|| "none".to_string());
            let outcome = if sd.keep { "kept" } else { "dropped" };
            if sd.keep {
                tally.shadow_kept += 1;
                tally.both_kept += u64::from(decision.keep);
                count_rule(&mut tally.by_policy, &name);
            }
            if decision.keep {
                count_rule(&mut tally.live_by_policy, decision.policy.as_deref().unwrap_or("none"));
            }
            metrics::counter!(m::SHADOW_DECISIONS, "policy" => name, "outcome" => outcome).increment(1);
        }
        decision
    }

    fn stress_decide(
        &mut self,
        partition: i32,
        trace_id: TraceId,
        payload: Bytes,
        spans: usize,
        offset: i64,
        now: Instant,
    ) {
        self.stats.stress_decisions += 1;
        let d = tailsift_policy::stress_decision(trace_id, self.policy.seed, self.cfg.stress_probability);
        self.apply(
            partition,
            trace_id,
            d,
            Trigger::Stress,
            Payload::Records(&[payload]),
            spans,
            offset,
            offset,
            now,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        partition: i32,
        trace_id: TraceId,
        d: Decision,
        trigger: Trigger,
        payload: Payload<'_>,
        spans: usize,
        first_offset: i64,
        last_offset: i64,
        now: Instant,
    ) {
        let policy = d.policy.clone().unwrap_or_else(|| "none".to_string());
        let outcome = if d.keep { "kept" } else { "dropped" };
        tracing::debug!(trace = %hex::encode(trace_id), partition, spans, first_offset, last_offset, outcome, trigger = trigger.as_str(), "decided");
        metrics::counter!(m::DECISIONS, "policy" => policy.clone(), "outcome" => outcome, "trigger" => trigger.as_str()).increment(1);
        if !d.keep {
            self.stats.dropped_traces += 1;
            self.cache.drop_trace(&trace_id, now);
            self.out.push_back(Output::Decision(DecisionRecord {
                partition,
                trace_id,
                kept: None,
                exported_through: last_offset,
            }));
            return;
        }
        self.stats.kept_traces += 1;
        count_rule(&mut self.stats.kept_by_policy, &policy);
        let p = d.sampling_probability.clamp(f64::MIN_POSITIVE, 1.0);
        // `th`/`rv` only where they describe the decision: a consistent rule decided (its
        // threshold and the seeded randomness), or the trace was kept for sure (`th:0`). A keep by
        // another hash (the collector's FNV rule, Refinery's SHA-1) carries its adjusted count
        // but no `ot` entry, so no consumer reads an `rv` below `th` on a kept span.
        let ot = match d.threshold {
            Some(threshold) => Some((threshold, d.randomness)),
            None if p >= 1.0 => Some((0, d.randomness)),
            None => None,
        }
        .map(|(threshold, randomness)| {
            let randomness = randomness.unwrap_or_else(|| tailsift_policy::randomness(trace_id, self.policy.seed));
            tailsift_policy::ot_tracestate(threshold, randomness)
        });
        let stamp = Arc::new(Stamp {
            policy,
            policy_version: self.policy.version,
            adjusted_count: 1.0 / p,
            ot,
        });
        self.cache.keep(trace_id, stamp.clone(), last_offset, now);
        match payload {
            Payload::Records(records) => self.export(
                partition,
                trace_id,
                records,
                spans,
                first_offset,
                last_offset,
                stamp,
                now,
            ),
            Payload::Offsets(offsets, bytes) => self.read_back(
                partition,
                trace_id,
                (offsets, bytes),
                ReadThen::Export(stamp),
                spans,
                first_offset,
                last_offset,
            ),
        }
    }

    /// Asks for a trace's records from the log (its first offset stays pinned meanwhile).
    #[allow(clippy::too_many_arguments)]
    fn read_back(
        &mut self,
        partition: i32,
        trace_id: TraceId,
        (offsets, bytes): (Vec<i64>, usize),
        then: ReadThen,
        spans: usize,
        first_offset: i64,
        last_offset: i64,
    ) {
        self.next_export += 1;
        let id = self.next_export;
        if let Some(st) = self.partitions.get_mut(&partition) {
            st.pin(first_offset);
        }
        self.reading.insert(
            id,
            Reading {
                partition,
                trace_id,
                first_offset,
                last_offset,
                spans,
                then,
            },
        );
        metrics::counter!(m::READ_BACKS).increment(1);
        self.out.push_back(Output::ReadBack(ReadBackJob {
            id,
            partition,
            trace_id,
            offsets,
            bytes,
        }));
    }

    /// The records of read-back `id` (those found: a record the log no longer has is missing,
    /// counted by the reader). A kept trace is exported; a trace summarised for another policy is
    /// decided now. Ignored when the partition was revoked meanwhile.
    pub fn on_read_back(&mut self, id: u64, records: &[Bytes], now: Instant) {
        let Some(r) = self.reading.remove(&id) else { return };
        let Some(st) = self.partitions.get_mut(&r.partition) else {
            return;
        };
        st.unpin(r.first_offset);
        match r.then {
            ReadThen::Export(stamp) if records.is_empty() => {
                // Nothing left to export: the decision still stands for later spans.
                self.out.push_back(Output::Decision(DecisionRecord {
                    partition: r.partition,
                    trace_id: r.trace_id,
                    kept: Some(stamp),
                    exported_through: r.last_offset,
                }));
            }
            ReadThen::Export(stamp) => {
                let spans = records.iter().map(|rec| scan_record(rec).span_ids.len()).sum();
                self.export(
                    r.partition,
                    r.trace_id,
                    records,
                    spans,
                    r.first_offset,
                    r.last_offset,
                    stamp,
                    now,
                );
            }
            ReadThen::Decide(trigger) => {
                let decision = self.evaluate_records(r.trace_id, records);
                self.apply(
                    r.partition,
                    r.trace_id,
                    decision,
                    trigger,
                    Payload::Records(records),
                    r.spans,
                    r.first_offset,
                    r.last_offset,
                    now,
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn export(
        &mut self,
        partition: i32,
        trace_id: TraceId,
        records: &[Bytes],
        spans: usize,
        pin: i64,
        through: i64,
        stamp: Arc<Stamp>,
        _now: Instant,
    ) {
        self.stats.kept_spans += spans as u64;
        let mut payload = Vec::with_capacity(records.iter().map(|r| r.len() + 128 * 4).sum());
        for r in records {
            stamp_request(r, &stamp, &mut payload);
        }
        self.next_export += 1;
        let id = self.next_export;
        if let Some(st) = self.partitions.get_mut(&partition) {
            st.pin(pin);
        }
        self.pending.insert(
            id,
            Pending {
                partition,
                offset: pin,
                decision: Some(DecisionRecord {
                    partition,
                    trace_id,
                    kept: Some(stamp),
                    exported_through: through,
                }),
            },
        );
        self.out.push_back(Output::Export(ExportJob {
            id,
            partition,
            trace_id,
            payload,
            spans,
        }));
    }
}

/// A record timestamp the clock may use: `None` for absent, zero or negative timestamps; clamped
/// to `wall_ms + max_skew` (and counted) when beyond it.
fn sanitize_timestamp(ts: Option<i64>, wall_ms: i64, max_skew: Duration, partition: i32) -> Option<i64> {
    let ts = ts.filter(|t| *t > 0)?;
    let limit = wall_ms.saturating_add(millis(max_skew));
    if ts > limit {
        metrics::counter!(m::CLOCK_SKEWED_RECORDS, "partition" => partition.to_string()).increment(1);
        tracing::debug!(
            partition,
            timestamp_ms = ts,
            limit,
            "record timestamp ahead of the wall clock, clamped"
        );
        return Some(limit);
    }
    Some(ts)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn wall_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
