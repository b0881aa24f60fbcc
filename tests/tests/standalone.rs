//! `tailsift standalone`, end to end and in process (no broker): traces sent over OTLP/gRPC and
//! Zipkin go through the in-process log to the sampler; kept traces come out as OTLP/JSON lines,
//! whole and stamped with the policy that kept them; boring traces are dropped per policy; a policy
//! PUT on the admin API changes the decisions of the running sampler; an OTel collector config (an
//! OTTL condition on span events) and Refinery rules decide, neither named by its format.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use tailsift_tests::{metric_value, single_span_request};
use tokio_util::sync::CancellationToken;

/// The in-process tests share one metrics registry: they run one at a time, so each can read the
/// decision counters as its own.
static IN_PROCESS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ERRORS_ONLY: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n";

fn trace_id(tag: u8, i: u8) -> [u8; 16] {
    let mut id = [0x42u8; 16];
    id[0] = tag;
    id[1] = i;
    id
}

fn span_id(trace: u8, i: u8, n: u8) -> [u8; 8] {
    [trace, i, n, 1, 2, 3, 4, 5]
}

/// Every span written to `path` so far, by hex trace ID, and the number of lines.
fn read_output(path: &Path) -> (HashMap<String, Vec<Span>>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut by_trace: HashMap<String, Vec<Span>> = HashMap::new();
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        let req = tailsift_otlp::json::decode_json(line.as_bytes()).expect("every line is an OTLP/JSON request");
        let mut ids = HashSet::new();
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    ids.insert(hex::encode(&s.trace_id));
                    by_trace.entry(hex::encode(&s.trace_id)).or_default().push(s);
                }
            }
        }
        assert_eq!(ids.len(), 1, "one trace per line: {line}");
    }
    (by_trace, lines)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// Waits (bounded) until every trace of `ids` has `spans` spans in the output; returns the output.
async fn wait_output(path: &Path, ids: &[[u8; 16]], spans: usize, what: &str) -> HashMap<String, Vec<Span>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (out, _) = read_output(path);
        let missing: Vec<String> = ids
            .iter()
            .map(hex::encode)
            .filter(|id| out.get(id).map_or(0, Vec::len) < spans)
            .collect();
        if missing.is_empty() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} traces never written whole: {missing:?}",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends three-span traces over OTLP/gRPC: the two children in one request, the root in another.
async fn send_traces(client: &mut TraceServiceClient<tonic::transport::Channel>, ids: &[[u8; 16]], error: bool) {
    for id in ids {
        let (t, i) = (id[0], id[1]);
        let root = span_id(t, i, 0);
        let mut children = single_span_request(*id, span_id(t, i, 1), Some(root), false);
        let second = single_span_request(*id, span_id(t, i, 2), Some(root), error);
        children.resource_spans.extend(second.resource_spans);
        client.export(children).await.expect("children accepted");
        client
            .export(single_span_request(*id, root, None, false))
            .await
            .expect("root accepted");
    }
}

