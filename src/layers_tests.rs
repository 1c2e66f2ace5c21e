//! The module layering of DESIGN.md §5, checked on the source text: "a stage imports only the stages below it,
//! and nothing imports `app`, `cli` or `daemon`".
//!
//! Every file under `src/` is read; each `crate::<module>` path (also inside `use crate::{a, b::c}` groups,
//! `super::` chains that climb to the crate root, and `litellm_sync::<module>` in `main.rs`) is an edge from
//! the file's top-level module to `<module>`. Comments are not code and are skipped. The test fails when
//! - two top-level modules import each other, directly or through others (the cycle is printed with one
//!   `file:line` per edge), or
//! - a module other than `main`, `cli` and `app` imports `app` or `cli`, or one other than `app` and `cli`
//!   imports `daemon`.
//!
//! The tree had cycles when this test was written; they were listed in [`KNOWN_CYCLE_EDGES`], which could only
//! shrink, and is empty now: any cycle fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges on a cycle between top-level modules that are tolerated. The restructuring of 2026-12 removed every one
/// (model < config < litellm < mapper < reconcile < directory < telemetry < sources < http < daemon < app, cli);
/// keep it empty.
const KNOWN_CYCLE_EDGES: &[(&str, &str)] = &[];

/// Imports that break the `app`/`cli`/`daemon` rule on 2026-12-01 (none).
const KNOWN_FORBIDDEN: &[(&str, &str)] = &[];

/// Where a reference was found, for the report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Site {
    file: String,
    line: usize,
}

/// `from -> to -> first site` for every reference between two distinct top-level modules.
type Graph = BTreeMap<String, BTreeMap<String, Site>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file relative to `src/`: `config/mod.rs` → `[config]`, `reconcile/plan/users.rs` →
/// `[reconcile, plan, users]`, `lib.rs` → `[]`, `main.rs` → `[main]` (the binary's root, named for the report).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_string();
        if parts.is_empty() && stem == "lib" {
            return Vec::new();
        }
        if stem != "mod" {
            parts.push(stem);
        }
    }
    parts
}

