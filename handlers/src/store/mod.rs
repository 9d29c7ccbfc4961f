//! The event store: one JetStream stream per aggregate type, one subject per
//! aggregate instance.
//!
//! - [`EventStore::ensure_stream`] creates or updates a stream idempotently,
//!   stamping it with the contract version and refusing a stream stamped
//!   with another.
//! - [`EventStore::load`] reads an aggregate's events with ADR-31 batched
//!   direct gets (`next_by_subj` + `batch`): one round trip and no consumer
//!   for up to [`FIRST_BATCH`] events, so a cache miss costs the server
//!   almost nothing; a longer history's rest comes through a short-lived
//!   consumer, which delivers it about twice as fast.
//!   [`EventStore::load_each`] hands each event on as it arrives, so the
//!   caller folds while the rest is read.
//! - [`EventStore::append`] appends with `Nats-Expected-Last-Subject-Sequence`
//!   over `evt.<type>.<id>.*`; several events go as one ADR-50 atomic batch.
//!   [`EventStore::append_many`] appends to several aggregates of one type
//!   in one atomic batch, each with its own check: all or nothing.
//!
//! Subjects and stream names are those of the store's [`Namespace`]
//! (default: no prefix), built with one `format!` each, as without one.
//!
//! The command handlers use the store; so may an application, to read an
//! aggregate's history (`jetsource rewind` does) or to append
//! events outside a command (seeding, migrations, tests), with the same
//! expected-sequence check a handler's appends carry.
//!
//! # Files
//! - `stream.rs`: stream set-up and the contract stamp.
//! - `load.rs`: which reads a load makes, in which order; `direct_get.rs`
//!   (ADR-31 batches) and `consumer_read.rs` (the long tail) make them.
//! - `append.rs`: one command's events as messages; `publish.rs` sends
//!   them (single publish, atomic batch), `group_commit.rs` shares batches.
//! - `reply_mux.rs`: one subscription for the replies of every load and
//!   batch.
//! - `errors.rs`: the kinds of failure, and the JetStream codes they stand
//!   for.
//! - `event.rs`: events as written and as read back.

mod append;
mod commit_mode;
mod consumer_read;
mod direct_get;
mod errors;
mod event;
mod group_commit;
mod load;
mod publish;
mod reply_mux;
mod stream;

pub use append::{AggregateAppend, AppendMeta};
pub use direct_get::LOAD_BATCH_BYTES;
pub use errors::{
    AppendError, AppendErrorKind, LoadError, LoadErrorKind, StreamError, StreamErrorKind,
};
pub use event::{NewEvent, StoredEvent};
pub use group_commit::{GroupCommitConfig, GroupCommitMode, GroupCommitStats};
pub use load::{LoadStats, CONSUMER_MIN_PENDING, CONSUMER_RETRY_AFTER, FIRST_BATCH, LOAD_BATCH};
pub use stream::StreamSettings;

pub(crate) use load::FirstBatch;

use crate::error::Error;
use crate::keys::KeyRing;
use append::Appender;
use async_nats::Client;
use direct_get::DirectGet;
use jetsource_schemas::key_wrap::MasterKey;
use jetsource_schemas::Namespace;
use load::{ConsumerPauses, Reader};
use reply_mux::ReplyMux;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

/// The event store over one NATS connection.
#[derive(Debug, Clone)]
pub struct EventStore {
    client: Client,
    jetstream: async_nats::jetstream::Context,
    mux: Arc<ReplyMux>,
    appender: Appender,
    timeout: Duration,
    namespace: Namespace,
    load_stats: Arc<LoadStats>,
    consumers_paused: Arc<ConsumerPauses>,
    keys: Arc<KeyRing>,
    key_replicas: usize,
    master_key: Option<MasterKey>,
}

