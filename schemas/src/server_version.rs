//! The nats-server versions the contract needs.
//!
//! 2.12.3 is the floor: atomic batch publish with deduplication inside
//! batches (2.12.1), wildcard `Nats-Expected-Last-Subject-Sequence-Subject`
//! (2.11), and the 2.12.3 fix for pending writes lost by `SyncBlocks`.

use std::fmt;

/// A parsed `major.minor.patch[-pre]` server version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Patch version.
    pub patch: u64,
    /// False for a pre-release (`2.12.3-RC.1`), which sorts before the release.
    pub release: bool,
}

/// The oldest nats-server jetsource accepts.
pub const MIN_SERVER_VERSION: ServerVersion = ServerVersion {
    major: 2,
    minor: 12,
    patch: 3,
    release: true,
};

impl ServerVersion {
    /// Parses `2.15.1`, `v2.15.1`, `2.12.3-RC.1` or `nats-server: v2.15.1`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.rsplit(' ').next().unwrap_or(s);
        let s = s.strip_prefix('v').unwrap_or(s);
        let (core, release) = match s.split_once(['-', '+']) {
            Some((core, _)) => (core, false),
            None => (s, true),
        };
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().unwrap_or("0").parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(ServerVersion {
            major,
            minor,
            patch,
            release,
        })
    }

    /// True when jetsource can run on this version.
    pub fn is_supported(&self) -> bool {
        *self >= MIN_SERVER_VERSION
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.release {
            f.write_str("-pre")?;
        }
        Ok(())
    }
}

/// The nats-server release jetsource is tested with, and installs when it
/// finds none.
pub const PINNED_SERVER_VERSION: &str = "2.15.1";

/// Why a server version is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The server is older than [`MIN_SERVER_VERSION`].
    #[error(
        "nats-server {found} is too old: jetsource needs {MIN_SERVER_VERSION} or newer \
         (atomic batch publish with dedupe, wildcard expected-subject-sequence, durability fixes); \
         upgrade the server, or let jetsource start its own (pinned {PINNED_SERVER_VERSION})"
    )]
    TooOld {
        /// The version the server reported.
        found: String,
    },
    /// The version string could not be read.
    #[error("nats-server reported an unreadable version {found:?}; jetsource needs {MIN_SERVER_VERSION} or newer")]
    Unreadable {
        /// The version string as reported.
        found: String,
    },
}

/// Accepts a reported version string only when it is [`MIN_SERVER_VERSION`] or newer.
pub fn check(reported: &str) -> Result<ServerVersion, VersionError> {
    let version = ServerVersion::parse(reported).ok_or_else(|| VersionError::Unreadable {
        found: reported.to_string(),
    })?;
    if version.is_supported() {
        Ok(version)
    } else {
        Err(VersionError::TooOld {
            found: reported.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_older_than_2_12_3() {
        for old in [
            "2.9.10",
            "2.10.29",
            "2.11.9",
            "2.12.2",
            "2.12.3-RC.1",
            "v2.12.0",
            "1.99.99",
        ] {
            assert!(
                matches!(check(old), Err(VersionError::TooOld { .. })),
                "{old} accepted"
            );
        }
    }

    #[test]
    fn accepts_2_12_3_and_newer() {
        for new in [
            "2.12.3",
            "2.12.4",
            "2.14.0",
            "v2.15.1",
            "nats-server: v2.15.1",
            "3.0.0",
            "2.13.0-dev",
        ] {
            assert!(check(new).is_ok(), "{new} refused");
        }
    }

    #[test]
    fn unreadable_is_its_own_error() {
        for bad in ["", "two", "2", "2.x.1", "2.12.3.4"] {
            assert!(
                matches!(check(bad), Err(VersionError::Unreadable { .. })),
                "{bad:?}"
            );
        }
    }
}
