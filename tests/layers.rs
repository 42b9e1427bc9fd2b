//! The layering docs/architecture.md describes, checked on the source: the director (its
//! sans-IO core, its modes and its io) imports nothing from the application layer, a mode never
//! imports the core, and no two files of the director import each other (a module using its
//! parent's types, as `sched/maglev.rs` uses `sched/mod.rs`, is not counted).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The `src/` tree: module path (`director::modes::nat`) → file.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, PathBuf>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_stem().unwrap().to_str().unwrap().to_string();
            let join = |n: &str| {
                if prefix.is_empty() {
                    n.to_string()
                } else {
                    format!("{prefix}::{n}")
                }
            };
            if p.is_dir() {
                walk(&p, &join(&name), out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let module = match name.as_str() {
                    "mod" => prefix.to_string(),
                    "lib" | "main" if prefix.is_empty() => String::new(),
                    _ => join(&name),
                };
                out.insert(module, p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut out,
    );
    out
}

/// The code of a file without comments, string literals' contents and its `#[cfg(test)]` tail
/// (a message such as "both use VRID 1" must not read as a `use`).
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let body = match text.find("\n#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    let b = body.as_bytes();
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"r#\"") {
            let end = body[i + 3..].find("\"#").map_or(b.len(), |e| i + 3 + e + 2);
            out.push_str("\"\"");
            i = end;
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += 1;
        } else {
            let ch = body[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Every path a file names: `use` trees expanded, plus inline `crate::...` paths.
fn paths(code: &str) -> Vec<String> {
    fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let tree = tree.trim();
        if let Some(open) = tree.find('{') {
            let head = tree[..open].trim_end_matches("::");
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let base = join(prefix, head);
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&base, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&base, &inner[start..], out);
        } else if !tree.is_empty() {
            let tree = tree.split(" as ").next().unwrap().trim();
            out.push(join(prefix, tree));
        }
    }
    fn join(a: &str, b: &str) -> String {
        match (a.is_empty(), b.is_empty()) {
            (true, _) => b.to_string(),
            (_, true) => a.to_string(),
            _ => format!("{a}::{b}"),
        }
    }
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before_ok = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let Some(end) = rest[i..].find(';') else {
            break;
        };
        if before_ok {
            expand("", &rest[i + 4..i + end], &mut out);
        }
        rest = &rest[i + end + 1..];
    }
    for (i, _) in code.match_indices("crate::") {
        let tail: String = code[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        out.push(tail.trim_end_matches(':').to_string());
    }
    out
}

/// The module file a path points into, from the module `from` that names it.
fn resolve(from: &str, path: &str, mods: &BTreeMap<String, PathBuf>) -> Option<String> {
    let mut segs: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if from.is_empty() {
        Vec::new()
    } else {
        from.split("::").collect()
    };
    match segs.first() {
        Some(&"crate") => {
            base.clear();
            segs.remove(0);
        }
        Some(&"super") | Some(&"self") => {
            // A mod.rs file is its folder's module: `super` from it leaves the folder.
            while let Some(&s) = segs.first() {
                match s {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                segs.remove(0);
            }
        }
        _ => return None,
    }
    let full: Vec<&str> = base.into_iter().chain(segs).collect();
    (0..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| mods.contains_key(m))
}

fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let mut graph = BTreeMap::new();
    for (module, file) in &mods {
        let code = code(file);
        let deps: BTreeSet<String> = paths(&code)
            .iter()
            .filter_map(|p| resolve(module, p, &mods))
            .filter(|d| d != module)
            .collect();
        graph.insert(module.clone(), deps);
    }
    graph
}

fn is_within(module: &str, parent: &str) -> bool {
    module == parent || module.starts_with(&format!("{parent}::"))
}

#[test]
fn the_director_imports_nothing_from_the_application_layer() {
    let graph = imports();
    let director: Vec<_> = graph.keys().filter(|m| is_within(m, "director")).collect();
    assert!(
        director.len() > 20,
        "found only {} director modules",
        director.len()
    );
    let mut wrong = Vec::new();
    for m in director {
        for d in &graph[m] {
            if ["control", "health", "metrics", "lab", "daemon"]
                .iter()
                .any(|up| is_within(d, up))
            {
                wrong.push(format!("{m} -> {d}"));
            }
        }
    }
    assert!(wrong.is_empty(), "the director imports upward: {wrong:#?}");
}

#[test]
fn modes_packet_and_shared_state_never_import_the_core() {
    let graph = imports();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (m, deps) in &graph {
        if ["director::modes", "director::packet", "director::shared"]
            .iter()
            .any(|p| is_within(m, p))
        {
            checked += 1;
            for d in deps {
                if is_within(d, "director::core") || is_within(d, "director::io") {
                    wrong.push(format!("{m} -> {d}"));
                }
            }
        }
    }
    assert!(checked >= 10, "only {checked} modules checked");
    assert!(wrong.is_empty(), "imports back into the core: {wrong:#?}");
}

#[test]
fn no_two_director_files_import_each_other() {
    let graph = imports();
    let mut cycles = Vec::new();
    for (a, deps) in &graph {
        if !is_within(a, "director") {
            continue;
        }
        for b in deps {
            let parent_child = is_within(a, b) || is_within(b, a);
            if a < b && !parent_child && graph.get(b).is_some_and(|d| d.contains(a)) {
                cycles.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files that import each other: {cycles:#?}"
    );
}

#[test]
fn the_import_scanner_sees_grouped_and_relative_paths() {
    let mods: BTreeMap<String, PathBuf> = [
        "director::modes",
        "director::modes::nat",
        "director::packet",
    ]
    .iter()
    .map(|m| (m.to_string(), PathBuf::new()))
    .collect();
    let found: BTreeSet<String> =
        paths("use crate::director::{packet::Parsed, modes::{nat}};\nuse super::nat::X as Y;")
            .iter()
            .filter_map(|p| resolve("director::modes::tunnel", p, &mods))
            .collect();
    let want: BTreeSet<String> = ["director::packet", "director::modes::nat"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, want);
}
