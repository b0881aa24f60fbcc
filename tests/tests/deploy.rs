//! Static checks of `deploy/docker/Dockerfile` and `deploy/kubernetes/` (no Docker engine or
//! Kubernetes cluster runs here): every manifest parses and is complete, every embedded Tailsift
//! configuration loads and validates with the real config types (and creates its topics with
//! replication factor 3 and `min.insync.replicas` 2), every container runs a real
//! subcommand, every Service and probe names a port its pods declare, the coordinator members
//! match the StatefulSet, and the image exposes the ports the configs listen on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;
use tailsift_tests::workspace_bin;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every document of every manifest file, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/kubernetes");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !v.is_null() {
                out.push((name.clone(), v));
            }
        }
    }
    out
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn load<T: serde::de::DeserializeOwned + tailsift_config::Validate>(
    name: &str,
    text: &str,
    env: Vec<(String, String)>,
) -> T {
    tailsift_config::Sources {
        file: Some((name.into(), text.into())),
        env,
        ..Default::default()
    }
    .load::<T>()
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The pod templates of workloads, by workload name.
fn pods(docs: &[(String, Value)]) -> BTreeMap<String, &Value> {
    docs.iter()
        .map(|(_, d)| d)
        .filter(|d| ["Deployment", "StatefulSet"].contains(&d["kind"].as_str().unwrap_or("")))
        .map(|d| (str_of(&d["metadata"]["name"]).to_string(), &d["spec"]["template"]))
        .collect()
}

#[test]
fn every_manifest_is_complete_and_listed_in_the_kustomization() {
    let docs = manifests();
    assert!(docs.len() >= 10, "{} documents", docs.len());
    for (file, d) in &docs {
        assert!(d["apiVersion"].is_string(), "{file}: apiVersion");
        assert!(d["kind"].is_string(), "{file}: kind");
        if d["kind"] != "Kustomization" {
            assert!(d["metadata"]["name"].is_string(), "{file}: metadata.name");
        }
    }
    let k = docs.iter().find(|(_, d)| d["kind"] == "Kustomization").unwrap();
    let listed: BTreeSet<&str> = k.1["resources"].as_sequence().unwrap().iter().map(str_of).collect();
    let files: BTreeSet<&str> = docs
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| *f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files, "kustomization resources vs files");
    // Workloads select their own pods.
    for (_, d) in &docs {
        if let Some(sel) = d["spec"]["selector"]["matchLabels"].as_mapping() {
            if d["kind"] == "PodDisruptionBudget" {
                continue;
            }
            let labels = d["spec"]["template"]["metadata"]["labels"].as_mapping().unwrap();
            for (k, v) in sel {
                assert_eq!(
                    labels.get(k),
                    Some(v),
                    "{}: selector {k:?}",
                    str_of(&d["metadata"]["name"])
                );
            }
        }
    }
}

#[test]
fn embedded_configs_load_with_the_real_config_types() {
    let docs = manifests();
    let cm = find(&docs, "ConfigMap", "tailsift-config");
    let secret = find(&docs, "Secret", "tailsift-tokens");
    let ingest: tailsift_ingest::IngestConfig = load("ingest.yaml", str_of(&cm["data"]["ingest.yaml"]), vec![]);
    let sampler_token = str_of(&secret["stringData"]["sampler-token"]).to_string();
    let sampler: tailsift_sampler::SamplerConfig = load(
        "sampler.yaml",
        str_of(&cm["data"]["sampler.yaml"]),
        vec![("TAILSIFT_COORDINATOR__TOKEN".into(), sampler_token.clone())],
    );
    let coordinator: tailsift_coordinator::CoordinatorConfig = load(
        "coordinator.yaml",
        str_of(&secret["stringData"]["coordinator.yaml"]),
        vec![],
    );
    assert_eq!(ingest.kafka.topic, sampler.kafka.topic, "one spans topic");
    // A multi-broker Kafka: every topic Tailsift creates survives one broker down.
    for (role, spec) in [
        ("ingest", ingest.kafka.topic_spec.clone()),
        ("sampler", sampler.kafka.created_topic_spec(1)),
    ] {
        assert_eq!(
            spec.replication_factor, 3,
            "{role}: kafka.topic_spec.replication_factor"
        );
        assert_eq!(
            spec.configs.get("min.insync.replicas").map(String::as_str),
            Some("2"),
            "{role}: kafka.topic_spec.configs"
        );
    }
    assert_eq!(sampler.coordinator.token.as_deref(), Some(sampler_token.as_str()));
    assert!(
        coordinator.admin.tokens.iter().any(|t| t.token == sampler_token),
        "the samplers' token is a coordinator token"
    );
    assert_eq!(
        coordinator.raft.cluster_token.as_deref(),
        Some(str_of(&secret["stringData"]["raft-cluster-token"]))
    );

    // Members are the StatefulSet's pods, by their stable names; samplers watch every one.
    let sts = find(&docs, "StatefulSet", "tailsift-coordinator");
    let replicas = sts["spec"]["replicas"].as_u64().unwrap() as usize;
    let svc = str_of(&sts["spec"]["serviceName"]);
    assert_eq!(coordinator.cluster.members.len(), replicas);
    for (i, m) in coordinator.cluster.members.iter().enumerate() {
        assert_eq!(m.id, i as u64 + 1, "pod ordinal + 1");
        let host = format!("tailsift-coordinator-{i}.{svc}");
        assert_eq!(m.raft_addr, format!("{host}:{}", coordinator.raft.listen.port()));
        assert_eq!(m.admin_addr, format!("{host}:{}", coordinator.admin.listen.port()));
        assert!(sampler
            .coordinator
            .endpoints
            .contains(&format!("http://{}", m.raft_addr)));
    }

    // Prometheus annotations point at each role's metrics port.
    let pod = pods(&docs);
    let annotated = |w: &str| {
        str_of(&pod[w]["metadata"]["annotations"]["prometheus.io/port"])
            .parse::<u16>()
            .unwrap()
    };
    assert_eq!(annotated("tailsift-ingest"), ingest.admin.listen.port());
    assert_eq!(annotated("tailsift-sampler"), sampler.admin.listen.port());
    assert_eq!(annotated("tailsift-coordinator"), coordinator.admin.listen.port());
}

