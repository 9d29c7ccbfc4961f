//! The data keys of personal data (see [`jetsource_schemas::personal`]):
//! one per data subject, in a key-value bucket of their own
//! (`jetsource_keys`, one value per subject, no history), replicated as the
//! event streams are.
//!
//! A key is made at the first append that seals something for its subject
//! (created, never overwritten, so two processes racing agree on one) and
//! read by every reader of that subject's events. Keys are not cached:
//! once [`KeyRing::forget`] returned, no process opens the subject's
//! sealed values again.
//!
//! Forgetting erases every message of the subject's key from the bucket's
//! stream with JetStream's message delete, which overwrites the stored
//! record on disk (it is not told `no_erase`); so the bucket's stream is
//! made by hand, as a KV bucket but allowing deletes ([`bucket_stream`]).
//! A KV purge or delete would not do: it writes a marker and removes the
//! older message from the index only, leaving its bytes in the block file
//! (`tests/forgetting.rs` checks both on the pinned nats-server).
//!
//! With a master key ([`KeyRing::with_master_key`]) new keys are stored
//! wrapped under it (see [`jetsource_schemas::key_wrap`]); keys stored
//! plain before are read as they are.

use crate::error::Error;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use jetsource_schemas::key_wrap::{self, MasterKey, StoredKeyErrorKind};
use jetsource_schemas::personal::DataKey;
use jetsource_schemas::Namespace;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The bucket's name, before the namespace's prefix.
pub const KEYS_BUCKET: &str = "jetsource_keys";

/// What went wrong reading, making or forgetting a data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyErrorKind {
    /// The data subject makes no key name.
    BadSubject,
    /// The bucket could not be reached, opened or created.
    Unavailable,
    /// A stored key does not read (altered, moved from another data
    /// subject, or not of the documented shape).
    Corrupt,
    /// A stored key is wrapped under a master key, and none is configured.
    NoMasterKey,
    /// A stored key is wrapped under another master key than the one
    /// configured.
    WrongMasterKey,
}

impl std::fmt::Display for KeyErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyErrorKind::BadSubject => "bad data subject",
            KeyErrorKind::Unavailable => "the keys bucket is unavailable",
            KeyErrorKind::Corrupt => "a stored data key does not read",
            KeyErrorKind::NoMasterKey => "a data key is wrapped and no master key is configured",
            KeyErrorKind::WrongMasterKey => "a data key is wrapped under another master key",
        })
    }
}

/// A data key failure; see [`KeyErrorKind`].
pub type KeyError = Error<KeyErrorKind>;

/// The data keys of one namespace.
#[derive(Debug)]
pub struct KeyRing {
    jetstream: jetstream::Context,
    bucket: String,
    replicas: usize,
    kv: OnceCell<kv::Store>,
    /// What keys are wrapped under; `None`: stored plain.
    master: Option<MasterKey>,
}

impl KeyRing {
    /// The keys of `namespace` over `client`; the bucket is made with
    /// `replicas` when absent. Requests wait `timeout` at most.
    pub fn new(
        client: async_nats::Client,
        namespace: &Namespace,
        replicas: usize,
        timeout: Duration,
    ) -> Self {
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(timeout);
        KeyRing {
            jetstream,
            bucket: namespace.bucket(KEYS_BUCKET),
            replicas: replicas.max(1),
            kv: OnceCell::new(),
            master: None,
        }
    }

