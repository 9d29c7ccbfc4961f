//! Whether a change to an aggregate's events breaks reading the events
//! already stored: the comparison behind `jetsource schema --check`.
//!
//! It compares two JSON Schemas of an event enum, as `jetsource schema`
//! writes them (one `oneOf` branch per event type, each an object with the
//! type's fields), the one checked in for a version with today's. Stored
//! events keep the shape they were written with, so today's code must read
//! every one of them:
//!
//! - an event type that is gone (removed or renamed) breaks;
//! - a field that is gone (removed or renamed) breaks;
//! - a field whose schema changed (its type, its values) breaks;
//! - a field that is required now and was not before (added without a
//!   default, or made required) breaks: older events lack it;
//! - a field added as optional, a required field made optional, a new
//!   event type and changed descriptions do not break.
//!
//! A breaking change is allowed when the aggregate's event version was
//! raised past the checked-in one and an upcaster takes the event type from
//! an older version (see `jetsource_schemas::upcast`).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One change that breaks reading stored events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaking {
    /// The event type (as stored).
    pub event_type: String,
    /// The field, when the change is to one.
    pub field: Option<String>,
    /// What changed.
    pub change: Change,
}

/// What kind of change breaks reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The event type is gone (removed or renamed).
    EventGone,
    /// The field is gone (removed or renamed).
    FieldGone,
    /// The field's schema changed (type or values).
    FieldChanged,
    /// The field is required and older events may lack it.
    FieldRequired,
}

impl fmt::Display for Breaking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.change {
            Change::EventGone => "is gone (removed or renamed)",
            Change::FieldGone => "is gone (removed or renamed)",
            Change::FieldChanged => "changed its schema",
            Change::FieldRequired => "is required but older events may lack it",
        };
        match &self.field {
            Some(field) => write!(f, "event {} field {field:?} {what}", self.event_type),
            None => write!(f, "event {} {what}", self.event_type),
        }
    }
}

/// One event type's fields: each field's schema (descriptions left out)
/// and which are required.
#[derive(Debug, Default, PartialEq)]
struct Fields {
    schemas: BTreeMap<String, Value>,
    required: BTreeSet<String>,
}

/// The event types of an event enum's schema, each with its fields.
fn event_types(schema: &Value) -> BTreeMap<String, Fields> {
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    let mut types = BTreeMap::new();
    for branch in schema
        .get("oneOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // A unit variant: `{"type":"string","enum":["Name"]}` or `"const"`.
        let unit_names = branch
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(branch.get("const"))
            .filter_map(Value::as_str);
        for name in unit_names {
            types.insert(name.to_string(), Fields::default());
        }
        let Some(variants) = branch.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (name, body) in variants {
            let body = resolved(body, &defs, 0);
            let mut fields = Fields::default();
            if let Some(properties) = body.get("properties").and_then(Value::as_object) {
                for (field, field_schema) in properties {
                    fields.schemas.insert(
                        field.clone(),
                        without_descriptions(&resolved(field_schema, &defs, 0)),
                    );
                }
            }
            fields.required = body
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            types.insert(name.clone(), fields);
        }
    }
    types
}

/// `schema` with `{"$ref": "#/$defs/X"}` replaced by `X`'s schema, a few
/// levels deep (enough for field types; a recursive type stops there).
fn resolved(schema: &Value, defs: &Value, depth: usize) -> Value {
    if depth > 8 {
        return schema.clone();
    }
    match schema {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                if let Some(def) = defs.get(name) {
                    return resolved(def, defs, depth + 1);
                }
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), resolved(v, defs, depth + 1)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| resolved(v, defs, depth + 1)).collect())
        }
        other => other.clone(),
    }
}

/// `schema` without `description`, `title` and `examples`: words, not shape.
fn without_descriptions(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "description" | "title" | "examples"))
                .map(|(k, v)| (k.clone(), without_descriptions(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_descriptions).collect()),
        other => other.clone(),
    }
}

/// The changes from `stored` (the schema the stored events were written
/// with) to `today` that break reading those events.
pub fn breaking_changes(stored: &Value, today: &Value) -> Vec<Breaking> {
    let (stored, today) = (event_types(stored), event_types(today));
    let mut found = Vec::new();
    for (event_type, old) in &stored {
        let Some(new) = today.get(event_type) else {
            found.push(Breaking {
                event_type: event_type.clone(),
                field: None,
                change: Change::EventGone,
            });
            continue;
        };
        let mut note = |field: &str, change| {
            found.push(Breaking {
                event_type: event_type.clone(),
                field: Some(field.to_string()),
                change,
            })
        };
        for (field, schema) in &old.schemas {
            match new.schemas.get(field) {
                None => note(field, Change::FieldGone),
                Some(now) if now != schema => note(field, Change::FieldChanged),
                Some(_) => {}
            }
        }
        // Added as required, or made required: older events may lack it.
        for field in new.required.difference(&old.required) {
            note(field, Change::FieldRequired);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    mod v1 {
        use super::*;
        /// Events.
        #[derive(Serialize, Deserialize, JsonSchema)]
        pub(super) enum Events {
            /// Created.
            Created { title: String, body: String },
            /// Published.
            Published {},
            /// Archived.
            Archived,
        }
    }

    fn schema<T: JsonSchema>() -> Value {
        schemars::schema_for!(T).to_value()
    }

    fn changes<T: JsonSchema>() -> Vec<(String, Option<String>, Change)> {
        breaking_changes(&schema::<v1::Events>(), &schema::<T>())
            .into_iter()
            .map(|b| (b.event_type, b.field, b.change))
            .collect()
    }

    #[test]
    fn the_same_events_do_not_break() {
        assert_eq!(changes::<v1::Events>(), []);
    }

    #[test]
    fn optional_fields_new_types_and_words_do_not_break() {
        /// Other words.
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        enum Events {
            /// Said differently.
            Created {
                /// Now documented.
                title: String,
                body: String,
                #[serde(default)]
                author: String,
                tags: Option<Vec<String>>,
            },
            Published {},
            Archived,
            Restored {},
        }
        assert_eq!(changes::<Events>(), []);
    }

    #[test]
    fn gone_changed_and_newly_required_fields_break_by_name() {
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        enum Events {
            Created {
                headline: String,
                body: u64,
                author: String,
            },
            Released {},
            Archived,
        }
        let field = |t: &str, f: &str, c| (t.to_string(), Some(f.to_string()), c);
        assert_eq!(
            changes::<Events>(),
            [
                field("Created", "body", Change::FieldChanged),
                field("Created", "title", Change::FieldGone),
                field("Created", "author", Change::FieldRequired),
                field("Created", "headline", Change::FieldRequired),
                ("Published".to_string(), None, Change::EventGone),
            ]
        );
    }
}
