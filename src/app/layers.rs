//! The layer rule, checked: every `crate::` path in the source (comments aside) must name a
//! module of a lower layer than the file's own top-level module. A new top-level module
//! must be given a layer here before anything compiles against it unnoticed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module and its layer. A module may use only modules of lower layers.
const LAYERS: &[(&str, u8)] = &[
    // Leaves that everyone uses.
    ("clock", 0),
    ("telemetry", 0),
    ("http_common", 0),
    ("keys", 0),
    ("sd_notify", 0),
    ("config", 1),
    ("locale", 2),
    ("hsm", 2),
    ("ca", 3),
    ("store", 3),
    ("audit", 4),
    ("lifecycle", 5),
    ("status", 5),
    ("tls", 6),
    ("identity", 7),
    // What serves requests and runs in the background.
    ("proxy", 8),
    ("web", 8),
    ("admin", 8),
    ("staff", 8),
    ("notify", 8),
    ("demo", 8),
    // The composition root, then the command line.
    ("app", 9),
    ("cli", 10),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find_map(|(m, l)| (*m == module).then_some(*l))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a source file belongs to (`src/proxy/handler.rs` → `proxy`).
fn owner(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

/// The modules a source text reaches with `crate::NAME` or `crate::{NAME, ...}`, with the
/// line of each; comments are left out.
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    // Comments out, line numbers kept.
    let code: Vec<&str> = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect();
    let code = code.join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("crate::") {
        let at = from + i;
        from = at + "crate::".len();
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let after = &code[from..];
        if let Some(group) = after.strip_prefix('{') {
            // The names at the group's first level, e.g. `clock` and `config` in
            // `crate::{clock::Clock, config::{self, Config}}`.
            let mut depth = 1;
            let mut start_of_item = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => start_of_item = true,
                    c if start_of_item && !c.is_whitespace() => {
                        start_of_item = false;
                        let name = ident(&group[k..]);
                        if !name.is_empty() {
                            out.push((line_of(from + 1 + k), name));
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(after);
            if !name.is_empty() {
                out.push((line_of(at), name));
            }
        }
    }
    out
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut missing = BTreeSet::new();
    for f in &files {
        let Some(m) = owner(&src, f) else { continue };
        if m != "lib" && m != "main" && layer(&m).is_none() {
            missing.insert(m);
        }
    }
    assert!(
        missing.is_empty(),
        "give these modules a layer in src/app/layers.rs: {missing:?}"
    );
}

#[test]
fn modules_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut wrong = Vec::new();
    for f in &files {
        let Some(m) = owner(&src, f) else { continue };
        let Some(own) = layer(&m) else { continue };
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (line, used) in crate_refs(&text) {
            if used == m {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                Some(l) => wrong.push(format!(
                    "{}:{line}: {m} (layer {own}) uses {used} (layer {l})",
                    f.strip_prefix(&src).unwrap_or(f).display(),
                )),
                // Not a module (a macro or an item at the crate root).
                None => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn references_are_found_in_paths_and_groups() {
    let names = |t: &str| -> Vec<String> { crate_refs(t).into_iter().map(|(_, n)| n).collect() };
    assert_eq!(names("use crate::store::Store;"), ["store"]);
    assert_eq!(
        names("use crate::{\n    clock::Clock,\n    config::{self, Config},\n};"),
        ["clock", "config"]
    );
    assert_eq!(
        crate_refs("a\nlet x = crate::proxy::f(); // crate::web"),
        [(2, "proxy".to_owned())]
    );
    assert!(names("//! see [`crate::web`]").is_empty());
    assert!(names("my_crate::web::f()").is_empty());
}
