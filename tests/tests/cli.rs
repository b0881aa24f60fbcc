//! The `tailsift` binary: help, config precedence and errors, and a graceful SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tailsift_tests::{free_port, read_topic, workspace_bin, Broker, ChildGuard, Storage};

#[test]
fn help_documents_every_flag_and_default() {
    let out = Command::new(workspace_bin("tailsift"))
        .args(["ingest", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config",
        "--log-level",
        "--log-format",
        "--set",
        "--kafka-brokers",
        "--topic",
        "--grpc-listen",
        "--http-listen",
        "--admin-listen",
    ] {
        assert!(help.contains(flag), "missing {flag} in:\n{help}");
    }
    for default in [
        "127.0.0.1:9092",
        "tailsift-spans",
        "0.0.0.0:4317",
        "0.0.0.0:4318",
        "0.0.0.0:9464",
        "[default: info]",
        "TAILSIFT_",
    ] {
        assert!(help.contains(default), "missing {default} in:\n{help}");
    }
}

#[test]
fn config_errors_name_the_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ingest.yaml");
    std::fs::write(&cfg, "kafka:\n  brokers: 127.0.0.1:1\n  compresion: zstd\n").unwrap();
    let out = Command::new(workspace_bin("tailsift"))
        .arg("ingest")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingest.yaml") && err.contains("compresion"), "{err}");

    let out = Command::new(workspace_bin("tailsift"))
        .arg("ingest")
        .env("TAILSIFT_KAFKA__TOPC", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TAILSIFT_KAFKA__TOPC") && err.contains("topc"), "{err}");

    let out = Command::new(workspace_bin("tailsift"))
        .args(["ingest", "--set", "kafka.acks=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kafka.idempotence"), "{err}");

    let out = Command::new(workspace_bin("tailsift"))
        .args(["sampler", "--set", "kafka.properties[fetch.wait.max.ms=20"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kafka.properties[fetch.wait.max.ms") && err.contains("brackets"),
        "{err}"
    );
}

fn one_trace() -> (Vec<u8>, ExportTraceServiceRequest) {
    let mut id: [u8; 16] = rand::random();
    id[15] |= 1;
    let span = Span {
        trace_id: id.to_vec(),
        span_id: vec![1; 8],
        name: "root".into(),
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (id.to_vec(), req)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_and_exits_zero_with_file_env_and_flag_layers() {
    let broker = Broker::start(Storage::Memory);
    let (grpc, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ingest.yaml");
    // The file sets a wrong broker and topic; env fixes the topic, a flag fixes the broker.
    std::fs::write(
        &cfg,
        format!("kafka:\n  brokers: 127.0.0.1:1\n  topic: from-file\n  topic_spec: {{partitions: 2}}\notlp:\n  grpc_listen: 127.0.0.1:{grpc}\n  http_listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:{admin}\n"),
    )
    .unwrap();
    let child = Command::new(workspace_bin("tailsift"))
        .arg("ingest")
        .arg("--config")
        .arg(&cfg)
        .args(["--kafka-brokers", &broker.brokers(), "--log-format", "json"])
        .env("TAILSIFT_KAFKA__TOPIC", "from-env")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(Some(child));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{admin}/readyz")).await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "binary never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    let (id, req) = one_trace();
    client.export(req).await.unwrap();

    let pid = guard.0.as_ref().unwrap().id();
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let out = guard.0.take().unwrap().wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "exit 0 after SIGTERM; logs:\n{logs}");
    assert!(
        logs.contains("SIGTERM received") && logs.contains("ingest node stopped"),
        "{logs}"
    );
    assert!(
        logs.lines().all(|l| l.trim().is_empty() || l.starts_with('{')),
        "JSON logs:\n{logs}"
    );

    let records = read_topic(&broker.brokers(), "from-env", 1, Duration::from_secs(20));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, hex::encode(id).into_bytes());
}

/// `tailsift plan`, the capacity calculator: the worked examples of docs/scaling.md are what the
/// command prints (one model), the JSON carries every figure, the shape inputs scale the cores by
/// the measured curves, and a bad input is an error naming its flag.
#[test]
fn plan_prints_what_docs_scaling_shows_and_scales_by_the_curves() {
    let plan = |args: &[&str]| {
        let out = Command::new(workspace_bin("tailsift"))
            .arg("plan")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    // Every `$ tailsift plan ...` console block of the page, whole.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/scaling.md")).unwrap();
    let mut examples = 0;
    for block in doc.split("```console\n$ tailsift plan ").skip(1) {
        let (cmd, rest) = block.split_once('\n').unwrap();
        let shown = rest.split("```").next().unwrap();
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let (ok, printed, err) = plan(&args);
        assert!(ok, "tailsift plan {cmd}: {err}");
        assert_eq!(
            printed, shown,
            "docs/scaling.md shows another output for `tailsift plan {cmd}`"
        );
        examples += 1;
    }
    assert!(examples >= 2, "the worked examples are missing from docs/scaling.md");
    // Every row of the "Other shapes" table, built from what the command prints.
    let mut rows = 0;
    for line in doc.lines().filter(|l| l.starts_with("| `--spans-per-second")) {
        let cmd = line.split('`').nth(1).unwrap();
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let (ok, printed, err) = plan(&args);
        assert!(ok, "tailsift plan {cmd}: {err}");
        let v = |label: &str| -> String {
            printed
                .lines()
                .filter(|l| l.starts_with("  "))
                .map(|l| l.trim().split("  ").filter(|c| !c.is_empty()).collect::<Vec<_>>())
                .find(|cols| cols[0] == label)
                .unwrap_or_else(|| panic!("`{label}` not printed"))[1]
                .trim()
                .to_owned()
        };
        let row = format!(
            "| `{cmd}` | {} | {} ({} / {}) | {} | {} / {} | {} | {} | {} |",
            v("ingest nodes"),
            v("samplers"),
            v("samplers for the CPU"),
            v("samplers for the memory"),
            v("partitions of the spans topic"),
            v("memory.hard_limit_bytes"),
            v("sampler container memory limit"),
            v("written on the brokers, with replicas"),
            v("brokers"),
            v("spans topic storage, with replicas"),
        );
        assert_eq!(line, row, "docs/scaling.md \"Other shapes\" is out of date");
        rows += 1;
    }
    assert!(rows >= 5, "the \"Other shapes\" table is missing from docs/scaling.md");

    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (ok, out, err) = plan(&all);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let value = |p: &serde_json::Value, key: &str| -> f64 {
        p["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == key)
            .unwrap_or_else(|| panic!("no {key}"))["value"]
            .as_f64()
            .unwrap()
    };
    let base = json(&["--spans-per-second", "1000000"]);
    assert_eq!(value(&base, "ingest.shape_factor"), 1.0);
    assert_eq!(value(&base, "sampler.shape_factor"), 1.0);
    let small = json(&[
        "--spans-per-second",
        "1000000",
        "--spans-per-request",
        "3",
        "--policy-rules",
        "200",
    ]);
    let (fi, fs) = (
        value(&small, "ingest.shape_factor"),
        value(&small, "sampler.shape_factor"),
    );
    assert!(
        fi > 3.0 && fs > 1.5,
        "3-span requests and 200 rules cost more per span: {fi} {fs}"
    );
    let ratio = value(&small, "ingest.cores") / value(&base, "ingest.cores");
    assert!((ratio - fi).abs() < 1e-9, "{ratio} vs {fi}");
    let ratio = value(&small, "sampler.cores") / value(&base, "sampler.cores");
    assert!((ratio - fs).abs() < 1e-9, "{ratio} vs {fs}");
    assert!(value(&small, "ingest.nodes") > value(&base, "ingest.nodes"));

    for (args, flag) in [
        (
            vec!["--spans-per-second", "1e6", "--spans-per-request", "0"],
            "--spans-per-request",
        ),
        (
            vec!["--spans-per-second", "1e6", "--policy-rules", "NaN"],
            "--policy-rules",
        ),
        (vec!["--spans-per-second", "0"], "--spans-per-second"),
    ] {
        let (ok, _, err) = plan(&args);
        assert!(!ok && err.contains(flag), "{args:?}: {err}");
    }
}
