//! JSON Schemas of the contract's messages, generated from the types.
//!
//! The checked-in copies in `schemas/json/` are what other languages code
//! against; a test fails when they drift from these types (set
//! `JETSOURCE_UPDATE_SCHEMAS=1` to rewrite them).

use crate::feedback::{CommandIndexEntry, FeedbackAnswer, RejectionList, RejectionNotice};
use crate::{CommandReply, EventRef, RejectionCode};

/// Every contract schema, as `(file stem, schema)`.
pub fn contract_schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn to_value(schema: schemars::Schema) -> serde_json::Value {
        schema.to_value()
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
}
