//! The binary as a user runs it: `run` until SIGTERM, `send`, `demo`.

mod common;

use common::*;

#[test]
fn run_serves_until_sigterm_and_send_reports_the_outcome() {
    let server = NatsServer::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = server.client_url();
    // One line when ready.
    let run = JetsourceProcess::spawn(dir.path(), &["run", "--nats-url", &url], &[]);

    let send = |args: &[&str]| run_jetsource(dir.path(), &url, &[&["send"][..], args].concat());
    let out = send(&[
        "blogpost",
        "p1",
        "create",
        r#"{"title":"Hi","body":"x"}"#,
        "--command-id",
        "c1",
    ]);
    assert_exit(&out, 0);
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    assert_eq!(reply["status"], "accepted");
    assert_eq!(reply["command_id"], "c1");

    let out = send(&["blogpost", "p1", "create", r#"{"title":"Hi","body":"x"}"#]);
    assert_eq!(out.status.code(), Some(1), "a rejection exits 1");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    assert_eq!(reply["code"], "validation");

    let out = send(&["blogpost", "p.1", "publish", "{}"]);
    assert_eq!(out.status.code(), Some(2), "invalid input exits 2");

    let exit = run.terminate();
    assert_eq!(exit.code(), Some(0), "SIGTERM is a clean stop");
}

#[test]
fn send_without_a_server_exits_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = jetsource_command(dir.path())
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
        let out = jetsource_command(dir.path())
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
            "BlogPostPublishScheduled",
            "[Command-Id: pm-",
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
    let out = jetsource_command(dir.path())
        .arg("demo")
        .output()
        .expect("demo");
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

#[test]
fn run_stops_on_sigterm_when_its_nats_server_is_gone() {
    let mut server = NatsServer::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = server.client_url();
    let run = JetsourceProcess::spawn(dir.path(), &["run", "--nats-url", &url], &[]);
    let out = run_jetsource(
        dir.path(),
        &url,
        &[
            "send",
            "blogpost",
            "p1",
            "create",
            r#"{"title":"Hi","body":"x"}"#,
        ],
    );
    assert_exit(&out, 0);
    server.kill();
    // The ordered shutdown cannot drain without NATS; it gives up after
    // its grace period rather than run on after SIGTERM.
    let exit = run
        .terminate_within(jetsource::app::SHUTDOWN_GRACE * 3)
        .expect("jetsource run exits on SIGTERM without its server");
    assert!(
        matches!(exit.code(), Some(0) | Some(3)),
        "a clean stop, or the shutdown given up: {exit:?}"
    );
}
