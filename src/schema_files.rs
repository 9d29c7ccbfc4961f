//! The JSON Schemas `jetsource schema` writes: the wire contract (from
//! `jetsource_schemas::json`) and each hosted aggregate's commands and
//! events, so that other languages code against files, not Rust; and the
//! check that a change to the events does not break reading stored ones.
//!
//! Layout under the output folder (`schemas/json/` by default):
//! `<name>.json` per contract message; per aggregate
//! `<aggregate_type>/commands.json`, `<aggregate_type>/events.json` (today's
//! events), `<aggregate_type>/details.json` (its rejections' details, when
//! it gives any) and `<aggregate_type>/events.v<N>.json` for every event version
//! `N` ever written. A version's file is written while it is today's and
//! kept after: it is the record of what events of that version look like,
//! for readers in other languages and for the check. Every file names the
//! contract version under `x-jetsource-contract`; event files name their
//! event version under [`EVENT_VERSION_KEYWORD`].

use crate::app::{AggregateSchemas, App};
use crate::schema_compat::{breaking_changes, Breaking};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The keyword naming the event version of an events schema file.
pub const EVENT_VERSION_KEYWORD: &str = "x-jetsource-event-version";

fn text(value: &serde_json::Value) -> String {
    // Pretty JSON never fails on a `Value`; the fallback keeps the
    // library free of panics all the same.
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    )
}

/// Today's events schema of `aggregate`, stamped with its event version.
fn events_schema(aggregate: &AggregateSchemas) -> serde_json::Value {
    let mut events = aggregate.events.clone();
    if let Some(map) = events.as_object_mut() {
        map.insert(
            EVENT_VERSION_KEYWORD.to_string(),
            aggregate.event_version.into(),
        );
    }
    events
}

/// The file of `aggregate`'s events at `version`, relative to the folder.
fn version_file(aggregate_type: &str, version: u32) -> PathBuf {
    PathBuf::from(aggregate_type).join(format!("events.v{version}.json"))
}

/// Every schema file, as (path relative to the output folder, text).
pub fn render(app: &App) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = jetsource_schemas::json::contract_schemas()
        .into_iter()
        .map(|(name, schema)| (PathBuf::from(format!("{name}.json")), text(&schema)))
        .collect();
    for aggregate in app.aggregate_schemas() {
        let dir = PathBuf::from(aggregate.aggregate_type);
        let events = text(&events_schema(aggregate));
        files.push((dir.join("commands.json"), text(&aggregate.commands)));
        if let Some(details) = &aggregate.details {
            files.push((dir.join("details.json"), text(details)));
        }
        files.push((dir.join("events.json"), events.clone()));
        files.push((
            version_file(aggregate.aggregate_type, aggregate.event_version),
            events,
        ));
    }
    files
}

/// One change that breaks reading stored events, and what allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The checked-in event version compared with.
    pub stored_version: u32,
    /// The aggregate's event version today.
    pub event_version: u32,
    /// The change.
    pub breaking: Breaking,
}

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} since version {}: ",
            self.aggregate_type, self.breaking, self.stored_version
        )?;
        if self.event_version <= self.stored_version {
            write!(
                f,
                "raise EVENT_VERSION past {} and add an upcaster for {} from version {}",
                self.stored_version, self.breaking.event_type, self.stored_version
            )
        } else {
            write!(
                f,
                "add an upcaster for {} from a version in {}..{}",
                self.breaking.event_type, self.stored_version, self.event_version
            )
        }
    }
}

/// The checked-in events schemas under `dir` of `aggregate_type`, by event
/// version: its `events.v<N>.json` files, and its `events.json` under the
/// version it names (1 when it names none, as files written before event
/// versions were recorded).
fn stored_versions(dir: &Path, aggregate_type: &str) -> BTreeMap<u32, serde_json::Value> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    };
    let mut found = BTreeMap::new();
    let folder = dir.join(aggregate_type);
    for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let version = name
            .strip_prefix("events.v")
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(|v| v.parse::<u32>().ok());
        if let (Some(version), Some(schema)) = (version, read(&entry.path())) {
            found.insert(version, schema);
        }
    }
    if let Some(schema) = read(&folder.join("events.json")) {
        let version = schema
            .get(EVENT_VERSION_KEYWORD)
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1);
        found.entry(version).or_insert(schema);
    }
    found
}

/// The changes to the hosted aggregates' events, against the schemas
/// checked in under `dir`, that break reading stored events and are not
/// allowed by a raised event version with an upcaster.
///
/// Today's events are compared with the checked-in file of the same
/// version when there is one (any breaking change needs a new version),
/// else with the newest older version's (each breaking change of an event
/// type needs an upcaster for it from a version since). An aggregate with
/// no checked-in events has nothing to compare with.
pub fn incompatible(app: &App, dir: &Path) -> Vec<Incompatible> {
    let mut found = Vec::new();
    for aggregate in app.aggregate_schemas() {
        let stored = stored_versions(dir, aggregate.aggregate_type);
        let today = aggregate.event_version;
        let Some((&version, schema)) = stored.range(..=today).next_back() else {
            continue;
        };
        for breaking in breaking_changes(schema, &aggregate.events) {
            let upcast =
                (version..today).any(|v| aggregate.upcasters.has_step(v, &breaking.event_type));
            if version == today || !upcast {
                found.push(Incompatible {
                    aggregate_type: aggregate.aggregate_type.to_string(),
                    stored_version: version,
                    event_version: today,
                    breaking,
                });
            }
        }
    }
    found
}

