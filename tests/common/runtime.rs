//! jetsource in this process: the command runtime (with the feedback role
//! when asked), projectors, and all of `jetsource run` (`app::run`).
//!
//! The library's handles of running things are held here, so the tests
//! never name them.

use super::server::connect;
use super::wait::{eventually, within, DEADLINE, HANG};
use jetsource::app::{self, App, RunError};
use jetsource::config::Config;
use jetsource::feedback::{Feedback, FeedbackConfig};
use jetsource::handlers::runtime::{RunningRuntime, RuntimeBuilder, RuntimeError};
use jetsource::handlers::store::{EventStore, StoredEvent};
use jetsource::projector::{Positions, ProjectorRuntimeBuilder, StatusReport};
use jetsource::RuntimeConfig;
use jetsource_reference::blog::BlogPost;

/// The blog post aggregate alone.
pub fn blog_app() -> App {
    App::new().aggregate::<BlogPost>()
}

/// The application the `jetsource` binary hosts: the blog and account
/// aggregates, the `blogposts` projection, scheduled publishing and the
/// payments saga.
pub fn reference_app() -> App {
    App::new()
        .aggregate::<BlogPost>()
        .aggregate::<jetsource_reference::account::Account>()
        .documents(|| jetsource_reference::blogposts::BlogPosts)
        .process_manager(|| jetsource_reference::publishing::ScheduledPublishing)
        .process_manager(|| jetsource_reference::payments::Payments)
}

/// A command runtime on its own connection, serving (subscribed, and
/// confirmed by the server) from the moment it is returned; with the
/// feedback role when started [`Jetsource::with_feedback`].
pub struct Jetsource {
    running: RunningRuntime,
    feedback: Option<Feedback>,
    /// The runtime's event store.
    pub store: EventStore,
    /// The runtime's connection.
    pub client: async_nats::Client,
}

impl Jetsource {
    /// The blog aggregate, default settings.
    pub async fn start(url: &str) -> Self {
        Self::start_with(url, RuntimeConfig::default()).await
    }

    /// The blog aggregate with `config`.
    pub async fn start_with(url: &str, config: RuntimeConfig) -> Self {
        Self::start_app(url, &blog_app(), config).await
    }

    /// The aggregates of `app` with `config`.
    pub async fn start_app(url: &str, app: &App, config: RuntimeConfig) -> Self {
        Self::start_from(url, config, |client| app.runtime_builder(client)).await
    }

    /// What `builder` registers on the runtime's connection, with `config`.
    pub async fn start_from(
        url: &str,
        config: RuntimeConfig,
        builder: impl FnOnce(async_nats::Client) -> RuntimeBuilder,
    ) -> Self {
        Self::try_start(url, builder, config, None)
            .await
            .unwrap_or_else(|e| panic!("the runtime did not start: {e}"))
    }

    /// The blog aggregate and the feedback role, as `jetsource run` starts
    /// them; `publish` false leaves the notice publisher (and the feedback
    /// queries) off, so that its queue fills.
    pub async fn with_feedback(
        url: &str,
        feedback: FeedbackConfig,
        config: RuntimeConfig,
        publish: bool,
    ) -> Self {
        Self::with_feedback_app(url, &blog_app(), feedback, config, publish).await
    }

    /// The aggregates of `app` and the feedback role, as
    /// [`Jetsource::with_feedback`] starts them.
    pub async fn with_feedback_app(
        url: &str,
        app: &App,
        feedback: FeedbackConfig,
        config: RuntimeConfig,
        publish: bool,
    ) -> Self {
        let builder = |client| app.runtime_builder(client);
        Self::try_start(url, builder, config, Some((feedback, publish)))
            .await
            .unwrap_or_else(|e| panic!("the runtime did not start: {e}"))
    }

    async fn try_start(
        url: &str,
        builder: impl FnOnce(async_nats::Client) -> RuntimeBuilder,
        config: RuntimeConfig,
        feedback: Option<(FeedbackConfig, bool)>,
    ) -> Result<Self, RuntimeError> {
        let client = connect(url).await;
        let mut feedback =
            feedback.map(|(config, publish)| (Feedback::new(client.clone(), config), publish));
        let mut builder = builder(client.clone()).config(config);
        if let Some((feedback, _)) = &feedback {
            builder = builder.observe(feedback.observer());
        }
        let runtime = builder.build().await?;
        if let Some((feedback, true)) = &mut feedback {
            feedback
                .start(&runtime.aggregate_types())
                .await
                .expect("feedback starts");
        }
        let feedback = feedback.map(|(feedback, _)| feedback);
        let store = runtime.store().clone();
        // Subscribed (and confirmed by the server) when this returns.
        let running = runtime.start().await?;
        Ok(Jetsource {
            running,
            feedback,
            store,
            client,
        })
    }

