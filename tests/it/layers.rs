//! The layers of ARCHITECTURE.md, checked. Below the front ends each layer
//! is its own package, so the compiler refuses an import upward (it would
//! be a dependency cycle); what is left to check here is what the
//! compiler cannot see: that no layer package gains a dependency it must
//! not have (the kernel readers stay free of Arrow and DataFusion), and
//! that the front ends, which share the `sockql` package, import only
//! from themselves and the layers below.

use std::path::Path;

/// Each layer package and the packages it must never depend on.
const PACKAGES: &[(&str, &[&str])] = &[
    (
        "crates/collect",
        &["datafusion", "arrow", "parquet", "object_store", "sockql-tables", "sockql-query", "sockql", "tokio"],
    ),
    ("crates/tables", &["sockql-query", "sockql", "pgwire", "hyper", "rustyline", "clap"]),
    ("crates/query", &["sockql", "pgwire", "hyper", "rustyline", "clap"]),
    // Writing rows out sits beside the front ends: no front end, no
    // tables, no servers (the PostgreSQL row format, not its protocol).
    ("crates/output", &["sockql", "sockql-tables", "hyper", "tonic", "arrow-flight", "rustyline", "tokio"]),
];

/// The names in a manifest's `[dependencies]` table.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
        } else if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            out.push(name.trim().to_string());
        }
    }
    out
}

#[test]
fn no_layer_package_depends_on_what_is_above_it_or_on_arrow_below_tables() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (dir, never) in PACKAGES {
        let manifest = std::fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap();
        let deps = dependencies(&manifest);
        assert!(!deps.is_empty(), "{dir}/Cargo.toml lists no dependencies: the check reads the wrong table");
        let bad: Vec<_> = deps.iter().filter(|d| never.contains(&d.as_str())).collect();
        assert!(bad.is_empty(), "{dir} depends on {bad:?}, which its layer must not use");
    }
}

/// Each front end (a folder under src/) and the `crate::` names it may use:
/// its own, the lower layers (re-exported by src/lib.rs under their layer
/// names) and the notice macros.
const FRONT_ENDS: &[(&str, &[&str])] = &[
    ("history", &["history", "query", "tables", "collect", "notice", "stderrln", "stderr"]),
    ("serve", &["serve", "output", "query", "tables", "collect", "notice", "stderrln", "stderr"]),
    ("cli", &["cli", "serve", "history", "output", "query", "tables", "collect", "notice", "stderrln", "stderr"]),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// How many `super::` from this file reach the package root: src/serve/mod.rs
/// is module `serve` (one), src/serve/pg/session.rs is `serve::pg::session`
/// (three).
fn module_depth(rel: &Path) -> usize {
    let parts = rel.components().count();
    match rel.file_name().and_then(|f| f.to_str()) {
        Some("mod.rs") => parts - 1,
        _ => parts,
    }
}

/// The names a line reaches at the package root through `super::` chains.
fn names_past_the_root(line: &str, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("super::") {
        let mut after = &rest[i..];
        let mut ups = 0;
        while let Some(next) = after.strip_prefix("super::") {
            ups += 1;
            after = next;
        }
        if ups >= depth {
            out.push(after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
        }
        rest = after;
    }
    out
}

#[test]
fn a_super_chain_is_judged_where_it_lands() {
    let session = Path::new("serve/pg/session.rs");
    assert_eq!(module_depth(session), 3);
    assert_eq!(module_depth(Path::new("serve/mod.rs")), 1);
    assert_eq!(names_past_the_root("use super::super::super::cli::args;", 3), vec!["cli".to_string()]);
    assert!(names_past_the_root("use super::super::encode;", 3).is_empty());
}

#[test]
fn no_front_end_imports_from_a_front_end_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        let Some((_, allowed)) = FRONT_ENDS.iter().find(|(l, _)| *l == top) else { continue };
        checked += 1;
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for (i, _) in line.match_indices("crate::") {
                let name: String =
                    line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !allowed.contains(&name.as_str()) {
                    violations.push(format!("src/{}:{}: {top} imports crate::{name}", rel.display(), n + 1));
                }
            }
            for name in names_past_the_root(line, module_depth(rel)) {
                if !allowed.contains(&name.as_str()) {
                    violations.push(format!("src/{}:{}: {top} reaches {name} with super::", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} files checked: the front-end list is stale");
    assert!(violations.is_empty(), "imports from a front end above:\n{}", violations.join("\n"));
}
