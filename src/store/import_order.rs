//! A check, run with the unit tests, that the files of `store` import each other in one
//! direction only: no two of them (and no chain of them) import each other, and the same
//! inside `issue_writer`. It reads the sources as text (`include_str!`), so it sees every
//! `super::…`, `crate::store::…` and `$crate::store::…` path, macros' included.
//!
//! `store/mod.rs` is not part of the graph: every topic file adds methods to the `Store` it
//! defines, which is the module tree, not a dependency between topics. `issue_writer/mod.rs`
//! stands for the whole writer on the store level (its files' imports count as its own) and
//! only declares and re-exports inside it. A file added to `store` or `issue_writer` must be
//! listed below (a test fails until it is).

use std::collections::{BTreeMap, BTreeSet};

/// The store's files by module name, `mod.rs` excepted.
const STORE_FILES: &[(&str, &str)] = &[
    ("accounts", include_str!("accounts.rs")),
    ("audit_chain", include_str!("audit_chain.rs")),
    ("backend", include_str!("backend.rs")),
    ("cas", include_str!("cas.rs")),
    ("certs", include_str!("certs.rs")),
    ("changes", include_str!("changes.rs")),
    ("checkpoints", include_str!("checkpoints.rs")),
    ("codes", include_str!("codes.rs")),
    ("crl_bases", include_str!("crl_bases.rs")),
    ("enablement", include_str!("enablement.rs")),
    ("error", include_str!("error.rs")),
    ("issuance_parts", include_str!("issuance_parts.rs")),
    ("issue_writer", include_str!("issue_writer/mod.rs")),
    ("model", include_str!("model.rs")),
    ("notices", include_str!("notices.rs")),
    ("rows", include_str!("rows.rs")),
    ("server_certs", include_str!("server_certs.rs")),
    ("signatures", include_str!("signatures.rs")),
    ("staff", include_str!("staff.rs")),
];

/// The group writer's files by module name, `mod.rs` excepted.
const WRITER_FILES: &[(&str, &str)] = &[
    ("batch", include_str!("issue_writer/batch.rs")),
    ("connection", include_str!("issue_writer/connection.rs")),
    ("job", include_str!("issue_writer/job.rs")),
    ("job_path", include_str!("issue_writer/job_path.rs")),
    ("queue", include_str!("issue_writer/queue.rs")),
    ("set_path", include_str!("issue_writer/set_path.rs")),
];

/// Modules declared in a `mod.rs`, test-only ones (`#[cfg(test)]` on the line before)
/// left out.
fn declared(mod_rs: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut test_only = false;
    for line in mod_rs.lines().map(str::trim) {
        let decl = line
            .strip_prefix("pub(crate) ")
            .or_else(|| line.strip_prefix("pub "))
            .unwrap_or(line);
        if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';'))
            && !test_only
        {
            out.insert(name.to_owned());
        }
        test_only = line == "#[cfg(test)]";
    }
    out
}

