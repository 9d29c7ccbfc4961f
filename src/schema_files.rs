//! The JSON Schemas `jetsource schema` writes: the wire contract (from
//! `jetsource_schemas::json`) and each hosted aggregate's commands and
//! events, so that other languages code against files, not Rust.
//!
//! Layout under the output folder (`schemas/json/` by default):
//! `<name>.json` per contract message, and `<aggregate_type>/commands.json`
//! and `<aggregate_type>/events.json` per aggregate. Every file names the
//! contract version under `x-jetsource-contract`.

use crate::app::App;
use std::path::{Path, PathBuf};

/// Every schema file, as (path relative to the output folder, text).
pub fn render(app: &App) -> Vec<(PathBuf, String)> {
    let text = |value: &serde_json::Value| {
        // Pretty JSON never fails on a `Value`; the fallback keeps the
        // library free of panics all the same.
        format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        )
    };
    let mut files: Vec<(PathBuf, String)> = jetsource_schemas::json::contract_schemas()
        .into_iter()
        .map(|(name, schema)| (PathBuf::from(format!("{name}.json")), text(&schema)))
        .collect();
    for aggregate in app.aggregate_schemas() {
        let dir = PathBuf::from(aggregate.aggregate_type);
        files.push((dir.join("commands.json"), text(&aggregate.commands)));
        files.push((dir.join("events.json"), text(&aggregate.events)));
    }
    files
}

/// Writes every schema file under `dir`; returns the paths written.
pub fn write(app: &App, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (relative, text) in render(app) {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// The files under `dir` that are missing or differ from what [`write`]
/// would write.
pub fn stale(app: &App, dir: &Path) -> Vec<PathBuf> {
    render(app)
        .into_iter()
        .filter(|(relative, text)| {
            std::fs::read_to_string(dir.join(relative)).ok().as_deref() != Some(text.as_str())
        })
        .map(|(relative, _)| dir.join(relative))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The application the `jetsource` binary hosts.
    fn reference_app() -> App {
        App::new()
            .aggregate::<jetsource_reference::blog::BlogPost>()
            .aggregate::<jetsource_reference::account::Account>()
    }

    #[test]
    fn checked_in_schemas_match_the_reference_app() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/json");
        let stale = stale(&reference_app(), &dir);
        assert!(
            stale.is_empty(),
            "out of date: {stale:?}; run `cargo run -- schema` and commit schemas/json/"
        );
    }

    #[test]
    fn a_changed_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = reference_app();
        write(&app, dir.path()).expect("write");
        assert!(stale(&app, dir.path()).is_empty());
        let commands = dir.path().join("blogpost/commands.json");
        std::fs::write(&commands, "{}\n").expect("overwrite");
        assert_eq!(stale(&app, dir.path()), vec![commands]);
        let events = render(&app)
            .into_iter()
            .find(|(p, _)| p == Path::new("account/events.json"))
            .expect("the account's events are rendered");
        assert!(events.1.contains("MoneyWithdrawn"), "{}", events.1);
    }

    #[test]
    fn every_file_names_the_contract_version() {
        for (path, text) in render(&reference_app()) {
            let schema: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(
                schema[jetsource_schemas::json::CONTRACT_KEYWORD].as_str(),
                Some(jetsource_schemas::CONTRACT_VERSION),
                "{}",
                path.display()
            );
        }
    }
}
