//! Static checks of the monitoring assets: `deploy/prometheus/alerts.yaml` (promtool checks it and
//! runs its unit tests, every alert has a firing and a quiet test, annotations and a runbook link
//! to a section of docs/operations.md that exists) and `deploy/grafana/tailsift.json` (importable:
//! datasource variable on every query, unique ids, a grid without overlaps, rows per role). Both
//! may only name metrics the services define in their `metrics.rs`.
//!
//! tests/tests/fault_suite.rs evaluates every query and alert against a live cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml::Value;
use tailsift_tests::promql_metric_names as metric_names;

const RUNBOOK: &str = "https://github.com/tailsift/tailsift/blob/main/docs/operations.md#";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn promtool() -> String {
    for p in ["/usr/bin/promtool", "/usr/local/bin/promtool"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("promtool not found: install Debian's prometheus package (`bash tests/run.sh` does: apt-get install -y prometheus)");
}

/// (alert name, rule) of every alerting rule.
fn alerts() -> Vec<(String, Value)> {
    let doc: Value = serde_yaml::from_str(&read("deploy/prometheus/alerts.yaml")).unwrap();
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"].as_str().expect("only alerting rules").to_string();
            out.push((name, r.clone()));
        }
    }
    out
}

/// Every metric name defined by a service (`pub const X: &str = "tailsift_..."` in metrics.rs).
fn defined_metrics() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for svc in ["coordinator", "ingest", "sampler"] {
        let text = read(&format!("services/{svc}/src/metrics.rs"));
        for line in text.lines() {
            if let Some((_, rest)) = line.split_once("&str = \"") {
                if let Some(name) = rest.split('"').next().filter(|n| n.starts_with("tailsift_")) {
                    out.insert(name.to_string());
                }
            }
        }
    }
    assert!(out.len() > 50, "{out:?}");
    out
}

/// GitHub's anchor of a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let dir = repo().join("deploy/prometheus");
    for args in [
        &["check", "rules", "alerts.yaml"][..],
        &["test", "rules", "alerts_test.yaml"][..],
    ] {
        let out = Command::new(promtool()).args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let tests: Value = serde_yaml::from_str(&read("deploy/prometheus/alerts_test.yaml")).unwrap();
    // alert name -> (fires somewhere, quiet somewhere)
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for t in tests["tests"].as_sequence().expect("tests") {
        for case in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_string();
            let exp = case["exp_alerts"].as_sequence().map(|s| s.len()).unwrap_or(0);
            let e = seen.entry(name).or_default();
            if exp > 0 {
                e.0 = true;
            }
            // A quiet case: nothing expected, or fewer alerts than the test's series could raise
            // (promtool compares the whole list, so the others must stay quiet).
            if exp == 0 || t["input_series"].as_sequence().map(|s| s.len()).unwrap_or(0) > exp {
                e.1 = true;
            }
        }
    }
    for (name, _) in alerts() {
        let (fires, quiet) = seen.get(&name).copied().unwrap_or_default();
        assert!(fires, "{name}: no test where it fires");
        assert!(quiet, "{name}: no test where it stays quiet");
    }
}

#[test]
fn every_alert_says_what_to_do_and_links_its_runbook_section() {
    let ops = read("docs/operations.md");
    let anchors: BTreeSet<String> = ops
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect();
    let metrics = defined_metrics();
    let mut names = BTreeSet::new();
    for (name, rule) in alerts() {
        assert!(names.insert(name.clone()), "{name} twice");
        assert!(name.starts_with("Tailsift"), "{name}");
        let sev = rule["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["critical", "warning", "info"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        let a = &rule["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(a[key].as_str().is_some_and(|s| s.len() > 10), "{name}: no {key}");
        }
        let url = a["runbook_url"].as_str().unwrap();
        let anchor = url.strip_prefix(RUNBOOK).unwrap_or_else(|| panic!("{name}: {url}"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: runbook anchor");
        assert!(
            anchors.contains(anchor),
            "{name}: docs/operations.md has no section `{anchor}`"
        );
        let expr = rule["expr"].as_str().unwrap();
        for m in metric_names(expr) {
            assert!(metrics.contains(&m), "{name} reads {m}, which no service exports");
        }
    }
}

fn dashboard() -> Json {
    serde_json::from_str(&read("deploy/grafana/tailsift.json")).expect("the dashboard is JSON")
}

#[test]
fn the_dashboard_is_importable_and_every_query_uses_the_datasource_variable() {
    let d = dashboard();
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40));
    assert!(d["title"].as_str().is_some());
    assert!(
        d.get("id").is_none() || d["id"].is_null(),
        "an exported id breaks import"
    );
    let vars = d["templating"]["list"].as_array().expect("templating");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");

    let metrics = defined_metrics();
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut cells: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut rows = Vec::new();
    let mut queries = 0;
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(ids.insert(p["id"].as_u64().expect("id")), "{title}: duplicate id");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{title} overlaps another panel at {cx},{cy}");
            }
        }
        if p["type"] == "row" {
            rows.push(title.to_string());
            continue;
        }
        assert!(
            p["description"].as_str().is_some_and(|s| !s.is_empty()),
            "{title}: no description"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr} reads no Tailsift metric");
            for m in names {
                assert!(metrics.contains(&m), "{title}: {m} is not a metric any service exports");
            }
            queries += 1;
        }
    }
    for role in ["Ingest", "Sampler", "Coordinator"] {
        assert!(rows.iter().any(|r| r.contains(role)), "no row for {role}: {rows:?}");
    }
    assert!(queries >= 30, "{queries} queries");
}

#[test]
fn the_dashboard_shows_what_operators_ask_for() {
    // The panels the operations guide and the issue name, by the metric each must read.
    let d = dashboard();
    let all: String = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "sum by (protocol) (rate(tailsift_ingest_spans_received_total",
        "tailsift_sampler_export_spans_total",
        "sum by (policy, outcome) (rate(tailsift_sampler_decisions_total",
        "histogram_quantile(0.99, sum by (le) (rate(tailsift_sampler_decision_latency_seconds_bucket",
        "tailsift_sampler_traces_buffered",
        "tailsift_sampler_buffered_bytes",
        "tailsift_sampler_late_spans_total",
        "tailsift_sampler_stress_relief_active",
        "sum by (partition) (tailsift_sampler_consumer_lag_records",
        "tailsift_sampler_export_requests_total",
        "tailsift_sampler_export_dead_letter_spans_total",
        "tailsift_ingest_produce_errors_total",
        "tailsift_ingest_spans_rejected_total",
        "tailsift_coordinator_raft_is_leader",
        "tailsift_coordinator_raft_term",
        "tailsift_coordinator_raft_commit_index",
        "tailsift_sampler_policy_version",
        "time() - tailsift_sampler_policy_applied_timestamp_seconds",
    ] {
        assert!(all.contains(needle), "no panel reads `{needle}`");
    }
}

#[test]
fn metric_names_are_read_from_expressions() {
    let n = metric_names(
        "histogram_quantile(0.9, sum by (le) (rate(tailsift_sampler_decision_latency_seconds_bucket{job=\"x\"}[1m]))) / tailsift_ingest_requests_total",
    );
    assert_eq!(
        n.into_iter().collect::<Vec<_>>(),
        vec![
            "tailsift_ingest_requests_total".to_string(),
            "tailsift_sampler_decision_latency_seconds".to_string()
        ]
    );
    assert!(metric_names("up{job=\"tailsift-coordinator\"} == 0").is_empty());
}
