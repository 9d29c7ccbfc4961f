//! Operating persisted projections: the control bucket, the active
//! generation pointer, the control subjects the active instance serves, and
//! the client side of `rebuild` and `replay-parked`.
//!
//! One KV bucket, [`CONTROL_BUCKET`], holds per projection `<name>`:
//! - `<name>.generation`: `{"generation":N}`, the generation queries read
//!   (absent: 0);
//! - `<name>.lease`: the active instance's lease (see [`crate::lease`]);
//! - `<name>.parked.<stream>.<seq>`: parked events (see [`crate::parked`]).
//!
//! Generation 0 uses the bucket `projection_<name>` and the consumers
//! `projector_<name>`; generation N > 0 adds `_g<N>` to both.
//!
//! Under a subject prefix the buckets are renamed as
//! [`Namespace::bucket`] says and the control subjects start with
//! `<prefix>.`; consumer names stay, as they are scoped by their stream.
//! The functions without `_in` are the unprefixed forms.

use crate::error::{ProjectionError, ProjectionErrorKind};
use async_nats::jetstream::{self, kv};
use async_nats::Client;
use futures::StreamExt;
use jetsource_schemas::error::Error;
use jetsource_schemas::Namespace;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The KV bucket of generation pointers, leases and parked events.
pub const CONTROL_BUCKET: &str = "jetsource_projectors";

/// The root of control subjects: `projector.<name>.rebuild`,
/// `projector.<name>.replay-parked`.
pub const CONTROL_ROOT: &str = "projector";

/// The request subject starting a rebuild of `name`.
pub fn rebuild_subject(name: &str) -> String {
    format!("{CONTROL_ROOT}.{name}.rebuild")
}

/// The request subject replaying the parked events of `name`.
pub fn replay_parked_subject(name: &str) -> String {
    format!("{CONTROL_ROOT}.{name}.replay-parked")
}

/// The request subject skipping a parked event of `name`.
pub fn skip_parked_subject(name: &str) -> String {
    format!("{CONTROL_ROOT}.{name}.skip-parked")
}

/// Every control subject of `name` in `namespace`:
/// `<prefix>.projector.<name>.*`.
pub fn control_filter(namespace: &Namespace, name: &str) -> String {
    namespace.subject(format_args!("{CONTROL_ROOT}.{name}.*"))
}

/// The control bucket in `namespace`.
pub fn control_bucket(namespace: &Namespace) -> String {
    namespace.bucket(CONTROL_BUCKET)
}

/// The bucket of generation `generation` of projection `name`.
pub fn generation_bucket(name: &str, generation: u64) -> String {
    match generation {
        0 => format!("projection_{name}"),
        g => format!("projection_{name}_g{g}"),
    }
}

/// The durable consumer of generation `generation` of projection `name`.
pub fn generation_consumer(name: &str, generation: u64) -> String {
    match generation {
        0 => format!("projector_{name}"),
        g => format!("projector_{name}_g{g}"),
    }
}

pub(crate) fn generation_key(name: &str) -> String {
    format!("{name}.generation")
}

#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    generation: u64,
}

/// Opens (creating when missing) the control bucket of `namespace`.
pub(crate) async fn open_bucket(
    js: &jetstream::Context,
    namespace: &Namespace,
) -> Result<kv::Store, ProjectionError> {
    js.create_or_update_key_value(kv::Config {
        bucket: control_bucket(namespace),
        description: "projector generations, leases and parked events".into(),
        history: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))
}

/// The generation of `name` that queries read (0 when none was recorded).
pub async fn active_generation(control: &kv::Store, name: &str) -> Result<u64, ProjectionError> {
    let value = control
        .get(generation_key(name))
        .await
        .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
    match value {
        None => Ok(0),
        Some(bytes) => serde_json::from_slice::<Pointer>(&bytes)
            .map(|p| p.generation)
            .map_err(|e| {
                Error::with_message_and_source(
                    ProjectionErrorKind::Store,
                    format!("{name}: the generation pointer does not decode"),
                    e,
                )
            }),
    }
}

pub(crate) async fn set_generation(
    control: &kv::Store,
    name: &str,
    generation: u64,
) -> Result<(), ProjectionError> {
    let value = serde_json::to_vec(&Pointer { generation })
        .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
    control
        .put(generation_key(name), value.into())
        .await
        .map(|_| ())
        .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))
}

