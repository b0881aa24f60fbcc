//! How a [`Plan`] is printed: the table of `tailsift plan` (also pasted into docs/scaling.md).

use crate::{Plan, Unit};

/// A number for people: whole numbers (and anything from 1,000 up, rounded) with thousands
/// separators, smaller fractions with 4 significant digits.
pub fn format_number(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x.abs() >= 1000.0 || x.fract() == 0.0 {
        let r = x.round();
        let digits = format!("{:.0}", r.abs());
        let mut out = String::new();
        for (n, ch) in digits.chars().enumerate() {
            if n > 0 && (digits.len() - n) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        return if r < 0.0 { format!("-{out}") } else { out };
    }
    let decimals = (3 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{x:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn scaled(x: f64, base: f64, units: &[&str]) -> String {
    let mut v = x;
    let mut k = 0;
    while v.abs() >= base && k + 1 < units.len() {
        v /= base;
        k += 1;
    }
    if k == 0 {
        format!("{} {}", format_number(v.round()), units[0])
    } else {
        format!("{v:.2} {}", units[k])
    }
}

/// Memory in binary units (MiB, GiB), as limits are given in the config and the manifests.
pub fn format_bytes_binary(x: f64) -> String {
    scaled(x, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

/// Data and bandwidth in decimal units (MB, GB, TB).
pub fn format_bytes_si(x: f64) -> String {
    scaled(x, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

fn value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Count => format_number(v),
        Unit::Cores => format!("{v:.2}"),
        Unit::Seconds => format!("{} s", format_number(v)),
        Unit::SpansPerSecond => format!("{} spans/s", format_number(v.round())),
        Unit::TracesPerSecond => format!("{} traces/s", format_number(v.round())),
        Unit::Traces => format_number(v.round()),
        Unit::MemoryBytes => format_bytes_binary(v),
        Unit::StorageBytes => format_bytes_si(v),
        Unit::BytesPerSecond => format!("{}/s", format_bytes_si(v)),
        Unit::Ratio => format!("{v:.2}"),
    }
}

/// The table `tailsift plan` prints: the inputs, then one line per figure with its value, its
/// formula and the formula with the numbers put in, then the notes.
pub fn render_table(p: &Plan) -> String {
    let i = &p.inputs;
    let n = format_number;
    let mut out = String::new();
    out.push_str(&format!(
        "inputs: S {} spans/s, B {} B per span, N {} spans per trace, q {} spans per request, R {} policy rules, W (decision_wait) {} s, T (average buffered) {} s\n",
        n(i.spans_per_second),
        n(i.avg_span_bytes),
        n(i.spans_per_trace),
        n(i.spans_per_request),
        n(i.policy_rules),
        n(i.decision_wait_seconds),
        n(p.buffered_seconds)
    ));
    out.push_str(&format!(
        "        k (kept) {}, RF {}, H (retention) {} h, r_i {} and r_s {} spans per CPU-second, u (utilisation) {}, m (RSS per buffered byte) {}, c (compression) {}\n",
        n(i.keep_fraction),
        i.replication_factor,
        n(i.retention_hours),
        n(i.ingest_spans_per_cpu_second),
        n(i.sampler_spans_per_cpu_second),
        n(i.target_utilisation),
        n(i.memory_ratio),
        n(i.compression_ratio)
    ));
    out.push_str(&format!(
        "        bw (broker write) {}/s, {} cores per ingest node, {} cores per sampler, M (largest sampler container) {}\n",
        format_bytes_si(i.broker_write_bytes_per_second),
        n(i.ingest_cores_per_node),
        n(i.sampler_cores),
        format_bytes_binary(i.sampler_max_memory_bytes)
    ));
    let label_w = p.figures.iter().map(|f| f.label.chars().count()).max().unwrap_or(0);
    let values: Vec<String> = p.figures.iter().map(|f| value(f.value, f.unit)).collect();
    let value_w = values.iter().map(|v| v.chars().count()).max().unwrap_or(0);
    let mut section = "";
    for (f, v) in p.figures.iter().zip(&values) {
        let s = f.key.split('.').next().unwrap_or(f.key);
        let s = if f.key == "partitions" { "sampler" } else { s };
        if s != section {
            section = s;
            out.push_str(&format!("\n{s}\n"));
        }
        let working = if f.working == f.formula || f.working == format_number(f.value) {
            String::new()
        } else {
            format!(" = {}", f.working)
        };
        out.push_str(&format!(
            "  {:<label_w$}  {:>value_w$}  {}{working}\n",
            f.label, v, f.formula
        ));
    }
    if !p.notes.is_empty() {
        out.push_str("\nnotes\n");
        for note in &p.notes {
            out.push_str(&format!("  - {note}\n"));
        }
    }
    out
}
