//! A delivered message as a trigger: an event decoded into the inputs it
//! reads as, each routed to its instance, or a fired deadline routed by its
//! subject, with what tells a stale one.

use crate::command_id::Cause;
use crate::deadlines::{self, format_at, parse_at};
use crate::error::{ProcessError, ProcessErrorKind};
use crate::instance::Instance;
use crate::manager::{Fired, ForgottenAggregate, ProcessManager, Trigger};
use async_nats::jetstream::{self};
use jetsource_projector::typed::Follows;
use jetsource_projector::Event;
use jetsource_schemas::error::Error;
use jetsource_schemas::forgotten::{self, ForgottenNotice};
use jetsource_schemas::token;
use jetsource_schemas::trace::{self, TraceParent};
use std::collections::BTreeMap;
use tracing::Instrument;

use super::apply::{apply, Position};
use super::{corrupt, Context};

/// An event: decoded into the inputs it reads as, each routed to its
/// instance.
pub(super) async fn on_event<M: ProcessManager>(
    context: &Context<M>,
    message: &jetstream::Message,
) -> Result<(), ProcessError> {
    let event = to_event(context, message)?;
    react_to_event(context, event, false).await
}

/// A stored event's inputs, each reacted to by its instance. `replay`: a
/// parked trigger applied again, refused (kind `Stale`) for an instance
/// that has reacted to a later event of the stream since, which it would
/// otherwise count as applied.
pub(super) async fn react_to_event<M: ProcessManager>(
    context: &Context<M>,
    event: Event,
    replay: bool,
) -> Result<(), ProcessError> {
    // Retried: a key that cannot be read now may be read in a moment.
    let event = context
        .keys
        .reveal(event)
        .await
        .map_err(|e| Error::with_source(ProcessErrorKind::JetStream, e))?;
    let inputs = M::Input::decode_all(&event)
        .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?
        .unwrap_or_default();
    for (part, input) in inputs.into_iter().enumerate() {
        let Some(key) = context.manager.key(&input) else {
            continue;
        };
        let position = Position {
            stream: &event.stream,
            seq: event.seq,
            part,
        };
        let cause = Cause::Event {
            stream: &event.stream,
            seq: event.seq,
            part,
        };
        // The commands it leads to were caused by the event's command, and
        // carry on its correlation unless they name their own.
        // (A header written by hand past the handlers may not be a token:
        // such a one is not passed on.)
        let token = |v: &&str| token::validate("id", v).is_ok();
        // The reaction continues the event's trace, and its commands
        // carry it on.
        let parent = event
            .header(trace::TRACEPARENT)
            .and_then(TraceParent::parse);
        let span = tracing::debug_span!(
            "react",
            manager = context.names.name(),
            key = %key,
            stream = %event.stream,
            seq = event.seq,
        );
        trace::continue_from(&span, parent.as_ref());
        if replay {
            super::apply::refuse_if_past(context, &key, &position).await?;
        }
        let lineage = Lineage {
            causation: event.command_id().filter(token),
            correlation: event
                .header(jetsource_schemas::headers::CORRELATION_ID)
                .filter(token),
            trace: trace::outgoing(&span, parent.as_ref()),
        };
        apply(
            context,
            &key,
            &position,
            &cause,
            None,
            &lineage,
            Trigger::Event(input),
        )
        .instrument(span)
        .await?;
    }
    Ok(())
}

/// A forgotten notice (see [`jetsource_schemas::forgotten`]): told to each
/// instance the manager names, as one trigger each.
pub(super) async fn on_forgotten<M: ProcessManager>(
    context: &Context<M>,
    message: &jetstream::Message,
) -> Result<(), ProcessError> {
    let notice: ForgottenNotice = serde_json::from_slice(&message.payload)
        .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?;
    let named = token::validate("aggregate type", &notice.aggregate_type)
        .and_then(|()| token::validate("aggregate id", &notice.aggregate_id));
    // A notice is trusted only on its own subject: one written by hand
    // elsewhere in the stream names nothing.
    if named.is_err()
        || message.subject.as_str()
            != forgotten::subject(
                &context.config.namespace,
                &notice.aggregate_type,
                &notice.aggregate_id,
            )
    {
        return Err(corrupt(format!(
            "{} is not a forgotten notice on its own subject",
            message.subject
        )));
    }
    let info = message
        .info()
        .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?;
    let keys = context
        .manager
        .forgotten(&notice.aggregate_type, &notice.aggregate_id);
    for (part, key) in keys.iter().enumerate() {
        let position = Position {
            stream: info.stream,
            seq: info.stream_sequence,
            part,
        };
        let cause = Cause::Event {
            stream: info.stream,
            seq: info.stream_sequence,
            part,
        };
        let forgotten = ForgottenAggregate {
            aggregate_type: notice.aggregate_type.clone(),
            aggregate_id: notice.aggregate_id.clone(),
        };
        apply(
            context,
            key,
            &position,
            &cause,
            None,
            &Lineage::default(),
            Trigger::Forgotten(forgotten),
        )
        .await?;
    }
    Ok(())
}

