//! Another language attaches a projector from the contract alone: the
//! Python example builds the blog listing with nats-py, validating every
//! event body against the JSON Schemas in `schemas/json` and checking the
//! contract version, and it equals the built-in `blogposts` projection's
//! `query.blogposts.list`. Under a subject prefix it reads that
//! application's stream only, and it refuses an invalid prefix. It stops on
//! an event off its schema and on a stream of another contract version.

mod common;

use async_nats::jetstream::{self, stream};
use common::*;
use jetsource::client::{CommandClient, SendOptions};
use jetsource::handlers::store::StreamSettings;
use jetsource::projector::document::InMemory;
use jetsource::projector::{ProjectorConfig, ProjectorRuntime};
use jetsource::schemas::{CommandReply, Namespace, CONTRACT_METADATA_KEY, CONTRACT_VERSION};
use jetsource::RuntimeConfig;
use jetsource_reference::blogposts::BlogPosts;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Every Python package the example runs with, pinned.
const REQUIREMENTS: &str = include_str!("../examples/python/requirements.txt");

/// Project-local copies of the example's pinned packages under
/// `<tools>/python`, installed with pip when any is missing; parallel
/// callers wait on a lock file.
fn python_packages() -> PathBuf {
    let tools = tools_dir();
    let target = tools.join("python");
    // pip names each installed package's folder `<name>-<version>.dist-info`,
    // with `-` in the name as `_`.
    let markers: Vec<PathBuf> = REQUIREMENTS
        .lines()
        .filter_map(|line| line.split_once("=="))
        .map(|(name, version)| {
            target.join(format!("{}-{version}.dist-info", name.replace('-', "_")))
        })
        .collect();
    assert!(
        markers.len() >= 2,
        "no pins in examples/python/requirements.txt"
    );
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
    let requirements =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/requirements.txt");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--upgrade",
            "--target",
        ])
        .arg(&target)
        .arg("-r")
        .arg(&requirements)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "installing {} into {}: {}",
        requirements.display(),
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    target
}

/// One run of the example: its arguments after the URL and its
/// environment (`JETSOURCE_SUBJECT_PREFIX` only when given here).
#[derive(Clone, Default)]
struct Run {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Run {
    fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }
}

/// Runs the example against `url` with the packages in `python_path`.
fn run_example(python_path: &Path, url: &str, run: &Run) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/blog_listing.py");
    Command::new("python3")
        .arg(script)
        .arg(url)
        .args(&run.args)
        .env("PYTHONPATH", python_path)
        .env_remove("JETSOURCE_SUBJECT_PREFIX")
        .envs(run.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs")
}

/// The listing the example prints.
fn listing(python_path: &Path, url: &str, run: &Run) -> serde_json::Value {
    let out = run_example(python_path, url, run);
    assert!(
        out.status.success(),
        "blog_listing.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the example prints JSON")
}

