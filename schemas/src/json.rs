//! JSON Schemas of the contract's messages, generated from the types.
//!
//! The checked-in copies in `schemas/json/` are what other languages code
//! against; a test fails when they drift from these types (set
//! `JETSOURCE_UPDATE_SCHEMAS=1` to rewrite them). Each carries the contract
//! version under [`CONTRACT_KEYWORD`], so a client can check the files it
//! codes against without a connection.

use crate::feedback::{CommandIndexEntry, FeedbackAnswer, RejectionList, RejectionNotice};
use crate::{CommandReply, EventRef, RejectionCode};

/// The top-level keyword of every generated schema that holds
/// [`crate::CONTRACT_VERSION`]. JSON Schema ignores unknown keywords, so
/// validators are unaffected.
pub const CONTRACT_KEYWORD: &str = "x-jetsource-contract";

/// `schema` with [`CONTRACT_KEYWORD`] set to [`crate::CONTRACT_VERSION`]
/// (a schema that is not an object, such as `true`, is returned as is).
pub fn with_contract(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            CONTRACT_KEYWORD.to_string(),
            serde_json::Value::String(crate::CONTRACT_VERSION.to_string()),
        );
    }
    schema
}

/// Every contract schema, as `(file stem, schema)`, each stamped with the
/// contract version.
pub fn contract_schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn to_value(schema: schemars::Schema) -> serde_json::Value {
        with_contract(schema.to_value())
    }
    vec![
        (
            "command_reply",
            to_value(schemars::schema_for!(CommandReply)),
        ),
        ("event_ref", to_value(schemars::schema_for!(EventRef))),
        (
            "rejection_code",
            to_value(schemars::schema_for!(RejectionCode)),
        ),
        (
            "rejection_notice",
            to_value(schemars::schema_for!(RejectionNotice)),
        ),
        (
            "feedback_answer",
            to_value(schemars::schema_for!(FeedbackAnswer)),
        ),
        (
            "rejection_list",
            to_value(schemars::schema_for!(RejectionList)),
        ),
        (
            "command_index_entry",
            to_value(schemars::schema_for!(CommandIndexEntry)),
        ),
        (
            "page_request",
            to_value(schemars::schema_for!(crate::page::PageRequest)),
        ),
        (
            "unsent",
            to_value(schemars::schema_for!(crate::answer::Unsent)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn checked_in_schemas_are_up_to_date() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
        let update = std::env::var_os("JETSOURCE_UPDATE_SCHEMAS").is_some();
        for (name, schema) in contract_schemas() {
            let path = dir.join(format!("{name}.json"));
            let text = format!(
                "{}\n",
                serde_json::to_string_pretty(&schema).expect("serialize")
            );
            if update {
                std::fs::create_dir_all(&dir).expect("create schemas/json");
                std::fs::write(&path, &text).expect("write schema");
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|_| {
                panic!(
                    "{} is missing: run with JETSOURCE_UPDATE_SCHEMAS=1",
                    path.display()
                )
            });
            assert_eq!(
                on_disk,
                text,
                "{} is out of date: run with JETSOURCE_UPDATE_SCHEMAS=1",
                path.display()
            );
        }
    }

    #[test]
    fn every_schema_names_the_contract_version() {
        for (name, schema) in contract_schemas() {
            assert_eq!(
                schema[CONTRACT_KEYWORD].as_str(),
                Some(crate::CONTRACT_VERSION),
                "{name}"
            );
        }
    }
}
