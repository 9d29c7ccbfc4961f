//! An application: the aggregates, projectors and process managers it
//! hosts, and `run`, which serves them.
//!
//! The `jetsource` binary is `App::new().aggregate::<BlogPost>()` handed to
//! [`crate::cli::main`]; a user's binary is the same with its own
//! aggregates, and gets the same CLI.

use crate::config::{Config, ConfigError};
use crate::embedded::Embedded;
use crate::observability::{Probes, ProjectorsHandle};
use crate::rewind::{RewindError, RewindErrorKind, Rewound};
use futures::future::BoxFuture;
use jetsource_feedback::{Feedback, FeedbackError};
use jetsource_handlers::connect::ConnectError;
use jetsource_handlers::runtime::{RuntimeBuilder, RuntimeError};
use jetsource_handlers::store::EventStore;
use jetsource_handlers::RuntimeConfig;
use jetsource_handlers::{Aggregate, Runtime};
use jetsource_nats_server::ServerError;
use jetsource_postgres::{HostPostgres, PgProjector};
use jetsource_process::{ProcessConfig, ProcessError, ProcessManager, RunningProcessManager};
use jetsource_projector::store::ReadStore;
use jetsource_projector::{
    DocumentProjector, PersistedProjector, Projector, ProjectorRuntime, ProjectorRuntimeBuilder,
};
use jetsource_schemas::json::with_contract;
use schemars::JsonSchema;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

type Registration = Arc<dyn Fn(RuntimeBuilder) -> RuntimeBuilder + Send + Sync>;
type Rewinder = Arc<
    dyn for<'a> Fn(
            &'a EventStore,
            &'a str,
            Option<u64>,
        ) -> BoxFuture<'a, Result<Rewound, RewindError>>
        + Send
        + Sync,
>;
type ProjectorRegistration =
    Arc<dyn Fn(ProjectorRuntimeBuilder) -> ProjectorRuntimeBuilder + Send + Sync>;
/// Registers a PostgreSQL read model in the database at the URL given.
type PostgresRegistration = Arc<
    dyn Fn(
            ProjectorRuntimeBuilder,
            &str,
        ) -> Result<ProjectorRuntimeBuilder, jetsource_projector::ProjectionError>
        + Send
        + Sync,
>;

/// Starts a process manager on a connection, under a configuration.
type ProcessRegistration = Arc<
    dyn Fn(
            async_nats::Client,
            ProcessConfig,
        ) -> BoxFuture<'static, Result<RunningProcessManager, ProcessError>>
        + Send
        + Sync,
>;

/// The aggregates, projectors and process managers an application hosts.
#[derive(Clone, Default)]
pub struct App {
    registrations: Vec<Registration>,
    rewinders: Vec<(&'static str, Rewinder)>,
    schemas: Vec<AggregateSchemas>,
    projectors: Vec<ProjectorRegistration>,
    postgres: Vec<PostgresRegistration>,
    process_managers: Vec<ProcessRegistration>,
    process_manager_names: Vec<ProcessManagerInfo>,
}

/// What a hosted process manager is called and follows, for `jetsource
/// process status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessManagerInfo {
    /// Its name.
    pub name: &'static str,
    /// The aggregate types whose events it follows.
    pub aggregate_types: Vec<&'static str>,
}

/// The JSON Schemas of one aggregate type's commands and events, as
/// `jetsource schema` writes them (each stamped with the contract version,
/// see `jetsource_schemas::json::CONTRACT_KEYWORD`).
#[derive(Debug, Clone)]
pub struct AggregateSchemas {
    /// The aggregate type.
    pub aggregate_type: &'static str,
    /// The command enum's schema (variant name = command subject token).
    pub commands: serde_json::Value,
    /// The event enum's schema (variant name = event type), of
    /// [`AggregateSchemas::event_version`].
    pub events: serde_json::Value,
    /// The aggregate's `EVENT_VERSION`: the version of today's events.
    pub event_version: u32,
    /// How older versions' events read as today's.
    pub upcasters: Arc<jetsource_schemas::upcast::Upcasters>,
    /// The schema of its rejections' `details`, when it gives any.
    pub details: Option<serde_json::Value>,
}

