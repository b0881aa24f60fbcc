use super::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use tailsift_policy::PolicyDocument;

const ERRORS_ONLY: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n";

fn engine(policy: &str, soft: usize, hard: usize) -> (Engine, Instant) {
    let doc = PolicyDocument::from_yaml(policy).unwrap();
    let now = Instant::now();
    let e = Engine::new(
        EngineConfig {
            send_delay: Duration::from_secs(2),
            decision_wait: Duration::from_secs(30),
            max_trace_spans: 100,
            max_trace_bytes: 1 << 20,
            max_clock_skew: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(300),
            cache_max: 10_000,
            soft_limit_bytes: soft,
            hard_limit_bytes: hard,
            stress_probability: 0.0,
            max_traces: usize::MAX,
            oversized_drop: false,
            buffer_mode: BufferMode::Memory,
            span_bytes_budget: usize::MAX,
        },
        ActivePolicy {
            version: doc.version,
            seed: 1,
            engine: PolicyEngine::compile(&doc).unwrap(),
        },
        now,
    );
    (e, now)
}

fn record(trace: u8, span: u8, parent: Option<u8>, error: bool) -> Bytes {
    let s = Span {
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("span-{span}"),
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 2_000,
        status: error.then(|| Status {
            code: status::StatusCode::Error as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![s],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
    .into()
}

/// Ticks every 100 ms up to `to`, like the run loop does.
fn tick_to(e: &mut Engine, t0: Instant, to: Instant) {
    let mut t = t0;
    while t < to {
        t += Duration::from_millis(100);
        e.on_tick(t.min(to));
    }
}

fn drain(e: &mut Engine) -> (Vec<ExportJob>, Vec<DecisionRecord>) {
    let (mut jobs, mut decs) = (vec![], vec![]);
    while let Some(o) = e.pop_output() {
        match o {
            Output::Export(j) => jobs.push(j),
            Output::Decision(d) => decs.push(d),
            Output::ReadBack(j) => panic!("a read-back in memory mode: {j:?}"),
        }
    }
    (jobs, decs)
}

fn exported_spans(job: &ExportJob) -> Vec<Span> {
    let req = ExportTraceServiceRequest::decode(job.payload.as_slice()).unwrap();
    req.resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

#[test]
fn waits_for_root_plus_send_delay_and_holds_offsets_until_exported() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    e.assign(0);
    e.on_record(0, 10, None, record(1, 2, Some(1), true), t0);
    e.on_record(0, 11, None, record(2, 1, None, false), t0);
    tick_to(&mut e, t0, t0 + Duration::from_secs(1));
    assert_eq!(e.buffered_traces(), 2);
    assert_eq!(e.committable(), vec![(0, 10)]);
    // Root of trace 1 arrives: decided 2 s later.
    e.on_record(0, 12, None, record(1, 1, None, false), t0 + Duration::from_secs(1));
    tick_to(&mut e, t0 + Duration::from_secs(1), t0 + Duration::from_millis(2500));
    let (jobs, decs) = drain(&mut e);
    assert_eq!(decs.len(), 1, "trace 2 (root at t0, no error) dropped at t0+2s");
    assert!(decs[0].kept.is_none());
    assert!(jobs.is_empty());
    tick_to(
        &mut e,
        t0 + Duration::from_millis(2500),
        t0 + Duration::from_millis(3100),
    );
    let (jobs, decs) = drain(&mut e);
    assert_eq!(jobs.len(), 1);
    assert!(
        decs.is_empty(),
        "kept decisions are published after the export is acknowledged"
    );
    let spans = exported_spans(&jobs[0]);
    assert_eq!(spans.len(), 2, "whole trace exported");
    let attr = |s: &Span, k: &str| s.attributes.iter().find(|a| a.key == k).cloned();
    assert!(attr(&spans[0], "tailsift.sampling.policy").is_some());
    assert!(
        spans[0].trace_state.starts_with("ot=th:0;rv:"),
        "{}",
        spans[0].trace_state
    );
    // Offsets: trace 1 is exporting (pinned at 10) until acknowledged.
    assert_eq!(e.committable(), vec![(0, 10)]);
    e.on_export_done(jobs[0].id);
    assert_eq!(e.committable(), vec![(0, 13)]);
    let (_, decs) = drain(&mut e);
    assert_eq!(decs.len(), 1);
    assert_eq!(decs[0].exported_through, 12);
    assert_eq!(e.stats.kept_traces, 1);
    assert_eq!(e.stats.dropped_traces, 1);
}

#[test]
fn decision_wait_bounds_traces_without_root() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    e.on_record(0, 0, None, record(3, 2, Some(1), true), t0);
    tick_to(&mut e, t0, t0 + Duration::from_secs(29));
    assert_eq!(e.buffered_traces(), 1);
    tick_to(&mut e, t0 + Duration::from_secs(29), t0 + Duration::from_secs(30));
    assert_eq!(e.buffered_traces(), 0);
    let (jobs, _) = drain(&mut e);
    assert_eq!(jobs.len(), 1);
}

#[test]
fn late_spans_follow_the_decision() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    e.on_record(0, 0, None, record(1, 1, None, true), t0);
    e.on_record(0, 1, None, record(2, 1, None, false), t0);
    e.on_tick(t0 + Duration::from_secs(3));
    let (jobs, _) = drain(&mut e);
    assert_eq!(jobs.len(), 1);
    e.on_record(0, 2, None, record(1, 5, Some(1), false), t0 + Duration::from_secs(4));
    e.on_record(0, 3, None, record(2, 5, Some(1), false), t0 + Duration::from_secs(4));
    let (late, _) = drain(&mut e);
    assert_eq!(late.len(), 1, "late span of the kept trace exported at once");
    assert_eq!(late[0].trace_id, [1; 16]);
    assert_eq!(e.stats.late_kept_spans, 1);
    assert_eq!(e.stats.late_dropped_spans, 1);
    assert_eq!(e.buffered_traces(), 0);
    // The late span pins its offset until acknowledged; the dropped one does not.
    e.on_export_done(jobs[0].id);
    assert_eq!(e.committable(), vec![(0, 2)]);
    e.on_export_done(late[0].id);
    assert_eq!(e.committable(), vec![(0, 4)]);
}

#[test]
fn preloaded_decisions_skip_replayed_records_of_exported_traces() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    let stamp = Arc::new(Stamp {
        policy: "errors".into(),
        policy_version: 0,
        adjusted_count: 1.0,
        ot: None,
    });
    e.preload(
        &DecisionRecord {
            partition: 0,
            trace_id: [1; 16],
            kept: Some(stamp),
            exported_through: 5,
        },
        t0,
    );
    e.preload(
        &DecisionRecord {
            partition: 0,
            trace_id: [2; 16],
            kept: None,
            exported_through: 6,
        },
        t0,
    );
    e.on_record(0, 4, None, record(1, 1, None, true), t0);
    e.on_record(0, 5, None, record(1, 2, Some(1), true), t0);
    e.on_record(0, 6, None, record(2, 1, None, false), t0);
    let (jobs, _) = drain(&mut e);
    assert!(jobs.is_empty(), "already exported: not exported again");
    assert_eq!(e.stats.replay_skipped_records, 2);
    e.on_record(0, 7, None, record(1, 3, Some(1), false), t0);
    let (jobs, _) = drain(&mut e);
    assert_eq!(
        jobs.len(),
        1,
        "a span past exported_through is a late span of a kept trace"
    );
    assert_eq!(e.buffered_traces(), 0);
}