/// The source without `//` comments (doc comments name paths that are not imports).
fn code_only(src: &str) -> String {
    src.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths named after `rest`'s start: `a::b`, or each member of `{a::b, c}` (nested
/// groups included), each as its components.
fn paths_at(rest: &str) -> Vec<Vec<String>> {
    let ident: String = rest.chars().take_while(|&c| is_ident(c)).collect();
    if !ident.is_empty() {
        let after = &rest[ident.len()..];
        let tails = match after.strip_prefix("::") {
            Some(more) => paths_at(more),
            None => vec![Vec::new()],
        };
        return tails
            .into_iter()
            .map(|t| std::iter::once(ident.clone()).chain(t).collect())
            .collect();
    }
    let Some(group) = rest.strip_prefix('{') else {
        return vec![Vec::new()];
    };
    // Split the group's members at top-level commas.
    let (mut depth, mut start, mut out) = (0usize, 0usize, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.extend(paths_at(group[start..i].trim_start()));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.extend(paths_at(group[start..i].trim_start()));
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

/// Every path `src` names, resolved to components below `store` (`crate::store::a::b` →
/// `[a, b]`). `here` is the file's module path below `store`.
fn references(here: &[&str], src: &str) -> Vec<Vec<String>> {
    let code = code_only(src);
    let mut out = Vec::new();
    for (i, _) in code.match_indices("::") {
        // Only the first `::` of a path: what precedes it is the path's root.
        let before = &code[..i];
        let root_start = before
            .rfind(|c: char| !(is_ident(c) || c == '$' || c == ':'))
            .map_or(0, |p| p + 1);
        let root = &before[root_start..];
        if root.contains("::") {
            continue;
        }
        let (base, rest): (Vec<&str>, &str) = match root {
            "super" => {
                let mut base = here.to_vec();
                let mut rest = &code[i + 2..];
                base.pop();
                while let Some(more) = rest.strip_prefix("super::") {
                    base.pop();
                    rest = more;
                }
                (base, rest)
            }
            "self" => (here.to_vec(), &code[i + 2..]),
            "crate" | "$crate" => match code[i + 2..].strip_prefix("store::") {
                Some(rest) => (Vec::new(), rest),
                None => continue,
            },
            _ => continue,
        };
        for tail in paths_at(rest) {
            let mut full: Vec<String> = base.iter().map(|s| (*s).to_owned()).collect();
            full.extend(tail);
            out.push(full);
        }
    }
    out
}

/// The first cycle in `edges`, as the nodes along it, if any.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}

/// The imports between the files of one folder: `files` are the module paths (below
/// `store`) and sources of its files; a reference counts when it resolves to `prefix`
/// followed by one of the folder's modules. References further down are collapsed onto
/// the module that holds them.
fn folder_edges(
    files: &[(Vec<&str>, &str)],
    prefix: &[&str],
    modules: &BTreeSet<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (here, src) in files {
        let Some(from) = here.get(prefix.len()) else {
            continue;
        };
        let entry = edges.entry((*from).to_owned()).or_default();
        for path in references(here, src) {
            if path.len() > prefix.len()
                && path.iter().zip(prefix).all(|(a, b)| a == b)
                && modules.contains(&path[prefix.len()])
                && path[prefix.len()] != *from
            {
                entry.insert(path[prefix.len()].clone());
            }
        }
    }
    edges
}

/// The store's files and the writer's, with their module paths below `store`.
fn all_files() -> Vec<(Vec<&'static str>, &'static str)> {
    let mut files: Vec<(Vec<&str>, &str)> = STORE_FILES
        .iter()
        .map(|(name, src)| (vec![*name], *src))
        .collect();
    files.extend(
        WRITER_FILES
            .iter()
            .map(|(name, src)| (vec!["issue_writer", *name], *src)),
    );
    files
}

#[test]
fn every_store_file_is_checked() {
    let listed = |files: &[(&str, &str)]| -> BTreeSet<String> {
        files.iter().map(|(n, _)| (*n).to_owned()).collect()
    };
    assert_eq!(
        declared(include_str!("mod.rs")),
        listed(STORE_FILES),
        "list the store's files in import_order.rs"
    );
    assert_eq!(
        declared(include_str!("issue_writer/mod.rs")),
        listed(WRITER_FILES),
        "list the writer's files in import_order.rs"
    );
}

#[test]
fn store_imports_run_one_way() {
    let files = all_files();
    let store_modules: BTreeSet<String> = STORE_FILES.iter().map(|(n, _)| (*n).into()).collect();
    let edges = folder_edges(&files, &[], &store_modules);
    assert!(
        edges["certs"].contains("issuance_parts")
            && edges["issue_writer"].contains("issuance_parts"),
        "the check no longer sees imports: {edges:?}"
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("store files import each other: {}", cycle.join(" → "));
    }
    let writer_modules: BTreeSet<String> = WRITER_FILES.iter().map(|(n, _)| (*n).into()).collect();
    let edges = folder_edges(&files, &["issue_writer"], &writer_modules);
    assert!(
        edges["batch"].contains("set_path"),
        "the check no longer sees the writer's imports: {edges:?}"
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "issue_writer files import each other: {}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn a_cycle_is_found() {
    let a = "use super::b::thing;\n";
    let b = "// super::a::x is only a comment\nuse crate::store::{c::{self, y}, Store};\n";
    let c = "fn f() { $crate::store::a::z!() }\n";
    let files = vec![(vec!["a"], a), (vec!["b"], b), (vec!["c"], c)];
    let modules: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| (*s).into()).collect();
    let edges = folder_edges(&files, &[], &modules);
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let files = vec![(vec!["a"], a), (vec!["b"], "use super::Store;\n")];
    assert_eq!(find_cycle(&folder_edges(&files, &[], &modules)), None);
}
