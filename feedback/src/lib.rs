//! The feedback service (the seed's case 4) and the rest of the feedback
//! beyond the command reply: rejection notices, the error cache,
//! and command status by id.
//!
//! The four feedback cases of a deployment:
//! 1. reply: a command request gets its reply at once ([`FeedbackConfig`]
//!    has no say; `RuntimeConfig::reply` switches it);
//! 2. by id: a fire-and-forget client asks `status.<command_id>` later;
//! 3. silence: no notice leaves the process (`silence = true`);
//! 4. rejections out of the log: each rejection is published as a notice on
//!    core NATS, every feedback instance keeps all notices in a bounded,
//!    expiring cache, and `errors.get` / `errors.list` answer from it.
//!
//! # Layout
//! - [`notice`]: the outcome observer (never waits) and the notice publisher.
//! - [`cache`]: the error cache and the recently-accepted cache (moka).
//! - [`index`]: the durable command index (a consumer per stream into KV).
//! - [`service`]: the subscriptions answering queries, and asking peers.

pub mod cache;
pub mod index;
pub mod notice;
pub mod service;

use jetsource_handlers::error::Error;
use jetsource_handlers::runtime::OutcomeObserver;
use jetsource_schemas::feedback::RejectionNotice;
use jetsource_schemas::settings::{self, InvalidSetting, SettingError};
use jetsource_schemas::Namespace;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use cache::{AcceptedCache, ErrorCache};
pub use index::CommandIndex;

/// Settings of the feedback role. Every field documents its default.
///
/// Deserializes from its fields' names, durations and sizes in the units of
/// [`jetsource_schemas::settings`]; `index_replicas` and `namespace` come
/// from elsewhere (the jetsource settings file has them as `[streams]
/// replicas` and under `[nats]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackConfig {
    /// Run the role: rejection notices, the error cache, the command index
    /// and the queries (default true).
    pub cache: bool,
    /// Case 3: publish no rejection notices (default false). Status by id
    /// still answers accepted commands from the command index.
    pub silence: bool,
    /// How long a rejection stays in the cache (default 15 minutes).
    #[serde(with = "settings::duration")]
    pub error_ttl: Duration,
    /// The cache's bound in bytes (default 64 MiB). Recently accepted
    /// outcomes get a quarter of it again.
    #[serde(with = "settings::size")]
    pub error_capacity: u64,
    /// Notices waiting to be published; more are dropped and counted
    /// (default 65,536).
    pub notices_queue: usize,
    /// How long a miss waits for peers to answer (default 250 ms).
    #[serde(with = "settings::duration")]
    pub peer_timeout: Duration,
    /// The rejections of one `errors.list` page when the query asks for no
    /// limit (default 100; a query may ask for up to 1,000).
    pub list_limit: usize,
    /// How long `status` waits for the command index to catch up with the
    /// event streams before answering a command it does not know as
    /// `pending` rather than `unknown` (default 2 s).
    #[serde(with = "settings::duration")]
    pub index_wait: Duration,
    /// Replicas of the command index bucket (default 1).
    #[serde(skip)]
    pub index_replicas: usize,
    /// The subject prefix of every notice, query and peer subject, of the
    /// event streams indexed and of the index bucket (default: none). The
    /// command runtime must use the same.
    #[serde(skip)]
    pub namespace: Namespace,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            cache: true,
            silence: false,
            error_ttl: Duration::from_secs(15 * 60),
            error_capacity: 64 << 20,
            notices_queue: 65_536,
            peer_timeout: Duration::from_millis(250),
            list_limit: 100,
            index_wait: Duration::from_secs(2),
            index_replicas: 1,
            namespace: Namespace::default(),
        }
    }
}

