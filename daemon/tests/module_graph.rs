//! The daemon's modules depend on each other in one direction only.
//!
//! ```text
//!  cli ─▶ app ─▶ http / services ─▶ ca, store, keys ─▶ (pkid-protocols)
//! ```
//!
//! This test reads every file under `daemon/src`, collects the `crate::…` and `super::…` paths
//! it names (in `use` declarations and inline, with nested `use` groups expanded), resolves each
//! to the file that defines the module, and fails when the graph of files has a cycle, naming
//! the files of one cycle. A parent reaching its own child module by its bare name (`mod child;`
//! then `child::f()`) is how Rust nests modules and is not read; a child reaching back up with
//! `super::` or `crate::` is, so "a module imports one that imports it back" is caught across
//! every nesting level.
//!
//! Comments, doc comments and string literals are skipped, so a path in prose is not an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path from the crate root (`["http", "ocsp"]`).
type ModPath = Vec<String>;

/// Every `.rs` file under `src` with the module path it defines (`main.rs` is the binary and is
/// left out: it only calls `cli::main`).
fn files(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<ModPath, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read daemon/src")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, src, out);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let last = parts.pop().expect("file name");
            let stem = last.trim_end_matches(".rs");
            match stem {
                "main" if parts.is_empty() => continue,
                "lib" if parts.is_empty() => {}
                "mod" => {}
                other => parts.push(other.to_string()),
            }
            out.insert(parts, path);
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The source with comments and string/char literals replaced by spaces (line structure kept).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && raw_string(b, i) {
            // r"…" or r#"…"#
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                if b[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push(' ');
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                } else if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push(' ');
        } else if c == b'\'' && char_literal_len(b, i).is_some() {
            i += char_literal_len(b, i).unwrap_or(1);
            out.push(' ');
        } else {
            // Copy one whole UTF-8 character.
            let len = utf8_len(c);
            out.push_str(&text[i..i + len]);
            i += len;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Whether `r` at `i` starts a raw string (not the end of an identifier such as `br` or `for`).
fn raw_string(b: &[u8], i: usize) -> bool {
    let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    let prev_ok = !prev_ident || (b[i - 1] == b'b' && (i < 2 || !b[i - 2].is_ascii_alphanumeric()));
    let mut j = i + 1;
    while b.get(j) == Some(&b'#') {
        j += 1;
    }
    prev_ok && b.get(j) == Some(&b'"')
}

/// The length of a char literal at `i` (`'a'`, `'\n'`, `'\u{1F600}'`, `'é'`), or `None` for a
/// lifetime (`'a`, `'static`).
fn char_literal_len(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i + 1) == Some(&b'\\') {
        let mut j = i + 2;
        while j < b.len() && b[j] != b'\'' && j - i < 12 {
            j += 1;
        }
        return (b.get(j) == Some(&b'\'')).then_some(j - i + 1);
    }
    let len = utf8_len(*b.get(i + 1)?);
    (b.get(i + 1 + len) == Some(&b'\'')).then_some(len + 2)
}

/// One token of a path or `use` tree.
#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Sep,
    Open,
    Close,
    Comma,
    Other,
}

fn tokens(code: &str) -> Vec<Tok> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(code[s..i].to_string()));
            continue;
        }
        match c {
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push(Tok::Sep);
                i += 2;
                continue;
            }
            b'{' => out.push(Tok::Open),
            b'}' => out.push(Tok::Close),
            b',' => out.push(Tok::Comma),
            c if c.is_ascii_whitespace() => {}
            _ => out.push(Tok::Other),
        }
        i += 1;
    }
    out
}

/// Reads a path or `use` tree that starts after `prefix::` at `toks[i]`, appending every full
/// path it names to `out`. Returns the index after it.
fn read_tree(toks: &[Tok], mut i: usize, prefix: &ModPath, out: &mut Vec<ModPath>) -> usize {
    let mut path = prefix.clone();
    loop {
        match toks.get(i) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                i += 1;
                if toks.get(i) == Some(&Tok::Sep) {
                    i += 1;
                    continue;
                }
                out.push(path);
                return i;
            }
            Some(Tok::Open) => {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Tok::Close) => return i + 1,
                        Some(Tok::Comma) => i += 1,
                        None => return i,
                        _ => {
                            let before = i;
                            i = read_tree(toks, i, &path, out);
                            if i == before {
                                i += 1;
                            }
                        }
                    }
                }
            }
            _ => {
                out.push(path);
                return i;
            }
        }
    }
}

