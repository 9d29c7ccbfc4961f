//! What is wrong with the settings, naming the setting as `section.key`.

use super::Config;
use std::path::Path;

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
    /// The file is not valid TOML.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A value is invalid, or a key is no setting.
    #[error("setting {setting}: {message}")]
    Invalid {
        /// The setting's name, `section.key` (`nats.auth.token`).
        setting: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The setting named, when a value is invalid.
    pub fn setting(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { setting, .. } => Some(setting),
            _ => None,
        }
    }

    /// An invalid value of `setting`.
    pub(crate) fn invalid(setting: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

/// Reads `text` (the file at `path`) as [`Config`]. A value or key that
/// does not read is reported as the setting it is: serde loses where a
/// value was inside a section made of several settings types side by side
/// (`[handlers]`), so the culprit is found by reading each setting alone.
pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let error = match toml::from_str::<Config>(text) {
        Ok(config) => return Ok(config),
        Err(error) => error,
    };
    if let Ok(table) = text.parse::<toml::Table>() {
        if let Some(invalid) = first_invalid(&mut Vec::new(), &table) {
            return Err(invalid);
        }
    }
    Err(ConfigError::Parse {
        path: path.display().to_string(),
        message: describe(text, &error),
    })
}

/// The first setting under `path` in `table` that does not read even alone.
fn first_invalid(path: &mut Vec<String>, table: &toml::Table) -> Option<ConfigError> {
    for (key, value) in table {
        path.push(key.clone());
        let found = match value {
            toml::Value::Table(inner) if !inner.is_empty() => first_invalid(path, inner),
            _ => alone(path, value.clone())
                .err()
                .map(|message| ConfigError::invalid(path.join("."), message)),
        };
        path.pop();
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Reads a file that holds nothing but `value` at `path`.
fn alone(path: &[String], value: toml::Value) -> Result<Config, String> {
    let file = path.iter().rev().fold(value, |inner, key| {
        toml::Value::Table(toml::Table::from_iter([(key.clone(), inner)]))
    });
    file.try_into::<Config>()
        .map_err(|e| e.message().to_string())
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
