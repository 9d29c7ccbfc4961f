//! An application: the aggregates and projectors it hosts, and `run`,
//! which serves them.
//!
//! The `jetsource` binary is `App::new().aggregate::<BlogPost>()` handed to
//! [`crate::cli::main`]; a user's binary is the same with its own
//! aggregates, and gets the same CLI.

use crate::config::{Config, ConfigError};
use crate::embedded::Embedded;
use crate::feedback::{Feedback, FeedbackError};
use jetsource_handlers::connect::ConnectError;
use jetsource_handlers::runtime::{RuntimeBuilder, RuntimeError};
use jetsource_handlers::server::ServerError;
use jetsource_handlers::RuntimeConfig;
use jetsource_handlers::{Aggregate, Runtime};
use jetsource_projector::{
    PersistedProjector, Projector, ProjectorRuntime, ProjectorRuntimeBuilder,
};
use std::future::Future;
use std::sync::Arc;

type Registration = Arc<dyn Fn(RuntimeBuilder) -> RuntimeBuilder + Send + Sync>;
type ProjectorRegistration =
    Arc<dyn Fn(ProjectorRuntimeBuilder) -> ProjectorRuntimeBuilder + Send + Sync>;

/// The aggregates and projectors an application hosts.
#[derive(Clone, Default)]
pub struct App {
    registrations: Vec<Registration>,
    projectors: Vec<ProjectorRegistration>,
}

impl App {
    /// An application with no aggregates yet.
    pub fn new() -> Self {
        App::default()
    }

    /// Hosts aggregate type `A`.
    pub fn aggregate<A: Aggregate>(mut self) -> Self {
        self.registrations
            .push(Arc::new(|builder: RuntimeBuilder| builder.aggregate::<A>()));
        self
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

    /// True when it hosts projectors.
    pub fn has_projectors(&self) -> bool {
        !self.projectors.is_empty()
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
    Projector(#[from] jetsource_projector::RunError),
}

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

/// Serves `app`'s commands and queries until `shutdown` completes.
pub async fn run(
    app: &App,
    config: &Config,
    nats_url: Option<&str>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let runtime_config = config.runtime()?;
    let feedback_config = config.feedback()?;
    let projector_config = config.projectors()?;
    let nats = Nats::resolve(config, nats_url)?;
    let client = crate::auth::connect(config, &nats.url).await?;
    check_max_body(&runtime_config, &client)?;
    let mut builder = app.runtime_builder(client.clone()).config(runtime_config);
    // The feedback role (case 4 and status by id) runs beside the handlers.
    let mut feedback = feedback_config
        .cache
        .then(|| Feedback::new(client.clone(), feedback_config));
    if let Some(feedback) = &feedback {
        builder = builder.observe(feedback.observer());
    }
    let runtime = builder.build().await?;
    if let Some(feedback) = &mut feedback {
        feedback.start(&runtime.aggregate_types()).await?;
    }
    // Projectors start after the command side has created the streams.
    let projectors = match app.has_projectors() {
        true => Some(
            app.projector_builder(client.clone())
                .config(projector_config)
                .build()
                .await?,
        ),
        false => None,
    };
    tracing::info!(
        url = %crate::auth::redact_url(&nats.url),
        server_version = %client.server_info().version,
        aggregates = ?runtime.aggregate_types(),
        projectors = projectors.is_some(),
        embedded = nats.embedded.is_some(),
        "jetsource ready"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let served = tokio::try_join!(
        async {
            runtime.run(until_stopped(stopped.clone())).await?;
            Ok::<(), RunError>(())
        },
        async {
            if let Some(projectors) = projectors {
                projectors.run(until_stopped(stopped.clone())).await?;
            }
            Ok::<(), RunError>(())
        },
        async {
            shutdown.await;
            let _ = stop.send(true);
            Ok::<(), RunError>(())
        },
    );
    if let Some(feedback) = feedback {
        feedback.shutdown().await;
    }
    served?;
    // Close the connection before the embedded server stops under it.
    let _ = client.drain().await;
    drop(nats);
    Ok(())
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
        return Err(ConfigError::Invalid {
            setting: "handlers.max_body",
            message: format!(
                "{} bytes must be below the server's max_payload of {max_payload} bytes \
                 (which also carries the headers): lower handlers.max_body or raise \
                 max_payload in the nats-server config",
                runtime.max_body_bytes
            ),
        });
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
