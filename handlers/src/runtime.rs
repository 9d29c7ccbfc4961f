//! The command runtime: register aggregates, subscribe to `cmd.>` (under
//! the configured subject prefix, if any) in a queue group, hand each
//! command to its aggregate's handler, reply.
//!
//! ```no_run
//! # async fn example(client: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
//! # use jetsource_handlers::{Aggregate, Runtime, RuntimeConfig};
//! # #[derive(Default, Clone)] struct Post;
//! # #[derive(serde::Deserialize)] enum Cmd {}
//! # #[derive(serde::Serialize, serde::Deserialize)] enum Evt {}
//! # impl Aggregate for Post { const TYPE: &'static str = "post"; type Command = Cmd; type Event = Evt;
//! #   fn handle(&self, c: Cmd) -> Result<Vec<Evt>, jetsource_handlers::Rejection> { match c {} }
//! #   fn apply(&mut self, e: Evt) { match e {} } }
//! let runtime = Runtime::builder(client)
//!     .config(RuntimeConfig::default())
//!     .aggregate::<Post>()
//!     .build()
//!     .await?;
//! runtime.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

use crate::aggregate::Aggregate;
use crate::command::{self, AggregateHandler, Dispatch, HandlerConfig, Unroutable};
use crate::error::Error;
use crate::store::{EventStore, GroupCommitConfig, StreamSettings};
use crate::workers::{Pool, Worker};
use async_nats::{Client, Message};
use futures::StreamExt;
use jetsource_schemas::key_wrap::MasterKey;
use jetsource_schemas::settings::{self, InvalidSetting, SettingError};
use jetsource_schemas::{subject, Namespace};
use serde::Deserialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::command::{CommandOutcome, OutcomeObserver};

/// Settings of the command runtime. Every field documents its default.
///
/// Deserializes (with the units of [`jetsource_schemas::settings`]) from
/// its own keys: `queue_group`, `max_in_flight`, `max_body`,
/// `store_timeout`. The nested settings read their own keys ([`HandlerConfig`],
/// [`SnapshotConfig`](crate::snapshot::SnapshotConfig), [`StreamSettings`],
/// [`GroupCommitConfig`]), so a settings file may lay them side by side in
/// one table; `reply` and `namespace` come from elsewhere (the jetsource
/// settings file has them under `[feedback]` and `[nats]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The queue group command subscribers join (default `jetsource-handlers`),
    /// so several processes share the command subjects.
    pub queue_group: String,
    /// Commands processed at once; more wait (default 4,096).
    pub max_in_flight: usize,
    /// The largest command body accepted, in bytes (default 960 KiB, below
    /// the server's default 1 MiB max_payload). Key `max_body`.
    #[serde(rename = "max_body", with = "settings::size")]
    pub max_body_bytes: usize,
    /// How long a store request may take (default 5 s).
    #[serde(with = "settings::duration")]
    pub store_timeout: Duration,
    /// State cache and retry settings.
    #[serde(skip)]
    pub handler: HandlerConfig,
    /// How event streams are configured.
    #[serde(skip)]
    pub streams: StreamSettings,
    /// How concurrent appends share atomic batches (group commit).
    #[serde(skip)]
    pub group_commit: GroupCommitConfig,
    /// Reply to command requests (default true). Off: no reply is sent even
    /// to a request, and clients learn outcomes from notices or by id.
    #[serde(skip)]
    pub reply: bool,
    /// The subject prefix every command subject, event subject and stream
    /// name is under (default: none).
    #[serde(skip)]
    pub namespace: Namespace,
    /// What the data keys of personal data are wrapped under (default
    /// none: stored plain); see [`crate::keys::KeyRing::with_master_key`].
    #[serde(skip)]
    pub master_key: Option<MasterKey>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            queue_group: "jetsource-handlers".into(),
            max_in_flight: 4096,
            max_body_bytes: 960 * 1024,
            store_timeout: Duration::from_secs(5),
            handler: HandlerConfig::default(),
            streams: StreamSettings::default(),
            group_commit: GroupCommitConfig::default(),
            reply: true,
            namespace: Namespace::default(),
            master_key: None,
        }
    }
}

impl RuntimeConfig {
    /// Checks the settings of its own keys (the nested settings check
    /// theirs); the error's kind names the first invalid key.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.max_in_flight == 0 {
            return Err(SettingError::new(
                InvalidSetting("max_in_flight"),
                "must be at least 1",
            ));
        }
        jetsource_schemas::token::validate("queue group", &self.queue_group)
            .map_err(|e| SettingError::new(InvalidSetting("queue_group"), e.to_string()))
    }
}

