//! Reading settings: the human units a settings file writes (`5s`,
//! `250ms`, `960KiB`), as serde field helpers, and the error a settings
//! type's `validate` returns.
//!
//! Every jetsource settings type (the command runtime's, the feedback
//! role's, the projector runtime's) deserializes with these, so a value
//! means the same in every section and a default is written once: in the
//! type's `Default`.
//!
//! ```
//! use jetsource_schemas::settings;
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Limits {
//!     #[serde(with = "settings::duration")]
//!     wait: Duration,
//!     #[serde(with = "settings::size")]
//!     largest: usize,
//! }
//!
//! let limits: Limits = serde_json::from_str(r#"{"wait": "250ms", "largest": "960KiB"}"#)
//!     .expect("valid settings");
//! assert_eq!(limits.wait, Duration::from_millis(250));
//! assert_eq!(limits.largest, 960 * 1024);
//! ```

mod units;

pub use units::{format_duration, parse_bytes, parse_duration};

use crate::error::Error;
use std::fmt;

/// Which setting is invalid: its key as a settings file writes it (for
/// example `max_in_flight`), without the section, which the settings type
/// does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSetting(pub &'static str);

impl InvalidSetting {
    /// The setting's key.
    pub fn key(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting {}", self.0)
    }
}

/// A settings value that `validate` refused; the kind names the key.
pub type SettingError = Error<InvalidSetting>;

/// A duration written `<number><unit>` (see [`parse_duration`]), for
/// `#[serde(with = "jetsource_schemas::settings::duration")]`.
pub mod duration {
    use serde::{de::Error as _, Deserialize, Deserializer};
    use std::time::Duration;

    /// Reads the duration from its text.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(D::Error::custom)
    }
}

/// A size in bytes written `<number><unit>` (see [`parse_bytes`]), for
/// `#[serde(with = "jetsource_schemas::settings::size")]` on any integer
/// field that holds it (`usize`, `u64`, `i64`).
pub mod size {
    use serde::{de::Error as _, Deserialize, Deserializer};

    /// Reads the size from its text; one the field cannot hold is refused.
    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        let text = String::deserialize(deserializer)?;
        let bytes = super::parse_bytes(&text).map_err(D::Error::custom)?;
        T::try_from(bytes).map_err(|_| D::Error::custom(format!("{text:?} is too large")))
    }
}

/// An optional size (see [`size`]): absent is `None`.
pub mod optional_size {
    use serde::{Deserialize, Deserializer};

    /// Reads the size from its text, when there is one.
    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        /// The value inside `Some`, read as a size.
        struct Size<T>(T);
        impl<'de, T: TryFrom<u64>> Deserialize<'de> for Size<T> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                super::size::deserialize(deserializer).map(Size)
            }
        }
        Ok(Option::<Size<T>>::deserialize(deserializer)?.map(|Size(size)| size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, serde::Deserialize)]
    struct Fields {
        #[serde(with = "duration")]
        wait: Duration,
        #[serde(with = "size")]
        small: u16,
        #[serde(default, with = "optional_size")]
        cap: Option<i64>,
    }

    fn read(json: &str) -> Result<Fields, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn units_read_as_the_settings_file_writes_them() {
        let fields = read(r#"{"wait": "10m", "small": "1KiB", "cap": "10GiB"}"#).expect("valid");
        assert_eq!(fields.wait, Duration::from_secs(600));
        assert_eq!(fields.small, 1024);
        assert_eq!(fields.cap, Some(10 << 30));
        assert_eq!(
            read(r#"{"wait": "0ms", "small": "0"}"#).expect("valid").cap,
            None
        );
    }

    #[test]
    fn bad_units_are_refused_with_the_reason() {
        let soon = read(r#"{"wait": "soon", "small": "1"}"#).expect_err("not a duration");
        assert!(soon.contains("is not a duration"), "{soon}");
        let big = read(r#"{"wait": "1s", "small": "64KiB"}"#).expect_err("past u16");
        assert!(big.contains("too large"), "{big}");
        let number = read(r#"{"wait": 5, "small": "1"}"#).expect_err("a number, not a text");
        assert!(number.contains("invalid type"), "{number}");
    }

    #[test]
    fn the_kind_names_the_key() {
        let e = SettingError::new(InvalidSetting("batch"), "must be at least 1");
        assert_eq!(e.kind(), InvalidSetting("batch"));
        assert_eq!(e.kind().key(), "batch");
        assert_eq!(e.message(), Some("must be at least 1"));
        assert_eq!(e.to_string(), "invalid setting batch: must be at least 1");
    }
}