#[test]
fn duplicate_records_are_buffered_once() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    e.on_record(0, 0, None, record(1, 1, None, true), t0);
    e.on_record(0, 1, None, record(1, 1, None, true), t0);
    e.on_tick(t0 + Duration::from_secs(3));
    let (jobs, _) = drain(&mut e);
    assert_eq!(exported_spans(&jobs[0]).len(), 1);
    assert_eq!(e.stats.duplicate_records, 1);
}

#[test]
fn huge_traces_are_decided_at_the_span_limit() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    e.on_record(0, 0, None, record(1, 1, None, true), t0);
    for i in 2..=101u8 {
        e.on_record(0, i as i64, None, record(1, i, Some(1), false), t0);
    }
    assert_eq!(e.buffered_traces(), 0, "decided at 101 spans without waiting");
    let (jobs, _) = drain(&mut e);
    assert_eq!(jobs.len(), 1);
    e.on_record(0, 200, None, record(1, 150, Some(1), false), t0);
    let (jobs, _) = drain(&mut e);
    assert_eq!(jobs.len(), 1, "the rest follow as late spans");
}

#[test]
fn memory_pressure_decides_oldest_first_and_stress_relief_stops_buffering() {
    let one = record(1, 1, None, false).len();
    let (mut e, t0) = engine(ERRORS_ONLY, one * 3, one * 6);
    e.assign(0);
    for t in 1..=5u8 {
        e.on_record(
            0,
            t as i64,
            None,
            record(t, 1, Some(9), t == 1),
            t0 + Duration::from_millis(t as u64),
        );
    }
    assert!(e.buffered_bytes() <= one * 3);
    let (jobs, decs) = drain(&mut e);
    assert_eq!(jobs.len(), 1, "the oldest (error) trace was decided early and kept");
    assert_eq!(jobs[0].trace_id, [1; 16]);
    assert!(!decs.is_empty() && decs[0].trace_id == [2; 16], "then the next oldest");
    assert_eq!(e.buffered_traces(), 5 - 1 - decs.len());
    assert!(decs.iter().all(|d| d.trace_id[0] <= 3), "only the oldest are decided");

    // Stress: a tiny hard limit.
    let (mut e, t0) = engine(ERRORS_ONLY, one, one);
    e.assign(0);
    e.on_record(0, 0, None, record(1, 1, Some(9), false), t0);
    e.on_record(0, 1, None, record(2, 1, Some(9), false), t0);
    assert!(e.in_stress());
    e.on_record(0, 2, None, record(3, 1, Some(9), false), t0);
    assert!(e.stats.stress_decisions >= 1, "new traces decided without buffering");
    e.on_tick(t0 + Duration::from_secs(60));
    assert!(!e.in_stress(), "leaves stress relief when the buffer empties");
}

#[test]
fn a_stalled_worker_does_not_mistake_its_own_stall_for_idleness() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    e.on_tick(t0);
    e.on_record(0, 0, Some(1_000), record(1, 1, None, true), t0);
    // The worker stalls for 5 s (records pile up in the client), then ticks.
    e.on_tick(t0 + Duration::from_secs(5));
    assert_eq!(e.buffered_traces(), 1, "not decided on wall time right after a stall");
    // Genuinely idle afterwards: the clock follows the wall clock from the end of the stall, so
    // the root's send_delay (2 s) passes about 2 s later, not at once.
    tick_to(&mut e, t0 + Duration::from_secs(5), t0 + Duration::from_millis(6800));
    assert_eq!(e.buffered_traces(), 1, "the stall did not count as time");
    tick_to(
        &mut e,
        t0 + Duration::from_millis(6800),
        t0 + Duration::from_millis(7700),
    );
    assert_eq!(e.buffered_traces(), 0);
}

#[test]
fn revoke_leaves_undecided_traces_to_the_next_owner() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    e.assign(0);
    e.assign(1);
    e.on_record(0, 5, None, record(1, 1, Some(9), true), t0);
    e.on_record(1, 0, None, record(2, 1, Some(9), true), t0);
    assert_eq!(
        e.committable(),
        vec![(0, 5), (1, 0)],
        "undecided traces hold the commit"
    );
    e.revoke(0);
    assert_eq!(e.partitions(), vec![1]);
    assert_eq!(e.buffered_traces(), 1);
}

/// A partition being handed over decides nothing more and takes no record (a CI run exported a
/// trace twice: decided by the old owner's timer after the handover's last check, and again by
/// the new owner, which had no decision record for it). Other partitions go on as before.
#[test]
fn a_partition_being_handed_over_decides_and_takes_nothing() {
    // Room for one record's bytes: a second one puts the engine over its soft limit.
    let (mut e, t0) = engine(ERRORS_ONLY, record(1, 1, None, true).len() + 1, 1 << 30);
    e.assign(0);
    e.assign(1);
    e.on_record(0, 5, None, record(1, 1, None, true), t0);
    e.leave(0);
    // Over the soft limit: the oldest trace of a partition not leaving is decided.
    e.on_record(1, 7, None, record(2, 1, None, true), t0);
    // A record of the leaving partition is not taken: the commit stays at or below it.
    e.on_record(0, 6, None, record(3, 1, None, true), t0);
    assert_eq!(
        e.committable(),
        vec![(0, 5), (1, 7)],
        "(the kept trace pins 7 until acknowledged)"
    );
    // Its timers decide nothing on it.
    tick_to(&mut e, t0, t0 + Duration::from_secs(40));
    let (jobs, decisions) = drain(&mut e);
    assert_eq!(
        jobs.iter().map(|j| j.partition).collect::<Vec<_>>(),
        vec![1],
        "only the other partition's trace is decided"
    );
    assert!(decisions.iter().all(|d| d.partition == 1));
    assert_eq!(
        e.committable()[0],
        (0, 5),
        "the leaving partition's trace still holds the commit"
    );
    e.revoke(0);
    assert_eq!(e.partitions(), vec![1]);
    assert_eq!(e.buffered_traces(), 0);
}

