//! Reading events stored by older versions of an aggregate.
//!
//! Events are forever; their shapes are not. Each stored event carries the
//! version of its body (the `Event-Version` header, 1 when absent), the
//! aggregate's [`Aggregate::EVENT_VERSION`] when it was written. When that
//! version is raised, the aggregate lists [`Upcasters`]: steps, each from
//! one version to the next for one event type, that turn a stored body (and
//! its type name) into what the next version stores. A chain of them takes
//! a version 1 event to today's, before it is decoded: a field added with a
//! default, a field renamed or removed, an event type renamed, one stored
//! event read as several or as none.
//!
//! Every reader of events calls [`decode_stored`]: the command side's
//! loads, `rewind`, typed projectors, the test harness. An event of today's
//! version decodes straight from its bytes; only older ones go through JSON
//! values.

use crate::aggregate::Aggregate;
use crate::codec;
use crate::personal::{self, DataKey, PersonalData};
use serde_json::Value;
use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

/// One event as an upcaster sees it: its type name and its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBody {
    /// The event type (the variant name).
    pub event_type: String,
    /// The body: the variant's fields.
    pub body: Value,
}

impl EventBody {
    /// An event of `event_type` with `body`.
    pub fn new(event_type: impl Into<String>, body: Value) -> Self {
        EventBody {
            event_type: event_type.into(),
            body,
        }
    }
}

type StepFn = dyn Fn(EventBody) -> Vec<EventBody> + Send + Sync;

/// One step: events of `event_type` at version `from` to version `from + 1`.
#[derive(Clone)]
struct Step {
    from: u32,
    event_type: String,
    apply: Arc<StepFn>,
}

/// How events stored by older versions of an aggregate read as today's.
///
/// ```
/// use jetsource_schemas::upcast::{EventBody, Upcasters};
/// use serde_json::json;
///
/// let upcasters = Upcasters::new()
///     // Version 2 added `author`; version 1 events had none.
///     .add_field(1, "PostCreated", "author", json!("unknown"))
///     // Version 3 renamed `title` to `headline` and the event type.
///     .rename_field(2, "PostCreated", "title", "headline")
///     .rename_event(2, "PostCreated", "ArticleCreated");
/// let read = upcasters
///     .upcast(1, 3, EventBody::new("PostCreated", json!({"title": "Hi"})))
///     .expect("an old event");
/// assert_eq!(
///     read,
///     [EventBody::new("ArticleCreated", json!({"headline": "Hi", "author": "unknown"}))]
/// );
/// ```
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: Vec<Step>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.steps.iter().map(|s| (s.from, &s.event_type)))
            .finish()
    }
}

/// Why a stored event could not be read as one of today's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadEventErrorKind {
    /// It was written by a newer version of the aggregate than this one
    /// (during a rolling upgrade, say): reading it as today's would misread it.
    Newer,
    /// Its body (after the upcasters) does not decode as the event type.
    Undecodable,
    /// A sealed personal field does not open: altered, moved from another
    /// aggregate's event, or of an unknown scheme.
    Sealed,
}

impl fmt::Display for ReadEventErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadEventErrorKind::Newer => "written by a newer version",
            ReadEventErrorKind::Undecodable => "does not decode",
            ReadEventErrorKind::Sealed => "its personal data does not open",
        })
    }
}

/// Why a stored event could not be read; see [`ReadEventErrorKind`].
pub type ReadEventError = crate::error::Error<ReadEventErrorKind>;

impl Upcasters {
    /// No steps: every event is read as stored.
    pub fn new() -> Self {
        Upcasters::default()
    }

    /// A step: an event of `event_type` stored at version `from` becomes
    /// what `step` returns at version `from + 1`: one event (changed or
    /// not), several, or none. Steps on the same version and type run in
    /// the order they were added, each on what the one before returned.
    pub fn step(
        mut self,
        from: u32,
        event_type: &str,
        step: impl Fn(EventBody) -> Vec<EventBody> + Send + Sync + 'static,
    ) -> Self {
        self.steps.push(Step {
            from,
            event_type: event_type.to_string(),
            apply: Arc::new(step),
        });
        self
    }

    /// Version `from + 1` added `field` to `event_type`; older events get
    /// `default`.
    pub fn add_field(self, from: u32, event_type: &str, field: &str, default: Value) -> Self {
        let field = field.to_string();
        self.on_fields(from, event_type, move |fields| {
            fields
                .entry(field.clone())
                .or_insert_with(|| default.clone());
        })
    }

