//! The source tree keeps its shape (docs/architecture.md): layers import only the layers
//! below them, no stage imports another, no two files import each other, only the front end
//! knows clap and terminals, and no function outgrows a screen. These parse every file of
//! `src/` with syn, tests included (what tests may do besides is listed below); they need no
//! service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

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
    ("audit", &["model", "gcp", "storage", "source"]),
    ("config", &["model", "gcp", "storage", "source", "export", "load", "validate", "verify", "audit", "cli"]),
    ("cli", &["model", "gcp", "source"]),
    // The front end: it runs the stages and prints what they return.
    ("report", &["model", "gcp", "storage", "source", "export", "load", "validate", "verify", "audit", "config", "cli"]),
    ("commands", &["model", "gcp", "storage", "source", "export", "load", "validate", "verify", "audit", "config", "cli", "report"]),
    ("lib", &["model", "gcp", "storage", "source", "export", "load", "validate", "verify", "audit", "config", "cli", "report", "commands"]),
    (
        "main",
        &["model", "gcp", "storage", "source", "export", "load", "validate", "verify", "audit", "config", "cli", "report", "commands"],
    ),
];

/// What a module's tests may import besides: fixtures from a layer above, never a stage.
const TESTS_MAY_ALSO_IMPORT: &[(&str, &[&str])] = &[];

/// Files that may name clap or the terminal: the command line and what it prints.
const FRONT_END: &[&str] = &["src/cli.rs", "src/main.rs", "src/report.rs"];
/// Paths and names only the front end may use.
const FRONT_END_NAMES: &[&str] = &["clap", "indicatif", "IsTerminal", "is_terminal"];

/// The longest a function may be, in lines, unless it is a table-like `match` listed below.
const MAX_FUNCTION_LINES: usize = 60;
/// Functions that are one `match` with an arm per type or flag: longer, but read as a table.
const TABLE_LIKE: &[&str] = &["map_column"];
/// Tests are held to the same length: a long test is a scenario to split into steps.
const TESTS_MAY_BE_LONGER: &[&str] = &[];

/// One file of `src/`, parsed.
struct SourceFile {
    path: PathBuf,
    /// Its module path: `src/load/plan.rs` → `["load", "plan"]`; `src/lib.rs` → `[]`.
    module: Vec<String>,
    syntax: syn::File,
}

impl SourceFile {
    fn top(&self) -> &str {
        match self.module.first() {
            Some(top) => top,
            None if self.path.ends_with("main.rs") => "main",
            None => "lib",
        }
    }

    fn shown(&self) -> String {
        self.path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&self.path).display().to_string()
    }
}

fn source_files() -> Vec<SourceFile> {
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
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths.sort();
    paths.into_iter().map(|path| parse(&src, path)).collect()
}

fn parse(src: &Path, path: PathBuf) -> SourceFile {
    let text = std::fs::read_to_string(&path).unwrap();
    let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut module: Vec<String> =
        path.strip_prefix(src).unwrap().with_extension("").components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
    if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        module.pop();
    }
    SourceFile { path, module, syntax }
}

/// Something a file's syntax tree holds, with its line and whether it is test code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Found<T> {
    line: usize,
    in_test: bool,
    what: T,
}

/// Walks one file: the module paths it names, the front-end names it uses and its functions.
struct Reader {
    /// The module the walk is in: the file's, then each inline `mod` entered.
    module: Vec<String>,
    /// How many `#[cfg(test)]` modules or `#[test]` functions the walk is inside.
    in_test: usize,
    /// Paths through `crate::`, `super::` or `pg2bq::`, resolved to absolute module paths.
    paths: Vec<Found<Vec<String>>>,
    names: Vec<Found<String>>,
    /// `(name, lines)`.
    functions: Vec<Found<(String, usize)>>,
}

impl Reader {
    fn read(file: &SourceFile) -> Self {
        let mut reader = Self { module: file.module.clone(), in_test: 0, paths: Vec::new(), names: Vec::new(), functions: Vec::new() };
        reader.visit_file(&file.syntax);
        reader
    }