/// The text with comments blanked out (string and char literals kept, newlines kept for line numbers).
fn strip_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if b[i] == b'\n' {
                            out.push('\n');
                        }
                        i += 1;
                    }
                }
            }
            b'\'' => {
                // A char or byte literal ('x', '\n', '"') is dropped; a lifetime ('a) is kept.
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b.get(i + 3..).and_then(|t| t.iter().position(|c| *c == b'\'')).map(|p| i + 3 + p)
                } else {
                    let ch = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 1 + ch)
                };
                match end {
                    Some(e) => i = e + 1,
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            b'r' if (b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"'))
                && (i == 0 || !is_ident(char::from(b[i - 1]))) =>
            {
                // A raw string r"…" or r#"…"#, dropped like a string (newlines kept).
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                let body = i + 2 + hashes;
                let end =
                    b[body..].windows(close.len()).position(|w| w == close.as_slice()).map_or(b.len(), |p| body + p);
                out.push_str("\"\"");
                out.extend(std::iter::repeat_n('\n', b[body..end].iter().filter(|c| **c == b'\n').count()));
                i = (end + close.len()).min(b.len());
            }
            b'"' => {
                // A string literal is replaced by an empty one: a path inside it is not a reference.
                out.push_str("\"\"");
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    if b.get(i) == Some(&b'\n') {
                        out.push('\n');
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier at the start of `s` (after whitespace).
fn ident(s: &str) -> &str {
    let s = s.trim_start();
    &s[..s.find(|c: char| !is_ident(c)).unwrap_or(s.len())]
}

/// The first path segment of every item of a `{a::b, c, d::{e, f}}` group that starts at `s` (after the `{`).
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_item = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item = true,
            c if at_item && depth == 0 && is_ident(c) => {
                heads.push(ident(&s[i..]).to_string());
                at_item = false;
            }
            _ => {}
        }
    }
    heads
}

/// What one file says: the top-level modules its code refers to (with the line), and the file modules it
/// declares as test code (`#[cfg(test)] mod tests;`).
struct FileRefs {
    refs: Vec<(String, usize)>,
    test_children: Vec<String>,
}

/// Reads one file (at `rel` under `src/`). Code under `#[cfg(test)]` (an inline `mod tests { … }`, or the file of
/// a `#[cfg(test)] mod x;`) is skipped: test fixtures may borrow from any layer.
fn references(rel: &Path, text: &str) -> FileRefs {
    let code = strip_comments(text);
    let module = module_path(rel);
    let roots: &[&str] = if module == ["main"] { &["crate::", "litellm_sync::"] } else { &["crate::"] };
    let mut out = FileRefs { refs: Vec::new(), test_children: Vec::new() };
    // Inline `mod x { … }` blocks (brace depth, test code?) make `super::` climb one level less to the root.
    let mut inline_mods: Vec<(usize, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut pending_mod: Option<String> = None;
    let mut cfg_test = false;
    for (n, line) in code.lines().enumerate() {
        let line_no = n + 1;
        for (i, c) in line.char_indices() {
            let before_ok = i == 0 || !line[..i].ends_with(is_ident);
            let rest = &line[i..];
            if c == '{' {
                depth += 1;
                if pending_mod.take().is_some() {
                    inline_mods.push((depth, cfg_test));
                }
                cfg_test = false;
            } else if c == '}' {
                if inline_mods.last().is_some_and(|(d, _)| *d == depth) {
                    inline_mods.pop();
                }
                depth = depth.saturating_sub(1);
            } else if c == ';' {
                if let Some(name) = pending_mod.take() {
                    if cfg_test {
                        out.test_children.push(name);
                    }
                }
                cfg_test = false;
            }
            if rest.starts_with("#[cfg(test)]") {
                cfg_test = true;
            }
            if !before_ok {
                continue;
            }
            if let Some(name) = rest.strip_prefix("mod ").map(ident).filter(|n| !n.is_empty()) {
                pending_mod = Some(name.to_string());
            }
            if inline_mods.iter().any(|(_, test)| *test) {
                continue;
            }
            let mut tail = None;
            if let Some(root) = roots.iter().find(|r| rest.starts_with(**r)) {
                tail = Some(&rest[root.len()..]);
            } else if rest.starts_with("super::") {
                let mut t = rest;
                let mut ups = 0;
                while let Some(x) = t.strip_prefix("super::") {
                    ups += 1;
                    t = x;
                }
                let here = module.len() + inline_mods.len();
                if ups >= here && here > 0 {
                    tail = Some(t);
                }
            }
            let Some(tail) = tail else { continue };
            let heads = if let Some(group) = tail.strip_prefix('{') {
                group_heads(group)
            } else {
                vec![ident(tail).to_string()]
            };
            out.refs.extend(heads.into_iter().filter(|h| !h.is_empty() && h != "self").map(|h| (h, line_no)));
        }
    }
    out
}

/// The graph of references between top-level modules of the tree at `src`, test code left out.
fn graph(src: &Path) -> Graph {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    paths.sort();
    let files: Vec<(PathBuf, Vec<String>, FileRefs)> = paths
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(src).expect("under src").to_path_buf();
            let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let refs = references(&rel, &text);
            (module_path(&rel), rel, refs)
        })
        .map(|(m, rel, refs)| (rel, m, refs))
        .collect();
    let top: BTreeSet<String> = files.iter().filter_map(|(_, m, _)| m.first().cloned()).collect();
    let test_mods: Vec<Vec<String>> = files
        .iter()
        .flat_map(|(_, m, r)| r.test_children.iter().map(move |c| m.iter().cloned().chain([c.clone()]).collect()))
        .collect();
    let mut g = Graph::new();
    for (rel, module, refs) in &files {
        let Some(from) = module.first() else { continue };
        if test_mods.iter().any(|t| module.starts_with(t)) {
            continue;
        }
        for (to, line) in &refs.refs {
            if to != from && top.contains(to) {
                let site = Site { file: format!("src/{}", rel.display()), line: *line };
                let first = g.entry(from.clone()).or_default().entry(to.clone()).or_insert_with(|| site.clone());
                if site < *first {
                    *first = site;
                }
            }
        }
    }
    g
}

