//! The projector runtime: register projectors, start their drivers and
//! query servers, report their status, stop.
//!
//! ```no_run
//! # async fn example(client: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
//! # use jetsource_projector::{Event, Projector, ProjectorError, ProjectorRuntime, Query, QueryError};
//! # #[derive(Default)] struct Posts;
//! # impl Projector for Posts {
//! #   fn name(&self) -> &'static str { "posts" }
//! #   fn subjects(&self) -> Vec<String> { vec!["evt.blogpost.>".into()] }
//! #   fn apply(&mut self, _: &Event) -> Result<(), ProjectorError> { Ok(()) }
//! #   fn query(&self, _: &Query) -> Result<serde_json::Value, QueryError> { Ok(serde_json::Value::Null) } }
//! let projectors = ProjectorRuntime::builder(client)
//!     .in_memory(Posts::default())
//!     .build()
//!     .await?;
//! projectors.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

use crate::config::ProjectorConfig;
use crate::control;
use crate::document::DocumentProjector;
use crate::driver::{Driver, Served};
use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::memory;
use crate::position::{self, Positions};
use crate::projector::{PersistedProjector, Projector};
use crate::query;
use crate::shared::{Model, Shared};
use crate::status::{
    self as status_report, Kind, Phase, ProjectorStatus, StatusReport, StreamStatus,
};
use crate::store::one_value::Make;
use crate::store::{DocumentStore, OneValue, ReadStore};
use async_nats::jetstream;
use async_nats::Client;
use futures::future::BoxFuture;
use futures::StreamExt;
use jetsource_schemas::error::Error;
use jetsource_schemas::{CONTRACT_METADATA_KEY, CONTRACT_VERSION, READABLE_CONTRACT_VERSIONS};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A projector's driver, ready to spawn: it applies events until the watch
/// turns true.
type DriverTask = Box<dyn FnOnce(watch::Receiver<bool>) -> BoxFuture<'static, ()> + Send>;
/// Opens a registered projector's consumers (and, persisted, its bucket)
/// when the runtime is built: its read model for queries, and its driver.
type Prepare = Box<
    dyn FnOnce(
            jetstream::Context,
            Arc<Shared>,
            ProjectorConfig,
        ) -> BoxFuture<'static, Result<(Arc<dyn Model>, DriverTask), ProjectionError>>
        + Send,
>;

/// A projector registered with the builder, prepared by
/// [`ProjectorRuntimeBuilder::build`].
struct PendingProjector {
    name: &'static str,
    kind: Kind,
    subjects: Vec<String>,
    prepare: Prepare,
}

/// Looks a stream up before attaching to it, saying which one is missing,
/// and refuses one of another contract version (see [`check_contract`]).
pub(crate) async fn get_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<jetstream::stream::Stream, ProjectionError> {
    let stream = js.get_stream(name).await.map_err(|e| {
        if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
        {
            Error::new(
                ProjectionErrorKind::NoStream,
                format!("stream {name} does not exist: serve its aggregate type first"),
            )
        } else {
            Error::with_source(ProjectionErrorKind::Nats, e)
        }
    })?;
    check_contract(name, &stream.cached_info().config.metadata)?;
    Ok(stream)
}

/// Refuses a stream whose metadata names a contract version this build
/// cannot read ([`READABLE_CONTRACT_VERSIONS`]: [`CONTRACT_VERSION`] and the
/// older versions whose events read as its own): events of another contract
/// can fold into a wrong read model without any single event looking wrong.
/// A stream without the
/// key is accepted: jetsource's handlers add it when they start, and a
/// projector, only reading, leaves the stream as it is.
pub(crate) fn check_contract(
    name: &str,
    metadata: &HashMap<String, String>,
) -> Result<(), ProjectionError> {
    match metadata.get(CONTRACT_METADATA_KEY) {
        Some(found) if !READABLE_CONTRACT_VERSIONS.contains(&found.as_str()) => Err(Error::new(
            ProjectionErrorKind::ContractMismatch,
            format!(
                "stream {name} holds contract version {found:?} ({CONTRACT_METADATA_KEY}), \
                 this build speaks {CONTRACT_VERSION:?}"
            ),
        )),
        _ => Ok(()),
    }
}

/// Builds a [`ProjectorRuntime`].
pub struct ProjectorRuntimeBuilder {
    client: Client,
    config: ProjectorConfig,
    pending: Vec<PendingProjector>,
}

