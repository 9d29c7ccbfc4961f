//! Durable deadlines on JetStream message schedules (ADR-51).
//!
//! A deadline is a message held on `pm.<name>.deadline.<key>.<deadline>`
//! of the manager's deadlines stream (`allow_msg_schedules`), with
//! `Nats-Schedule: @at <RFC 3339>` and `Nats-Schedule-Target:
//! pm.<name>.fired.<key>.<deadline>`, a subject of the same stream (the
//! server requires it). At the time the server publishes the held body to
//! the target and removes the held message; the manager's consumer of the
//! fired subjects reads it as a [`Trigger::Deadline`](crate::Trigger).
//! Publishing again on the held subject moves the deadline (the last
//! message on a subject is its schedule); purging the subject cancels it.

use crate::error::{ProcessError, ProcessErrorKind};
use crate::names::Names;
use async_nats::jetstream::{self, stream};
use jetsource_schemas::error::Error;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The body of a held and of a fired deadline.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Body {
    /// The time it was set for, RFC 3339 UTC: the instance's entry holds
    /// the same string, so a fired deadline that was moved or cancelled
    /// since is recognised as stale.
    pub(crate) at: String,
    /// The trigger whose reaction set it: stream, sequence, part. A
    /// deadline that fires before that reaction is recorded (one due at
    /// once) is told apart from a stale one by it.
    pub(crate) set_by: (String, u64, usize),
}

/// `at` as the runtime writes and compares it: RFC 3339 in UTC.
pub(crate) fn format_at(at: OffsetDateTime) -> Result<String, ProcessError> {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| Error::with_source(ProcessErrorKind::InvalidName, e))
}

/// Reads back [`format_at`].
pub(crate) fn parse_at(at: &str) -> Result<OffsetDateTime, ProcessError> {
    OffsetDateTime::parse(at, &Rfc3339)
        .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))
}

fn jetstream_error(e: impl Into<async_nats::Error>) -> ProcessError {
    Error::with_source(ProcessErrorKind::JetStream, e.into())
}

/// The manager's deadlines stream, created when missing.
pub(crate) async fn open_stream(
    js: &jetstream::Context,
    names: &Names,
) -> Result<stream::Stream, ProcessError> {
    js.get_or_create_stream(stream::Config {
        name: names.deadlines_stream(),
        subjects: vec![names.scheduled_filter(), names.fired_filter()],
        allow_message_schedules: true,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(jetstream_error)
}

/// Sets (or moves) deadline `deadline` of instance `key` to `at`. A time
/// already past is published as fired at once, and its held message
/// purged, rather than relying on what the server does with an `@at` in
/// the past.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn set(
    js: &jetstream::Context,
    stream: &stream::Stream,
    names: &Names,
    key: &str,
    deadline: &str,
    at: &str,
    set_by: (String, u64, usize),
    now: OffsetDateTime,
) -> Result<(), ProcessError> {
    let body = serde_json::to_vec(&Body {
        at: at.to_string(),
        set_by,
    })
    .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?;
    let fired = names.fired(key, deadline);
    if parse_at(at)? <= now {
        cancel(stream, names, key, deadline).await?;
        js.publish(fired, body.into())
            .await
            .map_err(jetstream_error)?
            .await
            .map_err(jetstream_error)?;
        return Ok(());
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Schedule", format!("@at {at}").as_str());
    headers.insert("Nats-Schedule-Target", fired.as_str());
    js.publish_with_headers(names.scheduled(key, deadline), headers, body.into())
        .await
        .map_err(jetstream_error)?
        .await
        .map_err(jetstream_error)?;
    Ok(())
}

/// Cancels deadline `deadline` of instance `key`: its held message is
/// purged. One not set (or already fired) is no error.
pub(crate) async fn cancel(
    stream: &stream::Stream,
    names: &Names,
    key: &str,
    deadline: &str,
) -> Result<(), ProcessError> {
    stream
        .purge()
        .filter(names.scheduled(key, deadline))
        .await
        .map_err(jetstream_error)?;
    Ok(())
}
