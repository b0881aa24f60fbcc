use super::*;

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "{actual} != {expected}"
    );
}

fn at(spans_per_second: f64) -> Plan {
    plan(&Inputs {
        spans_per_second,
        ..Inputs::default()
    })
    .unwrap()
}

/// 1,000,000 spans/s with every default: B 350, N 20, W 30 s, T = min(30, 10) = 10 s, k 0.1,
/// RF 3, H 24, r_i 343,000, r_s 549,000, u 0.6, m 1.23, c 0.5, bw 100 MB/s, 2 cores per ingest
/// node, 4 per sampler, M 8 GiB = 8,589,934,592 B.
#[test]
fn one_million_spans_per_second() {
    let p = at(1e6);
    assert_eq!(p.buffered_seconds, 10.0);
    // 1e6 / 20 = 50,000 traces/s; × 10 s = 500,000 in flight.
    close(p.value("traffic.traces_per_second"), 50_000.0);
    close(p.value("traffic.traces_in_flight"), 500_000.0);
    // 1e6 / (343,000 × 0.6) = 1e6 / 205,800 = 4.859 cores; ceil(4.859 / 2) = 3 nodes.
    close(p.value("ingest.cores"), 1e6 / 205_800.0);
    assert_eq!(p.value("ingest.nodes"), 3.0);
    close(p.value("ingest.memory_per_node"), 1_073_741_824.0);
    // 1e6 / (549,000 × 0.6) = 1e6 / 329,400 = 3.036 cores; ceil(3.036 / 4) = 1 for the CPU;
    // memory: ceil(4 × 3.5e9 / 8,589,934,592) = ceil(1.63) = 2; at least 2 -> 2 samplers.
    close(p.value("sampler.cores"), 1e6 / 329_400.0);
    assert_eq!(p.value("sampler.count_by_cpu"), 1.0);
    assert_eq!(p.value("sampler.count_by_memory"), 2.0);
    assert_eq!(p.value("sampler.count"), 2.0);
    close(p.value("sampler.cores_each"), 1e6 / 329_400.0 / 2.0);
    // 3 × 2 = 6 -> 12.
    assert_eq!(p.value("partitions"), 12.0);
    // 1e6 × 350 × 10 = 3.5e9 buffered; / 2 = 1.75e9 each; RSS 1.75e9 × 1.23 = 2.1525e9;
    // hard 3.5e9, soft 2.625e9, container 7e9 (14e9 for both); every trace at W:
    // 1e6 × 350 × 30 / 2 = 5.25e9, above the hard limit (a note says so).
    close(p.value("memory.buffered_total"), 3.5e9);
    close(p.value("memory.buffered_per_sampler"), 1.75e9);
    close(p.value("memory.buffer_rss_per_sampler"), 2.1525e9);
    close(p.value("memory.hard_limit"), 3.5e9);
    close(p.value("memory.soft_limit"), 2.625e9);
    close(p.value("memory.container"), 7e9);
    close(p.value("memory.container_total"), 14e9);
    close(p.value("memory.worst_case_per_sampler"), 5.25e9);
    // Kafka: 1e6 × 350 = 350 MB/s, × 0.5 = 175 MB/s produced and consumed, × 3 = 525 MB/s
    // written, 350 MB/s replicated; brokers max(3, ceil(525e6 / 60e6 = 8.75)) = 9;
    // storage 525e6 × 86,400 = 45.36 TB, 5.04 TB per broker.
    close(p.value("kafka.produce_uncompressed"), 350e6);
    close(p.value("kafka.produce"), 175e6);
    close(p.value("kafka.write"), 525e6);
    close(p.value("kafka.replication_read"), 350e6);
    close(p.value("kafka.consume"), 175e6);
    assert_eq!(p.value("kafka.brokers"), 9.0);
    close(p.value("kafka.retention_storage"), 45.36e12);
    close(p.value("kafka.storage_per_broker"), 5.04e12);
    // 10% kept: 100,000 spans/s, 35 MB/s.
    close(p.value("export.kept_spans"), 100_000.0);
    close(p.value("export.bandwidth"), 35e6);
    assert_eq!(p.value("coordinators"), 3.0);
    // 25,000 traces/s per sampler × 300 s = 7.5M decisions > cache_max.
    assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    assert!(p.notes[0].contains("stress relief"), "{}", p.notes[0]);
    assert!(p.notes[1].contains("7,500,000"), "{}", p.notes[1]);
    assert!(p.notes[1].contains("8,000,000"), "{}", p.notes[1]);
}

