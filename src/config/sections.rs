//! The sections of the settings file that are not one library settings
//! type as it is: those of jetsource's own (`[nats]`, `[embedded]`,
//! `[run]`, `[keys]`, `[observability]`) and those laying a library type beside
//! others or beside keys of jetsource's own (`[handlers]`, `[feedback]`,
//! `[projectors]`). The library types hold their defaults; nothing here
//! restates one.

use crate::auth::{AuthConfig, Secret, TlsConfig};
use jetsource_feedback::FeedbackConfig;
use jetsource_handlers::command::HandlerConfig;
use jetsource_handlers::runtime::RuntimeConfig;
use jetsource_handlers::snapshot::SnapshotConfig;
use jetsource_handlers::store::GroupCommitConfig;
use jetsource_projector::ProjectorConfig;
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;

/// The roles a `jetsource run` process can play.
pub const ROLES: [&str; 3] = ["handlers", "feedback", "projectors"];

/// `[nats]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// The server URL. Unset (the default): start the embedded server.
    pub url: Option<String>,
    /// The prefix of every subject, and the mark on every stream and bucket
    /// name, jetsource uses, so that several applications share one NATS
    /// account. Default `""`: none. See
    /// [`Namespace::new`](jetsource_schemas::Namespace::new) for the rules.
    pub subject_prefix: String,
    /// `[nats.auth]`: credentials.
    pub auth: AuthConfig,
    /// `[nats.tls]`: TLS.
    pub tls: TlsConfig,
}

/// `[embedded]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

/// Reads `[handlers]`: the keys of the command runtime, of command
/// handling, snapshots and group commit side by side in one table, into
/// one [`RuntimeConfig`].
pub(super) fn handlers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<RuntimeConfig, D::Error> {
    /// Each type takes its own keys. They sit side by side, none
    /// flattened inside another: a flattened type that flattens others
    /// takes no key away, and would leave its keys to be refused as unknown.
    #[derive(Deserialize)]
    struct Table {
        #[serde(flatten)]
        runtime: RuntimeConfig,
        #[serde(flatten)]
        handler: HandlerConfig,
        #[serde(flatten)]
        snapshots: SnapshotConfig,
        #[serde(flatten)]
        group_commit: GroupCommitConfig,
        #[serde(flatten)]
        _rest: NoOtherKeys,
    }
    let table = Table::deserialize(deserializer)?;
    Ok(RuntimeConfig {
        handler: HandlerConfig {
            snapshots: table.snapshots,
            ..table.handler
        },
        group_commit: table.group_commit,
        ..table.runtime
    })
}

/// `[feedback]`: the feedback role's settings, and whether command
/// requests get a reply (which the command runtime does).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct FeedbackSection {
    /// Case 1: reply to command requests; the command runtime's
    /// [`RuntimeConfig::reply`], default true.
    pub reply: bool,
    /// Cases 3 and 4: notices, the error cache, status by id.
    #[serde(flatten)]
    pub settings: FeedbackConfig,
    #[serde(flatten)]
    rest: NoOtherKeys,
}

impl Default for FeedbackSection {
    fn default() -> Self {
        FeedbackSection {
            reply: RuntimeConfig::default().reply,
            settings: FeedbackConfig::default(),
            rest: NoOtherKeys,
        }
    }
}

/// `[projectors]`: the projector runtime's settings, and the database of
/// the PostgreSQL read models.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ProjectorsSection {
    /// The PostgreSQL database of the application's PostgreSQL read models
    /// (`postgres://user@host:port/db`); none by default, and then none of
    /// them is hosted. A secret: it may hold a password.
    pub postgres_url: Option<Secret>,
    /// Projectors and their queries.
    #[serde(flatten)]
    pub settings: ProjectorConfig,
    #[serde(flatten)]
    rest: NoOtherKeys,
}

/// The keys none of a section's flattened settings types took: each is
/// refused as no setting. serde refuses unknown keys only in a struct that
/// flattens nothing, so a section that does ends with this. It must come
/// last: it sees what the fields before it left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct NoOtherKeys;

impl<'de> Deserialize<'de> for NoOtherKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Rest;
        impl<'de> Visitor<'de> for Rest {
            type Value = NoOtherKeys;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("no other settings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoOtherKeys, A::Error> {
                match map.next_key::<String>()? {
                    Some(key) => Err(A::Error::custom(format!("unknown field `{key}`"))),
                    None => Ok(NoOtherKeys),
                }
            }
        }
        deserializer.deserialize_map(Rest)
    }
}

/// `[run]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

/// `[keys]`: the data keys of personal data.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// A file holding the master key (base64 of 32 bytes) every data key is
    /// stored wrapped under. Unset (the default): data keys are stored as
    /// they are. Every process reading personal fields needs the same one.
    pub master_key_file: Option<PathBuf>,
}

/// `[observability]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served over HTTP, for
    /// example `127.0.0.1:9464`, or `off` (the default: several processes
    /// on one host never collide on a port; a port in use fails the start).
    pub metrics_addr: String,
    /// The OpenTelemetry collector spans are exported to over OTLP/HTTP
    /// (protobuf), as its base URL (`http://127.0.0.1:4318`; `/v1/traces`
    /// is appended), or `off` (the default).
    pub otlp_endpoint: String,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            metrics_addr: "off".into(),
            otlp_endpoint: "off".into(),
        }
    }
}

/// `[console]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Where `jetsource run` serves the web console, for example
    /// `127.0.0.1:9465`, or `off` (the default: the console acts with this
    /// process's NATS credentials, so nobody gets it without asking).
    pub addr: String,
    /// The token a browser must present (`Authorization: Bearer`, or the
    /// page's sign-in) when `addr` is not a loopback address; required
    /// then, optional on loopback.
    pub token: Option<Secret>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            addr: "off".into(),
            token: None,
        }
    }
}