#[test]
fn containers_run_real_subcommands_and_services_name_declared_ports() {
    let docs = manifests();
    let pods = pods(&docs);
    for (name, tpl) in &pods {
        for c in tpl["spec"]["containers"].as_sequence().unwrap() {
            let args: Vec<&str> = c["args"].as_sequence().unwrap().iter().map(str_of).collect();
            // `sh -c 'exec /usr/local/bin/tailsift coordinator ...'` or args for the entrypoint.
            let sub = match c["command"].as_sequence() {
                Some(_) => args[0]
                    .split_whitespace()
                    .skip_while(|w| !w.ends_with("tailsift"))
                    .nth(1)
                    .unwrap_or_else(|| panic!("{name}: no tailsift subcommand in {args:?}")),
                None => args[0],
            };
            let out = std::process::Command::new(workspace_bin("tailsift"))
                .args([sub, "--help"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: `tailsift {sub}` is not a subcommand");
            let declared: BTreeSet<&str> = c["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|p| str_of(&p["name"]))
                .collect();
            for probe in ["readinessProbe", "livenessProbe"] {
                let port = str_of(s(c, &[probe, "httpGet", "port"]));
                assert!(declared.contains(port), "{name}: {probe} port {port}");
            }
        }
    }
    for (_, svc) in docs.iter().filter(|(_, d)| d["kind"] == "Service") {
        let sel = svc["spec"]["selector"].as_mapping().unwrap();
        let targets: Vec<&Value> = pods
            .values()
            .copied()
            .filter(|t| {
                let labels = t["metadata"]["labels"].as_mapping().unwrap();
                sel.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        let name = str_of(&svc["metadata"]["name"]);
        assert!(!targets.is_empty(), "service {name} selects no pods");
        for p in svc["spec"]["ports"].as_sequence().unwrap() {
            let port = str_of(&p["targetPort"]);
            assert!(
                targets.iter().all(|t| t["spec"]["containers"][0]["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|cp| cp["name"] == port && cp["protocol"] == p["protocol"])),
                "service {name}: target port {port} not declared with the same protocol"
            );
        }
    }
}

#[test]
fn the_image_builds_the_binary_and_exposes_the_default_ports() {
    let text = std::fs::read_to_string(repo().join("deploy/docker/Dockerfile")).unwrap();
    assert!(text.contains("cargo build --release --locked -p tailsift"));
    assert!(text.contains(r#"ENTRYPOINT ["/usr/local/bin/tailsift"]"#));
    let exposed: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().map(str::to_string))
        .collect();
    let ingest = tailsift_ingest::IngestConfig::default();
    let sampler = tailsift_sampler::SamplerConfig::default();
    let coordinator = tailsift_coordinator::CoordinatorConfig::default();
    let j = &ingest.jaeger;
    let mut want = vec![
        ingest.otlp.grpc_listen.port().to_string(),
        ingest.otlp.http_listen.port().to_string(),
        ingest.zipkin.listen.port().to_string(),
        ingest.admin.listen.port().to_string(),
        sampler.admin.listen.port().to_string(),
        coordinator.raft.listen.port().to_string(),
        coordinator.admin.listen.port().to_string(),
    ];
    for a in [j.http_listen, j.grpc_listen].into_iter().flatten() {
        want.push(a.port().to_string());
    }
    for a in [j.compact_udp_listen, j.binary_udp_listen].into_iter().flatten() {
        want.push(format!("{}/udp", a.port()));
    }
    for p in want {
        assert!(exposed.contains(&p), "EXPOSE lacks {p}: {exposed:?}");
    }
    // The default command is a real subcommand.
    let cmd = text.lines().find_map(|l| l.strip_prefix("CMD ")).expect("CMD");
    let first: Vec<String> = serde_json::from_str(cmd).unwrap();
    let out = std::process::Command::new(workspace_bin("tailsift"))
        .args([first[0].as_str(), "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "CMD {first:?}");
}
