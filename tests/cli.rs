//! The binary as a user runs it: `run` until SIGTERM, `send`, `demo`.

use jetsource_test_server::NatsServer;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_jetsource");

fn jetsource(dir: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_remove("NATS_URL")
        .env_remove("JETSOURCE_NATS_URL")
        .env_remove("JETSOURCE_CONFIG")
        .env("JETSOURCE_TOOLS_DIR", jetsource_test_server::tools_dir())
        .stdin(Stdio::null());
    command
}

#[test]
fn run_serves_until_sigterm_and_send_reports_the_outcome() {
    let server = NatsServer::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut run = jetsource(dir.path())
        .args(["run", "--nats-url", &server.client_url()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn run");
    let stderr = run.stderr.take().expect("stderr");
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("jetsource ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("one line when ready");

    let send = |args: &[&str]| {
        jetsource(dir.path())
            .arg("send")
            .args(args)
            .args(["--nats-url", &server.client_url()])
            .output()
            .expect("send")
    };
    let out = send(&[
        "blogpost",
        "p1",
        "create",
        r#"{"title":"Hi","body":"x"}"#,
        "--command-id",
        "c1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    assert_eq!(reply["status"], "accepted");
    assert_eq!(reply["command_id"], "c1");

    let out = send(&["blogpost", "p1", "create", r#"{"title":"Hi","body":"x"}"#]);
    assert_eq!(out.status.code(), Some(1), "a rejection exits 1");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    assert_eq!(reply["code"], "validation");

    let out = send(&["blogpost", "p.1", "publish", "{}"]);
    assert_eq!(out.status.code(), Some(2), "invalid input exits 2");

    let status = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = run.wait().expect("wait");
    assert_eq!(exit.code(), Some(0), "SIGTERM is a clean stop");
}

#[test]
fn send_without_a_server_exits_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = jetsource(dir.path())
        .args(["send", "blogpost", "p1", "publish", "{}"])
        .output()
        .expect("send");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jetsource run"));
}

#[test]
fn demo_plays_the_story_end_to_end() {
    let server = NatsServer::new();
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..2 {
        let out = jetsource(dir.path())
            .args(["demo", "--nats-url", &server.client_url()])
            .output()
            .expect("demo");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for expected in [
            "\"status\":\"accepted\"",
            "\"code\":\"validation\"",
            "\"duplicate\":true",
            "BlogPostPublished",
        ] {
            assert!(
                stdout.contains(expected),
                "round {round} lacks {expected}: {stdout}"
            );
        }
    }
}

#[test]
fn demo_on_the_embedded_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = jetsource(dir.path()).arg("demo").output().expect("demo");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("embedded"));
    assert!(
        dir.path().join("data/nats").is_dir(),
        "the store lives under ./data/nats"
    );
    assert!(
        !dir.path().join("data/nats.url").exists(),
        "the URL file goes with the server"
    );
}