#[test]
fn deadlines_run_on_record_time_while_records_flow() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    let ts = 1_000_000;
    // Three records of other traces start the clock (a median of three timestamps).
    for i in 0..3u8 {
        e.on_record(0, 100 + i64::from(i), Some(ts), record(10 + i, 1, Some(9), false), t0);
    }
    // A root at record time ts, then (replayed quickly) a child produced 100 ms later.
    e.on_record(0, 200, Some(ts), record(1, 1, None, false), t0);
    e.on_record(
        0,
        201,
        Some(ts + 100),
        record(1, 2, Some(1), true),
        t0 + Duration::from_millis(10),
    );
    // Wall time far ahead but records still flowing (< IDLE_GRACE): record time rules.
    e.on_record(
        0,
        202,
        Some(ts + 1000),
        record(2, 1, Some(9), false),
        t0 + Duration::from_millis(400),
    );
    e.on_tick(t0 + Duration::from_millis(450));
    assert_eq!(e.buffered_traces(), 5, "record time is only 1 s past the root: not yet");
    // Two records 2.1 s past the root: the median of the last three moves the clock there.
    for (offset, trace) in [(203, 3), (204, 4)] {
        e.on_record(
            0,
            offset,
            Some(ts + 2100),
            record(trace, 1, Some(9), false),
            t0 + Duration::from_millis(460),
        );
    }
    e.on_tick(t0 + Duration::from_millis(470));
    let (jobs, _) = drain(&mut e);
    assert_eq!(
        jobs.len(),
        1,
        "root + send_delay passed on record time: decided, complete"
    );
    assert_eq!(exported_spans(&jobs[0]).len(), 2);
}

#[test]
fn policy_swap_applies_between_traces_and_is_stamped() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    e.on_record(0, 0, None, record(1, 1, None, false), t0);
    let doc = PolicyDocument::from_yaml("version: 7\npolicies:\n  - name: all\n    always: {}\n").unwrap();
    e.set_policy(ActivePolicy {
        version: 7,
        seed: 1,
        engine: PolicyEngine::compile(&doc).unwrap(),
    });
    e.on_tick(t0 + Duration::from_secs(3));
    let (jobs, _) = drain(&mut e);
    assert_eq!(jobs.len(), 1);
    let spans = exported_spans(&jobs[0]);
    let v = spans[0]
        .attributes
        .iter()
        .find(|a| a.key == "tailsift.sampling.policy_version")
        .unwrap();
    assert_eq!(
        format!("{:?}", v.value),
        format!(
            "{:?}",
            Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(7))
            })
        )
    );
}

#[test]
fn shadow_policy_is_tallied_per_rule_and_never_changes_decisions() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    let shadow = PolicyDocument::from_yaml("policies:\n  - name: everything\n    always: {}\n").unwrap();
    e.set_shadow(Some(ShadowPolicy {
        revision: 4,
        engine: PolicyEngine::compile(&shadow).unwrap(),
    }));
    // Trace 1 has an error (kept by both), traces 2 and 3 do not (shadow-only keeps).
    e.on_record(0, 0, None, record(1, 1, None, true), t0);
    e.on_record(0, 1, None, record(2, 1, None, false), t0);
    e.on_record(0, 2, None, record(3, 1, None, false), t0);
    tick_to(&mut e, t0, t0 + Duration::from_secs(3));
    let (jobs, decs) = drain(&mut e);
    assert_eq!(jobs.len(), 1, "the live policy alone decides what is exported");
    assert_eq!(decs.len(), 2);
    let t = e.shadow_tally().unwrap().clone();
    assert_eq!(
        (t.revision, t.traces, t.shadow_kept, t.live_kept, t.both_kept),
        (4, 3, 3, 1, 1)
    );
    assert_eq!(t.by_policy.get("everything"), Some(&3));
    // A new shadow starts from zero; removing it stops the tally.
    e.set_shadow(Some(ShadowPolicy {
        revision: 5,
        engine: PolicyEngine::compile(&shadow).unwrap(),
    }));
    assert_eq!(e.shadow_tally().unwrap().traces, 0);
    e.set_shadow(None);
    assert!(e.shadow_tally().is_none());
}

#[test]
fn live_settings_override_and_restore_the_configured_timing() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    e.set_live_settings(&LiveSettings {
        send_delay: Some(Duration::from_millis(200)),
        soft_limit_bytes: Some(1 << 25),
        ..Default::default()
    });
    assert_eq!(e.settings().send_delay, Duration::from_millis(200));
    assert_eq!(e.settings().soft_limit_bytes, 1 << 25);
    assert_eq!(
        e.settings().decision_wait,
        Duration::from_secs(30),
        "unset keys keep the configured value"
    );
    e.on_record(0, 0, None, record(1, 1, None, true), t0);
    tick_to(&mut e, t0, t0 + Duration::from_millis(500));
    let (jobs, _) = drain(&mut e);
    assert_eq!(jobs.len(), 1, "decided 200 ms after the root, not 2 s");
    e.set_live_settings(&LiveSettings::default());
    assert_eq!(e.settings().send_delay, Duration::from_secs(2));
    assert_eq!(e.settings().soft_limit_bytes, 1 << 30);
}

#[test]
fn cluster_rate_limits_follow_the_partitions_owned() {
    let (mut e, t0) = engine(
        "policies:\n  - name: rl\n    rate_limiting: { traces_per_second: 100 }\n",
        1 << 30,
        1 << 30,
    );
    assert_eq!(e.budget_share(), 1.0, "unknown partition count: the whole budget");
    e.set_total_partitions(4);
    e.assign(0);
    assert_eq!(e.budget_share(), 0.25);
    e.assign(1);
    assert_eq!(e.budget_share(), 0.5);
    e.revoke(1);
    assert_eq!(e.budget_share(), 0.25);
    // A new policy version gets the share too: 25 of the 100 traces per second (the bucket
    // starts full with one second of budget).
    let doc =
        PolicyDocument::from_yaml("policies:\n  - name: rl\n    rate_limiting: { traces_per_second: 100 }\n").unwrap();
    e.set_policy(ActivePolicy {
        version: 2,
        seed: 1,
        engine: PolicyEngine::compile(&doc).unwrap(),
    });
    for i in 0..60u8 {
        e.on_record(0, i64::from(i), None, record(i, 1, None, false), t0);
    }
    tick_to(&mut e, t0, t0 + Duration::from_secs(3));
    let (jobs, _) = drain(&mut e);
    assert_eq!(jobs.len(), 25);
}

/// Feeds `trace`'s record at `at` with the engine's own wall clock as its timestamp (an honest
/// producer), plus `skew_ms`.
fn honest(e: &mut Engine, offset: i64, rec: Bytes, at: Instant, skew_ms: i64) {
    let ts = e.wall_ms(at) + skew_ms;
    e.on_record(0, offset, Some(ts), rec, at);
}

