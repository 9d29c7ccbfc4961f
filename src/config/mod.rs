//! Settings: `config/jetsource.toml` (or `--config`), then environment
//! variables, then flags. Every setting has a default; unknown keys and
//! invalid values fail at start with a message naming the setting.
//!
//! Each library settings type ([`RuntimeConfig`], [`StreamSettings`],
//! [`FeedbackConfig`], [`ProjectorConfig`] and the types nested in them)
//! reads its own keys, holds its defaults and checks its values; [`Config`]
//! lays them out in the file's sections and adds jetsource's own.
//!
//! # Layout
//! - `mod.rs`: [`Config`], reading and checking it, and each role's
//!   settings built from it.
//! - `sections.rs`: jetsource's own sections, and those laying a library
//!   type beside others (`[handlers]`, `[feedback]`, `[projectors]`).
//! - `env.rs`: environment variables and flags over the file.
//! - `error.rs`: [`ConfigError`], and naming the setting a file got wrong.

mod env;
mod error;
mod sections;
#[cfg(test)]
mod tests;

pub use env::ENV_OVERRIDES;
pub use error::ConfigError;
pub use sections::{
    ConsoleConfig, EmbeddedConfig, FeedbackSection, KeysConfig, NatsConfig, ObservabilityConfig,
    ProjectorsSection, Roles, RunConfig, ROLES,
};

use crate::auth::Auth;
use jetsource_feedback::FeedbackConfig;
use jetsource_handlers::runtime::RuntimeConfig;
use jetsource_handlers::store::StreamSettings;
use jetsource_projector::ProjectorConfig;
use jetsource_schemas::key_wrap::MasterKey;
use jetsource_schemas::settings::SettingError;
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
/// The master key's file, before `[keys] master_key_file`.
pub const MASTER_KEY_FILE_ENV: &str = "JETSOURCE_MASTER_KEY_FILE";
/// The PostgreSQL read models' database, before `[projectors] postgres_url`.
pub const POSTGRES_URL_ENV: &str = "JETSOURCE_POSTGRES_URL";

/// All settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where NATS is.
    pub nats: NatsConfig,
    /// The embedded nats-server, used when no URL is set.
    pub embedded: EmbeddedConfig,
    /// Command handling: the runtime's, command handling's, snapshots' and
    /// group commit's keys in one table. Its `streams`, `reply` and
    /// `namespace` are not read from here: [`Config::runtime`] takes them
    /// from `[streams]`, `[feedback] reply` and `[nats] subject_prefix`.
    #[serde(deserialize_with = "sections::handlers")]
    pub handlers: RuntimeConfig,
    /// Event streams.
    pub streams: StreamSettings,
    /// Feedback: replies, rejection notices, the error cache.
    pub feedback: FeedbackSection,
    /// Projectors and queries.
    pub projectors: ProjectorsSection,
    /// What `jetsource run` does.
    pub run: RunConfig,
    /// The data keys of personal data.
    pub keys: KeysConfig,
    /// Metrics and health over HTTP.
    pub observability: ObservabilityConfig,
    /// The web console.
    pub console: ConsoleConfig,
}