impl FeedbackConfig {
    /// Checks every setting; the error's kind names the first invalid key.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.error_ttl.is_zero() {
            return Err(SettingError::new(
                InvalidSetting("error_ttl"),
                "must be longer than 0",
            ));
        }
        if self.error_capacity < 4096 {
            return Err(SettingError::new(
                InvalidSetting("error_capacity"),
                "must be at least 4KiB",
            ));
        }
        if self.notices_queue == 0 {
            return Err(SettingError::new(
                InvalidSetting("notices_queue"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// What went wrong starting the feedback role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackErrorKind {
    /// Subscribing or flushing failed.
    Nats,
    /// The command index bucket or its consumers could not be set up or read.
    Index,
}

impl std::fmt::Display for FeedbackErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeedbackErrorKind::Nats => "feedback: NATS failure",
            FeedbackErrorKind::Index => "feedback: command index failure",
        })
    }
}

/// A feedback failure.
pub type FeedbackError = Error<FeedbackErrorKind>;

/// What `/metrics` shows of the feedback role.
#[derive(Clone)]
pub struct FeedbackGauges {
    dropped: Arc<AtomicU64>,
    errors: ErrorCache,
}

impl FeedbackGauges {
    /// Registers the role's counter and gauges, as they are now, into a
    /// registry built for one scrape (the cache's size is read, not recorded).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "jetsource_notices_dropped",
            "Rejection notices dropped because the notice queue was full",
            ConstCounter::new(self.dropped.load(Ordering::Relaxed)),
        );
        // moka counts lazily; settle pending inserts and expiries first.
        self.errors.run_pending_tasks();
        registry.register(
            "jetsource_error_cache_entries",
            "Rejections held in the error cache",
            ConstGauge::new(self.errors.entry_count()),
        );
        registry.register(
            "jetsource_error_cache_bytes",
            "The error cache's weight in bytes (bounded by error_capacity)",
            ConstGauge::new(self.errors.weighted_size()),
        );
    }
}

