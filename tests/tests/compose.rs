//! Static checks of `deploy/compose/` (no Docker engine runs here): `docker-compose config`
//! renders the file with and without the `load` profile; every service the README names exists;
//! every bind-mounted file exists in the repository; every Tailsift service's config file loads
//! and validates with the real config types, with the environment and flags the compose file gives
//! it; the ports, host names, tokens and broker address the configs use are the ones the compose
//! file declares; scaled services have no fixed name or host port; Prometheus's config passes
//! `promtool check config` and scrapes every role under the job names the alert rules and the
//! dashboard use; Grafana's provisioning points at the mounted dashboard and at Prometheus.
//!
//! `docker-compose` (Debian's package, 1.29) and `promtool` (Debian's `prometheus`) are installed
//! by the test command, `bash tests/run.sh`, when missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_yaml::Value;
use tailsift_tests::workspace_bin;

/// The services the compose file and its README promise.
const SERVICES: &[&str] = &[
    "kafka",
    "coordinator-1",
    "coordinator-2",
    "coordinator-3",
    "ingest",
    "sampler",
    "jaeger",
    "prometheus",
    "grafana",
];
const COORDINATORS: &[&str] = &["coordinator-1", "coordinator-2", "coordinator-3"];
/// Services run with the Tailsift image.
const TAILSIFT_SERVICES: &[&str] = &[
    "coordinator-1",
    "coordinator-2",
    "coordinator-3",
    "ingest",
    "sampler",
    "loadgen",
];
/// Services meant for `--scale`.
const SCALED: &[&str] = &["ingest", "sampler", "loadgen"];
/// The scrape jobs deploy/prometheus/alerts.yaml and deploy/grafana/tailsift.json rely on.
const JOBS: &[&str] = &["tailsift-coordinator", "tailsift-ingest", "tailsift-sampler"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn compose_file() -> PathBuf {
    repo().join("deploy/compose/docker-compose.yaml")
}

/// `docker-compose -f deploy/compose/docker-compose.yaml [--profile P] config`, parsed.
fn render_with(profiles: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = Command::new("docker-compose");
    cmd.arg("-f").arg(compose_file());
    for p in profiles {
        cmd.args(["--profile", p]);
    }
    cmd.arg("config").current_dir(repo());
    for v in [
        "TAILSIFT_IMAGE",
        "COMPOSE_PROFILES",
        "COMPOSE_FILE",
        "COMPOSE_PROJECT_NAME",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run docker-compose ({e}): the test command `bash tests/run.sh` installs it \
             (Debian package docker-compose) when it is missing"
        )
    });
    assert!(
        out.status.success(),
        "docker-compose {profiles:?} config failed (`bash tests/run.sh` installs docker-compose when \
         it is missing):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).unwrap_or_else(|e| panic!("rendered compose config: {e}"))
}

/// The rendered config with the `load` profile (every service), rendered once.
fn rendered() -> &'static Value {
    static R: OnceLock<Value> = OnceLock::new();
    R.get_or_init(|| render_with(&["load"], &[]))
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    let s = &c["services"][name];
    assert!(s.is_mapping(), "no service {name} in the rendered compose config");
    s
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => panic!("not a scalar: {v:?}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => vec![],
        Value::Sequence(s) => s.iter().map(str_of).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => panic!("not a list: {v:?}"),
    }
}

