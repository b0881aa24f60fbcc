//! The generated types, servers and clients of `proto/` (Watch, ReportApplied, Raft transport),
//! and the worker-side client.
//!
//! Tailsift's gRPC contract, generated at build time from the `.proto` files in the repository's
//! `proto/` directory (see `proto/README.md`): every message, server trait and client of the RPCs
//! between Tailsift processes, plus what a Rust worker needs to talk to the coordinators.
//!
//! * [`v1`]: the generated package `tailsift.coordinator.v1`: the `Watch` service (policy, shadow
//!   policy and live settings to the workers; the workers' `ReportApplied`) and the `Raft`
//!   transport between coordinators (openraft values as JSON bytes).
//! * [`client`]: [`ClientOptions`] (CA, bearer token) and the worker-side client
//!   ([`client::CoordinatorClient`], [`client::watch`], [`client::report_applied`]).
//! * [`SamplerSettings`]: the JSON carried in `PolicyUpdate.settings_json`.
//! * [`DocumentFormat`]: the values of `PolicyUpdate.format`.
//!
//! This crate depends on neither the coordinator nor the sampler: both depend on it.

pub mod client;
mod settings;
pub mod tls;

pub use client::ClientOptions;
pub use settings::{DocumentFormat, SamplerSettings, SettingsError, UnknownFormat};

/// The generated package `tailsift.coordinator.v1` (messages, `watch_server`/`watch_client`,
/// `raft_server`/`raft_client`).
pub mod v1 {
    #![allow(clippy::doc_lazy_continuation, clippy::doc_overindented_list_items)]
    tonic::include_proto!("tailsift.coordinator.v1");
}

/// The encoded `FileDescriptorSet` of every file in `proto/` (with comments), as this build
/// compiled it; equal to the committed `proto/descriptor.bin` (checked by a test). Serve it
/// with gRPC reflection, or give it to tools such as `grpcurl -protoset`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// gRPC service names (`package.Service`), as routed on the coordinators' `raft.listen`.
pub const WATCH_SERVICE: &str = "tailsift.coordinator.v1.Watch";
pub const RAFT_SERVICE: &str = "tailsift.coordinator.v1.Raft";