impl ProjectorRuntimeBuilder {
    /// Replaces the settings.
    pub fn config(mut self, config: ProjectorConfig) -> Self {
        self.config = config;
        self
    }

    /// Registers an in-memory projector: folded from sequence 1 at start.
    pub fn in_memory<P: Projector>(mut self, projector: P) -> Self {
        let (name, subjects) = (projector.name(), projector.subjects());
        self.pending.push(PendingProjector {
            name,
            kind: Kind::InMemory,
            subjects,
            prepare: Box::new(move |js, shared, config| {
                Box::pin(async move {
                    let model = Arc::new(RwLock::new(projector));
                    let merged = memory::open(&js, &shared).await?;
                    let driven = model.clone();
                    let task: DriverTask = Box::new(move |stop| {
                        Box::pin(memory::drive(js, shared, driven, merged, config, stop))
                    });
                    Ok((model as Arc<dyn Model>, task))
                })
            }),
        });
        self
    }

    /// Registers a persisted projector: its state and positions live in a
    /// KV bucket, it resumes from a durable consumer. A rebuild starts
    /// from a clone of `projector` (see [`Self::persisted_with`]).
    pub fn persisted<P: PersistedProjector + Clone>(self, projector: P) -> Self {
        self.persisted_with(move || projector.clone())
    }

    /// Registers a persisted projector; `make` builds one in its initial
    /// state, at start and for every rebuild. Its state is kept as one KV
    /// value per generation ([`OneValue`]): fine for small models.
    ///
    /// Of all processes running it, one at a time holds its lease and
    /// applies events; the others stand by, answer queries from the stored
    /// checkpoint, and take over within `lease_ttl` when the holder dies.
    pub fn persisted_with<P: PersistedProjector>(
        self,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        let make: Make<P> = Arc::new(make);
        let projector = make();
        let (name, subjects) = (projector.name(), projector.subjects());
        self.hosted(name, subjects, move |js, config| {
            let make = make.clone();
            OneValue::new(js.clone(), config.clone(), move || make())
        })
    }

    /// Registers a document projection: persisted like
    /// [`Self::persisted`], its documents one KV entry each in the
    /// generation's bucket ([`DocumentStore`]), with `get.<key>` and
    /// `list` queries built in.
    pub fn documents<P: DocumentProjector>(self, projector: P) -> Self {
        let (name, subjects) = (projector.name(), projector.subjects());
        self.hosted(name, subjects, move |js, config| {
            DocumentStore::new(js.clone(), config.clone(), projector)
        })
    }

    /// Registers a persisted projection kept in `store` (see
    /// [`crate::store`]): the runtime drives it like any persisted one
    /// (durable consumers, lease, rebuilds, parking, status) and answers
    /// its queries from the store's served generation.
    pub fn read_store<S: ReadStore>(self, store: S) -> Self {
        let (name, subjects) = (store.name(), store.subjects());
        self.hosted(name, subjects, move |_, _| store)
    }

    /// Like [`Self::read_store`], for a store that names its storage after
    /// the runtime's namespace (so two applications under different
    /// subject prefixes can share a database): `place` gets the store and
    /// the namespace once the runtime's settings are known, and returns
    /// the store to drive.
    pub fn read_store_in<S: ReadStore>(
        self,
        store: S,
        place: impl FnOnce(S, &jetsource_schemas::Namespace) -> S + Send + 'static,
    ) -> Self {
        let (name, subjects) = (store.name(), store.subjects());
        self.hosted(name, subjects, move |_, config| {
            place(store, &config.namespace)
        })
    }

    /// Registers a persisted projection whose store `open` builds once the
    /// runtime's connection and settings are known.
    pub(crate) fn hosted<S: ReadStore>(
        mut self,
        name: &'static str,
        subjects: Vec<String>,
        open: impl FnOnce(&jetstream::Context, &ProjectorConfig) -> S + Send + 'static,
    ) -> Self {
        self.pending.push(PendingProjector {
            name,
            kind: Kind::Persisted,
            subjects,
            prepare: Box::new(move |js, shared, config| {
                Box::pin(async move {
                    for stream in shared.streams.keys() {
                        get_stream(&js, stream).await?;
                    }
                    let control = control::open_bucket(&js, &config.namespace).await?;
                    let store = Arc::new(open(&js, &config));
                    let served = Arc::new(Served::new(store.clone()));
                    let driver = Driver {
                        client: js.client(),
                        js,
                        control,
                        shared,
                        store,
                        served: served.clone(),
                        config,
                        holder: uuid::Uuid::now_v7().to_string(),
                    };
                    let task: DriverTask = Box::new(move |stop| Box::pin(driver.run(stop)));
                    Ok((served as Arc<dyn Model>, task))
                })
            }),
        });
        self
    }

