//! Three coordinators in one process (ports bound to 0, data in temp dirs): election, writes via
//! a follower, leader loss, restart from disk, admin authentication and policy validation.

use serde_json::{json, Value};
use tailsift_tests::{CoordinatorCluster, ADMIN_TOKEN, READ_TOKEN};

const POLICY_A: &str = "policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n";
const POLICY_B: &str = "policies:\n  - name: baseline\n    probabilistic: { percentage: 25 }\n";
const POLICY_C: &str = "policies:\n  - name: slow\n    latency: { threshold_ms: 500 }\n";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_and_writes_through_a_follower_reach_every_node() {
    let mut c = CoordinatorCluster::start(3).await;
    let leader = c.wait_for_leader(&[0, 1, 2]).await;
    let follower = (0..3).find(|i| *i != leader).unwrap();

    let (st, body) = put(&c, follower, POLICY_A).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["version"], 1);
    let (st, body) = put(&c, follower, POLICY_B).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["version"], 2);
    for i in 0..3 {
        let p = c.wait_for_version(i, 2).await;
        assert_eq!(p["policy"]["document"], POLICY_B);
        assert_eq!(p["policy"]["author"], "ops");
        assert!(p["reflects"]["applied_index"].as_u64().unwrap() >= 2, "{p}");
    }

    // Seed rotation schedules the next seed for the next version; rollback publishes it.
    let (st, rot) = c
        .request(follower, "POST", "/v1/seed/rotate", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(st, 200, "{rot}");
    assert_eq!(rot["seeds"]["next"]["effective_version"], 3);
    assert_eq!(rot["seeds"]["next"]["epoch"], 1);
    let (st, rb) = c
        .request(
            leader,
            "POST",
            "/v1/policy/rollback",
            Some(ADMIN_TOKEN),
            Some(json!({ "version": 1 })),
        )
        .await;
    assert_eq!(st, 200, "{rb}");
    assert_eq!(rb["version"], 3);
    assert_eq!(rb["seeds"]["current"], rot["seeds"]["next"]);
    for i in 0..3 {
        let p = c.wait_for_version(i, 3).await;
        assert_eq!(p["policy"]["document"], POLICY_A);
        assert_eq!(p["policy"]["rollback_of"], 1);
        assert_eq!(p["policy"]["seed_epoch"], 1);
        assert_eq!(p["seeds"]["current"], rot["seeds"]["next"]);
    }
    let (st, missing) = c
        .request(
            follower,
            "POST",
            "/v1/policy/rollback",
            Some(ADMIN_TOKEN),
            Some(json!({ "version": 99 })),
        )
        .await;
    assert_eq!(st, 404, "{missing}");
    let (st, h) = c
        .request(follower, "GET", "/v1/policy/history", Some(READ_TOKEN), None)
        .await;
    assert_eq!(st, 200);
    let versions: Vec<u64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![3, 2, 1]);

    let (st, s) = c
        .request(follower, "GET", "/v1/cluster/status", Some(READ_TOKEN), None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(s["leader"], leader as u64 + 1);
    assert_eq!(s["members"].as_array().unwrap().len(), 3);
    assert_eq!(s["policy_version"], 3);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_loss_elects_a_new_leader_and_nothing_committed_is_lost_then_restart_from_disk() {
    let mut c = CoordinatorCluster::start(3).await;
    let old = c.wait_for_leader(&[0, 1, 2]).await;
    assert_eq!(put(&c, old, POLICY_A).await.0, 200);
    assert_eq!(put(&c, old, POLICY_B).await.0, 200);
    let (st, _) = c.request(old, "POST", "/v1/seed/rotate", Some(ADMIN_TOKEN), None).await;
    assert_eq!(st, 200);

    c.stop(old).await;
    let rest: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new = c.wait_for_leader(&rest).await;
    assert_ne!(new, old);
    for &i in &rest {
        let p = c.wait_for_version(i, 2).await;
        assert_eq!(p["policy"]["document"], POLICY_B);
        assert_eq!(p["seeds"]["next"]["epoch"], 1);
    }
    // The two survivors are a majority: writes go on, also through the other survivor.
    let other = *rest.iter().find(|i| **i != new).unwrap();
    let (st, body) = put(&c, other, POLICY_C).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["version"], 3);

    // The old leader restarts from its data directory and catches up (no second bootstrap).
    c.restart(old).await;
    let p = c.wait_for_version(old, 3).await;
    assert_eq!(p["policy"]["document"], POLICY_C);
    assert_eq!(p["policy"]["seed_epoch"], 1);

    // Every node stops; all restart from disk alone and still hold everything.
    c.stop_all().await;
    for i in 0..3 {
        c.restart(i).await;
    }
    c.wait_for_leader(&[0, 1, 2]).await;
    for i in 0..3 {
        let p = c.wait_for_version(i, 3).await;
        assert_eq!(p["policy"]["document"], POLICY_C);
        let (_, h) = c.request(i, "GET", "/v1/policy/history", Some(READ_TOKEN), None).await;
        assert_eq!(h["versions"].as_array().unwrap().len(), 3, "{h}");
    }
    let (st, body) = put(&c, 0, POLICY_A).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["version"], 4);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_authenticates_and_rejects_invalid_policies_without_applying_them() {
    let mut c = CoordinatorCluster::start(3).await;
    let leader = c.wait_for_leader(&[0, 1, 2]).await;
    let f = (0..3).find(|i| *i != leader).unwrap();
    assert_eq!(put(&c, f, POLICY_A).await.0, 200);

    // 401: no token, unknown token (same length and different length); 403: read-only write.
    let (st, _) = c.request(f, "GET", "/v1/policy", None, None).await;
    assert_eq!(st, 401);
    let (st, _) = c
        .request(f, "GET", "/v1/policy", Some("xxxx-token-000000000000"), None)
        .await;
    assert_eq!(st, 401);
    let wrong_same_len: String = ADMIN_TOKEN.chars().rev().collect();
    let (st, _) = c
        .request(
            f,
            "PUT",
            "/v1/policy",
            Some(&wrong_same_len),
            Some(json!({ "document": POLICY_B })),
        )
        .await;
    assert_eq!(st, 401);
    let (st, body) = c
        .request(
            f,
            "PUT",
            "/v1/policy",
            Some(READ_TOKEN),
            Some(json!({ "document": POLICY_B })),
        )
        .await;
    assert_eq!(st, 403, "{body}");
    let (st, _) = c.request(f, "POST", "/v1/seed/rotate", Some(READ_TOKEN), None).await;
    assert_eq!(st, 403);
    let (st, _) = c
        .request(
            f,
            "POST",
            "/v1/policy/rollback",
            Some(READ_TOKEN),
            Some(json!({ "version": 1 })),
        )
        .await;
    assert_eq!(st, 403);
    // The follower applies the forwarded write shortly after the leader commits it.
    let p = c.wait_for_version(f, 1).await;
    assert_eq!(p["version"], 1);

    // Invalid: the exact path and reason, and nothing applied anywhere.
    let bad = "policies:\n  - name: ok\n    always: {}\n  - name: pct\n    probabilistic: { percentage: 150 }\n";
    let (st, body) = put(&c, f, bad).await;
    assert_eq!(st, 400, "{body}");
    let issue = &body["issues"][0];
    assert!(
        issue["path"]
            .as_str()
            .unwrap()
            .starts_with("policies[1].probabilistic.percentage"),
        "{body}"
    );
    assert!(!issue["message"].as_str().unwrap().is_empty());
    // Where it is in the document (the admin console marks the line): line 5, key `percentage`.
    assert_eq!(
        (&issue["line"], &issue["key"]),
        (&json!(5), &json!("percentage")),
        "{body}"
    );
    let (st, body) = put(&c, leader, "policies:\n  - name: x\n    sample: {}\n").await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["issues"][0]["path"].as_str().unwrap().starts_with("policies[0]"),
        "{body}"
    );
    let (st, body) = c
        .request(
            f,
            "POST",
            "/v1/policy/validate",
            Some(READ_TOKEN),
            Some(json!({ "document": bad })),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = c
        .request(
            f,
            "POST",
            "/v1/policy/validate",
            Some(READ_TOKEN),
            Some(json!({ "document": POLICY_B })),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["policies"], json!(["baseline"]));
    let (st, body) = c
        .request(
            f,
            "PUT",
            "/v1/policy",
            Some(ADMIN_TOKEN),
            Some(json!({ "doc": POLICY_B })),
        )
        .await;
    assert_eq!(st, 400, "{body}");

    // A later valid write gets the next version: the rejected ones never took a number.
    let (st, body) = put(&c, f, POLICY_C).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["version"], 2);
    for i in 0..3 {
        let p = c.wait_for_version(i, 2).await;
        let (_, h) = c.request(i, "GET", "/v1/policy/history", Some(READ_TOKEN), None).await;
        assert_eq!(h["versions"].as_array().unwrap().len(), 2, "{h}");
        assert_eq!(p["policy"]["document"], POLICY_C);
    }
    c.stop_all().await;
}