impl App {
    /// An application with no aggregates yet.
    pub fn new() -> Self {
        App::default()
    }

    /// Hosts aggregate type `A`.
    ///
    /// The state serializes so that `jetsource rewind` can show it at any
    /// point of its history, and the commands and events carry JSON Schemas
    /// so that `jetsource schema` can publish them for other languages.
    pub fn aggregate<A>(mut self) -> Self
    where
        A: Aggregate + Serialize,
        A::Command: JsonSchema,
        A::Event: JsonSchema,
    {
        self.registrations
            .push(Arc::new(|builder: RuntimeBuilder| builder.aggregate::<A>()));
        self.rewinders.push((
            A::TYPE,
            Arc::new(|store, id, to_seq| Box::pin(crate::rewind::rewind::<A>(store, id, to_seq))),
        ));
        self.schemas.push(AggregateSchemas {
            aggregate_type: A::TYPE,
            commands: with_contract(schemars::schema_for!(A::Command).to_value()),
            events: with_contract(schemars::schema_for!(A::Event).to_value()),
            event_version: A::EVENT_VERSION,
            upcasters: jetsource_schemas::upcast::upcasters_of::<A>(),
            details: A::details_schema().map(|schema| with_contract(schema.to_value())),
        });
        self
    }

    /// The registered aggregate types, in registration order.
    pub fn aggregate_types(&self) -> Vec<&'static str> {
        self.rewinders.iter().map(|(name, _)| *name).collect()
    }

    /// The JSON Schemas of every registered aggregate's commands and events.
    pub fn aggregate_schemas(&self) -> &[AggregateSchemas] {
        &self.schemas
    }

    /// The state of `aggregate_type` `aggregate_id` after its events up to
    /// `to_seq` (all when `None`).
    pub async fn rewind(
        &self,
        store: &EventStore,
        aggregate_type: &str,
        aggregate_id: &str,
        to_seq: Option<u64>,
    ) -> Result<Rewound, RewindError> {
        let Some((_, rewinder)) = self.rewinders.iter().find(|(t, _)| *t == aggregate_type) else {
            return Err(RewindError::new(
                RewindErrorKind::InvalidInput,
                format!(
                    "unknown aggregate type {aggregate_type:?}; known: {}",
                    self.aggregate_types().join(", ")
                ),
            ));
        };
        rewinder(store, aggregate_id, to_seq).await
    }

    /// Hosts an in-memory projector; `make` builds a fresh one per start.
    pub fn projector<P: Projector>(mut self, make: impl Fn() -> P + Send + Sync + 'static) -> Self {
        self.projectors
            .push(Arc::new(move |builder: ProjectorRuntimeBuilder| {
                builder.in_memory(make())
            }));
        self
    }

    /// Hosts a persisted projector (state in a KV bucket); `make` builds
    /// its initial state, at start and for every rebuild. Across processes
    /// one instance applies events at a time (see `[projectors] lease_ttl`).
    pub fn persisted_projector<P: PersistedProjector>(
        mut self,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        let make = Arc::new(make);
        self.projectors
            .push(Arc::new(move |builder: ProjectorRuntimeBuilder| {
                let make = make.clone();
                builder.persisted_with(move || make())
            }));
        self
    }

    /// Hosts a PostgreSQL read model (see `jetsource_postgres`) when a
    /// database is configured (`[projectors] postgres_url`); without one it
    /// is not hosted and nothing connects to PostgreSQL. `make` builds it
    /// for every start. Driven like a persisted projector: one instance
    /// applies events at a time, rebuilds fill a new schema.
    pub fn postgres_projector<P: PgProjector>(
        mut self,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        self.postgres.push(Arc::new(
            move |builder: ProjectorRuntimeBuilder, url: &str| builder.postgres(url, make()),
        ));
        self
    }

    /// Hosts a document projection (one KV entry per document, `get` and
    /// `list` queries built in); `make` builds it each time a projector
    /// runtime is built.
    pub fn documents<P: DocumentProjector>(
        mut self,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        self.projectors
            .push(Arc::new(move |builder: ProjectorRuntimeBuilder| {
                builder.documents(make())
            }));
        self
    }

    /// Hosts a persisted projection kept in a store of its own (see
    /// `jetsource_projector::store`); `make` builds the store each time a
    /// projector runtime is built.
    pub fn read_store<S: ReadStore>(
        mut self,
        make: impl Fn() -> S + Send + Sync + 'static,
    ) -> Self {
        self.projectors
            .push(Arc::new(move |builder: ProjectorRuntimeBuilder| {
                builder.read_store(make())
            }));
        self
    }

    /// Hosts a process manager; `make` builds it at each start. `run`
    /// starts it in a process with the projectors role, once the command
    /// runtime is up, and stops it first.
    pub fn process_manager<M: ProcessManager>(
        mut self,
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Self {
        use jetsource_projector::typed::Follows;
        self.process_manager_names.push(ProcessManagerInfo {
            name: make().name(),
            aggregate_types: M::Input::aggregate_types(),
        });
        self.process_managers.push(Arc::new(move |client, config| {
            Box::pin(jetsource_process::start(client, config, make()))
        }));
        self
    }

    /// The process managers it hosts.
    pub fn process_managers(&self) -> &[ProcessManagerInfo] {
        &self.process_manager_names
    }

    /// Starts every process manager it hosts.
    pub async fn start_process_managers(
        &self,
        client: &async_nats::Client,
        config: &ProcessConfig,
    ) -> Result<Vec<RunningProcessManager>, ProcessError> {
        let mut running = Vec::with_capacity(self.process_managers.len());
        for start in &self.process_managers {
            running.push(start(client.clone(), config.clone()).await?);
        }
        Ok(running)
    }

    /// True when it hosts projectors.
    pub fn has_projectors(&self) -> bool {
        !self.projectors.is_empty() || !self.postgres.is_empty()
    }

    /// A projector runtime builder over `client` with every projector
    /// registered.
    pub fn projector_builder(&self, client: async_nats::Client) -> ProjectorRuntimeBuilder {
        self.projectors
            .iter()
            .fold(ProjectorRuntime::builder(client), |builder, register| {
                register(builder)
            })
    }

    /// [`App::projector_builder`] with the PostgreSQL read models too, in
    /// the database at `postgres_url` (none without one). Refused when the
    /// URL does not parse or a name cannot name a schema.
    pub fn projector_builder_for(
        &self,
        client: async_nats::Client,
        postgres_url: Option<&str>,
    ) -> Result<ProjectorRuntimeBuilder, jetsource_projector::ProjectionError> {
        let builder = self.projector_builder(client);
        match postgres_url {
            Some(url) => self
                .postgres
                .iter()
                .try_fold(builder, |builder, register| register(builder, url)),
            None => {
                if !self.postgres.is_empty() {
                    tracing::info!(
                        count = self.postgres.len(),
                        "PostgreSQL read models not hosted: no [projectors] postgres_url"
                    );
                }
                Ok(builder)
            }
        }
    }

    /// A runtime builder over `client` with every registration applied.
    pub fn runtime_builder(&self, client: async_nats::Client) -> RuntimeBuilder {
        self.registrations
            .iter()
            .fold(Runtime::builder(client), |builder, register| {
                register(builder)
            })
    }
}

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The embedded server could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// NATS could not be reached, or is too old.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The feedback role could not start.
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
    /// The projectors failed.
    #[error(transparent)]
    Projector(#[from] jetsource_projector::ProjectionError),
    /// A process manager could not start.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The ordered shutdown did not finish in time (NATS unreachable, most
    /// often): the process stopped without it.
    #[error("the ordered shutdown did not finish within {} s (is NATS reachable?); stopped without it", .0.as_secs())]
    ShutdownTimedOut(std::time::Duration),
}

