//! The layers of ARCHITECTURE.md, checked: a module may import only from
//! its own layer and the layers below it. Reads the sources, so a new
//! import across the line fails here with the file and line.

use std::path::Path;

/// Each layer (a folder or file under src/) and what it may import.
/// `stderrln`/`stderr` are notice.rs's macros (exported at the crate root).
const LAYERS: &[(&str, &[&str])] = &[
    ("notice", &["stderrln", "stderr"]),
    ("collect", &["collect", "notice", "stderrln", "stderr"]),
    ("tables", &["tables", "collect", "notice", "table_columns", "stderrln", "stderr"]),
    ("query", &["query", "tables", "collect", "notice", "stderrln", "stderr"]),
    ("history", &["history", "query", "tables", "collect", "notice", "stderrln", "stderr"]),
    ("serve", &["serve", "query", "tables", "collect", "notice", "stderrln", "stderr"]),
    ("cli", &["cli", "serve", "history", "query", "tables", "collect", "notice", "stderrln", "stderr"]),
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

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        let Some((_, allowed)) = LAYERS.iter().find(|(l, _)| *l == top) else { continue };
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
            if line.contains("super::super::super") {
                violations.push(format!("src/{}:{}: climbs out of its layer with super::", rel.display(), n + 1));
            }
        }
    }
    assert!(checked > 40, "only {checked} files checked: the layer list is stale");
    assert!(violations.is_empty(), "imports from a layer above:\n{}", violations.join("\n"));
}