/// One message of a rebuild's answer stream, on the requester's inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RebuildUpdate {
    /// The new generation's consumers exist; `total` events are to replay.
    Started {
        /// The generation being built.
        generation: u64,
        /// Events to replay, as the consumers counted them at the start.
        total: u64,
    },
    /// Events replayed so far (sent a few times a second).
    Progress {
        /// Events applied to the new generation.
        done: u64,
        /// Events to replay (grows when events arrive meanwhile).
        total: u64,
        /// Time since the start, in milliseconds.
        elapsed_ms: u64,
    },
    /// Queries now read the new generation; the old one is removed.
    Done {
        /// The generation now active.
        generation: u64,
        /// Events applied to build it.
        events: u64,
        /// Time taken, in milliseconds.
        elapsed_ms: u64,
        /// The positions it had applied when queries switched to it.
        positions: crate::Positions,
    },
    /// The rebuild did not start or was abandoned; the old generation
    /// still serves.
    Failed {
        /// Why.
        reason: String,
    },
}

/// The answer to `replay-parked`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySummary {
    /// Parked events applied now (and removed from the parked store).
    pub applied: u64,
    /// Parked events the read model already held (applied after a restart,
    /// or by an earlier replay); removed without applying them again.
    pub already_applied: u64,
    /// Parked events that failed again, with why; they stay parked.
    pub failed: Vec<String>,
    /// Parked events left for later because an earlier one of the same
    /// stream failed.
    pub waiting: u64,
    /// Failures past the first [`MAX_FAILURES_LISTED`], counted only.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_not_listed: u64,
}

/// The most failures a replay's answer lists, each at most
/// [`jetsource_schemas::reply::MAX_REASON_BYTES`]: the answer stays far
/// below `max_payload` however many parked events fail again.
pub const MAX_FAILURES_LISTED: usize = 100;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ReplaySummary {
    /// Records one failure: listed (bounded) among the first
    /// [`MAX_FAILURES_LISTED`], counted after.
    pub fn fail(&mut self, why: impl Into<String>) {
        if self.failed.len() < MAX_FAILURES_LISTED {
            self.failed
                .push(jetsource_schemas::reply::bounded_reason(why.into()));
        } else {
            self.failed_not_listed += 1;
        }
    }

    /// Whether every parked event was applied or already held.
    pub fn all_done(&self) -> bool {
        self.failed.is_empty() && self.failed_not_listed == 0
    }
}

/// The answer to `skip-parked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SkipOutcome {
    /// Given up on: the read model goes on without it, and the record is
    /// gone.
    Skipped,
    /// The read model already held it (applied by a replay or after a
    /// restart); its record is gone.
    AlreadyApplied,
    /// No such parked event.
    NotParked,
    /// Not skipped, and why (events before it not applied yet, the
    /// checkpoint not stored).
    Refused {
        /// Why.
        reason: String,
    },
}

/// Which parked event `skip-parked` gives up on: the body of its request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipRequest {
    /// Its stream.
    pub stream: String,
    /// Its stream sequence.
    pub seq: u64,
}

/// What went wrong operating a projection from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlErrorKind {
    /// The name is not a valid projection name.
    BadName,
    /// No active instance of the projection answered.
    NoAnswer,
    /// NATS failed, or the answer did not decode.
    Nats,
    /// The active instance refused or abandoned the request.
    Failed,
}

impl std::fmt::Display for ControlErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ControlErrorKind::BadName => "invalid projection name",
            ControlErrorKind::NoAnswer => "no active instance answered",
            ControlErrorKind::Nats => "NATS failure",
            ControlErrorKind::Failed => "refused",
        })
    }
}

/// A client-side control failure.
pub type ControlError = Error<ControlErrorKind>;

/// Asks the active instance of `name` to rebuild it, calling `progress`
/// with every update until the switch; returns the final `Done`.
/// `silence` bounds the wait for each update. (No subject prefix; see
/// [`rebuild_in`].)
pub async fn rebuild(
    client: &Client,
    name: &str,
    silence: Duration,
    progress: impl FnMut(&RebuildUpdate),
) -> Result<RebuildUpdate, ControlError> {
    rebuild_in(client, &Namespace::default(), name, silence, progress).await
}

