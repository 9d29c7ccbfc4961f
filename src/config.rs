//! Settings: `config/jetsource.toml` (or `--config`), then environment
//! variables, then flags. Every setting has a default; unknown keys and
//! invalid values fail at start with a message naming the setting.

use crate::auth::{Auth, AuthConfig, TlsConfig};
use crate::units::{parse_bytes, parse_duration};
use jetsource_feedback::FeedbackConfig;
use jetsource_handlers::command::HandlerConfig;
use jetsource_handlers::runtime::RuntimeConfig;
use jetsource_handlers::snapshot::SnapshotConfig;
use jetsource_handlers::store::{GroupCommitConfig, GroupCommitMode, StreamSettings};
use jetsource_projector::ProjectorConfig;
use jetsource_schemas::Namespace;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config/jetsource.toml";
/// Names the config file.
pub const CONFIG_ENV: &str = "JETSOURCE_CONFIG";
/// The NATS URL, before `NATS_URL` and the config file.
pub const URL_ENV: &str = "JETSOURCE_NATS_URL";
/// The subject prefix, before the config file.
pub const SUBJECT_PREFIX_ENV: &str = "JETSOURCE_SUBJECT_PREFIX";

/// All settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where NATS is.
    pub nats: NatsConfig,
    /// The embedded nats-server, used when no URL is set.
    pub embedded: EmbeddedConfig,
    /// Command handling.
    pub handlers: HandlersConfig,
    /// Event streams.
    pub streams: StreamsConfig,
    /// Feedback: replies, rejection notices, the error cache.
    pub feedback: FeedbackSection,
    /// Projectors and queries.
    pub projectors: ProjectorsConfig,
    /// What `jetsource run` does.
    pub run: RunConfig,
    /// Metrics and health over HTTP.
    pub observability: ObservabilityConfig,
}

/// The roles a `jetsource run` process can play.
pub const ROLES: [&str; 3] = ["handlers", "feedback", "projectors"];

/// `[run]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The roles this process plays: any of `handlers`, `feedback`,
    /// `projectors`. Default all three.
    pub roles: Vec<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            roles: ROLES.iter().map(|r| r.to_string()).collect(),
        }
    }
}

/// The roles chosen, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Command handlers (queue group on `cmd.>`, creates the streams).
    pub handlers: bool,
    /// Rejection notices, the error cache, status by id.
    pub feedback: bool,
    /// Projectors and their queries.
    pub projectors: bool,
}

/// `[observability]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served over HTTP, for
    /// example `127.0.0.1:9464`, or `off` (the default: several processes
    /// on one host never collide on a port; a port in use fails the start).
    pub metrics_addr: String,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            metrics_addr: "off".into(),
        }
    }
}

/// Settings that environment variables override, as (variable, setting).
pub const ENV_OVERRIDES: [(&str, &str); 11] = [
    (SUBJECT_PREFIX_ENV, "nats.subject_prefix"),
    ("JETSOURCE_ROLES", "run.roles"),
    ("JETSOURCE_METRICS_ADDR", "observability.metrics_addr"),
    ("JETSOURCE_DATA_DIR", "embedded.data_dir"),
    ("JETSOURCE_QUEUE_GROUP", "handlers.queue_group"),
    ("JETSOURCE_MAX_IN_FLIGHT", "handlers.max_in_flight"),
    ("JETSOURCE_STORE_TIMEOUT", "handlers.store_timeout"),
    ("JETSOURCE_STREAM_REPLICAS", "streams.replicas"),
    ("JETSOURCE_ERROR_TTL", "feedback.error_ttl"),
    ("JETSOURCE_ERROR_CAPACITY", "feedback.error_capacity"),
    ("JETSOURCE_QUERY_WAIT", "projectors.query_wait"),
];

/// `[nats]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// The server URL. Unset (the default): start the embedded server.
    pub url: Option<String>,
    /// The prefix of every subject, and the mark on every stream and bucket
    /// name, jetsource uses, so that several applications share one NATS
    /// account. Default `""`: none. See [`Namespace::new`] for the rules.
    pub subject_prefix: String,
    /// `[nats.auth]`: credentials.
    pub auth: AuthConfig,
    /// `[nats.tls]`: TLS.
    pub tls: TlsConfig,
}

