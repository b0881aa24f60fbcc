//! `tailsift-loadgen --manifest` and `tailsift-verify` end to end, as the fault scripts use them:
//! the load generator sends straight to the verifier (as if a sampler kept everything), the
//! verifier's `check` passes at p = 1 and fails at p = 0.1 (the kept fraction is 50 sigma off),
//! and a verifier that is `down` makes requests fail, which the manifest records as not acked.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tailsift_loadtest::verify::{read_manifest, Report};

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run binary")
}

#[test]
fn manifest_and_verifier_cli() {
    let verify = env!("CARGO_BIN_EXE_tailsift-verify");
    let loadgen = env!("CARGO_BIN_EXE_tailsift-loadgen");
    let (grpc, http) = (free_port(), free_port());
    let _server = Guard(
        Command::new(verify)
            .args(["serve", "--grpc-listen", &format!("127.0.0.1:{grpc}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tailsift-verify"),
    );
    let url = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run(verify, &["stats", "--url", &url]).status.success() {
        assert!(Instant::now() < deadline, "tailsift-verify did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("sent.jsonl");
    let m = manifest.to_str().unwrap();
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let out = run(
        loadgen,
        &[
            "--endpoint",
            &endpoint,
            "--total-spans",
            "2000",
            "--rate",
            "0",
            "--quiet",
            "--seed",
            "5",
        ],
    );
    // Without --manifest nothing is written: the existing flags keep working as before.
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!manifest.exists());
    run(verify, &["reset", "--url", &url]);
    let out = run(
        loadgen,
        &[
            "--endpoint",
            &endpoint,
            "--total-spans",
            "2000",
            "--rate",
            "0",
            "--quiet",
            "--seed",
            "5",
            "--manifest",
            m,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entries = read_manifest(&manifest).unwrap();
    assert_eq!(entries.iter().map(|e| e.spans).sum::<usize>(), 2000);
    assert!(entries.iter().all(|e| e.acked));

    // Everything was "kept": passes at p = 1, fails at p = 0.1.
    let out = run(
        verify,
        &["check", "--url", &url, "--manifest", m, "--probability", "1", "--json"],
    );
    let report: Report = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(out.status.success() && report.pass, "{report:?}");
    assert_eq!(report.lost + report.split + report.duplicate_spans, 0, "{report:?}");
    assert_eq!(report.traces_sent as usize, entries.len());
    assert_eq!(report.spans_kept, 2000);
    let out = run(
        verify,
        &["check", "--url", &url, "--manifest", m, "--probability", "0.1"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));

    // OTLP/HTTP (protobuf, gzip) is recorded the same way.
    let http_manifest = dir.path().join("http.jsonl");
    let hm = http_manifest.to_str().unwrap();
    let out = run(
        loadgen,
        &[
            "--endpoint",
            &url,
            "--protocol",
            "http-proto",
            "--gzip",
            "--total-spans",
            "500",
            "--rate",
            "0",
            "--quiet",
            "--manifest",
            hm,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(
        verify,
        &["check", "--url", &url, "--manifest", hm, "--probability", "1", "--json"],
    );
    let report: Report = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(report.pass && report.spans_kept == 500, "{report:?}");

    // A backend outage: requests fail (one attempt), the manifest says which traces.
    assert!(run(verify, &["down", "--url", &url]).status.success());
    let out = run(
        loadgen,
        &[
            "--endpoint",
            &endpoint,
            "--total-spans",
            "300",
            "--rate",
            "0",
            "--quiet",
            "--max-attempts",
            "1",
            "--manifest",
            m,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "requests fail while the verifier is down");
    let entries = read_manifest(&manifest).unwrap();
    assert!(!entries.is_empty() && entries.iter().all(|e| !e.acked));
    let stats = String::from_utf8(run(verify, &["stats", "--url", &url]).stdout).unwrap();
    assert!(
        stats.contains("\"down\":true") && !stats.contains("\"refused_requests\":0"),
        "{stats}"
    );
    // Traces not acknowledged are not judged: nothing is lost.
    let out = run(
        verify,
        &["check", "--url", &url, "--manifest", m, "--json", "--no-fraction"],
    );
    let report: Report = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report.traces_not_acked, report.traces_sent, "{report:?}");
    assert!(report.pass, "{report:?}");
}