#[test]
fn one_record_from_a_clock_an_hour_ahead_moves_no_deadline() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    let ms = Duration::from_millis;
    // Honest traffic; trace 1's root (the error) will arrive 3 s after its first span.
    honest(&mut e, 0, record(1, 2, Some(1), false), t0, 0);
    honest(&mut e, 1, record(2, 1, Some(9), false), t0, 0);
    honest(&mut e, 2, record(3, 1, Some(9), false), t0 + ms(10), 0);
    // Another producer, its clock an hour ahead, writes one record.
    honest(&mut e, 3, record(4, 1, Some(9), false), t0 + ms(100), 3_600_000);
    assert_eq!(e.stats.clock_skewed_records, 1, "clamped and counted");
    let mut offset = 4;
    let mut t = t0 + ms(100);
    while t < t0 + ms(3000) {
        t += ms(100);
        honest(
            &mut e,
            offset,
            record(50 + (offset % 100) as u8, 1, Some(9), false),
            t,
            0,
        );
        offset += 1;
        e.on_tick(t);
    }
    assert!(
        drain(&mut e).0.is_empty(),
        "nothing decided early: trace 1 still waits for its root"
    );
    honest(&mut e, offset, record(1, 1, None, true), t, 0);
    tick_to(&mut e, t, t + ms(2200));
    let (jobs, _) = drain(&mut e);
    assert_eq!(jobs.len(), 1, "root + send_delay: trace 1 kept");
    assert_eq!(exported_spans(&jobs[0]).len(), 2, "complete, with its erroring root");
    // And the partition keeps deciding: every trace is decided within decision_wait of real time.
    tick_to(&mut e, t + ms(2200), t0 + Duration::from_secs(34));
    assert_eq!(e.buffered_traces(), 0, "no trace left undecided");
}

#[test]
fn zero_huge_and_year_2100_timestamps_neither_rush_nor_stop_decisions() {
    const YEAR_2100_MS: i64 = 4_102_444_800_000;
    for bad in [
        Some(0),
        Some(-1),
        Some(i64::MIN),
        Some(i64::MAX),
        Some(YEAR_2100_MS),
        None,
    ] {
        let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
        e.assign(0);
        // Trace 1: an erroring child, no root: decided at decision_wait (30 s).
        e.on_record(0, 0, bad, record(1, 2, Some(1), true), t0);
        let mut t = t0;
        let mut offset = 1;
        // Records with the same timestamp keep flowing for 40 s.
        while t < t0 + Duration::from_secs(40) {
            t += Duration::from_millis(100);
            e.on_record(0, offset, bad, record(2 + (offset % 200) as u8, 1, Some(9), false), t);
            offset += 1;
            e.on_tick(t);
            let decided = !drain(&mut e).0.is_empty();
            let elapsed = t - t0;
            assert!(
                !decided || elapsed >= Duration::from_secs(30),
                "{bad:?}: decided after {elapsed:?}, before decision_wait"
            );
            if decided {
                assert!(
                    elapsed <= Duration::from_millis(31_000),
                    "{bad:?}: decided late, after {elapsed:?}"
                );
                break;
            }
            assert!(
                elapsed < Duration::from_millis(31_000),
                "{bad:?}: not decided after {elapsed:?}"
            );
        }
    }
}

#[test]
fn a_producer_an_hour_behind_does_not_rush_decisions_on_an_idle_partition() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    for i in 0..3 {
        honest(&mut e, i, record(1 + i as u8, 2, Some(1), true), t0, -3_600_000);
    }
    tick_to(&mut e, t0, t0 + Duration::from_millis(29_800));
    assert_eq!(e.buffered_traces(), 3, "not before decision_wait of real time");
    tick_to(
        &mut e,
        t0 + Duration::from_millis(29_800),
        t0 + Duration::from_millis(31_000),
    );
    assert_eq!(e.buffered_traces(), 0, "and not stopped either");
}

#[test]
fn paused_consumption_stops_the_clock_from_following_the_wall() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    for i in 0..3 {
        honest(&mut e, i, record(1 + i as u8, 2, Some(1), true), t0, 0);
    }
    e.set_paused(true, t0);
    tick_to(&mut e, t0, t0 + Duration::from_secs(60));
    assert_eq!(
        e.buffered_traces(),
        3,
        "records may be waiting while paused: nothing decided"
    );
    e.set_paused(false, t0 + Duration::from_secs(60));
    // Resumed: the backlog (produced during the pause) arrives and moves the clock.
    let t = t0 + Duration::from_millis(60_100);
    for i in 3..6 {
        let ts = e.wall_ms(t0) + 31_000;
        e.on_record(0, i, Some(ts), record(10 + i as u8, 1, Some(9), false), t);
    }
    e.on_tick(t);
    assert_eq!(e.buffered_traces(), 3, "the three traces of the backlog are buffered");
    assert_eq!(drain(&mut e).0.len(), 3, "the first three decided on record time");
}

#[test]
fn a_crawling_record_clock_is_overridden_by_the_real_time_backstop() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    let base = e.wall_ms(t0);
    // Timestamps advance 1 ms per record while records arrive every 100 ms: the record clock
    // crawls at 1% of real time and would take 50 minutes to reach decision_wait.
    let mut t = t0;
    let mut offset = 0;
    e.on_tick(t);
    while t < t0 + Duration::from_secs(62) && e.stats.kept_traces == 0 {
        let rec = if offset == 0 {
            record(1, 1, Some(200), true)
        } else {
            record(3 + (offset % 200) as u8, 1 + (offset / 200) as u8, Some(200), false)
        };
        e.on_record(0, offset, Some(base + offset), rec, t);
        offset += 1;
        t += Duration::from_millis(100);
        e.on_tick(t);
    }
    assert!(e.stats.kept_traces > 0, "decided by the backstop");
    let elapsed = t - t0;
    assert!(
        elapsed >= Duration::from_secs(60) && elapsed <= Duration::from_millis(60_300),
        "at decision_wait + max_clock_skew of running time, not {elapsed:?}"
    );
}

fn active(policy: &str, version: u64) -> ActivePolicy {
    let (doc, _) = PolicyDocument::parse(policy, None).unwrap();
    ActivePolicy {
        version,
        seed: 1,
        engine: PolicyEngine::compile(&doc).unwrap(),
    }
}

#[test]
fn a_policy_carries_decision_options_and_live_settings_override_them() {
    let (mut e, _) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    assert_eq!(e.settings().decision_wait, Duration::from_secs(30));
    // An OTel processor config: its decision_wait and (absent) wait after root become the
    // worker's timing with the policy.
    let otel = "decision_wait: 5s\nnum_traces: 3\ndecision_cache: {sampled_cache_size: 50}\npolicies:\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n";
    e.set_policy(active(otel, 2));
    assert_eq!(e.settings().decision_wait, Duration::from_secs(5));
    assert_eq!(
        e.settings().send_delay,
        Duration::from_secs(5),
        "no early decision on the root"
    );
    assert_eq!(e.settings().max_traces, 3);
    assert_eq!(e.settings().cache_max, 50);
    // Live settings win over the policy's options; unset ones fall back to them.
    e.set_live_settings(&LiveSettings {
        decision_wait: Some(Duration::from_secs(9)),
        ..Default::default()
    });
    assert_eq!(e.settings().decision_wait, Duration::from_secs(9));
    assert_eq!(e.settings().send_delay, Duration::from_secs(5));
    e.set_live_settings(&LiveSettings::default());
    assert_eq!(e.settings().decision_wait, Duration::from_secs(5));
    // A policy without options restores the worker's configuration.
    e.set_policy(active(ERRORS_ONLY, 3));
    assert_eq!(e.settings().decision_wait, Duration::from_secs(30));
    assert_eq!(e.settings().send_delay, Duration::from_secs(2));
    assert_eq!(e.settings().max_traces, usize::MAX);
    assert_eq!(e.settings().cache_max, 10_000);
}

