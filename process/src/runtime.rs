//! Running a process manager: a durable consumer per followed event
//! stream and one on its fired deadlines, each taking one trigger at a
//! time; per trigger, the instance's entry is read, `react` decides, the
//! commands are sent, the deadlines set and cancelled, and the entry is
//! written (compare-and-set on its revision) before the trigger is acked.
//!
//! Every step before the write is idempotent, so a crash anywhere repeats
//! them: the commands go out again with the same `Command-Id`s (the
//! handlers answer a repeat as a duplicate and append nothing), a deadline
//! set again replaces itself, a cancelled one is purged again. A trigger at
//! or before the entry's recorded position is acked without reacting.

use crate::command_id::{command_id_at, Cause};
use crate::config::ProcessConfig;
use crate::deadlines::{self, format_at, parse_at};
use crate::error::{ProcessError, ProcessErrorKind};
use crate::instance::Instance;
use crate::manager::{Fired, ProcessManager, Reaction, Refusal, Refused, Trigger};
use crate::names::Names;
use async_nats::jetstream::{self, consumer, kv, stream, AckKind};
use futures::StreamExt;
use jetsource_client::{CommandClient, SendErrorKind, SendOptions};
use jetsource_projector::typed::Follows;
use jetsource_projector::Event;
use jetsource_schemas::error::Error;
use jetsource_schemas::{token, CommandReply, RejectionCode};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// A process manager running in this process.
pub struct RunningProcessManager {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningProcessManager {
    /// Stops taking triggers, finishes the ones in hand, and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stops at once, wherever each consumer is (as a crash would: what
    /// was not acked is redelivered to the next process).
    pub fn abort(self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What every consumer of one manager shares.
struct Context<M: ProcessManager> {
    manager: M,
    names: Names,
    config: ProcessConfig,
    js: jetstream::Context,
    kv: kv::Store,
    deadlines: stream::Stream,
    commands: CommandClient,
}

/// Where a consumer's triggers come from.
#[derive(Clone, Copy)]
enum Source {
    Events,
    Deadlines,
}

/// Starts `manager` on `client`: creates its bucket, its deadlines stream
/// and its durable consumers (the event streams it follows must exist: start
/// it after the command runtime), and returns once they are attached.
pub async fn start<M: ProcessManager>(
    client: async_nats::Client,
    config: ProcessConfig,
    manager: M,
) -> Result<RunningProcessManager, ProcessError> {
    let names = Names::new(config.namespace.clone(), manager.name())
        .map_err(|m| Error::new(ProcessErrorKind::InvalidName, m))?;
    let js = jetstream::new(client.clone());
    let kv = open_bucket(&js, &names.bucket()).await?;
    let deadlines = deadlines::open_stream(&js, &names).await?;
    let commands = CommandClient::new(client)
        .with_namespace(config.namespace.clone())
        .with_timeout(config.command_timeout);

    let mut consumers = Vec::new();
    for aggregate_type in M::Input::aggregate_types() {
        let stream_name = config.namespace.stream_name(aggregate_type);
        let filter = config
            .namespace
            .type_filter(aggregate_type)
            .map_err(|e| Error::with_source(ProcessErrorKind::InvalidName, e))?;
        let stream = js.get_stream(&stream_name).await.map_err(|e| {
            Error::with_message_and_source(
                ProcessErrorKind::JetStream,
                format!("the event stream {stream_name} of {}", names.name()),
                e,
            )
        })?;
        consumers.push((
            durable(&stream, &names, filter, &config).await?,
            Source::Events,
        ));
    }
    consumers.push((
        durable(&deadlines, &names, names.fired_filter(), &config).await?,
        Source::Deadlines,
    ));

    let context = Arc::new(Context {
        manager,
        names,
        config,
        js,
        kv,
        deadlines,
        commands,
    });
    let (stop, stopped) = watch::channel(false);
    let tasks = consumers
        .into_iter()
        .map(|(consumer, source)| {
            tokio::spawn(consume(context.clone(), consumer, source, stopped.clone()))
        })
        .collect();
    Ok(RunningProcessManager { stop, tasks })
}

async fn open_bucket(js: &jetstream::Context, bucket: &str) -> Result<kv::Store, ProcessError> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: bucket.to_string(),
        history: 1,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::with_source(ProcessErrorKind::JetStream, e))
}

/// The manager's durable consumer on `stream`: one trigger in flight at a
/// time, so an instance's triggers from one stream are applied in order.
async fn durable(
    stream: &stream::Stream,
    names: &Names,
    filter: String,
    config: &ProcessConfig,
) -> Result<consumer::PullConsumer, ProcessError> {
    stream
        .get_or_create_consumer(
            &names.durable(),
            consumer::pull::Config {
                durable_name: Some(names.durable()),
                filter_subject: filter,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: 1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| Error::with_source(ProcessErrorKind::JetStream, e))
}

/// One consumer's loop: each trigger is handled until it is done (acked)
/// or found poisonous (terminated, logged), then the next.
async fn consume<M: ProcessManager>(
    context: Arc<Context<M>>,
    consumer: consumer::PullConsumer,
    source: Source,
    mut stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(e) => {
                warn!(manager = context.names.name(), error = %e, "consumer unavailable; retrying");
                pause(&context, &mut stopped).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = stopped.changed() => return,
            };
            match next {
                Some(Ok(message)) => {
                    if !handle_until_done(&context, &message, source, &mut stopped).await {
                        return;
                    }
                }
                Some(Err(e)) => {
                    warn!(manager = context.names.name(), error = %e, "consumer failed; reattaching");
                    break;
                }
                None => break,
            }
        }
    }
}

