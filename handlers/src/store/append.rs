//! Appending one command's events: each event's headers, the
//! expected-sequence check on the first, then a single publish, an atomic
//! batch of its own, or a share of a group commit. A command over several
//! aggregates gets one atomic batch of its own, with a check on each
//! aggregate's first event.

use super::errors::{AppendError, AppendErrorKind};
use super::event::NewEvent;
use super::group_commit::{GroupCommit, GroupCommitConfig, GroupCommitMode, GroupCommitStats};
use super::publish::{Outgoing, Publisher};
use super::reply_mux::ReplyMux;
use crate::error::Error;
use async_nats::header::{HeaderMap, HeaderValue};
use async_nats::Client;
use jetsource_schemas::Namespace;
use std::sync::Arc;
use std::time::Duration;

/// The metadata an append writes on every event.
#[derive(Debug, Clone)]
pub struct AppendMeta<'a> {
    /// The command's id (validated).
    pub command_id: &'a str,
    /// The correlation id (validated), if any.
    pub correlation_id: Option<&'a str>,
    /// The causation id (validated), if any.
    pub causation_id: Option<&'a str>,
    /// The events' schema version (written as `Event-Version` unless it is 1).
    pub event_version: u32,
    /// The trace the events continue (written as `traceparent`), if any.
    pub traceparent: Option<String>,
}

/// Appends over one connection, with group commit when it is on.
#[derive(Clone)]
pub(crate) struct Appender {
    publisher: Publisher,
    group: Option<Arc<GroupCommit>>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("timeout", &self.publisher.timeout)
            .field("group_commit", &self.group.as_ref().map(|g| g.config()))
            .finish()
    }
}

impl Appender {
    pub(crate) fn new(client: Client, mux: Arc<ReplyMux>, timeout: Duration) -> Self {
        Appender {
            publisher: Publisher {
                client,
                mux,
                timeout,
            },
            group: None,
        }
    }

    pub(crate) fn with_group_commit(mut self, config: GroupCommitConfig) -> Self {
        self.group =
            (config.mode != GroupCommitMode::Off).then(|| Arc::new(GroupCommit::new(config)));
        self
    }

    /// Whether `aggregate_type`'s appends share batches now (`None`: group
    /// commit is off, or nothing was appended yet).
    pub(crate) fn batching(&self, aggregate_type: &str) -> Option<bool> {
        self.group.as_ref()?.batching(aggregate_type)
    }

    /// Group commit's counters, when it is on.
    pub(crate) fn stats(&self) -> Option<Arc<GroupCommitStats>> {
        self.group.as_ref().map(|g| g.stats())
    }

    /// As [`super::EventStore::append`], in `namespace`.
    pub(crate) async fn append(
        &self,
        namespace: &Namespace,
        aggregate_type: &str,
        aggregate_id: &str,
        expected: u64,
        events: &[NewEvent],
        meta: &AppendMeta<'_>,
    ) -> Result<Vec<u64>, AppendError> {
        let mut messages = Vec::with_capacity(events.len());
        push_messages(
            &mut messages,
            namespace,
            aggregate_type,
            &AggregateAppend {
                aggregate_id,
                expected,
                events,
            },
            meta,
        )?;
        match &self.group {
            Some(group) if !messages.is_empty() => {
                group
                    .append(aggregate_type, messages, &self.publisher)
                    .await
            }
            _ => self.publisher.direct(messages).await,
        }
    }
}

/// One aggregate's share of an append over several aggregates: its
/// events, and the stream sequence of its last event the decision saw.
#[derive(Debug, Clone, Copy)]
pub struct AggregateAppend<'a> {
    /// The aggregate's id (validated: an id that makes no subject is
    /// refused before anything is sent).
    pub aggregate_id: &'a str,
    /// The stream sequence of the aggregate's last event (0: none yet).
    pub expected: u64,
    /// Its events, in order.
    pub events: &'a [NewEvent],
}

impl Appender {
    /// As [`super::EventStore::append_many`], in `namespace`. Never shares
    /// a group commit: its batch is its own, so a check that fails fails
    /// this command alone and is not appended again piecemeal.
    pub(crate) async fn append_many(
        &self,
        namespace: &Namespace,
        aggregate_type: &str,
        appends: &[AggregateAppend<'_>],
        meta: &AppendMeta<'_>,
    ) -> Result<Vec<u64>, AppendError> {
        let mut messages = Vec::with_capacity(appends.iter().map(|a| a.events.len()).sum());
        for append in appends {
            push_messages(&mut messages, namespace, aggregate_type, append, meta)?;
        }
        self.publisher.direct(messages).await
    }
}

/// One aggregate's events as messages, onto `messages`: each event's
/// headers, and the expected-sequence check over the aggregate's subjects
/// on its first message.
fn push_messages(
    messages: &mut Vec<Outgoing>,
    namespace: &Namespace,
    aggregate_type: &str,
    append: &AggregateAppend<'_>,
    meta: &AppendMeta<'_>,
) -> Result<(), AppendError> {
    let AggregateAppend {
        aggregate_id,
        expected,
        events,
    } = *append;
    // The expected-sequence check rides on the first message only.
    let mut filter = Some(
        namespace
            .aggregate_filter(aggregate_type, aggregate_id)
            .map_err(|e| Error::with_source(AppendErrorKind::Refused, e))?,
    );
    for event in events {
        let subject = namespace
            .event_subject(aggregate_type, aggregate_id, &event.event_type)
            .map_err(|e| Error::with_source(AppendErrorKind::Refused, e))?;
        // Names are constants and owned values are moved in: one
        // allocation per value, none per name. No `Nats-Msg-Id`: the
        // expected-sequence check already refuses a second write of a
        // command (it can only land where the aggregate has moved on),
        // and the command's id in the history tells a resend apart, also
        // after any dedupe window; the server's dedupe map would only
        // cost memory and time per event. No `Event-Time` either: the
        // event is stored as it is decided, and JetStream stamps it.
        // `Event-Version` only when it is not 1, which its absence means:
        // most events never leave version 1, and a fourth header costs
        // every append a regrown map and the store 18 bytes per event.
        let mut h = HeaderMap::new();
        h.insert(crate::header_names::COMMAND_ID.clone(), meta.command_id);
        if meta.event_version != 1 {
            h.insert(
                crate::header_names::EVENT_VERSION.clone(),
                HeaderValue::from(meta.event_version.to_string()),
            );
        }
        if let Some(id) = meta.correlation_id {
            h.insert(crate::header_names::CORRELATION_ID.clone(), id);
        }
        if let Some(id) = meta.causation_id {
            h.insert(crate::header_names::CAUSATION_ID.clone(), id);
        }
        if let Some(parent) = &meta.traceparent {
            h.insert(crate::header_names::TRACEPARENT.clone(), parent.as_str());
        }
        if let Some(filter) = filter.take() {
            h.insert(
                crate::header_names::EXPECTED_LAST_SUBJECT_SEQUENCE.clone(),
                HeaderValue::from(expected.to_string()),
            );
            h.insert(
                crate::header_names::EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT.clone(),
                HeaderValue::from(filter),
            );
        }
        messages.push(Outgoing {
            subject,
            headers: h,
            body: event.body.clone(),
        });
    }
    Ok(())
}