    /// Version `from + 1` renamed `event_type`'s field `old` to `new`.
    pub fn rename_field(self, from: u32, event_type: &str, old: &str, new: &str) -> Self {
        let (old, new) = (old.to_string(), new.to_string());
        self.on_fields(from, event_type, move |fields| {
            if let Some(value) = fields.remove(&old) {
                fields.insert(new.clone(), value);
            }
        })
    }

    /// Version `from + 1` removed `event_type`'s field `field`.
    pub fn remove_field(self, from: u32, event_type: &str, field: &str) -> Self {
        let field = field.to_string();
        self.on_fields(from, event_type, move |fields| {
            fields.remove(&field);
        })
    }

    /// Version `from + 1` renamed the event type `old` to `new`.
    pub fn rename_event(self, from: u32, old: &str, new: &str) -> Self {
        let new = new.to_string();
        self.step(from, old, move |event| {
            vec![EventBody {
                event_type: new.clone(),
                body: event.body,
            }]
        })
    }

    /// Version `from + 1` no longer has `event_type`: older ones are read
    /// as nothing.
    pub fn drop_event(self, from: u32, event_type: &str) -> Self {
        self.step(from, event_type, |_| Vec::new())
    }

    /// A step that edits the body's fields; a body that is not an object
    /// is left as it is (and fails to decode, naming the event).
    fn on_fields(
        self,
        from: u32,
        event_type: &str,
        edit: impl Fn(&mut serde_json::Map<String, Value>) + Send + Sync + 'static,
    ) -> Self {
        self.step(from, event_type, move |mut event| {
            if let Value::Object(fields) = &mut event.body {
                edit(fields);
            }
            vec![event]
        })
    }

    /// Whether a step from version `from` on `event_type` is listed.
    pub fn has_step(&self, from: u32, event_type: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.from == from && s.event_type == event_type)
    }

    /// `event`, stored at `version`, as version `current` reads it.
    pub fn upcast(
        &self,
        version: u32,
        current: u32,
        event: EventBody,
    ) -> Result<Vec<EventBody>, ReadEventError> {
        if version > current {
            return Err(ReadEventError::new(
                ReadEventErrorKind::Newer,
                format!(
                    "{} is of version {version}; this one reads up to {current}",
                    crate::reply::excerpt(&event.event_type, 64)
                ),
            ));
        }
        let mut events = vec![event];
        for from in version.max(1)..current {
            for step in self.steps.iter().filter(|s| s.from == from) {
                events = events
                    .into_iter()
                    .flat_map(|e| match e.event_type == step.event_type {
                        true => (step.apply)(e),
                        false => vec![e],
                    })
                    .collect();
            }
        }
        Ok(events)
    }
}

/// `A`'s upcasters, built once per process from [`Aggregate::upcasters`].
pub fn upcasters_of<A: Aggregate>() -> Arc<Upcasters> {
    static BUILT: OnceLock<RwLock<HashMap<TypeId, Arc<Upcasters>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let id = TypeId::of::<A>();
    // A poisoned lock only means another thread panicked while inserting a
    // value it had fully built: the map is still sound.
    if let Some(found) = built.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return found.clone();
    }
    let upcasters = Arc::new(A::upcasters());
    built
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id)
        .or_insert(upcasters)
        .clone()
}

/// `A`'s personal fields, built once per process from
/// [`Aggregate::personal_data`].
pub fn personal_of<A: Aggregate>() -> Arc<PersonalData> {
    static BUILT: OnceLock<RwLock<HashMap<TypeId, Arc<PersonalData>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let id = TypeId::of::<A>();
    // A poisoned lock only means another thread panicked while inserting a
    // value it had fully built: the map is still sound.
    if let Some(found) = built.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return found.clone();
    }
    let personal = Arc::new(A::personal_data());
    built
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id)
        .or_insert(personal)
        .clone()
}

