//! The committed `proto/descriptor.bin` is the descriptor set this build compiled from the
//! `.proto` files, and the services keep the wire names running clusters use.

use std::path::{Path, PathBuf};

use prost::Message;
use prost_types::FileDescriptorSet;

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

fn find_protos(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            find_protos(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

const REGENERATE: &str = "regenerate it with `TAILSIFT_UPDATE_DESCRIPTOR=1 cargo test -p tailsift-proto --test \
                          descriptor` and commit proto/descriptor.bin";

#[test]
fn committed_descriptor_is_what_the_build_compiles() {
    // Recompiled here exactly as build.rs does.
    let root = proto_dir();
    let mut files = Vec::new();
    find_protos(&root, &mut files);
    files.sort();
    let mut compiler = protox::Compiler::new([&root]).unwrap();
    compiler.include_source_info(true).include_imports(true);
    for f in &files {
        compiler.open_file(f).unwrap();
    }
    let fresh = compiler.encode_file_descriptor_set();
    assert!(
        fresh == tailsift_proto::FILE_DESCRIPTOR_SET,
        "the generated code is older than the .proto files: rebuild"
    );

    let committed_path = root.join("descriptor.bin");
    if std::env::var_os("TAILSIFT_UPDATE_DESCRIPTOR").is_some() {
        std::fs::write(&committed_path, &fresh).unwrap();
    }
    let committed =
        std::fs::read(&committed_path).unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", committed_path.display()));
    assert!(
        committed == fresh,
        "proto/descriptor.bin differs from what the .proto files compile to; {REGENERATE}"
    );
}

#[test]
fn services_keep_their_wire_names() {
    let set = FileDescriptorSet::decode(tailsift_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for f in &set.file {
        assert_eq!(f.package(), "tailsift.coordinator.v1", "{}", f.name());
        for s in &f.service {
            for m in &s.method {
                methods.push(format!(
                    "/{}.{}/{} {}{} -> {}{}",
                    f.package(),
                    s.name(),
                    m.name(),
                    if m.client_streaming() { "stream " } else { "" },
                    m.input_type(),
                    if m.server_streaming() { "stream " } else { "" },
                    m.output_type()
                ));
            }
        }
    }
    methods.sort();
    let p = ".tailsift.coordinator.v1.";
    let mut want = vec![
        format!("/tailsift.coordinator.v1.Raft/AppendEntries {p}RaftMessage -> {p}RaftMessage"),
        format!("/tailsift.coordinator.v1.Raft/Forward {p}RaftMessage -> {p}RaftMessage"),
        format!("/tailsift.coordinator.v1.Raft/InstallSnapshot {p}RaftMessage -> {p}RaftMessage"),
        format!("/tailsift.coordinator.v1.Raft/Status {p}RaftMessage -> {p}RaftMessage"),
        format!("/tailsift.coordinator.v1.Raft/Vote {p}RaftMessage -> {p}RaftMessage"),
        format!("/tailsift.coordinator.v1.Watch/ReportApplied {p}AppliedReport -> {p}ReportAck"),
        format!("/tailsift.coordinator.v1.Watch/Watch {p}WatchRequest -> stream {p}PolicyUpdate"),
    ];
    want.sort();
    assert_eq!(methods, want);
    assert_eq!(
        tailsift_proto::v1::watch_server::SERVICE_NAME,
        tailsift_proto::WATCH_SERVICE
    );
    assert_eq!(
        tailsift_proto::v1::raft_server::SERVICE_NAME,
        tailsift_proto::RAFT_SERVICE
    );
}
