//! One trigger of one instance: read its entry, react, send the commands,
//! set and cancel the deadlines, write the entry by compare-and-set.

use crate::command_id::{command_id_at, Cause};
use crate::deadlines::{self, format_at};
use crate::error::{ProcessError, ProcessErrorKind};
use crate::instance::{Ended, Instance};
use crate::manager::{ProcessManager, Reaction, Refused, Trigger};
use async_nats::jetstream::kv;
use jetsource_schemas::error::Error;
use jetsource_schemas::token;
use std::collections::BTreeMap;
use tracing::{debug, info};

use super::send::send;
use super::trigger::{stale, Lineage, Origin};
use super::Context;

/// Where a trigger is stored: what the instance's entry records as
/// applied.
pub(super) struct Position<'a> {
    pub(super) stream: &'a str,
    pub(super) seq: u64,
    pub(super) part: usize,
}

/// One trigger of instance `key`: react, carry the reaction out, record it.
pub(super) async fn apply<M: ProcessManager>(
    context: &Context<M>,
    key: &str,
    position: &Position<'_>,
    cause: &Cause<'_>,
    origin: Option<&Origin<'_>>,
    lineage: &Lineage<'_>,
    trigger: Trigger<M::Input>,
) -> Result<(), ProcessError> {
    let manager = context.names.name();
    token::validate("instance key", key)
        .map_err(|e| Error::with_source(ProcessErrorKind::InvalidName, e))?;
    let (instance, revision, ended) = load(context, key).await?;
    let done = match (&instance, &ended) {
        (Some(instance), _) => instance.has_applied(position.stream, position.seq, position.part),
        (None, Some(ended)) => ended.has_applied(position.stream, position.seq, position.part),
        (None, None) => false,
    };
    if done {
        debug!(
            manager,
            key,
            stream = position.stream,
            seq = position.seq,
            "already applied"
        );
        return Ok(());
    }
    if let (Trigger::Deadline(fired), Some(origin)) = (&trigger, origin) {
        // Only the deadline as last set counts: one cancelled, moved, or
        // of an instance that ended since it was set is stale.
        let ended = instance.is_none() && revision.is_some();
        if stale(
            instance.as_ref(),
            ended,
            fired,
            &format_at(fired.at)?,
            origin,
        )? {
            debug!(manager, key, deadline = %fired.name, "stale deadline");
            return Ok(());
        }
    }
    // An instance started again after an end keeps what it had applied.
    let (state, mut applied, mut pending) = match instance {
        Some(i) => (Some(i.state), i.applied, i.deadlines),
        None => (
            None,
            ended.map(|e| e.applied).unwrap_or_default(),
            BTreeMap::new(),
        ),
    };
    if let Trigger::Deadline(fired) = &trigger {
        pending.remove(&fired.name);
    }

    let reaction = context.manager.react(state, trigger);
    // Check every name before doing anything, so a bad one leaves nothing
    // half done.
    let (mut state, commands, mut changes) = checked(reaction)?;
    let (mut sent, mut set, mut cancelled) = (commands.len(), 0, 0);
    for (index, command) in commands.iter().enumerate() {
        let id = command_id_at(manager, key, cause, &[index]);
        let Some(refused) = send(context, key, &id, lineage, command).await? else {
            continue;
        };
        // A refusal is the instance's to react to, at once, from the state
        // reached; what that reaction sends is not reacted to again (a
        // refusal of it is logged).
        let trigger = Trigger::Refused(Refused {
            command: command.clone(),
            refusal: refused.0,
            reason: refused.1,
        });
        let (next, follow_ups, more) = checked(context.manager.react(state.take(), trigger))?;
        state = next;
        changes.extend(more);
        sent += follow_ups.len();
        for (then, command) in follow_ups.iter().enumerate() {
            let id = command_id_at(manager, key, cause, &[index, then]);
            send(context, key, &id, lineage, command).await?;
        }
    }
    let now = time::OffsetDateTime::now_utc();
    for change in changes {
        match change {
            Change::Cancel(name) => {
                deadlines::cancel(&context.deadlines, &context.names, key, &name).await?;
                pending.remove(&name);
                cancelled += 1;
            }
            Change::Set(name, at) => {
                deadlines::set(
                    &context.js,
                    &context.deadlines,
                    &context.names,
                    key,
                    &name,
                    &at,
                    (position.stream.to_string(), position.seq, position.part),
                    now,
                )
                .await?;
                pending.insert(name, at);
                set += 1;
            }
        }
    }
    applied.insert(position.stream.to_string(), (position.seq, position.part));

    let ended = state.is_none();
    match state {
        Some(state) => {
            let instance = Instance {
                state,
                applied,
                deadlines: pending,
            };
            // Encoded here: a state need not be `Sync` to be held across
            // the write.
            let value = serde_json::to_vec(&instance)
                .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?;
            store(context, key, value, revision).await?;
        }
        None => {
            for name in pending.keys() {
                deadlines::cancel(&context.deadlines, &context.names, key, name).await?;
            }
            // An instance never written leaves nothing: a redelivery of
            // its one trigger decides the same, with the same command ids.
            if let Some(revision) = revision {
                end(context, key, applied, revision).await?;
            }
        }
    }
    info!(
        manager,
        key,
        stream = position.stream,
        seq = position.seq,
        commands = sent,
        set,
        cancelled,
        ended,
        "reacted"
    );
    Ok(())
}