/// Reads one stored event of aggregate `A`: `event_type` (the subject's
/// last token) with `body`, stored at `version`. Calls `each` with every
/// event it reads as today (one, or what the upcasters made of it: several
/// or none) and its type name.
///
/// When `A` has [personal data](Aggregate::personal_data), its sealed
/// fields are opened first with `key`, the aggregate instance's data key
/// (`None`: forgotten, or never made), and read as their redaction value
/// without it; for any other aggregate `key` is not looked at.
///
/// The one function every reader of events goes through.
pub fn decode_stored<A: Aggregate>(
    event_type: &str,
    version: u32,
    body: &[u8],
    key: Option<&DataKey>,
    mut each: impl FnMut(&str, A::Event),
) -> Result<(), ReadEventError> {
    let revealed = match personal_of::<A>().is_empty() {
        true => None,
        false => personal::reveal_body(body, key).map_err(|e| {
            ReadEventError::with_message_and_source(
                ReadEventErrorKind::Sealed,
                format!(
                    "{} as a {} event",
                    crate::reply::excerpt(event_type, 64),
                    A::TYPE
                ),
                e,
            )
        })?,
    };
    let body = revealed.as_deref().unwrap_or(body);
    let undecodable = |event_type: &str, e: serde_json::Error| {
        ReadEventError::with_message_and_source(
            ReadEventErrorKind::Undecodable,
            format!(
                "{} (version {version}) as a {} event",
                crate::reply::excerpt(event_type, 64),
                A::TYPE
            ),
            e,
        )
    };
    if version == A::EVENT_VERSION {
        let event = codec::decode_event::<A::Event>(event_type, body)
            .map_err(|e| undecodable(event_type, e))?;
        each(event_type, event);
        return Ok(());
    }
    let value: Value = match body.iter().all(u8::is_ascii_whitespace) {
        true => Value::Object(Default::default()),
        false => serde_json::from_slice(body).map_err(|e| undecodable(event_type, e))?,
    };
    let read =
        upcasters_of::<A>().upcast(version, A::EVENT_VERSION, EventBody::new(event_type, value))?;
    for event in read {
        let bytes = serde_json::to_vec(&event.body).map_err(|e| undecodable(event_type, e))?;
        let decoded = codec::decode_event::<A::Event>(&event.event_type, &bytes)
            .map_err(|e| undecodable(&event.event_type, e))?;
        each(&event.event_type, decoded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(t: &str, v: Value) -> EventBody {
        EventBody::new(t, v)
    }

    #[test]
    fn an_event_of_today_passes_unchanged() {
        let u = Upcasters::new().add_field(1, "A", "x", json!(0));
        let e = body("A", json!({"y": 1}));
        assert_eq!(u.upcast(2, 2, e.clone()).expect("read"), [e]);
    }

    #[test]
    fn steps_chain_from_the_stored_version_to_today() {
        let u = Upcasters::new()
            .add_field(1, "A", "x", json!(0))
            .rename_field(2, "A", "x", "z")
            .remove_field(3, "A", "gone");
        let read = u
            .upcast(1, 4, body("A", json!({"gone": true})))
            .expect("read");
        assert_eq!(read, [body("A", json!({"z": 0}))]);
        // A version 3 event only takes the last step.
        let read = u
            .upcast(3, 4, body("A", json!({"x": 5, "gone": 1})))
            .expect("read");
        assert_eq!(read, [body("A", json!({"x": 5}))]);
    }

    #[test]
    fn a_step_touches_only_its_event_type() {
        let u = Upcasters::new().add_field(1, "A", "x", json!(0));
        let e = body("B", json!({}));
        assert_eq!(u.upcast(1, 2, e.clone()).expect("read"), [e]);
    }

    #[test]
    fn an_event_becomes_several_or_none_and_renamed_types_continue_the_chain() {
        let u = Upcasters::new()
            .step(1, "Both", |e| {
                vec![
                    body("First", e.body["a"].clone()),
                    body("Second", e.body["b"].clone()),
                ]
            })
            .drop_event(1, "Noise")
            .rename_event(2, "Second", "Later")
            .add_field(3, "Later", "n", json!(1));
        let read = u
            .upcast(1, 4, body("Both", json!({"a": {"x": 1}, "b": {}})))
            .expect("read");
        assert_eq!(
            read,
            [
                body("First", json!({"x": 1})),
                body("Later", json!({"n": 1}))
            ]
        );
        assert!(u
            .upcast(1, 4, body("Noise", json!({})))
            .expect("read")
            .is_empty());
    }

    #[test]
    fn a_newer_event_is_refused_never_misread() {
        let err = Upcasters::new()
            .upcast(3, 2, body("A", json!({})))
            .expect_err("newer");
        assert_eq!(err.kind(), ReadEventErrorKind::Newer);
    }

    #[test]
    fn has_step_names_what_is_listed() {
        let u = Upcasters::new().rename_event(1, "A", "B");
        assert!(u.has_step(1, "A"));
        assert!(!u.has_step(1, "B"));
        assert!(!u.has_step(2, "A"));
    }
}
