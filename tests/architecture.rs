//! ARCHITECTURE.md's table is the map of `src/`: this keeps it true. Its rows are exactly the
//! folders and top-level files of `src/`, in dependency order; every `crate::` path in a row's
//! code names a module the row may import (so the folders form no circle), and no files of one
//! folder import each other round a circle.
//!
//! The check reads the source text (comments and `#[cfg(test)]` modules left out) instead of
//! running a tool such as cargo-modules, so it costs nothing in CI and fails with a sentence
//! that says which file broke which rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One row: where (`api` for `src/api/`, `serve.rs` for `src/serve.rs`) and what it may import.
#[derive(Debug)]
struct Row {
    place: String,
    may_import: Option<BTreeSet<String>>,
}

fn table() -> Vec<Row> {
    let text = std::fs::read_to_string("ARCHITECTURE.md").expect("ARCHITECTURE.md");
    let mut rows = Vec::new();
    for line in text.lines().skip_while(|l| !l.starts_with("| where |")) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split(" | ").collect();
        let Some(place) = cells[0]
            .trim_start_matches("| `src/")
            .split('`')
            .next()
            .filter(|_| cells[0].starts_with("| `src/"))
        else {
            continue;
        };
        let last = cells.last().expect("a cell").trim_end_matches(" |").trim();
        let may_import = match last {
            "everything" => None,
            _ => Some(
                last.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect(),
            ),
        };
        rows.push(Row {
            place: place.trim_end_matches('/').to_string(),
            may_import,
        });
    }
    rows
}

/// The module a row stands for: `api` for the folder, `serve` for `serve.rs`.
fn module(place: &str) -> &str {
    place.trim_end_matches(".rs")
}

fn places_in_src() -> BTreeSet<String> {
    std::fs::read_dir("src")
        .expect("src/")
        .map(|e| e.expect("entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            (p.is_dir() || name.ends_with(".rs")).then_some(name)
        })
        .collect()
}

/// Every Rust file of a row, nested folders included.
fn rust_files(place: &str) -> Vec<PathBuf> {
    let root = Path::new("src").join(place);
    if root.is_file() {
        return vec![root];
    }
    let mut files = Vec::new();
    for (_, entry) in entries(&root) {
        match entry.is_dir() {
            true => files.extend(rust_files(&format!("{place}/{}", file_name(&entry)))),
            false => files.push(entry),
        }
    }
    files.sort();
    files
}

/// The `.rs` files and subfolders of a folder, each with its node name (file stem or folder
/// name).
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .expect("folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .filter_map(|p| {
            let name = match p.is_dir() {
                true => file_name(&p),
                false => p.file_stem()?.to_str()?.to_string(),
            };
            Some((name, p))
        })
        .collect();
    out.sort();
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string()
}

/// The code of a file as the build without tests sees it: no comments, no test modules, and no
/// test-only files (`tests.rs`).
fn code(path: &Path) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = std::fs::read_to_string(path).expect("source file");
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every path after `prefix` (`crate::`, `super::`, …), through groups:
/// `crate::{api::X, registry::Y}` names `api` and `registry`.
fn first_segments(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            out.extend(
                group_items(group)
                    .iter()
                    .filter_map(|item| ident(item.trim())),
            );
        } else if let Some(id) = ident(rest) {
            out.insert(id);
        }
    }
    out
}

/// The top-level items of a `{…}` group (the text after its `{`), nested groups kept whole.
fn group_items(group: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0usize, 0, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

fn ident(s: &str) -> Option<String> {
    let id: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!id.is_empty()).then_some(id)
}

#[test]
fn the_table_lists_exactly_the_folders_and_files_of_src() {
    let listed: BTreeSet<String> = table().into_iter().map(|r| r.place).collect();
    assert_eq!(
        listed,
        places_in_src(),
        "ARCHITECTURE.md's table must have one row per folder and top-level file of src/"
    );
}