/// The feedback role of one process: create it, register [`Self::observer`]
/// on the runtime builder, [`Self::start`] it, [`Self::shutdown`] it after
/// the runtime stopped.
pub struct Feedback {
    shared: Arc<service::Shared>,
    queue: mpsc::Sender<RejectionNotice>,
    pending: Option<mpsc::Receiver<RejectionNotice>>,
    dropped: Arc<AtomicU64>,
    /// Whether this process answers status queries: only then are its
    /// accepted outcomes worth keeping (a process with the handlers alone
    /// would fill a cache nobody reads).
    queries: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Feedback {
    /// The role over `client`, not started yet.
    pub fn new(client: async_nats::Client, config: FeedbackConfig) -> Self {
        let (queue, pending) = mpsc::channel(config.notices_queue.max(1));
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(service::Shared {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            errors: ErrorCache::new(config.error_ttl, config.error_capacity),
            accepted: AcceptedCache::new(config.error_ttl, config.error_capacity / 4),
            index: tokio::sync::OnceCell::new(),
            started: Instant::now(),
            received: AtomicU64::new(0),
            client,
            config,
        });
        Feedback {
            shared,
            queue,
            pending: Some(pending),
            dropped: Arc::new(AtomicU64::new(0)),
            queries: Arc::new(AtomicBool::new(false)),
            stop,
            tasks: Vec::new(),
        }
    }

    /// The observer to register with `RuntimeBuilder::observe`.
    pub fn observer(&self) -> OutcomeObserver {
        notice::observer(
            self.queue.clone(),
            self.dropped.clone(),
            self.shared.accepted.clone(),
            self.queries.clone(),
            !self.shared.config.silence,
        )
    }

    /// Opens the command index, follows `aggregate_types`' streams,
    /// subscribes to notices, queries and peers, and starts publishing
    /// notices. Returns once every subscription is registered with the server.
    pub async fn start(&mut self, aggregate_types: &[&'static str]) -> Result<(), FeedbackError> {
        let js = async_nats::jetstream::new(self.shared.client.clone());
        let namespace = &self.shared.config.namespace;
        let streams = aggregate_types
            .iter()
            .map(|t| namespace.stream_name(t))
            .collect();
        let index = CommandIndex::open(&js, namespace, self.shared.config.index_replicas)
            .await?
            .follows(streams);
        for aggregate_type in aggregate_types {
            index::prepare(&js, namespace, aggregate_type).await?;
        }
        let _ = self.shared.index.set(index.clone());
        for &aggregate_type in aggregate_types {
            self.tasks.push(tokio::spawn(index::follow(
                js.clone(),
                namespace.clone(),
                index.clone(),
                aggregate_type,
                self.stop.subscribe(),
            )));
        }
        self.tasks
            .extend(service::subscribe(self.shared.clone(), &self.stop).await?);
        self.queries.store(true, Ordering::Relaxed);
        // `flush` only empties the socket buffer; a request on the same
        // connection returns after the server has processed the
        // subscriptions, so queries sent once `start` returns find them.
        js.query_account()
            .await
            .map_err(|e| Error::with_source(FeedbackErrorKind::Nats, e))?;
        self.start_notices();
        Ok(())
    }

    /// Starts only publishing the notices the observer queues: what a
    /// process running the handlers without the feedback role needs, so
    /// that the processes with the role learn its rejections.
    pub fn start_notices(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.tasks.push(tokio::spawn(notice::publish(
                self.shared.client.clone(),
                self.shared.config.namespace.clone(),
                pending,
                self.stop.subscribe(),
            )));
        }
    }

    /// Stops every task; queued notices are published first.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Notices dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Notices received (from any process) into this instance's cache.
    pub fn notices_received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// Gauges of this instance for `/metrics`, readable after it stops.
    pub fn gauges(&self) -> FeedbackGauges {
        FeedbackGauges {
            dropped: self.dropped.clone(),
            errors: self.shared.errors.clone(),
        }
    }

    /// This instance's error cache.
    pub fn error_cache(&self) -> &ErrorCache {
        &self.shared.errors
    }

    /// Answers `errors.get.<command_id>` as this instance would.
    pub async fn errors_get(
        &self,
        command_id: &str,
    ) -> jetsource_schemas::feedback::FeedbackAnswer {
        self.shared.errors_get(command_id).await
    }

    /// Answers `errors.list.<type>.<id>` as this instance would, one page
    /// (ids that are not tokens list nothing; on the wire they are
    /// `bad_request`).
    pub async fn errors_list(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        page: &jetsource_schemas::page::PageRequest,
    ) -> Result<jetsource_schemas::feedback::RejectionList, jetsource_schemas::page::PageError>
    {
        self.shared
            .errors_list(aggregate_type, aggregate_id, page)
            .await
    }

    /// Answers `status.<command_id>` as this instance would.
    pub async fn status(&self, command_id: &str) -> jetsource_schemas::feedback::FeedbackAnswer {
        self.shared.status(command_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_their_key() {
        assert!(FeedbackConfig::default().validate().is_ok());
        /// Makes one setting invalid.
        type Spoil = fn(&mut FeedbackConfig);
        let cases: [(&str, Spoil); 3] = [
            ("error_ttl", |c| c.error_ttl = Duration::ZERO),
            ("error_capacity", |c| c.error_capacity = 4095),
            ("notices_queue", |c| c.notices_queue = 0),
        ];
        for (key, spoil) in cases {
            let mut config = FeedbackConfig::default();
            spoil(&mut config);
            let e = config.validate().expect_err(key);
            assert_eq!(e.kind(), InvalidSetting(key));
        }
    }

    #[test]
    fn durations_and_sizes_read_in_human_units() {
        let config: FeedbackConfig =
            serde_json::from_str(r#"{"error_ttl": "1m", "error_capacity": "8KiB"}"#)
                .expect("valid");
        assert_eq!(config.error_ttl, Duration::from_secs(60));
        assert_eq!(config.error_capacity, 8192);
        assert!(serde_json::from_str::<FeedbackConfig>(r#"{"index_replicas": 3}"#).is_err());
    }
}
