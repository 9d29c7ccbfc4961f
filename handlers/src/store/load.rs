//! Reading an aggregate's history: which reads, in which order.
//!
//! A first batched direct get per subject read (all at once) brings nearly
//! every aggregate whole in one round trip, with no consumer. A longer
//! history's rest (at least [`CONSUMER_MIN_PENDING`] events) comes through
//! a short-lived consumer (`consumer_read.rs`), which delivers it about
//! twice as fast, each event handed on as it arrives; a shorter rest, or
//! one whose consumer read fails, by further direct-get batches.

use super::consumer_read::{ConsumerRead, ConsumerReadErrorKind};
use super::direct_get::{DirectGet, LOAD_BATCH_BYTES};
use super::errors::{LoadError, LoadErrorKind};
use super::event::StoredEvent;
use crate::error::Error;
use async_nats::Client;
use jetsource_schemas::Namespace;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How the store's loads were read, counted since it was made.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Batched direct-get requests.
    pub direct_requests: AtomicU64,
    /// Loads whose long tail came through a consumer.
    pub consumer_reads: AtomicU64,
    /// Pull requests those consumers answered.
    pub consumer_pulls: AtomicU64,
    /// Consumer reads that failed and were finished by direct get instead.
    pub consumer_fallbacks: AtomicU64,
    /// Long loads read by direct get alone, within
    /// [`CONSUMER_RETRY_AFTER`] of a consumer that could not be created.
    pub consumer_skips: AtomicU64,
}

/// Events asked for by a load's first direct get, per subject read: nearly
/// every aggregate whole, in one round trip and with no consumer. No more,
/// since a long history reads these at direct-get cost, about twice a
/// consumer's per event.
pub const FIRST_BATCH: usize = 128;
/// Events left after the first batch from which the rest is read through a
/// consumer: below it, creating one costs more than it saves.
pub const CONSUMER_MIN_PENDING: u64 = 512;
/// Events asked for per direct-get batch after the first, and at most per
/// pull. Each request is a round trip during which neither side works, and
/// a pending count the server works out over the subject: reading 10,000
/// events by direct get took about 100 ms in batches of 1,000 and 70 ms in one.
pub const LOAD_BATCH: usize = 10_000;
/// How long loads read a stream by direct get alone after a load consumer
/// could not be created on it. An account that may not create consumers
/// gets no answer at all, so each try waits for the creation's timeout
/// (2 s): one long load a minute pays that, not every one.
pub const CONSUMER_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Streams on which a load consumer could not be created, and until when
/// loads leave them to direct gets.
#[derive(Debug, Default)]
pub(crate) struct ConsumerPauses(Mutex<HashMap<String, Instant>>);

/// The loads of one store: what they read with and where they count.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub(crate) client: &'a Client,
    pub(crate) direct: DirectGet<'a>,
    pub(crate) namespace: &'a Namespace,
    /// How long to wait for any one answer.
    pub(crate) timeout: Duration,
    pub(crate) stats: &'a LoadStats,
    pub(crate) paused: &'a ConsumerPauses,
}

impl<'a> Reader<'a> {
    /// As [`super::EventStore::load`].
    pub(crate) async fn load(
        self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LoadError> {
        let filter = self
            .namespace
            .aggregate_filter(aggregate_type, aggregate_id)
            .map_err(|e| Error::with_source(LoadErrorKind::Protocol, e))?;
        self.read(aggregate_type, aggregate_id, vec![filter], after_seq)
            .await
    }

    /// As [`super::EventStore::load_types`].
    pub(crate) async fn load_types(
        self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_seq: u64,
        event_types: &[&str],
    ) -> Result<Vec<StoredEvent>, LoadError> {
        let filters = self.type_subjects(aggregate_type, aggregate_id, event_types)?;
        self.read(aggregate_type, aggregate_id, filters, after_seq)
            .await
    }

    /// The literal subjects of an aggregate's `event_types`.
    fn type_subjects(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_types: &[&str],
    ) -> Result<Vec<String>, LoadError> {
        event_types
            .iter()
            .map(|event_type| {
                self.namespace
                    .event_subject(aggregate_type, aggregate_id, event_type)
                    .map_err(|e| Error::with_source(LoadErrorKind::Protocol, e))
            })
            .collect()
    }

    /// As [`super::EventStore::load_each`].
    pub(crate) async fn load_each<F, Fut>(
        self,
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
        let mut first = self
            .first_batch(aggregate_type, aggregate_id, event_types)
            .await?;
        if first.is_long() {
            if let Some(seq) = snapshot().await {
                first.resume_after(seq);
            }
        }
        first.read_rest(each).await
    }

    /// The first batch of an aggregate's history from its start: of the
    /// literal subjects of `event_types`, or of its wildcard subject when
    /// `event_types` is empty.
    pub(crate) async fn first_batch(
        self,
        aggregate_type: &'a str,
        aggregate_id: &'a str,
        event_types: &[&str],
    ) -> Result<FirstBatch<'a>, LoadError> {
        let mut filters = self.type_subjects(aggregate_type, aggregate_id, event_types)?;
        if filters.is_empty() {
            filters.push(
                self.namespace
                    .aggregate_filter(aggregate_type, aggregate_id)
                    .map_err(|e| Error::with_source(LoadErrorKind::Protocol, e))?,
            );
        }
        self.first(aggregate_type, aggregate_id, filters, 0).await
    }

