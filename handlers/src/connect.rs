//! Connecting to NATS, refusing servers jetsource cannot run on.

use crate::error::Error;
use crate::version::{self, ServerVersion, VersionError};

/// What went wrong connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectErrorKind {
    /// The server could not be reached or refused the connection.
    Unreachable,
    /// The server is older than jetsource supports.
    UnsupportedServer,
}

impl std::fmt::Display for ConnectErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectErrorKind::Unreachable => "cannot connect to NATS",
            ConnectErrorKind::UnsupportedServer => "unsupported nats-server",
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
    let client = options
        .connect(server_list(url))
        .await
        .map_err(|e| Error::with_source(ConnectErrorKind::Unreachable, e))?;
    if let Err(e) = check_server(&client) {
        // Leave nothing half-open behind a refusal.
        let _ = client.drain().await;
        return Err(e);
    }
    Ok(client)
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