    /// Checks every registration, opens the consumers and, for persisted
    /// projectors, loads the stored state.
    pub async fn build(self) -> Result<ProjectorRuntime, ProjectionError> {
        let js = jetstream::new(self.client.clone());
        let mut projectors = Vec::new();
        let mut drivers = Vec::new();
        for pending in self.pending {
            let name = pending.name;
            position::validate_name(name)
                .map_err(|e| Error::with_source(ProjectionErrorKind::BadProjector, e))?;
            if projectors
                .iter()
                .any(|p: &Registered| p.shared.name == name)
            {
                return Err(Error::new(
                    ProjectionErrorKind::BadProjector,
                    format!("projector {name} registered twice"),
                ));
            }
            let streams = position::streams_of_in(&self.config.namespace, &pending.subjects)
                .map_err(|e| {
                    Error::with_message_and_source(
                        ProjectionErrorKind::BadProjector,
                        format!("projector {name}"),
                        e,
                    )
                })?;
            let shared = Shared::new(name, pending.kind, streams);
            let (model, driver) =
                (pending.prepare)(js.clone(), shared.clone(), self.config.clone()).await?;
            projectors.push(Registered { shared, model });
            drivers.push(driver);
        }
        Ok(ProjectorRuntime {
            client: self.client,
            js,
            config: self.config,
            projectors: Arc::new(projectors),
            drivers,
        })
    }
}

struct Registered {
    shared: Arc<Shared>,
    model: Arc<dyn Model>,
}

/// Projectors ready to run.
pub struct ProjectorRuntime {
    client: Client,
    js: jetstream::Context,
    config: ProjectorConfig,
    projectors: Arc<Vec<Registered>>,
    drivers: Vec<DriverTask>,
}

impl ProjectorRuntime {
    /// Starts building a runtime over `client`.
    pub fn builder(client: Client) -> ProjectorRuntimeBuilder {
        ProjectorRuntimeBuilder {
            client,
            config: ProjectorConfig::default(),
            pending: Vec::new(),
        }
    }

    /// The registered projection names.
    pub fn names(&self) -> Vec<&'static str> {
        self.projectors.iter().map(|p| p.shared.name).collect()
    }

    /// Starts applying events and answering queries.
    pub async fn start(self) -> Result<RunningProjectors, ProjectionError> {
        let (stop, stopped) = watch::channel(false);
        let mut subscriptions = Vec::new();
        let namespace = &self.config.namespace;
        for (index, projector) in self.projectors.iter().enumerate() {
            let subject = query::query_filter(namespace, projector.shared.name);
            subscriptions.push((Some(index), subject));
        }
        subscriptions.push((None, status_report::status_subject(namespace)));
        // Queue groups need no prefix: they only share messages between
        // subscriptions whose subjects match them, and namespaces' subjects
        // never overlap.
        let mut tasks = Vec::new();
        for (index, subject) in subscriptions {
            let subscriber = self
                .client
                .queue_subscribe(subject, self.config.queue_group.clone())
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
            tasks.push(tokio::spawn(serve_queries(
                self.client.clone(),
                self.js.clone(),
                self.projectors.clone(),
                index,
                self.config.clone(),
                subscriber,
                stopped.clone(),
            )));
        }
        let mut drivers = Vec::new();
        for driver in self.drivers {
            drivers.push(tokio::spawn(driver(stopped.clone())));
        }
        tracing::info!(projectors = ?self.projectors.iter().map(|p| p.shared.name).collect::<Vec<_>>(), "projectors started");
        Ok(RunningProjectors {
            client: self.client,
            js: self.js,
            projectors: self.projectors,
            stop,
            tasks,
            drivers,
        })
    }

    /// Runs until `shutdown` completes, then stops.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProjectionError> {
        let running = self.start().await?;
        shutdown.await;
        running.stop().await
    }
}

/// RunningProjectors projectors.
pub struct RunningProjectors {
    client: Client,
    js: jetstream::Context,
    projectors: Arc<Vec<Registered>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    drivers: Vec<JoinHandle<()>>,
}

impl RunningProjectors {
    /// The positions projection `name` has applied, as a watch.
    pub fn applied(&self, name: &str) -> Option<watch::Receiver<Positions>> {
        self.projectors
            .iter()
            .find(|p| p.shared.name == name)
            .map(|p| p.shared.applied.subscribe())
    }