async fn pause<M: ProcessManager>(context: &Context<M>, stopped: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(context.config.retry_after) => {}
        _ = stopped.changed() => {}
    }
}

/// Handles one trigger, retrying what the infrastructure failed; false
/// when stopped first (the trigger stays unacked and is redelivered).
async fn handle_until_done<M: ProcessManager>(
    context: &Context<M>,
    message: &jetstream::Message,
    source: Source,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        let result = match source {
            Source::Events => on_event(context, message).await,
            Source::Deadlines => on_deadline(context, message).await,
        };
        match result {
            Ok(()) => {
                if let Err(e) = message.double_ack().await {
                    // Not confirmed: it may come again, and is then
                    // recognised by its position.
                    warn!(manager = context.names.name(), subject = %message.subject, error = %e, "ack not confirmed");
                }
                return true;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ProcessErrorKind::Corrupt | ProcessErrorKind::InvalidName
                ) =>
            {
                // Retrying cannot help: this trigger is given up, loudly.
                error!(manager = context.names.name(), subject = %message.subject, error = %e, "trigger given up");
                let _ = message.ack_with(AckKind::Term).await;
                return true;
            }
            Err(e) => {
                warn!(manager = context.names.name(), subject = %message.subject, error = %e, "trigger failed; retrying");
                let _ = message.ack_with(AckKind::Progress).await;
                if *stopped.borrow() {
                    return false;
                }
                pause(context, stopped).await;
                if *stopped.borrow() {
                    return false;
                }
            }
        }
    }
}

fn corrupt(what: String) -> ProcessError {
    Error::new(ProcessErrorKind::Corrupt, what)
}

/// An event: decoded into the inputs it reads as, each routed to its
/// instance.
async fn on_event<M: ProcessManager>(
    context: &Context<M>,
    message: &jetstream::Message,
) -> Result<(), ProcessError> {
    let event = to_event(context, message)?;
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
        let lineage = Lineage {
            causation: event.command_id().filter(token),
            correlation: event
                .header(jetsource_schemas::headers::CORRELATION_ID)
                .filter(token),
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
        .await?;
    }
    Ok(())
}

/// A fired deadline: routed by its subject.
async fn on_deadline<M: ProcessManager>(
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

/// The `Causation-Id` and `Correlation-Id` a trigger's commands inherit.
#[derive(Default)]
struct Lineage<'a> {
    causation: Option<&'a str>,
    correlation: Option<&'a str>,
}

/// Where a fired deadline came from.
struct Origin<'a> {
    /// The trigger whose reaction set it.
    set_by: Position<'a>,
    /// Fired less than an ack wait ago: the reaction that set it may still
    /// be about to record it.
    young: bool,
}