/// 5,000,000 spans/s, the other defaults as above.
#[test]
fn five_million_spans_per_second() {
    let p = at(5e6);
    close(p.value("traffic.traces_per_second"), 250_000.0);
    close(p.value("traffic.traces_in_flight"), 2_500_000.0);
    // 5e6 / 205,800 = 24.30 cores; ceil(12.15) = 13 nodes.
    close(p.value("ingest.cores"), 5e6 / 205_800.0);
    assert_eq!(p.value("ingest.nodes"), 13.0);
    // 5e6 / 329,400 = 15.18 cores: ceil(3.79) = 4 for the CPU; memory: 5e6 × 350 × 10 =
    // 17.5e9 buffered, ceil(4 × 17.5e9 / 8,589,934,592) = ceil(8.15) = 9: memory decides.
    close(p.value("sampler.cores"), 5e6 / 329_400.0);
    assert_eq!(p.value("sampler.count_by_cpu"), 4.0);
    assert_eq!(p.value("sampler.count_by_memory"), 9.0);
    assert_eq!(p.value("sampler.count"), 9.0);
    // 15.18 / 9 = 1.69 of the 4 cores each: memory, not CPU, sets the count here.
    close(p.value("sampler.cores_each"), 5e6 / 329_400.0 / 9.0);
    // 3 × 9 = 27 -> 36.
    assert_eq!(p.value("partitions"), 36.0);
    // 17.5e9 / 9 = 1.944e9 each; hard 3.889e9; container 7.778e9 (under 8 GiB).
    close(p.value("memory.buffered_total"), 17.5e9);
    close(p.value("memory.buffered_per_sampler"), 17.5e9 / 9.0);
    close(p.value("memory.hard_limit"), 35e9 / 9.0);
    close(p.value("memory.container"), 70e9 / 9.0);
    assert!(p.value("memory.container") <= 8.0 * 1024f64.powi(3));
    close(p.value("memory.container_total"), 70e9);
    // 1.75 GB/s uncompressed, 875 MB/s compressed, 2.625 GB/s written; ceil(2.625e9 / 60e6 =
    // 43.75) = 44 brokers; 2.625e9 × 86,400 = 226.8 TB.
    close(p.value("kafka.produce_uncompressed"), 1.75e9);
    close(p.value("kafka.produce"), 875e6);
    close(p.value("kafka.write"), 2.625e9);
    assert_eq!(p.value("kafka.brokers"), 44.0);
    close(p.value("kafka.retention_storage"), 226.8e12);
    close(p.value("export.kept_spans"), 500_000.0);
    close(p.value("export.bandwidth"), 175e6);
}

#[test]
fn small_rates_get_the_minimums() {
    let p = at(1000.0);
    assert_eq!(p.value("ingest.nodes"), 2.0);
    assert_eq!(p.value("sampler.count"), 2.0);
    assert_eq!(p.value("partitions"), 12.0);
    assert_eq!(p.value("kafka.brokers"), 3.0);
    // 500 traces/s over 2 samplers × 300 s = 75,000 decisions: no note about the decision cache.
    assert!(p.notes.iter().all(|n| !n.contains("cache_max")), "{:?}", p.notes);
}

#[test]
fn every_figure_shows_its_formula_and_working() {
    let p = at(1e6);
    for f in &p.figures {
        assert!(!f.formula.is_empty() && !f.working.is_empty(), "{}", f.key);
        assert!(f.value.is_finite() && f.value >= 0.0, "{}: {}", f.key, f.value);
    }
    let table = render_table(&p);
    for f in &p.figures {
        assert!(table.contains(&f.formula), "{} missing from\n{table}", f.formula);
    }
    assert!(table.contains("ingest nodes"), "{table}");
}

/// The measured shape gives factors of exactly 1: the figures above are r_i and r_s unscaled.
#[test]
fn the_measured_shape_leaves_the_per_core_figures_alone() {
    let p = at(1e6);
    assert_eq!(p.value("ingest.shape_factor"), 1.0);
    assert_eq!(p.value("sampler.shape_factor"), 1.0);
}

