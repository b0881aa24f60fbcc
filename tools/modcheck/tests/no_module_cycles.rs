//! The workspace has no module cycles (see `tailsift_modcheck`), except the
//! ones listed in [`ALLOWED`].

use std::path::Path;

/// Module cycles accepted for now: none. An entry would name a crate target,
/// a parent module and the modules of a cycle (all of them, so the entry
/// keeps passing while the cycle shrinks, but any new cycle fails).
const ALLOWED: &[(&str, &[&str], &[&str])] = &[
    // (crate target, parent module path ([] = top level), modules)
    //
];

#[test]
fn workspace_has_no_module_cycles_outside_the_allowlist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cycles = tailsift_modcheck::workspace_cycles(&root).expect("read the workspace");
    let targets = tailsift_modcheck::workspace_targets(&root).expect("read the workspace");
    assert!(
        targets.iter().any(|(label, _, _)| label == "tailsift-policy"),
        "the workspace members were not found: {targets:?}"
    );

    let mut allowed = Vec::new();
    let mut forbidden = Vec::new();
    for c in cycles {
        let listed = ALLOWED.iter().any(|(target, parent, modules)| {
            *target == c.target
                && parent.iter().copied().eq(c.parent.iter().map(String::as_str))
                && c.members.iter().all(|m| modules.contains(&m.as_str()))
        });
        if listed {
            allowed.push(c);
        } else {
            forbidden.push(c);
        }
    }
    for c in &allowed {
        println!("allowed for now (tools/modcheck/tests/no_module_cycles.rs ALLOWED):\n{c}");
    }
    for (target, parent, modules) in ALLOWED {
        let still = allowed.iter().any(|c| {
            c.target == *target
                && parent.iter().copied().eq(c.parent.iter().map(String::as_str))
                && c.members.iter().all(|m| modules.contains(&m.as_str()))
        });
        if !still {
            println!("ALLOWED entry no longer needed, remove it: {target} {parent:?} {modules:?}");
        }
    }
    assert!(
        forbidden.is_empty(),
        "module cycles found (break them, e.g. move what both sides need into a module of its own):\n{}",
        forbidden.iter().map(ToString::to_string).collect::<String>()
    );
}
