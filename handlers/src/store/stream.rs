//! Setting up an aggregate type's stream: created or brought to the wanted
//! settings, idempotently, and stamped with the contract version.

use super::errors::{StreamError, StreamErrorKind};
use crate::error::Error;
use jetsource_schemas::settings::{self, InvalidSetting, SettingError};
use jetsource_schemas::{
    Namespace, CONTRACT_METADATA_KEY, CONTRACT_VERSION, READABLE_CONTRACT_VERSIONS,
};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// How to configure an aggregate type's stream.
///
/// Deserializes from its fields' names, `max_bytes` and
/// `duplicate_window` in the units of [`jetsource_schemas::settings`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    /// Replicas (1 on a single server, 3 in a cluster).
    pub replicas: usize,
    /// Refuse message deletes. One-way: JetStream cannot switch it back off.
    pub deny_delete: bool,
    /// Refuse purges. One-way as well.
    pub deny_purge: bool,
    /// An optional cap on the stream's size; appends beyond it are refused
    /// (discard new), history is never deleted.
    #[serde(with = "settings::optional_size")]
    pub max_bytes: Option<i64>,
    /// JetStream's dedupe window for `Nats-Msg-Id`. jetsource writes no
    /// message ids (the expected-sequence check and the Command-Id make a
    /// resend harmless), so this only bounds what other writers' ids cost.
    #[serde(with = "settings::duration")]
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            replicas: 1,
            deny_delete: true,
            deny_purge: true,
            max_bytes: None,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl StreamSettings {
    /// Checks the replicas (JetStream keeps 1 to 5); the error's kind names
    /// the key.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.replicas == 0 || self.replicas > 5 {
            return Err(SettingError::new(
                InvalidSetting("replicas"),
                "must be 1 to 5",
            ));
        }
        Ok(())
    }
}

/// Creates the stream of `aggregate_type` in `namespace`, or brings an
/// existing one to `settings` (see [`super::EventStore::ensure_stream`]).
pub(crate) async fn ensure(
    jetstream: &async_nats::jetstream::Context,
    namespace: &Namespace,
    aggregate_type: &str,
    settings: &StreamSettings,
) -> Result<(), StreamError> {
    use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
    let name = namespace.stream_name(aggregate_type);
    let subjects = vec![namespace
        .type_filter(aggregate_type)
        .map_err(|e| Error::with_source(StreamErrorKind::JetStream, e))?];
    let wanted = Config {
        name: name.clone(),
        subjects,
        storage: StorageType::File,
        num_replicas: settings.replicas,
        deny_delete: settings.deny_delete,
        deny_purge: settings.deny_purge,
        allow_direct: true,
        allow_atomic_publish: true,
        duplicate_window: settings.duplicate_window,
        max_bytes: settings.max_bytes.unwrap_or(-1),
        max_messages: -1,
        max_messages_per_subject: -1,
        discard: DiscardPolicy::New,
        description: Some(format!(
            "jetsource events of aggregate type {aggregate_type}"
        )),
        metadata: HashMap::from([(
            CONTRACT_METADATA_KEY.to_string(),
            CONTRACT_VERSION.to_string(),
        )]),
        ..Default::default()
    };
    match jetstream.get_stream(&name).await {
        Ok(mut stream) => {
            let info = stream
                .info()
                .await
                .map_err(|e| Error::with_source(StreamErrorKind::JetStream, e))?;
            let current = &info.config;
            if let Some(found) = current.metadata.get(CONTRACT_METADATA_KEY) {
                if !READABLE_CONTRACT_VERSIONS.contains(&found.as_str()) {
                    return Err(Error::new(
                        StreamErrorKind::ContractMismatch,
                        format!(
                            "stream {name} holds contract version {found:?} \
                             ({CONTRACT_METADATA_KEY}), this build speaks {CONTRACT_VERSION:?}"
                        ),
                    ));
                }
            }
            let mut next = current.clone();
            next.metadata.insert(
                CONTRACT_METADATA_KEY.to_string(),
                CONTRACT_VERSION.to_string(),
            );
            next.subjects = wanted.subjects.clone();
            // One-way switches: never try to turn them back off.
            next.deny_delete = current.deny_delete || wanted.deny_delete;
            next.deny_purge = current.deny_purge || wanted.deny_purge;
            next.allow_direct = true;
            next.allow_atomic_publish = true;
            next.duplicate_window = wanted.duplicate_window;
            next.max_bytes = wanted.max_bytes;
            next.discard = DiscardPolicy::New;
            next.num_replicas = wanted.num_replicas;
            if next != *current {
                jetstream
                    .update_stream(next)
                    .await
                    .map_err(|e| Error::with_source(StreamErrorKind::JetStream, e))?;
            }
            Ok(())
        }
        Err(e)
            if matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            jetstream
                .create_stream(wanted)
                .await
                .map_err(|e| Error::with_source(StreamErrorKind::JetStream, e))?;
            Ok(())
        }
        Err(e) => Err(Error::with_source(StreamErrorKind::JetStream, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_stay_within_what_jetstream_keeps() {
        for replicas in [1, 3, 5] {
            let settings = StreamSettings {
                replicas,
                ..StreamSettings::default()
            };
            assert!(settings.validate().is_ok(), "{replicas}");
        }
        for replicas in [0, 6] {
            let settings = StreamSettings {
                replicas,
                ..StreamSettings::default()
            };
            let e = settings.validate().expect_err("out of range");
            assert_eq!(e.kind(), InvalidSetting("replicas"), "{replicas}");
        }
    }
}
