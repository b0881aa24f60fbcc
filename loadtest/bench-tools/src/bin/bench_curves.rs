//! `tailsift-bench-curves`: cost curves of the sampler engine (`tailsift_sampler::engine::Engine`),
//! engine-level: no broker, no exporter, no metrics recorder. The engine is fed OTLP record bytes
//! directly (one span per record, as `services/sampler/src/engine/tests.rs` does), on a virtual
//! clock, and every export is acknowledged as soon as it is emitted.
//!
//! Each point runs in a fresh child process (the binary re-executes itself with `point ...`), so
//! resident-memory deltas do not inherit another point's allocator state. CPU is the measuring
//! thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`; the engine is synchronous, one thread), memory is
//! the engine's `buffered_bytes()` and the RSS delta from `/proc/self/statm`.
//!
//! Curves (`loadtest/curves.sh` runs them all and plots them; docs/scaling.md reports them):
//! - `inflight`: CPU per span and memory per buffered span against traces in flight;
//! - `spans_per_trace`: CPU per span against the trace size;
//! - `partitions`: CPU per span (and on_tick's share) against partitions owned, same traffic;
//! - `policy`: compile time, decide time per trace and CPU per span against regex rules;
//! - `rebalance`: handover of k partitions (old owner: drain, committable, revoke; new owner:
//!   replay of the moved partitions' undecided records) against k and traces in flight.
//!
//! Usage: `tailsift-bench-curves all --out DIR [--quick]` (one CSV per curve in DIR), or
//! `tailsift-bench-curves point CURVE X [K] [--quick]` (one CSV row on stdout).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use tailsift_policy::{PolicyDocument, PolicyEngine};
use tailsift_sampler::engine::{ActivePolicy, Engine, EngineConfig, Output};

/// The default policy of a sampler (errors, slow > 1 s, 10% of the rest).
const DEFAULT_POLICY: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n  - name: slow\n    latency: { threshold_ms: 1000 }\n  - name: sample\n    probabilistic: { percentage: 10 }\n";

/// Virtual traffic rate of the streamed phase (spans per virtual second) and tick period.
const RATE: f64 = 10_000.0;
const TICK: Duration = Duration::from_millis(100);

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_string())
}

/// One trace of the synthetic traffic: `spans` spans, the root sent last; 2% of traces carry an
/// error span, 3% a root longer than 1 s.
struct TraceGen {
    id: [u8; 16],
    spans: u32,
    error_at: Option<u32>,
    slow: bool,
    start_ns: u64,
}

impl TraceGen {
    fn new(rng: &mut u64, spans: u32, start_ns: u64) -> Self {
        let a = splitmix(rng);
        let b = splitmix(rng);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&a.to_le_bytes());
        id[8..].copy_from_slice(&b.to_le_bytes());
        let r = splitmix(rng) % 100;
        TraceGen {
            id,
            spans,
            error_at: (r < 2).then(|| (splitmix(rng) % u64::from(spans)) as u32),
            slow: (2..5).contains(&r),
            start_ns,
        }
    }

    /// The `i`-th span's record; `i == spans - 1` is the root. About 330 bytes encoded.
    fn record(&self, i: u32) -> Bytes {
        let root = i + 1 == self.spans;
        let mut span_id = [0u8; 8];
        span_id[..4].copy_from_slice(&(i + 1).to_le_bytes());
        span_id[4..].copy_from_slice(&self.id[..4]);
        let mut root_id = [0u8; 8];
        root_id[..4].copy_from_slice(&self.spans.to_le_bytes());
        root_id[4..].copy_from_slice(&self.id[..4]);
        let dur_ns = if root && self.slow {
            1_500_000_000
        } else {
            (1 + u64::from(i % 50)) * 1_000_000
        };
        let sp = Span {
            trace_id: self.id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: if root { Vec::new() } else { root_id.to_vec() },
            flags: 0x101,
            name: if root {
                "GET /api/users/{id}".into()
            } else {
                format!("SELECT users {i}")
            },
            kind: if root { 2 } else { 3 },
            start_time_unix_nano: self.start_ns,
            end_time_unix_nano: self.start_ns + dur_ns,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s("/api/users/{id}")),
                kv("url.path", s(&format!("/api/users/{}", self.id[0]))),
                kv("http.response.status_code", any_value::Value::IntValue(200)),
                kv("server.address", s("users.internal")),
            ],
            status: (self.error_at == Some(i)).then(|| Status {
                code: status::StatusCode::Error as i32,
                message: "request failed".into(),
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s("users")),
                        kv("service.version", s("1.4.2")),
                        kv("host.name", s("users-7d9f8c-x2k4q")),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "io.opentelemetry.http".into(),
                        version: "2.1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![sp],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
        .into()
    }
}

