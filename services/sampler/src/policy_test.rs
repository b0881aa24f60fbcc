//! Offline policy tests (`tailsift policy test POLICY CASES`), in the spirit of `promtool test
//! rules`: traces written as OTLP/JSON files go through the compiled policy exactly as a sampler
//! would see them (the same span extraction), and each decision and the rule that made it are
//! compared with what the case expects. Teams keep policies and their cases in a repository and
//! run this in CI; no coordinator or broker is involved.
//!
//! A cases file (YAML):
//!
//! ```yaml
//! seed: 0                      # cluster hash seed for probabilistic rules (default 0)
//! cases:
//!   - name: errors are kept
//!     traces: traces/checkout-error.json   # OTLP/JSON ExportTraceServiceRequest, relative to this file
//!     expect: { keep: true, policy: errors }
//!   - name: health checks are dropped
//!     traces: traces/health.json
//!     trace_id: 5b8efff798038103d269b633813fc60c   # only this trace of the file (default: each)
//!     expect: { keep: false }            # `policy` omitted: any rule (or none)
//! ```
//!
//! Cases run in order through one engine, so rate limits and budgets carry from case to case;
//! each trace is decided at its own latest span end time.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tailsift_policy::{PolicyDocument, PolicyEngine, PolicyError, PolicyFormat};

use crate::extract::{trace_data, Resources};

/// Largest cases file and traces file read (a test input, not production data).
const MAX_FILE_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PolicyTestError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {message}")]
    Cases { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Policy { path: PathBuf, source: PolicyError },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    seed: u64,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    traces: PathBuf,
    #[serde(default)]
    trace_id: Option<String>,
    expect: Expect,
}

/// What a case expects of each of its traces.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub keep: bool,
    /// The rule that decided; absent: not checked.
    #[serde(default)]
    pub policy: Option<String>,
}

/// The outcome of one trace of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub case: String,
    pub trace_id: String,
    pub expect: Expect,
    pub keep: bool,
    pub policy: Option<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.keep == self.expect.keep
            && self
                .expect
                .policy
                .as_ref()
                .is_none_or(|p| self.policy.as_ref() == Some(p))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PolicyTestError> {
    let meta = std::fs::metadata(path).map_err(|source| PolicyTestError::Read {
        path: path.into(),
        source,
    })?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(PolicyTestError::TooLarge { path: path.into() });
    }
    std::fs::read(path).map_err(|source| PolicyTestError::Read {
        path: path.into(),
        source,
    })
}

/// Parses and compiles the policy at `policy_path` (in `format`, or the detected one).
pub fn compile_file(
    policy_path: &Path,
    format: Option<PolicyFormat>,
) -> Result<(PolicyEngine, PolicyFormat), PolicyTestError> {
    let text = String::from_utf8_lossy(&read(policy_path)?).into_owned();
    let err = |source| PolicyTestError::Policy {
        path: policy_path.into(),
        source,
    };
    let (doc, format) = PolicyDocument::parse(&text, format).map_err(err)?;
    Ok((PolicyEngine::compile(&doc).map_err(err)?, format))
}

