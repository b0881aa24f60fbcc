//! The capacity model of `docs/scaling.md`: from a span rate, the shape of the traces and the
//! decision windows, how many ingest nodes, samplers, partitions and brokers a cluster needs, how
//! much memory the samplers buffer, and the Kafka bandwidth and retention storage.
//!
//! [`plan`] is a pure function. Every figure it returns carries the formula it was computed with
//! ([`Figure::formula`], in the symbols of [`Inputs`]) and the same formula with the numbers put in
//! ([`Figure::working`]), so `tailsift plan` and the documentation show one model. The per-core
//! throughput and memory defaults are the measured figures of `docs/benchmarks.md` (one 2-core
//! machine, at saturation), scaled to the planned request and trace shapes and policy size by the
//! measured cost curves of [`curves`]; everything else is arithmetic on them, not a measurement.

pub mod curves;
mod render;

pub use curves::Curve;
pub use render::{format_bytes_binary, format_bytes_si, format_number, render_table};

use serde::Serialize;

/// Ingest spans per CPU-second: the lower of the two `bench-ingest.sh` runs of
/// `docs/benchmarks.md` (343,053 on 2026-11-30; 593,472 on 2026-11-22, another machine).
pub const DEFAULT_INGEST_SPANS_PER_CPU_SECOND: f64 = 343_000.0;
/// Sampler spans per CPU-second: the lower of the two `bench-sampler.sh` runs of
/// `docs/benchmarks.md` (549,451 on 2026-11-30; 787,402 on 2026-11-22).
pub const DEFAULT_SAMPLER_SPANS_PER_CPU_SECOND: f64 = 549_000.0;
/// Resident memory per encoded byte buffered (389 B RSS per 316 B span, `bench-sampler.sh`).
pub const DEFAULT_MEMORY_RATIO: f64 = 1.23;
/// The longest `--buffered-seconds` default: most traces are decided `send_delay` (2 s) after
/// their root span, which arrives when the trace ends.
pub const DEFAULT_BUFFERED_SECONDS_CAP: f64 = 10.0;
/// `memory.hard_limit_bytes` = this × the steady buffered bytes of a sampler.
pub const HARD_LIMIT_PER_BUFFERED: f64 = 2.0;
/// `memory.soft_limit_bytes` = this × the hard limit (the hard limit about a third above soft).
pub const SOFT_LIMIT_PER_HARD: f64 = 0.75;
/// Sampler container memory limit = this × the hard limit (the Kubernetes manifests' ratio).
pub const CONTAINER_PER_HARD: f64 = 2.0;
/// Ingest container memory = this × `limits.max_in_flight_bytes` (the manifests' ratio).
pub const INGEST_CONTAINER_PER_BUDGET: f64 = 4.0;
/// `limits.max_in_flight_bytes` default (256 MiB).
pub const INGEST_IN_FLIGHT_BUDGET: f64 = 268_435_456.0;
/// `decision.cache_max` and `decision.cache_ttl` defaults of the sampler.
pub const DECISION_CACHE_MAX: f64 = 1_000_000.0;
pub const DECISION_CACHE_TTL_SECONDS: f64 = 300.0;
/// At least this many ingest nodes and samplers (one can fail).
pub const MIN_NODES: f64 = 2.0;
/// Partitions are a multiple of this (12 divides among 1, 2, 3, 4, 6 and 12 samplers).
pub const PARTITION_STEP: f64 = 12.0;
/// Partitions per sampler of the model: room to triple the sampler count without repartitioning.
pub const PARTITIONS_PER_SAMPLER: f64 = 3.0;
/// Coordinators: a Raft majority of 3 survives one failure.
pub const COORDINATORS: f64 = 3.0;

