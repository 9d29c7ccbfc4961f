//! The operator's view through the binary: `tail`, `rewind`, `streams`,
//! `--version`, JSON logs with the command span, and roles run as
//! separate processes.

mod common;

use common::*;
use jetsource::schemas::CONTRACT_VERSION;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[test]
fn rewind_tail_and_streams_show_what_is_stored() {
    let server = NatsServer::new();
    let url = server.client_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let _run = JetsourceProcess::spawn(dir.path(), &["run", "--nats-url", &url], &[]);
    let run = |args: &[&str]| run_jetsource(dir.path(), &url, args);
    let created = run(&[
        "send",
        "blogpost",
        "p1",
        "create",
        r#"{"title":"First","body":"x"}"#,
        "--command-id",
        "c-create",
    ]);
    assert_eq!(created.status.code(), Some(0), "{created:?}");
    let create_seq = json_lines(&created)[0]["events"][0]["seq"]
        .as_u64()
        .expect("a sequence");
    for (command, body, id) in [
        ("change_title", r#"{"title":"Second"}"#, "c-title"),
        ("publish", "{}", "c-publish"),
    ] {
        let out = run(&["send", "blogpost", "p1", command, body, "--command-id", id]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let other = run(&["send", "account", "a1", "open", r#"{"owner":"Ada"}"#]);
    assert_eq!(other.status.code(), Some(0), "{other:?}");

    // The post as of its first event, then now.
    let then = run(&[
        "rewind",
        "blogpost",
        "p1",
        "--to-seq",
        &create_seq.to_string(),
    ]);
    assert_eq!(then.status.code(), Some(0), "{then:?}");
    let then = &json_lines(&then)[0];
    assert_eq!(then["events"], 1);
    assert_eq!(then["seq"], create_seq);
    assert_eq!(then["state"]["title"], "First");
    assert_eq!(then["state"]["published"], false);
    let now = run(&["rewind", "blogpost", "p1"]);
    assert_eq!(now.status.code(), Some(0), "{now:?}");
    let now = &json_lines(&now)[0];
    assert_eq!(now["events"], 3);
    assert_eq!(now["state"]["title"], "Second");
    assert_eq!(now["state"]["published"], true);
    // No events: exit 1; an unknown type or a bad id: exit 2.
    assert_eq!(
        run(&["rewind", "blogpost", "nobody"]).status.code(),
        Some(1)
    );
    assert_eq!(run(&["rewind", "cooking", "p1"]).status.code(), Some(2));
    // A command's events are folded all or none: created and published at
    // once, the post never existed unpublished.
    let both = run(&[
        "send",
        "blogpost",
        "p2",
        "create",
        r#"{"title":"At once","body":"x","publish":true}"#,
    ]);
    assert_eq!(both.status.code(), Some(0), "{both:?}");
    let first = json_lines(&both)[0]["events"][0]["seq"]
        .as_u64()
        .expect("a sequence");
    let inside = run(&["rewind", "blogpost", "p2", "--to-seq", &first.to_string()]);
    assert_eq!(
        inside.status.code(),
        Some(1),
        "no whole command: {inside:?}"
    );
    let inside = &json_lines(&inside)[0];
    assert_eq!(
        (&inside["events"], &inside["snapped_from"]),
        (&0.into(), &first.into())
    );
    assert!(String::from_utf8_lossy(
        &run(&["rewind", "blogpost", "p2", "--to-seq", &first.to_string()]).stderr
    )
    .contains("falls inside one command"));
    let whole = run(&[
        "rewind",
        "blogpost",
        "p2",
        "--to-seq",
        &(first + 1).to_string(),
    ]);
    let whole = &json_lines(&whole)[0];
    assert_eq!(
        (&whole["events"], &whole["state"]["published"]),
        (&2.into(), &true.into())
    );
    assert!(whole.get("snapped_from").is_none(), "{whole}");
    assert_eq!(run(&["rewind", "blogpost", "p.1"]).status.code(), Some(2));

    // Only the post's events, from the start, in order, with their ids.
    let tail = run(&["tail", "evt.blogpost.>", "--from-start", "--count", "3"]);
    assert_eq!(tail.status.code(), Some(0), "{tail:?}");
    let events = json_lines(&tail);
    let subjects: Vec<_> = events.iter().map(|e| e["subject"].clone()).collect();
    assert_eq!(
        subjects,
        [
            "evt.blogpost.p1.BlogPostCreated",
            "evt.blogpost.p1.BlogPostTitleChanged",
            "evt.blogpost.p1.BlogPostPublished"
        ]
    );
    assert_eq!(events[0]["seq"], create_seq);
    assert_eq!(events[0]["stream"], "EVT_BLOGPOST");
    assert_eq!(events[0]["command_id"], "c-create");
    assert_eq!(events[0]["body"]["title"], "First");
    assert_eq!(events[1]["headers"]["Command-Id"], "c-title");
    // evt.> spans every aggregate type.
    let all = run(&["tail", "--from-start", "--count", "6"]);
    let streams: std::collections::BTreeSet<_> = json_lines(&all)
        .iter()
        .map(|e| e["stream"].as_str().expect("a stream").to_string())
        .collect();
    assert_eq!(
        streams,
        ["EVT_ACCOUNT", "EVT_BLOGPOST"].map(String::from).into()
    );
    assert_eq!(run(&["tail", "evt..x"]).status.code(), Some(2));

    // Another application's streams (prefix `acme`) and a stream jetsource
    // did not name, on the same server: not listed.
    streams_by_hand(
        &url,
        &[
            ("acme_EVT_BLOGPOST", "acme.evt.blogpost.>"),
            (
                "KV_ACME_jetsource_command_index",
                "$KV.ACME_jetsource_command_index.>",
            ),
            ("ORDERS", "orders.>"),
        ],
        &std::collections::HashMap::new(),
    );
    let streams = run(&["streams"]);
    assert_eq!(streams.status.code(), Some(0), "{streams:?}");
    let listed = json_lines(&streams)[0]["streams"]
        .as_array()
        .expect("a list")
        .clone();
    let named = |name: &str| {
        listed
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {listed:?}"))
    };
    let blog = named("EVT_BLOGPOST");
    // p1's three events and p2's two.
    assert_eq!(blog["messages"], 5);
    assert_eq!(blog["subject_count"], 5);
    assert_eq!(blog["events"], true);
    assert_eq!(blog["contract"], CONTRACT_VERSION);
    assert!(blog["bytes"].as_u64().expect("bytes") > 0);
    assert_eq!(named("EVT_ACCOUNT")["contract"], CONTRACT_VERSION);
    // A bucket's stream: no contract version.
    let index = named("KV_jetsource_command_index");
    assert_eq!(index["events"], false);
    assert_eq!(index["contract"], serde_json::Value::Null);
    for stream in &listed {
        let name = stream["name"].as_str().expect("a name");
        assert!(
            ["EVT_", "KV_jetsource_", "KV_projection_"]
                .iter()
                .any(|start| name.starts_with(start)),
            "{name} is not this namespace's"
        );
    }

    // Without --from-start, tail begins at the current end: the account's
    // existing event is not printed, a new one is.
    let mut live = jetsource_command(dir.path())
        .args(["tail", "evt.account.>", "--count", "1", "--nats-url", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tail");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while live.try_wait().expect("tail status").is_none() {
        assert!(Instant::now() < deadline, "tail printed nothing");
        n += 1;
        let out = run(&[
            "send",
            "account",
            &format!("live{n}"),
            "open",
            r#"{"owner":"Bo"}"#,
        ]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let printed = live.wait_with_output().expect("tail output");
    let event = &json_lines(&printed)[0];
    assert!(
        event["subject"]
            .as_str()
            .expect("a subject")
            .starts_with("evt.account.live"),
        "{event}"
    );
}

#[test]
fn invalid_settings_from_the_environment_or_flags_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 3] = [
        (
            &["run"],
            Some(("JETSOURCE_ROLES", "handlers,cooking")),
            "run.roles",
        ),
        (
            &["run"],
            Some(("JETSOURCE_METRICS_ADDR", "everywhere")),
            "observability.metrics_addr",
        ),
        (&["run", "--roles", "nothing"], None, "run.roles"),
    ];
    for (args, env, setting) in cases {
        let mut command = jetsource_command(dir.path());
        command.args(args);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let out = command.output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(setting), "{setting} not named: {stderr}");
    }
}

#[test]
fn version_names_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = jetsource_command(dir.path())
        .arg("--version")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "contract {}",
            jetsource::schemas::CONTRACT_VERSION
        )),
        "{text}"
    );
}

#[test]
fn schema_check_reports_stale_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = |args: &[&str]| {
        jetsource_command(dir.path())
            .arg("schema")
            .args(args)
            .output()
            .expect("run")
    };
    assert_eq!(schema(&["--check", "--out", "out"]).status.code(), Some(1));
    assert_eq!(schema(&["--out", "out"]).status.code(), Some(0));
    assert_eq!(schema(&["--check", "--out", "out"]).status.code(), Some(0));
    assert!(dir.path().join("out/blogpost/events.json").exists());
}