/// A fired deadline: routed by its subject.
pub(super) async fn on_deadline<M: ProcessManager>(
    context: &Context<M>,
    message: &jetstream::Message,
) -> Result<(), ProcessError> {
    let (key, name) = context
        .names
        .parse_fired(message.subject.as_str())
        .ok_or_else(|| corrupt(format!("{} is not a fired deadline", message.subject)))?;
    let body: deadlines::Body = serde_json::from_slice(&message.payload)
        .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?;
    let info = message
        .info()
        .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?;
    let position = Position {
        stream: info.stream,
        seq: info.stream_sequence,
        part: 0,
    };
    let fired = Fired {
        name: name.to_string(),
        at: parse_at(&body.at)?,
    };
    events_before_reacted_to(context, fired.at).await?;
    // Named by what was set, as written (the entry compares the same
    // string), not by where this firing is stored.
    let at = format_at(fired.at)?;
    let cause = Cause::Deadline { name, at: &at };
    let (stream, seq, part) = &body.set_by;
    let age = time::OffsetDateTime::now_utc() - info.published;
    let origin = Origin {
        set_by: Position {
            stream,
            seq: *seq,
            part: *part,
        },
        young: age < context.config.ack_wait,
    };
    apply(
        context,
        key,
        &position,
        &cause,
        Some(&origin),
        &Lineage::default(),
        Trigger::Deadline(fired),
    )
    .await
}

/// Refuses (for now: the deadline is retried) a deadline of time `at`
/// while an event stored before `at`, in a stream followed, waits to be
/// reacted to.
///
/// Live, a deadline fires after every event stored before its time was
/// reacted to, one at a time: an `unschedule` before the time cancels it.
/// After a restart the deadlines that came while the process was down, and
/// the events it had not reacted to yet, wait on two consumers; taken as
/// they come, a deadline could be reacted to before an event stored ahead
/// of it (a withdrawal before the time, and the post is published anyway).
/// So a deadline waits for the events older than itself.
async fn events_before_reacted_to<M: ProcessManager>(
    context: &Context<M>,
    at: time::OffsetDateTime,
) -> Result<(), ProcessError> {
    let durable = context.names.durable();
    let namespace = &context.config.namespace;
    for aggregate_type in M::Input::aggregate_types() {
        let jetstream = |e: async_nats::Error| Error::with_source(ProcessErrorKind::JetStream, e);
        let stream = context
            .js
            .get_stream(namespace.stream_name(aggregate_type))
            .await
            .map_err(|e| jetstream(e.into()))?;
        let info = stream
            .consumer_info(&durable)
            .await
            .map_err(|e| jetstream(e.into()))?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            continue;
        }
        let filter = namespace
            .type_filter(aggregate_type)
            .map_err(|e| Error::with_source(ProcessErrorKind::InvalidName, e))?;
        // The first event not reacted to yet (in hand, or still to come).
        let next = stream
            .direct_get_next_for_subject(filter, Some(info.ack_floor.stream_sequence + 1))
            .await
            .map_err(|e| jetstream(e.into()))?;
        if next.time <= at {
            return Err(Error::new(
                ProcessErrorKind::Early,
                format!(
                    "an event stored before the deadline ({} #{}) is not reacted to yet",
                    stream.cached_info().config.name,
                    next.sequence
                ),
            ));
        }
    }
    Ok(())
}

/// The `Causation-Id`, `Correlation-Id` and trace a trigger's commands
/// inherit.
#[derive(Default)]
pub(super) struct Lineage<'a> {
    pub(super) causation: Option<&'a str>,
    pub(super) correlation: Option<&'a str>,
    /// The trace the commands continue.
    pub(super) trace: Option<TraceParent>,
}

/// Where a fired deadline came from.
pub(super) struct Origin<'a> {
    /// The trigger whose reaction set it.
    pub(super) set_by: Position<'a>,
    /// Fired less than an ack wait ago: the reaction that set it may still
    /// be about to record it.
    pub(super) young: bool,
}

