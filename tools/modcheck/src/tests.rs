use std::collections::BTreeMap;

use super::*;

fn crate_of(files: &[(&str, &str)]) -> CrateModules {
    let map: BTreeMap<String, String> = files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
    let loader = move |rel: &str| map.get(rel).cloned();
    CrateModules::load("lib.rs", &loader)
}

fn members(c: &[Cycle]) -> Vec<(String, Vec<String>)> {
    c.iter().map(|c| (c.parent.join("::"), c.members.clone())).collect()
}

#[test]
fn finds_a_cycle_between_sibling_files() {
    let c = crate_of(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("a.rs", "use crate::b::Thing;\n"),
        ("b.rs", "pub fn f() { crate::a::g(); }\n"),
        ("c.rs", "use crate::a;\n"),
    ]);
    let cycles = c.cycles("demo");
    assert_eq!(
        members(&cycles),
        vec![(String::new(), vec!["a".to_string(), "b".to_string()])]
    );
    assert_eq!(cycles[0].example, vec!["a", "b", "a"]);
    let text = cycles[0].to_string();
    assert!(
        text.contains("demo: module cycle among the top-level modules: a -> b -> a"),
        "{text}"
    );
    assert!(text.contains("a -> b  (a.rs:1: crate::b::Thing)"), "{text}");
    assert!(text.contains("b -> a  (b.rs:1: crate::a::g)"), "{text}");
}

#[test]
fn longer_cycle_and_use_groups() {
    let c = crate_of(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a.rs", "use crate::{b::X, std_thing};"),
        ("b.rs", "use super::c::{self, Y as Z};"),
        ("c.rs", "fn f() -> crate::a::T { todo!() }"),
    ]);
    let cycles = c.cycles("demo");
    assert_eq!(
        members(&cycles),
        vec![(String::new(), vec!["a".into(), "b".into(), "c".into()])]
    );
    assert_eq!(cycles[0].example, vec!["a", "b", "c", "a"]);
}

#[test]
fn child_using_its_parent_is_not_a_cycle() {
    let c = crate_of(&[
        ("lib.rs", "mod admin;\npub struct Root;"),
        (
            "admin/mod.rs",
            "mod routes;\npub use routes::Router;\npub struct Shared;",
        ),
        (
            "admin/routes.rs",
            "use super::Shared;\nuse crate::Root;\npub struct Router(super::super::Root);",
        ),
    ]);
    assert!(c.cycles("demo").is_empty());
    // the references are there, just not cycles
    let refs = c.references();
    assert!(refs.iter().any(|r| r.from == ["admin", "routes"] && r.to == ["admin"]));
    assert!(refs.iter().any(|r| r.from == ["admin"] && r.to == ["admin", "routes"]));
}

#[test]
fn nested_files_are_lifted_to_their_top_level_module() {
    let c = crate_of(&[
        ("lib.rs", "mod admin;\nmod workers;"),
        ("admin.rs", "mod routes;"),
        ("admin/routes.rs", "use crate::workers::Registry;"),
        ("workers.rs", "fn f(_: crate::admin::routes::Router) {}"),
    ]);
    let cycles = c.cycles("demo");
    assert_eq!(
        members(&cycles),
        vec![(String::new(), vec!["admin".into(), "workers".into()])]
    );
}

#[test]
fn cycles_between_siblings_inside_a_directory() {
    let c = crate_of(&[
        ("lib.rs", "mod admin;"),
        ("admin/mod.rs", "mod auth;\nmod routes;"),
        ("admin/auth.rs", "use super::routes::X;"),
        ("admin/routes.rs", "use super::auth::Y;"),
    ]);
    assert_eq!(
        members(&c.cycles("demo")),
        vec![("admin".to_string(), vec!["auth".into(), "routes".into()])]
    );
}

#[test]
fn root_reexports_are_followed() {
    let c = crate_of(&[
        (
            "lib.rs",
            "mod document;\nmod engine;\npub use engine::{Decision, PolicyEngine};\npub use document::Doc;",
        ),
        (
            "document.rs",
            "pub struct Doc;\nfn v() { crate::PolicyEngine::compile(); }",
        ),
        ("engine.rs", "use crate::Doc;"),
    ]);
    assert_eq!(
        members(&c.cycles("demo")),
        vec![(String::new(), vec!["document".into(), "engine".into()])]
    );
}

#[test]
fn test_modules_comments_and_strings_are_ignored() {
    let c = crate_of(&[
        (
            "lib.rs",
            "mod a;\nmod b;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod inline { use crate::a::X; use crate::b::Y; }",
        ),
        (
            "a.rs",
            "use crate::b::Y;\n#[cfg(test)]\nmod tests {\n    use crate::b::*;\n    use super::*;\n}\n",
        ),
        (
            "b.rs",
            "// crate::a::X\n/* crate::a::X /* nested */ crate::a::X */\n/// [`crate::a::X`]\nconst S: &str = \"crate::a::X\";\nconst R: &str = r#\"crate::a::\"X\"#;\nfn f<'a>(_: &'a str) -> char { 'a' }",
        ),
        ("tests.rs", "use crate::a::X; use crate::b::Y;"),
    ]);
    assert!(c.cycles("demo").is_empty(), "{:?}", c.cycles("demo"));
    assert_eq!(
        c.module_paths(),
        vec![vec![], vec!["a".to_string()], vec!["b".to_string()]]
    );
}

#[test]
fn external_and_local_paths_are_not_module_references() {
    let c = crate_of(&[
        ("lib.rs", "mod a;\nmod b;"),
        ("a.rs", "use std::fmt;\nuse serde::Deserialize;\nfn f() { Vec::<u8>::new(); fmt::Debug::fmt; Option::Some(1); $crate::b::x; }"),
        ("b.rs", "use crate::a;"),
    ]);
    assert!(c.references().iter().all(|r| r.from != ["a"]), "{:?}", c.references());
}

#[test]
fn reads_workspace_members() {
    let m =
        workspace_members("[workspace]\nresolver = \"2\"\nmembers = [\n    \"a\", # comment\n    \"shared/b\",\n]\n");
    assert_eq!(m, vec!["a", "shared/b"]);
    assert_eq!(
        package_name("[package]\nname = \"x-y\"\n[dependencies]\nname = 1"),
        Some("x-y".into())
    );
}