#[test]
fn num_traces_decides_the_oldest_early_instead_of_evicting_it() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.set_policy(active(
        "num_traces: 2\npolicies:\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n",
        2,
    ));
    e.assign(0);
    e.on_record(0, 1, None, record(1, 1, Some(9), true), t0);
    e.on_record(0, 2, None, record(2, 1, Some(9), false), t0);
    assert_eq!(e.buffered_traces(), 2);
    e.on_record(0, 3, None, record(3, 1, Some(9), false), t0);
    assert_eq!(e.buffered_traces(), 2, "the third trace makes the oldest decided");
    let (jobs, _) = drain(&mut e);
    assert_eq!(
        jobs.len(),
        1,
        "the oldest (an error trace) is decided, and kept, not evicted"
    );
    assert_eq!(exported_spans(&jobs[0])[0].trace_id, vec![1; 16]);
}

#[test]
fn maximum_trace_size_bytes_drops_an_oversized_trace_as_upstream() {
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    let one = record(1, 1, Some(9), true).len();
    let doc = format!(
        "maximum_trace_size_bytes: {}\npolicies:\n  - {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}\n",
        one + one / 2
    );
    e.set_policy(active(&doc, 2));
    e.assign(0);
    e.on_record(0, 1, None, record(1, 1, Some(9), true), t0);
    assert_eq!(e.buffered_traces(), 1);
    e.on_record(0, 2, None, record(1, 2, Some(9), true), t0);
    assert_eq!(e.buffered_traces(), 0, "over the size limit: decided at once");
    let (jobs, decs) = drain(&mut e);
    assert!(
        jobs.is_empty(),
        "an error trace over maximum_trace_size_bytes is not sampled"
    );
    assert_eq!(decs.len(), 1);
    assert!(decs[0].kept.is_none());
    // Without `oversized: drop` the same trace is decided by the policy and kept.
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.set_policy(active(
        &format!(
            "decision:\n  max_trace_bytes: {}\npolicies:\n  - name: errors\n    status_code: {{codes: [ERROR]}}\n",
            one + one / 2
        ),
        2,
    ));
    e.assign(0);
    e.on_record(0, 1, None, record(1, 1, Some(9), true), t0);
    e.on_record(0, 2, None, record(1, 2, Some(9), true), t0);
    let (jobs, _) = drain(&mut e);
    assert_eq!(jobs.len(), 1);
}

#[test]
fn a_keep_by_another_hash_carries_its_adjusted_count_but_no_ot_threshold() {
    // The collector's FNV probabilistic rule: not a consistent threshold, so no `th`/`rv`.
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.set_policy(active(
        "- {name: p, type: probabilistic, probabilistic: {sampling_percentage: 90}}\n",
        2,
    ));
    e.assign(0);
    for t in 1..=8u8 {
        e.on_record(0, i64::from(t), None, record(t, 1, None, false), t0);
    }
    tick_to(&mut e, t0, t0 + Duration::from_secs(3));
    let (jobs, _) = drain(&mut e);
    assert!(!jobs.is_empty(), "90% of 8 traces: some kept");
    for j in &jobs {
        for s in exported_spans(j) {
            assert!(!s.trace_state.contains("ot="), "{}", s.trace_state);
            let count = s
                .attributes
                .iter()
                .find(|a| a.key == crate::annotate::ATTR_ADJUSTED_COUNT);
            assert!(count.is_some(), "{:?}", s.attributes);
        }
    }
    // A consistent rule still writes them.
    let (mut e, t0) = engine(
        "policies:\n  - name: half\n    probabilistic: {percentage: 50}\n",
        1 << 30,
        1 << 30,
    );
    e.assign(0);
    for t in 1..=16u8 {
        e.on_record(0, i64::from(t), None, record(t, 1, None, false), t0);
    }
    tick_to(&mut e, t0, t0 + Duration::from_secs(3));
    let (jobs, _) = drain(&mut e);
    assert!(!jobs.is_empty());
    for j in &jobs {
        for s in exported_spans(j) {
            assert!(s.trace_state.starts_with("ot=th:8;rv:"), "{}", s.trace_state);
        }
    }
}

/// `record` for any of 2^32 trace IDs.
fn record_n(trace: u32, span: u8, parent: Option<u8>) -> Bytes {
    let mut req = ExportTraceServiceRequest::decode(record(1, span, parent, false).as_ref()).unwrap();
    let mut id = [7u8; 16];
    id[..4].copy_from_slice(&trace.to_be_bytes());
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = id.to_vec();
    req.encode_to_vec().into()
}

#[test]
fn stale_timer_entries_are_compacted_away() {
    // Every trace gets a first span, then its root (an earlier deadline: a second timer and
    // backstop entry), and is decided at root + send_delay, long before its first deadline: the
    // heaps would keep two stale entries per decided trace for decision_wait (and the backstop's
    // longer wait).
    let (mut e, t0) = engine(ERRORS_ONLY, 1 << 30, 1 << 30);
    e.assign(0);
    let mut offset = 0;
    let mut t = t0;
    let mut id = 0u32;
    for round in 0..24 {
        for _ in 0..200 {
            id += 1;
            e.on_record(0, offset, None, record_n(id, 2, Some(1)), t);
            e.on_record(0, offset + 1, None, record_n(id, 1, None), t);
            offset += 2;
        }
        tick_to(&mut e, t, t + Duration::from_millis(2500));
        t += Duration::from_millis(2500);
        drain(&mut e);
        let part = &e.partitions[&0];
        let most = timer_limit(part.traces.len()) + 2 * 200;
        assert!(
            part.timers.len() <= most,
            "round {round}: {} timer entries, {} traces",
            part.timers.len(),
            part.traces.len()
        );
        assert!(
            part.backstops.len() <= most,
            "round {round}: {} backstops",
            part.backstops.len()
        );
    }
    assert_eq!(e.buffered_traces(), 0);
    assert_eq!(e.stats.dropped_traces, u64::from(id));
}

// ---- Index mode (memory.mode: index / hybrid) ----

fn engine_in(mode: BufferMode, budget: usize, policy: &str) -> (Engine, Instant) {
    let (mut e, t0) = engine(policy, 1 << 30, 1 << 30);
    e.configured.buffer_mode = mode;
    e.configured.span_bytes_budget = budget;
    e.cfg.buffer_mode = mode;
    e.cfg.span_bytes_budget = budget;
    (e, t0)
}