/// Other shapes scale the cores by the curves' ratios, and only the cores (and what follows
/// from them).
#[test]
fn request_size_trace_size_and_policy_size_scale_the_cores_by_the_curves() {
    let base = at(1e6);
    let i = Inputs {
        spans_per_request: 3.0,
        spans_per_trace: 1000.0,
        policy_rules: 200.0,
        ..Inputs::default()
    };
    let p = plan(&i).unwrap();
    let fi = curves::INGEST_BY_SPANS_PER_REQUEST.at(3.0) / curves::INGEST_BY_SPANS_PER_REQUEST.at(100.0);
    let fs = curves::SAMPLER_BY_SPANS_PER_TRACE.at(1000.0) / curves::SAMPLER_BY_SPANS_PER_TRACE.at(20.0)
        * curves::SAMPLER_BY_POLICY_RULES.at(200.0)
        / curves::SAMPLER_BY_POLICY_RULES.at(3.0);
    close(p.value("ingest.shape_factor"), fi);
    close(p.value("sampler.shape_factor"), fs);
    close(p.value("ingest.cores"), base.value("ingest.cores") * fi);
    close(p.value("sampler.cores"), base.value("sampler.cores") * fs);
    // Small requests cost more per span; a 200-rule policy costs more; long traces a little less.
    assert!(fi > 3.0, "3-span requests cost several times 100-span ones: {fi}");
    assert!(curves::SAMPLER_BY_POLICY_RULES.factor(200.0, 3.0) > 1.5);
    assert!(p.value("ingest.nodes") > base.value("ingest.nodes"));
    // Memory and Kafka do not depend on the shapes' CPU.
    close(p.value("memory.buffered_total"), base.value("memory.buffered_total"));
    close(p.value("kafka.write"), base.value("kafka.write"));
    // The working shows the curve's values.
    let w = &p.get("ingest.shape_factor").unwrap().working;
    assert!(
        w.contains(&format!("{:.2}", curves::INGEST_BY_SPANS_PER_REQUEST.at(3.0))),
        "{w}"
    );
}

#[test]
fn buffered_seconds_default_and_override() {
    let mut i = Inputs {
        decision_wait_seconds: 5.0,
        ..Inputs::default()
    };
    assert_eq!(plan(&i).unwrap().buffered_seconds, 5.0);
    i.buffered_seconds = Some(2.5);
    let p = plan(&i).unwrap();
    assert_eq!(p.buffered_seconds, 2.5);
    close(p.value("memory.buffered_total"), 1e6 * 350.0 * 2.5);
}