/// What went wrong building or running the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeErrorKind {
    /// An aggregate's type name is invalid or registered twice.
    BadAggregate,
    /// A stream could not be created or updated.
    Stream,
    /// NATS failed (subscribe, connection).
    Nats,
}

impl std::fmt::Display for RuntimeErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuntimeErrorKind::BadAggregate => "invalid aggregate registration",
            RuntimeErrorKind::Stream => "cannot set up the event stream",
            RuntimeErrorKind::Nats => "NATS failure",
        })
    }
}

/// A runtime failure.
pub type RuntimeError = Error<RuntimeErrorKind>;

type Factory = Box<dyn FnOnce(EventStore, HandlerConfig) -> Arc<dyn Serve> + Send>;

/// Builds a [`Runtime`].
pub struct RuntimeBuilder {
    client: Client,
    config: RuntimeConfig,
    factories: Vec<(&'static str, Factory)>,
    observers: Vec<OutcomeObserver>,
}

impl RuntimeBuilder {
    /// Replaces the settings.
    pub fn config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    /// Registers aggregate type `A`.
    pub fn aggregate<A: Aggregate>(mut self) -> Self {
        self.factories.push((
            A::TYPE,
            Box::new(|store, config| {
                Arc::new(Served {
                    handler: Arc::new(AggregateHandler::<A>::new(store, config)),
                    workers: Arc::new(Pool::new(WORKER_LINGER)),
                }) as Arc<dyn Serve>
            }),
        ));
        self
    }

    /// Adds an observer of command outcomes.
    pub fn observe(mut self, observer: OutcomeObserver) -> Self {
        self.observers.push(observer);
        self
    }

    /// Checks the registrations and creates or updates every stream.
    pub async fn build(self) -> Result<Runtime, RuntimeError> {
        let store = EventStore::new(self.client.clone(), self.config.store_timeout)
            .await
            .map_err(|e| Error::with_source(RuntimeErrorKind::Nats, e))?
            .with_group_commit(self.config.group_commit.clone())
            .with_namespace(self.config.namespace.clone())
            // Data keys are replicated like the event streams they open.
            .with_key_replicas(self.config.streams.replicas)
            .with_master_key(self.config.master_key.clone());
        let mut handlers: HashMap<&'static str, Arc<dyn Serve>> = HashMap::new();
        for (name, factory) in self.factories {
            subject::validate_aggregate_type(name)
                .map_err(|e| Error::with_source(RuntimeErrorKind::BadAggregate, e))?;
            if handlers.contains_key(name) {
                return Err(Error::new(
                    RuntimeErrorKind::BadAggregate,
                    format!("aggregate type {name} registered twice"),
                ));
            }
            store
                .ensure_stream(name, &self.config.streams)
                .await
                .map_err(|e| Error::with_source(RuntimeErrorKind::Stream, e))?;
            let mut handler_config = self.config.handler.clone();
            // Snapshot buckets are replicated like the event streams.
            handler_config.snapshots.replicas = self.config.streams.replicas;
            handlers.insert(name, factory(store.clone(), handler_config));
        }
        // Forgetting stores its notices there; read models follow it.
        let jetstream = async_nats::jetstream::new(self.client.clone());
        crate::forget::ensure_stream(
            &jetstream,
            &self.config.namespace,
            self.config.streams.replicas,
        )
        .await
        .map_err(|e| Error::with_source(RuntimeErrorKind::Stream, e))?;
        let mut known: Vec<_> = handlers.keys().copied().collect();
        known.sort_unstable();
        let dispatch = Arc::new(Dispatch {
            client: self.client,
            known_types: known.join(", "),
            observers: self.observers,
            namespace: self.config.namespace.clone(),
            max_body: self.config.max_body_bytes,
            reply: self.config.reply,
        });
        Ok(Runtime {
            config: self.config,
            dispatch,
            handlers,
            store,
        })
    }
}

/// The running command side.
pub struct Runtime {
    config: RuntimeConfig,
    dispatch: Arc<Dispatch>,
    /// Each registered aggregate type's handler and workers.
    handlers: HashMap<&'static str, Arc<dyn Serve>>,
    store: EventStore,
}

impl Runtime {
    /// Starts building a runtime over `client` (connected with
    /// [`crate::connect()`], so the server version was checked).
    pub fn builder(client: Client) -> RuntimeBuilder {
        RuntimeBuilder {
            client,
            config: RuntimeConfig::default(),
            factories: Vec::new(),
            observers: Vec::new(),
        }
    }