/// Standalone's config for a test in `dir`: every listener on a free loopback port, the
/// errors-only policy, short decision delays, plus `extra` settings.
fn test_config(dir: &Path, extra: &[(&str, String)]) -> tailsift_standalone::StandaloneConfig {
    let policy = dir.join("errors.yaml");
    std::fs::write(&policy, ERRORS_ONLY).unwrap();
    let local = "127.0.0.1:0";
    let mut sets: Vec<(String, String)> = [
        ("standalone.data_dir", dir.join("data").display().to_string()),
        ("policy.file", policy.display().to_string()),
        ("decision.send_delay", "300ms".into()),
        ("decision.decision_wait", "5s".into()),
        ("decision.tick", "50ms".into()),
        ("otlp.grpc_listen", local.into()),
        ("otlp.http_listen", local.into()),
        ("zipkin.listen", local.into()),
        ("admin.listen", local.into()),
        ("jaeger.http_listen", local.into()),
        ("jaeger.grpc_listen", local.into()),
        ("jaeger.compact_udp_listen", local.into()),
        ("jaeger.binary_udp_listen", local.into()),
        ("coordinator.raft_listen", local.into()),
        ("coordinator.admin_listen", local.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    sets.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    tailsift_config::Sources {
        sets,
        ..Default::default()
    }
    .load()
    .expect("test config is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_keeps_errors_whole_drops_the_rest_and_follows_policy_changes() {
    let _serial = IN_PROCESS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("kept.jsonl");
    let cfg = test_config(dir.path(), &[("export.output", output.display().to_string())]);
    let token = tailsift_standalone::admin_token(&cfg.standalone).unwrap();
    let listeners = tailsift_standalone::Listeners::bind(&cfg).await.unwrap();
    let (grpc, _, metrics_addr) = listeners.ingest.addrs().unwrap();
    let zipkin = listeners.ingest.receiver_addrs().unwrap().zipkin.expect("zipkin on");
    let admin = listeners.admin_url().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(tailsift_standalone::run(cfg, listeners, shutdown.clone()));
    let http = reqwest::Client::new();
    let dropped = || async {
        let m = http
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let n = metric_value(&m, "tailsift_sampler_decisions_total", &["outcome=\"dropped\""]);
        (n, m)
    };

    // The configured policy becomes version 1 on the coordinator.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = http.get(format!("{admin}/v1/policy")).bearer_auth(&token).send().await;
        if let Ok(r) = got {
            if r.status().is_success() {
                let v: serde_json::Value = r.json().await.unwrap();
                if v["version"] == 1 {
                    assert_eq!(v["policy"]["document"], ERRORS_ONLY);
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "policy version 1 never published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unauthenticated = http.get(format!("{admin}/v1/policy")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401, "the admin API keeps auth on");
    // The admin console is served by standalone's coordinator too, assets compiled in.
    for (path, needle) in [("/ui/", "Tailsift console"), ("/ui/app.js", "/v1/whoami")] {
        let page = http.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        assert!(page.text().await.unwrap().contains(needle), "{path}");
    }

    // Errors and boring traces over OTLP/gRPC, one error and one boring trace over Zipkin.
    let dropped_before = dropped().await.0;
    let mut client = TraceServiceClient::connect(format!("http://{grpc}")).await.unwrap();
    let errors: Vec<[u8; 16]> = (0..8).map(|i| trace_id(0xe1, i)).collect();
    let boring: Vec<[u8; 16]> = (0..8).map(|i| trace_id(0xb1, i)).collect();
    send_traces(&mut client, &errors, true).await;
    send_traces(&mut client, &boring, false).await;
    let zipkin_error = "5a000000000000000000000000000001";
    let zipkin_boring = "5a000000000000000000000000000002";
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let zipkin_span = |trace: &str, id: &str, parent: Option<&str>, tags: serde_json::Value| {
        let mut s = json!({
            "traceId": trace, "id": id, "name": "GET /cart", "kind": "SERVER",
            "timestamp": now_us, "duration": 1500,
            "localEndpoint": { "serviceName": "zipkin-frontend" }, "tags": tags,
        });
        if let Some(p) = parent {
            s["parentId"] = json!(p);
        }
        s
    };
    let spans = json!([
        zipkin_span(zipkin_error, "00000000000000a1", None, json!({})),
        zipkin_span(
            zipkin_error,
            "00000000000000a2",
            Some("00000000000000a1"),
            json!({ "error": "timeout" })
        ),
        zipkin_span(zipkin_boring, "00000000000000b1", None, json!({})),
    ]);
    let r = http
        .post(format!("http://{zipkin}/api/v2/spans"))
        .json(&spans)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());

    // Every error trace comes out whole, stamped with the policy that kept it and its version.
    let out = wait_output(&output, &errors, 3, "OTLP error traces").await;
    let zipkin_id: [u8; 16] = hex::decode(zipkin_error).unwrap().try_into().unwrap();
    let out_z = wait_output(&output, &[zipkin_id], 2, "Zipkin error trace").await;
    for id in errors.iter().map(hex::encode) {
        let spans = &out[&id];
        let ids: HashSet<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
        assert_eq!(ids.len(), 3, "trace {id}: every span once: {spans:?}");
        for s in spans {
            assert_eq!(
                attr(s, "tailsift.sampling.policy"),
                Some(&any_value::Value::StringValue("errors".into())),
                "trace {id}: the reason is stamped"
            );
            assert_eq!(
                attr(s, "tailsift.sampling.policy_version"),
                Some(&any_value::Value::IntValue(1))
            );
        }
    }
    assert!(out_z[zipkin_error]
        .iter()
        .all(|s| attr(s, "tailsift.sampling.policy") == Some(&any_value::Value::StringValue("errors".into()))));

    // The boring traces were decided (dropped), and none of them was written.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (n, m) = dropped().await;
        if n - dropped_before >= (boring.len() + 1) as f64 {
            // One registry: the ingest node's metrics are on the same port.
            assert!(
                metric_value(&m, "tailsift_ingest_records_produced_total", &[]) >= 33.0,
                "{m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "boring traces never decided: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (out, lines_before) = read_output(&output);
    for id in boring.iter().map(hex::encode).chain([zipkin_boring.to_string()]) {
        assert!(!out.contains_key(&id), "boring trace {id} was kept");
    }
    assert_eq!(out.len(), errors.len() + 1, "only the error traces were written");

    // A new policy through the admin API: keep everything. The running sampler switches to it.
    let put = http
        .put(format!("{admin}/v1/policy"))
        .bearer_auth(&token)
        .json(&json!({ "format": "yaml", "document": "policies:\n  - name: everything\n    always: {}\n" }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let workers: serde_json::Value = http
            .get(format!("{admin}/v1/workers"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let applied = workers["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|w| w["worker_id"] == "standalone" && w["version"] == 2);
        if applied {
            break;
        }
        assert!(Instant::now() < deadline, "version 2 never applied: {workers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let boring_after: Vec<[u8; 16]> = (0..5).map(|i| trace_id(0xb2, i)).collect();
    send_traces(&mut client, &boring_after, false).await;
    let out = wait_output(&output, &boring_after, 3, "boring traces under the new policy").await;
    for id in boring_after.iter().map(hex::encode) {
        for s in &out[&id] {
            assert_eq!(
                attr(s, "tailsift.sampling.policy"),
                Some(&any_value::Value::StringValue("everything".into()))
            );
            assert_eq!(
                attr(s, "tailsift.sampling.policy_version"),
                Some(&any_value::Value::IntValue(2))
            );
        }
    }
    let (_, lines_after) = read_output(&output);
    assert_eq!(
        lines_after,
        lines_before + boring_after.len(),
        "one line per kept trace"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("standalone stops")
        .expect("task")
        .expect("standalone exits cleanly");
}

/// Waits (bounded) for a line of `lines` mentioning `needle`; returns it.
async fn wait_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        while let Ok(line) = lines.try_recv() {
            if line.contains(needle) {
                return line;
            }
        }
        assert!(Instant::now() < deadline, "no output line mentions {needle}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_kept_traces_on_stdout_and_follows_policy_apply() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use tailsift_tests::{free_port, workspace_bin, ChildGuard};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (grpc, metrics, coordinator) = (free_port(), free_port(), free_port());
    let child = Command::new(workspace_bin("tailsift"))
        .arg("standalone")
        .arg("--data-dir")
        .arg(&data)
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
        .args(["--admin-listen", &format!("127.0.0.1:{metrics}")])
        .args(["--coordinator-listen", &format!("127.0.0.1:{coordinator}")])
        .args(["--http-listen", "127.0.0.1:0", "--zipkin-listen", "127.0.0.1:0"])
        .args([
            "--set",
            "coordinator.raft_listen=127.0.0.1:0",
            "--set",
            "jaeger.enabled=false",
        ])
        .args(["--set", "decision.send_delay=200ms", "--policy"])
        .arg({
            let p = dir.path().join("errors.yaml");
            std::fs::write(&p, ERRORS_ONLY).unwrap();
            p
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(Some(child));
    let stdout = guard.0.as_mut().unwrap().stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("http://127.0.0.1:{metrics}/readyz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "standalone never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    let error = trace_id(0xe3, 1);
    send_traces(&mut client, &[error], true).await;
    let line = wait_line(&lines, &hex::encode(error)).await;
    assert!(
        line.contains(r#""tailsift.sampling.policy","value":{"stringValue":"errors"}"#),
        "{line}"
    );

    // The admin CLI, with the generated token, against standalone's coordinator.
    let policy = dir.path().join("everything.yaml");
    std::fs::write(&policy, "policies:\n  - name: everything\n    always: {}\n").unwrap();
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let apply = Command::new(workspace_bin("tailsift"))
        .args(["policy", "apply"])
        .arg(&policy)
        .args(["--admin", &format!("http://127.0.0.1:{coordinator}")])
        .env("TAILSIFT_TOKEN", token.trim())
        .output()
        .unwrap();
    assert!(apply.status.success(), "{}", String::from_utf8_lossy(&apply.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&apply.stdout).unwrap();
    let version = answer["version"].as_i64().unwrap();
    assert!(version >= 1, "{answer}");
    // Boring traces are kept once the sampler runs the new version.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0u8;
    let line = loop {
        i += 1;
        let boring = trace_id(0xb3, i);
        send_traces(&mut client, &[boring], false).await;
        let needle = hex::encode(boring);
        if let Ok(line) = tokio::time::timeout(Duration::from_secs(2), wait_line(&lines, &needle)).await {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "boring traces never kept after `policy apply`"
        );
    };
    assert!(line.contains(r#""stringValue":"everything""#), "{line}");
    assert!(
        line.contains(&format!(
            r#""tailsift.sampling.policy_version","value":{{"intValue":"{version}"}}"#
        )),
        "{line}"
    );

    // A trace sent just before SIGTERM is still decided and written: the receivers stop first,
    // the sampler a grace period later.
    let last = trace_id(0xe3, 2);
    send_traces(&mut client, &[last], true).await;
    let pid = guard.0.as_ref().unwrap().id();
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let out = guard.0.take().unwrap().wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "exit 0 after SIGTERM; logs:\n{logs}");
    assert!(logs.contains("admin_token"), "the token is printed at start:\n{logs}");
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter().any(|l| l.contains(&hex::encode(last))),
        "the last trace was written before exit; logs:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_otlp_endpoint_kept_traces_go_there_instead() {
    otlp_endpoint("memory").await;
}

/// The same with traces buffered as an index: kept ones are read back from the in-process log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_traces_buffered_as_an_index_kept_ones_are_read_back_whole() {
    otlp_endpoint("index").await;
}

async fn otlp_endpoint(mode: &str) {
    let _serial = IN_PROCESS.lock().await;
    let (sink, endpoint) = tailsift_tests::Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("kept.jsonl");
    let cfg = test_config(
        dir.path(),
        &[
            ("export.endpoint", endpoint),
            ("export.output", output.display().to_string()),
            ("memory.mode", mode.to_string()),
        ],
    );
    let listeners = tailsift_standalone::Listeners::bind(&cfg).await.unwrap();
    let (grpc, _, _) = listeners.ingest.addrs().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(tailsift_standalone::run(cfg, listeners, shutdown.clone()));

    let mut client = TraceServiceClient::connect(format!("http://{grpc}")).await.unwrap();
    let errors: Vec<[u8; 16]> = (0..3).map(|i| trace_id(0xe4, i)).collect();
    let boring: Vec<[u8; 16]> = (0..3).map(|i| trace_id(0xb4, i)).collect();
    send_traces(&mut client, &boring, false).await;
    send_traces(&mut client, &errors, true).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !errors
        .iter()
        .all(|id| sink.traces().get(id).is_some_and(|s| s.len() == 3))
    {
        assert!(
            Instant::now() < deadline,
            "error traces never reached the OTLP endpoint whole"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Errors only: the boring traces (sent first) are dropped, never exported.
    let traces = sink.traces();
    assert_eq!(traces.len(), errors.len(), "only the error traces were exported");
    assert!(boring.iter().all(|id| !traces.contains_key(id)));
    assert!(!output.exists(), "no JSON lines when an endpoint is configured");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("standalone stops")
        .expect("task")
        .expect("standalone exits cleanly");
}

/// One root span with a span event named `event` and `service.name` = `service`.
fn span_with_event(id: [u8; 16], service: &str, event: &str) -> tailsift_otlp::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    let mut req = single_span_request(id, span_id(id[0], id[1], 0), None, false);
    let rs = &mut req.resource_spans[0];
    rs.resource = Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(service.into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    let span = &mut rs.scope_spans[0].spans[0];
    span.events.push(Event {
        time_unix_nano: span.start_time_unix_nano,
        name: event.into(),
        ..Default::default()
    });
    req
}

/// A team brings its OTel collector config (an `ottl_condition` on span events) as the policy
/// file, without saying which format it is; later a Refinery rules file is PUT on the admin API,
/// also without a format. Both decide the traces going through the real pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_policy_formats_decide_through_the_whole_pipeline() {
    let _serial = IN_PROCESS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("kept.jsonl");
    let collector = dir.path().join("otel-collector.yaml");
    std::fs::write(
        &collector,
        "receivers:\n  otlp:\n    protocols: {grpc: {}}\nprocessors:\n  tail_sampling:\n    decision_wait: 2s\n    policies:\n      - name: exceptions\n        type: ottl_condition\n        ottl_condition:\n          error_mode: ignore\n          spanevent:\n            - 'name == \"exception\"'\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling]}\n",
    )
    .unwrap();
    let cfg = test_config(
        dir.path(),
        &[
            ("export.output", output.display().to_string()),
            ("policy.file", collector.display().to_string()),
        ],
    );
    let token = tailsift_standalone::admin_token(&cfg.standalone).unwrap();
    let listeners = tailsift_standalone::Listeners::bind(&cfg).await.unwrap();
    let (grpc, _, metrics_addr) = listeners.ingest.addrs().unwrap();
    let admin = listeners.admin_url().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(tailsift_standalone::run(cfg, listeners, shutdown.clone()));
    let http = reqwest::Client::new();
    let policy = || async {
        http.get(format!("{admin}/v1/policy"))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json::<serde_json::Value>()
            .await
            .ok()
    };
    let metrics = || async {
        http.get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = policy().await.filter(|v| v["version"] == 1) {
            assert_eq!(v["policy"]["format"], "otel_tail_sampling", "detected: {v}");
            break;
        }
        assert!(Instant::now() < deadline, "policy version 1 never published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut client = TraceServiceClient::connect(format!("http://{grpc}")).await.unwrap();
    let exceptions: Vec<[u8; 16]> = (0..6).map(|i| trace_id(0xc1, i)).collect();
    let retries: Vec<[u8; 16]> = (0..6).map(|i| trace_id(0xc2, i)).collect();
    for id in &exceptions {
        client
            .export(span_with_event(*id, "checkout", "exception"))
            .await
            .unwrap();
    }
    for id in &retries {
        client.export(span_with_event(*id, "checkout", "retry")).await.unwrap();
    }
    let out = wait_output(&output, &exceptions, 1, "traces with an exception event").await;
    for id in exceptions.iter().map(hex::encode) {
        assert_eq!(
            attr(&out[&id][0], "tailsift.sampling.policy"),
            Some(&any_value::Value::StringValue("exceptions".into()))
        );
    }

    // The `retry` traces are decided under version 1 too before the rules change (they may sit
    // in partitions whose clocks lag the exceptions' ones; decided under version 2 they would be
    // kept as `checkout` traces).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = metrics().await;
        let decided = metric_value(&m, "tailsift_sampler_decisions_total", &[]);
        if decided >= (exceptions.len() + retries.len()) as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {decided} traces decided under version 1"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Refinery rules, no format: keep `checkout` traces at 1 in 1, drop the rest.
    let rules = "RulesVersion: 2\nSamplers:\n  __default__:\n    RulesBasedSampler:\n      Rules:\n        - Name: keep checkout\n          SampleRate: 1\n          Conditions:\n            - {Field: service.name, Operator: '=', Value: checkout}\n        - Name: drop the rest\n          Drop: true\n";
    let r = http
        .put(format!("{admin}/v1/policy"))
        .bearer_auth(&token)
        .json(&json!({ "document": rules }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let checkout: Vec<[u8; 16]> = (0..4).map(|i| trace_id(0xc3, i)).collect();
    let other: Vec<[u8; 16]> = (0..4).map(|i| trace_id(0xc4, i)).collect();
    loop {
        let v = policy().await.unwrap_or_default();
        if v["version"] == 2 {
            assert_eq!(v["policy"]["format"], "refinery_rules", "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Refinery rules never became version 2: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The sampler switches between traces: wait until it runs version 2.
    loop {
        let m = metrics().await;
        if metric_value(&m, "tailsift_sampler_policy_version", &[]) == 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the sampler never applied version 2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &checkout {
        client.export(span_with_event(*id, "checkout", "retry")).await.unwrap();
    }
    for id in &other {
        client
            .export(span_with_event(*id, "search", "exception"))
            .await
            .unwrap();
    }
    let out = wait_output(&output, &checkout, 1, "checkout traces under the Refinery rules").await;
    for id in checkout.iter().map(hex::encode) {
        assert_eq!(
            attr(&out[&id][0], "tailsift.sampling.policy_version"),
            Some(&any_value::Value::IntValue(2)),
            "{id}"
        );
    }
    // Decided by then (same partition clock, sent before): no `search` trace was kept, even with
    // an exception event that version 1 would have kept.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (out, _) = read_output(&output);
    for id in other.iter().map(hex::encode) {
        assert!(!out.contains_key(&id), "{id} kept under the Refinery rules' drop rule");
    }
    for id in retries.iter().map(hex::encode) {
        assert!(
            !out.contains_key(&id),
            "{id}: no exception event, not kept by version 1"
        );
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
