//! Personal fields opened before a projector sees an event: an event whose
//! body holds a sealed value (see [`jetsource_schemas::personal`]) gets it
//! replaced by the plain value, read with the aggregate's data key from
//! the keys bucket, or by its redaction value once the key was forgotten.
//! Every projection (typed, untyped, documents, PostgreSQL) and process
//! manager then folds what the command side reads; an event that seals
//! nothing is handed on as stored, with no lookup.
//!
//! Keys are read for each sealed event, never cached, so that an event
//! folded after a forget reads as redacted. A key wrapped under a master
//! key is opened with the one configured ([`ProjectorConfig::master_key`](crate::ProjectorConfig)):
//! without it, or with another, the event is refused (kind
//! [`EventErrorKind::MasterKey`]), never read as forgotten.

use crate::event::{Event, EventError, EventErrorKind};
use async_nats::jetstream::{self, kv};
use jetsource_schemas::error::Error;
use jetsource_schemas::key_wrap::{self, MasterKey, StoredKeyError, StoredKeyErrorKind};
use jetsource_schemas::personal::{self, DataKey};
use jetsource_schemas::Namespace;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The keys bucket's name before the namespace's prefix (the command
/// side's `jetsource_keys`).
const KEYS_BUCKET: &str = "jetsource_keys";

/// Reads of a key before the event is refused: the store may be between
/// leaders for a moment.
const ATTEMPTS: u32 = 5;

/// The data keys of one namespace, as readers see them.
#[derive(Debug)]
pub struct DataKeys {
    jetstream: jetstream::Context,
    bucket: String,
    kv: OnceCell<kv::Store>,
    master: Option<MasterKey>,
}

/// Why a key was not read.
enum Unread {
    /// The bucket did not answer: try again.
    Unavailable(String),
    /// The stored key does not open: trying again changes nothing.
    Refused(StoredKeyError),
}

impl DataKeys {
    /// The keys of `namespace` over `jetstream`, wrapped ones opened with
    /// `master`.
    pub fn new(
        jetstream: jetstream::Context,
        namespace: &Namespace,
        master: Option<MasterKey>,
    ) -> Self {
        DataKeys {
            jetstream,
            bucket: namespace.bucket(KEYS_BUCKET),
            kv: OnceCell::new(),
            master,
        }
    }

    async fn key(&self, subject: &str) -> Result<Option<DataKey>, Unread> {
        let kv = self
            .kv
            .get_or_try_init(|| self.jetstream.get_key_value(&self.bucket))
            .await
            .map_err(|e| Unread::Unavailable(format!("the keys bucket {}: {e}", self.bucket)))?;
        match kv.get(subject).await {
            Ok(Some(value)) => key_wrap::from_stored(subject, &value, self.master.as_ref())
                .map(Some)
                .map_err(Unread::Refused),
            Ok(None) => Ok(None),
            Err(e) => Err(Unread::Unavailable(format!("the key of {subject}: {e}"))),
        }
    }

    /// `event` with its sealed fields opened, or read as redacted.
    /// Refused (kind [`EventErrorKind::Sealed`]) when a sealed value does
    /// not open with the key it names (altered, or moved from another
    /// aggregate), or the key cannot be read after a few attempts; kind
    /// [`EventErrorKind::MasterKey`] when the key is wrapped under a master
    /// key this process lacks.
    pub async fn reveal(&self, mut event: Event) -> Result<Event, EventError> {
        // Only sealed values of the documented shape are looked up: an
        // aggregate without personal data whose field happens to hold a
        // `$sealed` key is handed on as stored and read as before (a typed
        // reader of an aggregate with personal data refuses it).
        if !matches!(personal::reveal_body(&event.body, None), Ok(Some(_))) {
            return Ok(event);
        }
        let subject = personal::data_subject(&event.aggregate_type, &event.aggregate_id);
        let mut attempt = 0;
        let key = loop {
            attempt += 1;
            match self.key(&subject).await {
                Ok(key) => break key,
                Err(Unread::Refused(e)) => {
                    let kind = match e.kind() {
                        StoredKeyErrorKind::NoMasterKey | StoredKeyErrorKind::WrongMasterKey => {
                            EventErrorKind::MasterKey
                        }
                        _ => EventErrorKind::Sealed,
                    };
                    return Err(Error::with_message_and_source(
                        kind,
                        format!("{} #{}", event.stream, event.seq),
                        e,
                    ));
                }
                Err(Unread::Unavailable(why)) if attempt >= ATTEMPTS => {
                    return Err(Error::new(
                        EventErrorKind::Sealed,
                        format!("{} #{}: {why}", event.stream, event.seq),
                    ))
                }
                Err(Unread::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await
                }
            }
        };
        match personal::reveal_body(&event.body, key.as_ref()) {
            Ok(Some(body)) => event.body = body.into(),
            Ok(None) => {}
            Err(e) => {
                return Err(Error::with_message_and_source(
                    EventErrorKind::Sealed,
                    format!("{} #{}", event.stream, event.seq),
                    e,
                ))
            }
        }
        Ok(event)
    }
}