    /// As [`super::EventStore::subject_at`].
    pub(crate) async fn subject_at(
        self,
        aggregate_type: &str,
        seq: u64,
    ) -> Result<Option<String>, LoadError> {
        let api = format!(
            "$JS.API.DIRECT.GET.{}",
            self.namespace.stream_name(aggregate_type)
        );
        self.direct.subject_at(&api, seq).await
    }

    /// Every message on `filters` after `after_seq`, collected.
    async fn read(
        self,
        aggregate_type: &str,
        aggregate_id: &str,
        filters: Vec<String>,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LoadError> {
        let mut events = Vec::new();
        self.first(aggregate_type, aggregate_id, filters, after_seq)
            .await?
            .read_rest(&mut |event| {
                events.push(event);
                ControlFlow::Continue(())
            })
            .await?;
        Ok(events)
    }

    /// The first direct-get batch of every one of `filters` (the
    /// aggregate's wildcard subject or some of its literal ones) after
    /// `after_seq`, all at once; what remains is read by
    /// [`FirstBatch::read_rest`].
    async fn first(
        self,
        aggregate_type: &'a str,
        aggregate_id: &'a str,
        filters: Vec<String>,
        after_seq: u64,
    ) -> Result<FirstBatch<'a>, LoadError> {
        let stream = self.namespace.stream_name(aggregate_type);
        // JetStream's API subjects are never under the prefix.
        let api = format!("$JS.API.DIRECT.GET.{stream}");
        let firsts = filters
            .iter()
            .map(|filter| self.direct.batch(&api, filter, after_seq + 1, FIRST_BATCH));
        let mut events = Vec::new();
        let mut unfinished = Vec::new();
        let mut pending = 0;
        for (filter, batch) in (0..).zip(futures::future::join_all(firsts).await) {
            let batch = batch?;
            events.extend(batch.events);
            if batch.pending > 0 {
                pending += batch.pending;
                unfinished.push((filter, batch.next));
            }
        }
        if filters.len() > 1 {
            events.sort_unstable_by_key(|e| e.seq);
        }
        let bytes: usize = events.iter().map(|e| e.payload.len() + 128).sum();
        let per_event = (bytes / events.len().max(1)).max(1);
        let via_consumer = if pending < CONSUMER_MIN_PENDING {
            false
        } else if self.paused.is_paused(&stream) {
            self.stats.consumer_skips.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            true
        };
        Ok(FirstBatch {
            reader: self,
            aggregate_type,
            aggregate_id,
            stream,
            api,
            filters,
            events,
            unfinished,
            via_consumer,
            per_event,
        })
    }
}

/// A load's first direct-get batch per subject read, and where the rest
/// of each subject starts.
///
/// Most aggregates are whole in it. A long history's rest (at least
/// [`CONSUMER_MIN_PENDING`] events) comes through a short-lived consumer
/// (`consumer_read.rs`), which delivers it at about twice the rate, each
/// event handed on as it arrives; a shorter rest, or one whose consumer
/// read fails, by further direct-get batches. A caller with a snapshot of
/// a long history resumes after it ([`FirstBatch::resume_after`]) before
/// reading the rest.
pub(crate) struct FirstBatch<'a> {
    reader: Reader<'a>,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    stream: String,
    api: String,
    filters: Vec<String>,
    /// In stream order.
    events: Vec<StoredEvent>,
    /// Filters with events left: (index in `filters`, next sequence to read).
    unfinished: Vec<(usize, u64)>,
    /// The rest comes through a consumer.
    via_consumer: bool,
    /// The first batch's bytes per event, which size a consumer's pulls.
    per_event: usize,
}

