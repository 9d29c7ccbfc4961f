//! Another language attaches a projector from the contract alone: the
//! Python example builds the blog listing with nats-py, validating every
//! event body against the JSON Schemas in `schemas/json` and checking the
//! contract version, and it equals the built-in `blogposts` projection's
//! `query.blogposts.list`. It stops on an event off its schema and on a
//! stream of another contract version.

use async_nats::jetstream::{self, stream};
use jetsource::blog::BlogPost;
use jetsource::blog_projection::BlogPosts;
use jetsource::client::{CommandClient, SendOptions};
use jetsource::handlers::store::{EventStore, StreamSettings};
use jetsource::projector::ProjectorRuntime;
use jetsource::schemas::{CommandReply, CONTRACT_METADATA_KEY, CONTRACT_VERSION};
use jetsource::Runtime;
use jetsource_test_server::NatsServer;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The nats-py release the example is tested with.
const NATS_PY: &str = "2.16.0";
/// The jsonschema release the example validates event bodies with.
const JSONSCHEMA: &str = "4.26.0";

/// Project-local nats-py and jsonschema under `<tools>/python`, installed
/// with pip when missing; parallel callers wait on a lock file.
fn python_packages() -> PathBuf {
    let tools = jetsource_test_server::tools_dir();
    let target = tools.join("python");
    let markers = [
        target.join(format!("nats_py-{NATS_PY}.dist-info")),
        target.join(format!("jsonschema-{JSONSCHEMA}.dist-info")),
    ];
    let installed = || markers.iter().all(|m| m.is_dir());
    if installed() {
        return target;
    }
    std::fs::create_dir_all(&tools).expect("the tools folder");
    let lock = File::create(tools.join(".python-install.lock")).expect("the install lock");
    lock.lock().expect("locking the install lock");
    if installed() {
        return target;
    }
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
        .arg(format!("nats-py=={NATS_PY}"))
        .arg(format!("jsonschema=={JSONSCHEMA}"))
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "installing nats-py=={NATS_PY} and jsonschema=={JSONSCHEMA} into {}: {}",
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    target
}

/// Runs the example against `url` with the packages in `python_path`.
fn run_example(python_path: &Path, url: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/blog_listing.py");
    Command::new("python3")
        .arg(script)
        .arg(url)
        .env("PYTHONPATH", python_path)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs")
}

/// The listing the example prints.
fn listing(python_path: &Path, url: &str) -> serde_json::Value {
    let out = run_example(python_path, url);
    assert!(
        out.status.success(),
        "blog_listing.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the example prints JSON")
}

/// The error report of a run that must fail: exit status 1, nothing on
/// stdout, one JSON object as the last line of stderr.
fn failure(python_path: &Path, url: &str) -> serde_json::Value {
    let out = run_example(python_path, url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "no listing on failure");
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    serde_json::from_str(last.unwrap_or_default()).expect("a JSON error report")
}

async fn packages() -> PathBuf {
    tokio::task::spawn_blocking(python_packages)
        .await
        .expect("install task")
}

