//! A nats-server child process: start it, stop it on drop, and have it
//! stop by itself when the starting process dies.

use crate::binary::{io, ServerBinary, ServerError};
use std::fs::{self, File};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The address to listen on.
    pub host: String,
    /// The client port; `None` lets the server pick a free one.
    pub port: Option<u16>,
    /// JetStream's store directory.
    pub store_dir: PathBuf,
    /// `sync_interval: always`: every acknowledged write is on disk.
    pub sync_always: bool,
    /// The server's name (required in clusters).
    pub name: Option<String>,
    /// More configuration text, appended as is (cluster blocks, accounts).
    pub extra_config: String,
}

impl ServerOptions {
    /// A single server on loopback, a free port, syncing every write.
    pub fn new(store_dir: impl Into<PathBuf>) -> Self {
        ServerOptions {
            host: "127.0.0.1".into(),
            port: None,
            store_dir: store_dir.into(),
            sync_always: true,
            name: None,
            extra_config: String::new(),
        }
    }

    /// The configuration file text for these options.
    pub fn config_text(&self) -> String {
        let port = self.port.map_or(-1, i64::from);
        let mut text = format!("host: {:?}\nport: {port}\n", self.host);
        if let Some(name) = &self.name {
            text.push_str(&format!("server_name: {name:?}\n"));
        }
        text.push_str(&format!(
            "jetstream {{\n  store_dir: {:?}\n{}}}\n",
            self.store_dir.display().to_string(),
            if self.sync_always {
                "  sync_interval: always\n"
            } else {
                ""
            }
        ));
        text.push_str(&self.extra_config);
        text
    }
}

/// Runs nats-server (`$0 "$@"`) so that it ends with the process that
/// started it, however that ends: a reader holds the pipe on the shell's
/// stdin, whose other end only the starting process has, and stops the
/// server when the pipe closes (the starting process exits, is killed, or
/// drops it). The shell waits for the server and exits with its status.
const WATCHDOG: &str = r#"exec 3<&0 0</dev/null
"$0" "$@" 3<&- & server=$!
(read _ <&3; kill -TERM "$server" 2>/dev/null) & reader=$!
exec 3<&-
wait "$server"; code=$?
kill "$reader" 2>/dev/null
exit "$code""#;

/// A running nats-server child, killed when dropped, and stopped when the
/// process that started it ends in any way (even by SIGKILL), so that no
/// server outlives its owner holding a port and a store.
#[derive(Debug)]
pub struct ServerProcess {
    /// The shell running [`WATCHDOG`]: it exits when the server does.
    child: Child,
    /// The pipe whose closing stops the server.
    stop_pipe: Option<ChildStdin>,
    /// The server's own process id, from its ports file (0 until known).
    server_pid: u32,
    binary: ServerBinary,
    options: ServerOptions,
    run_dir: PathBuf,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `binary` with `options`, writing its config, log and ports
    /// file under `run_dir`, and waits until it accepts connections.
    pub fn start(
        binary: &ServerBinary,
        options: ServerOptions,
        run_dir: &Path,
    ) -> Result<Self, ServerError> {
        fs::create_dir_all(run_dir).map_err(io(format!("creating {}", run_dir.display())))?;
        fs::create_dir_all(&options.store_dir)
            .map_err(io(format!("creating {}", options.store_dir.display())))?;
        let config = run_dir.join("nats-server.conf");
        File::create(&config)
            .and_then(|mut f| f.write_all(options.config_text().as_bytes()))
            .map_err(io(format!("writing {}", config.display())))?;
        let ports_dir = run_dir.join("ports");
        let _ = fs::remove_dir_all(&ports_dir);
        fs::create_dir_all(&ports_dir).map_err(io("creating the ports folder"))?;
        let log =
            File::create(run_dir.join("nats-server.log")).map_err(io("creating the server log"))?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&binary.path)
            .arg("-c")
            .arg(&config)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                ServerError::Start(format!("sh running {}: {e}", binary.path.display()))
            })?;
        let mut process = ServerProcess {
            stop_pipe: child.stdin.take(),
            child,
            server_pid: 0,
            binary: binary.clone(),
            options,
            run_dir: run_dir.to_path_buf(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        process.addr = process.wait_ready(&ports_dir)?;
        Ok(process)
    }

    fn wait_ready(&mut self, ports_dir: &Path) -> Result<SocketAddr, ServerError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    fs::read_to_string(self.run_dir.join("nats-server.log")).unwrap_or_default();
                return Err(ServerError::Start(format!(
                    "exited with {status}: {}",
                    tail(&log)
                )));
            }
            // The folder is new: the one ports file is the server's, named
            // after its process id.
            if let Some((pid, addr)) = find_ports_file(ports_dir) {
                self.server_pid = pid;
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Ok(addr);
                }
            }
            if Instant::now() > deadline {
                return Err(ServerError::Start("not listening after 20 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn client_url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The server's process id (for reading its memory use from `/proc`).
    pub fn pid(&self) -> u32 {
        self.server_pid
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The options it was started with.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The folder holding its config and log.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The binary it runs.
    pub fn binary(&self) -> &ServerBinary {
        &self.binary
    }

    /// Kills the server with SIGKILL (no clean shutdown) and waits for it.
    pub fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) && self.server_pid != 0 {
            signal("-KILL", self.server_pid);
        }
        // Before its pid is known, closing the pipe stops it.
        self.stop_pipe = None;
        if !self.exited_within(Duration::from_secs(10)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// Asks the server to shut down cleanly (SIGTERM, by closing the pipe),
    /// waiting up to `grace` before killing it.
    pub fn stop(&mut self, grace: Duration) {
        self.stop_pipe = None;
        if !self.exited_within(grace) {
            self.kill();
        }
    }

    /// True once the server (and with it the shell) has exited, waiting up
    /// to `wait`.
    fn exited_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and starts it again on the same port and store.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.restart_with(|_| {})
    }

    /// Kills the server and starts it again on the same port and store,
    /// with its options changed by `change` first (a server that starts
    /// syncing every write, say).
    pub fn restart_with(
        &mut self,
        change: impl FnOnce(&mut ServerOptions),
    ) -> Result<(), ServerError> {
        self.kill();
        let mut options = self.options.clone();
        change(&mut options);
        options.port = Some(self.addr.port());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ServerProcess::start(&self.binary, options.clone(), &self.run_dir) {
                Ok(mut next) => {
                    std::mem::swap(self, &mut next);
                    // `next` now holds the dead child; forget it quietly.
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The process id and address in the server's ports file
/// (`nats-server_<pid>.ports`) in `dir`, once it is written.
fn find_ports_file(dir: &Path) -> Option<(u32, SocketAddr)> {
    fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name();
        let pid = name
            .to_str()?
            .strip_prefix("nats-server_")?
            .strip_suffix(".ports")?
            .parse()
            .ok()?;
        Some((pid, read_ports_file(&entry.path())?))
    })
}

/// Sends `signal` (`-KILL`, `-TERM`) to process `pid`.
fn signal(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn read_ports_file(path: &Path) -> Option<SocketAddr> {
    let text = fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = value.get("nats")?.as_array()?.first()?.as_str()?;
    let hostport = url.strip_prefix("nats://").unwrap_or(url);
    let port: u16 = hostport.rsplit(':').next()?.parse().ok()?;
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