/// The error report of a run that must fail: exit status 1, nothing on
/// stdout, one JSON object as the last line of stderr.
fn failure(python_path: &Path, url: &str, run: &Run) -> serde_json::Value {
    let out = run_example(python_path, url, run);
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

async fn example_lists(python_path: PathBuf, url: String, run: Run) -> serde_json::Value {
    tokio::task::spawn_blocking(move || listing(&python_path, &url, &run))
        .await
        .expect("example task")
}

async fn example_fails(python_path: PathBuf, url: String, run: Run) -> serde_json::Value {
    tokio::task::spawn_blocking(move || failure(&python_path, &url, &run))
        .await
        .expect("example task")
}

/// Starts the blog handlers in `namespace`, once they answer.
async fn serve_blog(url: &str, namespace: &Namespace) -> Jetsource {
    let config = RuntimeConfig {
        namespace: namespace.clone(),
        ..RuntimeConfig::default()
    };
    Jetsource::start_with(url, config).await
}

/// Sends `posts` posts' commands (`tag` in their titles) in `namespace`:
/// created, some retitled, some published. Returns the last event's
/// sequence.
async fn write_posts(
    client: &async_nats::Client,
    namespace: &Namespace,
    posts: usize,
    tag: &str,
) -> u64 {
    let commands = CommandClient::new(client.clone()).with_namespace(namespace.clone());
    let mut last_seq = 0;
    for i in 0..posts {
        let id = format!("post-{i:02}");
        let mut sent = vec![(
            "create",
            serde_json::json!({"title": format!("{tag} {i}"), "body": format!("Text {i}"), "publish": i % 3 == 0}),
        )];
        if i % 2 == 0 {
            sent.push((
                "change_title",
                serde_json::json!({"title": format!("{tag} {i}, again")}),
            ));
        }
        if i % 3 == 1 {
            sent.push(("publish", serde_json::json!({})));
        }
        for (command, body) in sent {
            match send_with(
                &commands,
                &id,
                command,
                body.to_string(),
                &SendOptions::default(),
            )
            .await
            {
                CommandReply::Accepted(a) => {
                    last_seq = a.events.last().map(|e| e.seq).unwrap_or(last_seq)
                }
                CommandReply::Rejected(r) => panic!("{command} on {id} rejected: {r:?}"),
            }
        }
    }
    last_seq
}

/// The built-in projection's `query.blogposts.list` in `namespace`, once it
/// applied `last_seq`: its `result`.
async fn built_in_listing(
    client: &async_nats::Client,
    namespace: &Namespace,
    last_seq: u64,
) -> serde_json::Value {
    let subject = namespace.subject("query.blogposts.list");
    let built_in = query(client, &subject, Some(&last_seq.to_string())).await;
    assert_eq!(built_in["status"], "ok", "{built_in}");
    built_in["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_listing_equals_the_built_in_one() {
    let python_path = packages().await;
    let server = NatsServer::new();
    let client = connect(&server.client_url()).await;
    let plain = Namespace::default();
    let handlers = serve_blog(&server.client_url(), &plain).await;
    // A post a version 1 release stored (no Event-Version header, the
    // version 1 shapes), then commands on it decided by today's code.
    let js = jetstream::new(client.clone());
    publish_by_hand(
        &js,
        "evt.blogpost.old-1.BlogPostCreated",
        r#"{"title":"Old","body":"v1 text"}"#,
    )
    .await;
    publish_by_hand(
        &js,
        "evt.blogpost.old-1.BlogPostTitleChanged",
        r#"{"title":"Old, again"}"#,
    )
    .await;
    let commands = CommandClient::new(client.clone());
    let retitle = |title: &str| serde_json::json!({ "title": title }).to_string();
    let same = send_with(
        &commands,
        "old-1",
        "change_title",
        retitle("Old, again"),
        &SendOptions::default(),
    )
    .await;
    let CommandReply::Accepted(same) = same else {
        panic!("a change on an upcast post: {same:?}");
    };
    assert!(
        same.events.is_empty(),
        "the upcast title is the current one: {same:?}"
    );
    write_posts(&client, &plain, 12, "Post").await;
    let third = send_with(
        &commands,
        "old-1",
        "change_title",
        retitle("Old, third"),
        &SendOptions::default(),
    )
    .await;
    let CommandReply::Accepted(third) = third else {
        panic!("a change on an upcast post: {third:?}");
    };
    let last_seq = third.events[0].seq;

    let running = Projectors::start(
        ProjectorRuntime::builder(client.clone()).in_memory(InMemory::new(BlogPosts)),
    )
    .await;
    let built_in = built_in_listing(&client, &plain, last_seq).await;
    assert_eq!(built_in["items"].as_array().map(Vec::len), Some(13));
    let old = &built_in["items"][0];
    assert_eq!(
        (&old["id"], &old["title"], &old["author"], &old["events"]),
        (
            &"old-1".into(),
            &"Old, third".into(),
            &"unknown".into(),
            &3.into()
        ),
        "{old}"
    );
    assert_eq!(
        built_in["items"][1]["author"], "unknown",
        "a post created without one"
    );

    let python = example_lists(python_path, server.client_url(), Run::default()).await;
    assert_eq!(python, built_in);

    running.stop().await.expect("stop");
    handlers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_subject_prefix_the_python_listing_reads_that_application_only() {
    let python_path = packages().await;
    let server = NatsServer::new();
    let url = server.client_url();
    let client = connect(&url).await;
    // Two applications on one server: acme.shop, and one without a prefix
    // holding other posts under the same ids.
    let shop = Namespace::new("acme.shop").expect("valid");
    let plain = Namespace::default();
    let shop_handlers = serve_blog(&url, &shop).await;
    let plain_handlers = serve_blog(&url, &plain).await;
    let last_seq = write_posts(&client, &shop, 7, "Shop").await;
    write_posts(&client, &plain, 3, "Plain").await;

    let running = Projectors::start(
        ProjectorRuntime::builder(client.clone())
            .in_memory(InMemory::new(BlogPosts))
            .config(ProjectorConfig {
                namespace: shop.clone(),
                ..ProjectorConfig::default()
            }),
    )
    .await;
    let built_in = built_in_listing(&client, &shop, last_seq).await;
    assert_eq!(built_in["items"].as_array().map(Vec::len), Some(7));
    assert_eq!(built_in["items"][0]["title"], "Shop 0, again");

    // The prefix by flag, by environment, and by flag over environment.
    for run in [
        Run::default().arg("--subject-prefix").arg("acme.shop"),
        Run::default().env("JETSOURCE_SUBJECT_PREFIX", "acme.shop"),
        Run::default()
            .arg("--subject-prefix")
            .arg("acme.shop")
            .env("JETSOURCE_SUBJECT_PREFIX", "other-app"),
    ] {
        let python = example_lists(python_path.clone(), url.clone(), run).await;
        assert_eq!(python, built_in);
    }
    // An empty flag is no prefix, over the environment's.
    let unprefixed = example_lists(
        python_path,
        url,
        Run::default()
            .arg("--subject-prefix")
            .arg("")
            .env("JETSOURCE_SUBJECT_PREFIX", "acme.shop"),
    )
    .await;
    assert_eq!(unprefixed["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(unprefixed["items"][0]["title"], "Plain 0, again");

    running.stop().await.expect("stop");
    shop_handlers.stop().await;
    plain_handlers.stop().await;
}

#[tokio::test]
async fn the_python_listing_refuses_an_invalid_subject_prefix() {
    let python_path = packages().await;
    // Refused before connecting: no server is needed, and none is reached.
    let url = "nats://127.0.0.1:9".to_string();
    for (run, source, prefix) in [
        (
            Run::default().arg("--subject-prefix").arg("Acme_Shop"),
            "--subject-prefix",
            "Acme_Shop",
        ),
        (
            Run::default().arg("--subject-prefix").arg("acme..shop"),
            "--subject-prefix",
            "acme..shop",
        ),
        (
            Run::default().env("JETSOURCE_SUBJECT_PREFIX", "acme.evt"),
            "JETSOURCE_SUBJECT_PREFIX",
            "acme.evt",
        ),
        (
            Run::default()
                .arg("--subject-prefix")
                .arg(&"x".repeat(65))
                .env("JETSOURCE_SUBJECT_PREFIX", "acme.shop"),
            "--subject-prefix",
            &"x".repeat(65),
        ),
    ] {
        let report = example_fails(python_path.clone(), url.clone(), run).await;
        assert_eq!(report["error"], "invalid_prefix", "{report}");
        assert_eq!(report["source"], source, "{report}");
        assert_eq!(report["prefix"], prefix, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_off_its_schema_stops_the_python_listing_at_its_sequence() {
    let python_path = packages().await;
    let server = NatsServer::new();
    let client = connect(&server.client_url()).await;
    let store = event_store(&client).await;
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

    let report = example_fails(python_path, server.client_url(), Run::default()).await;
    assert_eq!(report["error"], "invalid_event", "{report}");
    assert_eq!(report["stream"], "EVT_BLOGPOST", "{report}");
    assert_eq!(report["seq"], bad, "{report}");
    assert_eq!(report["subject"], "evt.blogpost.p2.BlogPostCreated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_listing_refuses_a_stream_of_another_contract_version() {
    let python_path = packages().await;
    let server = NatsServer::new();
    let js = jetstream::new(connect(&server.client_url()).await);
    // Made by hand, not by jetsource: no contract version at all.
    let mut config = stream::Config {
        name: "EVT_BLOGPOST".into(),
        subjects: vec!["evt.blogpost.>".into()],
        ..Default::default()
    };
    js.create_stream(config.clone()).await.expect("create");
    let report = example_fails(python_path.clone(), server.client_url(), Run::default()).await;
    assert_eq!(report["error"], "contract_mismatch", "{report}");
    assert_eq!(report["source"], "EVT_BLOGPOST", "{report}");
    assert_eq!(report["found"], serde_json::Value::Null, "{report}");

    let other = format!("{CONTRACT_VERSION}-other");
    config.metadata = HashMap::from([(CONTRACT_METADATA_KEY.to_string(), other.clone())]);
    js.update_stream(config).await.expect("update");
    let report = example_fails(python_path, server.client_url(), Run::default()).await;
    assert_eq!(report["error"], "contract_mismatch", "{report}");
    assert_eq!(report["found"], other.as_str(), "{report}");
    assert_eq!(report["expected"], CONTRACT_VERSION, "{report}");
}

/// A personal field sealed under a key the listing does not have reads as
/// its redaction value, as PROTOCOL.md ("Personal data") says: never as the
/// ciphertext, never as an event off its schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_listing_shows_a_sealed_field_as_its_redaction_value() {
    use jetsource::schemas::personal::{self, DataKey, PersonalData};
    let python_path = packages().await;
    let server = NatsServer::new();
    let client = connect(&server.client_url()).await;
    let store = event_store(&client).await;
    store
        .ensure_stream("blogpost", &StreamSettings::default())
        .await
        .expect("stream");
    let key = DataKey::generate("blogpost.p1").expect("a key");
    let sealed = personal::seal_body(
        &PersonalData::new().field("BlogPostCreated", "author"),
        "BlogPostCreated",
        br#"{"title":"Hi","body":"text","author":"Ada Lovelace"}"#,
        &key,
    )
    .expect("sealed")
    .expect("a personal field");
    let js = jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Event-Version", "2");
    js.publish_with_headers("evt.blogpost.p1.BlogPostCreated", headers, sealed.into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let listing = example_lists(python_path, server.client_url(), Run::default()).await;
    assert_eq!(
        listing["items"][0]["author"],
        personal::REDACTED,
        "{listing}"
    );
    assert_eq!(listing["items"][0]["title"], "Hi", "{listing}");
}
