//! Environment variables and flags over the file: each names one setting
//! and gives its text, read as the file's value would be.

use super::{Config, ConfigError, MASTER_KEY_FILE_ENV, POSTGRES_URL_ENV, SUBJECT_PREFIX_ENV};
use crate::auth::Secret;
use jetsource_schemas::settings::{parse_bytes, parse_duration};
use std::path::PathBuf;

/// Settings that environment variables override, as (variable, setting).
pub const ENV_OVERRIDES: [(&str, &str); 16] = [
    (SUBJECT_PREFIX_ENV, "nats.subject_prefix"),
    ("JETSOURCE_ROLES", "run.roles"),
    ("JETSOURCE_METRICS_ADDR", "observability.metrics_addr"),
    ("JETSOURCE_OTLP_ENDPOINT", "observability.otlp_endpoint"),
    ("JETSOURCE_CONSOLE_ADDR", "console.addr"),
    ("JETSOURCE_CONSOLE_TOKEN", "console.token"),
    ("JETSOURCE_DATA_DIR", "embedded.data_dir"),
    ("JETSOURCE_QUEUE_GROUP", "handlers.queue_group"),
    ("JETSOURCE_MAX_IN_FLIGHT", "handlers.max_in_flight"),
    ("JETSOURCE_STORE_TIMEOUT", "handlers.store_timeout"),
    ("JETSOURCE_STREAM_REPLICAS", "streams.replicas"),
    ("JETSOURCE_ERROR_TTL", "feedback.error_ttl"),
    ("JETSOURCE_ERROR_CAPACITY", "feedback.error_capacity"),
    ("JETSOURCE_QUERY_WAIT", "projectors.query_wait"),
    (POSTGRES_URL_ENV, "projectors.postgres_url"),
    (MASTER_KEY_FILE_ENV, "keys.master_key_file"),
];

impl Config {
    /// Overrides settings from the environment ([`ENV_OVERRIDES`]), read
    /// through `var`; empty values are ignored.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for (name, setting) in ENV_OVERRIDES {
            if let Some(value) = var(name).filter(|v| !v.trim().is_empty()) {
                self.set(name, setting, &value)?;
            }
        }
        Ok(())
    }

    /// Sets `setting` to the text `value` that `source` (a variable or a
    /// flag) gives. The value must read as its type; everything else is
    /// checked with the rest ([`Config::validate`]). The error names the
    /// setting and the source, never the value as such (it may be a
    /// secret; only those that cannot be one are quoted).
    pub(crate) fn set(
        &mut self,
        source: &str,
        setting: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        self.assign(setting, value)
            .map_err(|message| ConfigError::invalid(setting, format!("{source}: {message}")))
    }

    fn assign(&mut self, setting: &str, value: &str) -> Result<(), String> {
        let count = |text: &str| {
            text.trim()
                .parse::<usize>()
                .map_err(|_| format!("{text:?} is not a non-negative integer"))
        };
        match setting {
            "nats.subject_prefix" => self.nats.subject_prefix = value.into(),
            "run.roles" => self.run.roles = value.split(',').map(|r| r.trim().into()).collect(),
            "observability.metrics_addr" => self.observability.metrics_addr = value.into(),
            "observability.otlp_endpoint" => self.observability.otlp_endpoint = value.into(),
            "console.addr" => self.console.addr = value.into(),
            "console.token" => self.console.token = Some(Secret::new(value)),
            "embedded.data_dir" => self.embedded.data_dir = PathBuf::from(value),
            "handlers.queue_group" => self.handlers.queue_group = value.into(),
            "handlers.max_in_flight" => self.handlers.max_in_flight = count(value)?,
            "handlers.store_timeout" => self.handlers.store_timeout = parse_duration(value)?,
            "streams.replicas" => self.streams.replicas = count(value)?,
            "feedback.error_ttl" => self.feedback.settings.error_ttl = parse_duration(value)?,
            "feedback.error_capacity" => {
                self.feedback.settings.error_capacity = parse_bytes(value)?
            }
            "projectors.query_wait" => self.projectors.settings.query_wait = parse_duration(value)?,
            "projectors.postgres_url" => self.projectors.postgres_url = Some(Secret::new(value)),
            "keys.master_key_file" => self.keys.master_key_file = Some(PathBuf::from(value)),
            _ => return Err("not a setting given this way".into()),
        }
        Ok(())
    }
}
