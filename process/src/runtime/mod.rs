//! Running a process manager: a durable consumer per followed event
//! stream, one on its fired deadlines and one on the forgotten notices of
//! the types it follows, each taking one trigger at a
//! time; per trigger, the instance's entry is read, `react` decides, the
//! commands are sent, the deadlines set and cancelled, and the entry is
//! written (compare-and-set on its revision) before the trigger is acked.
//!
//! Every step before the write is idempotent, so a crash anywhere repeats
//! them: the commands go out again with the same `Command-Id`s (the
//! handlers answer a repeat as a duplicate and append nothing), a deadline
//! set again replaces itself, a cancelled one is purged again. A trigger at
//! or before the entry's recorded position is acked without reacting.
//!
//! # Layout
//! - this module: starting, stopping, each consumer's loop.
//! - `trigger`: a delivered message as a trigger: an event's inputs, a
//!   fired deadline (and whether it is stale).
//! - `apply`: one trigger of one instance: load, react, carry out, record.
//! - `send`: sending one command and reading its answer.

mod apply;
pub mod control;
mod send;
mod trigger;

use crate::config::ProcessConfig;
use crate::deadlines;
use crate::error::{ProcessError, ProcessErrorKind};
use crate::manager::ProcessManager;
use crate::names::Names;
use async_nats::jetstream::{self, consumer, kv, stream, AckKind};
use futures::StreamExt;
use jetsource_client::CommandClient;
use jetsource_projector::typed::Follows;
use jetsource_schemas::error::Error;
use jetsource_schemas::forgotten;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use trigger::{on_deadline, on_event, on_forgotten};

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
    /// Opens the personal fields of the events it reacts to.
    keys: jetsource_projector::keys::DataKeys,
}

/// Where a consumer's triggers come from.
#[derive(Clone, Copy)]
enum Source {
    Events,
    Deadlines,
    Forgotten,
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
    if let Some(consumer) = forgotten_consumer::<M>(&js, &names, &config).await? {
        consumers.push((consumer, Source::Forgotten));
    }

    let keys = jetsource_projector::keys::DataKeys::new(
        js.clone(),
        &config.namespace,
        config.master_key.clone(),
    );
    let context = Arc::new(Context {
        keys,
        manager,
        names,
        config,
        js,
        kv,
        deadlines,
        commands,
    });
    let requests = context
        .js
        .client()
        .queue_subscribe(
            context.names.control_filter(),
            control::QUEUE_GROUP.to_string(),
        )
        .await
        .map_err(|e| Error::with_source(ProcessErrorKind::JetStream, e))?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks: Vec<JoinHandle<()>> = consumers
        .into_iter()
        .map(|(consumer, source)| {
            tokio::spawn(consume(context.clone(), consumer, source, stopped.clone()))
        })
        .collect();
    tasks.push(tokio::spawn(serve_control(
        context.clone(),
        requests,
        stopped.clone(),
    )));
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

/// The manager's durable consumer on the forgotten notices of the types it
/// follows; `None` while the stream is not there (the handlers role makes
/// it: a manager started before learns of forgets from its next start on).
async fn forgotten_consumer<M: ProcessManager>(
    js: &jetstream::Context,
    names: &Names,
    config: &ProcessConfig,
) -> Result<Option<consumer::PullConsumer>, ProcessError> {
    let name = forgotten::stream_name(&config.namespace);
    let stream = match js.get_stream(&name).await {
        Ok(stream) => stream,
        Err(e) => {
            warn!(manager = names.name(), stream = %name, error = %e, "no forgotten notices to follow (the handlers role makes the stream)");
            return Ok(None);
        }
    };
    let filter_subjects = M::Input::aggregate_types()
        .iter()
        .map(|t| forgotten::type_filter(&config.namespace, t))
        .collect();
    stream
        .get_or_create_consumer(
            &names.durable(),
            consumer::pull::Config {
                durable_name: Some(names.durable()),
                filter_subjects,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: 1,
                ..Default::default()
            },
        )
        .await
        .map(Some)
        .map_err(|e| Error::with_source(ProcessErrorKind::JetStream, e))
}

/// Answers control requests (see [`control`]) one at a time until stopped.
async fn serve_control<M: ProcessManager>(
    context: Arc<Context<M>>,
    mut requests: async_nats::Subscriber,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            request = requests.next() => match request {
                Some(request) => control::answer(&context, request).await,
                None => return,
            },
            _ = stopped.changed() => {
                let _ = requests.unsubscribe().await;
                return;
            }
        }
    }
}