/// What the model needs to know. Rates are per second, sizes in bytes, times in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inputs {
    /// S: spans per second at peak, over the whole cluster.
    pub spans_per_second: f64,
    /// B: average encoded (OTLP protobuf) span size.
    pub avg_span_bytes: f64,
    /// N: average spans per trace.
    pub spans_per_trace: f64,
    /// q: average spans per request the ingest nodes receive (an SDK's batch; a collector
    /// forwarding batches sends more).
    pub spans_per_request: f64,
    /// R: rules in the sampling policy.
    pub policy_rules: f64,
    /// W: `decision.decision_wait`, the longest a trace is buffered.
    pub decision_wait_seconds: f64,
    /// T: average time a trace stays buffered; `None` is min(W, 10 s).
    pub buffered_seconds: Option<f64>,
    /// k: fraction of spans kept and exported.
    pub keep_fraction: f64,
    /// RF: replication factor of the spans topic.
    pub replication_factor: u32,
    /// H: retention of the spans topic, hours.
    pub retention_hours: f64,
    /// r_i: ingest spans per CPU-second.
    pub ingest_spans_per_cpu_second: f64,
    /// r_s: sampler spans per CPU-second.
    pub sampler_spans_per_cpu_second: f64,
    /// u: target CPU (and broker bandwidth) utilisation at peak.
    pub target_utilisation: f64,
    /// m: resident bytes per encoded byte buffered.
    pub memory_ratio: f64,
    /// c: compressed / uncompressed size of the records on the broker (lz4 on OTLP).
    pub compression_ratio: f64,
    /// bw: write bandwidth one broker sustains (its own partitions and the replicas it follows).
    pub broker_write_bytes_per_second: f64,
    /// cores per ingest node.
    pub ingest_cores_per_node: f64,
    /// cores per sampler.
    pub sampler_cores: f64,
    /// M: largest container memory limit a sampler may get.
    pub sampler_max_memory_bytes: f64,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            spans_per_second: 1_000_000.0,
            avg_span_bytes: 350.0,
            spans_per_trace: 20.0,
            spans_per_request: curves::INGEST_REFERENCE_SPANS_PER_REQUEST,
            policy_rules: curves::SAMPLER_REFERENCE_POLICY_RULES,
            decision_wait_seconds: 30.0,
            buffered_seconds: None,
            keep_fraction: 0.1,
            replication_factor: 3,
            retention_hours: 24.0,
            ingest_spans_per_cpu_second: DEFAULT_INGEST_SPANS_PER_CPU_SECOND,
            sampler_spans_per_cpu_second: DEFAULT_SAMPLER_SPANS_PER_CPU_SECOND,
            target_utilisation: 0.6,
            memory_ratio: DEFAULT_MEMORY_RATIO,
            compression_ratio: 0.5,
            broker_write_bytes_per_second: 100e6,
            ingest_cores_per_node: 2.0,
            sampler_cores: 4.0,
            sampler_max_memory_bytes: 8.0 * 1024.0 * 1024.0 * 1024.0,
        }
    }
}

impl Inputs {
    /// T: the given average buffered time, or min(W, 10 s).
    pub fn effective_buffered_seconds(&self) -> f64 {
        self.buffered_seconds
            .unwrap_or_else(|| self.decision_wait_seconds.min(DEFAULT_BUFFERED_SECONDS_CAP))
    }
}

/// An input out of its range; `flag` is the `tailsift plan` flag that sets it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct PlanError {
    pub flag: &'static str,
    pub reason: String,
}

/// What a figure counts; decides how it is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Count,
    Cores,
    Seconds,
    SpansPerSecond,
    TracesPerSecond,
    Traces,
    /// Memory: printed in binary units (MiB, GiB), as the config and manifests give limits.
    MemoryBytes,
    /// Stored data: printed in decimal units (GB, TB).
    StorageBytes,
    /// Printed in decimal units (MB/s).
    BytesPerSecond,
    /// A dimensionless factor.
    Ratio,
}

/// One output of the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Stable name, e.g. `sampler.count`.
    pub key: &'static str,
    /// What it is, for people.
    pub label: &'static str,
    pub value: f64,
    pub unit: Unit,
    /// The formula in the symbols of [`Inputs`] and of earlier figures.
    pub formula: String,
    /// The formula with the numbers put in.
    pub working: String,
}

/// The model's answer: every figure in the order printed, and warnings about the inputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub inputs: Inputs,
    /// T actually used.
    pub buffered_seconds: f64,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn get(&self, key: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.key == key)
    }

    /// The value of figure `key`; panics when there is none (a typo in a caller).
    pub fn value(&self, key: &str) -> f64 {
        self.get(key).unwrap_or_else(|| panic!("no figure {key}")).value
    }
}