    /// The event store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The registered aggregate types.
    pub fn aggregate_types(&self) -> Vec<&'static str> {
        let mut types: Vec<_> = self.handlers.keys().copied().collect();
        types.sort_unstable();
        types
    }

    /// Subscribes to the command subjects (confirmed by the server before
    /// this returns, so commands sent afterwards are never missed) and
    /// serves them in the background until [`RunningRuntime::shutdown`].
    pub async fn start(self) -> Result<RunningRuntime, RuntimeError> {
        // The queue group needs no prefix: it only shares messages between
        // subscriptions whose subjects match them, and no other namespace's
        // commands match this one's subjects.
        let subscriber = self
            .dispatch
            .client
            .queue_subscribe(
                self.config.namespace.commands_filter(),
                self.config.queue_group.clone(),
            )
            .await
            .map_err(|e| Error::with_source(RuntimeErrorKind::Nats, e))?;
        let forgets = self
            .dispatch
            .client
            .queue_subscribe(
                crate::forget::forget_filter(&self.config.namespace),
                self.config.queue_group.clone(),
            )
            .await
            .map_err(|e| Error::with_source(RuntimeErrorKind::Nats, e))?;
        let forgotten = self
            .dispatch
            .client
            .subscribe(crate::forget::forgotten_filter(&self.config.namespace))
            .await
            .map_err(|e| Error::with_source(RuntimeErrorKind::Nats, e))?;
        // `flush` only empties the write buffer. A request on the same
        // connection is answered after the server has processed everything
        // sent before it, the SUB included.
        self.dispatch
            .client
            .request("$JS.API.INFO", bytes::Bytes::new())
            .await
            .map_err(|e| Error::with_source(RuntimeErrorKind::Nats, e))?;
        tracing::info!(aggregates = ?self.aggregate_types(), queue_group = %self.config.queue_group, subject_prefix = %self.config.namespace, "handling commands");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(self.serve_until(subscriber, (forgets, forgotten), stopped));
        Ok(RunningRuntime { stop, task })
    }

    /// Serves commands until `shutdown` completes; then stops taking
    /// commands, lets those in flight finish and flushes their replies.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RuntimeError> {
        let mut running = self.start().await?;
        tokio::select! {
            _ = shutdown => running.shutdown().await,
            finished = &mut running.task => finished.map_err(|e| Error::with_source(RuntimeErrorKind::Nats, e))?,
        }
    }

    /// A task letting go of workers idle for [`WORKER_LINGER`], checked
    /// every half of it: workers going idle let go of stale ones, but with
    /// no commands at all none go idle. Apart from the command loop, so a
    /// command pays nothing for it.
    fn reap_idle_workers(&self) -> AbortOnDrop {
        let handlers: Vec<Arc<dyn Serve>> = self.handlers.values().cloned().collect();
        AbortOnDrop(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(WORKER_LINGER / 2);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                for handler in &handlers {
                    handler.reap();
                }
            }
        }))
    }

    /// Serves forget requests and notices (see [`crate::forget`]) until
    /// the command loop ends.
    fn serve_forgets(
        &self,
        (requests, notices): (async_nats::Subscriber, async_nats::Subscriber),
    ) -> AbortOnDrop {
        let mut jetstream = async_nats::jetstream::new(self.dispatch.client.clone());
        jetstream.set_timeout(self.config.store_timeout);
        let forgetting = crate::forget::Forgetting {
            client: self.dispatch.client.clone(),
            jetstream,
            namespace: self.config.namespace.clone(),
            keys: self.store.keys().clone(),
            hosted: self.aggregate_types(),
        };
        let handlers = self.handlers.clone();
        AbortOnDrop(tokio::spawn(forgetting.serve(
            requests,
            notices,
            move |aggregate_type, id| {
                if let Some(handler) = handlers.get(aggregate_type) {
                    handler.evict(id);
                }
            },
        )))
    }

    async fn serve_until(
        self,
        mut subscriber: async_nats::Subscriber,
        forgets: (async_nats::Subscriber, async_nats::Subscriber),
        mut stopped: tokio::sync::oneshot::Receiver<()>,
    ) -> Result<(), RuntimeError> {
        let permits = Arc::new(Semaphore::new(self.config.max_in_flight));
        let reaper = self.reap_idle_workers();
        let forgetter = self.serve_forgets(forgets);
        loop {
            let message = tokio::select! {
                _ = &mut stopped => break,
                message = subscriber.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            // Only the type token picks the handler; the worker parses
            // and checks the whole subject.
            let handler = self
                .config
                .namespace
                .command_type_token(message.subject.as_str())
                .and_then(|aggregate_type| self.handlers.get(aggregate_type));
            match handler {
                Some(handler) => handler.take(&self.dispatch, message, permit),
                None => {
                    let dispatch = self.dispatch.clone();
                    tokio::spawn(async move {
                        command::serve::<Unroutable>(&dispatch, None, message).await;
                        drop(permit);
                    });
                }
            }
        }
        tracing::info!("stopping: no new commands, finishing those in flight");
        let _ = subscriber.unsubscribe().await;
        let in_flight = u32::try_from(self.config.max_in_flight).unwrap_or(u32::MAX);
        let _ = permits.acquire_many(in_flight).await;
        drop(reaper);
        drop(forgetter);
        for handler in self.handlers.values() {
            handler.close();
        }
        self.dispatch
            .client
            .flush()
            .await
            .map_err(|e| Error::with_source(RuntimeErrorKind::Nats, e))?;
        Ok(())
    }
}

