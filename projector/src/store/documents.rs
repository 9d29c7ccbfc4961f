//! The document store: a [`DocumentProjector`]'s documents, one KV entry
//! per document in the generation's bucket, plus a small checkpoint entry.
//!
//! Each entry records, per stream, the last sequence applied to that
//! document; a commit skips for a document the events it already holds, so
//! a batch stored only in part before a crash (documents written,
//! checkpoint not) is completed by its redelivery without applying any
//! event twice: after a crash at any point the documents equal the fold of
//! the stream. Several events of one key in a batch are folded in memory
//! and written once; different keys are written concurrently (at most
//! [`WRITES_IN_FLIGHT`] at a time), each by compare-and-set on the entry's
//! revision, so an instance that lost its turn cannot overwrite a newer
//! document. The checkpoint entry is written last, also by compare-and-set.
//! Memory holds the batch's documents only, never the whole model.
//!
//! A deleted document stays as a small tombstone (its sequences, no body)
//! so a redelivered create cannot bring it back; queries never show it.
//!
//! A bucket that holds a one-value checkpoint (a projection that was a
//! [`crate::PersistedProjector`] before) is emptied on open and the
//! projection rebuilds from sequence 1 ([`super::Opened::reset`]).
//!
//! A document that would be larger than one message may be (the server's
//! `max_payload`, less [`ENTRY_HEADROOM`]) is never written: the event that
//! would make it so fails with [`ProjectorErrorKind::TooLarge`] and is
//! parked per the poison policy, the document staying as it was, so one
//! oversized document never stalls the others behind endless retries.
//!
//! An existing bucket is used with its settings (an operator may set
//! limits such as `max_value_size`); a missing one is created.

use super::document_reads::DocumentReads;
use super::key_index::KeyIndex;
use super::{Checkpoint, Committed, Opened, ReadStore};
use crate::config::{PoisonPolicy, ProjectorConfig};
use crate::control;
use crate::document::{self, DocumentProjector, Forgotten};
use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::event::{Event, FORGOTTEN_EVENT};
use crate::persisted::CHECKPOINT_KEY;
use crate::position::Positions;
use crate::projector::{ProjectorError, ProjectorErrorKind, Query, QueryError};
use crate::shared;
use crate::typed::Follows;
use async_nats::jetstream::{self, kv};
use futures::{StreamExt, TryStreamExt};
use jetsource_schemas::error::Error;
use jetsource_schemas::forgotten::{self, ForgottenNotice};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The key of a document store's checkpoint entry (documents never start
/// with `_`).
pub const DOCUMENT_CHECKPOINT_KEY: &str = "_checkpoint";

/// Bytes of a message kept for the KV subject and headers beside a
/// document's entry.
pub(crate) const ENTRY_HEADROOM: usize = 1024;

/// How many document reads or writes one commit keeps in flight.
pub const WRITES_IN_FLIGHT: usize = 256;

/// One document's entry: the sequences applied to it and its body
/// (`None`: a tombstone).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Entry<D> {
    pub seq: Positions,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub doc: Option<D>,
}

fn none<D>() -> Option<D> {
    None
}

/// A [`DocumentProjector`]'s documents, one KV entry each.
pub struct DocumentStore<P: DocumentProjector> {
    pub(crate) js: jetstream::Context,
    pub(crate) config: ProjectorConfig,
    pub(crate) projector: P,
    /// Opened buckets per generation, with the checkpoint entry's revision.
    buckets: Mutex<BTreeMap<u64, (kv::Store, u64)>>,
    /// The key order of each generation listed so far.
    indexes: tokio::sync::Mutex<BTreeMap<u64, Arc<KeyIndex>>>,
    /// How a batch's documents (and a list page's) are read.
    pub(super) reads: DocumentReads,
}

/// A document as a commit reads and folds it.
struct Doc<D> {
    revision: u64,
    seq: Positions,
    /// The sequences as read, before this commit: an event at or below
    /// them is already in the document. (Not `seq`, which this commit
    /// moves: an event upcast into several inputs may touch one document
    /// more than once.) A drop in this commit raises them: the forgotten
    /// aggregate's events up to the forget are not folded again.
    floor: Positions,
    doc: Option<D>,
    changed: bool,
    /// The entry (`seq` and `doc`) encoded, once an apply changed it.
    encoded: Option<Vec<u8>>,
}