impl EventStore {
    /// An event store over `client`; requests time out after `timeout`.
    pub async fn new(client: Client, timeout: Duration) -> Result<Self, LoadError> {
        let mux = ReplyMux::start(&client)
            .await
            .map_err(|e| Error::with_source(LoadErrorKind::Unavailable, e))?;
        let jetstream = async_nats::jetstream::new(client.clone());
        let appender = Appender::new(client.clone(), mux.clone(), timeout);
        Ok(EventStore {
            jetstream,
            mux,
            appender,
            timeout,
            keys: Arc::new(KeyRing::new(
                client.clone(),
                &Namespace::default(),
                1,
                timeout,
            )),
            key_replicas: 1,
            master_key: None,
            namespace: Namespace::default(),
            load_stats: Arc::default(),
            consumers_paused: Arc::default(),
            client,
        })
    }

    /// Puts every subject and stream name under `namespace`'s prefix
    /// (default: none).
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self.keys = Arc::new(self.new_keys());
        self
    }

    /// Makes the data keys bucket, when absent, with `replicas` (default
    /// 1; the runtime sets the event streams' own).
    pub fn with_key_replicas(mut self, replicas: usize) -> Self {
        self.key_replicas = replicas;
        self.keys = Arc::new(self.new_keys());
        self
    }

    /// Wraps the data keys it makes under `master`, and opens wrapped
    /// ones with it (default none: see [`KeyRing::with_master_key`]).
    pub fn with_master_key(mut self, master: Option<MasterKey>) -> Self {
        self.master_key = master;
        self.keys = Arc::new(self.new_keys());
        self
    }

    fn new_keys(&self) -> KeyRing {
        KeyRing::new(
            self.client.clone(),
            &self.namespace,
            self.key_replicas,
            self.timeout,
        )
        .with_master_key(self.master_key.clone())
    }

    /// The data keys of personal data in its namespace.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// The namespace its subjects and streams are in.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Lets concurrent appends to one stream share atomic batches (see
    /// [`GroupCommitConfig`]).
    pub fn with_group_commit(mut self, config: GroupCommitConfig) -> Self {
        self.appender = self.appender.with_group_commit(config);
        self
    }

    /// Group commit's counters, when it is on.
    pub fn group_commit_stats(&self) -> Option<Arc<GroupCommitStats>> {
        self.appender.stats()
    }

    /// Whether `aggregate_type`'s appends share atomic batches now: fixed by
    /// [`GroupCommitMode::On`], else what [`GroupCommitMode::Auto`] last
    /// chose for the server at hand (`None`: group commit is off, or nothing
    /// was appended to that stream yet).
    pub fn appends_batched(&self, aggregate_type: &str) -> Option<bool> {
        self.appender.batching(aggregate_type)
    }

    /// How its loads have been read so far.
    pub fn load_stats(&self) -> Arc<LoadStats> {
        self.load_stats.clone()
    }

    /// The NATS connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the stream of `aggregate_type`, or brings an existing one to
    /// `settings`. Safe to call from every process at every start.
    ///
    /// The stream's metadata carries the contract version under
    /// [`jetsource_schemas::CONTRACT_METADATA_KEY`]. An existing stream that names a version
    /// this build cannot read is refused ([`StreamErrorKind::ContractMismatch`])
    /// and left as it is; one without the key (made before the key existed,
    /// or by hand) or of an older readable version
    /// ([`jetsource_schemas::READABLE_CONTRACT_VERSIONS`]) is adopted and
    /// stamped with this build's version by the same update that applies
    /// `settings`, so readers of the older version stop at their next start
    /// rather than meet events they do not expect.
    pub async fn ensure_stream(
        &self,
        aggregate_type: &str,
        settings: &StreamSettings,
    ) -> Result<(), StreamError> {
        stream::ensure(&self.jetstream, &self.namespace, aggregate_type, settings).await
    }

    /// Reads the events of `evt.<type>.<id>.*` with a stream sequence above
    /// `after_seq`, in stream order.
    pub async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LoadError> {
        self.reader()
            .load(aggregate_type, aggregate_id, after_seq)
            .await
    }

    /// Like [`EventStore::load`], reading each event type's literal subject
    /// (`evt.<type>.<id>.<EventType>`) instead of the wildcard, all at once,
    /// and merging them in stream order.
    ///
    /// On a stream with many aggregates this is much cheaper for the server:
    /// a literal subject is found through JetStream's per-subject index,
    /// while a wildcard filter can make it scan whole blocks. It sees only
    /// the `event_types` given: an event of another type on the aggregate's
    /// subject is not read (the expected-sequence check, which spans the
    /// wildcard, still refuses appends until a full [`EventStore::load`]).
    pub async fn load_types(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_seq: u64,
        event_types: &[&str],
    ) -> Result<Vec<StoredEvent>, LoadError> {
        self.reader()
            .load_types(aggregate_type, aggregate_id, after_seq, event_types)
            .await
    }

    /// Hands `each` the aggregate's events from the start of its history,
    /// in stream order, as they arrive, until it breaks: those of
    /// `event_types` as [`EventStore::load_types`] reads them, or all of
    /// them as [`EventStore::load`] does when `event_types` is empty. A
    /// long history (past the first direct-get batch, with at least
    /// [`CONSUMER_MIN_PENDING`] events left) first asks `snapshot` for the
    /// stream sequence of a usable snapshot. When it names one, the events
    /// up to it are left out: the caller folds the snapshot, then the
    /// events above its sequence.
    ///
    /// Should the read fail part way, `each` has had a prefix of the events.
    pub async fn load_each<F, Fut>(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_types: &[&str],
        snapshot: F,
        each: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<(), LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<u64>>,
    {
        self.reader()
            .load_each(aggregate_type, aggregate_id, event_types, snapshot, each)
            .await
    }

    /// The subject of the message at stream sequence `seq` of
    /// `aggregate_type`'s stream, `None` when there is none.
    pub(crate) async fn subject_at(
        &self,
        aggregate_type: &str,
        seq: u64,
    ) -> Result<Option<String>, LoadError> {
        self.reader().subject_at(aggregate_type, seq).await
    }

    /// Appends `events` to `evt.<type>.<id>.*`, provided the aggregate's last
    /// stream sequence is still `expected` (0: no events yet). Returns the
    /// stream sequences of the events appended, in order.
    pub async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        expected: u64,
        events: &[NewEvent],
        meta: &AppendMeta<'_>,
    ) -> Result<Vec<u64>, AppendError> {
        self.appender
            .append(
                &self.namespace,
                aggregate_type,
                aggregate_id,
                expected,
                events,
                meta,
            )
            .await
    }

    /// Appends each of `appends` to its aggregate of `aggregate_type`, all
    /// in one ADR-50 atomic batch: every aggregate's first message carries
    /// its own expected-sequence check (its `expected`), and JetStream
    /// stores all of the events, at consecutive sequences in the order
    /// given, or none of them when any check fails
    /// ([`AppendErrorKind::Conflict`]). Returns the sequences of all the
    /// events, in order. Never part of a group commit.
    pub async fn append_many(
        &self,
        aggregate_type: &str,
        appends: &[AggregateAppend<'_>],
        meta: &AppendMeta<'_>,
    ) -> Result<Vec<u64>, AppendError> {
        self.appender
            .append_many(&self.namespace, aggregate_type, appends, meta)
            .await
    }

    /// The first step of a load of the aggregate's history: its first
    /// direct-get batch, of the literal subjects of `event_types` (of its
    /// wildcard subject when `event_types` is empty). The caller may resume
    /// it after a snapshot, then reads the rest.
    pub(crate) async fn first_batch<'a>(
        &'a self,
        aggregate_type: &'a str,
        aggregate_id: &'a str,
        event_types: &[&str],
    ) -> Result<FirstBatch<'a>, LoadError> {
        self.reader()
            .first_batch(aggregate_type, aggregate_id, event_types)
            .await
    }

    /// What loads read with: borrowed, so making one costs nothing.
    fn reader(&self) -> Reader<'_> {
        Reader {
            client: &self.client,
            direct: DirectGet {
                client: &self.client,
                mux: &self.mux,
                timeout: self.timeout,
                requests: &self.load_stats.direct_requests,
            },
            namespace: &self.namespace,
            timeout: self.timeout,
            stats: &self.load_stats,
            paused: &self.consumers_paused,
        }
    }
}