/// A runtime serving commands in the background.
pub struct RunningRuntime {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

impl RunningRuntime {
    /// Stops taking commands, waits for those in flight, flushes replies.
    pub async fn shutdown(self) -> Result<(), RuntimeError> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| Error::with_source(RuntimeErrorKind::Nats, e))?
    }
}

/// Ends a background task when the command loop ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a command worker may stay idle before it is let go.
const WORKER_LINGER: Duration = Duration::from_secs(30);

/// Serves the commands of an aggregate type.
///
/// Typed per aggregate, so a command's whole path (parse, decide, append,
/// reply) is one future; a boxed, type-erased handler future was a second
/// allocation of over 2 KB per command. Commands run on the type's
/// workers (`workers.rs`), which keep that future between commands.
trait Serve: Send + Sync {
    /// Serves `message` on an idle worker, or on a new one. References
    /// are counted up only for a new worker: every command touching the
    /// same counters would make the cores trade their cache lines.
    fn take(&self, dispatch: &Arc<Dispatch>, message: Message, permit: OwnedSemaphorePermit);

    /// Lets the idle workers go (once no command is in flight).
    fn close(&self);

    /// Lets go of the workers idle for [`WORKER_LINGER`] or longer.
    fn reap(&self);

    /// Drops the cached state of aggregate `id`, whose data key was forgotten.
    fn evict(&self, id: &str);
}

/// A command and its in-flight permit, as workers get them.
struct QueuedCommand {
    message: Message,
    permit: OwnedSemaphorePermit,
}

/// An aggregate type's handler and its workers.
struct Served<A: Aggregate> {
    handler: Arc<AggregateHandler<A>>,
    workers: Arc<Pool<QueuedCommand>>,
}

impl<A: Aggregate> Serve for Served<A> {
    fn take(&self, dispatch: &Arc<Dispatch>, message: Message, permit: OwnedSemaphorePermit) {
        let Err(first) = self.workers.hand_over(QueuedCommand { message, permit }) else {
            return;
        };
        let mut worker = Worker::new(self.workers.clone());
        let (dispatch, handler) = (dispatch.clone(), self.handler.clone());
        tokio::spawn(async move {
            let mut queued = first;
            loop {
                command::serve(&dispatch, Some(&*handler), queued.message).await;
                drop(queued.permit);
                match worker.next().await {
                    Some(next) => queued = next,
                    None => break,
                }
            }
        });
    }

    fn close(&self) {
        self.workers.close();
    }

    fn reap(&self) {
        self.workers.reap();
    }

    fn evict(&self, id: &str) {
        let (handler, id) = (self.handler.clone(), id.to_string());
        tokio::spawn(async move { handler.forget_cached(&id).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_their_key() {
        assert!(RuntimeConfig::default().validate().is_ok());
        let idle = RuntimeConfig {
            max_in_flight: 0,
            ..RuntimeConfig::default()
        };
        let e = idle.validate().expect_err("nothing could run");
        assert_eq!(e.kind(), InvalidSetting("max_in_flight"));
        let spaced = RuntimeConfig {
            queue_group: "two words".into(),
            ..RuntimeConfig::default()
        };
        let e = spaced.validate().expect_err("not a subject token");
        assert_eq!(e.kind(), InvalidSetting("queue_group"));
    }
}
