//! The `jetsource` binary as a child process, as a user or a deployment
//! runs it.

use super::wait::DEADLINE;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `jetsource` binary, run in `dir`, with none of the settings a
/// developer's environment may carry, and the shared tools folder (so an
/// embedded server is found, not installed again).
pub fn jetsource_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jetsource"));
    command
        .current_dir(dir)
        .env_remove("NATS_URL")
        .env_remove("JETSOURCE_NATS_URL")
        .env_remove("JETSOURCE_CONFIG")
        .env_remove("JETSOURCE_SUBJECT_PREFIX")
        .env_remove("JETSOURCE_ROLES")
        .env_remove("JETSOURCE_METRICS_ADDR")
        .env_remove("JETSOURCE_LOG_FORMAT")
        .env_remove("JETSOURCE_MASTER_KEY_FILE")
        .env_remove("RUST_LOG")
        .env("JETSOURCE_TOOLS_DIR", super::server::tools_dir())
        .stdin(Stdio::null());
    command
}

/// Runs `jetsource <args> --nats-url <url>` in `dir` to its end.
pub fn run_jetsource(dir: &Path, url: &str, args: &[&str]) -> Output {
    jetsource_command(dir)
        .args(args)
        .args(["--nats-url", url])
        .output()
        .expect("run the binary")
}

/// Asserts the binary exited with `code`, showing its stderr otherwise.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `jetsource run` child, serving once started; its stderr lines can be
/// waited for. Killed on drop.
pub struct JetsourceProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl JetsourceProcess {
    /// Starts `jetsource run --nats-url <url>` in `dir`, logging at info.
    pub fn start(url: &str, dir: &Path) -> Self {
        Self::spawn(dir, &["run", "--nats-url", url], &[("RUST_LOG", "info")])
    }

    /// Starts `jetsource <args>` in `dir` with `env` added to
    /// [`jetsource_command`]'s, and waits for its ready line.
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = jetsource_command(dir);
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn jetsource run");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let process = JetsourceProcess { child, lines };
        process.wait_for("jetsource ready", |line| line.contains("jetsource ready"));
        process
    }

    /// The first line from now on that `matches` (described as `what`),
    /// within [`DEADLINE`].
    pub fn wait_for(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("the line {what:?} never came (waited {DEADLINE:?})"),
            }
        }
    }

    /// SIGTERM, as a service manager stops it; how it exited.
    pub fn terminate(mut self) -> ExitStatus {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(signalled.success());
        self.child.wait().expect("wait")
    }

    /// SIGTERM, then how it exited, or `None` when it had not within
    /// `deadline` (it is then killed).
    pub fn terminate_within(mut self, deadline: Duration) -> Option<ExitStatus> {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(signalled.success());
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// SIGKILL: no clean shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for JetsourceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