/// Strongly connected components with more than one module (Tarjan), each sorted.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.g.get(v).into_iter().flat_map(|m| m.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> =
        g.keys().map(String::as_str).chain(g.values().flat_map(|m| m.keys().map(String::as_str))).collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

/// Edges inside a cycle (both ends in one strongly connected component).
fn cycle_edges(g: &Graph, comps: &[Vec<String>]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for comp in comps {
        for from in comp {
            for to in g.get(from).into_iter().flat_map(|m| m.keys()) {
                if comp.contains(to) {
                    out.insert((from.clone(), to.clone()));
                }
            }
        }
    }
    out
}

/// The shortest path `from` → … → `to` through `within` (breadth first), as module names.
fn path(g: &Graph, from: &str, to: &str, within: &[String]) -> Vec<String> {
    let mut prev: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([from.to_string()]);
    let mut seen = BTreeSet::from([from.to_string()]);
    while let Some(v) = queue.pop_front() {
        if v == to {
            let mut p = vec![v.clone()];
            let mut at = v;
            while let Some(x) = prev.get(&at) {
                p.push(x.clone());
                at = x.clone();
            }
            p.reverse();
            return p;
        }
        for w in g.get(&v).into_iter().flat_map(|m| m.keys()) {
            if within.contains(w) && seen.insert(w.clone()) {
                prev.insert(w.clone(), v.clone());
                queue.push_back(w.clone());
            }
        }
    }
    Vec::new()
}

/// One cycle through the edge `from → to`, with the site of each edge: `a → b (src/a.rs:3) → a (src/b.rs:9)`.
fn describe_cycle(g: &Graph, from: &str, to: &str, comp: &[String]) -> String {
    let mut p = vec![from.to_string()];
    p.extend(path(g, to, from, comp));
    let mut s = p[0].clone();
    for w in p.windows(2) {
        let site = &g[&w[0]][&w[1]];
        s.push_str(&format!(" → {} ({}:{})", w[1], site.file, site.line));
    }
    s
}

/// Imports that break "nothing imports app, cli or daemon" (main, cli and app may import app and cli; app and
/// cli may import daemon).
fn forbidden(g: &Graph) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (from, tos) in g {
        for to in tos.keys() {
            let allowed: &[&str] = match to.as_str() {
                "app" | "cli" => &["main", "cli", "app"],
                "daemon" => &["app", "cli"],
                _ => continue,
            };
            if !allowed.contains(&from.as_str()) {
                out.insert((from.clone(), to.clone()));
            }
        }
    }
    out
}

/// Every problem of a tree against the known lists: new cycle edges, stale known ones, forbidden imports.
fn problems(g: &Graph, known_cycles: &[(&str, &str)], known_forbidden: &[(&str, &str)]) -> Vec<String> {
    let comps = cycles(g);
    let edges = cycle_edges(g, &comps);
    let known: BTreeSet<(String, String)> = known_cycles.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let mut out = Vec::new();
    for (from, to) in edges.difference(&known) {
        let comp = comps.iter().find(|c| c.contains(from)).expect("edge in a component");
        out.push(format!("import cycle: {}", describe_cycle(g, from, to, comp)));
    }
    for (from, to) in known.difference(&edges) {
        out.push(format!("{from} → {to} is no longer on a cycle: remove it from KNOWN_CYCLE_EDGES"));
    }
    let bad = forbidden(g);
    let known_bad: BTreeSet<(String, String)> =
        known_forbidden.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    for (from, to) in bad.difference(&known_bad) {
        let site = &g[from][to];
        let who = if to == "daemon" { "app and cli" } else { "main, cli and app" };
        out.push(format!("{from} imports {to} ({}:{}): only {who} may", site.file, site.line));
    }
    for (from, to) in known_bad.difference(&bad) {
        out.push(format!("{from} no longer imports {to}: remove it from KNOWN_FORBIDDEN"));
    }
    out
}