    /// `segments` (as written) as an absolute path from the crate root, if it starts there.
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        match first.as_str() {
            "crate" | "pg2bq" => Some(rest.to_vec()),
            "super" => {
                let mut module = self.module.clone();
                let mut rest = segments;
                while let Some(("super", tail)) = rest.split_first().map(|(s, t)| (s.as_str(), t)) {
                    module.pop()?;
                    rest = tail;
                }
                Some(module.into_iter().chain(rest.iter().cloned()).collect())
            }
            _ => None,
        }
    }

    fn record_path(&mut self, line: usize, segments: &[String]) {
        if let Some(path) = self.absolute(segments) {
            self.paths.push(Found { line, in_test: self.in_test > 0, what: path });
        }
    }

    fn record_name(&mut self, ident: &proc_macro2::Ident) {
        let name = ident.to_string();
        if FRONT_END_NAMES.contains(&name.as_str()) {
            self.names.push(Found { line: ident.span().start().line, in_test: self.in_test > 0, what: name });
        }
    }

    /// `use a::{b::c, d}` → `a::b::c`, `a::d`.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, &n.ident),
            syn::UseTree::Rename(r) => self.use_leaf(prefix, &r.ident),
            syn::UseTree::Glob(g) => self.record_path(g.star_token.span.start().line, prefix),
            syn::UseTree::Group(g) => g.items.iter().for_each(|item| self.use_tree(prefix, item)),
        }
    }

    fn use_leaf(&mut self, prefix: &[String], ident: &proc_macro2::Ident) {
        let mut path = prefix.to_vec();
        if ident != "self" {
            path.push(ident.to_string());
        }
        self.record_path(ident.span().start().line, &path);
    }

    /// Macro bodies are tokens: `crate :: a :: b` sequences in them are paths too.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut at = 0;
        while at < trees.len() {
            match &trees[at] {
                TokenTree::Group(group) => self.tokens(group.stream()),
                TokenTree::Ident(ident) => {
                    let mut segments = vec![ident.to_string()];
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(next))) =
                        (trees.get(at + 1), trees.get(at + 2), trees.get(at + 3))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        at += 3;
                    }
                    self.record_path(ident.span().start().line, &segments);
                    self.record_name(ident);
                }
                _ => {}
            }
            at += 1;
        }
    }

    fn function(&mut self, attrs: &[syn::Attribute], sig: &syn::Signature, block: &syn::Block, visit: impl FnOnce(&mut Self)) {
        let test = attrs.iter().any(|a| a.path().is_ident("test") || a.path().segments.last().is_some_and(|s| s.ident == "test"));
        self.in_test += usize::from(test);
        let first = sig.fn_token.span.start().line;
        let lines = block.brace_token.span.close().start().line - first + 1;
        self.functions.push(Found { line: first, in_test: self.in_test > 0, what: (sig.ident.to_string(), lines) });
        visit(self);
        self.in_test -= usize::from(test);
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test"))
}

impl<'ast> Visit<'ast> for Reader {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        let test = is_cfg_test(&item.attrs);
        self.in_test += usize::from(test);
        self.module.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.module.pop();
        self.in_test -= usize::from(test);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
        syn::visit::visit_item_use(self, item);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(first) = path.segments.first() {
            self.record_path(first.ident.span().start().line, &segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_ident(&mut self, ident: &'ast proc_macro2::Ident) {
        self.record_name(ident);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        self.function(&item.attrs, &item.sig, &item.block, |me| syn::visit::visit_item_fn(me, item));
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        self.function(&item.attrs, &item.sig, &item.block, |me| syn::visit::visit_impl_item_fn(me, item));
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        match &item.default {
            Some(block) => self.function(&item.attrs, &item.sig, block, |me| syn::visit::visit_trait_item_fn(me, item)),
            None => syn::visit::visit_trait_item_fn(self, item),
        }
    }
}

fn allowed(table: &[(&str, &'static [&'static str])], module: &str) -> &'static [&'static str] {
    table.iter().find(|(name, _)| *name == module).map_or(&[], |(_, allowed)| *allowed)
}