fn compile(policy: &str) -> anyhow::Result<PolicyEngine> {
    let doc = PolicyDocument::from_yaml(policy).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    PolicyEngine::compile(&doc).map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// The sampler's default settings, with `send_delay` 0 (a trace is decided at the first tick after
/// its root) and no memory limit (nothing is decided early).
fn config(decision_wait: Duration) -> EngineConfig {
    EngineConfig {
        send_delay: Duration::ZERO,
        decision_wait,
        max_trace_spans: 10_000,
        max_trace_bytes: 16 << 20,
        max_clock_skew: Duration::from_secs(30),
        cache_ttl: Duration::from_secs(300),
        cache_max: 1_000_000,
        soft_limit_bytes: usize::MAX / 4,
        hard_limit_bytes: usize::MAX / 2,
        stress_probability: 0.0,
        max_traces: usize::MAX,
        oversized_drop: false,
        buffer_mode: tailsift_sampler::engine::BufferMode::Memory,
        span_bytes_budget: usize::MAX,
    }
}

/// An engine on a virtual clock.
struct Sim {
    e: Engine,
    t0: Instant,
    wall0_ms: i64,
    virt: Duration,
    next_tick: Duration,
    offsets: Vec<i64>,
    tick_cpu: Duration,
    ticks: u64,
    spans_fed: u64,
    kept: u64,
    decided: u64,
}

impl Sim {
    fn new(policy: PolicyEngine, partitions: usize, decision_wait: Duration) -> Self {
        let wall0_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let t0 = Instant::now();
        let mut e = Engine::new(
            config(decision_wait),
            ActivePolicy {
                version: 1,
                seed: 1,
                engine: policy,
            },
            t0,
        );
        for p in 0..partitions {
            e.assign(p as i32);
        }
        Sim {
            e,
            t0,
            wall0_ms,
            virt: Duration::ZERO,
            next_tick: TICK,
            offsets: vec![0; partitions],
            tick_cpu: Duration::ZERO,
            ticks: 0,
            spans_fed: 0,
            kept: 0,
            decided: 0,
        }
    }

    fn now(&self) -> Instant {
        self.t0 + self.virt
    }

    fn ts(&self) -> i64 {
        self.wall0_ms + self.virt.as_millis() as i64
    }

    /// Feeds one record, advancing the virtual clock by 1 / RATE and ticking every TICK.
    fn feed(&mut self, partition: usize, rec: Bytes) -> i64 {
        self.virt += Duration::from_secs_f64(1.0 / RATE);
        if self.virt >= self.next_tick {
            self.next_tick += TICK;
            self.tick();
        }
        let off = self.offsets[partition];
        self.offsets[partition] += 1;
        let (ts, now) = (self.ts(), self.now());
        self.e.on_record(partition as i32, off, Some(ts), rec, now);
        self.spans_fed += 1;
        off
    }

    fn tick(&mut self) {
        let c = thread_cpu();
        let now = self.now();
        self.e.on_tick(now);
        self.drain();
        self.tick_cpu += thread_cpu() - c;
        self.ticks += 1;
    }

    /// Acknowledges every export at once and drops the decision records.
    fn drain(&mut self) {
        while let Some(o) = self.e.pop_output() {
            match o {
                Output::Export(j) => {
                    self.kept += 1;
                    self.e.on_export_done(j.id);
                }
                Output::Decision(d) => {
                    if d.kept.is_none() {
                        self.decided += 1;
                    }
                }
                Output::ReadBack(j) => unreachable!("the engine buffers in memory here, nothing is read back: {j:?}"),
            }
        }
    }

    /// Streams `total` spans in traces of `spans_per_trace` (each trace's spans back to back, root
    /// last), partition by trace, then ticks until they are decided. Returns CPU spent.
    fn stream(&mut self, rng: &mut u64, total: u64, spans_per_trace: u32, partitions: usize) -> Duration {
        let c = thread_cpu();
        let mut sent = 0;
        while sent < total {
            let t = TraceGen::new(
                rng,
                spans_per_trace,
                1_700_000_000_000_000_000 + self.virt.as_nanos() as u64,
            );
            let p = (t.id[0] as usize * 256 + t.id[1] as usize) % partitions;
            for i in 0..spans_per_trace {
                let rec = t.record(i);
                self.feed(p, rec);
            }
            sent += u64::from(spans_per_trace);
        }
        // The clock follows the wall once records stop for IDLE_GRACE (500 ms): 8 ticks decide the
        // last traces.
        for _ in 0..8 {
            self.virt += TICK;
            self.next_tick = self.virt + TICK;
            self.tick();
        }
        thread_cpu() - c
    }
}

/// CPU spent generating `n` span records (subtracted from the measured figures).
fn generation_cpu(n: u64, spans_per_trace: u32) -> Duration {
    let mut rng = 99;
    let c = thread_cpu();
    let mut sent = 0;
    let mut sink = 0usize;
    while sent < n {
        let t = TraceGen::new(&mut rng, spans_per_trace, 1);
        for i in 0..spans_per_trace {
            sink += std::hint::black_box(t.record(i)).len();
        }
        sent += u64::from(spans_per_trace);
    }
    std::hint::black_box(sink);
    thread_cpu() - c
}

fn ns(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

struct Scale {
    stream: u64,
}

/// Curve 1: `n` traces of 4 spans buffered (no root, decision_wait 1 h) on 4 partitions, then
/// `stream` spans of other traces streamed through with them in flight.
fn point_inflight(n: u64, sc: &Scale) -> anyhow::Result<String> {
    const SPT: u32 = 4;
    let mut rng = 1;
    let rss0 = rss_bytes();
    let mut sim = Sim::new(compile(DEFAULT_POLICY)?, 4, Duration::from_secs(3600));
    // Prefill: spans of n traces without their root, interleaved round-robin over 4 partitions,
    // all at virtual time 0 (no tick).
    let c = thread_cpu();
    let mut prefill_spans = 0u64;
    for k in 0..n {
        let t = TraceGen::new(&mut rng, SPT + 1, 1);
        let p = (k % 4) as usize;
        for i in 0..SPT {
            let off = sim.offsets[p];
            sim.offsets[p] += 1;
            let now = sim.now();
            let ts = sim.ts();
            sim.e.on_record(p as i32, off, Some(ts), t.record(i), now);
            prefill_spans += 1;
        }
    }
    let prefill_cpu = thread_cpu() - c;
    let rss1 = rss_bytes();
    let buffered = sim.e.buffered_bytes() as u64;
    let in_flight = sim.e.buffered_traces() as u64;
    let gen = generation_cpu(prefill_spans.min(400_000), SPT + 1);
    let gen_per_span = ns(gen, prefill_spans.min(400_000));
    let cpu = sim.stream(&mut rng, sc.stream, SPT, 4);
    let gen_s = generation_cpu(sc.stream, SPT);
    let still = sim.e.buffered_traces() as u64;
    if still != in_flight {
        bail!("inflight {n}: {still} traces buffered after the stream, {in_flight} before");
    }
    Ok(format!(
        "{n},{in_flight},{prefill_spans},{:.0},{:.0},{},{:.1},{:.1},{:.1},{:.0},{:.0}",
        ns(prefill_cpu, prefill_spans) - gen_per_span,
        ns(cpu.saturating_sub(gen_s), sc.stream),
        buffered,
        buffered as f64 / prefill_spans as f64,
        rss1.saturating_sub(rss0) as f64 / prefill_spans as f64,
        rss1.saturating_sub(rss0) as f64 / buffered as f64,
        ns(sim.tick_cpu, sc.stream),
        (rss1.saturating_sub(rss0)) as f64 / in_flight as f64,
    ))
}

const INFLIGHT_HEADER: &str = "traces_in_flight,traces_buffered,spans_buffered,prefill_cpu_ns_per_span,stream_cpu_ns_per_span,buffered_bytes,buffered_bytes_per_span,rss_bytes_per_span,rss_per_buffered_byte,tick_cpu_ns_per_span,rss_bytes_per_trace";

/// Curve 2: `stream` spans in traces of `spt` spans, one partition.
fn point_spans_per_trace(spt: u32, sc: &Scale) -> anyhow::Result<String> {
    let mut rng = 2;
    let total = sc.stream.max(u64::from(spt) * 10);
    let mut sim = Sim::new(compile(DEFAULT_POLICY)?, 1, Duration::from_secs(30));
    let cpu = sim.stream(&mut rng, total, spt, 1);
    let fed = sim.spans_fed;
    let gen = generation_cpu(fed, spt);
    if sim.e.buffered_traces() != 0 {
        bail!("spans_per_trace {spt}: {} traces left", sim.e.buffered_traces());
    }
    let traces = fed / u64::from(spt);
    Ok(format!(
        "{spt},{fed},{traces},{},{:.0},{:.0},{:.1}",
        sim.kept,
        ns(cpu.saturating_sub(gen), fed),
        ns(sim.tick_cpu, fed),
        ns(cpu.saturating_sub(gen), traces) / 1000.0,
    ))
}

const SPT_HEADER: &str =
    "spans_per_trace,spans,traces,kept_traces,cpu_ns_per_span,tick_cpu_ns_per_span,cpu_us_per_trace";

/// Curve 3: the same `stream` spans (traces of 4) spread over `parts` partitions.
fn point_partitions(parts: usize, sc: &Scale) -> anyhow::Result<String> {
    let mut rng = 3;
    let rss0 = rss_bytes();
    let mut sim = Sim::new(compile(DEFAULT_POLICY)?, parts, Duration::from_secs(30));
    let rss1 = rss_bytes();
    let cpu = sim.stream(&mut rng, sc.stream, 4, parts);
    let gen = generation_cpu(sc.stream, 4);
    let fed = sim.spans_fed;
    // Ticks in the 20 s after the stream: nothing is buffered, but the timer and backstop heaps
    // still hold the entries of decided traces (a trace whose root came after its first span
    // leaves its `decision_wait` timer and its backstop behind), popped as their time passes.
    let c = thread_cpu();
    for _ in 0..200 {
        sim.virt += TICK;
        let now = sim.now();
        sim.e.on_tick(now);
    }
    let stale_tick = thread_cpu() - c;
    // 100 s later every such entry is gone: the fixed cost of a tick over `parts` partitions.
    for _ in 0..1000 {
        sim.virt += TICK;
        let now = sim.now();
        sim.e.on_tick(now);
    }
    let c = thread_cpu();
    for _ in 0..200 {
        sim.virt += TICK;
        let now = sim.now();
        sim.e.on_tick(now);
    }
    let idle_tick = thread_cpu() - c;
    Ok(format!(
        "{parts},{fed},{:.0},{:.0},{},{:.2},{:.1},{:.2},{}",
        ns(cpu.saturating_sub(gen), fed),
        ns(sim.tick_cpu, fed),
        sim.ticks,
        ns(sim.tick_cpu, sim.ticks) / 1000.0,
        ns(stale_tick, 200) / 1000.0,
        ns(idle_tick, 200) / 1000.0,
        rss1.saturating_sub(rss0),
    ))
}

const PARTITIONS_HEADER: &str = "partitions,spans,cpu_ns_per_span,tick_cpu_ns_per_span,ticks,tick_cpu_us_per_tick,after_stream_tick_us,idle_tick_us,rss_bytes_of_engine";

fn regex_policy(rules: usize) -> String {
    let mut p = String::from("policies:\n");
    for i in 0..rules {
        p.push_str(&format!(
            "  - name: route-{i}\n    string_attribute: {{ key: url.path, values: ['^/api/v{i}/(orders|carts)/[0-9]+/items(/[a-z]+)?$'], regex: true }}\n"
        ));
    }
    p.push_str("  - name: sample\n    probabilistic: { percentage: 10 }\n");
    p
}

/// Curve 4: `rules` regex string_attribute rules (none matches) then a 10% probabilistic rule.
fn point_policy(rules: usize, sc: &Scale) -> anyhow::Result<String> {
    let yaml = regex_policy(rules);
    // Compile cost: median of 5.
    let mut compiles = Vec::new();
    for _ in 0..5 {
        let c = thread_cpu();
        std::hint::black_box(compile(&yaml)?);
        compiles.push(thread_cpu() - c);
    }
    compiles.sort();
    // Decide cost per trace, directly: trace_data + decide on 4-span traces.
    let mut pe = compile(&yaml)?;
    let mut rng = 4;
    let traces: Vec<(TraceGen, Vec<Bytes>)> = (0..2000)
        .map(|_| {
            let t = TraceGen::new(&mut rng, 4, 1);
            let recs = (0..4).map(|i| t.record(i)).collect();
            (t, recs)
        })
        .collect();
    let req = pe.requirements().clone();
    let reps = 10;
    let c = thread_cpu();
    for _ in 0..reps {
        for (t, recs) in &traces {
            let mut res = tailsift_sampler::extract::Resources::new();
            let data = tailsift_sampler::extract::trace_data(t.id, recs, &req, &mut res);
            std::hint::black_box(pe.decide(&data, 1, 1_700_000_000_000_000_000));
        }
    }
    let decide = thread_cpu() - c;
    let mut sim = Sim::new(compile(&yaml)?, 4, Duration::from_secs(30));
    let cpu = sim.stream(&mut rng, sc.stream, 4, 4);
    let gen = generation_cpu(sc.stream, 4);
    Ok(format!(
        "{rules},{:.3},{:.2},{:.0},{}",
        compiles[2].as_secs_f64() * 1000.0,
        ns(decide, reps * traces.len() as u64) / 1000.0,
        ns(cpu.saturating_sub(gen), sim.spans_fed),
        sim.kept,
    ))
}

const POLICY_HEADER: &str = "rules,compile_ms,decide_us_per_trace,cpu_ns_per_span,kept_traces";

/// Curve 5: `n` undecided traces of 4 spans over 100 partitions; `k` of them handed over.
fn point_rebalance(n: u64, k: usize) -> anyhow::Result<String> {
    const PARTS: usize = 100;
    let mut rng = 5;
    let mut sim = Sim::new(compile(DEFAULT_POLICY)?, PARTS, Duration::from_secs(3600));
    let mut log: Vec<(usize, i64, i64, Bytes)> = Vec::with_capacity(n as usize * 4);
    for j in 0..n {
        let t = TraceGen::new(&mut rng, 5, 1);
        let p = (j as usize) % PARTS;
        for i in 0..4 {
            let rec = t.record(i);
            let off = sim.offsets[p];
            sim.offsets[p] += 1;
            let (ts, now) = (sim.ts(), sim.now());
            sim.e.on_record(p as i32, off, Some(ts), rec.clone(), now);
            log.push((p, off, ts, rec));
        }
    }
    let before = sim.e.buffered_traces();
    let moved: Vec<i32> = (0..k as i32).collect();
    // Old owner (shared.rs `handover`, without its I/O): drain outputs, read the committable
    // offsets, revoke the partitions.
    let wall = Instant::now();
    let c = thread_cpu();
    sim.drain();
    let offsets: Vec<(i32, i64)> = sim
        .e
        .committable()
        .into_iter()
        .filter(|(p, _)| moved.contains(p))
        .collect();
    for p in &moved {
        sim.e.revoke(*p);
    }
    let revoke_cpu = thread_cpu() - c;
    let revoke_wall = wall.elapsed();
    let dropped = before - sim.e.buffered_traces();
    // New owner: assign, resume from the committed offsets, replay the moved partitions' records.
    let mut new = Sim::new(compile(DEFAULT_POLICY)?, 0, Duration::from_secs(3600));
    let replay: Vec<&(usize, i64, i64, Bytes)> = log.iter().filter(|(p, ..)| *p < k).collect();
    let wall = Instant::now();
    let c = thread_cpu();
    for p in &moved {
        new.e.assign(*p);
    }
    for (p, off) in &offsets {
        new.e.resume_from(*p, *off);
    }
    let now = new.now();
    for (p, off, ts, rec) in &replay {
        new.e.on_record(*p as i32, *off, Some(*ts), rec.clone(), now);
    }
    let replay_cpu = thread_cpu() - c;
    let replay_wall = wall.elapsed();
    if new.e.buffered_traces() != dropped {
        bail!(
            "rebalance: {} traces replayed, {dropped} handed over",
            new.e.buffered_traces()
        );
    }
    Ok(format!(
        "{n},{k},{dropped},{},{:.1},{:.1},{:.2},{:.2}",
        replay.len(),
        revoke_cpu.as_secs_f64() * 1e6,
        revoke_wall.as_secs_f64() * 1e6,
        replay_cpu.as_secs_f64() * 1e3,
        replay_wall.as_secs_f64() * 1e3,
    ))
}

const REBALANCE_HEADER: &str = "traces_in_flight,partitions_moved,traces_moved,records_replayed,revoke_cpu_us,revoke_wall_us,replay_cpu_ms,replay_wall_ms";

fn point(args: &[String], quick: bool) -> anyhow::Result<String> {
    let sc = Scale {
        stream: if quick { 20_000 } else { 400_000 },
    };
    let arg =
        |i: usize| -> anyhow::Result<u64> { args.get(i).context("missing argument")?.parse().context("not a number") };
    match args.first().map(String::as_str) {
        Some("inflight") => point_inflight(arg(1)?, &sc),
        Some("spans_per_trace") => point_spans_per_trace(arg(1)? as u32, &sc),
        Some("partitions") => point_partitions(arg(1)? as usize, &sc),
        Some("policy") => point_policy(arg(1)? as usize, &sc),
        Some("rebalance") => point_rebalance(arg(1)?, arg(2)? as usize),
        _ => bail!("unknown curve: {args:?}"),
    }
}

fn run_child(args: &[String], quick: bool) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("point").args(args);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("point {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    args.retain(|a| a != "--quick");
    match args.first().map(String::as_str) {
        Some("point") => {
            println!("{}", point(&args[1..], quick)?);
            Ok(())
        }
        Some("all") => {
            let dir = match args.get(1).map(String::as_str) {
                Some("--out") => args.get(2).context("--out DIR")?.clone(),
                _ => bail!("usage: tailsift-bench-curves all --out DIR [--quick]"),
            };
            std::fs::create_dir_all(&dir)?;
            let inflight: &[u64] = if quick {
                &[1_000, 10_000]
            } else {
                &[1_000, 10_000, 100_000, 1_000_000]
            };
            let curves: Vec<(&str, &str, Vec<Vec<String>>)> = vec![
                (
                    "inflight",
                    INFLIGHT_HEADER,
                    inflight
                        .iter()
                        .map(|n| vec!["inflight".into(), n.to_string()])
                        .collect(),
                ),
                (
                    "spans_per_trace",
                    SPT_HEADER,
                    [1, 10, 100, 1_000, 10_000]
                        .iter()
                        .map(|n| vec!["spans_per_trace".into(), n.to_string()])
                        .collect(),
                ),
                (
                    "partitions",
                    PARTITIONS_HEADER,
                    [1, 10, 100, 1_000]
                        .iter()
                        .map(|n| vec!["partitions".into(), n.to_string()])
                        .collect(),
                ),
                (
                    "policy",
                    POLICY_HEADER,
                    [1, 10, 50, 200]
                        .iter()
                        .map(|n| vec!["policy".into(), n.to_string()])
                        .collect(),
                ),
                (
                    "rebalance",
                    REBALANCE_HEADER,
                    [1_000u64, 10_000, 100_000]
                        .iter()
                        .flat_map(|n| [1, 10, 100].map(|k| vec!["rebalance".into(), n.to_string(), k.to_string()]))
                        .collect(),
                ),
            ];
            for (name, header, points) in curves {
                let path = format!("{dir}/{name}.csv");
                let mut f = std::fs::File::create(&path)?;
                writeln!(f, "{header}")?;
                println!("# {name}\n{header}");
                for p in points {
                    let row = run_child(&p, quick)?;
                    writeln!(f, "{row}")?;
                    println!("{row}");
                }
            }
            Ok(())
        }
        _ => bail!("usage: tailsift-bench-curves all --out DIR [--quick] | point CURVE X [K] [--quick]"),
    }
}