/// The module paths a file names through `crate::` and `super::`, relative to the crate root.
fn referenced(module: &ModPath, code: &str) -> Vec<ModPath> {
    let toks = tokens(code);
    // Inline modules (`mod tests { … }`) change what `super` means inside them.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Open)) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Tok::Ident(kw)
                if (kw == "crate" || kw == "super")
                    && toks.get(i + 1) == Some(&Tok::Sep)
                    && !(i > 0 && toks[i - 1] == Tok::Sep) =>
            {
                let mut base: ModPath = if kw == "crate" {
                    Vec::new()
                } else {
                    let mut here = module.clone();
                    here.extend(inline.iter().map(|(n, _)| n.clone()));
                    here.pop();
                    here
                };
                let mut j = i + 2;
                // super::super::…
                while toks.get(j) == Some(&Tok::Ident("super".into()))
                    && toks.get(j + 1) == Some(&Tok::Sep)
                {
                    base.pop();
                    j += 2;
                }
                i = read_tree(&toks, j, &base, &mut out);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The file-defined module a path lands in: its longest prefix that is a file.
fn owner<'a>(path: &ModPath, files: &'a BTreeMap<ModPath, PathBuf>) -> Option<&'a ModPath> {
    (0..=path.len())
        .rev()
        .find_map(|n| files.get_key_value(&path[..n]).map(|(k, _)| k))
}

/// The file-level dependency graph of `daemon/src`.
fn graph(
    src: &Path,
) -> (
    BTreeMap<ModPath, PathBuf>,
    BTreeMap<ModPath, BTreeSet<ModPath>>,
) {
    let files = files(src);
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).expect("read source");
        let deps = edges.entry(module.clone()).or_default();
        for r in referenced(module, &code_only(&text)) {
            if let Some(to) = owner(&r, &files) {
                // A file reaching an ancestor's item it is nested in is how `super::` works
                // only when the ancestor is the crate root (lib.rs holds nothing but `mod`s).
                if to != module && !to.is_empty() {
                    deps.insert(to.clone());
                }
            }
        }
    }
    (files, edges)
}

/// One cycle through `start`, if there is one (breadth-first, so the shortest).
fn cycle_through(
    start: &ModPath,
    edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
) -> Option<Vec<ModPath>> {
    let mut prev: BTreeMap<ModPath, ModPath> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(at) = queue.pop_front() {
        for next in edges.get(&at).into_iter().flatten() {
            if next == start {
                let mut path = vec![at.clone()];
                let mut cur = at.clone();
                while let Some(p) = prev.get(&cur) {
                    path.push(p.clone());
                    cur = p.clone();
                }
                path.reverse();
                return Some(path);
            }
            if next != start && !prev.contains_key(next) {
                prev.insert(next.clone(), at.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}

fn name(m: &ModPath, files: &BTreeMap<ModPath, PathBuf>, src: &Path) -> String {
    files
        .get(m)
        .and_then(|p| p.strip_prefix(src).ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| m.join("::"))
}

#[test]
fn daemon_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (files, edges) = graph(&src);
    assert!(files.len() > 10, "found only {} files", files.len());
    let mut cycles = Vec::new();
    let mut seen: BTreeSet<ModPath> = BTreeSet::new();
    for m in files.keys() {
        if seen.contains(m) {
            continue;
        }
        if let Some(c) = cycle_through(m, &edges) {
            seen.extend(c.iter().cloned());
            let names: Vec<String> = c.iter().map(|m| name(m, &files, &src)).collect();
            cycles.push(format!("{} → {}", names.join(" → "), names[0]));
        }
    }
    assert!(
        cycles.is_empty(),
        "module cycles (each file imports the next through `crate::`/`super::`):\n  {}",
        cycles.join("\n  ")
    );
}

#[test]
fn the_reader_finds_use_groups_inline_paths_and_super_but_not_comments() {
    let module: ModPath = vec!["http".into(), "ocsp".into()];
    let code = code_only(
        "use crate::{cli::{Failure, ServeArgs}, config::Config};\n\
         use super::AppState;\n\
         // crate::ignored::in_comment\n\
         let s = \"crate::ignored::in_string\";\n\
         fn f() { crate::ca::issue(); }\n\
         mod tests { use super::*; use super::super::routes; }\n",
    );
    let got: BTreeSet<String> = referenced(&module, &code)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let want: BTreeSet<String> = [
        "cli::Failure",
        "cli::ServeArgs",
        "config::Config",
        "http::AppState",
        "ca::issue",
        "http::ocsp",
        "http::routes",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(got, want);
}

#[test]
fn a_cycle_is_found_and_named() {
    let a: ModPath = vec!["a".into()];
    let b: ModPath = vec!["b".into()];
    let c: ModPath = vec!["c".into()];
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    edges.entry(a.clone()).or_default().insert(b.clone());
    edges.entry(b.clone()).or_default().insert(c.clone());
    edges.entry(c.clone()).or_default().insert(a.clone());
    assert_eq!(
        cycle_through(&a, &edges),
        Some(vec![a.clone(), b, c.clone()])
    );
    if let Some(s) = edges.get_mut(&c) {
        s.remove(&a);
    }
    assert_eq!(cycle_through(&a, &edges), None);
}
