//! Policies as users bring them: the format is told from the content everywhere a policy is read
//! (the admin API, the CLI, a sampler's `policy.file`), `tailsift policy validate` works with no
//! coordinator running, and `tailsift policy test` runs cases offline.

use std::process::Command;

use serde_json::json;
use tailsift_tests::{workspace_bin, CoordinatorCluster, ADMIN_TOKEN, READ_TOKEN};

/// An OTel collector user's `tail_sampling` policy list, copied as is.
const OTEL_LIST: &str = "- name: errors\n  type: status_code\n  status_code: {status_codes: [ERROR]}\n- name: slow\n  type: latency\n  latency: {threshold_ms: 1000}\n";

const COLLECTOR: &str = "receivers:\n  otlp:\n    protocols: {grpc: {}}\nprocessors:\n  tail_sampling:\n    decision_wait: 10s\n    num_traces: 50000\n    policies:\n      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\nexporters:\n  otlp: {endpoint: backend:4317}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp]}\n";

/// Runs `tailsift ARGS` with no admin URL in the environment: (success, stdout, stderr).
fn tailsift(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(workspace_bin("tailsift"))
        .args(args)
        .env_remove("TAILSIFT_ADMIN_URL")
        .env_remove("TAILSIFT_TOKEN")
        .output()
        .expect("run tailsift");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn otlp_trace(trace_id: &str, error: bool, ms: u64) -> String {
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_id, "spanId": "0102030405060708", "name": "GET /cart",
            "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": (1_700_000_000_000_000_000u64 + ms * 1_000_000).to_string(),
            "status": {"code": if error { 2 } else { 0 }}
        }]}]
    }]})
    .to_string()
}

#[test]
fn policy_validate_and_test_work_offline_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let otel = p("otel.yaml", OTEL_LIST);
    let collector = p("collector.yaml", COLLECTOR);
    let native = p("native.json", r#"{"policies": [{"name": "everything", "always": {}}]}"#);
    let invalid = p(
        "invalid.yaml",
        "- {name: e, type: status_code, status_code: {status_codes: [EROR]}}\n",
    );
    let ambiguous = p("ambiguous.yaml", "policies: []\n");

    for (file, format, names) in [
        (&otel, "otel_tail_sampling", vec!["errors", "slow"]),
        (&collector, "otel_tail_sampling", vec!["errors"]),
        (&native, "native", vec!["everything"]),
    ] {
        let (ok, out, err) = tailsift(&["policy", "validate", file]);
        assert!(ok, "{file}: {out} {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["format"], format, "{file}");
        assert_eq!(v["policies"], json!(names), "{file}");
    }
    let (ok, _, err) = tailsift(&["policy", "validate", &invalid]);
    assert!(!ok, "an invalid policy fails");
    assert!(err.contains("[0].status_code") && err.contains("EROR"), "{err}");
    let (ok, _, err) = tailsift(&["policy", "validate", &ambiguous]);
    assert!(
        !ok && err.contains("ambiguous") && err.contains("native or otel_tail_sampling"),
        "{err}"
    );
    // An explicit format wins.
    let (ok, _, err) = tailsift(&["policy", "validate", &otel, "--format", "native"]);
    assert!(!ok, "{err}");

    // policy test: traces in OTLP/JSON, expected decision and rule.
    std::fs::write(
        dir.path().join("error.json"),
        otlp_trace("0af7651916cd43dd8448eb211c80319c", true, 5),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("slow.json"),
        otlp_trace("4bf92f3577b34da6a3ce929d0e0e4736", false, 1500),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fast.json"),
        otlp_trace("5b8efff798038103d269b633813fc60c", false, 3),
    )
    .unwrap();
    let good = p(
        "cases.yaml",
        "cases:\n  - {name: errors are kept, traces: error.json, expect: {keep: true, policy: errors}}\n  - {name: slow is kept, traces: slow.json, expect: {keep: true, policy: slow}}\n  - {name: fast ok is dropped, traces: fast.json, expect: {keep: false}}\n",
    );
    let (ok, out, err) = tailsift(&["policy", "test", &otel, &good]);
    assert!(ok, "{out} {err}");
    assert!(out.contains("3 passed, 0 failed"), "{out}");
    let bad = p(
        "bad-cases.yaml",
        "cases:\n  - {name: errors are kept, traces: error.json, expect: {keep: true, policy: slow}}\n  - {name: fast is kept, traces: fast.json, expect: {keep: true}}\n",
    );
    let (ok, out, err) = tailsift(&["policy", "test", &otel, &bad]);
    assert!(!ok, "failing cases fail the command: {out}");
    assert!(
        out.contains("FAIL  errors are kept") && out.contains("got keep=true policy=errors"),
        "{out}"
    );
    assert!(
        out.contains("0 passed, 2 failed") && err.contains("2 of 2"),
        "{out} {err}"
    );
}

#[test]
fn a_sampler_reads_a_collector_config_as_its_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.yaml");
    std::fs::write(&path, COLLECTOR).unwrap();
    let cfg = tailsift_sampler::config::PolicyConfig {
        file: Some(path),
        ..Default::default()
    };
    assert_eq!(cfg.format, tailsift_sampler::config::PolicyFormat::Auto);
    let (doc, engine) = tailsift_sampler::load_policy(&cfg).expect("an OTel collector config loads as is");
    assert_eq!(doc.semantics, tailsift_policy::Semantics::OtelTailSampling);
    assert_eq!(engine.decision_options().wait_ms, Some(10_000));
    assert_eq!(engine.decision_options().max_traces, Some(50_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_tells_the_format_and_stores_it() {
    let cluster = CoordinatorCluster::start(1).await;
    cluster.wait_for_leader(&[0]).await;
    // No format: the OTel list is recognised and stored as such; samplers read it so.
    let (st, body) = cluster
        .request(
            0,
            "PUT",
            "/v1/policy",
            Some(ADMIN_TOKEN),
            Some(json!({ "document": OTEL_LIST })),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = cluster.request(0, "GET", "/v1/policy", Some(READ_TOKEN), None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["policy"]["format"], "otel_tail_sampling", "{body}");
    // Validation detects too, and an ambiguous document is refused naming the candidates.
    let (st, body) = cluster
        .request(
            0,
            "POST",
            "/v1/policy/validate",
            Some(READ_TOKEN),
            Some(json!({ "document": COLLECTOR })),
        )
        .await;
    assert_eq!((st, body["policies"].clone()), (200, json!(["errors"])), "{body}");
    let (st, body) = cluster
        .request(
            0,
            "PUT",
            "/v1/policy",
            Some(ADMIN_TOKEN),
            Some(json!({ "document": "policies: []\n" })),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(body.to_string().contains("ambiguous"), "{body}");
    // An explicit format still wins.
    let (st, body) = cluster
        .request(
            0,
            "PUT",
            "/v1/policy",
            Some(ADMIN_TOKEN),
            Some(json!({ "document": OTEL_LIST, "format": "yaml" })),
        )
        .await;
    assert_eq!(st, 400, "an OTel list is not a native document: {body}");
}