/// A span of trace `trace` (many traces: a u32), with an error and a service name of its own.
fn workload_record(trace: u32, span: u8, parent: Option<u8>, error: bool, service: &str) -> Bytes {
    let mut req = ExportTraceServiceRequest::decode(record(1, span, parent, error).as_ref()).unwrap();
    let mut id = [7u8; 16];
    id[..4].copy_from_slice(&trace.to_be_bytes());
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = id.to_vec();
    req.resource_spans[0].resource = Some(opentelemetry_proto::tonic::resource::v1::Resource {
        attributes: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
            key: "service.name".into(),
            key_strindex: 0,
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                    service.into(),
                )),
            }),
        }],
        ..Default::default()
    });
    req.encode_to_vec().into()
}

/// Interleaved records of `traces` traces over two partitions (deterministic), each with the
/// offset it has in its partition; some traces carry an error, some a retried record.
fn workload(traces: u32) -> Vec<(i32, i64, Bytes)> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut per_trace: Vec<Vec<Bytes>> = (0..traces)
        .map(|t| {
            let spans = 1 + rnd(6) as u8;
            let error = rnd(10) == 0;
            let service = ["checkout", "cart", "auth"][rnd(3) as usize];
            let mut recs: Vec<Bytes> = (1..spans)
                .map(|s| workload_record(t, s + 1, Some(1), error && s == 1, service))
                .collect();
            if rnd(8) == 0 && !recs.is_empty() {
                recs.push(recs[0].clone()); // a client's retry
            }
            recs.push(workload_record(t, 1, None, false, service)); // root last
            recs
        })
        .collect();
    let mut out = Vec::new();
    let mut next = [0i64; 2];
    let mut open: Vec<u32> = (0..traces).collect();
    while !open.is_empty() {
        let i = rnd(open.len() as u64) as usize;
        let t = open[i];
        let p = (t % 2) as i32;
        let rec = per_trace[t as usize].remove(0);
        out.push((p, next[p as usize], rec));
        next[p as usize] += 1;
        if per_trace[t as usize].is_empty() {
            open.swap_remove(i);
        }
    }
    out
}

/// Runs `records` through `e` (ticking as they go, then 40 s more), answering read-backs from the
/// records themselves and acknowledging exports. Returns the exported spans (trace, span id) and
/// the decision records.
type Exported = Vec<([u8; 16], Vec<u8>)>;

fn run_workload(e: &mut Engine, t0: Instant, records: &[(i32, i64, Bytes)]) -> (Exported, Vec<DecisionRecord>) {
    let log: HashMap<(i32, i64), Bytes> = records.iter().map(|(p, o, r)| ((*p, *o), r.clone())).collect();
    let mut exported = Vec::new();
    let mut decisions = Vec::new();
    let mut settle = |e: &mut Engine| loop {
        let mut any = false;
        while let Some(o) = e.pop_output() {
            any = true;
            match o {
                Output::Export(j) => {
                    for s in exported_spans(&j) {
                        exported.push((j.trace_id, s.span_id.clone()));
                    }
                    e.on_export_done(j.id);
                }
                Output::Decision(d) => decisions.push(d),
                Output::ReadBack(j) => {
                    let recs: Vec<Bytes> = j.offsets.iter().map(|o| log[&(j.partition, *o)].clone()).collect();
                    e.on_read_back(j.id, &recs, t0);
                }
            }
        }
        if !any {
            break;
        }
    };
    e.assign(0);
    e.assign(1);
    let mut t = t0;
    for (i, (p, o, r)) in records.iter().enumerate() {
        if i % 20 == 0 {
            t += Duration::from_millis(100);
            e.on_tick(t);
        }
        e.on_record(*p, *o, None, r.clone(), t);
        settle(e);
    }
    tick_to(e, t, t + Duration::from_secs(40));
    settle(e);
    exported.sort();
    decisions.sort_by_key(|d| (d.partition, d.trace_id));
    (exported, decisions)
}

/// The read-backs the engine asks for (other outputs are dropped).
fn read_backs(e: &mut Engine) -> Vec<ReadBackJob> {
    std::iter::from_fn(|| e.pop_output())
        .filter_map(|o| match o {
            Output::ReadBack(j) => Some(j),
            _ => None,
        })
        .collect()
}

const MIXED_POLICY: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n  - name: checkout\n    string_attribute: { key: service.name, values: [checkout] }\n  - name: some\n    probabilistic: { percentage: 20 }\n";

/// Index mode decides as memory mode does, with a policy of trace-level rules (collapsed
/// summaries: an entry per distinct status/service/attributes, not per span) and with one that
/// reads span names (a summary entry per span).
#[test]
fn index_mode_keeps_and_exports_exactly_what_memory_mode_does() {
    let detailed = format!(
        "{MIXED_POLICY}  - name: named\n    always: {{}}\n    match: {{ span_name: nothing-is-called-this }}\n"
    );
    for (policy, trace_level) in [(MIXED_POLICY, true), (detailed.as_str(), false)] {
        let doc = tailsift_policy::PolicyDocument::from_yaml(policy).unwrap();
        let req = PolicyEngine::compile(&doc).unwrap().requirements().clone();
        assert_eq!(req.trace_level, trace_level, "{policy}");
        index_mode_decides_as_memory_mode(policy);
    }
}

fn index_mode_decides_as_memory_mode(policy: &str) {
    let records = workload(400);
    let (mut mem, t0) = engine_in(BufferMode::Memory, usize::MAX, policy);
    let (want, want_decisions) = run_workload(&mut mem, t0, &records);
    let (mut ix, t0) = engine_in(BufferMode::Index, 0, policy);
    let (got, got_decisions) = run_workload(&mut ix, t0, &records);
    assert!(
        mem.stats.kept_traces > 50 && mem.stats.dropped_traces > 50,
        "{:?}",
        mem.stats
    );
    assert!(mem.stats.duplicate_records > 0, "the workload has retries");
    assert_eq!(got.len(), want.len(), "spans exported");
    assert_eq!(got, want, "the same spans of the same traces");
    let strip = |d: &[DecisionRecord]| {
        d.iter()
            .map(|d| (d.trace_id, d.kept.is_some(), d.exported_through))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&got_decisions), strip(&want_decisions));
    assert_eq!(
        ix.stats.duplicate_records, mem.stats.duplicate_records,
        "retries found by fingerprint"
    );
    assert_eq!(ix.buffered_traces(), 0);
    assert_eq!((ix.buffered_bytes(), ix.span_bytes(), ix.index_traces()), (0, 0, 0));
    assert_eq!(ix.committable(), mem.committable(), "everything committed in both");
}

