//! Where in a policy document an issue is: its line and key, for the admin console's editor
//! (which marks the line while the operator types). The policy crate names an issue by its path
//! (`policies[2].latency.threshold_ms`, `.` for the root); this module finds that path's line in
//! the submitted text. A syntax error already says `at line N column M`; that wins.
//!
//! YAML is followed by indentation (block mappings and `- ` sequence items, as policies are
//! written; a flow value such as `{ codes: [ERROR] }` ends the walk at its line). JSON is
//! followed key by key in document order. The walk stops at the deepest element it finds: an
//! issue about a missing key points at the mapping that lacks it. Linear in the document size.

/// An issue's place in the document (1-based line; column where the parser gave one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub line: u32,
    pub column: Option<u32>,
    /// The last key of the path (`threshold_ms`), or `None` for the root or a list item.
    pub key: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[3].c` as segments; `.` and `` are the root (no segments).
fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(n) = rest[1..end].parse() {
                out.push(Seg::Index(n));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

/// `... at line N column M` in a parser message.
fn parser_position(message: &str) -> Option<(u32, Option<u32>)> {
    let at = message.rfind("line ")?;
    let rest = &message[at + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let line = digits.parse().ok()?;
    let column = rest.find("column ").and_then(|c| {
        rest[c + 7..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    });
    Some((line, column))
}

/// The place of the issue at `path` with `message` in `document`; `None` when not found.
pub fn locate(document: &str, path: &str, message: &str) -> Option<Place> {
    let segs = segments(path);
    let key = segs.iter().rev().find_map(|s| match s {
        Seg::Key(k) => Some((*k).to_string()),
        Seg::Index(_) => None,
    });
    if let Some((line, column)) = parser_position(message) {
        return Some(Place { line, column, key });
    }
    let line = if document.trim_start().starts_with(['{', '[']) {
        json_line(document, &segs)
    } else {
        yaml_line(document, &segs)
    }?;
    Some(Place {
        line,
        column: None,
        key,
    })
}

/// The key a YAML line starts with (`name: x` -> `name`), quotes removed.
fn yaml_key(text: &str) -> Option<&str> {
    let colon = text.find(':')?;
    let k = text[..colon].trim();
    let k = k
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| k.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(k);
    (!k.is_empty() && !k.contains(' ') || text.starts_with(['"', '\''])).then_some(k)
}

/// The line of `segs` in YAML `document`: strictly (each key a direct child), and when that
/// stops short, loosely (a key anywhere under the element found so far; keys that are not in the
/// text are passed over). The loose walk finds issues whose path is that of the document after
/// an import (an OTel `processors.tail_sampling.policies[1].probabilistic.sampling_percentage`
/// is reported as `policies[1].otel_probabilistic.sampling_percentage`). The deeper answer wins.
fn yaml_line(document: &str, segs: &[Seg<'_>]) -> Option<u32> {
    let lines: Vec<(u32, usize, &str)> = document
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim_start();
            (!t.is_empty() && !t.starts_with('#') && t != "---").then(|| (i as u32 + 1, l.len() - t.len(), t))
        })
        .collect();
    let strict = yaml_walk(lines.clone(), segs, false);
    if strict.1 == segs.len() {
        return strict.0;
    }
    let loose = yaml_walk(lines, segs, true);
    if loose.1 > strict.1 {
        loose.0
    } else {
        strict.0
    }
}

/// Follows `segs` through `scope` (1-based line, indentation, text; no blank or comment lines).
/// Returns the line of the deepest element found and how many segments matched.
/// The lines nested under the one at `i` of `scope` (deeper than its indentation).
fn nested<'a>(scope: &[(u32, usize, &'a str)], i: usize) -> Vec<(u32, usize, &'a str)> {
    let indent = scope[i].1;
    scope[i + 1..].iter().take_while(|l| l.1 > indent).copied().collect()
}

fn yaml_walk(mut scope: Vec<(u32, usize, &str)>, segs: &[Seg<'_>], loose: bool) -> (Option<u32>, usize) {
    let mut found = None;
    let mut matched = 0;
    for seg in segs {
        let Some(base) = scope.iter().map(|l| l.1).min() else {
            break;
        };
        match seg {
            Seg::Key(k) => {
                let at = scope
                    .iter()
                    .position(|l| (loose || l.1 == base) && yaml_key(l.2) == Some(k));
                match at {
                    Some(i) => {
                        found = Some(scope[i].0);
                        matched += 1;
                        scope = nested(&scope, i);
                    }
                    None if loose => continue,
                    None => break,
                }
            }
            Seg::Index(n) => {
                let items: Vec<usize> = (0..scope.len())
                    .filter(|&i| scope[i].1 == base && (scope[i].2 == "-" || scope[i].2.starts_with("- ")))
                    .collect();
                let Some(&i) = items.get(*n) else { break };
                found = Some(scope[i].0);
                matched += 1;
                let (line, indent, text) = scope[i];
                let rest = text[1..].trim_start();
                let mut inner = Vec::new();
                if !rest.is_empty() {
                    inner.push((line, indent + (text.len() - rest.len()), rest));
                }
                inner.extend(nested(&scope, i));
                scope = inner;
            }
        }
    }
    (found, matched)
}

fn json_line(document: &str, segs: &[Seg<'_>]) -> Option<u32> {
    let mut pos = 0;
    let mut found = None;
    for seg in segs {
        let Seg::Key(k) = seg else { continue };
        let needle = format!("\"{k}\"");
        let Some(at) = document[pos..]
            .match_indices(&needle)
            .map(|(i, _)| pos + i)
            .find(|&i| document[i + needle.len()..].trim_start().starts_with(':'))
        else {
            break;
        };
        found = Some(document[..at].matches('\n').count() as u32 + 1);
        pos = at + needle.len();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "version: 1\n# rules\npolicies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n  - name: slow\n    latency:\n      threshold_ms: -5\n  -\n    name: third\n    probabilistic:\n      sampling_percentage: 500\n";

    fn line(path: &str) -> Option<u32> {
        locate(DOC, path, "invalid").map(|p| p.line)
    }

    #[test]
    fn yaml_paths_find_their_line_and_key() {
        assert_eq!(line("policies"), Some(3));
        assert_eq!(line("policies[0]"), Some(4));
        assert_eq!(line("policies[0].name"), Some(4));
        assert_eq!(line("policies[0].status_code.codes[0]"), Some(5));
        assert_eq!(line("policies[1].latency.threshold_ms"), Some(8));
        assert_eq!(line("policies[2].probabilistic.sampling_percentage"), Some(12));
        assert_eq!(line("policies[2].name"), Some(10));
        // A missing key: the deepest element found.
        assert_eq!(line("policies[1].latency.upper_threshold_ms"), Some(7));
        assert_eq!(line("."), None);
        let p = locate(DOC, "policies[1].latency.threshold_ms", "must be positive").unwrap();
        assert_eq!(p.key.as_deref(), Some("threshold_ms"));
    }

    #[test]
    fn parser_positions_win_and_json_is_followed_key_by_key() {
        let p = locate("a: [", ".", "did not find expected node content at line 3 column 7").unwrap();
        assert_eq!((p.line, p.column), (3, Some(7)));
        let json = "{\n  \"policies\": [\n    {\"name\": \"a\"},\n    {\"name\": \"b\",\n     \"latency\": {\"threshold_ms\": -1}}\n  ]\n}";
        assert_eq!(
            locate(json, "policies[1].latency.threshold_ms", "x").map(|p| p.line),
            Some(5)
        );
    }
}