#[test]
fn top_level_modules_form_no_new_import_cycle_and_nothing_imports_app_cli_or_daemon() {
    let g = graph(&src_dir());
    assert!(g.contains_key("reconcile") && g.contains_key("cli"), "no module graph read from src/: {g:?}");
    let found = problems(&g, KNOWN_CYCLE_EDGES, KNOWN_FORBIDDEN);
    assert!(found.is_empty(), "module layering (DESIGN.md §5):\n  {}", found.join("\n  "));
}

// ------------------------------------------------------------------------------------------------ the checker

/// A tree of files written to a temporary `src/`, for the checker's own tests.
fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Graph) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, body) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
    }
    let g = graph(dir.path());
    (dir, g)
}

#[test]
fn a_cycle_between_top_level_modules_fails_and_is_listed_with_its_sites() {
    let (_d, g) = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a.rs", "use crate::b::X;\n"),
        ("b/mod.rs", "mod inner;\n"),
        ("b/inner.rs", "\n\nfn f() { crate::c::g(); }\n"),
        ("c.rs", "use crate::{model, a::Y};\n"),
    ]);
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    let found = problems(&g, &[], &[]);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found.contains(&"import cycle: a → b (src/a.rs:1) → c (src/b/inner.rs:3) → a (src/c.rs:1)".to_string()),
        "{found:?}"
    );
    // Known edges are tolerated, and a known edge that is gone is reported.
    assert!(problems(&g, &[("a", "b"), ("b", "c"), ("c", "a")], &[]).is_empty());
    let stale = problems(&g, &[("a", "b"), ("b", "c"), ("c", "a"), ("c", "b")], &[]);
    assert_eq!(stale, vec!["c → b is no longer on a cycle: remove it from KNOWN_CYCLE_EDGES".to_string()]);
}

#[test]
fn importing_app_cli_or_daemon_from_a_stage_fails() {
    let (_d, g) = tree(&[
        ("lib.rs", "pub mod app;\npub mod cli;\npub mod daemon;\npub mod mapper;\npub mod http;\n"),
        ("main.rs", "use litellm_sync::cli;\n"),
        ("cli.rs", "use crate::app; use crate::daemon::Reconciler;\n"),
        ("app.rs", "use crate::daemon;\n"),
        ("daemon/mod.rs", "use crate::mapper;\n"),
        ("mapper/mod.rs", "// crate::cli in a comment is no import\nconst S: &str = \"crate::app\";\n"),
        ("http/mod.rs", "fn f() -> crate::daemon::Health { todo!() }\nmod t { use super::super::cli; }\n"),
    ]);
    assert!(cycles(&g).is_empty());
    let found = problems(&g, &[], &[]);
    assert_eq!(
        found,
        vec![
            "http imports cli (src/http/mod.rs:2): only main, cli and app may".to_string(),
            "http imports daemon (src/http/mod.rs:1): only app and cli may".to_string(),
        ]
    );
}

#[test]
fn super_chains_resolve_against_the_file_and_its_inline_modules_and_test_code_is_left_out() {
    let (_d, g) = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("b.rs", "#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod more {\n    use crate::a;\n}\n"),
        ("b/tests.rs", "use crate::a;\n"),
        // In the inline module, super::super is `a` (so `a::b`, not the top-level `b`).
        ("a/x.rs", "mod m { use super::super::b; }\nuse super::y; use super::super::b;\n"),
    ]);
    assert_eq!(g["a"].keys().collect::<Vec<_>>(), vec!["b"]);
    assert!(!g.contains_key("b"), "test code of b is not an import of b: {g:?}");
    assert_eq!(g["a"]["b"], Site { file: "src/a/x.rs".into(), line: 2 });
}
