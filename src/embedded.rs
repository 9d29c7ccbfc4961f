//! The embedded default: with no NATS URL configured, `jetsource run` (and
//! `jetsource demo`) start a nats-server child with JetStream on, the store
//! under `<data_dir>/nats` and every write synced, and record its URL in
//! `<data_dir>/nats.url` so client commands find it.

use crate::config::EmbeddedConfig;
use jetsource_nats_server::{self as server, ServerError, ServerOptions, ServerProcess};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// A running embedded server; stopped and its URL file removed on drop.
pub struct Embedded {
    process: ServerProcess,
    url_file: PathBuf,
}

/// The project-local tools folder (`./.tools`, or `$JETSOURCE_TOOLS_DIR`).
pub fn tools_dir() -> PathBuf {
    server::tools_dir(Path::new(".tools"))
}

/// The file where the embedded server's URL is recorded.
pub fn url_file(config: &EmbeddedConfig) -> PathBuf {
    config.data_dir.join("nats.url")
}

/// The URL recorded by a running `jetsource run`, if its server answers.
pub fn recorded_url(config: &EmbeddedConfig) -> Option<String> {
    let url = std::fs::read_to_string(url_file(config)).ok()?;
    let url = url.trim().to_string();
    let hostport = url.strip_prefix("nats://").unwrap_or(&url);
    std::net::TcpStream::connect(hostport).ok()?;
    Some(url)
}

impl Embedded {
    /// Finds (or installs) a suitable nats-server and starts it.
    pub fn start(config: &EmbeddedConfig) -> Result<Self, ServerError> {
        let binary = server::find_or_install(&tools_dir())?;
        let data_dir = absolute(&config.data_dir);
        let mut options = ServerOptions::new(data_dir.join("nats"));
        options.sync_always = config.sync_always;
        // This machine's own NATS may hold the preferred port: take a free one then.
        options.port = TcpListener::bind(("127.0.0.1", config.port))
            .ok()
            .map(|_free| config.port);
        let process = ServerProcess::start(&binary, options, &data_dir.join("nats-run"))?;
        let url_file = url_file(config);
        std::fs::write(&url_file, process.client_url()).map_err(|source| ServerError::Io {
            what: format!("writing {}", url_file.display()),
            source,
        })?;
        tracing::info!(url = %process.client_url(), version = %binary.version, store = %data_dir.join("nats").display(), "embedded nats-server started");
        Ok(Embedded { process, url_file })
    }

    /// Its client URL.
    pub fn client_url(&self) -> String {
        self.process.client_url()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.url_file);
        self.process.stop(std::time::Duration::from_secs(10));
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}