    /// Stores new keys wrapped under `master` and opens wrapped ones with
    /// it (`None`, the default: new keys are stored plain, and a wrapped
    /// one is refused with [`KeyErrorKind::NoMasterKey`]).
    pub fn with_master_key(mut self, master: Option<MasterKey>) -> Self {
        self.master = master;
        self
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The bucket, opened (made when absent) at first use; a failure is
    /// not remembered, so the next call tries again.
    async fn kv(&self) -> Result<&kv::Store, KeyError> {
        self.kv
            .get_or_try_init(|| async {
                if let Ok(kv) = self.jetstream.get_key_value(&self.bucket).await {
                    return Ok(kv);
                }
                let created = self
                    .jetstream
                    .create_stream(bucket_stream(&self.bucket, self.replicas))
                    .await;
                match created {
                    Ok(_) => self
                        .jetstream
                        .get_key_value(&self.bucket)
                        .await
                        .map_err(|e| Error::with_source(KeyErrorKind::Unavailable, e)),
                    // Another process made it meanwhile, or it may not be made.
                    Err(e) => self
                        .jetstream
                        .get_key_value(&self.bucket)
                        .await
                        .map_err(|_| {
                            Error::with_message_and_source(
                                KeyErrorKind::Unavailable,
                                format!("bucket {}", self.bucket),
                                e,
                            )
                        }),
                }
            })
            .await
    }

    /// `subject`'s key, or `None` when it has none: forgotten, or nothing
    /// personal was ever stored for it.
    pub async fn key(&self, subject: &str) -> Result<Option<DataKey>, KeyError> {
        check(subject)?;
        let kv = self.kv().await?;
        let value = kv
            .get(subject)
            .await
            .map_err(|e| Error::with_source(KeyErrorKind::Unavailable, e))?;
        value
            .map(|v| decode(subject, &v, self.master.as_ref()))
            .transpose()
    }

    /// `subject`'s key, made now when it has none.
    pub async fn key_for_write(&self, subject: &str) -> Result<DataKey, KeyError> {
        if let Some(key) = self.key(subject).await? {
            return Ok(key);
        }
        let key = DataKey::generate(subject)
            .map_err(|e| Error::with_source(KeyErrorKind::Unavailable, e))?;
        let stored = key_wrap::to_stored(&key, self.master.as_ref())
            .map_err(|e| Error::with_source(KeyErrorKind::Unavailable, e))?;
        let kv = self.kv().await?;
        match kv.create(subject, Bytes::from(stored)).await {
            Ok(_) => Ok(key),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Another writer made it first: theirs is the key.
                self.key(subject).await?.ok_or_else(|| {
                    Error::new(
                        KeyErrorKind::Unavailable,
                        format!("the key of {subject} was made and forgotten at once"),
                    )
                })
            }
            Err(e) => Err(Error::with_source(KeyErrorKind::Unavailable, e)),
        }
    }

    /// Destroys `subject`'s key: every message of it in the bucket's
    /// stream is erased (overwritten on disk). How many were erased; 0 when
    /// it had none, which is no error.
    pub async fn forget(&self, subject: &str) -> Result<usize, KeyError> {
        check(subject)?;
        let kv = self.kv().await?;
        let stream_subject = format!("{}{subject}", kv.prefix);
        let mut erased = 0;
        loop {
            let last = kv
                .stream
                .get_last_raw_message_by_subject(&stream_subject)
                .await;
            let seq = match last {
                Ok(message) => message.sequence,
                Err(e)
                    if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    return Ok(erased)
                }
                Err(e) => return Err(Error::with_source(KeyErrorKind::Unavailable, e)),
            };
            // Without `no_erase`, JetStream overwrites the record.
            kv.stream
                .delete_message(seq)
                .await
                .map_err(|e| Error::with_source(KeyErrorKind::Unavailable, e))?;
            erased += 1;
        }
    }
}

/// The stream of a key-value bucket named `bucket`, as async-nats makes
/// one with history 1, except that it allows message deletes: a KV bucket
/// denies them, and forgetting erases a key with one.
pub fn bucket_stream(bucket: &str, replicas: usize) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("jetsource: data keys of personal data".into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: false,
        deny_purge: false,
        allow_direct: true,
        num_replicas: replicas.max(1),
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// A data subject is `<type>.<id>`, two tokens.
fn check(subject: &str) -> Result<(), KeyError> {
    let mut parts = subject.split('.');
    let valid = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(t), Some(id), None)
            if jetsource_schemas::token::validate("aggregate type", t).is_ok()
                && jetsource_schemas::token::validate("aggregate id", id).is_ok()
    );
    match valid {
        true => Ok(()),
        false => Err(Error::new(
            KeyErrorKind::BadSubject,
            jetsource_schemas::reply::excerpt(subject, 64),
        )),
    }
}

fn decode(subject: &str, value: &[u8], master: Option<&MasterKey>) -> Result<DataKey, KeyError> {
    key_wrap::from_stored(subject, value, master).map_err(|e| {
        let kind = match e.kind() {
            StoredKeyErrorKind::NoMasterKey => KeyErrorKind::NoMasterKey,
            StoredKeyErrorKind::WrongMasterKey => KeyErrorKind::WrongMasterKey,
            _ => KeyErrorKind::Corrupt,
        };
        Error::with_source(kind, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_subject_is_two_tokens() {
        assert!(check("account.a1").is_ok());
        for bad in [
            "account",
            "account.a1.x",
            "account.",
            ".a1",
            "acc ount.a1",
            "account.a*",
        ] {
            let err = check(bad).expect_err(bad);
            assert_eq!(err.kind(), KeyErrorKind::BadSubject, "{bad}");
        }
    }

    #[test]
    fn the_bucket_allows_the_deletes_forgetting_needs() {
        let config = bucket_stream("jetsource_keys", 3);
        assert_eq!(config.name, "KV_jetsource_keys");
        assert_eq!(config.subjects, ["$KV.jetsource_keys.>"]);
        assert!(!config.deny_delete);
        assert_eq!(config.max_messages_per_subject, 1);
        assert_eq!(config.num_replicas, 3);
    }
}