/// Whether fired deadline `fired` is stale: not pending (cancelled, moved,
/// or its instance ended) once the reaction that set it is recorded.
/// `Err` (retried) while that reaction may still be recording it; after an
/// ack wait it is stale anyway, since a reaction that failed before
/// recording is redone and sets its deadlines again.
fn stale<S>(
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

/// Reads instance `key`'s entry: the instance (none when never started or
/// ended) and the entry's revision to write against (none when the key was
/// never written).
async fn load<M: ProcessManager>(
    context: &Context<M>,
    key: &str,
) -> Result<(Option<Instance<M::State>>, Option<u64>), ProcessError> {
    let entry = context
        .kv
        .entry(key)
        .await
        .map_err(|e| Error::with_source(ProcessErrorKind::JetStream, e))?;
    let Some(entry) = entry else {
        return Ok((None, None));
    };
    if entry.operation != kv::Operation::Put {
        return Ok((None, Some(entry.revision)));
    }
    let instance = serde_json::from_slice(&entry.value).map_err(|e| {
        Error::with_message_and_source(
            ProcessErrorKind::Corrupt,
            format!("instance {key} of {}", context.names.name()),
            e,
        )
    })?;
    Ok((Some(instance), Some(entry.revision)))
}

/// Where a trigger is stored: what the instance's entry records as
/// applied.
struct Position<'a> {
    stream: &'a str,
    seq: u64,
    part: usize,
}

/// One trigger of instance `key`: react, carry the reaction out, record it.
async fn apply<M: ProcessManager>(
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
    let (instance, revision) = load(context, key).await?;
    if let Some(instance) = &instance {
        if instance.has_applied(position.stream, position.seq, position.part) {
            debug!(
                manager,
                key,
                stream = position.stream,
                seq = position.seq,
                "already applied"
            );
            return Ok(());
        }
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
    let (state, mut applied, mut pending) = match instance {
        Some(i) => (Some(i.state), i.applied, i.deadlines),
        None => (None, BTreeMap::new(), BTreeMap::new()),
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
            if let Some(revision) = revision {
                context
                    .kv
                    .purge_expect_revision(key, Some(revision))
                    .await
                    .map_err(|e| Error::with_source(ProcessErrorKind::Conflict, e))?;
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

/// Sends one command. A rejection on business grounds (`validation`,
/// `not_found`, `bad_request`) is the command's answer and is logged; the
/// reaction stands, and a `validation` or `not_found` one is returned for
/// the instance to react to. One saying the infrastructure failed (`unavailable`,
/// `internal`, `conflict` after the handler's own retries), or no answer,
/// fails the trigger, which is retried and resends the same `Command-Id`.
async fn send<M: ProcessManager>(
    context: &Context<M>,
    key: &str,
    id: &str,
    lineage: &Lineage<'_>,
    command: &crate::manager::Command,
) -> Result<Option<(Refusal, String)>, ProcessError> {
    let manager = context.names.name();
    let options = SendOptions {
        command_id: Some(id.to_string()),
        correlation_id: command
            .correlation_id
            .clone()
            .or_else(|| lineage.correlation.map(str::to_string)),
        causation_id: lineage.causation.map(str::to_string),
        ..Default::default()
    };
    let reply = context
        .commands
        .send(
            &command.aggregate_type,
            &command.aggregate_id,
            &command.command,
            command.body.to_string(),
            &options,
        )
        .await;
    match reply {
        Ok(CommandReply::Accepted(accepted)) => {
            info!(manager, key, command_id = id, aggregate = %command.aggregate_id, command = %command.command, duplicate = accepted.duplicate, "command accepted");
            Ok(None)
        }
        Ok(CommandReply::Rejected(rejected)) => match rejected.code {
            RejectionCode::Validation | RejectionCode::NotFound | RejectionCode::BadRequest => {
                warn!(manager, key, command_id = id, aggregate = %command.aggregate_id, command = %command.command, code = rejected.code.as_str(), reason = %rejected.reason, "command rejected");
                Ok(match rejected.code {
                    RejectionCode::Validation => Some((Refusal::Validation, rejected.reason)),
                    RejectionCode::NotFound => Some((Refusal::NotFound, rejected.reason)),
                    // A malformed command is the manager's bug, not an
                    // answer to react to.
                    _ => None,
                })
            }
            RejectionCode::Conflict | RejectionCode::Unavailable | RejectionCode::Internal => {
                Err(Error::new(
                    ProcessErrorKind::Command,
                    format!(
                        "{} {}: {}",
                        command.command,
                        rejected.code.as_str(),
                        rejected.reason
                    ),
                ))
            }
        },
        Err(e) if e.kind() == SendErrorKind::InvalidInput => {
            Err(Error::with_source(ProcessErrorKind::InvalidName, e))
        }
        Err(e) => Err(Error::with_source(ProcessErrorKind::Command, e)),
    }
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
