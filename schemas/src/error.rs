//! One error type per operation, each with a `kind()` to branch on (the
//! async-nats pattern): callers and tests match on kinds, never on text.

use std::fmt::{self, Debug, Display};

/// An error of kind `K`, with a message and an optional source.
pub struct Error<K> {
    kind: K,
    message: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl<K: Copy> Error<K> {
    /// An error with a message.
    pub fn new(kind: K, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: Some(message.into()),
            source: None,
        }
    }

    /// An error caused by `source`.
    pub fn with_source(kind: K, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error {
            kind,
            message: None,
            source: Some(Box::new(source)),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> K {
        self.kind
    }
}

impl<K: Display> Display for Error<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl<K: Display> Debug for Error<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Display::fmt(self, f)
    }
}

impl<K: Display> std::error::Error for Error<K> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}