impl FirstBatch<'_> {
    /// Whether the history is long: the batch left at least
    /// [`CONSUMER_MIN_PENDING`] events on the subjects read, and their rest
    /// comes through a consumer (unless consumers are paused on the stream,
    /// see [`CONSUMER_RETRY_AFTER`]). Only then is a snapshot worth reading.
    pub(crate) fn is_long(&self) -> bool {
        self.via_consumer
    }

    /// Leaves out every event up to stream sequence `seq` (a snapshot's,
    /// which stands for them): those in hand, and the rest is read after it.
    pub(crate) fn resume_after(&mut self, seq: u64) {
        let floor = seq.saturating_add(1);
        self.events.retain(|e| e.seq >= floor);
        for (_, next) in &mut self.unfinished {
            *next = (*next).max(floor);
        }
    }

    /// Hands `each` the events of this batch, then the rest, in stream
    /// order, until it breaks. Should the read fail part way, `each` has
    /// had a prefix of the events.
    pub(crate) async fn read_rest(
        self,
        each: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<(), LoadError> {
        let FirstBatch {
            reader,
            aggregate_type,
            aggregate_id,
            stream,
            api,
            filters,
            mut events,
            mut unfinished,
            via_consumer,
            per_event,
            ..
        } = self;
        // The highest stream sequence handed to `each`.
        let mut handed = 0;
        if via_consumer {
            // Every event below the lowest unfinished position is in hand:
            // the consumer reads the rest of every filter from there.
            let start = unfinished.iter().map(|(_, next)| *next).min().unwrap_or(0);
            // Those in hand below `start` go first; the rest stay for a
            // read by direct get, should the consumer's fail.
            let rest = events.split_off(events.partition_point(|e| e.seq < start));
            for event in events {
                handed = event.seq;
                if each(event).is_break() {
                    return Ok(());
                }
            }
            events = rest;
            // The consumer reads the aggregate's wildcard subject, even for
            // literal ones: a consumer filtered on several subjects had
            // nats-server scan the stream (1.3 s of its CPU for 10,000
            // events on a stream of a few hundred thousand), one wildcard
            // filter did not. Events of types not asked for are dropped here.
            let wildcard = reader
                .namespace
                .aggregate_filter(aggregate_type, aggregate_id)
                .map_err(|e| Error::with_source(LoadErrorKind::Protocol, e))?;
            let every_type = filters.len() == 1 && filters[0] == wildcard;
            let read = ConsumerRead {
                client: reader.client,
                pulls: &reader.stats.consumer_pulls,
                stream: &stream,
                filter: &wildcard,
                start,
                per_pull: (LOAD_BATCH_BYTES / per_event).clamp(1, LOAD_BATCH) as u64,
                timeout: reader.timeout,
            };
            let read = read
                .run(&mut |event| {
                    if !every_type && !filters.contains(&event.subject) {
                        return ControlFlow::Continue(());
                    }
                    handed = event.seq;
                    each(event)
                })
                .await;
            match read {
                Ok(()) => {
                    reader.stats.consumer_reads.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::global().load(true);
                    return Ok(());
                }
                Err(stopped) => {
                    reader
                        .stats
                        .consumer_fallbacks
                        .fetch_add(1, Ordering::Relaxed);
                    crate::metrics::global().load_fallback();
                    if stopped.kind() == ConsumerReadErrorKind::Create {
                        reader.paused.pause(&stream);
                    }
                    tracing::debug!(reason = %stopped, %stream, handed, "reading the rest by direct get");
                    // What the consumer handed on is a gap-free prefix of
                    // the aggregate's events: go on after it.
                    events.retain(|e| e.seq > handed);
                    for (_, next) in &mut unfinished {
                        *next = (*next).max(handed.saturating_add(1));
                    }
                }
            }
        }
        for (filter, mut from) in unfinished {
            loop {
                let batch = reader
                    .direct
                    .batch(&api, &filters[filter], from, LOAD_BATCH)
                    .await?;
                events.extend(batch.events);
                if batch.pending == 0 {
                    break;
                }
                from = batch.next;
            }
        }
        if filters.len() > 1 {
            events.sort_unstable_by_key(|e| e.seq);
        }
        crate::metrics::global().load(false);
        for event in events {
            if each(event).is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl ConsumerPauses {
    /// True while loads leave `stream` to direct gets (see
    /// [`CONSUMER_RETRY_AFTER`]).
    fn is_paused(&self, stream: &str) -> bool {
        let mut paused = self.lock();
        match paused.get(stream) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                paused.remove(stream);
                false
            }
            None => false,
        }
    }

    fn pause(&self, stream: &str) {
        self.lock()
            .insert(stream.to_string(), Instant::now() + CONSUMER_RETRY_AFTER);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        // Only map operations run under the lock, and none panics midway:
        // a poisoned map is still consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