impl<P: DocumentProjector> DocumentStore<P> {
    /// A store for `projector`'s documents in the buckets of `config`'s
    /// namespace.
    pub fn new(js: jetstream::Context, config: ProjectorConfig, projector: P) -> Self {
        DocumentStore {
            js,
            config,
            projector,
            buckets: Mutex::new(BTreeMap::new()),
            indexes: tokio::sync::Mutex::new(BTreeMap::new()),
            reads: DocumentReads::default(),
        }
    }

    /// The key index of `generation`'s bucket `kv` (whose stream was
    /// created at `created`), started on first use and again when the one
    /// held stopped or follows a bucket since made anew.
    pub(crate) async fn key_index(
        &self,
        generation: u64,
        kv: &kv::Store,
        created: time::OffsetDateTime,
    ) -> Result<Arc<KeyIndex>, String> {
        let mut indexes = self.indexes.lock().await;
        if let Some(index) = indexes.get(&generation).filter(|i| i.follows(created)) {
            return Ok(index.clone());
        }
        let index = Arc::new(KeyIndex::follow(&self.js.client(), kv, created).await?);
        indexes.insert(generation, index.clone());
        Ok(index)
    }

    pub(crate) fn bucket_name(&self, generation: u64) -> String {
        self.config.namespace.bucket(&control::generation_bucket(
            self.projector.name(),
            generation,
        ))
    }

    /// The bucket of `generation`, opened for reading (`None`: none yet).
    pub(crate) async fn bucket(&self, generation: u64) -> Option<kv::Store> {
        if let Some((kv, _)) = shared::recover(self.buckets.lock()).get(&generation) {
            return Some(kv.clone());
        }
        self.js
            .get_key_value(self.bucket_name(generation))
            .await
            .ok()
    }

    fn opened(&self, generation: u64) -> Result<(kv::Store, u64), ProjectionError> {
        shared::recover(self.buckets.lock())
            .get(&generation)
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ProjectionErrorKind::Store,
                    "the generation is not open for writing",
                )
            })
    }

    async fn read_checkpoint(kv: &kv::Store) -> Result<(Option<Checkpoint>, u64), ProjectionError> {
        let entry = kv
            .entry(DOCUMENT_CHECKPOINT_KEY)
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let checkpoint: Checkpoint = serde_json::from_slice(&entry.value).map_err(|e| {
                    Error::with_message_and_source(
                        ProjectionErrorKind::Store,
                        "the stored checkpoint does not decode",
                        e,
                    )
                })?;
                Ok((Some(checkpoint), entry.revision))
            }
            Some(entry) => Ok((None, entry.revision)),
            None => Ok((None, 0)),
        }
    }

    /// Reads the current entries of `keys` (see [`DocumentReads`]).
    async fn read_docs(
        &self,
        kv: &kv::Store,
        keys: Vec<String>,
    ) -> Result<HashMap<String, Doc<P::Document>>, ProjectionError> {
        let read = self.reads.read(&self.js.client(), kv, keys).await?;
        read.into_iter()
            .map(|(key, read)| {
                let doc = match read.value {
                    Some(value) => {
                        let stored: Entry<P::Document> =
                            serde_json::from_slice(&value).map_err(|e| {
                                Error::with_message_and_source(
                                    ProjectionErrorKind::Store,
                                    format!(
                                        "document {} does not decode",
                                        jetsource_schemas::reply::excerpt(&key, 64)
                                    ),
                                    e,
                                )
                            })?;
                        Doc {
                            revision: read.revision,
                            floor: stored.seq.clone(),
                            seq: stored.seq,
                            doc: stored.doc,
                            changed: false,
                            encoded: None,
                        }
                    }
                    None => Doc {
                        revision: read.revision,
                        seq: Positions::new(),
                        floor: Positions::new(),
                        doc: None,
                        changed: false,
                        encoded: None,
                    },
                };
                Ok((key, doc))
            })
            .collect()
    }

    /// Writes the changed documents, concurrently, each by compare-and-set.
    async fn write_docs(
        kv: &kv::Store,
        docs: HashMap<String, Doc<P::Document>>,
    ) -> Result<(), ProjectionError> {
        futures::stream::iter(docs.into_iter().filter(|(_, d)| d.changed))
            .map(|(key, d)| async move {
                let value = match d.encoded {
                    Some(value) => value,
                    None => encode_entry(&key, &d.seq, &d.doc)?,
                };
                match kv.update(&key, value.into(), d.revision).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        Err(Error::with_message_and_source(
                            ProjectionErrorKind::Conflict,
                            format!("document {key} was written by another instance"),
                            e,
                        ))
                    }
                    Err(e) => Err(Error::with_message_and_source(
                        ProjectionErrorKind::Store,
                        format!("document {key} not stored"),
                        e,
                    )),
                }
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn write_checkpoint(
        &self,
        generation: u64,
        kv: &kv::Store,
        revision: u64,
        checkpoint: &Checkpoint,
    ) -> Result<(), ProjectionError> {
        let value = serde_json::to_vec(checkpoint).map_err(|e| {
            Error::with_message_and_source(
                ProjectionErrorKind::Store,
                "the checkpoint does not encode",
                e,
            )
        })?;
        match kv
            .update(DOCUMENT_CHECKPOINT_KEY, value.into(), revision)
            .await
        {
            Ok(revision) => {
                if let Some(open) = shared::recover(self.buckets.lock()).get_mut(&generation) {
                    open.1 = revision;
                }
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(Error::with_source(ProjectionErrorKind::Conflict, e))
            }
            Err(e) => Err(Error::with_source(ProjectionErrorKind::Store, e)),
        }
    }
}

