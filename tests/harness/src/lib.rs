//! Real nats-servers for tests, in the manner of nats.rs's `nats-server`
//! crate: each [`NatsServer`] runs its own process on a free loopback port
//! with a temporary store (syncing every write), and is killed on drop.
//!
//! The binary is found as `jetsource run` finds it (`JETSOURCE_NATS_SERVER`,
//! the pinned one under the workspace's `.tools/`, `PATH`; never one older
//! than 2.12.3), and the pinned release is installed there with pip when
//! there is none, so a fresh clone needs nothing but `cargo test`.

use jetsource_nats_server::{self as server, ServerBinary, ServerOptions, ServerProcess};
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
        match Self::try_with(adjust) {
            Ok(server) => server,
            Err(e) => panic!("starting nats-server: {e}"),
        }
    }

    /// Like [`NatsServer::with`], returning why it did not start.
    pub fn try_with(adjust: impl FnOnce(&mut ServerOptions)) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("jetsource-test-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let mut options = ServerOptions::new(dir.path().join("store"));
        adjust(&mut options);
        let process = ServerProcess::start(binary(), options, &dir.path().join("run"))
            .map_err(|e| e.to_string())?;
        Ok(NatsServer { process, _dir: dir })
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

    /// The folder holding its JetStream store, to look at the bytes it
    /// keeps on disk.
    pub fn store_dir(&self) -> PathBuf {
        self._dir.path().join("store")
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

    /// Kills the server (SIGKILL) and starts it again on the same port and
    /// store, with its options changed by `change`.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart_with(&mut self, change: impl FnOnce(&mut ServerOptions)) {
        if let Err(e) = self.process.restart_with(change) {
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

/// A free loopback port (bound once and released; good enough for tests).
pub fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

/// A JetStream cluster of nats-servers on loopback ports, each with its own
/// temporary store, all syncing every write.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes named `n1`, `n2`, … in cluster `jetsource-test`.
    ///
    /// # Panics
    /// When the cluster does not start in three tries (each with fresh
    /// ports: a port picked free can be taken before the node binds it).
    pub fn new(size: usize) -> Self {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_new(size) {
                Ok(cluster) => return cluster,
                Err(e) => last = e,
            }
        }
        panic!("starting a {size}-node cluster: {last}")
    }

    fn try_new(size: usize) -> Result<Self, String> {
        let client_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let nodes = (0..size)
            .map(|i| {
                NatsServer::try_with(|options| {
                    options.port = Some(client_ports[i]);
                    options.name = Some(format!("n{}", i + 1));
                    options.extra_config = format!(
                        "cluster {{\n  name: jetsource-test\n  listen: 127.0.0.1:{}\n  routes: [{routes}]\n}}\n",
                        route_ports[i]
                    );
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NatsCluster { nodes })
    }

    /// Every node's client URL, comma-separated, as NATS clients take them.
    pub fn client_urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i` (0-based).
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// The index of the node named `name` (`n1` is 0).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        name.strip_prefix('n')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .filter(|i| *i < self.nodes.len())
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: a cluster has nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
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
