//! The generated messages encode exactly like the hand-written prost structs the coordinators
//! and samplers used before `proto/` was compiled (copied below, field for field), so old and
//! new processes interoperate.

use prost::Message;
use tailsift_proto::v1;

mod old {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchRequest {
        #[prost(uint64, tag = "1")]
        pub from_version: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PolicyUpdate {
        #[prost(uint64, tag = "1")]
        pub version: u64,
        #[prost(string, tag = "2")]
        pub format: String,
        #[prost(string, tag = "3")]
        pub document: String,
        #[prost(uint64, tag = "4")]
        pub seed: u64,
        #[prost(uint64, tag = "5")]
        pub seed_epoch: u64,
        #[prost(uint64, tag = "6")]
        pub applied_index: u64,
        #[prost(uint64, tag = "7")]
        pub time_unix_ms: u64,
        #[prost(uint64, tag = "8")]
        pub shadow_revision: u64,
        #[prost(string, tag = "9")]
        pub shadow_format: String,
        #[prost(string, tag = "10")]
        pub shadow_document: String,
        #[prost(uint64, tag = "11")]
        pub settings_revision: u64,
        #[prost(string, tag = "12")]
        pub settings_json: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AppliedReport {
        #[prost(string, tag = "1")]
        pub worker_id: String,
        #[prost(uint64, tag = "2")]
        pub version: u64,
        #[prost(uint64, tag = "3")]
        pub shadow_revision: u64,
        #[prost(uint64, tag = "4")]
        pub shadow_traces: u64,
        #[prost(uint64, tag = "5")]
        pub shadow_kept: u64,
        #[prost(uint64, tag = "6")]
        pub live_kept: u64,
        #[prost(uint64, tag = "7")]
        pub both_kept: u64,
        #[prost(message, repeated, tag = "8")]
        pub shadow_by_policy: Vec<RuleCount>,
        #[prost(uint64, tag = "9")]
        pub settings_revision: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RuleCount {
        #[prost(string, tag = "1")]
        pub policy: String,
        #[prost(uint64, tag = "2")]
        pub kept: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RaftMessage {
        #[prost(bytes = "vec", tag = "1")]
        pub data: Vec<u8>,
    }
}

/// `new` encodes to the same bytes as `old`, and each decodes the other's bytes.
fn same<N: Message + Default + PartialEq + std::fmt::Debug, O: Message + Default + PartialEq + std::fmt::Debug>(
    new: N,
    old: O,
) {
    assert_eq!(new.encode_to_vec(), old.encode_to_vec(), "{new:?} vs {old:?}");
    assert_eq!(N::decode(old.encode_to_vec().as_slice()).unwrap(), new);
    assert_eq!(O::decode(new.encode_to_vec().as_slice()).unwrap(), old);
}

#[test]
fn messages_encode_like_the_hand_written_ones() {
    same(
        v1::WatchRequest { from_version: 7 },
        old::WatchRequest { from_version: 7 },
    );
    same(
        v1::PolicyUpdate {
            version: 3,
            format: "otel_tail_sampling".into(),
            document: "doc".into(),
            seed: u64::MAX,
            seed_epoch: 2,
            applied_index: 40,
            time_unix_ms: 1_700_000_000_000,
            shadow_revision: 5,
            shadow_format: "yaml".into(),
            shadow_document: "shadow".into(),
            settings_revision: 6,
            settings_json: r#"{"send_delay_ms":250}"#.into(),
            // Fields added later, at their defaults, encode to nothing.
            ..Default::default()
        },
        old::PolicyUpdate {
            version: 3,
            format: "otel_tail_sampling".into(),
            document: "doc".into(),
            seed: u64::MAX,
            seed_epoch: 2,
            applied_index: 40,
            time_unix_ms: 1_700_000_000_000,
            shadow_revision: 5,
            shadow_format: "yaml".into(),
            shadow_document: "shadow".into(),
            settings_revision: 6,
            settings_json: r#"{"send_delay_ms":250}"#.into(),
        },
    );
    same(
        v1::AppliedReport {
            worker_id: "w-1".into(),
            version: 3,
            shadow_revision: 5,
            shadow_traces: 100,
            shadow_kept: 10,
            live_kept: 20,
            both_kept: 5,
            shadow_by_policy: vec![
                v1::RuleCount {
                    policy: "errors".into(),
                    kept: 8,
                },
                v1::RuleCount {
                    policy: "slow".into(),
                    kept: 2,
                },
            ],
            settings_revision: 6,
            // The newer fields (throughput 20 and up, captures 40) are left empty: nothing of them is sent.
            ..Default::default()
        },
        old::AppliedReport {
            worker_id: "w-1".into(),
            version: 3,
            shadow_revision: 5,
            shadow_traces: 100,
            shadow_kept: 10,
            live_kept: 20,
            both_kept: 5,
            shadow_by_policy: vec![
                old::RuleCount {
                    policy: "errors".into(),
                    kept: 8,
                },
                old::RuleCount {
                    policy: "slow".into(),
                    kept: 2,
                },
            ],
            settings_revision: 6,
        },
    );
    same(
        v1::RaftMessage {
            data: br#"{"vote":1}"#.to_vec(),
        },
        old::RaftMessage {
            data: br#"{"vote":1}"#.to_vec(),
        },
    );
    assert!(v1::ReportAck {}.encode_to_vec().is_empty());
}

/// A report with the throughput fields (20 and up) still decodes in a coordinator that predates
/// them: it keeps the fields it knows and skips the rest.
#[test]
fn throughput_fields_are_skipped_by_older_coordinators() {
    let new = v1::AppliedReport {
        worker_id: "w-1".into(),
        version: 3,
        settings_revision: 6,
        spans_in: 1000,
        spans_kept: 100,
        traces_decided: 50,
        traces_kept: 5,
        live_by_policy: vec![v1::RuleCount {
            policy: "errors".into(),
            kept: 5,
        }],
        partitions: vec![0, 1, 2],
        shadow_live_by_policy: vec![v1::RuleCount {
            policy: "errors".into(),
            kept: 1,
        }],
        ..Default::default()
    };
    let old = old::AppliedReport::decode(new.encode_to_vec().as_slice()).unwrap();
    assert_eq!(
        (old.worker_id.as_str(), old.version, old.settings_revision),
        ("w-1", 3, 6)
    );
    let back = v1::AppliedReport::decode(new.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, new);
}