/// An event of a commit, decoded, with the document it touches.
struct Decoded<I> {
    stream: String,
    seq: u64,
    key: Option<String>,
    step: Step<I>,
}

/// What one decoded event does to its document.
enum Step<I> {
    /// Folds the input.
    Apply(I),
    /// Drops the document, a forgotten aggregate's (a forgotten notice):
    /// no event of `stream` up to `upto` is folded into it again.
    Drop { stream: String, upto: u64 },
}

impl<P: DocumentProjector> DocumentStore<P> {
    /// The documents `notice` (a forgotten notice, see
    /// [`crate::event::FORGOTTEN_EVENT`]) has the projector drop.
    fn dropped(&self, notice: &Event) -> Result<Vec<Decoded<P::Input>>, ProjectorError> {
        let body: ForgottenNotice = serde_json::from_slice(&notice.body)
            .map_err(|e| Error::with_source(ProjectorErrorKind::Invalid, e))?;
        if !P::Input::aggregate_types().contains(&body.aggregate_type.as_str()) {
            return Ok(Vec::new());
        }
        let keys = match self
            .projector
            .forgotten(&body.aggregate_type, &body.aggregate_id)
        {
            Forgotten::Keep => return Ok(Vec::new()),
            Forgotten::Drop(keys) => keys,
        };
        keys.into_iter()
            .map(|key| {
                document::check_key_of(&self.projector, &key)?;
                Ok(Decoded {
                    stream: notice.stream.clone(),
                    seq: notice.seq,
                    key: Some(key),
                    step: Step::Drop {
                        stream: body.stream.clone(),
                        upto: body.seq,
                    },
                })
            })
            .collect()
    }
}

