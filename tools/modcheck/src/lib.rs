//! A dependency-free check that lists module cycles in every crate.
//!
//! Finds module cycles inside each crate of the workspace, without any
//! dependency: a small tokenizer reads the Rust sources and records which
//! module refers to which.
//!
//! For every crate target (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`) the
//! module tree is followed from the root through `mod x;` (files `x.rs` or
//! `x/mod.rs`) and inline `mod x { .. }` declarations; `#[cfg(test)]`
//! modules are skipped. A module refers to another when it names it in a
//! `use` item or a path (`crate::a::b`, `super::x`, `self::x`, a child module
//! or a name imported with `use`); comments and string literals are ignored.
//! Names imported by a module (`pub use engine::Decision;` in `lib.rs`) are
//! followed, so `crate::Decision` counts as a reference to `engine`.
//!
//! A reference between two modules is lifted to their closest common
//! ancestor: `admin::routes -> workers` is an edge `admin -> workers` among
//! the top-level modules, `admin::routes -> admin::auth` an edge
//! `routes -> auth` among the children of `admin`. A module using its own
//! ancestor (`super::`, `crate::Thing` defined at the root) or descendant is
//! not an edge. A cycle is a strongly connected set of two or more sibling
//! modules.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::Path;

/// A module's path from the crate root (`[]` is the root, `["admin", "routes"]`).
pub type ModPath = Vec<String>;

/// One reference from a module to another, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The referring module.
    pub from: ModPath,
    /// The module referred to.
    pub to: ModPath,
    /// File (relative to the source directory) and line of the reference.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The path as written (`crate::engine::PolicyEngine`).
    pub text: String,
}

/// A set of sibling modules that depend on each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The crate target (`tailsift-policy`, `tailsift (bin)`).
    pub target: String,
    /// The common parent of the modules (`[]` for top-level modules).
    pub parent: ModPath,
    /// The modules in the cycle, sorted.
    pub members: Vec<String>,
    /// One shortest cycle through the first member, e.g. `[a, b, a]`.
    pub example: Vec<String>,
    /// The references that make up the edges between members.
    pub evidence: Vec<Reference>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = if self.parent.is_empty() {
            "among the top-level modules".to_string()
        } else {
            format!("among the children of crate::{}", self.parent.join("::"))
        };
        writeln!(
            f,
            "{}: module cycle {scope}: {} (members: {})",
            self.target,
            self.example.join(" -> "),
            self.members.join(", ")
        )?;
        for r in &self.evidence {
            writeln!(
                f,
                "    {} -> {}  ({}:{}: {})",
                join_path(&r.from),
                join_path(&r.to),
                r.file,
                r.line,
                r.text
            )?;
        }
        Ok(())
    }
}

fn join_path(p: &[String]) -> String {
    if p.is_empty() {
        "crate".to_string()
    } else {
        p.join("::")
    }
}

// ---------------------------------------------------------------------------
// Tokenizer

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
    Literal,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Splits Rust source into identifiers, `::` and punctuation; comments