/// How long the ordered shutdown may take before `run` gives up on it:
/// below the 30 s a container runtime waits before it kills.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// Where the runtime's NATS is: a URL given, or a server it started.
pub struct Nats {
    /// The client URL.
    pub url: String,
    /// The embedded server, when one was started; stopped on drop.
    pub embedded: Option<Embedded>,
}

impl Nats {
    /// The configured URL, or an embedded server started for the purpose.
    pub fn resolve(config: &Config, flag: Option<&str>) -> Result<Nats, ServerError> {
        match config.nats_url(flag) {
            Some(url) => Ok(Nats {
                url,
                embedded: None,
            }),
            None => {
                let embedded = Embedded::start(&config.embedded)?;
                Ok(Nats {
                    url: embedded.client_url(),
                    embedded: Some(embedded),
                })
            }
        }
    }
}

/// Serves `app`'s commands and queries until `shutdown` completes, in the
/// roles `[run] roles` names (all by default), with `/metrics` and the
/// health endpoints when `[observability] metrics_addr` is set.
pub async fn run(
    app: &App,
    config: &Config,
    nats_url: Option<&str>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // One namespace for every role: the runtime, the feedback role and the
    // projectors all take it from the same setting.
    let runtime_config = config.runtime()?;
    let namespace = runtime_config.namespace.clone();
    let feedback_config = config.feedback()?;
    let projector_config = config.projectors()?;
    let roles = config.roles()?;
    // Bound first, so a port in use fails the start before anything runs.
    let listener = match config.metrics_addr()? {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            ConfigError::invalid(
                "observability.metrics_addr",
                format!("cannot listen on {addr}: {e}"),
            )
        })?),
        None => None,
    };
    let console_listener = match config.console_addr()? {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            ConfigError::invalid("console.addr", format!("cannot listen on {addr}: {e}"))
        })?),
        None => None,
    };
    let nats = Nats::resolve(config, nats_url)?;
    let client = crate::auth::connect(config, &nats.url).await?;
    // Each other role reads on a connection of its own: one connection's
    // socket and its one reading task would otherwise carry the commands,
    // their appends and replies, the index's and the projectors' deliveries
    // in one queue, on one core.
    let feedback_client = match roles.feedback && roles.handlers {
        true => crate::auth::connect(config, &nats.url).await?,
        false => client.clone(),
    };
    let projector_client = match roles.projectors && roles.handlers && app.has_projectors() {
        true => crate::auth::connect(config, &nats.url).await?,
        false => client.clone(),
    };
    if roles.handlers {
        check_max_body(&runtime_config, &client)?;
    }
    let mut builder = app.runtime_builder(client.clone()).config(runtime_config);
    // Case 4 spans two roles: the handlers publish rejection notices, the
    // feedback role caches them and answers queries. A process with only
    // the handlers still publishes, for the processes with the feedback role.
    let mut feedback = (feedback_config.cache && (roles.handlers || roles.feedback))
        .then(|| Feedback::new(feedback_client.clone(), feedback_config));
    if let (Some(feedback), true) = (&feedback, roles.handlers) {
        builder = builder.observe(feedback.observer());
    }
    // Every role builds the runtime: it creates or updates the event
    // streams (idempotently) that the feedback role and projectors read.
    let runtime = builder.build().await?;
    let aggregate_types = runtime.aggregate_types();
    if let Some(feedback) = &mut feedback {
        match roles.feedback {
            true => feedback.start(&aggregate_types).await?,
            false => feedback.start_notices(),
        }
    }
    let projectors: Option<ProjectorsHandle> = match roles.projectors && app.has_projectors() {
        true => {
            let postgres_url = config.projectors.postgres_url.as_ref();
            let running = app
                .projector_builder_for(
                    projector_client.clone(),
                    postgres_url.map(crate::auth::Secret::expose),
                )?
                .config(projector_config)
                .build()
                .await?
                .start()
                .await?;
            Some(Arc::new(tokio::sync::Mutex::new(Some(running))))
        }
        false => None,
    };
    let handlers = match roles.handlers {
        true => Some(runtime.start().await?),
        false => None,
    };
    // Readers of the events, like the projectors; after the handlers, whose
    // streams they follow and to whom they send.
    let process_managers = match roles.projectors {
        true => {
            let process_config = ProcessConfig {
                namespace: namespace.clone(),
                master_key: config.master_key()?,
                ..ProcessConfig::default()
            };
            app.start_process_managers(&projector_client, &process_config)
                .await?
        }
        false => Vec::new(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let endpoint = listener.map(|listener| {
        let local = listener.local_addr().ok();
        let probes = Arc::new(Probes {
            client: client.clone(),
            streams: aggregate_types
                .iter()
                .map(|t| namespace.stream_name(t))
                .collect(),
            feedback: feedback
                .as_ref()
                .filter(|_| roles.feedback)
                .map(Feedback::gauges),
            projectors: projectors.clone(),
        });
        jetsource_handlers::metrics::global().set_recording(true);
        tracing::info!(addr = ?local, "serving /metrics, /healthz and /readyz");
        tokio::spawn(crate::observability::serve(
            listener,
            crate::observability::router(probes),
            stopped.clone(),
        ))
    });
    let console = match console_listener {
        Some(listener) => {
            // Its own connection, made as a CLI command makes one: the
            // console acts as `jetsource` on this host would.
            let console = Arc::new(crate::console::Console {
                app: app.clone(),
                client: crate::auth::connect(config, &nats.url).await?,
                namespace: namespace.clone(),
                master_key: config.master_key()?,
                token: config.console.token.clone(),
                stopped: stopped.clone(),
            });
            tracing::info!(addr = ?listener.local_addr().ok(), "serving the console");
            Some(tokio::spawn(crate::observability::serve(
                listener,
                crate::console::router(console),
                stopped.clone(),
            )))
        }
        None => None,
    };
    tracing::info!(
        url = %crate::auth::redact_url(&nats.url),
        server_version = %client.server_info().version,
        aggregates = ?aggregate_types,
        roles = ?config.run.roles,
        subject_prefix = %namespace,
        projectors = projectors.is_some(),
        process_managers = process_managers.len(),
        embedded = nats.embedded.is_some(),
        "jetsource ready"
    );
    shutdown.await;
    let _ = stop.send(true);
    let ordered = async {
        // Process managers first, while the handlers still answer the
        // commands they have in hand; then stop taking commands and finish
        // those in flight, then the readers, then the notices those
        // commands queued.
        for running in process_managers {
            running.stop().await;
        }
        let handled = match handlers {
            Some(running) => running.shutdown().await,
            None => Ok(()),
        };
        let projected = match projectors {
            Some(handle) => match handle.lock().await.take() {
                Some(running) => running.stop().await,
                None => Ok(()),
            },
            None => Ok(()),
        };
        if let Some(endpoint) = endpoint {
            let _ = endpoint.await;
        }
        if let Some(console) = console {
            let _ = console.await;
        }
        if let Some(feedback) = feedback {
            feedback.shutdown().await;
        }
        handled?;
        projected?;
        // Close the connections before the embedded server stops under them.
        let _ = projector_client.drain().await;
        let _ = feedback_client.drain().await;
        let _ = client.drain().await;
        Ok::<(), RunError>(())
    };
    // With NATS gone, draining would wait for it forever.
    let stopped = match tokio::time::timeout(SHUTDOWN_GRACE, ordered).await {
        Ok(stopped) => stopped,
        Err(_) => Err(RunError::ShutdownTimedOut(SHUTDOWN_GRACE)),
    };
    drop(nats);
    stopped
}

/// Refuses a `handlers.max_body` the server could not carry: a command
/// body must fit in the server's `max_payload` together with its headers,
/// or clients would be cut off by the server instead of answered.
pub fn check_max_body(
    runtime: &RuntimeConfig,
    client: &async_nats::Client,
) -> Result<(), ConfigError> {
    let max_payload = client.server_info().max_payload;
    if runtime.max_body_bytes >= max_payload {
        return Err(ConfigError::invalid(
            "handlers.max_body",
            format!(
                "{} bytes must be below the server's max_payload of {max_payload} bytes \
                 (which also carries the headers): lower handlers.max_body or raise \
                 max_payload in the nats-server config",
                runtime.max_body_bytes
            ),
        ));
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
