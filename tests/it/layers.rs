//! The source tree keeps its shape (docs/architecture.md): layers import only the layers
//! below them, no stage imports another, only the front end knows clap and terminals, and no
//! function outgrows a screen. These read `src/` as text; they need no service.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every top-level module and the modules it may import (besides itself).
const MAY_IMPORT: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("gcp", &["model"]),
    ("storage", &["model", "gcp"]),
    ("source", &["model"]),
    ("export", &["model", "gcp", "storage", "source"]),
    ("load", &["model", "gcp", "storage"]),
    ("validate", &["model", "gcp", "storage", "source"]),
    ("verify", &["model", "storage"]),
    ("config", &["model", "gcp", "storage", "source", "export", "load", "validate", "verify", "cli"]),
    ("cli", &["model", "gcp", "source"]),
];

/// Files that may name clap or the terminal: the command line and what it prints.
const FRONT_END: &[&str] = &["src/cli.rs", "src/main.rs", "src/report.rs"];

/// The longest a function may be, in lines, unless it is a table-like `match` listed below.
const MAX_FUNCTION_LINES: usize = 60;
/// Functions that are one `match` with an arm per type or flag: longer, but read as a table.
const TABLE_LIKE: &[&str] = &["map_column"];

fn source_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    files.sort();
    files
}

/// `src/model/types.rs` → `model`; `src/cli.rs` → `cli`; `src/lib.rs` → `lib`.
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().to_string();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim_start() == "#[cfg(test)]" {
            break;
        }
        if !line.trim_start().starts_with("//") {
            lines.push((number + 1, line));
        }
    }
    lines
}

/// The top-level modules a line names through `crate::` (or `pg2bq::`, in the binary).
fn imported_modules(line: &str) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for prefix in ["crate::", "pg2bq::"] {
        for (at, _) in line.match_indices(prefix) {
            let rest = &line[at + prefix.len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                modules.insert(name);
            }
        }
    }
    modules
}

#[test]
fn layers_import_only_the_layers_below_them() {
    let mut violations = Vec::new();
    for file in source_files() {
        let module = module_of(&file);
        let Some((_, allowed)) = MAY_IMPORT.iter().find(|(name, _)| *name == module) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in code_lines(&text) {
            for imported in imported_modules(line) {
                let is_module = MAY_IMPORT.iter().any(|(name, _)| *name == imported);
                if is_module && imported != module && !allowed.contains(&imported.as_str()) {
                    violations.push(format!("{}:{number}: `{module}` imports `{imported}`: {}", file.display(), line.trim()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "layer rule broken (see docs/architecture.md):\n{}", violations.join("\n"));
}

#[test]
fn only_the_front_end_knows_clap_and_terminals() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut violations = Vec::new();
    for file in source_files() {
        if FRONT_END.iter().any(|f| root.join(f) == file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in code_lines(&text) {
            if ["clap::", "indicatif", "IsTerminal", "is_terminal"].iter().any(|word| line.contains(word)) {
                violations.push(format!("{}:{number}: {}", file.display(), line.trim()));
            }
        }
    }
    assert!(violations.is_empty(), "only {FRONT_END:?} may use clap or the terminal:\n{}", violations.join("\n"));
}

/// `(name, first line, line count)` of every `fn` with a body, found by indentation: rustfmt
/// closes a function's body at the column its signature starts.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines = code_lines(text);
    let mut found = Vec::new();
    for (index, (number, line)) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let visible = match trimmed.strip_prefix("pub(") {
            Some(scoped) => scoped.split_once(") ").map_or(trimmed, |(_, rest)| rest),
            None => trimmed.trim_start_matches("pub "),
        };
        let signature = visible.trim_start_matches("const ").trim_start_matches("async ").trim_start_matches("unsafe ");
        let Some(rest) = signature.strip_prefix("fn ") else { continue };
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let end = lines[index..].iter().find(|(_, l)| {
            let t = l.trim_start();
            (l.len() - t.len() == indent && t.starts_with('}')) || (t.ends_with(';') && l.len() - t.len() == indent)
        });
        if let Some((last, closing)) = end {
            if !closing.trim_end().ends_with(';') || closing.trim_start().starts_with('}') {
                found.push((name, *number, last - number + 1));
            }
        }
    }
    found
}

#[test]
fn functions_fit_on_a_screen() {
    let mut long = Vec::new();
    for file in source_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (name, line, count) in functions(&text) {
            if count > MAX_FUNCTION_LINES && !TABLE_LIKE.contains(&name.as_str()) {
                long.push(format!("{}:{line}: `{name}` has {count} lines", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "split these into named steps (at most {MAX_FUNCTION_LINES} lines):\n{}", long.join("\n"));
}

#[test]
fn the_checks_see_what_they_look_for() {
    assert_eq!(imported_modules("use crate::load::plan::{x}; pg2bq::validate::Check"), ["load", "validate"].map(String::from).into());
    let text = "pub async fn f(\n    a: u8,\n) -> u8 {\n    a\n}\n\nfn g();\n    pub(super) fn h() {\n    }\n";
    assert_eq!(functions(text), vec![("f".to_string(), 1, 5), ("h".to_string(), 8, 2)]);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model/types.rs");
    assert_eq!(module_of(&file), "model");
}