#[test]
fn each_row_imports_only_rows_above_it() {
    let rows = table();
    let modules: BTreeSet<&str> = rows.iter().map(|r| module(&r.place)).collect();
    for (i, row) in rows.iter().enumerate() {
        let Some(allowed) = &row.may_import else {
            continue;
        };
        let above: BTreeSet<&str> = rows[..i].iter().map(|r| module(&r.place)).collect();
        for m in allowed {
            assert!(
                above.contains(m.as_str()),
                "row src/{}: may import `{m}`, which is not a row above it",
                row.place
            );
        }
        let me = module(&row.place);
        for file in rust_files(&row.place) {
            let text = code(&file);
            let used = first_segments(&text, "crate::")
                .into_iter()
                .chain(first_segments(&text, "imagestream_operator::"));
            for m in used.filter(|m| m != me && modules.contains(m.as_str())) {
                assert!(
                    allowed.contains(&m),
                    "{} uses `{m}`, which src/{} may not import (ARCHITECTURE.md)",
                    file.display(),
                    row.place
                );
            }
        }
    }
}

#[test]
fn no_files_of_one_folder_import_each_other_round_a_circle() {
    for row in table() {
        let dir = Path::new("src").join(&row.place);
        if dir.is_dir() {
            check_folder(&dir, &module(&row.place).replace('/', "::"));
        }
    }
}

/// The files and subfolders of `dir` (the module `path`) form no circle, and neither do those
/// of each subfolder. A subfolder is one node here: what any of its files imports from this
/// folder is its edge.
fn check_folder(dir: &Path, path: &str) {
    let nodes = entries(dir);
    let names: BTreeSet<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (me, entry) in &nodes {
        let mut targets = BTreeSet::new();
        let files = match entry.is_dir() {
            true => rust_files(
                entry
                    .strip_prefix("src")
                    .unwrap_or(entry)
                    .to_str()
                    .unwrap_or(""),
            ),
            false => vec![entry.clone()],
        };
        for file in &files {
            let text = code(file);
            // How many `super::` lead from this file's module up to `path`.
            let depth = file
                .strip_prefix(dir)
                .map(|rel| match rel.file_stem().is_some_and(|s| s == "mod") {
                    true => rel.components().count().saturating_sub(1),
                    false => rel.components().count(),
                })
                .unwrap_or(1);
            // The folder's own mod.rs reaches its files by name (below), not through `super::`.
            let up = match depth {
                0 => BTreeSet::new(),
                d => first_segments(&text, &"super::".repeat(d)),
            };
            let own = format!("crate::{path}::");
            for seg in up.into_iter().chain(first_segments(&text, &own)) {
                // A sibling file or subfolder, or an item of the folder's mod.rs.
                targets.insert(match names.contains(&seg) {
                    true => seg,
                    false => "mod".into(),
                });
            }
        }
        if me == "mod" {
            // The folder's front door uses its files by their module name (re-exports and
            // declarations are not uses).
            let uses: String = code(entry)
                .lines()
                .filter(|l| {
                    let l = l.trim_start();
                    !(l.starts_with("pub mod ")
                        || l.starts_with("mod ")
                        || l.starts_with("pub use "))
                })
                .collect::<Vec<_>>()
                .join("\n");
            for s in names.iter().filter(|s| *s != "mod") {
                if !first_segments(&uses, &format!("{s}::")).is_empty() {
                    targets.insert(s.clone());
                }
            }
        }
        targets.remove(me);
        edges.insert(me.clone(), targets);
    }
    if let Some(circle) = find_circle(&edges) {
        panic!(
            "{}: files import each other round a circle: {}",
            dir.display(),
            circle.join(" -> ")
        );
    }
    for (name, entry) in &nodes {
        if entry.is_dir() {
            check_folder(entry, &format!("{path}::{name}"));
        }
    }
}

/// A circle in the graph, if any, as the nodes along it.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut circle = path[i..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_circle_finder_finds_circles() {
    let graph = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    assert!(find_circle(&graph(&[("a", "b"), ("b", "c")])).is_none());
    assert_eq!(
        find_circle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        first_segments("use crate::{api::X, registry::{Y, Z}};", "crate::"),
        ["api".to_string(), "registry".to_string()].into()
    );
}