#[test]
fn hybrid_mode_switches_traces_to_an_index_past_the_budget_and_decides_the_same() {
    let records = workload(400);
    let (mut mem, t0) = engine_in(BufferMode::Memory, usize::MAX, MIXED_POLICY);
    let (want, _) = run_workload(&mut mem, t0, &records);
    let budget = 4_000;
    let (mut hy, t0) = engine_in(BufferMode::Hybrid, budget, MIXED_POLICY);
    hy.assign(0);
    hy.assign(1);
    let mut most_span_bytes = 0;
    let mut indexed = 0;
    for (p, o, r) in &records[..600] {
        hy.on_record(*p, *o, None, r.clone(), t0);
        most_span_bytes = most_span_bytes.max(hy.span_bytes());
        indexed = indexed.max(hy.index_traces());
    }
    assert!(indexed > 10, "traces switched to an index: {indexed}");
    assert!(
        most_span_bytes <= budget + 200,
        "span bytes stay within the budget (plus one record): {most_span_bytes}"
    );
    assert!(hy.buffered_bytes() > hy.span_bytes(), "the index is counted too");
    let (mut hy, t0) = engine_in(BufferMode::Hybrid, budget, MIXED_POLICY);
    let (got, _) = run_workload(&mut hy, t0, &records);
    assert_eq!(got, want);
}

#[test]
fn a_kept_index_trace_holds_the_commit_until_read_back_and_exported() {
    let (mut e, t0) = engine_in(BufferMode::Index, 0, ERRORS_ONLY);
    e.assign(0);
    e.on_record(0, 3, None, record(1, 2, Some(1), true), t0);
    e.on_record(0, 4, None, record(2, 1, None, false), t0);
    e.on_record(0, 5, None, record(1, 1, None, false), t0);
    assert_eq!(e.index_traces(), 2);
    assert_eq!(e.span_bytes(), 0, "no span bytes held");
    tick_to(&mut e, t0, t0 + Duration::from_secs(3));
    let jobs: Vec<ReadBackJob> = read_backs(&mut e);
    assert_eq!(jobs.len(), 1, "only the kept trace is read back");
    assert_eq!(jobs[0].offsets, vec![3, 5]);
    assert_eq!(e.committable(), vec![(0, 3)], "pinned while reading");
    assert_eq!(e.unacked_exports(Some(0)), 1, "a handover waits for it");
    e.on_read_back(
        jobs[0].id,
        &[record(1, 2, Some(1), true), record(1, 1, None, false)],
        t0,
    );
    let (exports, _) = drain(&mut e);
    assert_eq!(exports.len(), 1);
    assert_eq!(exported_spans(&exports[0]).len(), 2);
    assert_eq!(e.committable(), vec![(0, 3)], "pinned until acknowledged");
    e.on_export_done(exports[0].id);
    assert_eq!(e.committable(), vec![(0, 6)]);
    let (_, decisions) = drain(&mut e);
    assert!(decisions.iter().any(|d| d.kept.is_some() && d.exported_through == 5));
}

/// Once its root came an index is frozen into one allocation; a record arriving after that
/// (a late span, a retry) thaws it, and nothing is lost either way.
#[test]
fn an_index_is_frozen_once_its_root_came_and_thawed_by_a_later_record() {
    let (mut e, t0) = engine_in(BufferMode::Index, 0, ERRORS_ONLY);
    e.assign(0);
    e.on_record(0, 10, None, record(1, 2, Some(1), false), t0);
    let open = e.buffered_bytes();
    assert!(open >= std::mem::size_of::<IndexBody>(), "an open index: {open} B");
    e.on_record(0, 11, None, record(1, 1, None, false), t0);
    let frozen = e.buffered_bytes();
    assert!(
        frozen < open,
        "root came: frozen to {frozen} B (open, one record: {open} B)"
    );
    // A late span (an error) and a retry of the root's record, after the freeze.
    e.on_record(0, 12, None, record(1, 3, Some(1), true), t0);
    e.on_record(0, 13, None, record(1, 1, None, false), t0);
    assert_eq!(e.stats.duplicate_records, 1, "the retry is found in the frozen index");
    assert!(
        e.buffered_bytes() < open + frozen,
        "frozen again: {} B",
        e.buffered_bytes()
    );
    assert_eq!(e.index_traces(), 1);
    tick_to(&mut e, t0, t0 + Duration::from_secs(3));
    let jobs = read_backs(&mut e);
    assert_eq!(jobs.len(), 1, "kept: the late span was an error");
    assert_eq!(jobs[0].offsets, vec![10, 11, 12]);
    assert_eq!((e.index_traces(), e.buffered_bytes()), (0, 0));
}

/// A large index stays open after its root came: records still coming for it do not each thaw
/// and freeze the whole index.
#[test]
fn a_large_index_is_not_frozen() {
    // Span names are read (a per-span summary), and each is long and distinct.
    let policy = "policies:\n  - name: n\n    always: {}\n    match: { span_name: x }\n";
    let (mut e, t0) = engine_in(BufferMode::Index, 0, policy);
    e.assign(0);
    let named = |span: u8, parent: Option<u8>| -> Bytes {
        let mut req = ExportTraceServiceRequest::decode(record(1, span, parent, false).as_ref()).unwrap();
        req.resource_spans[0].scope_spans[0].spans[0].name = format!("{span:03}-{}", "n".repeat(300));
        req.encode_to_vec().into()
    };
    e.on_record(0, 0, None, named(1, None), t0);
    let frozen = |e: &Engine| matches!(e.partitions[&0].traces[&[1u8; 16]].body, Body::Frozen(_));
    assert!(frozen(&e), "a small index is frozen once its root came");
    let mut span = 2u8;
    while e.buffered_bytes() <= MAX_FROZEN_BYTES {
        assert!(span < 90, "the index never grew past {MAX_FROZEN_BYTES} B");
        e.on_record(0, i64::from(span), None, named(span, Some(1)), t0);
        span += 1;
    }
    assert!(!frozen(&e), "over {} B: left open", e.buffered_bytes());
    assert_eq!(e.index_traces(), 1);
}

#[test]
fn a_read_back_answered_after_a_revoke_is_ignored() {
    let (mut e, t0) = engine_in(BufferMode::Index, 0, ERRORS_ONLY);
    e.assign(0);
    e.on_record(0, 0, None, record(1, 1, None, true), t0);
    tick_to(&mut e, t0, t0 + Duration::from_secs(3));
    let job = read_backs(&mut e).remove(0);
    e.revoke(0);
    assert_eq!(e.unacked_exports(None), 0);
    e.on_read_back(job.id, &[record(1, 1, None, true)], t0);
    assert!(e.pop_output().is_none());
}