/// Like [`rebuild`], for the projection `name` of `namespace`.
pub async fn rebuild_in(
    client: &Client,
    namespace: &Namespace,
    name: &str,
    silence: Duration,
    mut progress: impl FnMut(&RebuildUpdate),
) -> Result<RebuildUpdate, ControlError> {
    crate::position::validate_name(name)
        .map_err(|e| Error::with_source(ControlErrorKind::BadName, e))?;
    let inbox = client.new_inbox();
    let mut updates = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| Error::with_source(ControlErrorKind::Nats, e))?;
    client
        .publish_with_reply(
            namespace.subject(rebuild_subject(name)),
            inbox,
            bytes::Bytes::new(),
        )
        .await
        .map_err(|e| Error::with_source(ControlErrorKind::Nats, e))?;
    loop {
        let message = match tokio::time::timeout(silence, updates.next()).await {
            Ok(Some(message)) => message,
            _ => {
                return Err(Error::new(
                    ControlErrorKind::NoAnswer,
                    format!("no update from projection {name} within {silence:?} (is a `jetsource run` hosting it?)"),
                ))
            }
        };
        let update: RebuildUpdate = serde_json::from_slice(&message.payload)
            .map_err(|e| Error::with_source(ControlErrorKind::Nats, e))?;
        progress(&update);
        match update {
            RebuildUpdate::Done { .. } => return Ok(update),
            RebuildUpdate::Failed { reason } => {
                return Err(Error::new(ControlErrorKind::Failed, reason))
            }
            _ => {}
        }
    }
}

/// Asks the active instance of `name` to apply its parked events again.
/// (No subject prefix; see [`replay_parked_in`].)
pub async fn replay_parked(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<ReplaySummary, ControlError> {
    replay_parked_in(client, &Namespace::default(), name, timeout).await
}

/// Like [`replay_parked`], for the projection `name` of `namespace`.
pub async fn replay_parked_in(
    client: &Client,
    namespace: &Namespace,
    name: &str,
    timeout: Duration,
) -> Result<ReplaySummary, ControlError> {
    crate::position::validate_name(name)
        .map_err(|e| Error::with_source(ControlErrorKind::BadName, e))?;
    let request = async_nats::Request::new().timeout(Some(timeout));
    let reply = client
        .send_request(namespace.subject(replay_parked_subject(name)), request)
        .await
        .map_err(|e| {
            Error::with_message_and_source(
                ControlErrorKind::NoAnswer,
                format!("no answer from projection {name}"),
                e,
            )
        })?;
    serde_json::from_slice(&reply.payload)
        .map_err(|e| Error::with_source(ControlErrorKind::Nats, e))
}

/// Asks the active instance of projection `name` of `namespace` to give up
/// on its parked event `seq` of `stream` (see [`SkipOutcome`]).
pub async fn skip_parked_in(
    client: &Client,
    namespace: &Namespace,
    name: &str,
    parked: &SkipRequest,
    timeout: Duration,
) -> Result<SkipOutcome, ControlError> {
    crate::position::validate_name(name)
        .map_err(|e| Error::with_source(ControlErrorKind::BadName, e))?;
    let body =
        serde_json::to_vec(parked).map_err(|e| Error::with_source(ControlErrorKind::Nats, e))?;
    let request = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(timeout));
    let reply = client
        .send_request(namespace.subject(skip_parked_subject(name)), request)
        .await
        .map_err(|e| {
            Error::with_message_and_source(
                ControlErrorKind::NoAnswer,
                format!("no answer from projection {name}"),
                e,
            )
        })?;
    serde_json::from_slice(&reply.payload)
        .map_err(|e| Error::with_source(ControlErrorKind::Nats, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_answer_lists_a_bounded_number_of_bounded_failures() {
        let mut summary = ReplaySummary::default();
        assert!(summary.all_done());
        for _ in 0..MAX_FAILURES_LISTED + 5 {
            summary.fail("x".repeat(10_000));
        }
        assert_eq!(summary.failed.len(), MAX_FAILURES_LISTED);
        assert_eq!(summary.failed_not_listed, 5);
        assert!(summary
            .failed
            .iter()
            .all(|f| f.len() <= jetsource_schemas::reply::MAX_REASON_BYTES + 64));
        assert!(!summary.all_done());
        let text = serde_json::to_string(&ReplaySummary::default()).expect("encodes");
        assert_eq!(
            text,
            r#"{"applied":0,"already_applied":0,"failed":[],"waiting":0}"#
        );
    }
}