/// `[embedded]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// Where the embedded server keeps its store (`<data_dir>/nats`) and
    /// records its URL (`<data_dir>/nats.url`). Default `data`.
    pub data_dir: PathBuf,
    /// The preferred port; a free one is used when it is taken. Default 4222.
    pub port: u16,
    /// Sync every write to disk before acknowledging it. Default true.
    pub sync_always: bool,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            data_dir: PathBuf::from("data"),
            port: 4222,
            sync_always: true,
        }
    }
}

/// `[handlers]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandlersConfig {
    /// Queue group of the command subscribers. Default `jetsource-handlers`.
    pub queue_group: String,
    /// Commands processed at once. Default 4096.
    pub max_in_flight: usize,
    /// The largest command body. Default `960KiB`: below the 1 MiB
    /// `max_payload` nats-server has by default, with room for the headers.
    pub max_body: String,
    /// How long one store request may take. Default `5s`.
    pub store_timeout: String,
    /// Aggregates kept in memory. Default 100000.
    pub cache_capacity: u64,
    /// An unused aggregate leaves memory after this. Default `10m`.
    pub cache_idle: String,
    /// Attempts after concurrency conflicts. Default 16.
    pub conflict_retries: u32,
    /// Attempts after store trouble. Default 5.
    pub unavailable_retries: u32,
    /// First back-off after store trouble. Default `50ms`.
    pub retry_backoff: String,
    /// Events an aggregate goes past its last snapshot before the next
    /// (for aggregates that take snapshots). Default 1000; 0: never.
    pub snapshot_every: u64,
    /// Whether concurrent commands on different aggregates share one atomic
    /// batch (group commit): `auto` (the default: whichever measures faster
    /// on the server at hand), `on`, `off`. `true`/`false` read as `on`/`off`.
    pub group_commit: GroupCommitSetting,
    /// Messages in one shared batch at most (1 to 1000). Default 256.
    pub batch_max_messages: usize,
    /// How long a batch may wait for more commands while another of its
    /// stream is in flight. Default `0ms`: send what is queued.
    pub batch_max_wait: String,
    /// Shared batches in flight per stream (1 to 50). Default 4.
    pub batch_max_in_flight: usize,
}

impl Default for HandlersConfig {
    fn default() -> Self {
        HandlersConfig {
            queue_group: "jetsource-handlers".into(),
            max_in_flight: 4096,
            max_body: "960KiB".into(),
            store_timeout: "5s".into(),
            cache_capacity: 100_000,
            cache_idle: "10m".into(),
            conflict_retries: 16,
            unavailable_retries: 5,
            retry_backoff: "50ms".into(),
            snapshot_every: 1_000,
            group_commit: GroupCommitSetting::default(),
            batch_max_messages: 256,
            batch_max_wait: "0ms".into(),
            batch_max_in_flight: 4,
        }
    }
}

/// `[handlers] group_commit`: a word, or a boolean as older settings
/// files wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum GroupCommitSetting {
    /// `auto`, `on` or `off`.
    Word(String),
    /// `true` (`on`) or `false` (`off`).
    Switch(bool),
}

impl Default for GroupCommitSetting {
    fn default() -> Self {
        GroupCommitSetting::Word("auto".into())
    }
}

impl GroupCommitSetting {
    /// The mode it names.
    pub fn mode(&self) -> Result<GroupCommitMode, String> {
        match self {
            GroupCommitSetting::Switch(true) => Ok(GroupCommitMode::On),
            GroupCommitSetting::Switch(false) => Ok(GroupCommitMode::Off),
            GroupCommitSetting::Word(word) => match word.trim().to_ascii_lowercase().as_str() {
                "auto" => Ok(GroupCommitMode::Auto),
                "on" => Ok(GroupCommitMode::On),
                "off" => Ok(GroupCommitMode::Off),
                _ => Err(format!("{word:?} is not auto, on or off")),
            },
        }
    }
}

/// `[streams]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// Replicas per event stream. Default 1.
    pub replicas: usize,
    /// Refuse deletes (one-way). Default true.
    pub deny_delete: bool,
    /// Refuse purges (one-way). Default true.
    pub deny_purge: bool,
    /// Optional size cap; appends past it are refused, never history deleted.
    pub max_bytes: Option<String>,
    /// JetStream's dedupe window. Default `2m`.
    pub duplicate_window: String,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            replicas: 1,
            deny_delete: true,
            deny_purge: true,
            max_bytes: None,
            duplicate_window: "2m".into(),
        }
    }
}