#[test]
fn every_top_level_module_has_a_place_in_the_layers() {
    let unlisted: BTreeSet<String> =
        source_files().iter().map(|file| file.top().to_string()).filter(|top| !MAY_IMPORT.iter().any(|(name, _)| name == top)).collect();
    assert!(unlisted.is_empty(), "add these modules to MAY_IMPORT (and docs/architecture.md): {unlisted:?}");
}

#[test]
fn layers_import_only_the_layers_below_them() {
    let modules: Vec<&str> = MAY_IMPORT.iter().map(|(name, _)| *name).collect();
    let mut violations = Vec::new();
    for file in source_files() {
        let module = file.top();
        for found in Reader::read(&file).paths {
            let Some(imported) = found.what.first().map(String::as_str).filter(|m| modules.contains(m)) else { continue };
            let also = if found.in_test { allowed(TESTS_MAY_ALSO_IMPORT, module) } else { &[] };
            if imported != module && !allowed(MAY_IMPORT, module).contains(&imported) && !also.contains(&imported) {
                violations.push(format!("{}:{}: `{module}` imports `{}`", file.shown(), found.line, found.what.join("::")));
            }
        }
    }
    assert!(violations.is_empty(), "layer rule broken (see docs/architecture.md):\n{}", violations.join("\n"));
}

/// The file a module path lives in, among `files` (the longest prefix that is a file's module).
fn file_of<'a>(files: &'a [SourceFile], path: &[String]) -> Option<&'a SourceFile> {
    (1..=path.len()).rev().find_map(|n| files.iter().find(|f| f.module == path[..n] && !f.module.is_empty()))
}

/// Each file and the other files its code (not its tests: their fixtures may come from anywhere
/// below) names.
fn file_imports(files: &[SourceFile]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for file in files {
        let imports: BTreeSet<String> = Reader::read(file)
            .paths
            .iter()
            .filter(|found| !found.in_test)
            .filter_map(|found| file_of(files, &found.what))
            .filter(|target| target.path != file.path)
            .map(SourceFile::shown)
            .collect();
        graph.insert(file.shown(), imports);
    }
    graph
}