async fn example_fails(python_path: PathBuf, url: String) -> serde_json::Value {
    tokio::task::spawn_blocking(move || failure(&python_path, &url))
        .await
        .expect("example task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_listing_equals_the_built_in_one() {
    let python_path = packages().await;
    let server = NatsServer::new();
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let runtime = Runtime::builder(client.clone())
        .aggregate::<BlogPost>()
        .build()
        .await
        .expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(runtime.run(async {
        let _ = stopped.await;
    }));
    while client
        .request("cmd.blogpost.probe.nothing", "{}".into())
        .await
        .is_err()
    {
        tokio::task::yield_now().await;
    }

    let commands = CommandClient::new(client.clone());
    let mut last_seq = 0;
    for i in 0..12 {
        let id = format!("post-{i:02}");
        let mut sent = vec![(
            "create",
            serde_json::json!({"title": format!("Post {i}"), "body": format!("Text {i}"), "publish": i % 3 == 0}),
        )];
        if i % 2 == 0 {
            sent.push((
                "change_title",
                serde_json::json!({"title": format!("Post {i}, again")}),
            ));
        }
        if i % 3 == 1 {
            sent.push(("publish", serde_json::json!({})));
        }
        for (command, body) in sent {
            match commands
                .send(
                    "blogpost",
                    &id,
                    command,
                    body.to_string(),
                    &SendOptions::default(),
                )
                .await
                .expect("sent")
            {
                CommandReply::Accepted(a) => {
                    last_seq = a.events.last().map(|e| e.seq).unwrap_or(last_seq)
                }
                CommandReply::Rejected(r) => panic!("{command} on {id} rejected: {r:?}"),
            }
        }
    }

    let running = ProjectorRuntime::builder(client.clone())
        .in_memory(BlogPosts::default())
        .build()
        .await
        .expect("projectors")
        .start()
        .await
        .expect("start");
    let mut h = async_nats::HeaderMap::new();
    h.insert("After-Seq", last_seq.to_string().as_str());
    let reply = client
        .send_request(
            "query.blogposts.list",
            async_nats::Request::new()
                .headers(h)
                .timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("a reply");
    let built_in: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(built_in["status"], "ok", "{built_in}");
    assert_eq!(
        built_in["result"]["posts"].as_array().map(Vec::len),
        Some(12)
    );

    let url = server.client_url();
    let python = tokio::task::spawn_blocking(move || listing(&python_path, &url))
        .await
        .expect("example task");
    assert_eq!(python, built_in["result"]);

    running.stop().await.expect("stop");
    let _ = stop.send(());
}

/// Publishes `body` on `subject` straight into the stream, as a writer that
/// bypasses jetsource could; returns its stream sequence.
async fn publish_by_hand(js: &jetstream::Context, subject: &str, body: &str) -> u64 {
    js.publish(subject.to_string(), body.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_off_its_schema_stops_the_python_listing_at_its_sequence() {
    let python_path = packages().await;
    let server = NatsServer::new();
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let store = EventStore::new(client.clone(), Duration::from_secs(5))
        .await
        .expect("store");
    store
        .ensure_stream("blogpost", &StreamSettings::default())
        .await
        .expect("stream");
    let js = jetstream::new(client);
    publish_by_hand(
        &js,
        "evt.blogpost.p1.BlogPostCreated",
        r#"{"title":"Fine","body":"text"}"#,
    )
    .await;
    let bad = publish_by_hand(&js, "evt.blogpost.p2.BlogPostCreated", r#"{"body":"text"}"#).await;
    publish_by_hand(&js, "evt.blogpost.p1.BlogPostPublished", "{}").await;

    let report = example_fails(python_path, server.client_url()).await;
    assert_eq!(report["error"], "invalid_event", "{report}");
    assert_eq!(report["stream"], "EVT_BLOGPOST", "{report}");
    assert_eq!(report["seq"], bad, "{report}");
    assert_eq!(report["subject"], "evt.blogpost.p2.BlogPostCreated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_listing_refuses_a_stream_of_another_contract_version() {
    let python_path = packages().await;
    let server = NatsServer::new();
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let js = jetstream::new(client);
    // Made by hand, not by jetsource: no contract version at all.
    let mut config = stream::Config {
        name: "EVT_BLOGPOST".into(),
        subjects: vec!["evt.blogpost.>".into()],
        ..Default::default()
    };
    js.create_stream(config.clone()).await.expect("create");
    let report = example_fails(python_path.clone(), server.client_url()).await;
    assert_eq!(report["error"], "contract_mismatch", "{report}");
    assert_eq!(report["source"], "EVT_BLOGPOST", "{report}");
    assert_eq!(report["found"], serde_json::Value::Null, "{report}");

    let other = format!("{CONTRACT_VERSION}-other");
    config.metadata = HashMap::from([(CONTRACT_METADATA_KEY.to_string(), other.clone())]);
    js.update_stream(config).await.expect("update");
    let report = example_fails(python_path, server.client_url()).await;
    assert_eq!(report["error"], "contract_mismatch", "{report}");
    assert_eq!(report["found"], other.as_str(), "{report}");
    assert_eq!(report["expected"], CONTRACT_VERSION, "{report}");
}