/// A library type's refusal, as the setting `section.key`.
fn in_section(section: &'static str) -> impl Fn(SettingError) -> ConfigError {
    move |e| {
        ConfigError::invalid(
            format!("{section}.{}", e.kind().key()),
            e.message().unwrap_or_default(),
        )
    }
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
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => error::parse(&path, &text)?,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
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
        self.master_key()?;
        self.metrics_addr()?;
        self.otlp_endpoint()?;
        self.console_addr()?;
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
                    return Err(ConfigError::invalid(
                        "run.roles",
                        format!("unknown role {other:?}; known: {}", ROLES.join(", ")),
                    ))
                }
            }
        }
        if !(roles.handlers || roles.feedback || roles.projectors) {
            return Err(ConfigError::invalid("run.roles", "name at least one role"));
        }
        Ok(roles)
    }

    /// The master key data keys are wrapped under, read from `[keys]
    /// master_key_file` (or `$JETSOURCE_MASTER_KEY_FILE`); `None` when
    /// unset. The error never quotes the file's content.
    pub fn master_key(&self) -> Result<Option<MasterKey>, ConfigError> {
        let Some(path) = &self.keys.master_key_file else {
            return Ok(None);
        };
        MasterKey::from_file(path).map(Some).map_err(|e| {
            let why = match e.message() {
                Some(message) => format!("{message} ({})", path.display()),
                None => path.display().to_string(),
            };
            let source = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            ConfigError::invalid("keys.master_key_file", format!("{why}{source}"))
        })
    }

    /// The metrics and health address; `None` when `off`.
    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let addr = self.observability.metrics_addr.trim();
        if addr.eq_ignore_ascii_case("off") || addr.is_empty() {
            return Ok(None);
        }
        addr.parse().map(Some).map_err(|_| {
            ConfigError::invalid(
                "observability.metrics_addr",
                format!("{addr:?} is not an address like 127.0.0.1:9464 (or \"off\")"),
            )
        })
    }

    /// Where spans are exported (the collector's traces URL); `None` when
    /// `off`. Plain `http://` only: the exporter is built without TLS (run
    /// the collector beside jetsource, as its agents usually are).
    pub fn otlp_endpoint(&self) -> Result<Option<String>, ConfigError> {
        let endpoint = self.observability.otlp_endpoint.trim();
        if endpoint.eq_ignore_ascii_case("off") || endpoint.is_empty() {
            return Ok(None);
        }
        let invalid = |why: &str| ConfigError::invalid("observability.otlp_endpoint", why);
        let Some(rest) = endpoint.strip_prefix("http://") else {
            return Err(invalid(
                "is not an http:// URL like http://127.0.0.1:4318 (or \"off\"); https is not supported",
            ));
        };
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || !endpoint.is_ascii() || endpoint.contains(char::is_whitespace) {
            return Err(invalid(
                "is not an http:// URL like http://127.0.0.1:4318 (or \"off\")",
            ));
        }
        Ok(Some(format!(
            "{}/v1/traces",
            endpoint.trim_end_matches('/')
        )))
    }

    /// The console's address; `None` when `off`. An address other than
    /// loopback needs `[console] token`: the console acts with this
    /// process's credentials.
    pub fn console_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let addr = self.console.addr.trim();
        if addr.eq_ignore_ascii_case("off") || addr.is_empty() {
            return Ok(None);
        }
        let parsed: std::net::SocketAddr = addr.parse().map_err(|_| {
            ConfigError::invalid(
                "console.addr",
                format!("{addr:?} is not an address like 127.0.0.1:9465 (or \"off\")"),
            )
        })?;
        let token = self.console.token.as_ref().map(|t| t.expose().trim());
        if token.is_some_and(str::is_empty) {
            return Err(ConfigError::invalid("console.token", "empty"));
        }
        if !parsed.ip().is_loopback() && token.is_none() {
            return Err(ConfigError::invalid(
                "console.token",
                format!("required when console.addr ({addr}) is not a loopback address"),
            ));
        }
        Ok(Some(parsed))
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
            .map_err(|e| ConfigError::invalid("nats.subject_prefix", e.to_string()))
    }

    /// The credentials and TLS settings: `[nats.auth]` and `[nats.tls]`,
    /// each overridden by its `JETSOURCE_NATS_*` environment variable.
    pub fn auth(&self) -> Result<Auth, ConfigError> {
        Auth::resolve(&self.nats.auth, &self.nats.tls, |name| {
            std::env::var(name).ok()
        })
    }

    /// The command runtime's settings: `[handlers]`, `[streams]`,
    /// `[feedback] reply` and the subject prefix.
    pub fn runtime(&self) -> Result<RuntimeConfig, ConfigError> {
        self.handlers.validate().map_err(in_section("handlers"))?;
        self.handlers
            .group_commit
            .validate()
            .map_err(in_section("handlers"))?;
        self.streams.validate().map_err(in_section("streams"))?;
        Ok(RuntimeConfig {
            streams: self.streams.clone(),
            reply: self.feedback.reply,
            namespace: self.namespace()?,
            master_key: self.master_key()?,
            ..self.handlers.clone()
        })
    }

    /// The feedback role's settings: `[feedback]`, with the command index
    /// replicated like the event streams, and the subject prefix.
    pub fn feedback(&self) -> Result<FeedbackConfig, ConfigError> {
        self.feedback
            .settings
            .validate()
            .map_err(in_section("feedback"))?;
        Ok(FeedbackConfig {
            index_replicas: self.streams.replicas,
            namespace: self.namespace()?,
            ..self.feedback.settings.clone()
        })
    }

    /// The projector runtime's settings: `[projectors]` and the subject
    /// prefix.
    pub fn projectors(&self) -> Result<ProjectorConfig, ConfigError> {
        self.projectors
            .settings
            .validate()
            .map_err(in_section("projectors"))?;
        Ok(ProjectorConfig {
            namespace: self.namespace()?,
            master_key: self.master_key()?,
            ..self.projectors.settings.clone()
        })
    }
}