/// The cycles of `graph` found by a depth-first walk, each as the files around it.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            out.push(stack[at..].to_vec());
            return;
        }
        if !done.insert(node.to_string()) {
            return;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            walk(next, graph, stack, done, out);
        }
        stack.pop();
    }
    let (mut done, mut out) = (BTreeSet::new(), Vec::new());
    for node in graph.keys() {
        walk(node, graph, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let files = source_files();
    // A module's own `mod.rs` declares its files, and they may use what it defines.
    let graph: BTreeMap<String, BTreeSet<String>> = file_imports(&files)
        .into_iter()
        .map(|(file, imports)| {
            let kept = imports.into_iter().filter(|target| !(target.ends_with("mod.rs") && is_parent(target, &file))).collect();
            (file, kept)
        })
        .collect();
    let found = cycles(&graph);
    assert!(found.is_empty(), "files importing each other in a circle: {found:?}");
}

/// Whether `module_file` (a `mod.rs`) is the module `file` sits in (or above it).
fn is_parent(module_file: &str, file: &str) -> bool {
    let directory = module_file.trim_end_matches("mod.rs");
    file.starts_with(directory) && file != module_file
}

#[test]
fn only_the_front_end_knows_clap_and_terminals() {
    let mut violations = Vec::new();
    for file in source_files() {
        let shown = file.shown();
        if FRONT_END.contains(&shown.as_str()) {
            continue;
        }
        for found in Reader::read(&file).names {
            violations.push(format!("{shown}:{}: `{}`", found.line, found.what));
        }
    }
    assert!(violations.is_empty(), "only {FRONT_END:?} may use clap or the terminal:\n{}", violations.join("\n"));
}

#[test]
fn functions_fit_on_a_screen() {
    let mut long = Vec::new();
    for file in source_files() {
        for found in Reader::read(&file).functions {
            let (name, lines) = &found.what;
            let exempt = TABLE_LIKE.contains(&name.as_str()) || (found.in_test && TESTS_MAY_BE_LONGER.contains(&name.as_str()));
            if *lines > MAX_FUNCTION_LINES && !exempt {
                long.push(format!("{}:{}: `{name}` has {lines} lines", file.shown(), found.line));
            }
        }
    }
    assert!(long.is_empty(), "split these into named steps (at most {MAX_FUNCTION_LINES} lines):\n{}", long.join("\n"));
}

#[test]
fn the_checks_see_what_they_look_for() {
    let text = r#"
use crate::load::plan::{x, y as z};
mod inner {
    use super::super::validate::Check;
    fn f() -> u8 {
        format!("{}", crate::verify::run());
        1
    }
}
#[cfg(test)]
mod tests {
    #[test]
    fn t() {
        clap::Parser::parse_from([""]);
    }
}
"#;
    let file =
        SourceFile { path: PathBuf::from("src/export/mod.rs"), module: vec!["export".into()], syntax: syn::parse_file(text).unwrap() };
    let reader = Reader::read(&file);
    let paths: Vec<(usize, bool, String)> = reader.paths.iter().map(|f| (f.line, f.in_test, f.what.join("::"))).collect();
    let expected = [(2, false, "load::plan::x"), (2, false, "load::plan::y"), (4, false, "validate::Check"), (6, false, "verify::run")];
    assert_eq!(paths, expected.map(|(l, t, p)| (l, t, p.to_string())));
    assert_eq!(reader.names, vec![Found { line: 14, in_test: true, what: "clap".to_string() }]);
    let functions: Vec<(String, usize, bool)> = reader.functions.iter().map(|f| (f.what.0.clone(), f.what.1, f.in_test)).collect();
    assert_eq!(functions, vec![("f".to_string(), 4, false), ("t".to_string(), 3, true)]);
    let graph =
        BTreeMap::from([("a".to_string(), BTreeSet::from(["b".to_string()])), ("b".to_string(), BTreeSet::from(["a".to_string()]))]);
    assert_eq!(cycles(&graph), vec![vec!["a".to_string(), "b".to_string()]]);
}

/// The repository's files that `text` cites by path: `src/…`, `tests/…`, `scripts/…`, `benches/…`.
fn cited_paths(text: &str) -> BTreeSet<String> {
    let mut cited = BTreeSet::new();
    for root in ["src/", "tests/", "scripts/", "benches/"] {
        for (at, _) in text.match_indices(root) {
            let preceded = text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '.');
            let path: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || "/_.-".contains(*c)).collect();
            let path = path.trim_end_matches('.');
            if !preceded && path.rsplit('/').next().is_some_and(|file| file.contains('.')) {
                cited.insert(path.to_string());
            }
        }
    }
    cited
}

#[test]
fn the_docs_cite_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut documents = vec![root.join("README.md"), root.join("Cargo.toml")];
    documents.extend(
        std::fs::read_dir(root.join("docs")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    let mut missing = Vec::new();
    for document in documents {
        let text = std::fs::read_to_string(&document).unwrap();
        for path in cited_paths(&text).into_iter().filter(|path| !root.join(path).exists()) {
            missing.push(format!("{}: `{path}`", document.strip_prefix(root).unwrap().display()));
        }
    }
    assert!(missing.is_empty(), "the docs cite files that are not there:\n{}", missing.join("\n"));
    assert_eq!(
        cited_paths("see src/load/plan.rs, `tests/it/main.rs`. vendor/x/src/a.rs src/"),
        ["src/load/plan.rs", "tests/it/main.rs"].map(String::from).into()
    );
}