fn within(v: f64, flag: &'static str, lo: f64, lo_open: bool, hi: f64) -> Result<(), PlanError> {
    let fails_low = if lo_open { v <= lo } else { v < lo };
    if !v.is_finite() || fails_low || v > hi {
        let open = if lo_open { "(" } else { "[" };
        return Err(PlanError {
            flag,
            reason: format!(
                "{} is out of range: must be a finite number in {open}{}, {}]",
                format_number(v),
                format_number(lo),
                format_number(hi)
            ),
        });
    }
    Ok(())
}

/// Checks every input: finite, positive where it must be, below sane upper bounds.
pub fn validate(i: &Inputs) -> Result<(), PlanError> {
    within(i.spans_per_second, "--spans-per-second", 0.0, true, 1e9)?;
    within(i.avg_span_bytes, "--avg-span-bytes", 1.0, false, 16.0 * 1024.0 * 1024.0)?;
    within(i.spans_per_trace, "--spans-per-trace", 1.0, false, 1e6)?;
    within(i.spans_per_request, "--spans-per-request", 1.0, false, 1e6)?;
    within(i.policy_rules, "--policy-rules", 1.0, false, 10_000.0)?;
    within(i.decision_wait_seconds, "--decision-wait", 0.0, true, 86_400.0)?;
    if let Some(t) = i.buffered_seconds {
        within(t, "--buffered-seconds", 0.0, true, 86_400.0)?;
        if t > i.decision_wait_seconds {
            return Err(PlanError {
                flag: "--buffered-seconds",
                reason: format!(
                    "{} s is longer than --decision-wait ({} s): no trace is buffered longer than decision_wait",
                    format_number(t),
                    format_number(i.decision_wait_seconds)
                ),
            });
        }
    }
    within(i.keep_fraction, "--keep-fraction", 0.0, false, 1.0)?;
    within(
        f64::from(i.replication_factor),
        "--replication-factor",
        1.0,
        false,
        16.0,
    )?;
    within(i.retention_hours, "--retention-hours", 0.0, true, 8_760.0)?;
    within(
        i.ingest_spans_per_cpu_second,
        "--ingest-spans-per-cpu-second",
        0.0,
        true,
        1e9,
    )?;
    within(
        i.sampler_spans_per_cpu_second,
        "--sampler-spans-per-cpu-second",
        0.0,
        true,
        1e9,
    )?;
    within(i.target_utilisation, "--target-utilisation", 0.0, true, 1.0)?;
    // The container holds CONTAINER_PER_HARD × the hard limit: a ratio above that would not fit
    // the buffer at the hard limit.
    within(i.memory_ratio, "--memory-ratio", 1.0, false, CONTAINER_PER_HARD)?;
    within(i.compression_ratio, "--compression-ratio", 0.0, true, 1.0)?;
    within(
        i.broker_write_bytes_per_second,
        "--broker-write-bytes-per-second",
        0.0,
        true,
        1e12,
    )?;
    within(i.ingest_cores_per_node, "--ingest-cores-per-node", 0.0, true, 1024.0)?;
    within(i.sampler_cores, "--sampler-cores", 0.0, true, 1024.0)?;
    within(
        i.sampler_max_memory_bytes,
        "--sampler-max-memory",
        64.0 * 1024.0 * 1024.0,
        false,
        16.0 * 1024f64.powi(4),
    )?;
    Ok(())
}

struct Builder {
    figures: Vec<Figure>,
}

impl Builder {
    fn add(
        &mut self,
        key: &'static str,
        label: &'static str,
        value: f64,
        unit: Unit,
        formula: &str,
        working: String,
    ) -> f64 {
        self.figures.push(Figure {
            key,
            label,
            value,
            unit,
            formula: formula.to_string(),
            working,
        });
        value
    }
}

/// `n` rounded up to a whole number, tolerating the last-bit error of a division that should be
/// exact (4 × 3.0 / 12.0 must not become 2).
fn ceil(n: f64) -> f64 {
    let r = n.round();
    if (n - r).abs() <= 1e-9 * n.abs().max(1.0) {
        r
    } else {
        n.ceil()
    }
}