    /// The stored events of blog post `id`.
    pub async fn events_of(&self, id: &str) -> Vec<StoredEvent> {
        self.store.load("blogpost", id, 0).await.expect("load")
    }

    /// The feedback role.
    pub fn feedback(&self) -> &Feedback {
        self.feedback
            .as_ref()
            .expect("started with the feedback role")
    }

    /// The feedback role, to start it late.
    pub fn feedback_mut(&mut self) -> &mut Feedback {
        self.feedback
            .as_mut()
            .expect("started with the feedback role")
    }

    /// Stops taking commands, finishes those in flight, then stops the
    /// feedback role.
    pub async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
        if let Some(feedback) = self.feedback {
            feedback.shutdown().await;
        }
    }
}

/// Builds and starts a runtime hosting the reference aggregates, retrying
/// while JetStream is still electing its leaders (clusters).
pub async fn start_all(url: &str, config: RuntimeConfig) -> Jetsource {
    let app = reference_app();
    eventually("the runtime's start", DEADLINE, || {
        let (app, config) = (&app, config.clone());
        async move {
            let builder = |client| app.runtime_builder(client);
            match Jetsource::try_start(url, builder, config, None).await {
                Ok(started) => Some(started),
                Err(e) => {
                    eprintln!("runtime not ready yet: {e}");
                    None
                }
            }
        }
    })
    .await
}

/// Projectors applying events and answering queries.
pub struct Projectors {
    running: jetsource::projector::RunningProjectors,
}

impl Projectors {
    /// Builds and starts what `builder` registered.
    pub async fn start(builder: ProjectorRuntimeBuilder) -> Self {
        Self::try_start(builder)
            .await
            .unwrap_or_else(|e| panic!("the projectors did not start: {e}"))
    }

    /// Builds and starts what `builder` registered, or says why not.
    pub async fn try_start(
        builder: ProjectorRuntimeBuilder,
    ) -> Result<Self, jetsource::projector::ProjectionError> {
        let running = builder.build().await?.start().await?;
        Ok(Projectors { running })
    }

    /// The positions projection `name` has applied, as a watch.
    pub fn applied(&self, name: &str) -> tokio::sync::watch::Receiver<Positions> {
        self.running.applied(name).expect("registered")
    }

    /// Waits until projection `name` has applied `stream` up to `seq`;
    /// fails when it makes no progress for [`HANG`] (a slow machine takes
    /// longer over a large stream, a stuck projection never moves).
    pub async fn wait_applied(&self, name: &str, stream: &str, seq: u64) {
        let mut applied = self.applied(name);
        let at = |p: &Positions| p.get(stream).copied().unwrap_or(0);
        loop {
            let now = at(&applied.borrow_and_update());
            if now >= seq {
                return;
            }
            within(
                format!("{name} applying {stream} #{seq} (stuck at #{now})"),
                HANG,
                applied.wait_for(|p| at(p) > now),
            )
            .await
            .expect("the projector runs");
        }
    }

    /// Every projector's status.
    pub async fn status(&self) -> StatusReport {
        self.running.status().await
    }

    /// Stops at once, releasing nothing, as a crash would.
    pub fn abort(self) {
        self.running.abort();
    }

    /// Stops, releasing leases and flushing replies.
    pub async fn stop(self) -> Result<(), jetsource::projector::ProjectionError> {
        self.running.stop().await
    }
}

/// `jetsource run` in a task of this process (`app::run`), until
/// [`InProcessRun::stop`].
pub struct InProcessRun {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl InProcessRun {
    /// Runs `app` with `config` on the server at `url` (or as `config`
    /// says, when `None`).
    pub fn spawn(app: App, config: Config, url: Option<&str>) -> Self {
        let url = url.map(str::to_string);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app::run(&app, &config, url.as_deref(), async {
                let _ = stopped.await;
            })
            .await
        });
        InProcessRun { stop, task }
    }

    /// True once `app::run` returned (it failed, or was stopped).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks it to stop and returns how `app::run` ended.
    pub async fn stop(self) -> Result<(), RunError> {
        let _ = self.stop.send(());
        self.task.await.expect("the run task")
    }
}
