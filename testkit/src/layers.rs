//! The module layering a crate writes in its `lib.rs`, checked against its `use crate::…` lines.
//!
//! A crate's `lib.rs` module map is a Markdown table in `//!` docs whose first column is the
//! layer (a number starting the cell; an empty cell repeats the row above) and whose second
//! column names the module as an intra-doc link (`` [`config`] ``). [`check`] reads that table,
//! then every `.rs` file under `src/` (but `lib.rs` and `main.rs`), and reports each place where
//! a module names `crate::x` for a module `x` on its own layer or below. A module of `src/` that
//! is missing from the table is reported too, so the map cannot fall behind the code.
//!
//! ```text
//! //! | layer | module | owns |
//! //! |---|---|---|
//! //! | 0 leaves | [`hex`] | lowercase hex |
//! //! | 1 | [`config`] | YAML → model |
//! //! | | [`routing`] | the route table |
//! ```
//!
//! Imports are found textually (`crate::name` and `crate::{a, b::c}` groups, comments
//! skipped): enough for a crate whose style is `use crate::…` at the top of each file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Checks the crate whose `src/` directory is `src`. `Err` lists every violation, one a line.
pub fn check(src: &Path) -> Result<(), String> {
    let lib = std::fs::read_to_string(src.join("lib.rs"))
        .map_err(|e| format!("{}: {e}", src.join("lib.rs").display()))?;
    let layers = layers_of(&lib);
    if layers.is_empty() {
        return Err(format!(
            "{}: no layered module map (a `//! | layer | module |` table)",
            src.join("lib.rs").display()
        ));
    }
    let mut problems = String::new();
    let mut files = Vec::new();
    collect_rs(src, &mut files).map_err(|e| format!("{}: {e}", src.display()))?;
    files.sort();
    for file in files {
        let rel = file.strip_prefix(src).unwrap_or(&file);
        let Some(module) = top_module(rel) else {
            continue;
        };
        let Some(&own) = layers.get(&module) else {
            let _ = writeln!(
                problems,
                "{}: module `{module}` is not in lib.rs's module map",
                rel.display()
            );
            continue;
        };
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for (line, dep) in imports(&text) {
            if dep == module {
                continue;
            }
            match layers.get(&dep) {
                Some(&theirs) if theirs >= own => {
                    let _ = writeln!(
                        problems,
                        "{}:{line}: `{module}` (layer {own}) imports `{dep}` (layer {theirs}): only layers above {own} may be imported",
                        rel.display()
                    );
                }
                _ => {}
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Module name → layer, from the `//!` table.
fn layers_of(lib: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let mut current: Option<u32> = None;
    for line in lib.lines() {
        let Some(row) = line.trim_start().strip_prefix("//!") else {
            continue;
        };
        let cells: Vec<&str> = row.trim().split('|').collect();
        // "| a | b | c |" splits into ["", " a ", " b ", " c ", ""].
        if cells.len() < 4 || !cells[0].trim().is_empty() {
            continue;
        }
        let Some(module) = cells[2]
            .trim()
            .strip_prefix("[`")
            .and_then(|m| m.split_once("`]"))
            .map(|(m, _)| m)
        else {
            continue;
        };
        let digits: String = cells[1]
            .trim()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse() {
            current = Some(n);
        }
        if let Some(n) = current {
            out.insert(module.to_string(), n);
        }
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `config/model.rs` → `config`; `lib.rs`, `main.rs` and `bin/…` → none.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    if first == "bin" {
        return None;
    }
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Panics with every violation when the crate at `manifest_dir` (its `CARGO_MANIFEST_DIR`)
/// breaks the layering of its `lib.rs` module map: the one-line unit test each crate runs.
pub fn assert_layered(manifest_dir: &str) {
    if let Err(violations) = check(&Path::new(manifest_dir).join("src")) {
        panic!("the module map in lib.rs and the imports disagree:\n{violations}");
    }
}

/// `(line, module)` for every `crate::module` named in `text`, comments skipped.
fn imports(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // Joined without comments, with the line each byte came from.
    let mut code = String::new();
    let mut line_of = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split_once("//").map_or(line, |(code, _)| code);
        code.push_str(line);
        code.push('\n');
        line_of.extend(std::iter::repeat_n(i + 1, line.len() + 1));
    }
    let mut rest = code.as_str();
    let mut offset = 0;
    while let Some(at) = rest.find("crate::") {
        let start = offset + at;
        let after = &rest[at + "crate::".len()..];
        let line = line_of.get(start).copied().unwrap_or(0);
        if let Some(group) = after.strip_prefix('{') {
            for item in top_level_items(group) {
                if let Some(name) = leading_ident(item.trim()) {
                    out.push((line, name.to_string()));
                }
            }
        } else if let Some(name) = leading_ident(after) {
            out.push((line, name.to_string()));
        }
        offset = start + "crate::".len();
        rest = &code[offset..];
    }
    out
}

/// The comma-separated items of a `{…}` group (the text after its `{`), nested groups kept
/// whole.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut from) = (0usize, 0usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[from..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items
}

fn leading_ident(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let ident = &s[..end];
    (!ident.is_empty() && ident != "self").then_some(ident)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIB: &str = "\
//! | layer | module | owns |
//! |---|---|---|
//! | 0 leaves | [`hex`] | hex |
//! | | [`path`] | paths |
//! | 1 config | [`config`] | config |
//! | 2 | [`proxy`] | phases |
pub mod config;
";

    #[test]
    fn the_table_gives_each_module_its_layer_and_empty_cells_repeat_the_row_above() {
        let l = layers_of(LIB);
        assert_eq!(l.get("hex"), Some(&0));
        assert_eq!(l.get("path"), Some(&0));
        assert_eq!(l.get("config"), Some(&1));
        assert_eq!(l.get("proxy"), Some(&2));
        assert_eq!(l.len(), 4);
    }

    #[test]
    fn imports_are_found_in_paths_and_groups_but_not_in_comments() {
        let text = "\
use crate::config::model::Config;
use crate::{hex, path::{self, normalize}, proxy::Proxy};
// crate::commented
let x = crate::seconds::ceil(d); // crate::also_commented
";
        let found: Vec<(usize, String)> = imports(text);
        let names: Vec<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["config", "hex", "path", "proxy", "seconds"]);
        assert_eq!(found[0].0, 1);
        assert_eq!(found[4].0, 4);
    }

    #[test]
    fn an_import_from_the_same_layer_or_below_and_an_unmapped_module_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path();
        std::fs::write(src.join("lib.rs"), LIB).expect("write");
        std::fs::write(src.join("hex.rs"), "").expect("write");
        std::fs::write(src.join("path.rs"), "use crate::hex;\n").expect("write");
        std::fs::create_dir(src.join("config")).expect("mkdir");
        std::fs::write(src.join("config.rs"), "use crate::path;\n").expect("write");
        std::fs::write(src.join("config/model.rs"), "\nuse crate::proxy::Proxy;\n").expect("write");
        std::fs::write(src.join("proxy.rs"), "use crate::{config, hex};\n").expect("write");
        std::fs::write(src.join("stray.rs"), "").expect("write");
        let err = check(src).expect_err("two violations");
        assert_eq!(
            err,
            "config/model.rs:2: `config` (layer 1) imports `proxy` (layer 2): only layers above 1 may be imported\n\
             path.rs:1: `path` (layer 0) imports `hex` (layer 0): only layers above 0 may be imported\n\
             stray.rs: module `stray` is not in lib.rs's module map\n"
        );
        std::fs::write(src.join("path.rs"), "").expect("write");
        std::fs::write(src.join("config/model.rs"), "").expect("write");
        std::fs::remove_file(src.join("stray.rs")).expect("rm");
        assert_eq!(check(src), Ok(()));
    }
}