/// `[feedback]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackSection {
    /// Case 1: reply to command requests. Default true.
    pub reply: bool,
    /// Case 4: rejection notices, the error cache, status by id. Default true.
    pub cache: bool,
    /// Case 3: publish no rejection notices. Default false.
    pub silence: bool,
    /// How long a rejection stays queryable. Default `15m`.
    pub error_ttl: String,
    /// The error cache's memory bound. Default `64MiB`.
    pub error_capacity: String,
    /// Notices waiting to be published; more are dropped and counted. Default 65536.
    pub notices_queue: usize,
    /// How long a cache miss waits for other instances. Default `250ms`.
    pub peer_timeout: String,
    /// How long `status` waits for the command index to catch up before it
    /// answers `pending` for a command it does not know. Default `2s`.
    pub index_wait: String,
    /// The most rejections `errors.list` answers. Default 100.
    pub list_limit: usize,
}

impl Default for FeedbackSection {
    fn default() -> Self {
        FeedbackSection {
            reply: true,
            cache: true,
            silence: false,
            error_ttl: "15m".into(),
            error_capacity: "64MiB".into(),
            notices_queue: 65_536,
            peer_timeout: "250ms".into(),
            index_wait: "2s".into(),
            list_limit: 100,
        }
    }
}

/// `[projectors]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorsConfig {
    /// How long a query with `After-Seq` waits for its position. Default `5s`.
    pub query_wait: String,
    /// Queue group of the query subscribers. Default `jetsource-queries`.
    pub queue_group: String,
    /// Events applied (and, when persisted, stored) together. Default 256.
    pub batch: usize,
    /// Persisted projectors: JetStream's redelivery timer. Default `30s`.
    pub ack_wait: String,
    /// Persisted projectors: unacknowledged events at most. Default 1000.
    pub max_ack_pending: i64,
    /// Retries of a transiently failing apply before halting. Default 5.
    pub apply_retries: u32,
    /// First back-off between those retries. Default `100ms`.
    pub retry_backoff: String,
    /// Persisted: failed deliveries of an event before it is parked. Default 5.
    pub max_deliveries: u32,
    /// Persisted: `stop` or `skip` once an event is parked. Default `stop`.
    pub on_poison: jetsource_projector::OnPoison,
    /// Persisted: the active instance's lease TTL. Default `5s`.
    pub lease_ttl: String,
}

impl Default for ProjectorsConfig {
    fn default() -> Self {
        ProjectorsConfig {
            query_wait: "5s".into(),
            queue_group: "jetsource-queries".into(),
            batch: 256,
            ack_wait: "30s".into(),
            max_ack_pending: 1000,
            apply_retries: 5,
            retry_backoff: "100ms".into(),
            max_deliveries: 5,
            on_poison: jetsource_projector::OnPoison::Stop,
            lease_ttl: "5s".into(),
        }
    }
}

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A value is invalid.
    #[error("setting {setting}: {message}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A parse error by line, without the quoted source line toml adds: that
/// line may hold a token or a password.
fn describe(text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", error.message())
        }
        None => error.message().to_string(),
    }
}

fn invalid(setting: &'static str) -> impl Fn(String) -> ConfigError {
    move |message| ConfigError::Invalid { setting, message }
}