    /// Every projector's status, with the streams' last sequences now.
    pub async fn status(&self) -> StatusReport {
        status(&self.js, &self.projectors).await
    }

    /// Stops at once, releasing nothing, as a crash would: persisted
    /// projections keep their lease until it runs out, and their
    /// unacknowledged events wait for the next holder.
    pub fn abort(self) {
        for task in self.drivers.into_iter().chain(self.tasks) {
            task.abort();
        }
    }

    /// Stops the drivers (a persisted one finishes its batch and releases
    /// its lease) and the query servers, and flushes the replies.
    pub async fn stop(self) -> Result<(), ProjectionError> {
        let _ = self.stop.send(true);
        for task in self.drivers.into_iter().chain(self.tasks) {
            let _ = task.await;
        }
        self.client
            .flush()
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))
    }
}

async fn serve_queries(
    client: Client,
    js: jetstream::Context,
    projectors: Arc<Vec<Registered>>,
    index: Option<usize>,
    config: ProjectorConfig,
    mut subscriber: async_nats::Subscriber,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            message = subscriber.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let (client, js, projectors, config) = (
            client.clone(),
            js.clone(),
            projectors.clone(),
            config.clone(),
        );
        tokio::spawn(async move {
            match index {
                Some(i) => {
                    let p = &projectors[i];
                    query::answer(&client, &p.shared, &p.model, &config, message).await;
                }
                None => {
                    let Some(reply_to) = message.reply else {
                        return;
                    };
                    let report = status(&js, &projectors).await;
                    // Plain data: encoding cannot fail; should it, the
                    // empty body still answers.
                    let body = serde_json::to_vec(&report).unwrap_or_default();
                    let max_payload = client.server_info().max_payload;
                    let publish = |body| client.publish(reply_to.clone(), body);
                    let sent = jetsource_schemas::answer::send(body.into(), max_payload, publish);
                    if let Err(e) = sent.await {
                        tracing::warn!(error = %e, "could not send the status report");
                    }
                }
            }
        });
    }
    let _ = subscriber.unsubscribe().await;
}

async fn status(js: &jetstream::Context, projectors: &[Registered]) -> StatusReport {
    let mut report = StatusReport {
        projectors: Vec::new(),
    };
    for p in projectors {
        let progress = p.shared.progress();
        let applied = p.shared.applied.borrow().clone();
        let mut streams = Vec::new();
        for (stream, subjects) in &p.shared.streams {
            let last = match js.get_stream(stream).await {
                Ok(s) => s.cached_info().state.last_sequence,
                Err(_) => 0,
            };
            let applied_seq = applied.get(stream).copied().unwrap_or(0);
            let progress = progress.streams.get(stream).cloned().unwrap_or_default();
            let pending = if progress.caught_up && applied_seq >= last {
                0
            } else {
                progress.pending
            };
            streams.push(StreamStatus {
                stream: stream.clone(),
                subjects: subjects.clone(),
                applied_seq,
                stream_last_seq: last,
                lag: last.saturating_sub(applied_seq),
                pending,
                head_at_start: progress.head_at_start,
                caught_up: progress.caught_up,
            });
        }
        report.projectors.push(ProjectorStatus {
            name: p.shared.name.to_string(),
            kind: p.shared.kind,
            phase: progress.phase,
            error: progress.error,
            streams,
        });
    }
    report
}

impl Phase {
    /// True when every followed stream has been replayed.
    pub fn is_live(self) -> bool {
        self == Phase::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreadable_contract_version_is_refused() {
        let stamped = |v: &str| HashMap::from([(CONTRACT_METADATA_KEY.to_string(), v.to_string())]);
        assert!(check_contract("EVT_X", &HashMap::new()).is_ok());
        assert!(check_contract("EVT_X", &stamped(CONTRACT_VERSION)).is_ok());
        assert!(
            check_contract("EVT_X", &stamped("1")).is_ok(),
            "version 1 reads as 2"
        );
        for other in [
            String::new(),
            "3".to_string(),
            "0".to_string(),
            format!("{CONTRACT_VERSION}.0"),
            format!(" {CONTRACT_VERSION}"),
            format!("{CONTRACT_VERSION}-other"),
        ] {
            let refused = check_contract("EVT_X", &stamped(&other)).expect_err(&other);
            assert_eq!(refused.kind(), ProjectionErrorKind::ContractMismatch);
        }
    }
}