/// How long one pull request waits for a trigger. Each asks for one
/// message and lives this long, so a process that stops has at most one
/// request the server may still deliver to, for at most this long.
const PULL_EXPIRES: Duration = Duration::from_secs(1);

/// One consumer's loop: each trigger is handled until it is done (acked)
/// or found poisonous (parked, logged, terminated), then the next.
///
/// One pull request at a time, for one message, none issued ahead: the
/// consumer lets one trigger be in flight, and a message the server hands
/// to a request nobody reads any more (a stopped process's) would hold it
/// for the whole ack wait. On a stop, the request outstanding is waited
/// out and what it brings is handed back (nak) for the next process.
async fn consume<M: ProcessManager>(
    context: Arc<Context<M>>,
    consumer: consumer::PullConsumer,
    source: Source,
    mut stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        let batch = consumer
            .fetch()
            .max_messages(1)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                warn!(manager = context.names.name(), error = %e, "consumer unavailable; retrying");
                pause(&context, &mut stopped).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                next = batch.next() => next,
                _ = stopped.changed() => {
                    release(batch).await;
                    flush(&context).await;
                    return;
                }
            };
            match next {
                Some(Ok(message)) => {
                    if !handle_until_done(&context, &message, source, &mut stopped).await {
                        // Stopped while retrying it: the next process
                        // takes it at once rather than after the ack wait.
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                        flush(&context).await;
                        return;
                    }
                }
                Some(Err(e)) => {
                    warn!(manager = context.names.name(), error = %e, "consumer failed; pulling again");
                    break;
                }
                None => break,
            }
        }
    }
}

/// Sends what is written (an ack, a nak) before the connection may go
/// with the stopping manager.
async fn flush<M: ProcessManager>(context: &Context<M>) {
    if let Err(e) = context.js.client().flush().await {
        warn!(manager = context.names.name(), error = %e, "could not flush on stopping");
    }
}

/// Waits out the pull request of a stopping consumer, handing back (nak)
/// what it delivers.
async fn release(mut batch: consumer::pull::Batch) {
    while let Ok(Some(next)) = tokio::time::timeout(PULL_EXPIRES, batch.next()).await {
        if let Ok(message) = next {
            let _ = message.ack_with(AckKind::Nak(None)).await;
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
            Source::Forgotten => on_forgotten(context, message).await,
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
                // Retrying cannot help: the trigger is parked (kept with
                // its error, listed by `jetsource process parked`) and the
                // consumer goes on. Until the record is written it is not
                // let go: a trigger is never dropped without a trace.
                if let Err(park) =
                    crate::parked::park(&context.kv, &context.names, message, &e).await
                {
                    warn!(manager = context.names.name(), subject = %message.subject, error = %park, "could not park a trigger; retrying");
                    let _ = message.ack_with(AckKind::Progress).await;
                    pause(context, stopped).await;
                    if *stopped.borrow() {
                        return false;
                    }
                    continue;
                }
                error!(manager = context.names.name(), subject = %message.subject, error = %e, "trigger parked");
                let _ = message.ack_with(AckKind::Term).await;
                return true;
            }
            Err(e) => {
                if e.kind() == ProcessErrorKind::Early {
                    debug!(manager = context.names.name(), subject = %message.subject, error = %e, "deadline waits for older events");
                } else if e.kind() == ProcessErrorKind::Conflict {
                    // Two triggers of one instance at once (an event and a
                    // deadline, each on its consumer): the later write
                    // lost, and reacts again from the state the other left.
                    debug!(manager = context.names.name(), subject = %message.subject, error = %e, "instance changed meanwhile; reacting again");
                } else {
                    warn!(manager = context.names.name(), subject = %message.subject, error = %e, "trigger failed; retrying");
                }
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