impl Config {
    /// Reads `path`, or `$JETSOURCE_CONFIG`, or [`DEFAULT_CONFIG_FILE`] when
    /// it exists, or the defaults; then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env_path = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let (path, required) = match (path, env_path) {
            (Some(p), _) => (p.to_path_buf(), true),
            (None, Some(p)) => (p, true),
            (None, None) => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let config = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<Config>(&text).map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                message: describe(&text, &e),
            })?,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let mut config = config;
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting; the error names the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.namespace()?;
        self.runtime()?;
        self.auth()?;
        self.feedback()?;
        self.projectors()?;
        self.roles()?;
        self.metrics_addr()?;
        Ok(())
    }

    /// Overrides settings from the environment ([`ENV_OVERRIDES`]), read
    /// through `var`; empty values are ignored.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let number = |name: &str, setting: &'static str| -> Result<Option<u64>, ConfigError> {
            get(name)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| {
                        invalid(setting)(format!("{name}={v:?} is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        if let Some(v) = get(SUBJECT_PREFIX_ENV) {
            self.nats.subject_prefix = v;
        }
        if let Some(v) = get("JETSOURCE_ROLES") {
            self.run.roles = v.split(',').map(|r| r.trim().to_string()).collect();
        }
        if let Some(v) = get("JETSOURCE_METRICS_ADDR") {
            self.observability.metrics_addr = v;
        }
        if let Some(v) = get("JETSOURCE_DATA_DIR") {
            self.embedded.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("JETSOURCE_QUEUE_GROUP") {
            self.handlers.queue_group = v;
        }
        if let Some(n) = number("JETSOURCE_MAX_IN_FLIGHT", "handlers.max_in_flight")? {
            self.handlers.max_in_flight = usize::try_from(n)
                .map_err(|_| invalid("handlers.max_in_flight")("too large".into()))?;
        }
        if let Some(v) = get("JETSOURCE_STORE_TIMEOUT") {
            self.handlers.store_timeout = v;
        }
        if let Some(n) = number("JETSOURCE_STREAM_REPLICAS", "streams.replicas")? {
            self.streams.replicas =
                usize::try_from(n).map_err(|_| invalid("streams.replicas")("too large".into()))?;
        }
        if let Some(v) = get("JETSOURCE_ERROR_TTL") {
            self.feedback.error_ttl = v;
        }
        if let Some(v) = get("JETSOURCE_ERROR_CAPACITY") {
            self.feedback.error_capacity = v;
        }
        if let Some(v) = get("JETSOURCE_QUERY_WAIT") {
            self.projectors.query_wait = v;
        }
        Ok(())
    }

    /// The roles of `jetsource run`, checked: known names, at least one.
    pub fn roles(&self) -> Result<Roles, ConfigError> {
        let mut roles = Roles {
            handlers: false,
            feedback: false,
            projectors: false,
        };
        for role in &self.run.roles {
            match role.trim() {
                "handlers" => roles.handlers = true,
                "feedback" => roles.feedback = true,
                "projectors" => roles.projectors = true,
                other => {
                    return Err(invalid("run.roles")(format!(
                        "unknown role {other:?}; known: {}",
                        ROLES.join(", ")
                    )))
                }
            }
        }
        if !(roles.handlers || roles.feedback || roles.projectors) {
            return Err(invalid("run.roles")("name at least one role".into()));
        }
        Ok(roles)
    }

    /// The metrics and health address; `None` when `off`.
    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let addr = self.observability.metrics_addr.trim();
        if addr.eq_ignore_ascii_case("off") || addr.is_empty() {
            return Ok(None);
        }
        addr.parse().map(Some).map_err(|_| {
            invalid("observability.metrics_addr")(format!(
                "{addr:?} is not an address like 127.0.0.1:9464 (or \"off\")"
            ))
        })
    }

    /// The NATS URL: `flag`, then `$JETSOURCE_NATS_URL`, `$NATS_URL`, then
    /// the config file. `None`: use the embedded server.
    pub fn nats_url(&self, flag: Option<&str>) -> Option<String> {
        flag.map(str::to_string)
            .or_else(|| std::env::var(URL_ENV).ok().filter(|s| !s.is_empty()))
            .or_else(|| std::env::var("NATS_URL").ok().filter(|s| !s.is_empty()))
            .or_else(|| self.nats.url.clone())
    }

    /// The subject prefix (`nats.subject_prefix`, `$JETSOURCE_SUBJECT_PREFIX`
    /// or `--subject-prefix`), checked.
    pub fn namespace(&self) -> Result<Namespace, ConfigError> {
        Namespace::new(&self.nats.subject_prefix)
            .map_err(|e| invalid("nats.subject_prefix")(e.to_string()))
    }

    /// The credentials and TLS settings: `[nats.auth]` and `[nats.tls]`,
    /// each overridden by its `JETSOURCE_NATS_*` environment variable.
    pub fn auth(&self) -> Result<Auth, ConfigError> {
        Auth::resolve(&self.nats.auth, &self.nats.tls, |name| {
            std::env::var(name).ok()
        })
    }

    /// The command runtime's settings.
    pub fn runtime(&self) -> Result<RuntimeConfig, ConfigError> {
        let h = &self.handlers;
        let s = &self.streams;
        if h.max_in_flight == 0 {
            return Err(invalid("handlers.max_in_flight")(
                "must be at least 1".into(),
            ));
        }
        if s.replicas == 0 || s.replicas > 5 {
            return Err(invalid("streams.replicas")("must be 1 to 5".into()));
        }
        jetsource_schemas::token::validate("queue group", &h.queue_group)
            .map_err(|e| invalid("handlers.queue_group")(e.to_string()))?;
        let max_body = parse_bytes(&h.max_body).map_err(invalid("handlers.max_body"))?;
        if !(1..=1000).contains(&h.batch_max_messages) {
            return Err(invalid("handlers.batch_max_messages")(
                "must be 1 to 1000 (JetStream's limit per atomic batch)".into(),
            ));
        }
        if !(1..=50).contains(&h.batch_max_in_flight) {
            return Err(invalid("handlers.batch_max_in_flight")(
                "must be 1 to 50 (JetStream's limit per stream)".into(),
            ));
        }
        let max_bytes = match &s.max_bytes {
            Some(text) => Some(
                i64::try_from(parse_bytes(text).map_err(invalid("streams.max_bytes"))?)
                    .map_err(|_| invalid("streams.max_bytes")("too large".into()))?,
            ),
            None => None,
        };
        Ok(RuntimeConfig {
            queue_group: h.queue_group.clone(),
            max_in_flight: h.max_in_flight,
            max_body_bytes: usize::try_from(max_body)
                .map_err(|_| invalid("handlers.max_body")("too large".into()))?,
            store_timeout: parse_duration(&h.store_timeout)
                .map_err(invalid("handlers.store_timeout"))?,
            handler: HandlerConfig {
                cache_capacity: h.cache_capacity,
                cache_idle: parse_duration(&h.cache_idle)
                    .map_err(invalid("handlers.cache_idle"))?,
                conflict_retries: h.conflict_retries,
                unavailable_retries: h.unavailable_retries,
                retry_backoff: parse_duration(&h.retry_backoff)
                    .map_err(invalid("handlers.retry_backoff"))?,
                snapshots: SnapshotConfig {
                    every: h.snapshot_every,
                    // The runtime sets the event streams' replicas.
                    ..SnapshotConfig::default()
                },
            },
            streams: StreamSettings {
                replicas: s.replicas,
                deny_delete: s.deny_delete,
                deny_purge: s.deny_purge,
                max_bytes,
                duplicate_window: parse_duration(&s.duplicate_window)
                    .map_err(invalid("streams.duplicate_window"))?,
            },
            group_commit: GroupCommitConfig {
                mode: h
                    .group_commit
                    .mode()
                    .map_err(invalid("handlers.group_commit"))?,
                max_messages: h.batch_max_messages,
                max_wait: parse_duration(&h.batch_max_wait)
                    .map_err(invalid("handlers.batch_max_wait"))?,
                max_in_flight: h.batch_max_in_flight,
            },
            reply: self.feedback.reply,
            namespace: self.namespace()?,
        })
    }

    /// The feedback role's settings.
    pub fn feedback(&self) -> Result<FeedbackConfig, ConfigError> {
        let f = &self.feedback;
        let error_ttl = parse_duration(&f.error_ttl).map_err(invalid("feedback.error_ttl"))?;
        if error_ttl.is_zero() {
            return Err(invalid("feedback.error_ttl")(
                "must be longer than 0".into(),
            ));
        }
        let error_capacity =
            parse_bytes(&f.error_capacity).map_err(invalid("feedback.error_capacity"))?;
        if error_capacity < 4096 {
            return Err(invalid("feedback.error_capacity")(
                "must be at least 4KiB".into(),
            ));
        }
        if f.notices_queue == 0 {
            return Err(invalid("feedback.notices_queue")(
                "must be at least 1".into(),
            ));
        }
        Ok(FeedbackConfig {
            cache: f.cache,
            silence: f.silence,
            error_ttl,
            error_capacity,
            notices_queue: f.notices_queue,
            peer_timeout: parse_duration(&f.peer_timeout)
                .map_err(invalid("feedback.peer_timeout"))?,
            index_wait: parse_duration(&f.index_wait).map_err(invalid("feedback.index_wait"))?,
            list_limit: f.list_limit,
            index_replicas: self.streams.replicas,
            namespace: self.namespace()?,
        })
    }
}

