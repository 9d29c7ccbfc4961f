//! Real nats-servers for tests, in the manner of nats.rs's `nats-server`
//! crate: each [`NatsServer`] runs its own process on a free loopback port
//! with a temporary store (syncing every write), and is killed on drop.
//!
//! The binary is found as `jetsource run` finds it (`JETSOURCE_NATS_SERVER`,
//! the pinned one under the workspace's `.tools/`, `PATH`; never one older
//! than 2.12.3), and the pinned release is installed there with pip when
//! there is none, so a fresh clone needs nothing but `cargo test`.

use jetsource_handlers::server::{self, ServerBinary, ServerOptions, ServerProcess};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The workspace's project-local tools folder.
pub fn tools_dir() -> PathBuf {
    server::tools_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools"))
}

/// The nats-server binary every test uses, found or installed once.
///
/// # Panics
/// When none can be found or installed: the tests cannot run.
pub fn binary() -> &'static ServerBinary {
    static BINARY: OnceLock<ServerBinary> = OnceLock::new();
    BINARY.get_or_init(|| match server::find_or_install(&tools_dir()) {
        Ok(binary) => binary,
        Err(e) => panic!("no nats-server for the tests: {e}"),
    })
}

/// One nats-server process with a temporary store, killed on drop.
pub struct NatsServer {
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// A server syncing every write (`sync_interval: always`).
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// A server whose options `adjust` may change before it starts.
    ///
    /// # Panics
    /// When the server does not start.
    pub fn with(adjust: impl FnOnce(&mut ServerOptions)) -> Self {
        let dir = match tempfile::Builder::new().prefix("jetsource-test-").tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("temp dir: {e}"),
        };
        let mut options = ServerOptions::new(dir.path().join("store"));
        adjust(&mut options);
        let process = match ServerProcess::start(binary(), options, &dir.path().join("run")) {
            Ok(process) => process,
            Err(e) => panic!("starting nats-server: {e}"),
        };
        NatsServer { process, _dir: dir }
    }

    /// A server running a whole configuration file's `text` (users,
    /// accounts, permissions, limits, TLS), on a free port with a temporary
    /// store: the file's own top-level `host`, `port`, `listen` and
    /// `jetstream { ... }` are dropped (see [`without_listen_and_store`]).
    ///
    /// # Panics
    /// When the server does not start.
    pub fn from_config(text: &str) -> Self {
        let rest = without_listen_and_store(text);
        Self::with(|options| options.extra_config = rest)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn client_url(&self) -> String {
        self.process.client_url()
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and
    /// store.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        if let Err(e) = self.process.restart() {
            panic!("restarting nats-server: {e}");
        }
    }

    /// Kills the server (SIGKILL) without restarting it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The process, for anything else.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

impl Default for NatsServer {
    fn default() -> Self {
        Self::new()
    }
}

/// `text`, a nats-server configuration, without its top-level `host`,
/// `port` and `listen` settings and `jetstream { ... }` block, which the
/// harness provides instead (a free port, a temporary store).
pub fn without_listen_and_store(text: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut skipping = false;
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or_default().trim();
        let top = depth == 0;
        let key = code
            .split(|c: char| c == ':' || c == '=' || c == '{' || c.is_whitespace())
            .next()
            .unwrap_or_default();
        let opens = code.matches('{').count();
        let closes = code.matches('}').count();
        if top && matches!(key, "host" | "port" | "listen") {
            continue;
        }
        if top && key == "jetstream" {
            skipping = true;
        }
        depth = (depth + opens).saturating_sub(closes);
        if skipping {
            if depth == 0 {
                skipping = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn listen_and_store_are_replaced() {
        let text = "host: 0.0.0.0\nport: 4222\njetstream {\n  store_dir: x\n  limits { a: 1 }\n}\naccounts {\n  A { jetstream: enabled }\n}\n";
        let rest = super::without_listen_and_store(text);
        assert_eq!(rest, "accounts {\n  A { jetstream: enabled }\n}\n");
    }
}