#[test]
fn a_policy_change_while_traces_are_indexed_decides_them_on_their_records() {
    // The first policy reads no attribute; the second keeps by service.name = checkout: the
    // summaries made under the first one may lack it, so those traces are read back and decided
    // on their records (as memory mode decides them).
    let first = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n";
    let second =
        "version: 2\npolicies:\n  - name: checkout\n    string_attribute: { key: http.route, values: [/pay] }\n";
    let rec = |trace: u8, route: &str| {
        let mut req = ExportTraceServiceRequest::decode(record(trace, 1, None, false).as_ref()).unwrap();
        req.resource_spans[0].scope_spans[0].spans[0].attributes =
            vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                key: "http.route".into(),
                key_strindex: 0,
                value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        route.into(),
                    )),
                }),
            }];
        Bytes::from(req.encode_to_vec())
    };
    let (mut e, t0) = engine_in(BufferMode::Index, 0, first);
    e.assign(0);
    e.on_record(0, 0, None, rec(1, "/pay"), t0);
    e.on_record(0, 1, None, rec(2, "/browse"), t0);
    e.set_policy(active(second, 2));
    tick_to(&mut e, t0, t0 + Duration::from_secs(3));
    let jobs: Vec<ReadBackJob> = read_backs(&mut e);
    assert_eq!(jobs.len(), 2, "both read back to be decided");
    for j in &jobs {
        let r = if j.trace_id == [1; 16] {
            rec(1, "/pay")
        } else {
            rec(2, "/browse")
        };
        e.on_read_back(j.id, &[r], t0);
    }
    let (exports, decisions) = drain(&mut e);
    assert_eq!(exports.iter().map(|j| j.trace_id).collect::<Vec<_>>(), vec![[1; 16]]);
    assert!(decisions.iter().any(|d| d.trace_id == [2; 16] && d.kept.is_none()));
    // A trace that arrives after the change is decided on its summary.
    e.on_record(0, 2, None, rec(3, "/pay"), t0 + Duration::from_secs(3));
    tick_to(&mut e, t0 + Duration::from_secs(3), t0 + Duration::from_secs(6));
    let read: Vec<ReadBackJob> = read_backs(&mut e);
    assert_eq!(read.len(), 1, "kept: read back to be exported");
    assert_eq!(e.stats.kept_traces, 2);
}

/// Summaries serve the live policy and the shadow: collapsed only when both read trace-level
/// facts alone.
#[test]
fn a_shadow_that_reads_span_detail_keeps_summaries_detailed() {
    let req = |y: &str| {
        PolicyEngine::compile(&PolicyDocument::from_yaml(y).unwrap())
            .unwrap()
            .requirements()
            .clone()
    };
    let live = req(MIXED_POLICY);
    let shadow = req("policies:\n  - name: n\n    always: {}\n    match: { span_name: x }\n");
    assert!(live.trace_level && !shadow.trace_level);
    assert!(union_requirements(&live, None).trace_level);
    assert!(union_requirements(&live, Some(&live)).trace_level);
    assert!(!union_requirements(&live, Some(&shadow)).trace_level);
    assert!(!union_requirements(&shadow, Some(&live)).trace_level);
}

/// A trace's bookkeeping is one map entry per trace whatever it holds: it stays this small.
#[test]
fn a_trace_costs_64_bytes_of_bookkeeping() {
    assert_eq!(std::mem::size_of::<Body>(), 16);
    assert_eq!(std::mem::size_of::<TraceBuf>(), 64);
}

/// Frozen indexes are packed into the partition's arena; when a few long-lived ones keep
/// mostly freed chunks, the partition copies them into a fresh arena, bytes unchanged.
#[test]
fn a_sparse_arena_is_compacted_and_its_indexes_survive() {
    let (mut e, t0) = engine_in(BufferMode::Index, 0, ERRORS_ONLY);
    e.assign(0);
    let id = |i: u32| -> TraceId {
        let mut t = [0xAB; 16];
        t[..4].copy_from_slice(&i.to_be_bytes());
        t
    };
    let rec = |i: u32| -> Bytes {
        let mut req = ExportTraceServiceRequest::decode(record(1, 1, None, i.is_multiple_of(7)).as_ref()).unwrap();
        req.resource_spans[0].scope_spans[0].spans[0].trace_id = id(i).to_vec();
        req.encode_to_vec().into()
    };
    let n = 4000u32;
    for i in 0..n {
        e.on_record(0, i64::from(i), None, rec(i), t0);
    }
    let frozen = |e: &Engine| {
        e.partitions[&0]
            .traces
            .values()
            .filter(|t| matches!(t.body, Body::Frozen(_)))
            .count()
    };
    assert_eq!(frozen(&e), n as usize, "every trace's root came");
    let live = e.buffered_bytes();
    let reserved = e.partitions[&0].arena.reserved();
    assert!(
        reserved >= live && reserved <= live + 2 * arena::MAX_CHUNK,
        "{reserved} B of chunks for {live} B of indexes"
    );
    // Every trace but one in a hundred is decided (thawed out of the arena).
    for i in (0..n).filter(|i| !i.is_multiple_of(100)) {
        e.decide(0, id(i), Trigger::Root, t0);
    }
    let _ = read_backs(&mut e);
    let part = e.partitions.get_mut(&0).unwrap();
    assert!(part.arena.wasteful());
    let before: Vec<(TraceId, Vec<u8>)> = part
        .traces
        .iter()
        .map(|(k, t)| match t.body {
            Body::Frozen(r) => (*k, part.arena.get(r).to_vec()),
            _ => unreachable!(),
        })
        .collect();
    part.compact_arena();
    assert!(!part.arena.wasteful());
    assert!(part.arena.reserved() <= arena::MAX_CHUNK, "{} B", part.arena.reserved());
    for (k, bytes) in before {
        let Body::Frozen(r) = part.traces[&k].body else {
            unreachable!()
        };
        assert_eq!(part.arena.get(r), bytes.as_slice());
    }
    // The survivors are decided as usual: the errors among them are kept and read back.
    tick_to(&mut e, t0, t0 + Duration::from_secs(3));
    let jobs = read_backs(&mut e);
    let errors = (0..n).filter(|i| i.is_multiple_of(100) && i.is_multiple_of(7)).count();
    assert_eq!(jobs.len(), errors);
    assert_eq!((e.buffered_traces, e.buffered_bytes()), (0, 0));
}

/// A trace whose counts reach their 32-bit limit is decided then, not wrapped.
#[test]
fn a_trace_at_the_limit_of_its_counts_is_decided() {
    let (mut e, t0) = engine_in(BufferMode::Index, 0, ERRORS_ONLY);
    e.assign(0);
    e.on_record(0, 5, None, record(1, 2, Some(1), false), t0);
    assert_eq!(e.buffered_traces, 1);
    // Its next record is 2^32 offsets later: the offset delta cannot be held.
    e.on_record(0, 5 + i64::from(u32::MAX) + 10, None, record(1, 3, Some(1), false), t0);
    assert_eq!(e.buffered_traces, 0, "decided at once");
    assert_eq!(e.stats.kept_traces + e.stats.dropped_traces, 1);
    let (_, decisions) = drain(&mut e);
    assert_eq!(
        decisions.iter().map(|d| d.exported_through).collect::<Vec<_>>(),
        vec![5 + i64::from(u32::MAX) + 10],
        "the decision names the trace's real last offset"
    );
}