impl Config {
    /// The projector runtime's settings.
    pub fn projectors(&self) -> Result<ProjectorConfig, ConfigError> {
        let p = &self.projectors;
        if p.batch == 0 {
            return Err(invalid("projectors.batch")("must be at least 1".into()));
        }
        if p.max_ack_pending < 1 {
            return Err(invalid("projectors.max_ack_pending")(
                "must be at least 1".into(),
            ));
        }
        if p.max_deliveries == 0 {
            return Err(invalid("projectors.max_deliveries")(
                "must be at least 1".into(),
            ));
        }
        let lease_ttl = parse_duration(&p.lease_ttl).map_err(invalid("projectors.lease_ttl"))?;
        if lease_ttl < std::time::Duration::from_millis(100) {
            return Err(invalid("projectors.lease_ttl")(
                "must be at least 100ms".into(),
            ));
        }
        jetsource_schemas::token::validate("queue group", &p.queue_group)
            .map_err(|e| invalid("projectors.queue_group")(e.to_string()))?;
        Ok(ProjectorConfig {
            query_wait: parse_duration(&p.query_wait).map_err(invalid("projectors.query_wait"))?,
            queue_group: p.queue_group.clone(),
            batch: p.batch,
            ack_wait: parse_duration(&p.ack_wait).map_err(invalid("projectors.ack_wait"))?,
            max_ack_pending: p.max_ack_pending,
            apply_retries: p.apply_retries,
            retry_backoff: parse_duration(&p.retry_backoff)
                .map_err(invalid("projectors.retry_backoff"))?,
            max_deliveries: p.max_deliveries,
            on_poison: p.on_poison,
            lease_ttl,
            namespace: self.namespace()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_matches_the_defaults() {
        let text = include_str!("../config/jetsource.toml");
        let config: Config = toml::from_str(text).expect("config/jetsource.toml parses");
        let defaults = Config::default();
        assert_eq!(
            format!("{:?}", config.runtime().expect("valid")),
            format!("{:?}", defaults.runtime().expect("valid"))
        );
        assert_eq!(
            format!("{:?}", config.feedback().expect("valid")),
            format!("{:?}", defaults.feedback().expect("valid"))
        );
        assert_eq!(
            format!("{:?}", defaults.feedback().expect("valid")),
            format!("{:?}", FeedbackConfig::default())
        );
        assert_eq!(
            format!("{:?}", config.projectors().expect("valid")),
            format!("{:?}", ProjectorConfig::default())
        );
        assert_eq!(config.embedded.port, defaults.embedded.port);
        assert_eq!(config.run.roles, defaults.run.roles);
        assert_eq!(
            config.observability.metrics_addr,
            defaults.observability.metrics_addr
        );
        assert_eq!(config.nats.url, None);
        assert!(config.namespace().expect("valid").is_default());
        let auth = crate::auth::Auth::resolve(&config.nats.auth, &config.nats.tls, |_| None)
            .expect("valid");
        assert_eq!(auth.method, crate::auth::Method::Anonymous);
        assert!(!auth.tls.required);
    }

    #[test]
    fn invalid_settings_are_named() {
        let config: Config =
            toml::from_str("[handlers]\nstore_timeout = \"soon\"").expect("parses");
        match config.runtime() {
            Err(ConfigError::Invalid { setting, .. }) => {
                assert_eq!(setting, "handlers.store_timeout")
            }
            other => panic!("expected an invalid setting, got {other:?}"),
        }
        assert!(toml::from_str::<Config>("[handlers]\nno_such_key = 1").is_err());
        let config: Config =
            toml::from_str("[run]\nroles = [\"handlers\", \"cooking\"]").expect("parses");
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                setting: "run.roles",
                ..
            })
        ));
        for bad in ["Acme", "acme_shop", "acme..shop", "cmd", "a.>", "a b"] {
            let config: Config =
                toml::from_str(&format!("[nats]\nsubject_prefix = {bad:?}")).expect("parses");
            assert!(
                matches!(
                    config.validate(),
                    Err(ConfigError::Invalid {
                        setting: "nats.subject_prefix",
                        ..
                    })
                ),
                "{bad:?} accepted"
            );
        }
        let config: Config =
            toml::from_str("[observability]\nmetrics_addr = \"localhost\"").expect("parses");
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                setting: "observability.metrics_addr",
                ..
            })
        ));
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let mut config: Config = toml::from_str(
            "[handlers]\nmax_in_flight = 10\n[feedback]\nerror_ttl = \"1m\"\n[run]\nroles = [\"handlers\"]",
        )
        .expect("parses");
        let env = |name: &str| match name {
            "JETSOURCE_MAX_IN_FLIGHT" => Some("7".to_string()),
            "JETSOURCE_ROLES" => Some("feedback, projectors".to_string()),
            "JETSOURCE_METRICS_ADDR" => Some("off".to_string()),
            "JETSOURCE_ERROR_TTL" => Some(String::new()),
            _ => None,
        };
        config.apply_env(env).expect("valid environment");
        assert_eq!(config.handlers.max_in_flight, 7);
        assert_eq!(
            config.feedback.error_ttl, "1m",
            "an empty variable changes nothing"
        );
        assert_eq!(
            config.roles().expect("valid roles"),
            Roles {
                handlers: false,
                feedback: true,
                projectors: true
            }
        );
        assert_eq!(config.metrics_addr().expect("valid"), None);

        let bad = |name: &str| (name == "JETSOURCE_STREAM_REPLICAS").then(|| "three".to_string());
        match Config::default().apply_env(bad) {
            Err(ConfigError::Invalid { setting, message }) => {
                assert_eq!(setting, "streams.replicas");
                assert!(message.contains("JETSOURCE_STREAM_REPLICAS"), "{message}");
            }
            other => panic!("expected an invalid setting, got {other:?}"),
        }
        let mut config = Config::default();
        config
            .apply_env(|name| (name == "JETSOURCE_ERROR_TTL").then(|| "0s".to_string()))
            .expect("parsed later");
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                setting: "feedback.error_ttl",
                ..
            })
        ));
    }

    #[test]
    fn the_subject_prefix_reaches_every_role() {
        let mut config: Config =
            toml::from_str("[nats]\nsubject_prefix = \"from-file\"").expect("parses");
        let file = config.namespace().expect("valid");
        assert_eq!(file.prefix(), "from-file");
        config
            .apply_env(|name| (name == SUBJECT_PREFIX_ENV).then(|| "acme.shop".to_string()))
            .expect("valid environment");
        let namespace = config.namespace().expect("valid");
        assert_eq!(namespace.prefix(), "acme.shop");
        assert_eq!(config.runtime().expect("valid").namespace, namespace);
        assert_eq!(config.feedback().expect("valid").namespace, namespace);
        assert_eq!(config.projectors().expect("valid").namespace, namespace);

        let mut config = Config::default();
        config
            .apply_env(|name| (name == SUBJECT_PREFIX_ENV).then(|| "Acme".to_string()))
            .expect("checked later");
        for result in [
            config.validate().err(),
            config.runtime().err(),
            config.feedback().err(),
            config.projectors().err(),
        ] {
            assert!(
                matches!(
                    result,
                    Some(ConfigError::Invalid {
                        setting: "nats.subject_prefix",
                        ..
                    })
                ),
                "{result:?}"
            );
        }
    }

    #[test]
    fn every_override_is_documented() {
        let text = include_str!("../config/jetsource.toml");
        for (variable, setting) in ENV_OVERRIDES {
            assert!(
                text.contains(variable),
                "{variable} ({setting}) is not in config/jetsource.toml"
            );
        }
    }

    #[test]
    fn parse_errors_do_not_quote_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jetsource.toml");
        std::fs::write(&path, "[nats.auth]\ntoken = \"half-written-secret\n").expect("write");
        let err = Config::load(Some(&path)).expect_err("unterminated string");
        let text = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(text.contains("line 2"), "{text}");
        assert!(!text.contains("half-written-secret"), "{text}");
    }
}