#[test]
fn a_feedback_only_process_answers_for_a_handlers_only_process() {
    let server = NatsServer::new();
    let url = server.client_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| run_jetsource(dir.path(), &url, args);
    let _feedback = JetsourceProcess::spawn(
        dir.path(),
        &["run", "--roles", "feedback", "--nats-url", &url],
        &[],
    );
    // Nobody handles commands yet: the feedback role does not.
    let unanswered = run(&["send", "blogpost", "p1", "publish", "{}", "--timeout", "1"]);
    assert_eq!(unanswered.status.code(), Some(3), "{unanswered:?}");

    let handlers = JetsourceProcess::spawn(
        dir.path(),
        &[
            "--log-format",
            "json",
            "run",
            "--roles",
            "handlers",
            "--nats-url",
            &url,
        ],
        &[("RUST_LOG", "info,jetsource_handlers::runtime=debug")],
    );
    let rejected = run(&[
        "send",
        "blogpost",
        "missing",
        "publish",
        "{}",
        "--command-id",
        "r-1",
    ]);
    assert_eq!(rejected.status.code(), Some(1), "{rejected:?}");

    // The handlers' JSON log line carries the command's span.
    let line = handlers.wait_for("r-1 handled", |line| {
        line.contains("command handled") && line.contains("r-1")
    });
    let logged: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(logged["span"]["command_id"], "r-1");
    assert_eq!(logged["span"]["aggregate_type"], "blogpost");
    assert_eq!(logged["span"]["aggregate_id"], "missing");
    assert_eq!(logged["span"]["outcome"], "not_found");

    // The notice travels from the handlers process to the feedback process.
    let answer = eventually_blocking("r-1 known as rejected", DEADLINE, || {
        let out = run(&["errors", "get", "r-1"]);
        let answer = json_lines(&out).remove(0);
        // 0 once the rejection is known, 1 while it is not (yet).
        let known = answer["status"] == "rejected";
        assert_eq!(
            out.status.code(),
            Some(if known { 0 } else { 1 }),
            "{out:?}"
        );
        known.then_some(answer)
    });
    assert_eq!(answer["status"], "rejected", "{answer}");
    assert_eq!(answer["code"], "not_found");
    assert_eq!(answer["aggregate_id"], "missing");
}

/// True while process `pid` runs (a zombie has ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

#[test]
fn a_killed_run_takes_its_embedded_server_with_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serving = JetsourceProcess::spawn(dir.path(), &["run"], &[]);
    // The server's ports file is named after its process id.
    let ports = dir.path().join("data/nats-run/ports");
    let pid: u32 = std::fs::read_dir(&ports)
        .expect("the ports folder")
        .flatten()
        .find_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_prefix("nats-server_")?
                .strip_suffix(".ports")?
                .parse()
                .ok()
        })
        .expect("the server's ports file");
    assert!(alive(pid), "the embedded server runs");
    // SIGKILL: jetsource gets no chance to stop anything itself.
    drop(serving);
    let ended = format!("the end of nats-server {pid} with the killed jetsource");
    eventually_blocking(ended, Duration::from_secs(15), || {
        (!alive(pid)).then_some(())
    });
}