/// Whether fired deadline `fired` is stale: not pending (cancelled, moved,
/// or its instance ended) once the reaction that set it is recorded.
/// `Err` (retried) while that reaction may still be recording it; after an
/// ack wait it is stale anyway, since a reaction that failed before
/// recording is redone and sets its deadlines again.
pub(super) fn stale<S>(
    instance: Option<&Instance<S>>,
    ended: bool,
    fired: &Fired,
    at: &str,
    origin: &Origin<'_>,
) -> Result<bool, ProcessError> {
    let pending = instance.and_then(|i| i.deadlines.get(&fired.name));
    if pending.map(String::as_str) == Some(at) {
        return Ok(false);
    }
    let recorded = match instance {
        Some(i) => i.has_applied(origin.set_by.stream, origin.set_by.seq, origin.set_by.part),
        // An instance that ended recorded everything it set.
        None => ended,
    };
    if recorded || !origin.young {
        return Ok(true);
    }
    Err(Error::new(
        ProcessErrorKind::Conflict,
        format!(
            "deadline {} fired before the reaction that set it was recorded",
            fired.name
        ),
    ))
}

/// The event stored at `seq` of `stream` (a parked trigger's), read again.
pub(super) async fn stored_event<M: ProcessManager>(
    context: &Context<M>,
    stream: &str,
    seq: u64,
) -> Result<Event, ProcessError> {
    let jetstream = |e: async_nats::Error| Error::with_source(ProcessErrorKind::JetStream, e);
    let raw = context
        .js
        .get_stream(stream)
        .await
        .map_err(|e| jetstream(e.into()))?
        .get_raw_message(seq)
        .await
        .map_err(|e| jetstream(e.into()))?;
    let mut headers = BTreeMap::new();
    for (name, values) in raw.headers.iter() {
        if let Some(value) = values.first() {
            headers.insert(name.to_string(), value.as_str().to_string());
        }
    }
    let stored_at = raw
        .time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Event::from_parts(
        &context.config.namespace,
        raw.subject.to_string(),
        stream.to_string(),
        raw.sequence,
        stored_at,
        headers,
        raw.payload.clone(),
    )
    .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))
}

/// The stored event a consumer delivered.
fn to_event<M: ProcessManager>(
    context: &Context<M>,
    message: &jetstream::Message,
) -> Result<Event, ProcessError> {
    let info = message
        .info()
        .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?;
    let mut headers = BTreeMap::new();
    for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
        if let Some(value) = values.first() {
            headers.insert(name.to_string(), value.as_str().to_string());
        }
    }
    let stored_at = info
        .published
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Event::from_parts(
        &context.config.namespace,
        message.subject.to_string(),
        info.stream.to_string(),
        info.stream_sequence,
        stored_at,
        headers,
        message.payload.clone(),
    )
    .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = "2026-01-01T10:00:00Z";

    fn fired() -> Fired {
        Fired {
            name: "publish".into(),
            at: parse_at(AT).expect("a time"),
        }
    }

    fn origin(young: bool) -> Origin<'static> {
        Origin {
            set_by: Position {
                stream: "EVT_BLOGPOST",
                seq: 4,
                part: 0,
            },
            young,
        }
    }

    fn instance(applied_to: u64, pending: Option<&str>) -> Instance<()> {
        Instance {
            state: (),
            applied: BTreeMap::from([("EVT_BLOGPOST".to_string(), (applied_to, 0))]),
            deadlines: pending
                .map(|at| BTreeMap::from([("publish".to_string(), at.to_string())]))
                .unwrap_or_default(),
        }
    }

    #[test]
    fn a_pending_deadline_fires_and_one_not_pending_is_stale_once_its_setting_is_recorded() {
        let fires = |i: Option<&Instance<()>>, ended, young| {
            stale(i, ended, &fired(), AT, &origin(young)).map(|stale| !stale)
        };
        assert!(fires(Some(&instance(4, Some(AT))), false, true).expect("decided"));
        // Cancelled, or moved to another time, after the setting was recorded.
        assert!(!fires(Some(&instance(4, None)), false, true).expect("decided"));
        assert!(!fires(
            Some(&instance(9, Some("2026-01-01T11:00:00Z"))),
            false,
            true
        )
        .expect("decided"));
        // Its instance ended.
        assert!(!fires(None, true, true).expect("decided"));
    }

    #[test]
    fn a_deadline_fired_before_its_setting_is_recorded_waits_for_it_until_an_ack_wait() {
        for instance in [None, Some(instance(3, None))] {
            let early = stale(instance.as_ref(), false, &fired(), AT, &origin(true));
            assert_eq!(early.map_err(|e| e.kind()), Err(ProcessErrorKind::Conflict));
            // A setting that failed before recording is redone, and sets
            // it again: this one is dropped.
            let late = stale(instance.as_ref(), false, &fired(), AT, &origin(false));
            assert_eq!(late.map_err(|e| e.kind()), Ok(true));
        }
    }
}