/// Two decimals, for factors and µs.
fn f2(x: f64) -> String {
    format!("{x:.2}")
}

/// Computes the plan for `i`.
pub fn plan(i: &Inputs) -> Result<Plan, PlanError> {
    validate(i)?;
    let f = format_number;
    let (s, b, n, w) = (
        i.spans_per_second,
        i.avg_span_bytes,
        i.spans_per_trace,
        i.decision_wait_seconds,
    );
    let t = i.effective_buffered_seconds();
    let (u, c, rf) = (
        i.target_utilisation,
        i.compression_ratio,
        f64::from(i.replication_factor),
    );
    let mut p = Builder { figures: Vec::new() };

    // Traffic.
    let traces = p.add(
        "traffic.traces_per_second",
        "traces per second",
        s / n,
        Unit::TracesPerSecond,
        "S / N",
        format!("{} / {}", f(s), f(n)),
    );
    p.add(
        "traffic.traces_in_flight",
        "traces buffered at once",
        traces * t,
        Unit::Traces,
        "S / N × T",
        format!("{} × {}", f(traces), f(t)),
    );

    // Ingest.
    let ri = i.ingest_spans_per_cpu_second;
    let (ci, q, q0) = (
        curves::INGEST_BY_SPANS_PER_REQUEST,
        i.spans_per_request,
        curves::INGEST_REFERENCE_SPANS_PER_REQUEST,
    );
    let fi = p.add(
        "ingest.shape_factor",
        "ingest shape factor f_i",
        ci.factor(q, q0),
        Unit::Ratio,
        "c_i(q) / c_i(100), c_i the measured CPU per span vs spans per request",
        format!("{} / {} µs", f2(ci.at(q)), f2(ci.at(q0))),
    );
    let ingest_cores = p.add(
        "ingest.cores",
        "ingest cores",
        s * fi / (ri * u),
        Unit::Cores,
        "S × f_i / (r_i × u)",
        format!("{} × {} / ({} × {})", f(s), f2(fi), f(ri), f(u)),
    );
    let per_node = i.ingest_cores_per_node;
    p.add(
        "ingest.nodes",
        "ingest nodes",
        ceil(ingest_cores / per_node).max(MIN_NODES),
        Unit::Count,
        "max(2, ceil(ingest cores / cores per node))",
        format!("max(2, ceil({} / {}))", f(ingest_cores), f(per_node)),
    );
    p.add(
        "ingest.memory_per_node",
        "ingest container memory, each",
        INGEST_CONTAINER_PER_BUDGET * INGEST_IN_FLIGHT_BUDGET,
        Unit::MemoryBytes,
        "4 × limits.max_in_flight_bytes",
        format!("4 × {}", format_bytes_binary(INGEST_IN_FLIGHT_BUDGET)),
    );

    // Samplers: enough cores, and enough of them that each one's memory fits the largest container.
    let rs = i.sampler_spans_per_cpu_second;
    let (cn, cr) = (curves::SAMPLER_BY_SPANS_PER_TRACE, curves::SAMPLER_BY_POLICY_RULES);
    let (n0, r0) = (
        curves::SAMPLER_REFERENCE_SPANS_PER_TRACE,
        curves::SAMPLER_REFERENCE_POLICY_RULES,
    );
    let fs = p.add(
        "sampler.shape_factor",
        "sampler shape factor f_s",
        cn.factor(n, n0) * cr.factor(i.policy_rules, r0),
        Unit::Ratio,
        "c_N(N) / c_N(20) × c_R(R) / c_R(3), the measured engine curves",
        format!(
            "{} / {} × {} / {} ns",
            f(cn.at(n).round()),
            f(cn.at(n0).round()),
            f(cr.at(i.policy_rules).round()),
            f(cr.at(r0).round())
        ),
    );
    let sampler_cores = p.add(
        "sampler.cores",
        "sampler cores",
        s * fs / (rs * u),
        Unit::Cores,
        "S × f_s / (r_s × u)",
        format!("{} × {} / ({} × {})", f(s), f2(fs), f(rs), f(u)),
    );
    let by_cpu = p.add(
        "sampler.count_by_cpu",
        "samplers for the CPU",
        ceil(sampler_cores / i.sampler_cores),
        Unit::Count,
        "ceil(sampler cores / cores per sampler)",
        format!("ceil({} / {})", f(sampler_cores), f(i.sampler_cores)),
    );
    let buffered_total = s * b * t;
    let container_factor = HARD_LIMIT_PER_BUFFERED * CONTAINER_PER_HARD;
    let by_memory = p.add(
        "sampler.count_by_memory",
        "samplers for the memory",
        ceil(container_factor * buffered_total / i.sampler_max_memory_bytes),
        Unit::Count,
        "ceil(2 × 2 × S × B × T / M)",
        format!("ceil(4 × {} / {})", f(buffered_total), f(i.sampler_max_memory_bytes)),
    );
    let samplers = p.add(
        "sampler.count",
        "samplers",
        by_cpu.max(by_memory).max(MIN_NODES),
        Unit::Count,
        "max(2, samplers for the CPU, samplers for the memory)",
        format!("max(2, {}, {})", f(by_cpu), f(by_memory)),
    );
    p.add(
        "sampler.cores_each",
        "cores each sampler uses at peak",
        sampler_cores / samplers,
        Unit::Cores,
        "sampler cores / samplers",
        format!("{} / {}", f(sampler_cores), f(samplers)),
    );
    p.add(
        "partitions",
        "partitions of the spans topic",
        (PARTITION_STEP * ceil(PARTITIONS_PER_SAMPLER * samplers / PARTITION_STEP)).max(PARTITION_STEP),
        Unit::Count,
        "max(12, 12 × ceil(3 × samplers / 12))",
        format!("max(12, 12 × ceil(3 × {} / 12))", f(samplers)),
    );

    // Sampler memory.
    p.add(
        "memory.buffered_total",
        "buffered span bytes, all samplers",
        buffered_total,
        Unit::MemoryBytes,
        "S × B × T",
        format!("{} × {} × {}", f(s), f(b), f(t)),
    );
    let per = p.add(
        "memory.buffered_per_sampler",
        "buffered span bytes per sampler",
        buffered_total / samplers,
        Unit::MemoryBytes,
        "S × B × T / samplers",
        format!("{} / {}", f(buffered_total), f(samplers)),
    );
    p.add(
        "memory.buffer_rss_per_sampler",
        "resident memory of that buffer",
        per * i.memory_ratio,
        Unit::MemoryBytes,
        "buffered per sampler × m",
        format!("{} × {}", f(per), f(i.memory_ratio)),
    );
    let hard = p.add(
        "memory.hard_limit",
        "memory.hard_limit_bytes",
        HARD_LIMIT_PER_BUFFERED * per,
        Unit::MemoryBytes,
        "2 × buffered per sampler",
        format!("2 × {}", f(per)),
    );
    p.add(
        "memory.soft_limit",
        "memory.soft_limit_bytes",
        SOFT_LIMIT_PER_HARD * hard,
        Unit::MemoryBytes,
        "0.75 × hard limit",
        format!("0.75 × {}", f(hard)),
    );
    let container = p.add(
        "memory.container",
        "sampler container memory limit",
        CONTAINER_PER_HARD * hard,
        Unit::MemoryBytes,
        "2 × hard limit",
        format!("2 × {}", f(hard)),
    );
    p.add(
        "memory.container_total",
        "sampler container memory, all samplers",
        container * samplers,
        Unit::MemoryBytes,
        "container × samplers",
        format!("{} × {}", f(container), f(samplers)),
    );
    let worst = p.add(
        "memory.worst_case_per_sampler",
        "buffered per sampler if every trace waited W",
        s * b * w / samplers,
        Unit::MemoryBytes,
        "S × B × W / samplers",
        format!("{} × {} × {} / {}", f(s), f(b), f(w), f(samplers)),
    );

    // Kafka.
    let produced = p.add(
        "kafka.produce_uncompressed",
        "produced by ingest, uncompressed",
        s * b,
        Unit::BytesPerSecond,
        "S × B",
        format!("{} × {}", f(s), f(b)),
    );
    let compressed = p.add(
        "kafka.produce",
        "produced by ingest, compressed",
        produced * c,
        Unit::BytesPerSecond,
        "S × B × c",
        format!("{} × {}", f(produced), f(c)),
    );
    let written = p.add(
        "kafka.write",
        "written on the brokers, with replicas",
        compressed * rf,
        Unit::BytesPerSecond,
        "S × B × c × RF",
        format!("{} × {}", f(compressed), f(rf)),
    );
    p.add(
        "kafka.replication_read",
        "read by follower replicas",
        compressed * (rf - 1.0),
        Unit::BytesPerSecond,
        "S × B × c × (RF - 1)",
        format!("{} × {}", f(compressed), f(rf - 1.0)),
    );
    p.add(
        "kafka.consume",
        "read by the samplers",
        compressed,
        Unit::BytesPerSecond,
        "S × B × c",
        format!("{} × {}", f(produced), f(c)),
    );
    let bw = i.broker_write_bytes_per_second;
    let brokers = p.add(
        "kafka.brokers",
        "brokers",
        ceil(written / (bw * u)).max(rf),
        Unit::Count,
        "max(RF, ceil(S × B × c × RF / (bw × u)))",
        format!("max({}, ceil({} / ({} × {})))", f(rf), f(written), f(bw), f(u)),
    );
    let seconds = i.retention_hours * 3600.0;
    let storage = p.add(
        "kafka.retention_storage",
        "spans topic storage, with replicas",
        written * seconds,
        Unit::StorageBytes,
        "S × B × c × RF × H × 3600",
        format!("{} × {} × 3600", f(written), f(i.retention_hours)),
    );
    p.add(
        "kafka.storage_per_broker",
        "storage per broker",
        storage / brokers,
        Unit::StorageBytes,
        "retention storage / brokers",
        format!("{} / {}", f(storage), f(brokers)),
    );

    // Export and coordinators.
    let kept = p.add(
        "export.kept_spans",
        "kept spans per second",
        s * i.keep_fraction,
        Unit::SpansPerSecond,
        "S × k",
        format!("{} × {}", f(s), f(i.keep_fraction)),
    );
    p.add(
        "export.bandwidth",
        "export bandwidth, before compression",
        kept * b,
        Unit::BytesPerSecond,
        "S × k × B",
        format!("{} × {}", f(kept), f(b)),
    );
    p.add(
        "coordinators",
        "coordinators",
        COORDINATORS,
        Unit::Count,
        "3 (a Raft majority survives one failure; 5 to survive two; not driven by load)",
        "3".to_string(),
    );

    let mut notes = Vec::new();
    if worst > hard {
        notes.push(format!(
            "if every trace waited decision_wait ({} s: traces whose root span never arrives), a sampler would buffer {}, above its hard limit ({}): stress relief would decide new traces probabilistically; raise --buffered-seconds to plan for it",
            f(w),
            format_bytes_binary(worst),
            format_bytes_binary(hard)
        ));
    }
    let per_sampler = traces / samplers;
    let cached = per_sampler * DECISION_CACHE_TTL_SECONDS;
    if cached > DECISION_CACHE_MAX {
        // Two generations of cache_max / 2 each, rotated every ttl / 2 or when the young one is
        // full (services/sampler/src/cache.rs): entries live between max / 2 / rate and max / rate.
        let longest = DECISION_CACHE_MAX / per_sampler;
        notes.push(format!(
            "each sampler decides {} traces per decision.cache_ttl (300 s), more than decision.cache_max (1,000,000): decisions are remembered {}-{} s instead of 150-300 s, and a late span after that is buffered as a new trace; raise decision.cache_max to about {} (memory per cached decision is not measured and not in this plan; the cache's own estimate is ~9 B per dropped trace)",
            f(cached.round()),
            f((longest / 2.0).round()),
            f(longest.round()),
            f(ceil(cached / 1e6) * 1e6)
        ));
    }
    Ok(Plan {
        inputs: i.clone(),
        buffered_seconds: t,
        figures: p.figures,
        notes,
    })
}

#[cfg(test)]
mod tests;
