//! Every Rust fragment of the README is code that compiles and runs.
//!
//! The README's complete program is a doctest (`src/lib.rs` includes the
//! README as crate docs under `cfg(doctest)`). Its fragments (a test body,
//! one method of an impl) are not programs: they are marked `rust,ignore`,
//! and each must be found, line for line, in a source file this workspace
//! compiles and tests (the examples, the reference app, the tests). So a
//! fragment that drifts from the API fails here, and the compiler checks the
//! code it was copied from.
//!
//! A fragment matches where its code appears in order, compared without
//! whitespace, comments or the trailing commas rustfmt adds to what it
//! breaks over lines (the README lays code out to be read; the code is laid
//! out by rustfmt). A line `// …` skips any amount of code, and `…` within
//! a line stands for any code.

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `rust,ignore` fragments of `markdown`, each with its first line.
fn fragments(markdown: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, Vec<String>)> = None;
    for (number, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut current {
            None if fence == "```rust,ignore" => current = Some((number + 1, Vec::new())),
            Some(_) if fence == "```" => found.extend(current.take()),
            Some((_, lines)) => lines.push(line.to_string()),
            None => {}
        }
    }
    found
}

/// `lines` as compared: without comments, whitespace, or a comma before a
/// closing bracket.
fn normal<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut code = String::new();
    for line in lines {
        let line = line.trim();
        let line = match line.find(" //") {
            Some(at) => &line[..at],
            None if line.starts_with("//") => "",
            None => line,
        };
        code.extend(line.chars().filter(|c| !c.is_whitespace()));
    }
    code.replace(",)", ")")
        .replace(",]", "]")
        .replace(",}", "}")
}

/// The fragment as pieces that must appear in order: split at `// …`
/// lines, and at `…` within them.
fn pieces(fragment: &[String]) -> Vec<String> {
    fragment
        .split(|line| line.trim() == "// …")
        .map(|run| normal(run.iter().map(String::as_str)))
        .flat_map(|run| run.split('…').map(str::to_string).collect::<Vec<_>>())
        .filter(|piece| !piece.is_empty())
        .collect()
}

/// Whether the pieces appear in order in `source`.
fn found_in(pieces: &[String], source: &str) -> bool {
    let code = normal(source.lines());
    let mut rest = code.as_str();
    for piece in pieces {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// The Rust sources the workspace compiles and tests, beside the README.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    out.push((path, text));
                }
            }
        }
    }
    let mut out = Vec::new();
    for dir in [
        "examples",
        "reference",
        "tests",
        "src",
        "projector/src",
        "client/src",
    ] {
        walk(&repository().join(dir), &mut out);
    }
    // Not this file, which quotes fragments in its own tests.
    out.retain(|(path, _)| !path.ends_with("readme_snippets.rs"));
    out
}

#[test]
fn every_rust_fragment_of_the_readme_is_compiled_code() {
    let readme = std::fs::read_to_string(repository().join("README.md")).expect("the README");
    let fragments = fragments(&readme);
    assert!(
        fragments.len() >= 5,
        "the README's fragments were not found"
    );
    let sources = sources();
    let missing: Vec<String> = fragments
        .iter()
        .filter(|(_, lines)| {
            let pieces = pieces(lines);
            !sources.iter().any(|(_, text)| found_in(&pieces, text))
        })
        .map(|(line, lines)| format!("README.md:{line}:\n{}", lines.join("\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "fragments found in no compiled source:\n\n{}",
        missing.join("\n\n")
    );
}

#[test]
fn a_fragment_matches_only_the_code_it_shows_in_its_order() {
    let fragment: Vec<String> = ["let a = f(1, 2);   // why", "// …", "g(…);"]
        .map(String::from)
        .to_vec();
    let pieces = pieces(&fragment);
    let formatted =
        "fn x() {\n    let a = f(\n        1,\n        2,\n    );\n    h();\n    g(2, 3);\n}";
    assert!(found_in(&pieces, formatted));
    assert!(
        !found_in(&pieces, "g(2);\nlet a = f(1, 2);"),
        "out of order"
    );
    assert!(
        !found_in(&pieces, "let a = f(2, 2);\ng(1);"),
        "another argument"
    );
    assert!(!found_in(&pieces, "let a = f(1, 2);"), "a line missing");
}
