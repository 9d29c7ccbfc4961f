//! One error type per operation, each with a `kind()` to branch on (the
//! async-nats pattern): callers and tests match on kinds, never on text.

use std::fmt::{self, Debug, Display};

/// The source of an [`Error`].
type BoxedError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of kind `K`, with a message and an optional source.
pub struct Error<K> {
    kind: K,
    message: Option<String>,
    source: Option<BoxedError>,
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

    /// An error caused by `source`: an error value, or a boxed one (as
    /// async-nats returns from acks and message metadata), kept as it is.
    pub fn with_source(kind: K, source: impl Into<BoxedError>) -> Self {
        Error {
            kind,
            message: None,
            source: Some(source.into()),
        }
    }

    /// An error caused by `source`, with a message saying what was being
    /// done (the source's own message says what went wrong).
    pub fn with_message_and_source(
        kind: K,
        message: impl Into<String>,
        source: impl Into<BoxedError>,
    ) -> Self {
        Error {
            kind,
            message: Some(message.into()),
            source: Some(source.into()),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> K {
        self.kind
    }

    /// What was said about it, without the kind: for a caller that puts
    /// the error in words of its own (a settings file names the setting
    /// with its section).
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct TestKind;

    impl Display for TestKind {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("store failure")
        }
    }

    #[test]
    fn a_message_and_a_source_are_both_kept() {
        let cause = std::io::Error::other("disk full");
        let e = Error::with_message_and_source(TestKind, "the state does not encode", cause);
        assert_eq!(
            e.to_string(),
            "store failure: the state does not encode: disk full"
        );
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "disk full");
    }

    #[test]
    fn a_boxed_source_is_kept_as_it_is() {
        let boxed: BoxedError = Box::new(std::io::Error::other("no reply subject"));
        let e = Error::with_source(TestKind, boxed);
        let source = std::error::Error::source(&e).expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }
}