/// A service's environment, from the mapping or the `KEY=VALUE` list form.
fn env(svc: &Value) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Value::Null => BTreeMap::new(),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| (str_of(k), if v.is_null() { String::new() } else { str_of(v) }))
            .collect(),
        Value::Sequence(s) => s
            .iter()
            .map(|e| {
                let e = str_of(e);
                let (k, v) = e.split_once('=').unwrap_or((&e, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        v => panic!("environment: {v:?}"),
    }
}

#[derive(Debug)]
struct Mount {
    /// Host path of a bind mount, or the volume's name.
    source: String,
    target: String,
    bind: bool,
    read_only: bool,
}

/// A service's mounts, from the short (`src:dst:mode`, docker-compose 1.x) or the long syntax.
fn mounts(svc: &Value) -> Vec<Mount> {
    let Some(list) = svc["volumes"].as_sequence() else {
        return vec![];
    };
    list.iter()
        .map(|m| match m {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                assert!(parts.len() >= 2, "anonymous volume {s:?}: give it a name");
                Mount {
                    source: parts[0].to_string(),
                    target: parts[1].to_string(),
                    bind: parts[0].starts_with('/') || parts[0].starts_with('.'),
                    read_only: parts.get(2).is_some_and(|o| o.split(',').any(|o| o == "ro")),
                }
            }
            Value::Mapping(_) => Mount {
                source: str_of(&m["source"]),
                target: str_of(&m["target"]),
                bind: m["type"] == "bind",
                read_only: m["read_only"].as_bool().unwrap_or(false),
            },
            v => panic!("volume entry {v:?}"),
        })
        .collect()
}

/// The host file mounted at `target` in `svc` (a bind mount of the file or of a parent folder).
fn host_path(svc_name: &str, svc: &Value, target: &str) -> PathBuf {
    for m in mounts(svc).iter().filter(|m| m.bind) {
        if m.target == target {
            return PathBuf::from(&m.source);
        }
        if let Some(rest) = target.strip_prefix(&format!("{}/", m.target)) {
            return Path::new(&m.source).join(rest);
        }
    }
    panic!("{svc_name}: nothing is mounted at {target}");
}

#[derive(Debug)]
struct Port {
    host_ip: Option<String>,
    /// The host port, when one is fixed.
    published: Option<String>,
    target: u16,
    protocol: String,
}

/// A service's ports, from the short (`[ip:][host:]container[/proto]`) or the long syntax.
fn ports(svc: &Value) -> Vec<Port> {
    let Some(list) = svc["ports"].as_sequence() else {
        return vec![];
    };
    list.iter()
        .map(|p| match p {
            Value::Mapping(_) => Port {
                host_ip: p["host_ip"].as_str().map(str::to_string),
                published: match &p["published"] {
                    Value::Null => None,
                    v => Some(str_of(v)).filter(|s| !s.is_empty()),
                },
                target: str_of(&p["target"]).parse().unwrap(),
                protocol: p["protocol"].as_str().unwrap_or("tcp").to_string(),
            },
            v => {
                let s = str_of(v);
                let (spec, protocol) = s.split_once('/').unwrap_or((&s, "tcp"));
                let parts: Vec<&str> = spec.split(':').collect();
                let (host_ip, published, target) = match parts.as_slice() {
                    [t] => (None, None, *t),
                    [h, t] => (None, Some(*h), *t),
                    [ip, h, t] => (Some(*ip), Some(*h), *t),
                    _ => panic!("port {s:?}"),
                };
                Port {
                    host_ip: host_ip.map(str::to_string),
                    published: published.filter(|h| !h.is_empty()).map(str::to_string),
                    target: target
                        .parse()
                        .unwrap_or_else(|_| panic!("port {s:?}: one container port, not a range")),
                    protocol: protocol.to_string(),
                }
            }
        })
        .collect()
}

/// The value after `flag` in `args` (`--flag value` or `--flag=value`).
fn flag(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{flag}=")).map(str::to_string)
        }
    })
}

/// `host:port` of an `http://host:port[/...]` URL.
fn host_port(url: &str) -> (String, u16) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{url}: not http://"));
    let authority = rest.split('/').next().unwrap();
    let (h, p) = authority.rsplit_once(':').unwrap_or_else(|| panic!("{url}: no port"));
    (h.to_string(), p.parse().unwrap())
}

