//! Connecting to NATS, refusing servers jetsource cannot run on.

use crate::error::Error;
use jetsource_schemas::server_version::{self as version, ServerVersion, VersionError};

/// What went wrong connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// The server could not be reached or refused the connection.
    Unreachable,
    /// The server is older than jetsource supports.
    UnsupportedServer,
    /// The server refused the credentials (wrong, missing or not allowed).
    Unauthorized,
    /// The TLS handshake failed: an unknown certificate authority, a
    /// missing or refused client certificate, unreadable certificate files.
    Tls,
    /// The local credentials could not be used: an unreadable or invalid
    /// seed or credentials file, or conflicting settings.
    Credentials,
}

impl std::fmt::Display for ConnectErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectErrorKind::Unreachable => "cannot connect to NATS",
            ConnectErrorKind::UnsupportedServer => "unsupported nats-server",
            ConnectErrorKind::Unauthorized => "NATS refused the credentials",
            ConnectErrorKind::Tls => "TLS handshake with NATS failed",
            ConnectErrorKind::Credentials => "unusable NATS credentials",
        })
    }
}

/// A connect failure.
pub type ConnectError = Error<ConnectErrorKind>;

/// The servers in `url`: one URL, or several separated by commas (a
/// cluster's nodes).
pub fn server_list(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// Connects to `url` (one URL or a comma-separated list) with `options`
/// and checks the server's version.
pub async fn connect_with(
    url: &str,
    options: async_nats::ConnectOptions,
) -> Result<async_nats::Client, ConnectError> {
    let client = options.connect(server_list(url)).await.map_err(|e| {
        let kind = kind_of(&e);
        Error::with_source(kind, e)
    })?;
    if let Err(e) = check_server(&client) {
        // Leave nothing half-open behind a refusal.
        let _ = client.drain().await;
        return Err(e);
    }
    Ok(client)
}

/// Sorts async-nats' connect failures into the kinds callers act on.
fn kind_of(error: &async_nats::ConnectError) -> ConnectErrorKind {
    use async_nats::ConnectErrorKind as Nats;
    match error.kind() {
        Nats::AuthorizationViolation => ConnectErrorKind::Unauthorized,
        Nats::Tls => ConnectErrorKind::Tls,
        Nats::Authentication => ConnectErrorKind::Credentials,
        // async-nats reports a failed handshake (an unknown authority, a
        // refused client certificate) as I/O; rustls marks those errors
        // as invalid data, which a refused or reset TCP connection is not.
        Nats::Io if is_tls_failure(error) => ConnectErrorKind::Tls,
        _ => ConnectErrorKind::Unreachable,
    }
}

fn is_tls_failure(error: &async_nats::ConnectError) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
}

/// Connects to `url` as `jetsource` and checks the server's version.
pub async fn connect(url: &str) -> Result<async_nats::Client, ConnectError> {
    connect_with(url, async_nats::ConnectOptions::new().name("jetsource")).await
}

/// Checks the version the connected server announced.
pub fn check_server(client: &async_nats::Client) -> Result<ServerVersion, ConnectError> {
    version::check(&client.server_info().version)
        .map_err(|e: VersionError| Error::with_source(ConnectErrorKind::UnsupportedServer, e))
}
