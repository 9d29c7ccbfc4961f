//! The desk's own binary (`jetsource::cli::main` over the desk's `App`)
//! against a real nats-server: `run` serves every role, `send` and `query`
//! talk to it, and SIGTERM stops it cleanly.

use jetsource_test_server::NatsServer;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DESK: &str = env!("CARGO_BIN_EXE_jetsource-example-desk");

/// The desk binary with `args`, in `dir` (so no settings file of the
/// checkout is read).
fn desk(dir: &std::path::Path, url: &str, args: &[&str]) -> Output {
    Command::new(DESK)
        .current_dir(dir)
        .args(args)
        .env("JETSOURCE_NATS_URL", url)
        .output()
        .expect("the desk binary runs")
}

/// `desk run`, once it logged its ready line.
fn serve(dir: &std::path::Path, url: &str) -> Child {
    let mut child = Command::new(DESK)
        .current_dir(dir)
        .args(["run", "--nats-url", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("desk run starts");
    let stderr = child.stderr.take().expect("its stderr");
    let (ready, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("desk: {line}");
            if line.contains("jetsource ready") {
                let _ = ready.send(());
            }
        }
    });
    // The bound only keeps a broken start from hanging the test.
    seen.recv_timeout(Duration::from_secs(120))
        .expect("desk run logs that it is ready");
    child
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_desk_binary_serves_its_aggregates_projections_and_settlement() {
    let server = NatsServer::new();
    let url = server.client_url();
    let dir = tempfile::tempdir().expect("a work dir");
    let mut running = serve(dir.path(), &url);

    let placed = desk(
        dir.path(),
        &url,
        &[
            "send",
            "order",
            "o1",
            "place",
            r#"{"customer":"ada","total":30}"#,
        ],
    );
    assert_eq!(placed.status.code(), Some(0), "{}", text(&placed));
    let paid = desk(
        dir.path(),
        &url,
        &[
            "send",
            "payment",
            "pay1",
            "pay",
            r#"{"order":"o1","amount":30}"#,
        ],
    );
    assert_eq!(paid.status.code(), Some(0), "{}", text(&paid));
    let refused = desk(dir.path(), &url, &["send", "order", "o1", "place", "{}"]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "rejected: {}",
        text(&refused)
    );
    assert!(text(&refused).contains("bad_request"), "{}", text(&refused));

    // The desk's own subcommand, beside jetsource's.
    let placed = desk(
        dir.path(),
        &url,
        &[
            "send",
            "order",
            "o2",
            "place",
            r#"{"customer":"bob","total":5}"#,
        ],
    );
    assert_eq!(placed.status.code(), Some(0), "{}", text(&placed));
    let bound = Instant::now() + Duration::from_secs(120);
    loop {
        let owing = desk(dir.path(), &url, &["owing"]);
        assert_eq!(owing.status.code(), Some(0), "{}", text(&owing));
        let lines = String::from_utf8_lossy(&owing.stdout).into_owned();
        // o1 and o2 are both placed; the desk folds them as they come.
        if lines.contains(r#""id":"o2""#) && !lines.contains(r#""id":"o1""#) {
            assert_eq!(lines.trim(), r#"{"id":"o2","paid":0,"total":5}"#);
            break;
        }
        assert!(
            Instant::now() < bound,
            "owing never listed o2 alone: {lines}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The settlement confirms it: asynchronously, after the payment.
    let bound = Instant::now() + Duration::from_secs(120);
    loop {
        let answer = desk(dir.path(), &url, &["query", "orders", "get", "o1"]);
        let said = text(&answer);
        if said.contains("confirmed") {
            assert_eq!(answer.status.code(), Some(0), "{said}");
            break;
        }
        assert!(Instant::now() < bound, "o1 never confirmed: {said}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let missing = desk(dir.path(), &url, &["query", "orders", "get", "o9"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));

    let stopped = Command::new("kill")
        .args(["-TERM", &running.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(stopped.success());
    let exit = running.wait().expect("desk run exits");
    assert_eq!(exit.code(), Some(0), "a clean stop");
}