#[test]
fn invalid_inputs_name_the_flag() {
    let cases: Vec<(Inputs, &str)> = vec![
        (
            Inputs {
                spans_per_second: 0.0,
                ..Inputs::default()
            },
            "--spans-per-second",
        ),
        (
            Inputs {
                spans_per_second: -5.0,
                ..Inputs::default()
            },
            "--spans-per-second",
        ),
        (
            Inputs {
                spans_per_second: f64::NAN,
                ..Inputs::default()
            },
            "--spans-per-second",
        ),
        (
            Inputs {
                spans_per_second: f64::INFINITY,
                ..Inputs::default()
            },
            "--spans-per-second",
        ),
        (
            Inputs {
                spans_per_second: 2e9,
                ..Inputs::default()
            },
            "--spans-per-second",
        ),
        (
            Inputs {
                avg_span_bytes: 0.0,
                ..Inputs::default()
            },
            "--avg-span-bytes",
        ),
        (
            Inputs {
                spans_per_trace: 0.5,
                ..Inputs::default()
            },
            "--spans-per-trace",
        ),
        (
            Inputs {
                spans_per_request: 0.0,
                ..Inputs::default()
            },
            "--spans-per-request",
        ),
        (
            Inputs {
                policy_rules: f64::NAN,
                ..Inputs::default()
            },
            "--policy-rules",
        ),
        (
            Inputs {
                decision_wait_seconds: 0.0,
                ..Inputs::default()
            },
            "--decision-wait",
        ),
        (
            Inputs {
                buffered_seconds: Some(31.0),
                ..Inputs::default()
            },
            "--buffered-seconds",
        ),
        (
            Inputs {
                buffered_seconds: Some(0.0),
                ..Inputs::default()
            },
            "--buffered-seconds",
        ),
        (
            Inputs {
                keep_fraction: 1.5,
                ..Inputs::default()
            },
            "--keep-fraction",
        ),
        (
            Inputs {
                replication_factor: 0,
                ..Inputs::default()
            },
            "--replication-factor",
        ),
        (
            Inputs {
                retention_hours: 0.0,
                ..Inputs::default()
            },
            "--retention-hours",
        ),
        (
            Inputs {
                ingest_spans_per_cpu_second: 0.0,
                ..Inputs::default()
            },
            "--ingest-spans-per-cpu-second",
        ),
        (
            Inputs {
                sampler_spans_per_cpu_second: -1.0,
                ..Inputs::default()
            },
            "--sampler-spans-per-cpu-second",
        ),
        (
            Inputs {
                target_utilisation: 1.2,
                ..Inputs::default()
            },
            "--target-utilisation",
        ),
        (
            Inputs {
                memory_ratio: 0.9,
                ..Inputs::default()
            },
            "--memory-ratio",
        ),
        (
            Inputs {
                memory_ratio: 2.5,
                ..Inputs::default()
            },
            "--memory-ratio",
        ),
        (
            Inputs {
                compression_ratio: 0.0,
                ..Inputs::default()
            },
            "--compression-ratio",
        ),
        (
            Inputs {
                broker_write_bytes_per_second: 0.0,
                ..Inputs::default()
            },
            "--broker-write-bytes-per-second",
        ),
        (
            Inputs {
                ingest_cores_per_node: 0.0,
                ..Inputs::default()
            },
            "--ingest-cores-per-node",
        ),
        (
            Inputs {
                sampler_cores: f64::NAN,
                ..Inputs::default()
            },
            "--sampler-cores",
        ),
        (
            Inputs {
                sampler_max_memory_bytes: 1e6,
                ..Inputs::default()
            },
            "--sampler-max-memory",
        ),
    ];
    for (inputs, flag) in cases {
        let e = plan(&inputs).unwrap_err();
        assert_eq!(e.flag, flag, "{e}");
        assert!(e.to_string().starts_with(flag), "{e}");
    }
    // Zero kept is allowed (a dry run); a fraction of 1 keeps everything.
    assert!(plan(&Inputs {
        keep_fraction: 0.0,
        ..Inputs::default()
    })
    .is_ok());
    assert!(plan(&Inputs {
        keep_fraction: 1.0,
        ..Inputs::default()
    })
    .is_ok());
}

/// More spans never need fewer nodes, partitions, brokers or bytes.
#[test]
fn more_spans_never_fewer_nodes() {
    let keys = [
        "ingest.nodes",
        "sampler.count",
        "partitions",
        "kafka.brokers",
        "memory.buffered_total",
        "memory.container_total",
        "kafka.write",
        "kafka.retention_storage",
    ];
    for shape in [
        Inputs::default(),
        Inputs {
            sampler_cores: 1.0,
            sampler_max_memory_bytes: 2e9,
            ..Inputs::default()
        },
    ] {
        let mut prev: Option<Plan> = None;
        let mut s = 100.0;
        while s <= 1e9 {
            let p = plan(&Inputs {
                spans_per_second: s,
                ..shape.clone()
            })
            .unwrap();
            if let Some(q) = &prev {
                for k in keys {
                    assert!(
                        p.value(k) >= q.value(k),
                        "{k}: {} at {s} < {} before",
                        p.value(k),
                        q.value(k)
                    );
                }
            }
            prev = Some(p);
            s *= 1.07;
        }
    }
}

#[test]
fn ceil_ignores_the_last_bit() {
    assert_eq!(ceil(3.0 * 4.0 / 12.0), 1.0);
    assert_eq!(ceil(0.1 + 0.2 - 0.3 + 2.0), 2.0);
    assert_eq!(ceil(2.0001), 3.0);
}

#[test]
fn numbers_print_for_people() {
    assert_eq!(format_number(1_000_000.0), "1,000,000");
    assert_eq!(format_number(0.6), "0.6");
    assert_eq!(format_number(4.859086491739553), "4.859");
    assert_eq!(format_number(1944444444.4), "1,944,444,444");
    assert_eq!(format_bytes_binary(1_073_741_824.0), "1.00 GiB");
    assert_eq!(format_bytes_si(175e6), "175.00 MB");
}