/// Runs every case of `cases_path` against the policy at `policy_path`.
pub fn run(
    policy_path: &Path,
    format: Option<PolicyFormat>,
    cases_path: &Path,
) -> Result<Vec<CaseResult>, PolicyTestError> {
    let (mut engine, _) = compile_file(policy_path, format)?;
    let cases_err = |message: String| PolicyTestError::Cases {
        path: cases_path.into(),
        message,
    };
    let text = read(cases_path)?;
    let file: CaseFile = serde_yaml::from_slice(&text).map_err(|e| cases_err(e.to_string()))?;
    if file.cases.is_empty() {
        return Err(cases_err("no cases".into()));
    }
    let dir = cases_path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, case) in file.cases.iter().enumerate() {
        let at = |m: String| cases_err(format!("cases[{i}] ({}): {m}", case.name));
        let only = match &case.trace_id {
            None => None,
            Some(h) => Some(
                hex::decode(h.trim())
                    .ok()
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .ok_or_else(|| at(format!("trace_id `{h}` is not 32 hex digits")))?,
            ),
        };
        let path = dir.join(&case.traces);
        let json = read(&path)?;
        let proto = tailsift_otlp::json::json_to_protobuf(&json).map_err(|e| at(format!("{}: {e}", path.display())))?;
        let split = tailsift_otlp::split_by_trace(
            &proto,
            tailsift_otlp::SplitOptions {
                max_record_bytes: usize::MAX,
            },
        )
        .map_err(|e| at(format!("{}: {e}", path.display())))?;
        if let Some(first) = &split.first_rejection {
            return Err(at(format!("{}: invalid span: {first}", path.display())));
        }
        let mut matched = 0;
        for rec in split.records {
            if only.is_some_and(|t| t != rec.trace_id) {
                continue;
            }
            matched += 1;
            let records = [bytes::Bytes::from(rec.payload)];
            let mut resources = Resources::new();
            let trace = trace_data(rec.trace_id, &records, engine.requirements(), &mut resources);
            let now = trace.spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
            let d = engine.decide(&trace, file.seed, now);
            out.push(CaseResult {
                case: case.name.clone(),
                trace_id: hex::encode(rec.trace_id),
                expect: case.expect.clone(),
                keep: d.keep,
                policy: d.policy,
            });
        }
        if matched == 0 {
            return Err(at(format!("{}: no trace to decide", path.display())));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otlp(traces: &[(&str, bool, u64)]) -> String {
        // (trace id hex, error, duration ms): one root span each.
        let spans: Vec<String> = traces
            .iter()
            .enumerate()
            .map(|(i, (tid, err, ms))| {
                format!(
                    r#"{{"traceId":"{tid}","spanId":"{:016x}","name":"GET /cart","startTimeUnixNano":"1000000000","endTimeUnixNano":"{}","status":{{"code":{}}}}}"#,
                    i + 1,
                    1_000_000_000 + ms * 1_000_000,
                    if *err { 2 } else { 0 }
                )
            })
            .collect();
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"checkout"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            spans.join(",")
        )
    }

    const A: &str = "0102030405060708090a0b0c0d0e0f10";
    const B: &str = "1112131415161718191a1b1c1d1e1f20";

    fn setup(policy: &str, cases: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("traces")).unwrap();
        std::fs::write(dir.path().join("traces/error.json"), otlp(&[(A, true, 5)])).unwrap();
        std::fs::write(
            dir.path().join("traces/mixed.json"),
            otlp(&[(A, true, 5), (B, false, 2000)]),
        )
        .unwrap();
        let p = dir.path().join("policy.yaml");
        std::fs::write(&p, policy).unwrap();
        let c = dir.path().join("cases.yaml");
        std::fs::write(&c, cases).unwrap();
        (dir, p, c)
    }

    const POLICY: &str = "policies:\n  - name: errors\n    status_code: {codes: [ERROR]}\n  - name: slow\n    latency: {threshold_ms: 1000}\n";

    #[test]
    fn cases_pass_and_fail_on_the_decision_and_the_rule() {
        let cases = format!(
            "cases:\n  - name: errors kept\n    traces: traces/error.json\n    expect: {{keep: true, policy: errors}}\n  - name: slow one\n    traces: traces/mixed.json\n    trace_id: {B}\n    expect: {{keep: true, policy: slow}}\n  - name: wrong rule\n    traces: traces/error.json\n    expect: {{keep: true, policy: slow}}\n  - name: wrong decision\n    traces: traces/mixed.json\n    trace_id: {B}\n    expect: {{keep: false}}\n"
        );
        let (_d, p, c) = setup(POLICY, &cases);
        let r = run(&p, None, &c).unwrap();
        let passed: Vec<bool> = r.iter().map(CaseResult::passed).collect();
        assert_eq!(passed, vec![true, true, false, false], "{r:#?}");
        assert_eq!(r[2].policy.as_deref(), Some("errors"));
        assert_eq!(r[1].trace_id, B);
    }

    #[test]
    fn an_otel_policy_is_tested_without_naming_its_format() {
        let otel = "- {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n";
        let (_d, p, c) = setup(
            otel,
            "cases:\n  - name: e\n    traces: traces/mixed.json\n    expect: {keep: true}\n",
        );
        let r = run(&p, None, &c).unwrap();
        assert_eq!(r.len(), 2, "each trace of the file");
        assert!(r[0].passed() && !r[1].passed(), "{r:#?}");
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        for (cases, want) in [
            ("cases: []\n", "no cases"),
            ("cases:\n  - name: x\n    traces: nope.json\n    expect: {keep: true}\n", "nope.json"),
            ("cases:\n  - name: x\n    traces: traces/error.json\n    trace_id: zz\n    expect: {keep: true}\n", "32 hex digits"),
            (
                "cases:\n  - name: x\n    traces: traces/error.json\n    trace_id: 00000000000000000000000000000001\n    expect: {keep: true}\n",
                "no trace to decide",
            ),
            ("cases:\n  - name: x\n    traces: traces/error.json\n    expect: {keep: true, rule: a}\n", "unknown field"),
        ] {
            let (_d, p, c) = setup(POLICY, cases);
            let e = run(&p, None, &c).unwrap_err().to_string();
            assert!(e.contains(want), "{cases}: {e}");
        }
        let (_d, p, c) = setup("policies: [{name: x, latency: {}}]\n", "cases: []\n");
        let e = run(&p, None, &c).unwrap_err().to_string();
        assert!(e.contains("policy.yaml") && e.contains("threshold_ms"), "{e}");
        let (d, p, c) = setup(
            POLICY,
            "cases:\n  - name: x\n    traces: traces/bad.json\n    expect: {keep: true}\n",
        );
        std::fs::write(d.path().join("traces/bad.json"), "{\"resourceSpans\": 7}").unwrap();
        assert!(run(&p, None, &c).is_err());
    }
}
