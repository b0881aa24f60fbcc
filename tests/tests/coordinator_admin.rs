//! Coordinator admin API beyond policies (in-process, ports bound to 0, data in temp dirs):
//! runtime membership changes (3 -> 4 -> 3 with writes throughout), a minority that cannot
//! commit, the OpenAPI document against the served routes, the Jaeger remote sampling endpoint
//! and the coordinator metrics; tokens on the Watch and Raft gRPC services; TLS on both ports
//! (certificates generated at test time) with the watch client, the HTTP client and the CLI.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tailsift_coordinator::config::{Role, Token};
use tailsift_tests::{CoordinatorCluster, ADMIN_TOKEN, CLUSTER_TOKEN, READ_TOKEN};
use tokio_util::sync::CancellationToken;

/// The tests share one process-wide metrics recorder (gauges are labelled by node id, which
/// repeats across clusters) and two cores: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const POLICY_A: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n";

async fn put(c: &CoordinatorCluster, node: usize, doc: &str) -> (u16, Value) {
    c.request(
        node,
        "PUT",
        "/v1/policy",
        Some(ADMIN_TOKEN),
        Some(json!({ "document": doc })),
    )
    .await
}

async fn call(
    http: &reqwest::Client,
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http
        .request(method.parse().unwrap(), format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(60));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    match r.send().await {
        Ok(resp) => {
            let st = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        }
        Err(e) => (0, Value::String(format!("request failed: {e}"))),
    }
}

/// A coordinator started outside the bootstrap membership (it waits to be added).
struct Extra {
    id: u64,
    raft_addr: String,
    admin_addr: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tailsift_coordinator::Error>>,
    _dir: tempfile::TempDir,
}

