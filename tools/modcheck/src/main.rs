//! Prints the module cycles of every crate of the workspace
//! (`cargo run -p tailsift-modcheck [-- WORKSPACE_DIR]`); exits 1 when there are any.

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    match tailsift_modcheck::workspace_cycles(&root) {
        Ok(cycles) if cycles.is_empty() => println!("no module cycles"),
        Ok(cycles) => {
            for c in &cycles {
                print!("{c}");
            }
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cannot read the workspace at {}: {e}", root.display());
            std::process::exit(2);
        }
    }
}