/// vanish and literals become [`Tok::Literal`].
fn tokenize(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let n = c.len();
    let mut i = 0;
    let mut line = 1;
    let mut out = Vec::new();
    let at = |i: usize| if i < n { c[i] } else { '\0' };
    while i < n {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < n && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < n {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_start(&c, i) {
            // r"..", r#".."#, br#".."#, cr".."
            let start_line = line;
            let mut j = i + len;
            let hashes = c[i..i + len].iter().filter(|&&h| h == '#').count();
            loop {
                if j >= n {
                    break;
                }
                if c[j] == '\n' {
                    line += 1;
                }
                if c[j] == '"' && (0..hashes).all(|k| at(j + 1 + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push(Token {
                tok: Tok::Literal,
                line: start_line,
            });
            i = j;
        } else if ch == '"' || ((ch == 'b' || ch == 'c') && at(i + 1) == '"') {
            let start_line = line;
            let mut j = if ch == '"' { i + 1 } else { i + 2 };
            while j < n && c[j] != '"' {
                if c[j] == '\\' {
                    j += 1;
                }
                if j < n && c[j] == '\n' {
                    line += 1;
                }
                j += 1;
            }
            out.push(Token {
                tok: Tok::Literal,
                line: start_line,
            });
            i = j + 1;
        } else if ch == '\'' || (ch == 'b' && at(i + 1) == '\'') {
            let q = if ch == '\'' { i } else { i + 1 };
            if at(q + 1) == '\\' {
                // escaped char literal
                let mut j = q + 2;
                while j < n && c[j] != '\'' {
                    j += 1;
                }
                out.push(Token {
                    tok: Tok::Literal,
                    line,
                });
                i = j + 1;
            } else if at(q + 2) == '\'' {
                out.push(Token {
                    tok: Tok::Literal,
                    line,
                });
                i = q + 3;
            } else {
                // lifetime or label: skip the quote, the identifier follows
                i = q + 1;
                while i < n && is_ident_char(c[i]) {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Literal,
                    line,
                });
            }
        } else if ch == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
            let mut j = i + 2;
            while j < n && is_ident_char(c[j]) {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Ident(c[i + 2..j].iter().collect()),
                line,
            });
            i = j;
        } else if is_ident_start(ch) {
            let mut j = i;
            while j < n && is_ident_char(c[j]) {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Ident(c[i..j].iter().collect()),
                line,
            });
            i = j;
        } else if ch.is_ascii_digit() {
            let mut j = i;
            while j < n && is_ident_char(c[j]) {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Literal,
                line,
            });
            i = j;
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

/// Length of a raw string prefix (`r"`, `r##"`, `br#"`, `cr"`) at `i`.
fn raw_string_start(c: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if j < c.len() && (c[j] == 'b' || c[j] == 'c') {
        j += 1;
    }
    if j >= c.len() || c[j] != 'r' {
        return None;
    }
    // Not a raw string when preceded by an identifier character (`for"`).
    if i > 0 && is_ident_char(c[i - 1]) {
        return None;
    }
    j += 1;
    while j < c.len() && c[j] == '#' {
        j += 1;
    }
    if j < c.len() && c[j] == '"' {
        Some(j + 1 - i)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Module tree

#[derive(Debug, Default)]
struct Module {
    file: String,
    children: BTreeSet<String>,
    /// Names brought in by `use` items: name -> path as written.
    aliases: BTreeMap<String, Vec<String>>,
    /// Paths as written, with their line.
    refs: Vec<(Vec<String>, usize)>,
}

/// The modules of one crate target and the references between them.
#[derive(Debug, Default)]
pub struct CrateModules {
    modules: BTreeMap<ModPath, Module>,
}

/// Reads a source file by its path relative to the source directory.
pub trait SourceLoader {
    /// The file's text, or `None` when it does not exist.
    fn load(&self, rel_path: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> SourceLoader for F {
    fn load(&self, rel_path: &str) -> Option<String> {
        self(rel_path)
    }
}

fn dir_of(rel_path: &str) -> String {
    match rel_path.rfind('/') {
        Some(k) => rel_path[..k].to_string(),
        None => String::new(),
    }
}

fn join_dir(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl CrateModules {
    /// Follows the module tree from the root file `root` (e.g. `lib.rs`).
    pub fn load(root: &str, loader: &dyn SourceLoader) -> Self {
        let mut cm = CrateModules::default();
        if let Some(text) = loader.load(root) {
            let toks = tokenize(&text);
            cm.parse_module(Vec::new(), root, &dir_of(root), &toks, loader);
        }
        cm
    }

    fn parse_module(&mut self, path: ModPath, file: &str, dir: &str, toks: &[Token], loader: &dyn SourceLoader) {
        self.modules.entry(path.clone()).or_default().file = file.to_string();
        let mut i = 0;
        let mut test_only = false;
        while i < toks.len() {
            match &toks[i].tok {
                Tok::Punct('#') => {
                    // Attribute: #[...] or #![...]
                    let mut j = i + 1;
                    if matches!(toks.get(j).map(|t| &t.tok), Some(Tok::Punct('!'))) {
                        j += 1;
                    }
                    if matches!(toks.get(j).map(|t| &t.tok), Some(Tok::Punct('['))) {
                        let end = matching(toks, j);
                        let body = &toks[j + 1..end];
                        if is_cfg_test(body) {
                            test_only = true;
                        }
                        i = end + 1;
                    } else {
                        i += 1;
                    }
                    continue;
                }
                Tok::Ident(kw) if kw == "mod" => {
                    if let (Some(Tok::Ident(name)), Some(next)) =
                        (toks.get(i + 1).map(|t| &t.tok), toks.get(i + 2).map(|t| &t.tok))
                    {
                        let name = name.clone();
                        match next {
                            Tok::Punct(';') => {
                                if !test_only {
                                    self.load_child(&path, &name, dir, loader);
                                }
                                i += 3;
                            }
                            Tok::Punct('{') => {
                                let end = matching(toks, i + 2);
                                if !test_only {
                                    let mut child = path.clone();
                                    child.push(name.clone());
                                    self.modules.get_mut(&path).unwrap().children.insert(name.clone());
                                    let inner = toks[i + 3..end].to_vec();
                                    self.parse_module(child, file, &join_dir(dir, &name), &inner, loader);
                                }
                                i = end + 1;
                            }
                            _ => i += 1,
                        }
                        test_only = false;
                        continue;
                    }
                    i += 1;
                }
                Tok::Ident(kw) if kw == "use" => {
                    let line = toks[i].line;
                    let end = toks[i..]
                        .iter()
                        .position(|t| t.tok == Tok::Punct(';'))
                        .map_or(toks.len(), |k| i + k);
                    if !test_only {
                        let mut pos = i + 1;
                        let mut entries = Vec::new();
                        use_tree(&toks[..end], &mut pos, Vec::new(), &mut entries);
                        let m = self.modules.get_mut(&path).unwrap();
                        for (segs, alias) in entries {
                            if let Some(a) = alias {
                                m.aliases.insert(a, segs.clone());
                            }
                            m.refs.push((segs, line));
                        }
                    }
                    test_only = false;
                    i = end + 1;
                }
                Tok::Ident(_) if matches!(toks.get(i + 1).map(|t| &t.tok), Some(Tok::PathSep)) => {
                    let after_dollar = i > 0 && toks[i - 1].tok == Tok::Punct('$');
                    let after_sep = i > 0 && toks[i - 1].tok == Tok::PathSep;
                    let line = toks[i].line;
                    let mut segs = Vec::new();
                    let mut j = i;
                    while let Some(Tok::Ident(s)) = toks.get(j).map(|t| &t.tok) {
                        segs.push(s.clone());
                        if matches!(toks.get(j + 1).map(|t| &t.tok), Some(Tok::PathSep)) {
                            j += 2;
                        } else {
                            j += 1;
                            break;
                        }
                    }
                    if !after_dollar && !after_sep && !test_only {
                        self.modules.get_mut(&path).unwrap().refs.push((segs, line));
                    }
                    i = j.max(i + 1);
                }
                Tok::Ident(kw)
                    if matches!(kw.as_str(), "pub" | "crate" | "in" | "self" | "super")
                        || toks[i].tok == Tok::Punct('(')
                        || toks[i].tok == Tok::Punct(')') =>
                {
                    // visibility: keep a pending #[cfg(test)]
                    i += 1;
                }
                Tok::Punct('(') | Tok::Punct(')') => i += 1,
                _ => {
                    test_only = false;
                    i += 1;
                }
            }
        }
    }

    fn load_child(&mut self, parent: &ModPath, name: &str, dir: &str, loader: &dyn SourceLoader) {
        let flat = join_dir(dir, &format!("{name}.rs"));
        let nested = join_dir(dir, &format!("{name}/mod.rs"));
        let (file, text) = match loader.load(&flat) {
            Some(t) => (flat, t),
            None => match loader.load(&nested) {
                Some(t) => (nested, t),
                None => return,
            },
        };
        self.modules.get_mut(parent).unwrap().children.insert(name.to_string());
        let mut path = parent.clone();
        path.push(name.to_string());
        let toks = tokenize(&text);
        self.parse_module(path, &file, &join_dir(dir, name), &toks, loader);
    }

    /// The module paths found, sorted.
    pub fn module_paths(&self) -> Vec<ModPath> {
        self.modules.keys().cloned().collect()
    }

    /// Resolves a path written in module `from` to the deepest module it
    /// names, or `None` for paths outside the crate (std, other crates,
    /// local items).
    fn resolve(&self, from: &ModPath, segs: &[String], depth: usize) -> Option<ModPath> {
        if depth > 8 || segs.is_empty() {
            return None;
        }
        let (mut cur, mut rest): (ModPath, &[String]) = match segs[0].as_str() {
            "crate" => (Vec::new(), &segs[1..]),
            "self" => (from.clone(), &segs[1..]),
            "super" => {
                let mut cur = from.clone();
                let mut k = 0;
                while k < segs.len() && segs[k] == "super" {
                    cur.pop()?;
                    k += 1;
                }
                (cur, &segs[k..])
            }
            first => {
                let m = self.modules.get(from)?;
                if m.children.contains(first) {
                    let mut p = from.clone();
                    p.push(first.to_string());
                    (p, &segs[1..])
                } else if let Some(target) = m.aliases.get(first) {
                    if target.len() == 1 && target[0] == first {
                        return None; // `use foo;` of an external crate
                    }
                    (self.resolve(from, target, depth + 1)?, &segs[1..])
                } else {
                    return None;
                }
            }
        };
        while let Some((seg, tail)) = rest.split_first() {
            let Some(m) = self.modules.get(&cur) else { break };
            if m.children.contains(seg) {
                cur.push(seg.clone());
            } else if let Some(target) = m.aliases.get(seg) {
                match self.resolve(&cur, target, depth + 1) {
                    Some(t) if t != cur => cur = t,
                    _ => break,
                }
            } else {
                break;
            }
            rest = tail;
        }
        Some(cur)
    }

    /// Every reference from one module to another (not to itself).
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        for (path, m) in &self.modules {
            for (segs, line) in &m.refs {
                if let Some(to) = self.resolve(path, segs, 0) {
                    if &to != path {
                        out.push(Reference {
                            from: path.clone(),
                            to,
                            file: m.file.clone(),
                            line: *line,
                            text: segs.join("::"),
                        });
                    }
                }
            }
        }
        out
    }

    /// The module cycles of this target (see the crate documentation).
    pub fn cycles(&self, target: &str) -> Vec<Cycle> {
        // parent -> (edge a->b among its children -> evidence)
        let mut graphs: BTreeMap<ModPath, BTreeMap<(String, String), Vec<Reference>>> = BTreeMap::new();
        for r in self.references() {
            let k = r.from.iter().zip(&r.to).take_while(|(a, b)| a == b).count();
            if k == r.from.len() || k == r.to.len() {
                continue; // ancestor or descendant
            }
            graphs
                .entry(r.from[..k].to_vec())
                .or_default()
                .entry((r.from[k].clone(), r.to[k].clone()))
                .or_default()
                .push(r);
        }
        let mut cycles = Vec::new();
        for (parent, edges) in graphs {
            let mut adj: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (a, b) in edges.keys() {
                adj.entry(a.clone()).or_default().insert(b.clone());
                adj.entry(b.clone()).or_default();
            }
            for scc in strongly_connected(&adj) {
                if scc.len() < 2 {
                    continue;
                }
                let members: BTreeSet<&String> = scc.iter().collect();
                let mut evidence = Vec::new();
                for ((a, b), refs) in &edges {
                    if members.contains(a) && members.contains(b) {
                        evidence.extend(refs.iter().cloned());
                    }
                }
                let example = shortest_cycle(&adj, &scc[0], &members);
                cycles.push(Cycle {
                    target: target.to_string(),
                    parent: parent.clone(),
                    members: scc,
                    example,
                    evidence,
                });
            }
        }
        cycles
    }
}

fn matching(toks: &[Token], open: usize) -> usize {
    let (o, c) = match toks[open].tok {
        Tok::Punct('[') => ('[', ']'),
        Tok::Punct('(') => ('(', ')'),
        _ => ('{', '}'),
    };
    let mut depth = 0;
    for (k, t) in toks.iter().enumerate().skip(open) {
        if t.tok == Tok::Punct(o) {
            depth += 1;
        } else if t.tok == Tok::Punct(c) {
            depth -= 1;
            if depth == 0 {
                return k;
            }
        }
    }
    toks.len().saturating_sub(1).max(open)
}

/// `cfg(test)`, `cfg(all(test, ..))`: the item exists only in tests.
fn is_cfg_test(attr: &[Token]) -> bool {
    let ident = |k: usize, s: &str| matches!(attr.get(k).map(|t| &t.tok), Some(Tok::Ident(x)) if x == s);
    ident(0, "cfg")
        && attr.iter().any(|t| t.tok == Tok::Ident("test".into()))
        && !attr
            .iter()
            .any(|t| t.tok == Tok::Ident("not".into()) || t.tok == Tok::Ident("any".into()))
}

/// Parses a `use` tree at `pos` into (path, name it binds) entries.
fn use_tree(toks: &[Token], pos: &mut usize, prefix: Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) {
    let mut segs = prefix;
    if matches!(toks.get(*pos).map(|t| &t.tok), Some(Tok::PathSep)) {
        // `use ::name` is always an external crate.
        segs.push("::".to_string());
        *pos += 1;
    }
    loop {
        match toks.get(*pos).map(|t| &t.tok) {
            Some(Tok::Ident(s)) if s != "as" => {
                segs.push(s.clone());
                *pos += 1;
                if matches!(toks.get(*pos).map(|t| &t.tok), Some(Tok::PathSep)) {
                    *pos += 1;
                } else {
                    break;
                }
            }
            Some(Tok::Punct('*')) => {
                *pos += 1;
                out.push((segs, None));
                return;
            }
            Some(Tok::Punct('{')) => {
                *pos += 1;
                loop {
                    match toks.get(*pos).map(|t| &t.tok) {
                        None => return,
                        Some(Tok::Punct('}')) => {
                            *pos += 1;
                            return;
                        }
                        Some(Tok::Punct(',')) => *pos += 1,
                        _ => {
                            let before = *pos;
                            use_tree(toks, pos, segs.clone(), out);
                            if *pos == before {
                                *pos += 1;
                            }
                        }
                    }
                }
            }
            _ => break,
        }
    }
    if segs.last().is_some_and(|s| s == "self") {
        segs.pop();
    }
    let mut alias = segs.last().cloned();
    if matches!(toks.get(*pos).map(|t| &t.tok), Some(Tok::Ident(s)) if s == "as") {
        alias = match toks.get(*pos + 1).map(|t| &t.tok) {
            Some(Tok::Ident(a)) if a != "_" => Some(a.clone()),
            _ => None,
        };
        *pos += 2;
    }
    if !segs.is_empty() {
        out.push((segs, alias));
    }
}

/// Tarjan's strongly connected components, each sorted, in a stable order.
fn strongly_connected(adj: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        adj: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.adj[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            comp.sort();
            s.out.push(comp);
        }
    }
    let mut s = State {
        adj,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in adj.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// A shortest cycle from `start` back to itself within `members` (BFS).
fn shortest_cycle(adj: &BTreeMap<String, BTreeSet<String>>, start: &str, members: &BTreeSet<&String>) -> Vec<String> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::new();
    queue.push_back(start);
    while let Some(v) = queue.pop_front() {
        for w in &adj[v] {
            if !members.contains(w) {
                continue;
            }
            if w == start {
                let mut back = vec![v];
                while let Some(&p) = prev.get(back[back.len() - 1]) {
                    back.push(p);
                }
                // back = [v, .., start] (start has no predecessor)
                let mut path: Vec<String> = back.iter().rev().map(|s| s.to_string()).collect();
                path.push(start.to_string());
                return path;
            }
            if !prev.contains_key(w.as_str()) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start.to_string()]
}

// ---------------------------------------------------------------------------
// Workspace

/// The crate targets of a workspace: (label, source directory, root file
/// relative to it), from the `members` list of the root `Cargo.toml`.
pub fn workspace_targets(root: &Path) -> std::io::Result<Vec<(String, std::path::PathBuf, String)>> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let mut out = Vec::new();
    for member in workspace_members(&manifest) {
        let dir = root.join(&member);
        let Ok(pkg) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let name = package_name(&pkg).unwrap_or(member.clone());
        let src = dir.join("src");
        if src.join("lib.rs").is_file() {
            out.push((name.clone(), src.clone(), "lib.rs".to_string()));
        }
        if src.join("main.rs").is_file() {
            out.push((format!("{name} (bin)"), src.clone(), "main.rs".to_string()));
        }
        if let Ok(entries) = std::fs::read_dir(src.join("bin")) {
            let mut bins: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            bins.sort();
            for p in bins {
                let file = p.file_name().unwrap().to_string_lossy().to_string();
                if p.is_file() && file.ends_with(".rs") {
                    let bin = file.trim_end_matches(".rs").to_string();
                    out.push((format!("{name} (bin {bin})"), src.clone(), format!("bin/{file}")));
                } else if p.join("main.rs").is_file() {
                    out.push((
                        format!("{name} (bin {file})"),
                        src.clone(),
                        format!("bin/{file}/main.rs"),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// The strings of `members = [ ... ]` in a workspace manifest.
pub fn workspace_members(manifest: &str) -> Vec<String> {
    let Some(start) = manifest.find("members") else {
        return Vec::new();
    };
    let rest = &manifest[start..];
    let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
        return Vec::new();
    };
    rest[open + 1..close]
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(','))
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn package_name(manifest: &str) -> Option<String> {
    let pkg = &manifest[manifest.find("[package]")?..];
    for l in pkg.lines().skip(1) {
        let l = l.trim();
        if l.starts_with('[') {
            break;
        }
        if let Some(v) = l.strip_prefix("name") {
            let v = v.trim_start();
            if let Some(v) = v.strip_prefix('=') {
                return Some(v.trim().trim_matches('"').to_string());
            }
        }
    }
    None
}

/// The module cycles of every crate target of the workspace at `root`.
pub fn workspace_cycles(root: &Path) -> std::io::Result<Vec<Cycle>> {
    let mut out = Vec::new();
    for (label, src, file) in workspace_targets(root)? {
        let loader = |rel: &str| std::fs::read_to_string(src.join(rel)).ok();
        out.extend(CrateModules::load(&file, &loader).cycles(&label));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
