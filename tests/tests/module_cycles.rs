//! No module of envctl's crates imports one that imports it back, directly or around a loop: a
//! reader finds each concern by its file name and can read the files bottom-up. Cargo already
//! keeps the crates themselves acyclic; this test does the same for the files inside each.
//!
//! A module is a file (`store/src/caches/dir.rs` is `caches::dir`). An edge is any path through
//! `crate::`, `super::` or `self::` outside the file's `#[cfg(test)] mod tests`, resolved to the
//! deepest module the path names (`crate::caches::Caches` is `caches`, the file `caches/mod.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &["store", "python", "recipes", "resolver", "ops", "cli", "tests"];

type Module = Vec<String>;

/// Every `.rs` file under `src`, by module path.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Module = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    parts.pop();
                }
                found.insert(parts, path);
            }
        }
    }
    found
}

/// The file's code without comments, string contents and its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push(' ');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The paths of a `use` group's body (`a, b::{c, d}`), each with `prefix` in front.
fn group(prefix: &[String], body: &str, out: &mut Vec<Module>) {
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&body[start..]);
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let mut path = prefix.to_vec();
        let mut rest = item;
        loop {
            if let Some(inner) = rest.strip_prefix('{') {
                group(&path, inner.strip_suffix('}').unwrap_or(inner), out);
                break;
            }
            let name = ident(rest);
            if name.is_empty() {
                out.push(path);
                break;
            }
            match name {
                "super" => {
                    path.pop();
                }
                "self" => {}
                _ => path.push(name.to_owned()),
            }
            match rest[name.len()..].trim_start().strip_prefix("::") {
                Some(more) => rest = more.trim_start(),
                None => {
                    out.push(path);
                    break;
                }
            }
        }
    }
}

/// The module paths the code of `me` names.
fn paths(code: &str, me: &Module) -> Vec<Module> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("::") {
        let before = &code[..at];
        let word_start = before.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
        // Only the first `::` of a path: `crate::a::b` is read once, from `crate`.
        if before[..word_start].ends_with("::") {
            continue;
        }
        let base: Module = match &before[word_start..] {
            "crate" => Vec::new(),
            "super" => me[..me.len().saturating_sub(1)].to_vec(),
            "self" => me.clone(),
            _ => continue,
        };
        let rest = &code[at + 2..];
        let end = rest.find([';', '(', '<', '\n']).unwrap_or(rest.len());
        let rest = rest[..end].trim();
        // A group spans lines: take it to its closing brace.
        let rest = if rest.contains('{') {
            let open = at + 2 + code[at + 2..].find('{').unwrap();
            let mut depth = 0;
            let close = code[open..]
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(code.len(), |(i, _)| open + i + 1);
            &code[at + 2..close]
        } else {
            rest
        };
        group(&base, rest, &mut out);
    }
    out
}

/// The cycles (strongly connected components of more than one module) of `edges`.
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    // Kosaraju: finish order on the graph, then components on the reversed graph.
    fn finish(
        v: &Module,
        e: &BTreeMap<Module, BTreeSet<Module>>,
        seen: &mut BTreeSet<Module>,
        order: &mut Vec<Module>,
    ) {
        if !seen.insert(v.clone()) {
            return;
        }
        for w in e.get(v).into_iter().flatten() {
            finish(w, e, seen, order);
        }
        order.push(v.clone());
    }
    let mut reversed: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (v, ws) in edges {
        for w in ws {
            reversed.entry(w.clone()).or_default().insert(v.clone());
        }
    }
    let (mut seen, mut order) = (BTreeSet::new(), Vec::new());
    for v in edges.keys() {
        finish(v, edges, &mut seen, &mut order);
    }
    let mut assigned = BTreeSet::new();
    let mut found = Vec::new();
    for v in order.iter().rev() {
        let mut component = Vec::new();
        finish(v, &reversed, &mut assigned, &mut component);
        if component.len() > 1 {
            component.sort();
            found.push(component);
        }
    }
    found
}

fn edges_of(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules = modules(src);
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (me, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        for path in paths(&code(&text), me) {
            let target = (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| modules.contains_key(m));
            if let Some(target) = target
                && &target != me
            {
                edges.entry(me.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut found = Vec::new();
    let mut edges_seen = 0;
    for krate in CRATES {
        let edges = edges_of(&root.join(krate).join("src"));
        edges_seen += edges.values().map(BTreeSet::len).sum::<usize>();
        for cycle in cycles(&edges) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            found.push(format!("{krate}: {}", names.join(" ↔ ")));
        }
    }
    // The scanner must see the imports at all: there are close to 300 pairs of modules.
    assert!(edges_seen > 200, "only {edges_seen} module-to-module imports found: the scanner is broken");
    assert!(found.is_empty(), "modules that import each other, around a loop:\n{}", found.join("\n"));
}

#[test]
fn the_scanner_finds_a_loop_through_a_use_group_and_super() {
    let dir = envctl_testkit::tempdir();
    let src = dir.path();
    std::fs::create_dir_all(src.join("caches")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod store;\nmod caches;\n").unwrap();
    std::fs::write(src.join("store.rs"), "use crate::{error::Error, caches::{Caches, dir::Dir}};\n").unwrap();
    std::fs::write(src.join("caches/mod.rs"), "pub struct Caches;\n// crate::store is only named here\n")
        .unwrap();
    std::fs::write(src.join("caches/dir.rs"), "fn f() -> super::super::store::Store { todo!() }\n").unwrap();
    let edges = edges_of(src);
    let name = |s: &str| s.split("::").map(str::to_owned).collect::<Module>();
    assert_eq!(cycles(&edges), vec![vec![name("caches::dir"), name("store")]]);
    // A comment naming a module is not an import.
    assert!(edges.get(&name("caches")).is_none_or(|e| !e.contains(&name("store"))));
}