async fn start_extra(id: u64) -> Extra {
    let raft = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = tailsift_coordinator::CoordinatorConfig {
        node_id: id,
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    c.raft.listen = raft.local_addr().unwrap();
    c.raft.heartbeat_interval = Duration::from_millis(100);
    c.raft.election_timeout_min = Duration::from_millis(500);
    c.raft.election_timeout_max = Duration::from_millis(1000);
    c.raft.snapshot_after_entries = 3;
    c.raft.cluster_token = Some(CLUSTER_TOKEN.into());
    c.admin.listen = admin.local_addr().unwrap();
    c.admin.tokens = vec![
        Token {
            name: "ops".into(),
            token: ADMIN_TOKEN.into(),
            role: Role::Admin,
        },
        Token {
            name: "viewer".into(),
            token: READ_TOKEN.into(),
            role: Role::ReadOnly,
        },
    ];
    tailsift_config::Validate::validate(&c).unwrap();
    let (raft_addr, admin_addr) = (c.raft.listen.to_string(), c.admin.listen.to_string());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(tailsift_coordinator::run(
        c,
        tailsift_coordinator::Listeners { raft, admin },
        shutdown.clone(),
    ));
    Extra {
        id,
        raft_addr,
        admin_addr,
        shutdown,
        task,
        _dir: dir,
    }
}

async fn status(c: &CoordinatorCluster, i: usize) -> Value {
    let (st, s) = c.request(i, "GET", "/v1/cluster/status", Some(READ_TOKEN), None).await;
    assert_eq!(st, 200, "{s}");
    s
}

fn voters(s: &Value) -> BTreeSet<u64> {
    s["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["voter"] == true)
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_to_four_and_shrinks_to_three_while_writes_keep_succeeding() {
    let _serial = SERIAL.lock().await;
    let mut c = CoordinatorCluster::start(3).await;
    let leader = c.wait_for_leader(&[0, 1, 2]).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    assert_eq!(put(&c, leader, POLICY_A).await.0, 200);
    let s = status(&c, leader).await;
    let leader_admin = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == leader as u64 + 1)
        .unwrap()["admin_addr"]
        .as_str()
        .unwrap()
        .to_string();

    // A writer publishing a new version every 100 ms for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, addr) = (stop.clone(), leader_admin.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut results = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let doc = format!(
                    "policies:\n  - name: p{n}\n    probabilistic: {{ percentage: {} }}\n",
                    n % 100
                );
                results.push(
                    call(
                        &http,
                        &addr,
                        "PUT",
                        "/v1/policy",
                        Some(ADMIN_TOKEN),
                        Some(json!({ "document": doc })),
                    )
                    .await,
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            results
        })
    };

    // 3 -> 4: node 4 starts empty and outside the bootstrap list, is added as learner, promoted.
    let extra = start_extra(4).await;
    let http = reqwest::Client::new();
    let new_member = json!({ "id": 4, "raft_addr": extra.raft_addr, "admin_addr": extra.admin_addr });
    // Only the leader changes membership; a follower names it.
    let (st, body) = c
        .request(
            followers[0],
            "POST",
            "/v1/cluster/members",
            Some(ADMIN_TOKEN),
            Some(new_member.clone()),
        )
        .await;
    assert_eq!(st, 421, "{body}");
    assert_eq!(body["leader"], leader as u64 + 1);
    assert_eq!(body["leader_admin_addr"], leader_admin.as_str());
    let (st, body) = c
        .request(
            leader,
            "POST",
            "/v1/cluster/members",
            Some(READ_TOKEN),
            Some(new_member.clone()),
        )
        .await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = c
        .request(
            leader,
            "POST",
            "/v1/cluster/members",
            Some(ADMIN_TOKEN),
            Some(json!({ "id": 4, "raft_addr": "nohost", "admin_addr": extra.admin_addr })),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = c
        .request(
            leader,
            "POST",
            "/v1/cluster/members",
            Some(ADMIN_TOKEN),
            Some(new_member.clone()),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(voters(&body), BTreeSet::from([1, 2, 3, 4]));
    let (st, body) = c
        .request(
            leader,
            "POST",
            "/v1/cluster/members",
            Some(ADMIN_TOKEN),
            Some(new_member.clone()),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = status(&c, i).await;
            if voters(&s) == BTreeSet::from([1, 2, 3, 4]) {
                break;
            }
            assert!(Instant::now() < deadline, "node {i} does not see 4 voters: {s}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Node 4 holds the replicated state: the leader's current version, with the same document.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, lp) = c.request(leader, "GET", "/v1/policy", Some(READ_TOKEN), None).await;
    let v = lp["version"].as_u64().unwrap();
    assert!(v >= 2, "the writer made progress: {lp}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let p4 = loop {
        let (st, p) = call(&http, &extra.admin_addr, "GET", "/v1/policy", Some(READ_TOKEN), None).await;
        if st == 200 && p["version"].as_u64().is_some_and(|x| x >= v) {
            break p;
        }
        assert!(Instant::now() < deadline, "node 4 did not reach version {v}: {st} {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, h) = c
        .request(leader, "GET", "/v1/policy/history", Some(READ_TOKEN), None)
        .await;
    let same = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["version"] == v)
        .unwrap();
    let (_, h4) = call(
        &http,
        &extra.admin_addr,
        "GET",
        "/v1/policy/history",
        Some(READ_TOKEN),
        None,
    )
    .await;
    let same4 = h4["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["version"] == v)
        .unwrap();
    assert_eq!(same, same4);
    assert_eq!(p4["seeds"], lp["seeds"]);
    let (_, s4) = call(
        &http,
        &extra.admin_addr,
        "GET",
        "/v1/cluster/status",
        Some(READ_TOKEN),
        None,
    )
    .await;
    assert_eq!(s4["leader"], leader as u64 + 1, "{s4}");
    assert_eq!(voters(&s4), BTreeSet::from([1, 2, 3, 4]));

    // 4 -> 3: remove an original follower.
    let gone = followers[0];
    let (st, body) = c
        .request(leader, "DELETE", "/v1/cluster/members/99", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(st, 404, "{body}");
    let (st, body) = c
        .request(leader, "DELETE", "/v1/cluster/members/x", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = c
        .request(
            leader,
            "DELETE",
            &format!("/v1/cluster/members/{}", gone + 1),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let expect: BTreeSet<u64> = [leader as u64 + 1, followers[1] as u64 + 1, 4].into();
    assert_eq!(voters(&body), expect);
    assert_eq!(
        body["members"].as_array().unwrap().len(),
        3,
        "removed from the node list too: {body}"
    );
    c.stop(gone).await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let results = writer.await.unwrap();
    assert!(results.len() >= 5, "{results:?}");
    for (st, body) in &results {
        assert_eq!(*st, 200, "a write failed during the membership changes: {body}");
    }

    // Node 4 is a real voter: with the other original follower stopped too, the leader and node
    // 4 are a majority of {leader, follower, 4} and still commit.
    c.stop(followers[1]).await;
    let (st, body) = put(&c, leader, POLICY_A).await;
    assert_eq!(st, 200, "{body}");
    let v = body["version"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, p) = call(&http, &extra.admin_addr, "GET", "/v1/policy", Some(READ_TOKEN), None).await;
        if st == 200 && p["version"].as_u64() == Some(v) {
            break;
        }
        assert!(Instant::now() < deadline, "node 4 did not apply version {v}: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    extra.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), extra.task)
        .await
        .expect("node 4 stops")
        .unwrap()
        .unwrap();
    let _ = extra.id;
    c.stop_all().await;
}

/// A write sent to a follower is answered once that follower applied it too: a read from the
/// same node right after sees it (the console reloads what it changed from the node it talks
/// to, and its policy page does not poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_follower_is_seen_by_a_read_from_it() {
    let _serial = SERIAL.lock().await;
    let mut c = CoordinatorCluster::start(3).await;
    let leader = c.wait_for_leader(&[0, 1, 2]).await;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    for n in 1..=20 {
        let doc = format!("policies:\n  - name: p{n}\n    probabilistic: {{ percentage: {n} }}\n");
        let (st, w) = if n % 5 == 0 {
            c.request(
                follower,
                "POST",
                "/v1/policy/rollback",
                Some(ADMIN_TOKEN),
                Some(json!({ "version": 1 })),
            )
            .await
        } else {
            put(&c, follower, &doc).await
        };
        assert_eq!(st, 200, "{w}");
        let (st, cur) = c.request(follower, "GET", "/v1/policy", Some(READ_TOKEN), None).await;
        assert_eq!(st, 200, "{cur}");
        assert_eq!(
            cur["version"], w["version"],
            "write {n}: answered before the follower applied it"
        );
        let (_, hist) = c
            .request(follower, "GET", "/v1/policy/history", Some(READ_TOKEN), None)
            .await;
        assert_eq!(hist["versions"][0]["version"], w["version"], "{hist}");
    }
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_the_cluster_commits_again_when_a_majority_is_back() {
    let _serial = SERIAL.lock().await;
    let mut c = CoordinatorCluster::start(3).await;
    let leader = c.wait_for_leader(&[0, 1, 2]).await;
    let (st, body) = put(&c, leader, POLICY_A).await;
    assert_eq!(st, 200, "{body}");
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    c.stop(others[0]).await;
    c.stop(others[1]).await;

    // The survivor (the old leader) cannot reach a majority: the write fails within the bound.
    let t = Instant::now();
    let (st, body) = put(&c, leader, "policies:\n  - name: all\n    always: {}\n").await;
    let took = t.elapsed();
    assert_eq!(st, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not committed"), "{body}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let (_, p) = c.request(leader, "GET", "/v1/policy", Some(READ_TOKEN), None).await;
    assert_eq!(p["version"], 1, "nothing was applied: {p}");
    // Membership cannot change without a majority either (bounded: 503). The proposed change
    // (removing the node that stays down) stays in the survivor's log: the leader and the node
    // restarted below are a majority of the old and of the new configuration.
    let (st, body) = c
        .request(
            leader,
            "DELETE",
            &format!("/v1/cluster/members/{}", others[1] + 1),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(st, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not committed"), "{body}");

    // One node back: two of three, the cluster commits again.
    c.restart(others[0]).await;
    let now_leader = c.wait_for_leader(&[leader, others[0]]).await;
    let (st, body) = put(&c, now_leader, POLICY_A).await;
    assert_eq!(st, 200, "{body}");
    let v = body["version"].as_u64().unwrap();
    assert!(v >= 2, "{body}");
    for i in [leader, others[0]] {
        c.wait_for_version(i, v).await;
    }
    c.stop_all().await;
}

fn documented_ops(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            out.insert((path.clone(), method.to_uppercase()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_served_routes_and_their_auth() {
    let _serial = SERIAL.lock().await;
    let mut c = CoordinatorCluster::start(1).await;
    c.wait_for_leader(&[0]).await;
    let (st, doc) = c.request(0, "GET", "/openapi.json", None, None).await;
    assert_eq!(st, 200, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(
        doc,
        serde_json::to_value(tailsift_coordinator::admin::document()).unwrap()
    );

    // Everything the router serves is documented with the same access, and nothing else is.
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, method, access) in tailsift_coordinator::admin::served_routes() {
        let op = &doc["paths"][&path][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {path} is served but not documented");
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        use tailsift_coordinator::admin::Access;
        match access {
            Access::Public => assert!(!secured, "{method} {path}: documented as secured"),
            Access::Read => assert!(secured && op["x-tailsift-role"] == "read_only", "{method} {path}: {op}"),
            Access::Admin => assert!(secured && op["x-tailsift-role"] == "admin", "{method} {path}: {op}"),
        }
        served.insert((path.to_string(), method.to_string()));
    }
    for p in tailsift_coordinator::admin::openapi::TELEMETRY_ROUTES {
        served.insert((p.to_string(), "GET".into()));
    }
    assert_eq!(documented_ops(&doc), served);

    // Every documented operation answers (not 404/405) as documented: unauthenticated, with a
    // read-only token, with an admin token; each status is among its documented responses.
    for (path, method) in documented_ops(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let mut url = path.replace("{id}", "99");
        if path == "/api/sampling" || path == "/sampling" {
            url.push_str("?service=checkout");
        }
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        let admin_only = op["x-tailsift-role"] == "admin";
        let body = (method != "GET" && method != "DELETE").then(|| json!({}));
        let documented = |st: u16| op["responses"].get(st.to_string()).is_some();
        let (st, b) = c.request(0, &method, &url, None, body.clone()).await;
        assert!(documented(st), "{method} {url} without a token: undocumented {st} {b}");
        if secured {
            assert_eq!(st, 401, "{method} {url} without a token: {b}");
            let (st, b) = c.request(0, &method, &url, Some(READ_TOKEN), body.clone()).await;
            assert!(documented(st), "{method} {url} read-only: undocumented {st} {b}");
            if admin_only {
                assert_eq!(st, 403, "{method} {url} read-only: {b}");
                let (st, b) = c.request(0, &method, &url, Some(ADMIN_TOKEN), body.clone()).await;
                assert!(
                    documented(st) && st != 401 && st != 403,
                    "{method} {url} admin: {st} {b}"
                );
                // Admin operations given `{}` or an unknown id reach their handler's own checks.
                assert!(st == 400 || st == 404 || st == 200, "{method} {url} admin: {st} {b}");
                if st == 404 {
                    assert!(b["error"].is_string(), "a handler's 404, not the router's: {b}");
                }
            } else {
                assert!(st != 401 && st != 403, "{method} {url} read-only: {st} {b}");
            }
        } else {
            assert!(st == 200 || st == 503, "{method} {url} public: {st} {b}");
        }
    }
    // And a path that is not documented is not served.
    let (st, _) = c.request(0, "GET", "/v1/nothing-here", Some(ADMIN_TOKEN), None).await;
    assert_eq!(st, 404);
    c.stop_all().await;
}

/// Checks `v` against an OpenAPI 3.1 (JSON Schema) `schema` of `doc`: `$ref`, `oneOf`/`anyOf`/
/// `allOf`, `type` (one or a list), `enum`, `required`, `properties`, `additionalProperties`,
/// `items`. Returns where it does not hold.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/components/schemas/").expect("a component reference");
        let target = &doc["components"]["schemas"][name];
        assert!(target.is_object(), "{at}: dangling reference {r}");
        return conforms(doc, target, v, &format!("{at}<{name}>"));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema[key].as_array() {
            if !alts.iter().any(|s| conforms(doc, s, v, at).is_ok()) {
                return Err(format!(
                    "{at}: {v} matches none of {key} {}",
                    Value::Array(alts.clone())
                ));
            }
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            conforms(doc, s, v, at)?;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "null" => v.is_null(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        other => panic!("{at}: unknown type {other}"),
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        return Err(format!("{at}: {v} is not {types:?}"));
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(v) {
            return Err(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let Some(o) = v.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !o.contains_key(r) {
                return Err(format!("{at}: required property `{r}` missing in {v}"));
            }
        }
        for (k, x) in o {
            if let Some(ps) = schema["properties"].get(k) {
                conforms(doc, ps, x, &format!("{at}.{k}"))?;
            } else if schema["additionalProperties"].is_object() {
                conforms(doc, &schema["additionalProperties"], x, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(a), Some(items)) = (v.as_array(), schema.get("items")) {
        for (i, x) in a.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Calls every route of the admin route table on a live node, with the token its access needs,
/// and checks each JSON answer against the schema the OpenAPI document declares for its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_with_the_schema_its_openapi_document_declares() {
    use tailsift_coordinator::admin::Access;
    let _serial = SERIAL.lock().await;
    let mut c = CoordinatorCluster::start(1).await;
    c.wait_for_leader(&[0]).await;
    let (_, doc) = c.request(0, "GET", "/openapi.json", None, None).await;
    let policy = json!({ "document": "policies:\n  - name: all\n    probabilistic: { percentage: 50 }\n" });
    let settings = json!({ "settings": { "history_limit": 20, "sampler": { "send_delay_ms": 1000 } } });
    let new_member = json!({ "id": 1, "raft_addr": "127.0.0.1:1", "admin_addr": "127.0.0.1:2" });
    // (method, path template, URL, body, expected status), in an order where each succeeds.
    let calls: Vec<(&str, &str, &str, Option<Value>, u16)> = vec![
        ("PUT", "/v1/policy", "/v1/policy", Some(policy.clone()), 200),
        ("GET", "/v1/policy", "/v1/policy", None, 200),
        (
            "POST",
            "/v1/policy/validate",
            "/v1/policy/validate",
            Some(policy.clone()),
            200,
        ),
        (
            "POST",
            "/v1/policy/rollback",
            "/v1/policy/rollback",
            Some(json!({ "version": 1 })),
            200,
        ),
        ("GET", "/v1/policy/history", "/v1/policy/history", None, 200),
        (
            "PUT",
            "/v1/policy/shadow",
            "/v1/policy/shadow",
            Some(policy.clone()),
            200,
        ),
        ("GET", "/v1/policy/shadow", "/v1/policy/shadow", None, 200),
        (
            "POST",
            "/v1/policy/shadow/promote",
            "/v1/policy/shadow/promote",
            Some(json!({ "revision": 99 })),
            409,
        ),
        (
            "POST",
            "/v1/policy/shadow/promote",
            "/v1/policy/shadow/promote",
            Some(json!({ "revision": 1 })),
            200,
        ),
        ("DELETE", "/v1/policy/shadow", "/v1/policy/shadow", None, 200),
        ("PUT", "/v1/settings", "/v1/settings", Some(settings), 200),
        ("GET", "/v1/settings", "/v1/settings", None, 200),
        ("POST", "/v1/seed/rotate", "/v1/seed/rotate", None, 200),
        ("GET", "/v1/cluster/status", "/v1/cluster/status", None, 200),
        // A single node cannot grow or shrink here: their documented errors.
        (
            "POST",
            "/v1/cluster/members",
            "/v1/cluster/members",
            Some(new_member),
            409,
        ),
        (
            "DELETE",
            "/v1/cluster/members/{id}",
            "/v1/cluster/members/99",
            None,
            404,
        ),
        ("GET", "/v1/workers", "/v1/workers", None, 200),
        ("GET", "/v1/overview", "/v1/overview", None, 200),
        ("GET", "/v1/whoami", "/v1/whoami", None, 200),
        ("GET", "/v1/cluster/nodes", "/v1/cluster/nodes", None, 200),
        (
            "POST",
            "/v1/captures",
            "/v1/captures",
            Some(json!({ "match": "attributes[\"http.route\"] == \"/cart\"", "since": "5m" })),
            200,
        ),
        ("GET", "/v1/captures", "/v1/captures", None, 200),
        ("GET", "/v1/captures/{id}", "/v1/captures/1", None, 200),
        ("DELETE", "/v1/captures/{id}", "/v1/captures/1", None, 200),
        ("GET", "/v1/captures/{id}", "/v1/captures/99", None, 404),
        (
            "POST",
            "/v1/policy/whatif",
            "/v1/policy/whatif",
            Some(json!({ "document": "policies:\n  - name: all\n    always: {}\n", "since": "5m" })),
            200,
        ),
        ("GET", "/v1/policy/whatif/{id}", "/v1/policy/whatif/2", None, 200),
        ("GET", "/v1/policy/whatif/{id}", "/v1/policy/whatif/1", None, 404),
        (
            "POST",
            "/v1/captures",
            "/v1/captures",
            Some(json!({ "match": "attributes[", "since": "5m" })),
            400,
        ),
        ("GET", "/openapi.json", "/openapi.json", None, 200),
        ("GET", "/api/sampling", "/api/sampling?service=checkout", None, 200),
        ("GET", "/sampling", "/sampling?service=checkout", None, 200),
        // Error answers: invalid policy, unknown version, no token, read-only token on a write.
        (
            "PUT",
            "/v1/policy",
            "/v1/policy",
            Some(json!({ "document": "policies: [{name: x}]" })),
            400,
        ),
        (
            "POST",
            "/v1/policy/rollback",
            "/v1/policy/rollback",
            Some(json!({ "version": 999 })),
            404,
        ),
        ("GET", "/v1/policy", "/v1/policy", None, 401),
        ("DELETE", "/v1/policy/shadow", "/v1/policy/shadow", None, 403),
    ];
    let table: std::collections::BTreeMap<(String, String), Access> = tailsift_coordinator::admin::served_routes()
        .into_iter()
        .map(|(p, m, a)| ((p, m.to_string()), a))
        .collect();
    let mut called = BTreeSet::new();
    for (method, path, url, body, expect) in calls {
        let access = table[&(path.to_string(), method.to_string())];
        let token = match (access, expect) {
            (_, 401) | (Access::Public, _) => None,
            (_, 403) | (Access::Read, _) => Some(READ_TOKEN),
            (Access::Admin, _) => Some(ADMIN_TOKEN),
        };
        let (st, answer) = c.request(0, method, url, token, body).await;
        assert_eq!(st, expect, "{method} {url}: {answer}");
        let response = &doc["paths"][path][method.to_lowercase()]["responses"][st.to_string()];
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path}: no JSON schema documented for {st}: {response}"
        );
        if let Err(e) = conforms(&doc, schema, &answer, &format!("{method} {path} {st}")) {
            panic!("{e}");
        }
        called.insert((path.to_string(), method.to_string()));
    }
    assert_eq!(called, table.keys().cloned().collect(), "every table route is called");
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_remote_sampling_follows_the_policy_and_metrics_are_exported() {
    let _serial = SERIAL.lock().await;
    let mut c = CoordinatorCluster::start(1).await;
    c.wait_for_leader(&[0]).await;
    // Before any policy: everything is sent (the tail samplers decide).
    let (st, s) = c.request(0, "GET", "/api/sampling?service=checkout", None, None).await;
    assert_eq!(st, 200, "{s}");
    assert_eq!(
        s,
        json!({ "strategyType": "PROBABILISTIC", "probabilisticSampling": { "samplingRate": 1.0 } })
    );
    let (st, s) = c.request(0, "GET", "/api/sampling", None, None).await;
    assert_eq!(st, 400, "{s}");
    assert!(s.as_str().unwrap().contains("'service' parameter"), "{s}");

    let doc = concat!(
        "policies:\n",
        "  - name: errors\n    status_code: { codes: [ERROR] }\n",
        "  - name: cart\n    match: { service: checkout, span_name: [GET /cart] }\n    probabilistic: { percentage: 50 }\n",
        "  - name: checkout\n    match: { service: checkout }\n    probabilistic: { percentage: 25 }\n",
        "  - name: ads\n    match: { service: ads }\n    rate_limiting: { traces_per_second: 12 }\n",
        "  - name: rest\n    probabilistic: { percentage: 5 }\n",
    );
    let (st, body) = put(&c, 0, doc).await;
    assert_eq!(st, 200, "{body}");
    let resp = reqwest::Client::new()
        .get(format!(
            "http://{}/api/sampling?service=checkout",
            status(&c, 0).await["members"][0]["admin_addr"].as_str().unwrap()
        ))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let s: Value = resp.json().await.unwrap();
    assert_eq!(
        s,
        json!({
            "strategyType": "PROBABILISTIC",
            "probabilisticSampling": { "samplingRate": 0.25 },
            "operationSampling": {
                "defaultSamplingProbability": 0.25,
                "defaultLowerBoundTracesPerSecond": 0.0,
                "perOperationStrategies": [ { "operation": "GET /cart", "probabilisticSampling": { "samplingRate": 0.5 } } ],
            },
        })
    );
    let (_, s) = c.request(0, "GET", "/api/sampling?service=ads", None, None).await;
    assert_eq!(
        s,
        json!({ "strategyType": "RATE_LIMITING", "rateLimitingSampling": { "maxTracesPerSecond": 12 } })
    );
    for service in ["ads", "checkout", "billing"] {
        let (_, a) = c
            .request(0, "GET", &format!("/sampling?service={service}"), None, None)
            .await;
        let (_, b) = c
            .request(0, "GET", &format!("/api/sampling?service={service}"), None, None)
            .await;
        assert_eq!(a, b, "the agent path answers like the collector path");
    }
    let (st, _) = c.request(0, "GET", "/sampling", None, None).await;
    assert_eq!(st, 400);
    let (_, s) = c.request(0, "GET", "/api/sampling?service=billing", None, None).await;
    assert_eq!(
        s,
        json!({ "strategyType": "PROBABILISTIC", "probabilisticSampling": { "samplingRate": 0.05 } })
    );

    // Metrics: Raft progress, membership, policy, seeds and admin requests by route and status.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, m) = c.request(0, "GET", "/metrics", None, None).await;
        assert_eq!(st, 200);
        let m = m.as_str().unwrap().to_string();
        let has = |s: &str| m.lines().any(|l| l.starts_with(s));
        let all = [
            "tailsift_coordinator_raft_term{node=\"1\"} ",
            "tailsift_coordinator_raft_is_leader{node=\"1\"} 1",
            "tailsift_coordinator_raft_leader_id{node=\"1\"} 1",
            "tailsift_coordinator_raft_commit_index{node=\"1\"} ",
            "tailsift_coordinator_raft_applied_index{node=\"1\"} ",
            "tailsift_coordinator_raft_members{node=\"1\"} 1",
            "tailsift_coordinator_raft_learners{node=\"1\"} 0",
            "tailsift_coordinator_policy_version{node=\"1\"} 1",
            "tailsift_coordinator_seed_epoch{node=\"1\"} 0",
        ];
        let routes = m.lines().any(|l| {
            l.starts_with("tailsift_coordinator_admin_requests_total")
                && l.contains("route=\"/api/sampling\"")
                && l.contains("status=\"400\"")
        }) && m.lines().any(|l| {
            l.starts_with("tailsift_coordinator_admin_requests_total")
                && l.contains("route=\"/v1/policy\"")
                && l.contains("status=\"200\"")
        });
        if all.iter().all(|s| has(s)) && routes {
            let commit = m
                .lines()
                .find(|l| l.starts_with("tailsift_coordinator_raft_commit_index{node=\"1\"}"))
                .unwrap();
            let n: f64 = commit.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(n >= 2.0, "{commit}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing metrics: {:?}\n{m}",
            all.iter().filter(|s| !has(s)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.stop_all().await;
}

/// Jaeger sampling is public and polled by every SDK: a flood of it (loopback, bounded) must not
/// hold back policy writes, and every answer given after a write returned reflects that write.
/// Each flooding client also checks it never sees an older version after a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_jaeger_sampling_requests_does_not_hold_back_policy_writes() {
    let _serial = SERIAL.lock().await;
    let mut c = CoordinatorCluster::start(1).await;
    c.wait_for_leader(&[0]).await;
    let doc = |pct: u32| format!("policies:\n  - name: rest\n    probabilistic: {{ percentage: {pct} }}\n");
    let (st, body) = put(&c, 0, &doc(10)).await;
    assert_eq!(st, 200, "{body}");

    // Too long a service name (untrusted input) is refused.
    let long = "s".repeat(tailsift_coordinator::admin::sampling::MAX_SERVICE_LEN + 1);
    let (st, s) = c
        .request(0, "GET", &format!("/api/sampling?service={long}"), None, None)
        .await;
    assert_eq!(st, 400, "{s}");

    let compiles = || async {
        let (_, m) = c.request(0, "GET", "/metrics", None, None).await;
        let m = m.as_str().unwrap().to_string();
        tailsift_tests::metric_value(
            &m,
            "tailsift_coordinator_sampling_cache_compiles_total",
            &["node=\"1\""],
        )
    };
    let compiles_before = compiles().await;

    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::new();
    let url = c.admin_url(0);
    let mut flood = Vec::new();
    for t in 0..24 {
        let (stop, http, url) = (stop.clone(), http.clone(), url.clone());
        flood.push(tokio::spawn(async move {
            let (mut last, mut n) = (0.0f64, 0u64);
            // Bounded: until the writes are done, at most 5000 requests per client.
            while !stop.load(Ordering::Relaxed) && n < 5000 {
                // Repeated names and ever new ones (the cache must stay bounded).
                let service = if n % 2 == 0 {
                    format!("svc-{}", t % 4)
                } else {
                    format!("new-{t}-{n}")
                };
                let path = if n % 3 == 0 { "sampling" } else { "api/sampling" };
                let r = http
                    .get(format!("{url}/{path}?service={service}"))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .expect("sampling request");
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                let rate = v["probabilisticSampling"]["samplingRate"].as_f64().unwrap();
                assert!(rate >= last, "client {t}: rate {rate} after {last}: an older version");
                last = rate;
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for pct in [20, 30, 40, 50, 60] {
        let started = Instant::now();
        let (st, body) = put(&c, 0, &doc(pct)).await;
        assert_eq!(st, 200, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "write took {:?}",
            started.elapsed()
        );
        for path in ["/api/sampling?service=svc-0", "/sampling?service=after-write"] {
            let (st, s) = c.request(0, "GET", path, None, None).await;
            assert_eq!(st, 200, "{s}");
            assert_eq!(
                s["probabilisticSampling"]["samplingRate"].as_f64(),
                Some(pct as f64 / 100.0),
                "{path} after version {}",
                body["version"]
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for f in flood {
        total += f.await.expect("flooding client");
    }
    assert!(total > 0);
    // One compile per version, plus at most one per client and version for a request that
    // raced a write (answered from its older view): never one per request.
    let compiled = compiles().await - compiles_before;
    eprintln!("{total} sampling requests during 5 writes, {compiled} policy compiles");
    assert!(
        (1.0..=6.0 + 24.0 * 5.0).contains(&compiled),
        "{compiled} compiles for 6 versions and {total} requests"
    );
    c.stop_all().await;
}

/// Pinned versions of the real client (npm), installed once into ~/.cache/tailsift.
const NODE_PACKAGES: &[&str] = &[
    "@opentelemetry/sampler-jaeger-remote@0.222.0",
    "@opentelemetry/api@1.9.1",
];

/// Installs the OpenTelemetry JS Jaeger remote sampler (bounded) unless it is there; returns the
/// node_modules directory.
async fn node_client() -> std::path::PathBuf {
    let home = std::env::var("HOME").expect("HOME is set");
    let dir = std::path::PathBuf::from(home).join(".cache/tailsift/node-jaeger-remote-0.222.0");
    let modules = dir.join("node_modules");
    if modules
        .join("@opentelemetry/sampler-jaeger-remote/package.json")
        .exists()
        && modules.join("@opentelemetry/api").exists()
    {
        return modules;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = tokio::process::Command::new("npm");
    cmd.args(["install", "--no-audit", "--no-fund", "--no-save", "--prefix"])
        .arg(&dir)
        .args(NODE_PACKAGES)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("npm install finishes within 300 s")
        .expect("npm (Node.js) is installed: it runs the real Jaeger remote sampler client");
    assert!(
        out.status.success(),
        "npm install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    modules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_jaeger_remote_sampler_client_applies_the_strategies() {
    let modules = node_client().await;
    let _serial = SERIAL.lock().await;
    let mut c = CoordinatorCluster::start(1).await;
    c.wait_for_leader(&[0]).await;
    let doc = concat!(
        "policies:\n",
        "  - name: errors\n    status_code: { codes: [ERROR] }\n",
        "  - name: cart\n    match: { service: checkout, span_name: [GET /cart] }\n    probabilistic: { percentage: 50 }\n",
        "  - name: checkout\n    match: { service: checkout }\n    probabilistic: { percentage: 25 }\n",
        "  - name: rest\n    probabilistic: { percentage: 5 }\n",
    );
    let (st, body) = put(&c, 0, doc).await;
    assert_eq!(st, 200, "{body}");
    let admin = status(&c, 0).await["members"][0]["admin_addr"]
        .as_str()
        .unwrap()
        .to_string();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/jaeger_remote_sampler.js");
    let n = 4000;
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&script)
        .arg(format!("http://{admin}"))
        .arg("checkout,billing")
        .arg("GET /cart,POST /pay")
        .arg(n.to_string())
        .env("TAILSIFT_NODE_MODULES", &modules)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("node finishes within 60 s")
        .expect("node runs");
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));

    // The client fetched and understood the strategies: per-operation for checkout, plain for billing.
    assert_eq!(r["checkout"]["updated"], true, "{r}");
    let s = r["checkout"]["sampler"].as_str().unwrap();
    assert!(
        s.contains("GET /cart=TraceIdRatioBased{0.5}") && s.contains("default=TraceIdRatioBased{0.25}"),
        "{s}"
    );
    assert_eq!(r["billing"]["updated"], true, "{r}");
    let s = r["billing"]["sampler"].as_str().unwrap();
    assert!(
        s.contains("TraceIdRatioBased{0.05}") && !s.contains("PerOperation"),
        "{s}"
    );
    // And samples at those rates (4000 random trace IDs each; bounds are > 6 standard deviations).
    let frac = |svc: &str, span: &str| r[svc]["kept"][span].as_f64().unwrap() / n as f64;
    for (svc, span, want, tol) in [
        ("checkout", "GET /cart", 0.5, 0.05),
        ("checkout", "POST /pay", 0.25, 0.045),
        ("billing", "GET /cart", 0.05, 0.022),
        ("billing", "POST /pay", 0.05, 0.022),
    ] {
        let got = frac(svc, span);
        assert!((got - want).abs() < tol, "{svc} {span}: kept {got}, want {want}: {r}");
    }
    c.stop_all().await;
}

// ---------------------------------------------------------------------------------------------
// gRPC authentication and TLS

use tailsift_coordinator::grpc::ClientOptions;
use tailsift_coordinator::watch::{AppliedReport, PolicyUpdate, ReportAck, WatchRequest};
use tonic::codegen::http::uri::PathAndQuery;

fn options(ca: Option<&[u8]>, token: Option<&str>) -> ClientOptions {
    ClientOptions::new(ca.map(|c| c.to_vec()), token).unwrap()
}

/// Opens a Watch stream from version 0 (raw gRPC, so the status code can be checked).
async fn open_watch(url: &str, o: &ClientOptions) -> Result<tonic::Streaming<PolicyUpdate>, tonic::Status> {
    let ch = o
        .endpoint(url)
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<WatchRequest, PolicyUpdate>::default();
    let path = PathAndQuery::from_static("/tailsift.coordinator.v1.Watch/Watch");
    g.server_streaming(o.request(WatchRequest { from_version: 0 }), path, codec)
        .await
        .map(|r| r.into_inner())
}

/// A sampler engine with the built-in default policy (version 0), for the watch client.
fn test_engine() -> tailsift_sampler::engine::Engine {
    let cfg = tailsift_sampler::SamplerConfig::default();
    let (doc, engine) = tailsift_sampler::load_policy(&cfg.policy).expect("default policy");
    tailsift_sampler::engine::Engine::new(
        tailsift_sampler::engine::EngineConfig::from_config(&cfg.decision, &cfg.memory),
        tailsift_sampler::engine::ActivePolicy {
            version: doc.version,
            seed: 0,
            engine,
        },
        Instant::now(),
    )
}

/// `ReportApplied(worker_id, version)`; the status code of the answer.
async fn report(url: &str, o: &ClientOptions, worker_id: &str, version: u64) -> tonic::Code {
    let ch = o.endpoint(url).unwrap().connect().await.expect("connect");
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<AppliedReport, ReportAck>::default();
    let path = PathAndQuery::from_static("/tailsift.coordinator.v1.Watch/ReportApplied");
    let req = AppliedReport {
        worker_id: worker_id.into(),
        version,
        ..Default::default()
    };
    match g.unary(o.request(req), path, codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

/// A Raft `Vote` with an empty (undecodable) body: UNAUTHENTICATED before decoding without the
/// cluster token, INVALID_ARGUMENT (the body) with it.
async fn raft_vote_code(url: &str, o: &ClientOptions) -> tonic::Code {
    use tailsift_coordinator::network::RaftMessage;
    let ch = o.endpoint(url).unwrap().connect().await.expect("connect");
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<RaftMessage, RaftMessage>::default();
    let path = PathAndQuery::from_static("/tailsift.coordinator.v1.Raft/Vote");
    match g.unary(o.request(RaftMessage { data: Vec::new() }), path, codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

/// Waits (10 s) until node `node`'s `/metrics` has `metric{node="N"} value`.
async fn wait_metric(c: &CoordinatorCluster, i: usize, metric: &str, value: f64) {
    let want = format!("{metric}{{node=\"{}\"}} ", i + 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, m) = c.request(i, "GET", "/metrics", None, None).await;
        assert_eq!(st, 200);
        let m = m.as_str().unwrap().to_string();
        let got = m
            .lines()
            .find_map(|l| l.strip_prefix(want.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if got == Some(value) {
            assert!(m.contains(&format!("# HELP {metric} ")), "{metric} has no description");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{want}: {got:?}, want {value}\n{}",
            m.lines().filter(|l| l.contains(metric)).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_report_need_a_token_and_raft_needs_the_cluster_token() {
    let _serial = SERIAL.lock().await;
    let mut c = CoordinatorCluster::start(1).await;
    c.wait_for_leader(&[0]).await;
    assert_eq!(put(&c, 0, POLICY_A).await.0, 200);
    let url = c.grpc_url(0);
    wait_metric(&c, 0, "tailsift_coordinator_watchers_connected", 0.0).await;
    wait_metric(&c, 0, "tailsift_coordinator_workers_reported", 0.0).await;

    // Watch: no token, an unknown token and the cluster token are refused; any admin token works.
    for token in [None, Some("not-a-token-0123456789"), Some(CLUSTER_TOKEN)] {
        let e = open_watch(&url, &options(None, token)).await.err().expect("refused");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{token:?}: {e}");
    }
    let mut w = open_watch(&url, &options(None, Some(READ_TOKEN))).await.expect("watch");
    let first = tokio::time::timeout(Duration::from_secs(10), w.message())
        .await
        .expect("an update in time")
        .expect("stream ok")
        .expect("an update");
    assert_eq!(first.version, 1);
    assert!(first.document.contains("errors"), "{first:?}");
    wait_metric(&c, 0, "tailsift_coordinator_watchers_connected", 1.0).await;
    let w2 = open_watch(&url, &options(None, Some(ADMIN_TOKEN)))
        .await
        .expect("watch");
    wait_metric(&c, 0, "tailsift_coordinator_watchers_connected", 2.0).await;
    // The library client the samplers use sends the token too.
    let mut w3 = tailsift_coordinator::watch::watch(&url, &options(None, Some(READ_TOKEN)), 0, Duration::from_secs(5))
        .await
        .expect("library watch");
    assert_eq!(w3.message().await.unwrap().unwrap().version, 1);
    let e = tailsift_coordinator::watch::watch(&url, &options(None, None), 0, Duration::from_secs(5))
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("bearer token"), "{e}");
    wait_metric(&c, 0, "tailsift_coordinator_watchers_connected", 3.0).await;
    // A client that goes away stops counting.
    drop(w);
    drop(w2);
    drop(w3);
    wait_metric(&c, 0, "tailsift_coordinator_watchers_connected", 0.0).await;

    // ReportApplied: refused without a token (nothing recorded), recorded with one.
    assert_eq!(
        report(&url, &options(None, None), "w-x", 1).await,
        tonic::Code::Unauthenticated
    );
    let (st, body) = c.request(0, "GET", "/v1/workers", Some(READ_TOKEN), None).await;
    assert_eq!((st, body["workers"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
    assert_eq!(
        report(&url, &options(None, Some(READ_TOKEN)), "w-1", 1).await,
        tonic::Code::Ok
    );
    tailsift_coordinator::watch::report_applied(
        &url,
        &options(None, Some(ADMIN_TOKEN)),
        AppliedReport {
            worker_id: "w-2".into(),
            version: 1,
            ..Default::default()
        },
        Duration::from_secs(5),
    )
    .await
    .expect("library report");
    let (st, body) = c.request(0, "GET", "/v1/workers", Some(READ_TOKEN), None).await;
    assert_eq!(st, 200, "{body}");
    let ids: Vec<&str> = body["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["worker_id"].as_str())
        .collect();
    assert_eq!(ids, ["w-1", "w-2"]);
    wait_metric(&c, 0, "tailsift_coordinator_workers_reported", 2.0).await;

    // Raft: only the cluster token gets through (to the body check).
    assert_eq!(
        raft_vote_code(&url, &options(None, None)).await,
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        raft_vote_code(&url, &options(None, Some(ADMIN_TOKEN))).await,
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        raft_vote_code(&url, &options(None, Some(CLUSTER_TOKEN))).await,
        tonic::Code::InvalidArgument
    );
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_ports_raft_watch_http_and_cli() {
    let _serial = SERIAL.lock().await;
    let pki = tailsift_tests::TestPki::generate();
    let mut c = CoordinatorCluster::start_with(3, Some(&pki)).await;
    assert!(c.admin_url(0).starts_with("https://"));
    // A leader is elected and agreed on over TLS Raft (and read over HTTPS).
    let leader = c.wait_for_leader(&[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    // A write to a follower is forwarded to the leader over TLS and replicated to every node.
    let (st, body) = put(&c, follower, POLICY_A).await;
    assert_eq!(st, 200, "{body}");
    for i in 0..3 {
        c.wait_for_version(i, 1).await;
    }

    // A watch over TLS, verified against the CA, with a token, receives the version.
    let ca = Some(pki.ca_pem.as_slice());
    let mut w = tailsift_coordinator::watch::watch(
        &c.grpc_url(follower),
        &options(ca, Some(READ_TOKEN)),
        0,
        Duration::from_secs(5),
    )
    .await
    .expect("watch over TLS");
    let u = tokio::time::timeout(Duration::from_secs(10), w.message())
        .await
        .expect("an update in time")
        .expect("stream ok")
        .expect("an update");
    assert_eq!(u.version, 1);
    wait_metric(&c, follower, "tailsift_coordinator_watchers_connected", 1.0).await;
    // A later version arrives on the same stream.
    let (st, body) = put(&c, leader, "policies:\n  - name: all\n    always: {}\n").await;
    assert_eq!(st, 200, "{body}");
    let u = tokio::time::timeout(Duration::from_secs(10), w.message())
        .await
        .expect("an update in time")
        .expect("stream ok")
        .expect("an update");
    assert_eq!(u.version, 2);
    tailsift_coordinator::watch::report_applied(
        &c.grpc_url(follower),
        &options(ca, Some(READ_TOKEN)),
        AppliedReport {
            worker_id: "w-tls".into(),
            version: 2,
            ..Default::default()
        },
        Duration::from_secs(5),
    )
    .await
    .expect("report over TLS");
    let (st, body) = c.request(follower, "GET", "/v1/workers", Some(READ_TOKEN), None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["workers"][0]["worker_id"], "w-tls", "{body}");

    // A sampler's coordinator watch, configured as an operator would (https endpoints, the CA
    // file, the token from the environment), applies the current version and reports it.
    let endpoints: Vec<String> = (0..3).map(|i| c.grpc_url(i)).collect();
    let cfg: tailsift_sampler::SamplerConfig = tailsift_config::Sources {
        env: vec![("TAILSIFT_COORDINATOR__TOKEN".into(), READ_TOKEN.into())],
        sets: vec![
            ("coordinator.endpoints".into(), format!("[{}]", endpoints.join(", "))),
            ("coordinator.tls.ca_file".into(), pki.ca_file.display().to_string()),
            ("coordinator.connect_timeout".into(), "1s".into()),
            ("coordinator.retry_interval".into(), "200ms".into()),
        ],
        ..Default::default()
    }
    .load()
    .expect("sampler config");
    let (tx, mut applied) = tokio::sync::mpsc::unbounded_channel();
    let stop_sampler = CancellationToken::new();
    let engine = std::sync::Mutex::new(test_engine());
    let sampler = tokio::spawn(tailsift_sampler::coordination::run(
        cfg.coordinator,
        "w-sampler".into(),
        0,
        move |f: &mut dyn FnMut(&mut tailsift_sampler::engine::Engine)| {
            let mut e = engine.lock().unwrap();
            f(&mut e);
            let _ = tx.send(e.policy_version());
        },
        Default::default(),
        stop_sampler.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), applied.recv())
            .await
            .expect("the sampler applied a version in time");
        if v == Some(2) {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = c.request(leader, "GET", "/v1/workers", Some(READ_TOKEN), None).await;
        if body["workers"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["worker_id"] == "w-sampler" && w["version"] == 2))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the sampler's report never arrived: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_sampler.cancel();
    sampler.await.unwrap();

    // Plaintext to the TLS gRPC port fails; so does TLS without the CA (untrusted certificate).
    let plain = c.grpc_url(follower).replace("https://", "http://");
    assert!(open_watch(&plain, &options(None, Some(READ_TOKEN))).await.is_err());
    let e = open_watch(&c.grpc_url(follower), &options(None, Some(READ_TOKEN)))
        .await
        .err()
        .expect("an unverified certificate is refused");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    // Without a token, TLS alone is not enough.
    let e = open_watch(&c.grpc_url(follower), &options(ca, None))
        .await
        .err()
        .expect("refused");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");

    // Plain HTTP to the HTTPS admin port gets no answer; HTTPS without the CA is refused.
    let admin = c.admin_url(follower);
    let plain = admin.replace("https://", "http://");
    let r = reqwest::Client::new()
        .get(format!("{plain}/v1/policy"))
        .bearer_auth(READ_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(r.is_err(), "plain HTTP answered: {r:?}");
    let r = reqwest::Client::new()
        .get(format!("{admin}/v1/policy"))
        .bearer_auth(READ_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(r.is_err(), "an untrusted certificate was accepted: {r:?}");
    // The public routes are served over HTTPS too.
    let (st, m) = c.request(follower, "GET", "/metrics", None, None).await;
    assert_eq!(st, 200);
    assert!(m.as_str().unwrap().contains("tailsift_coordinator_raft_term"));

    // The CLI over HTTPS with --ca-file; without it the certificate is not trusted.
    let cli = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(tailsift_tests::workspace_bin("tailsift"))
            .args(&args)
            .env_remove("TAILSIFT_ADMIN_URL")
            .env_remove("TAILSIFT_CA_FILE")
            .env("TAILSIFT_TOKEN", ADMIN_TOKEN)
            .kill_on_drop(true)
            .output()
            .await
            .expect("run tailsift");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let ca_file = pki.ca_file.display().to_string();
    let (ok, out, err) = cli(vec![
        "policy".into(),
        "get".into(),
        "--admin".into(),
        admin.clone(),
        "--ca-file".into(),
        ca_file.clone(),
    ])
    .await;
    assert!(ok, "{err}");
    let p: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["version"], 2, "{p}");
    let (ok, _, err) = cli(vec!["cluster".into(), "status".into(), "--admin".into(), admin.clone()]).await;
    assert!(!ok, "trusted without --ca-file");
    assert!(err.contains(&admin), "{err}");
    // A membership change sent to a follower is answered 421 naming the leader's admin address;
    // the CLI follows it with the scheme it was given (https).
    let (ok, out, err) = cli(vec![
        "cluster".into(),
        "remove".into(),
        (follower + 1).to_string(),
        "--admin".into(),
        admin.clone(),
        "--ca-file".into(),
        ca_file,
    ])
    .await;
    assert!(ok, "{err}");
    let m: Value = serde_json::from_str(&out).unwrap();
    let expect: BTreeSet<u64> = (1..=3).filter(|id| *id != follower as u64 + 1).collect();
    assert_eq!(voters(&m), expect, "{m}");
    assert_eq!(voters(&status(&c, leader).await), expect);

    // A stopped node releases its TLS ports and comes back on them (from its data directory).
    drop(w);
    let other = (0..3).find(|i| *i != leader && *i != follower).unwrap();
    c.stop(other).await;
    c.restart(other).await;
    let now = c.wait_for_leader(&[leader, other]).await;
    let (st, body) = put(&c, other, POLICY_A).await;
    assert_eq!(st, 200, "{body}");
    c.wait_for_version(now, 3).await;
    c.stop_all().await;
}