impl<P: DocumentProjector> ReadStore for DocumentStore<P> {
    fn name(&self) -> &'static str {
        self.projector.name()
    }

    fn subjects(&self) -> Vec<String> {
        self.projector.subjects()
    }

    fn poison_policy(&self, default: PoisonPolicy) -> PoisonPolicy {
        self.projector.poison_policy(default)
    }

    fn forgotten_types(&self) -> Vec<String> {
        P::Input::aggregate_types()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    async fn open(&self, generation: u64, lease: u64) -> Result<Opened, ProjectionError> {
        let name = self.bucket_name(generation);
        let kv = match self.js.get_key_value(&name).await {
            Ok(kv) => kv,
            Err(_) => self
                .js
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    description: format!("documents of projection {}", self.projector.name()),
                    history: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?,
        };
        let mut reset = false;
        let old = kv
            .entry(CHECKPOINT_KEY)
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
        let (kv, (stored, revision)) = if old.is_some_and(|e| e.operation == kv::Operation::Put) {
            // A one-value checkpoint: this projection kept its whole state
            // in one value before. Nothing in it reads as documents: start
            // over from sequence 1 in an emptied bucket.
            tracing::warn!(bucket = %name, "the bucket holds a one-value checkpoint; emptying it and rebuilding from sequence 1");
            let info = kv
                .status()
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
            let config = info.info.config;
            self.js
                .delete_key_value(&name)
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
            let kv = self
                .js
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    description: format!("documents of projection {}", self.projector.name()),
                    history: 1,
                    max_value_size: config.max_message_size,
                    max_bytes: config.max_bytes,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
            reset = true;
            (kv, (None, 0))
        } else {
            let read = Self::read_checkpoint(&kv).await?;
            (kv, read)
        };
        shared::recover(self.buckets.lock()).insert(generation, (kv.clone(), revision));
        let mut checkpoint = stored.unwrap_or_default();
        checkpoint.lease = lease;
        // Fencing: an earlier opener's next checkpoint write is refused.
        self.write_checkpoint(generation, &kv, revision, &checkpoint)
            .await?;
        Ok(Opened { checkpoint, reset })
    }

    async fn refresh(&self, generation: u64) -> Result<Option<Checkpoint>, ProjectionError> {
        let Ok(kv) = self.js.get_key_value(self.bucket_name(generation)).await else {
            return Ok(None);
        };
        Ok(Self::read_checkpoint(&kv).await?.0)
    }

    async fn commit(
        &self,
        generation: u64,
        events: Vec<Event>,
        mut checkpoint: Checkpoint,
        _live: bool,
    ) -> Result<Committed, ProjectionError> {
        let (kv, revision) = self.opened(generation)?;
        let mut failure: Option<ProjectorError> = None;
        // Per event, the inputs it reads as (several, or none, when
        // upcasting split or dropped it).
        let mut decoded: Vec<Vec<Decoded<P::Input>>> = Vec::new();
        let notices = forgotten::stream_name(&self.config.namespace);
        'events: for event in &events {
            if event.event_type == FORGOTTEN_EVENT && event.stream == notices {
                match self.dropped(event) {
                    Ok(read) => decoded.push(read),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
                continue;
            }
            let inputs = match P::Input::decode_all(event) {
                Ok(inputs) => inputs.unwrap_or_default(),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let mut read = Vec::with_capacity(inputs.len());
            for input in inputs {
                let key = self.projector.key(&input);
                if let Some(key) = &key {
                    if let Err(e) = document::check_key_of(&self.projector, key) {
                        failure = Some(e);
                        break 'events;
                    }
                }
                read.push(Decoded {
                    stream: event.stream.clone(),
                    seq: event.seq,
                    key,
                    step: Step::Apply(input),
                });
            }
            decoded.push(read);
        }
        let mut keys: Vec<String> = decoded
            .iter()
            .flatten()
            .filter_map(|d| d.key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        let mut docs = self.read_docs(&kv, keys).await?;
        let max_entry = self
            .js
            .client()
            .server_info()
            .max_payload
            .saturating_sub(ENTRY_HEADROOM);
        let mut applied = 0;
        'applying: for inputs in decoded {
            for one in inputs {
                let Decoded {
                    stream,
                    seq,
                    key,
                    step,
                } = one;
                let Some((key, doc)) = key.and_then(|k| docs.get_mut(&k).map(|d| (k, d))) else {
                    continue;
                };
                if doc.floor.get(&stream).is_some_and(|&held| held >= seq) {
                    // Stored before a crash, with the checkpoint behind it,
                    // or an event of an aggregate forgotten since.
                    continue;
                }
                let input = match step {
                    Step::Apply(input) => input,
                    Step::Drop { stream: from, upto } => {
                        let mut seqs = doc.seq.clone();
                        seqs.insert(stream.clone(), seq);
                        let at = seqs.entry(from.clone()).or_insert(0);
                        *at = (*at).max(upto);
                        let floor = doc.floor.entry(from).or_insert(0);
                        *floor = (*floor).max(upto);
                        doc.floor.insert(stream, seq);
                        // A tombstone even where none was: it keeps the floor.
                        doc.encoded = Some(encode_entry::<P::Document>(&key, &seqs, &None)?);
                        doc.doc = None;
                        doc.seq = seqs;
                        doc.changed = true;
                        continue;
                    }
                };
                // `apply` takes the document; on failure it is put back as
                // it was, for the events before this one to be stored.
                let backup = match &doc.doc {
                    Some(d) => Some(serde_json::to_vec(d).map_err(|e| {
                        Error::with_message_and_source(
                            ProjectionErrorKind::Store,
                            "a document does not encode",
                            e,
                        )
                    })?),
                    None => None,
                };
                let applied_one = self
                    .projector
                    .apply(doc.doc.take(), input)
                    .and_then(|next| {
                        let mut seqs = doc.seq.clone();
                        seqs.insert(stream.clone(), seq);
                        let encoded = encode_entry(&key, &seqs, &next)
                            .map_err(|e| Error::with_source(ProjectorErrorKind::Invalid, e))?;
                        if encoded.len() > max_entry {
                            return Err(Error::new(
                                ProjectorErrorKind::TooLarge,
                                format!(
                                "document {} would be {} bytes; a message may carry {max_entry}",
                                jetsource_schemas::reply::excerpt(&key, 64),
                                encoded.len()
                            ),
                            ));
                        }
                        Ok((next, seqs, encoded))
                    });
                match applied_one {
                    Ok((next, seqs, encoded)) => {
                        // A document that never existed needs no tombstone.
                        doc.changed |= next.is_some() || doc.revision > 0;
                        doc.doc = next;
                        doc.seq = seqs;
                        doc.encoded = Some(encoded);
                    }
                    Err(e) => {
                        if let Some(bytes) = backup {
                            doc.doc = Some(serde_json::from_slice(&bytes).map_err(|e| {
                                Error::with_message_and_source(
                                    ProjectionErrorKind::Store,
                                    "a document does not decode",
                                    e,
                                )
                            })?);
                        }
                        failure = Some(e);
                        break 'applying;
                    }
                }
            }
            applied += 1;
        }
        Self::write_docs(&kv, docs).await?;
        for event in &events[..applied] {
            checkpoint.advance(event);
        }
        // Last: the checkpoint only ever covers documents already stored.
        self.write_checkpoint(generation, &kv, revision, &checkpoint)
            .await?;
        Ok(Committed { applied, failure })
    }

    async fn query(&self, generation: u64, query: Query) -> Result<serde_json::Value, QueryError> {
        super::document_query::answer(self, generation, query).await
    }

    async fn remove(&self, generation: u64) {
        shared::recover(self.buckets.lock()).remove(&generation);
        self.indexes.lock().await.remove(&generation);
        let bucket = self.bucket_name(generation);
        if let Err(e) = self.js.delete_key_value(&bucket).await {
            tracing::debug!(%bucket, error = %e, "bucket not deleted");
        }
    }
}

/// A document's entry as stored.
fn encode_entry<D: Serialize>(
    key: &str,
    seq: &Positions,
    doc: &Option<D>,
) -> Result<Vec<u8>, ProjectionError> {
    #[derive(Serialize)]
    struct Borrowed<'a, D> {
        seq: &'a Positions,
        #[serde(skip_serializing_if = "Option::is_none")]
        doc: &'a Option<D>,
    }
    serde_json::to_vec(&Borrowed { seq, doc }).map_err(|e| {
        Error::with_message_and_source(
            ProjectionErrorKind::Store,
            format!(
                "document {} does not encode",
                jetsource_schemas::reply::excerpt(key, 64)
            ),
            e,
        )
    })
}