/// A change to an instance's deadlines, in the order decided.
enum Change {
    Cancel(String),
    Set(String, String),
}

/// A reaction's parts once every name in it is checked: its state, its
/// commands, and its deadline changes (cancellations first, as a reaction
/// that cancels and sets one name moves it).
#[allow(clippy::type_complexity)]
fn checked<S>(
    reaction: Reaction<S>,
) -> Result<(Option<S>, Vec<crate::manager::Command>, Vec<Change>), ProcessError> {
    let invalid = |e| Error::with_source(ProcessErrorKind::InvalidName, e);
    let Reaction {
        state,
        commands,
        set,
        cancel,
    } = reaction;
    let mut changes = Vec::with_capacity(cancel.len() + set.len());
    for name in cancel {
        token::validate("deadline", &name).map_err(invalid)?;
        changes.push(Change::Cancel(name));
    }
    for deadline in set {
        token::validate("deadline", &deadline.name).map_err(invalid)?;
        let at = format_at(deadline.at)?;
        changes.push(Change::Set(deadline.name, at));
    }
    for command in &commands {
        for (what, value) in [
            ("aggregate type", &command.aggregate_type),
            ("aggregate id", &command.aggregate_id),
            ("command", &command.command),
        ] {
            token::validate(what, value).map_err(invalid)?;
        }
        if let Some(id) = &command.correlation_id {
            token::validate("Correlation-Id", id).map_err(invalid)?;
        }
    }
    Ok((state, commands, changes))
}

async fn store<M: ProcessManager>(
    context: &Context<M>,
    key: &str,
    value: Vec<u8>,
    revision: Option<u64>,
) -> Result<(), ProcessError> {
    let written = match revision {
        Some(revision) => context
            .kv
            .update(key, value.into(), revision)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => {
                    Error::with_source(ProcessErrorKind::Conflict, e)
                }
                _ => Error::with_source(ProcessErrorKind::JetStream, e),
            }),
        None => context
            .kv
            .create(key, value.into())
            .await
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => {
                    Error::with_source(ProcessErrorKind::Conflict, e)
                }
                _ => Error::with_source(ProcessErrorKind::JetStream, e),
            }),
    };
    written.map(|_| ())
}

/// Ends instance `key`'s entry at `revision`: purges its history, leaving
/// one marker whose body is what it had applied ([`Ended`]).
async fn end<M: ProcessManager>(
    context: &Context<M>,
    key: &str,
    applied: BTreeMap<String, (u64, usize)>,
    revision: u64,
) -> Result<(), ProcessError> {
    let body = serde_json::to_vec(&Ended { applied })
        .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?;
    let kv = &context.kv;
    let subject = format!("{}{key}", kv.put_prefix.as_ref().unwrap_or(&kv.prefix));
    // What `kv::Store::purge_expect_revision` sends, with a body.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("KV-Operation", "PURGE");
    headers.insert("Nats-Rollup", "sub");
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        revision.to_string().as_str(),
    );
    let ack = context
        .js
        .publish_with_headers(subject, headers, body.into())
        .await
        .map_err(|e| Error::with_source(ProcessErrorKind::JetStream, e))?;
    ack.await.map(|_| ()).map_err(|e| {
        // Refused: the entry changed since it was read.
        Error::with_source(ProcessErrorKind::Conflict, e)
    })
}

/// Reads instance `key`'s entry: the instance (none when never started or
/// ended), the entry's revision to write against (none when the key was
/// never written) and, for an ended one, what it had applied.
#[allow(clippy::type_complexity)]
/// Refuses (kind `Stale`) a replayed trigger at `position` of instance
/// `key` when the instance has reacted to a later trigger of the same
/// stream: it records one position per stream, and would take this one
/// as applied.
pub(super) async fn refuse_if_past<M: ProcessManager>(
    context: &Context<M>,
    key: &str,
    position: &Position<'_>,
) -> Result<(), ProcessError> {
    let (instance, _, ended) = load(context, key).await?;
    let applied = match (&instance, &ended) {
        (Some(i), _) => i.applied.get(position.stream).copied(),
        (None, Some(e)) => e.applied.get(position.stream).copied(),
        (None, None) => None,
    };
    match applied {
        Some(last) if last >= (position.seq, position.part) => Err(Error::new(
            ProcessErrorKind::Stale,
            format!(
                "instance {key} has reacted to {} #{} since: replaying #{} would reorder it",
                position.stream, last.0, position.seq
            ),
        )),
        _ => Ok(()),
    }
}

async fn load<M: ProcessManager>(
    context: &Context<M>,
    key: &str,
) -> Result<(Option<Instance<M::State>>, Option<u64>, Option<Ended>), ProcessError> {
    let entry = context
        .kv
        .entry(key)
        .await
        .map_err(|e| Error::with_source(ProcessErrorKind::JetStream, e))?;
    let Some(entry) = entry else {
        return Ok((None, None, None));
    };
    if entry.operation != kv::Operation::Put {
        // A marker with no body (a delete, or one written by hand) says
        // nothing was applied.
        let ended = serde_json::from_slice(&entry.value).unwrap_or_default();
        return Ok((None, Some(entry.revision), Some(ended)));
    }
    let instance = serde_json::from_slice(&entry.value).map_err(|e| {
        Error::with_message_and_source(
            ProcessErrorKind::Corrupt,
            format!("instance {key} of {}", context.names.name()),
            e,
        )
    })?;
    Ok((Some(instance), Some(entry.revision), None))
}