/// Runs a workspace binary with `args` and `--help`: clap refuses unknown subcommands and flags
/// and bad values before it prints the help.
fn assert_real_command(bin: &str, args: &[String], what: &str) {
    let out = Command::new(workspace_bin(bin))
        .args(args)
        .arg("--help")
        .env_remove("TAILSIFT_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: `{bin} {}` is not a valid command line:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Tailsift config of a service: its `--config` file (through its mounts), its `TAILSIFT_*`
/// environment and, for coordinators, `--node-id`; loaded and validated with the real types.
fn load<T: serde::de::DeserializeOwned + tailsift_config::Validate>(c: &Value, name: &str) -> T {
    let svc = service(c, name);
    let args = strings(&svc["command"]);
    let path = flag(&args, "--config").unwrap_or_else(|| panic!("{name}: no --config in {args:?}"));
    let file = host_path(name, svc, &path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{name}: {}: {e}", file.display()));
    let mut sets = vec![];
    if let Some(id) = flag(&args, "--node-id") {
        sets.push(("node_id".to_string(), id));
    }
    tailsift_config::Sources {
        file: Some((file.display().to_string(), text)),
        env: env(svc)
            .into_iter()
            .filter(|(k, _)| k.starts_with("TAILSIFT_"))
            .collect(),
        sets,
    }
    .load::<T>()
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The Kafka listeners of a `NAME://host:port,...` list, by name.
fn listeners(list: &str) -> BTreeMap<String, (String, u16)> {
    list.split(',')
        .map(|l| {
            let (name, addr) = l.trim().split_once("://").unwrap_or_else(|| panic!("listener {l}"));
            let (h, p) = addr.rsplit_once(':').unwrap();
            (name.to_string(), (h.to_string(), p.parse().unwrap()))
        })
        .collect()
}

#[test]
fn renders_with_and_without_the_load_profile_and_has_every_service() {
    let plain = render_with(&[], &[]);
    let load = rendered();
    for name in SERVICES {
        service(&plain, name);
        service(load, name);
    }
    // The load generator only with `--profile load` (docker-compose 1.x lists it in `config`
    // either way; it starts it only with the profile).
    let loadgen = service(load, "loadgen");
    assert_eq!(strings(&loadgen["profiles"]), ["load"], "loadgen: profiles");
    for (name, svc) in plain["services"].as_mapping().unwrap() {
        if name != "loadgen" {
            assert!(svc["profiles"].is_null(), "{name:?} should start without a profile");
        }
    }
    // Every other image is pinned to a version.
    for (name, svc) in load["services"].as_mapping().unwrap() {
        let image = str_of(&svc["image"]);
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && !tag.contains('/') && tag != "latest",
            "{name:?}: image {image} is not pinned to a version"
        );
        for dep in svc["depends_on"].as_mapping().into_iter().flat_map(|m| m.keys()) {
            service(load, &str_of(dep));
        }
    }
}

#[test]
fn the_tailsift_image_is_one_parameter_and_one_service_builds_it() {
    let default = rendered();
    let custom = render_with(&["load"], &[("TAILSIFT_IMAGE", "registry.example/tailsift:1.2.3")]);
    for (name, svc) in default["services"].as_mapping().unwrap() {
        let name = str_of(name);
        let (d, c) = (
            str_of(&svc["image"]),
            str_of(&custom["services"][name.as_str()]["image"]),
        );
        if TAILSIFT_SERVICES.contains(&name.as_str()) {
            assert_eq!(d, "tailsift:dev", "{name}: default image");
            assert_eq!(c, "registry.example/tailsift:1.2.3", "{name}: TAILSIFT_IMAGE");
        } else {
            assert_eq!(d, c, "{name} does not use the Tailsift image");
        }
    }
    for name in TAILSIFT_SERVICES {
        service(default, name);
    }

    // Exactly one service builds the image, from the repository's Dockerfile.
    let built: Vec<String> = default["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, s)| !s["build"].is_null())
        .map(|(n, _)| str_of(n))
        .collect();
    assert_eq!(built.len(), 1, "services with build: {built:?}");
    let b = &default["services"][built[0].as_str()]["build"];
    let context = PathBuf::from(str_of(&b["context"]));
    assert_eq!(
        context.canonicalize().unwrap(),
        repo().canonicalize().unwrap(),
        "build context"
    );
    let dockerfile = context.join(str_of(&b["dockerfile"]));
    assert_eq!(
        dockerfile.canonicalize().unwrap(),
        repo().join("deploy/docker/Dockerfile").canonicalize().unwrap()
    );
    // docker-compose 1.x pulls a missing image for a service without `build:` when it comes
    // first in its start order (dependencies first, then file order): the building service must
    // be the first Tailsift service of the file and depend on nothing.
    let raw: Value = serde_yaml::from_str(&std::fs::read_to_string(compose_file()).unwrap()).unwrap();
    let order: Vec<String> = raw["services"].as_mapping().unwrap().keys().map(str_of).collect();
    let first = order.iter().find(|n| TAILSIFT_SERVICES.contains(&n.as_str())).unwrap();
    assert_eq!(
        first, &built[0],
        "the service with build: comes first of the Tailsift services"
    );
    assert!(
        default["services"][first.as_str()]["depends_on"].is_null(),
        "{first}: build service must not depend on anything"
    );

    // The load generator's binary is in the image, and its command line is real.
    let loadgen = service(default, "loadgen");
    let entry = strings(&loadgen["entrypoint"]);
    assert_eq!(entry.len(), 1, "loadgen entrypoint {entry:?}");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("COPY --from=build") && l.trim_end().ends_with(&format!(" {}", entry[0]))),
        "the Dockerfile does not install {}",
        entry[0]
    );
    let bin = Path::new(&entry[0]).file_name().unwrap().to_str().unwrap();
    assert!(
        text.contains(&format!("--bin {bin}")),
        "the Dockerfile's cargo build does not build {bin}"
    );
    assert_real_command(bin, &strings(&loadgen["command"]), "loadgen");
}

#[test]
fn every_mounted_file_exists_in_the_repository_and_is_read_only() {
    let c = rendered();
    let root = repo().canonicalize().unwrap();
    let declared: BTreeSet<String> = c["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(str_of).collect())
        .unwrap_or_default();
    let mut named = BTreeMap::<String, String>::new();
    for (name, svc) in c["services"].as_mapping().unwrap() {
        let name = str_of(name);
        for m in mounts(svc) {
            if m.bind {
                let p = Path::new(&m.source);
                assert!(p.exists(), "{name}: mounted file {} does not exist", m.source);
                assert!(
                    p.canonicalize().unwrap().starts_with(&root),
                    "{name}: {} is outside the repository",
                    m.source
                );
                assert!(m.read_only, "{name}: bind mount {} should be read-only (:ro)", m.target);
            } else {
                assert!(declared.contains(&m.source), "{name}: volume {} not declared", m.source);
                if let Some(other) = named.insert(m.source.clone(), name.clone()) {
                    panic!("volume {} is shared by {other} and {name}", m.source);
                }
            }
        }
        for kind in ["configs", "secrets"] {
            if !svc[kind].is_null() {
                for entry in svc[kind].as_sequence().unwrap() {
                    let key = if entry.is_string() {
                        str_of(entry)
                    } else {
                        str_of(&entry["source"])
                    };
                    assert!(!c[kind][key.as_str()].is_null(), "{name}: {kind} {key} not declared");
                }
            }
        }
    }
    for kind in ["configs", "secrets"] {
        for (key, v) in c[kind].as_mapping().into_iter().flatten() {
            if let Some(f) = v["file"].as_str() {
                assert!(Path::new(f).exists(), "{kind} {key:?}: {f} does not exist");
            }
        }
    }
    // The scaled services keep nothing in a named volume (replicas would share it).
    for name in SCALED {
        assert!(
            mounts(service(c, name)).iter().all(|m| m.bind),
            "{name}: a named volume would be shared by every replica"
        );
    }
}

#[test]
fn kafka_is_a_single_kraft_node_tailsift_reaches_by_its_advertised_listener() {
    let c = rendered();
    let kafka = service(c, "kafka");
    let image = str_of(&kafka["image"]);
    assert!(image.starts_with("apache/kafka:"), "{image}: the official image");
    let e = env(kafka);
    let get = |k: &str| e.get(k).cloned().unwrap_or_else(|| panic!("kafka: {k} not set"));
    let roles: BTreeSet<String> = get("KAFKA_PROCESS_ROLES").split(',').map(str::to_string).collect();
    assert_eq!(roles, BTreeSet::from(["broker".to_string(), "controller".to_string()]));
    let bound = listeners(&get("KAFKA_LISTENERS"));
    let advertised = listeners(&get("KAFKA_ADVERTISED_LISTENERS"));
    let protocols: BTreeMap<String, String> = get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP")
        .split(',')
        .map(|p| {
            let (a, b) = p.split_once(':').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    for name in bound.keys() {
        assert!(protocols.contains_key(name), "listener {name} has no security protocol");
    }
    // The image formats its storage with CLUSTER_ID, which Kafka parses as 16 bytes of URL-safe
    // base64: 22 characters.
    let id = get("CLUSTER_ID");
    assert!(
        id.len() == 22 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "kafka: CLUSTER_ID {id:?} is not a base64 UUID (`kafka-storage.sh random-uuid`)"
    );
    let controller = get("KAFKA_CONTROLLER_LISTENER_NAMES");
    let voters = get("KAFKA_CONTROLLER_QUORUM_VOTERS");
    let (id, addr) = voters.split_once('@').unwrap();
    assert_eq!(id, get("KAFKA_NODE_ID"), "the one voter is this node");
    let (vh, vp) = addr.rsplit_once(':').unwrap();
    assert!(
        vh == "kafka" || Some(vh) == kafka["hostname"].as_str(),
        "voter host {vh}"
    );
    assert_eq!(
        vp.parse::<u16>().unwrap(),
        bound[&controller].1,
        "voter port is the controller listener's"
    );
    assert!(!advertised.contains_key(&controller), "controller listener advertised");
    for k in [
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ] {
        assert_eq!(get(k), "1", "{k}: one broker");
    }
    // Tailsift creates its topics with its own partition counts; the broker must not create them
    // first (with one partition) on a producer's metadata request.
    assert_eq!(get("KAFKA_AUTO_CREATE_TOPICS_ENABLE"), "false");
    assert!(!kafka["healthcheck"]["test"].is_null(), "kafka: healthcheck");
    let log_dir = get("KAFKA_LOG_DIRS");
    assert!(
        mounts(kafka).iter().any(|m| !m.bind && m.target == log_dir),
        "kafka: {log_dir} is not on a named volume"
    );

    let ingest: tailsift_ingest::IngestConfig = load(c, "ingest");
    let sampler: tailsift_sampler::SamplerConfig = load(c, "sampler");
    for (role, brokers) in [("ingest", &ingest.kafka.brokers), ("sampler", &sampler.kafka.brokers)] {
        for b in brokers.split(',') {
            let (h, p) = b.trim().rsplit_once(':').unwrap();
            let p: u16 = p.parse().unwrap();
            assert!(
                advertised
                    .iter()
                    .any(|(name, (ah, ap))| ah == h && *ap == p && bound.get(name).map(|b| b.1) == Some(p)),
                "{role}: kafka.brokers {b} is not an advertised listener of the kafka service"
            );
            assert_eq!(h, "kafka", "{role}: the broker by its service name");
        }
        let deps = &service(c, role)["depends_on"]["kafka"]["condition"];
        assert_eq!(deps, "service_healthy", "{role}: depends_on kafka service_healthy");
    }
    // One broker: every topic Tailsift creates has one replica.
    assert_eq!(
        ingest.kafka.topic_spec.replication_factor, 1,
        "ingest: kafka.topic_spec"
    );
    assert!(ingest.kafka.topic_spec.create, "ingest creates the spans topic");
    assert_eq!(
        sampler.kafka.created_topic_spec(1).replication_factor,
        1,
        "sampler: kafka.topic_spec"
    );
    assert_eq!(ingest.kafka.topic, sampler.kafka.topic, "one spans topic");
}

#[test]
fn tailsift_services_load_their_configs_and_use_the_ports_they_listen_on() {
    let c = rendered();
    // Every command line is a real `tailsift` command line (healthchecks too).
    for name in TAILSIFT_SERVICES.iter().filter(|n| **n != "loadgen") {
        let svc = service(c, name);
        assert!(
            svc["entrypoint"].is_null(),
            "{name}: runs the image's entrypoint, tailsift"
        );
        assert_real_command("tailsift", &strings(&svc["command"]), name);
        let test = strings(&svc["healthcheck"]["test"]);
        if let Some(rest) = test.strip_prefix(&["CMD".to_string(), "/usr/local/bin/tailsift".to_string()]) {
            assert_real_command("tailsift", rest, &format!("{name} healthcheck"));
        } else {
            assert!(
                test.is_empty(),
                "{name}: the image has no shell tools, healthcheck {test:?}"
            );
        }
    }

    let ingest: tailsift_ingest::IngestConfig = load(c, "ingest");
    let sampler: tailsift_sampler::SamplerConfig = load(c, "sampler");
    let coordinators: Vec<(&str, tailsift_coordinator::CoordinatorConfig)> =
        COORDINATORS.iter().map(|n| (*n, load(c, n))).collect();

    // Ingest: published container ports are ports it listens on; the load generator sends to
    // its OTLP/gRPC port.
    let j = &ingest.jaeger;
    let mut listening = vec![
        ingest.otlp.grpc_listen.port(),
        ingest.otlp.http_listen.port(),
        ingest.zipkin.listen.port(),
        ingest.admin.listen.port(),
    ];
    listening.extend([j.http_listen, j.grpc_listen].into_iter().flatten().map(|a| a.port()));
    let udp: Vec<u16> = [j.compact_udp_listen, j.binary_udp_listen]
        .into_iter()
        .flatten()
        .map(|a| a.port())
        .collect();
    for p in ports(service(c, "ingest")) {
        let ok = if p.protocol == "udp" {
            udp.contains(&p.target)
        } else {
            listening.contains(&p.target)
        };
        assert!(ok, "ingest: port {}/{} is not one it listens on", p.target, p.protocol);
    }
    let loadgen = service(c, "loadgen");
    let endpoint = flag(&strings(&loadgen["command"]), "--endpoint")
        .or_else(|| env(loadgen).get("TAILSIFT_LOADGEN_ENDPOINT").cloned())
        .expect("loadgen: no --endpoint or TAILSIFT_LOADGEN_ENDPOINT");
    assert_eq!(
        host_port(&endpoint),
        ("ingest".to_string(), ingest.otlp.grpc_listen.port()),
        "loadgen endpoint"
    );

    // Coordinators: the members are the three services, each with the node id its command
    // gives, on the ports the config listens on; their data on their own volume.
    let (_, first) = &coordinators[0];
    let ids: Vec<u64> = coordinators.iter().map(|(_, c)| c.node_id).collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        coordinators.len(),
        "distinct node ids {ids:?}"
    );
    assert_eq!(first.cluster.members.len(), coordinators.len(), "cluster.members");
    assert!(first.raft.cluster_token.is_some(), "raft.cluster_token");
    for (name, cfg) in &coordinators {
        assert_eq!(
            cfg.cluster.members.len(),
            first.cluster.members.len(),
            "{name}: one members list"
        );
        let m = cfg
            .cluster
            .members
            .iter()
            .find(|m| m.id == cfg.node_id)
            .unwrap_or_else(|| panic!("{name}: node id {} is not a member", cfg.node_id));
        assert_eq!(
            m.raft_addr,
            format!("{name}:{}", cfg.raft.listen.port()),
            "{name}: raft_addr"
        );
        assert_eq!(
            m.admin_addr,
            format!("{name}:{}", cfg.admin.listen.port()),
            "{name}: admin_addr"
        );
        let svc = service(c, name);
        assert!(
            mounts(svc)
                .iter()
                .any(|v| !v.bind && cfg.data_dir.starts_with(&v.target)),
            "{name}: data_dir {} is not on a named volume",
            cfg.data_dir.display()
        );
        for p in ports(svc) {
            assert_eq!(
                p.target,
                cfg.admin.listen.port(),
                "{name}: only the admin API is published"
            );
        }
        // The healthcheck's admin URL and token.
        let e = env(svc);
        if let Some(url) = e.get("TAILSIFT_ADMIN_URL") {
            assert_eq!(host_port(url).1, cfg.admin.listen.port(), "{name}: TAILSIFT_ADMIN_URL");
            let token = e
                .get("TAILSIFT_TOKEN")
                .expect("TAILSIFT_TOKEN beside TAILSIFT_ADMIN_URL");
            assert!(
                cfg.admin.tokens.iter().any(|t| &t.token == token),
                "{name}: TAILSIFT_TOKEN"
            );
        }
    }
    assert!(
        ports(service(c, "coordinator-1"))
            .iter()
            .any(|p| p.target == first.admin.listen.port() && p.published.is_some()),
        "coordinator-1: admin API published to the host"
    );

    // Samplers: watch every coordinator with a read-only token; export to Jaeger.
    let endpoints: BTreeSet<String> = sampler.coordinator.endpoints.iter().cloned().collect();
    let want: BTreeSet<String> = coordinators
        .iter()
        .map(|(n, cfg)| format!("http://{n}:{}", cfg.raft.listen.port()))
        .collect();
    assert_eq!(endpoints, want, "sampler: coordinator.endpoints");
    let token = sampler
        .coordinator
        .token
        .as_deref()
        .expect("sampler: coordinator token");
    let t = first
        .admin
        .tokens
        .iter()
        .find(|t| t.token == token)
        .expect("the samplers' token is a coordinator token");
    assert_eq!(
        t.role,
        tailsift_coordinator::config::Role::ReadOnly,
        "samplers use the read-only token"
    );
    assert_eq!(sampler.export.kind, tailsift_sampler::config::ExportKind::OtlpGrpc);
    let (h, p) = host_port(&sampler.export.endpoint);
    assert_eq!(h, "jaeger", "sampler: export.endpoint names the jaeger service");
    assert_eq!(p, 4317, "sampler: Jaeger's OTLP/gRPC port");
    service(c, &h);
    assert!(
        ports(service(c, "jaeger"))
            .iter()
            .any(|p| p.target == 16686 && p.published.is_some()),
        "jaeger: UI published"
    );
}

#[test]
fn scaled_services_have_no_fixed_name_or_host_port() {
    let c = rendered();
    for name in SCALED {
        let svc = service(c, name);
        for key in ["container_name", "hostname"] {
            assert!(svc[key].is_null(), "{name}: {key} would clash between replicas");
        }
        for p in ports(svc) {
            assert!(
                p.published.is_none(),
                "{name}: host port {:?} fixed for {}",
                p.published,
                p.target
            );
        }
    }
    // The samplers' worker id defaults to `<hostname>:<admin port>`, and the container's hostname
    // is unique per replica: nothing may fix it.
    let sampler: tailsift_sampler::SamplerConfig = load(c, "sampler");
    assert!(
        sampler.coordinator.worker_id.is_none(),
        "sampler: coordinator.worker_id is per replica"
    );
    // Host ports stay on the laptop.
    for (name, svc) in c["services"].as_mapping().unwrap() {
        for p in ports(svc) {
            assert_eq!(
                p.host_ip.as_deref(),
                Some("127.0.0.1"),
                "{name:?}: port {} bound to all interfaces",
                p.target
            );
        }
    }
}

/// Prometheus's config file (from `--config.file` and its mounts) and the service.
fn prometheus(c: &Value) -> (PathBuf, Value) {
    let svc = service(c, "prometheus");
    let args = strings(&svc["command"]);
    let target = flag(&args, "--config.file").unwrap_or_else(|| "/etc/prometheus/prometheus.yml".into());
    let file = host_path("prometheus", svc, &target);
    let v = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    (file, v)
}

fn promtool() -> PathBuf {
    for p in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).chain([PathBuf::from("/usr/bin")]) {
        if p.join("promtool").exists() {
            return p.join("promtool");
        }
    }
    panic!("promtool not found: the test command `bash tests/run.sh` installs Debian's prometheus package");
}

#[test]
fn prometheus_scrapes_every_role_under_the_alerting_job_names_and_passes_promtool() {
    let c = rendered();
    let (_, prom) = prometheus(c);
    let ingest: tailsift_ingest::IngestConfig = load(c, "ingest");
    let sampler: tailsift_sampler::SamplerConfig = load(c, "sampler");
    let coordinator: tailsift_coordinator::CoordinatorConfig = load(c, "coordinator-1");
    let want: BTreeMap<&str, (Vec<&str>, u16)> = BTreeMap::from([
        (
            "tailsift-coordinator",
            (COORDINATORS.to_vec(), coordinator.admin.listen.port()),
        ),
        ("tailsift-ingest", (vec!["ingest"], ingest.admin.listen.port())),
        ("tailsift-sampler", (vec!["sampler"], sampler.admin.listen.port())),
    ]);
    let jobs = prom["scrape_configs"].as_sequence().expect("scrape_configs");
    let names: BTreeSet<String> = jobs.iter().map(|j| str_of(&j["job_name"])).collect();
    assert_eq!(names, JOBS.iter().map(|j| j.to_string()).collect(), "job names");
    for job in jobs {
        let name = str_of(&job["job_name"]);
        let (services, port) = &want[name.as_str()];
        let sd = job["dns_sd_configs"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: dns_sd_configs (every scaled replica is scraped)"));
        let mut found = BTreeSet::new();
        for d in sd {
            assert_eq!(d["type"], "A", "{name}: dns_sd type A");
            assert_eq!(d["port"].as_u64(), Some(*port as u64), "{name}: metrics port");
            for n in strings(&d["names"]) {
                service(c, &n);
                found.insert(n);
            }
        }
        let services: BTreeSet<String> = services.iter().map(|s| s.to_string()).collect();
        assert_eq!(found, services, "{name}: scraped services");
        let path = job["metrics_path"].as_str().unwrap_or("/metrics");
        assert_eq!(path, "/metrics", "{name}: metrics_path");
    }

    // The rule files are the repository's, mounted read-only, and pass promtool.
    let svc = service(c, "prometheus");
    let rules: Vec<String> = strings(&prom["rule_files"]);
    assert!(!rules.is_empty(), "rule_files");
    let alerts = repo().join("deploy/prometheus/alerts.yaml");
    let mut mounted_alerts = false;
    let dir = tempfile::tempdir().unwrap();
    let mut local = prom.clone();
    let mut local_rules = vec![];
    for (i, r) in rules.iter().enumerate() {
        let host = host_path("prometheus", svc, r);
        mounted_alerts |= host.canonicalize().ok() == alerts.canonicalize().ok();
        let copy = dir.path().join(format!("rules-{i}.yaml"));
        std::fs::copy(&host, &copy).unwrap_or_else(|e| panic!("rule file {}: {e}", host.display()));
        local_rules.push(Value::String(copy.display().to_string()));
    }
    assert!(
        mounted_alerts,
        "deploy/prometheus/alerts.yaml is not among the rule files"
    );
    local["rule_files"] = Value::Sequence(local_rules);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, serde_yaml::to_string(&local).unwrap()).unwrap();
    let promtool = promtool();
    for args in [
        vec!["check".to_string(), "config".into(), config.display().to_string()],
        vec!["check".to_string(), "rules".into(), alerts.display().to_string()],
    ] {
        let out = Command::new(&promtool).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The jobs the alert rules and the dashboard select are jobs Prometheus has.
    let dashboard = std::fs::read_to_string(repo().join("deploy/grafana/tailsift.json")).unwrap();
    let dashboard = dashboard.replace("\\\"", "\"");
    for (what, text) in [
        ("alerts.yaml", std::fs::read_to_string(&alerts).unwrap()),
        ("tailsift.json", dashboard),
    ] {
        for (regex, value) in job_selectors(&text) {
            let values: Vec<&str> = if regex {
                value.split('|').collect()
            } else {
                vec![value.as_str()]
            };
            for v in values {
                let literal = v.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
                if literal {
                    assert!(JOBS.contains(&v), "{what}: job {v:?} is not scraped");
                }
            }
        }
    }
    assert!(
        ports(svc).iter().any(|p| p.target == 9090 && p.published.is_some()),
        "prometheus: UI published"
    );
}

/// `job="x"` and `job=~"a|b"` selectors in a text: (is a regex, value).
fn job_selectors(text: &str) -> Vec<(bool, String)> {
    let mut out = vec![];
    let mut rest = text;
    while let Some(i) = rest.find("job=") {
        rest = &rest[i + 4..];
        let regex = rest.starts_with('~');
        let r = rest.trim_start_matches('~');
        if let Some(r) = r.strip_prefix('"') {
            if let Some(end) = r.find('"') {
                out.push((regex, r[..end].to_string()));
            }
        }
    }
    out
}

#[test]
fn grafana_provisions_prometheus_and_the_mounted_dashboard() {
    let c = rendered();
    let svc = service(c, "grafana");
    let e = env(svc);
    assert_eq!(e.get("GF_AUTH_ANONYMOUS_ENABLED").map(String::as_str), Some("true"));
    assert_eq!(
        e.get("GF_AUTH_ANONYMOUS_ORG_ROLE").map(String::as_str),
        Some("Viewer"),
        "anonymous: viewers only"
    );
    let provisioning = |kind: &str| -> Vec<Value> {
        mounts(svc)
            .iter()
            .filter(|m| m.target.starts_with(&format!("/etc/grafana/provisioning/{kind}/")))
            .map(|m| serde_yaml::from_str(&std::fs::read_to_string(&m.source).unwrap()).unwrap())
            .collect()
    };
    // The data source: the prometheus service on its port.
    let sources: Vec<Value> = provisioning("datasources")
        .iter()
        .flat_map(|f| f["datasources"].as_sequence().cloned().unwrap_or_default())
        .collect();
    let prom = sources
        .iter()
        .find(|d| d["type"] == "prometheus")
        .expect("a provisioned prometheus data source");
    assert_eq!(
        host_port(&str_of(&prom["url"])),
        ("prometheus".to_string(), 9090),
        "data source url"
    );
    assert_eq!(prom["isDefault"].as_bool(), Some(true), "the default data source");
    let uid = str_of(&prom["uid"]);

    // The dashboard: mounted into a folder a file provider reads.
    let dashboards = repo().join("deploy/grafana/tailsift.json").canonicalize().unwrap();
    let mount = mounts(svc)
        .into_iter()
        .find(|m| Path::new(&m.source).canonicalize().ok() == Some(dashboards.clone()))
        .expect("deploy/grafana/tailsift.json is mounted into grafana");
    let folder = Path::new(&mount.target).parent().unwrap();
    let providers: Vec<Value> = provisioning("dashboards")
        .iter()
        .flat_map(|f| f["providers"].as_sequence().cloned().unwrap_or_default())
        .collect();
    assert!(
        providers
            .iter()
            .any(|p| p["type"] == "file" && Path::new(&str_of(&p["options"]["path"])) == folder),
        "no file provider reads {}",
        folder.display()
    );
    if let Some(home) = e.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH") {
        assert_eq!(home, &mount.target, "home dashboard path");
    }
    // Every data source the dashboard names is the provisioned one, a data source variable, or
    // Grafana's built-in one.
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&dashboards).unwrap()).unwrap();
    assert!(
        d.get("__inputs").is_none(),
        "dashboard has __inputs: provisioning does not fill them"
    );
    let variables: BTreeSet<String> = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "datasource")
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    let mut stack = vec![&d];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(u) = o
                    .get("datasource")
                    .and_then(|ds| ds.get("uid"))
                    .and_then(|u| u.as_str())
                {
                    let var = u.trim_start_matches('$').trim_start_matches('{').trim_end_matches('}');
                    assert!(
                        u == uid || u == "-- Grafana --" || (u.starts_with('$') && variables.contains(var)),
                        "dashboard data source uid {u:?} is neither {uid:?} nor a data source variable"
                    );
                }
                stack.extend(o.values());
            }
            serde_json::Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    assert!(
        ports(svc).iter().any(|p| p.target == 3000 && p.published.is_some()),
        "grafana: UI published"
    );
}

#[test]
fn the_readme_names_the_commands_it_documents() {
    let readme = std::fs::read_to_string(repo().join("deploy/compose/README.md")).unwrap();
    for s in [
        "--scale ingest=3 --scale sampler=3",
        "--profile load",
        "docker-compose down -v",
        "http://127.0.0.1:3000",
        "http://127.0.0.1:16686",
        "http://127.0.0.1:9090",
        "http://127.0.0.1:9710",
        "docker-compose port ingest 4317",
    ] {
        assert!(readme.contains(s), "deploy/compose/README.md does not mention `{s}`");
    }
    // The README's tokens are the compose file's.
    let c = rendered();
    let coordinator: tailsift_coordinator::CoordinatorConfig = load(c, "coordinator-1");
    for t in &coordinator.admin.tokens {
        assert!(readme.contains(&t.token), "README does not give the {} token", t.name);
    }
}
