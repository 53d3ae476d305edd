//! A crate's module graph: no module depends on another that depends back on it, directly or
//! round a loop. Read from the sources (the `crate::` paths each module names outside its
//! tests, `crate::{a, b}` included), so a new import that closes a loop fails a test rather
//! than waiting for review. Each crate calls [`assert_no_module_loops`] from one test.
//!
//! And no source file of the workspace grows past [`MAX_SOURCE_LINES`]: a file that long holds
//! more than one thing, and its name no longer says what is in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of the crate in `manifest_dir` and the top-level modules it names,
/// directly or through an item the crate root re-exports (`crate::Item` for `pub use a::Item`).
pub fn module_graph(manifest_dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(manifest_dir).join("src");
    let root = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let reexported = root_reexports(&without_comments(&root));
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in rust_files(&src) {
        let Ok(relative) = path.strip_prefix(&src) else {
            continue;
        };
        let Some(first) = relative.components().next() else {
            continue;
        };
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" || module == "main" {
            continue; // the root declares every module
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let code = without_comments(text.split("#[cfg(test)]").next().unwrap_or_default());
        let uses = graph.entry(module.clone()).or_default();
        for name in named_modules(&code) {
            let name = reexported.get(&name).cloned().unwrap_or(name);
            if name != module {
                uses.insert(name);
            }
        }
    }
    graph
}

/// Panics naming the loop when two modules of the crate in `manifest_dir` depend on each
/// other; `expected` are modules that must be found (a guard against reading nothing).
pub fn assert_no_module_loops(manifest_dir: &str, expected: &[&str]) {
    let graph = module_graph(manifest_dir);
    assert!(!graph.is_empty(), "no modules read in {manifest_dir}/src");
    for module in expected {
        assert!(
            graph.contains_key(*module),
            "no module {module} found in {manifest_dir}/src"
        );
    }
    for module in graph.keys() {
        if let Some(found) = loop_through(&graph, module) {
            panic!("import loop in {manifest_dir}: {}", found.join(" -> "));
        }
    }
}

/// Most lines a Rust file under a crate's `src/` may have.
pub const MAX_SOURCE_LINES: usize = 600;

/// The `src/` Rust files of every crate of the workspace at `root` (`proto/` and `services/*`)
/// longer than [`MAX_SOURCE_LINES`], with their lengths; `checked` is how many were read.
pub fn long_source_files(root: &Path) -> (Vec<(PathBuf, usize)>, usize) {
    let crates = workspace_crates(root);
    let mut long = Vec::new();
    let mut checked = 0;
    for file in crates.iter().flat_map(|c| rust_files(&c.join("src"))) {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        checked += 1;
        let lines = text.lines().count();
        if lines > MAX_SOURCE_LINES {
            long.push((file, lines));
        }
    }
    (long, checked)
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
            pending.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// `code` without its comments (doc links name modules without depending on them).
fn without_comments(code: &str) -> String {
    code.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named after `crate::` in `code`: `crate::a::b` and `crate::{a, b::c}`.
fn named_modules(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group only: split on commas outside nested braces.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(ident(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

/// The items `code` (a crate root) re-exports from its modules, each with its module:
/// `pub use a::B;`, `pub use a::{B, C as D};`.
fn root_reexports(code: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in code.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path = path
            .trim()
            .trim_start_matches("crate::")
            .trim_start_matches("self::");
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            // What callers write after `crate::` is the name the item is exported as.
            let name = item.rsplit(" as ").next().unwrap_or_default().trim();
            let name = name.rsplit("::").next().unwrap_or_default();
            if !name.is_empty() && name != "*" {
                out.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    out
}

/// The crates of the workspace at `root`: `proto/` and each directory under `services/`.
pub fn workspace_crates(root: &Path) -> Vec<PathBuf> {
    let mut crates = vec![root.join("proto")];
    let services = std::fs::read_dir(root.join("services"))
        .unwrap_or_else(|e| panic!("cannot list {}/services: {e}", root.display()));
    crates.extend(services.filter_map(|e| e.ok()).map(|e| e.path()));
    crates.retain(|c| c.join("src").is_dir());
    crates.sort();
    crates
}

/// A loop through `from`, as the modules along it, if there is one.
fn loop_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let Some(last) = path.last() else { continue };
        for next in graph.get(last).into_iter().flatten() {
            if next == from {
                let mut found = path.clone();
                found.push(next.clone());
                return Some(found);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_single_and_grouped_paths() {
        let code = "use crate::a::B;\nuse crate::{c, d::{E, F}, self};\nlet x = crate::g::h(); // crate::z";
        assert_eq!(named_modules(&without_comments(code)), ["a", "c", "d", "g"]);
    }

    #[test]
    fn reads_what_the_crate_root_reexports() {
        let root = "pub use a::B;\npub use c::{D, e::F, G as H};\nuse x::Y;\npub mod a;";
        let found = root_reexports(root);
        let expected = [("B", "a"), ("D", "c"), ("F", "c"), ("H", "c")];
        let expected: BTreeMap<String, String> = expected
            .iter()
            .map(|(n, m)| (n.to_string(), m.to_string()))
            .collect();
        assert_eq!(found, expected);
    }

    /// Every crate, the ones without a layout test of their own included (`pulse-proto` cannot
    /// depend on this crate).
    #[test]
    fn no_crate_of_the_workspace_has_an_import_loop() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let crates = workspace_crates(&root);
        assert!(crates.len() >= 8, "found only {crates:?}");
        for dir in &crates {
            assert_no_module_loops(&dir.to_string_lossy(), &[]);
        }
    }

    #[test]
    fn no_source_file_of_the_workspace_is_too_long() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let (long, checked) = long_source_files(&root);
        assert!(
            checked > 50,
            "read only {checked} source files under {}",
            root.display()
        );
        assert!(
            long.is_empty(),
            "over {MAX_SOURCE_LINES} lines, split by what each part does: {long:?}"
        );
    }

    #[test]
    fn finds_a_loop_and_only_a_loop() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("c".into());
        assert_eq!(loop_through(&g, "a"), None);
        g.entry("c".into()).or_default().insert("a".into());
        assert_eq!(
            loop_through(&g, "a"),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
    }
}
