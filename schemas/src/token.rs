//! The character set of subject tokens and ids.
//!
//! NATS gives `.`, `*` and `>` meaning inside a subject and splits the
//! protocol line on whitespace, and a CR or LF inside a header would end it
//! early. Rather than escaping, jetsource accepts only `[A-Za-z0-9_-]{1,128}`
//! for every untrusted string that becomes part of a subject or a header, and
//! rejects anything else before it gets near the connection.

use std::fmt;

/// The longest token jetsource accepts.
pub const MAX_TOKEN_LEN: usize = 128;

/// Why a string is not a valid token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The string is empty.
    #[error("{what} is empty")]
    Empty {
        /// What the string was meant to be (for example `aggregate id`).
        what: &'static str,
    },
    /// The string is longer than [`MAX_TOKEN_LEN`].
    #[error("{what} is {len} characters long, more than {MAX_TOKEN_LEN}")]
    TooLong {
        /// What the string was meant to be.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The string holds a character outside `[A-Za-z0-9_-]`.
    #[error("{what} may only contain A-Z, a-z, 0-9, '_' and '-' (found {found:?} at byte {at})")]
    BadChar {
        /// What the string was meant to be.
        what: &'static str,
        /// The first offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
}

/// Checks `s` against `[A-Za-z0-9_-]{1,128}`; `what` names it in the error.
pub fn validate(what: &'static str, s: &str) -> Result<(), TokenError> {
    if s.is_empty() {
        return Err(TokenError::Empty { what });
    }
    if s.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong { what, len: s.len() });
    }
    // Bytes first: every subject built per command checks its tokens, and
    // almost all of them pass. Decode characters only to report a failure.
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Ok(());
    }
    match s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some((at, found)) => Err(TokenError::BadChar { what, found, at }),
        None => Ok(()),
    }
}

/// A string known to match `[A-Za-z0-9_-]{1,128}`, safe to put in a subject
/// or a header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(String);

impl Token {
    /// Validates `s`; `what` names it in the error.
    pub fn new(what: &'static str, s: impl Into<String>) -> Result<Self, TokenError> {
        let s = s.into();
        validate(what, &s)?;
        Ok(Token(s))
    }

    /// The token as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Token {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_set() {
        for ok in ["a", "A-b_9", "0", &"x".repeat(MAX_TOKEN_LEN)] {
            assert_eq!(validate("id", ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        assert!(matches!(validate("id", ""), Err(TokenError::Empty { .. })));
        assert!(matches!(
            validate("id", &"x".repeat(MAX_TOKEN_LEN + 1)),
            Err(TokenError::TooLong { .. })
        ));
        for bad in [
            "a.b", "*", ">", "a b", "a\tb", "a\r\nb", "a\nb", "é", "a/b", "$SYS", "a:b", "\0",
        ] {
            assert!(
                matches!(validate("id", bad), Err(TokenError::BadChar { .. })),
                "{bad:?} was accepted"
            );
        }
    }
}
