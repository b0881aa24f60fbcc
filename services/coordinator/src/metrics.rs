//! Every metric the coordinator exports. Labels are bounded: `node` (the coordinator's id, so
//! several nodes can share one process in tests), `route` (the admin API's route templates),
//! `status` (HTTP status codes), `result` (`hit`, `miss`).

use metrics::{describe_counter, describe_gauge, Unit};

pub const TERM: &str = "tailsift_coordinator_raft_term";
pub const IS_LEADER: &str = "tailsift_coordinator_raft_is_leader";
pub const LEADER_ID: &str = "tailsift_coordinator_raft_leader_id";
pub const LAST_LOG_INDEX: &str = "tailsift_coordinator_raft_last_log_index";
pub const APPLIED_INDEX: &str = "tailsift_coordinator_raft_applied_index";
pub const COMMIT_INDEX: &str = "tailsift_coordinator_raft_commit_index";
pub const LEARNERS: &str = "tailsift_coordinator_raft_learners";
pub const MEMBERS: &str = "tailsift_coordinator_raft_members";
pub const POLICY_VERSION: &str = "tailsift_coordinator_policy_version";
pub const SEED_EPOCH: &str = "tailsift_coordinator_seed_epoch";
pub const ADMIN_REQUESTS: &str = "tailsift_coordinator_admin_requests_total";
pub const FORWARDED_WRITES: &str = "tailsift_coordinator_forwarded_writes_total";
pub const SHADOW_REVISION: &str = "tailsift_coordinator_shadow_revision";
pub const SETTINGS_REVISION: &str = "tailsift_coordinator_settings_revision";
pub const WATCHERS_CONNECTED: &str = "tailsift_coordinator_watchers_connected";
pub const WORKERS_REPORTED: &str = "tailsift_coordinator_workers_reported";
pub const SAMPLING_CACHE_LOOKUPS: &str = "tailsift_coordinator_sampling_cache_lookups_total";
pub const SAMPLING_CACHE_COMPILES: &str = "tailsift_coordinator_sampling_cache_compiles_total";

pub fn describe() {
    describe_gauge!(TERM, Unit::Count, "Current Raft term of this coordinator");
    describe_gauge!(IS_LEADER, Unit::Count, "1 while this coordinator is the Raft leader");
    describe_gauge!(
        LEADER_ID,
        Unit::Count,
        "Id of the leader this coordinator knows of (0: none)"
    );
    describe_gauge!(
        LAST_LOG_INDEX,
        Unit::Count,
        "Index of the last entry in this coordinator's Raft log"
    );
    describe_gauge!(
        APPLIED_INDEX,
        Unit::Count,
        "Index of the last entry applied to the state machine"
    );
    describe_gauge!(
        COMMIT_INDEX,
        Unit::Count,
        "Committed log index (leader: matched by a majority; other nodes: applied index)"
    );
    describe_gauge!(
        LEARNERS,
        Unit::Count,
        "Learners (non-voting members catching up) in the Raft membership this coordinator knows"
    );
    describe_gauge!(
        MEMBERS,
        Unit::Count,
        "Voters in the Raft membership this coordinator knows"
    );
    describe_gauge!(
        POLICY_VERSION,
        Unit::Count,
        "Policy version in this coordinator's applied state"
    );
    describe_gauge!(SEED_EPOCH, Unit::Count, "Epoch of the hash seed currently in force");
    describe_counter!(ADMIN_REQUESTS, Unit::Count, "Admin API requests by route and status");
    describe_gauge!(
        SHADOW_REVISION,
        Unit::Count,
        "Revision of the shadow policy in this coordinator's applied state (0: never set)"
    );
    describe_gauge!(
        SETTINGS_REVISION,
        Unit::Count,
        "Revision of the live cluster settings in this coordinator's applied state (0: never set)"
    );
    describe_counter!(
        FORWARDED_WRITES,
        Unit::Count,
        "Writes received by a follower and forwarded to the leader"
    );
    describe_gauge!(
        WATCHERS_CONNECTED,
        Unit::Count,
        "Policy Watch streams open on this coordinator"
    );
    describe_gauge!(
        WORKERS_REPORTED,
        Unit::Count,
        "Sampling workers known to this coordinator (reported their applied version; GET /v1/workers)"
    );
    describe_counter!(
        SAMPLING_CACHE_LOOKUPS,
        Unit::Count,
        "Jaeger sampling answers by result: hit (cached for the policy version) or miss"
    );
    describe_counter!(
        SAMPLING_CACHE_COMPILES,
        Unit::Count,
        "Policy documents parsed and compiled for Jaeger sampling answers (once per policy version)"
    );
}
