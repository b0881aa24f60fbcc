//! Compiles `proto/` (the repository's top-level directory) with protox, a protobuf compiler
//! written in Rust (no `protoc` needed), and generates the Rust code from the descriptor set with
//! tonic-prost-build. The descriptor set is also written to `$OUT_DIR/descriptor.bin`
//! (`tailsift_proto::FILE_DESCRIPTOR_SET`); a test compares it with the committed
//! `proto/descriptor.bin`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    // Every `.proto` file under `proto/`, in path order (the test recompiles the same way).
    let mut files = Vec::new();
    find_protos(&root, &mut files)?;
    files.sort();
    // Not `proto/` itself: it also holds descriptor.bin, which the test may rewrite.
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_source_info(true).include_imports(true);
    for f in &files {
        compiler.open_file(f)?;
    }
    std::fs::write(out.join("descriptor.bin"), compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure()
        .emit_rerun_if_changed(false)
        // Shown by the coordinator's `GET /v1/workers` (shadow counts by rule).
        .type_attribute(".tailsift.coordinator.v1.RuleCount", "#[derive(serde::Serialize)]")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

fn find_protos(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            find_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
