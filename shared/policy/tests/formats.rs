//! Format auto-detection and the OTel `tail_sampling` processor's top-level options.

use tailsift_policy::{DecisionOptions, Oversized, PolicyDocument, PolicyFormat, Semantics};

const OTEL_LIST: &str = "- name: errors\n  type: status_code\n  status_code: {status_codes: [ERROR]}\n- name: rest\n  type: probabilistic\n  probabilistic: {sampling_percentage: 10}\n";

#[test]
fn every_format_is_read_without_being_named() {
    let (doc, f) = PolicyDocument::parse("policies:\n  - name: e\n    status_code: {codes: [ERROR]}\n", None).unwrap();
    assert_eq!(f, PolicyFormat::Native);
    assert_eq!(doc.semantics, Semantics::Native);

    let (doc, f) = PolicyDocument::parse(r#"{"policies": [{"name": "e", "always": {}}]}"#, None).unwrap();
    assert_eq!((f, doc.policies.len()), (PolicyFormat::Native, 1));

    // The plain OTel policy list a user copies from a collector config.
    let (doc, f) = PolicyDocument::parse(OTEL_LIST, None).unwrap();
    assert_eq!(f, PolicyFormat::OtelTailSampling);
    assert_eq!(doc.semantics, Semantics::OtelTailSampling);
    assert_eq!(doc.policies.len(), 2);
    assert!(
        doc.decision.is_empty(),
        "a bare list has no options: {:?}",
        doc.decision
    );

    // A whole collector config.
    let collector = format!(
        "receivers:\n  otlp: {{}}\nprocessors:\n  batch: {{}}\n  tail_sampling:\n    decision_wait: 10s\n    policies:\n{}service:\n  pipelines:\n    traces: {{receivers: [otlp], processors: [tail_sampling]}}\n",
        OTEL_LIST.lines().map(|l| format!("      {l}\n")).collect::<String>()
    );
    let (doc, f) = PolicyDocument::parse(&collector, None).unwrap();
    assert_eq!(f, PolicyFormat::OtelTailSampling);
    assert_eq!(doc.decision.wait_ms, Some(10_000));
}

#[test]
fn an_explicit_format_wins_and_an_ambiguous_document_names_the_candidates() {
    let e = PolicyDocument::parse(OTEL_LIST, Some(PolicyFormat::Native))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("expected struct") || e.contains("sequence") || e.contains("invalid type"),
        "{e}"
    );
    let e = PolicyDocument::parse("policies: []\n", None).unwrap_err().to_string();
    assert!(
        e.contains("ambiguous") && e.contains("native or otel_tail_sampling"),
        "{e}"
    );
    // With the format named, the same document is read (and its own errors reported).
    let e = PolicyDocument::parse("policies: []\n", Some(PolicyFormat::Native))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one policy"), "{e}");
}

#[test]
fn the_processor_options_are_mapped_with_upstream_semantics() {
    let text = format!(
        "decision_wait: 1m30s\ndecision_wait_after_root_received: 5s\nnum_traces: 20000\nexpected_new_traces_per_sec: 500\ndecision_cache: {{sampled_cache_size: 1000, non_sampled_cache_size: 5000}}\nsample_on_first_match: true\ndrop_pending_traces_on_shutdown: true\nmaximum_trace_size_bytes: 1048576\nblock_on_overflow: false\npolicies:\n{}",
        OTEL_LIST.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let (doc, _) = PolicyDocument::parse(&text, None).unwrap();
    assert!(doc.sample_on_first_match);
    assert_eq!(
        doc.decision,
        DecisionOptions {
            wait_ms: Some(90_000),
            wait_after_root_ms: Some(5_000),
            max_traces: Some(20_000),
            max_trace_bytes: Some(1_048_576),
            oversized: Some(Oversized::Drop),
            cache_traces: Some(5_000),
        }
    );
    // Without decision_wait_after_root_received the root does not bring the decision forward.
    let (doc, _) = PolicyDocument::parse(
        &format!("decision_wait: 10s\npolicies:\n  - {{name: a, type: always_sample}}\n"),
        None,
    )
    .unwrap();
    assert_eq!(doc.decision.wait_after_root_ms, Some(10_000));
    // The options survive a round trip through the native format.
    let yaml = doc.to_yaml().unwrap();
    let (again, f) = PolicyDocument::parse(&yaml, None).unwrap();
    assert_eq!((f, again.decision), (PolicyFormat::Native, doc.decision));
}

#[test]
fn bad_options_are_errors_with_their_path() {
    for (text, path, what) in [
        (
            "decision_wait: ten\npolicies: [{name: a, type: always_sample}]\n",
            "decision_wait",
            "invalid duration",
        ),
        (
            "decision_wait: 10\npolicies: [{name: a, type: always_sample}]\n",
            "decision_wait",
            "expected a duration",
        ),
        (
            "decision_wait: 10x\npolicies: [{name: a, type: always_sample}]\n",
            "decision_wait",
            "invalid duration",
        ),
        (
            "num_traces: -1\npolicies: [{name: a, type: always_sample}]\n",
            "num_traces",
            "non-negative integer",
        ),
        (
            "decision_cache: {sampled: 1}\npolicies: [{name: a, type: always_sample}]\n",
            "decision_cache.sampled",
            "unknown field",
        ),
        (
            "sample_on_first_match: maybe\npolicies: [{name: a, type: always_sample}]\n",
            "sample_on_first_match",
            "boolean",
        ),
        (
            "processors:\n  tail_sampling:\n    decision_wiat: 10s\n    policies: [{name: a, type: always_sample}]\n",
            "processors.tail_sampling.decision_wiat",
            "unknown field",
        ),
    ] {
        let e = PolicyDocument::parse(text, Some(PolicyFormat::OtelTailSampling)).unwrap_err();
        let issue = e
            .issues()
            .into_iter()
            .find(|i| i.path == path)
            .unwrap_or_else(|| panic!("{text}: {e}"));
        assert!(issue.message.contains(what), "{text}: {issue}");
    }
}

#[test]
fn go_durations() {
    for (d, ms) in [
        ("300ms", 300),
        ("10s", 10_000),
        ("1m30s", 90_000),
        ("1.5h", 5_400_000),
        ("1500us", 2),
        ("2h0m0s", 7_200_000),
    ] {
        let (doc, _) = PolicyDocument::parse(
            &format!("decision_wait: \"{d}\"\npolicies: [{{name: a, type: always_sample}}]\n"),
            None,
        )
        .unwrap();
        assert_eq!(doc.decision.wait_ms, Some(ms), "{d}");
    }
    let zero = "decision_wait: 0s\npolicies: [{name: a, type: always_sample}]\n";
    let e = PolicyDocument::parse(zero, None).unwrap_err().to_string();
    assert!(e.contains("decision.wait_ms: must be greater than 0"), "{e}");
    let negative = "decision_wait: -10s\npolicies: [{name: a, type: always_sample}]\n";
    let e = PolicyDocument::parse(negative, None).unwrap_err().to_string();
    assert!(e.contains("invalid duration"), "{e}");
    let huge = format!(
        "decision_wait: \"{}h\"\npolicies: [{{name: a, type: always_sample}}]\n",
        "9".repeat(60)
    );
    assert!(PolicyDocument::parse(&huge, None).is_err());
}