/// Why [`write()`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing would replace the record of an event version with a schema
    /// that breaks reading its events.
    #[error("{} breaking change(s) to stored events", .0.len())]
    Incompatible(Vec<Incompatible>),
    /// A file could not be written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Writes every schema file under `dir`; returns the paths written.
/// Refuses, writing nothing, when [`incompatible`] finds a change: the
/// checked-in file of a version is the record the check compares with.
pub fn write(app: &App, dir: &Path) -> Result<Vec<PathBuf>, WriteError> {
    let incompatible = incompatible(app, dir);
    if !incompatible.is_empty() {
        return Err(WriteError::Incompatible(incompatible));
    }
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

/// The files under `dir` that are missing or differ from what [`write()`]
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
        let incompatible = incompatible(&reference_app(), &dir);
        assert!(incompatible.is_empty(), "breaking: {incompatible:?}");
        let stale = stale(&reference_app(), &dir);
        assert!(
            stale.is_empty(),
            "out of date: {stale:?}; run `cargo run -- schema` and commit schemas/json/"
        );
    }

    /// One aggregate type, `note`, as four releases of a user's crate
    /// would define it: `$version` of its events, `$event` its event enum,
    /// `$upcasters` how older events read.
    macro_rules! note_release {
        ($module:ident, $version:expr, { $($event:tt)* }, $upcasters:expr) => {
            mod $module {
                use jetsource_schemas::aggregate::{Aggregate, Rejection};
                use jetsource_schemas::upcast::Upcasters;

                #[derive(Default, Clone, serde::Serialize)]
                pub(super) struct Note;

                #[derive(serde::Deserialize, schemars::JsonSchema)]
                pub(super) enum NoteCommand {}

                #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
                pub(super) enum NoteEvent { $($event)* }

                impl Aggregate for Note {
                    const TYPE: &'static str = "note";
                    const EVENT_VERSION: u32 = $version;
                    type Command = NoteCommand;
                    type Event = NoteEvent;
                    fn handle(&self, c: NoteCommand) -> Result<Vec<NoteEvent>, Rejection> {
                        match c {}
                    }
                    fn apply(&mut self, _: NoteEvent) {}
                    fn upcasters() -> Upcasters {
                        $upcasters
                    }
                }
            }
        };
    }

    note_release!(first, 1, { Noted { text: String } }, Upcasters::new());
    // `text` renamed to `body`, with nothing else changed.
    note_release!(renamed, 1, { Noted { body: String } }, Upcasters::new());
    note_release!(raised, 2, { Noted { body: String } }, Upcasters::new());
    note_release!(
        upcast,
        2,
        {
            Noted {
                body: String,
                #[serde(default)]
                pinned: bool,
            }
        },
        Upcasters::new().rename_field(1, "Noted", "text", "body")
    );

    fn note_app<A>() -> App
    where
        A: jetsource_schemas::aggregate::Aggregate + serde::Serialize,
        A::Command: schemars::JsonSchema,
        A::Event: schemars::JsonSchema,
    {
        App::new().aggregate::<A>()
    }

    #[test]
    fn a_breaking_change_fails_until_the_version_is_raised_with_an_upcaster() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&note_app::<first::Note>(), dir.path()).expect("the first release writes");
        assert!(dir.path().join("note/events.v1.json").exists());
        // Renamed in place: reading the stored events would break.
        let found = incompatible(&note_app::<renamed::Note>(), dir.path());
        let named: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{named:?}");
        assert!(
            named[0].contains("Noted")
                && named[0].contains("\"text\"")
                && named[0].contains("gone"),
            "{named:?}"
        );
        assert!(named[0].contains("raise EVENT_VERSION"), "{named:?}");
        assert!(
            named[1].contains("\"body\"") && named[1].contains("required"),
            "{named:?}"
        );
        // Writing refuses: the version 1 record stays as it was.
        assert!(matches!(
            write(&note_app::<renamed::Note>(), dir.path()),
            Err(WriteError::Incompatible(_))
        ));
        assert!(incompatible(&note_app::<first::Note>(), dir.path()).is_empty());
        // A raised version is not enough without an upcaster.
        let found = incompatible(&note_app::<raised::Note>(), dir.path());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].to_string().contains("add an upcaster for Noted"),
            "{}",
            found[0]
        );
        // With one, it passes, and writing keeps version 1's file.
        let app = note_app::<upcast::Note>();
        assert_eq!(incompatible(&app, dir.path()), []);
        let v1 = std::fs::read_to_string(dir.path().join("note/events.v1.json")).expect("v1");
        write(&app, dir.path()).expect("the upcasting release writes");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("note/events.v1.json")).expect("v1"),
            v1
        );
        let v2: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("note/events.v2.json")).expect("v2"),
        )
        .expect("JSON");
        assert_eq!(v2[EVENT_VERSION_KEYWORD], 2);
        assert!(stale(&app, dir.path()).is_empty());
        assert!(incompatible(&app, dir.path()).is_empty());
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
