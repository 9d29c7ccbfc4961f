//! Several applications on one nats-server, each under its own subject
//! prefix (and one without): the same aggregate type and id in each, events
//! only in each namespace's own stream, commands, feedback, projections and
//! buckets never crossing over. Also the prefix setting at the command line.

mod common;

use common::*;
use jetsource::app::App;
use jetsource::client::{CommandClient, SendErrorKind, SendOptions};
use jetsource::config::Config;
use jetsource::projector::StatusReport;
use jetsource::schemas::feedback::{FeedbackAnswer, RejectionList};
use jetsource::schemas::{
    CommandReply, Namespace, RejectionCode, CONTRACT_METADATA_KEY, CONTRACT_VERSION,
};
use jetsource_reference::blog::BlogPost;
use jetsource_reference::blogposts::BlogPosts;
use std::collections::BTreeSet;

/// `jetsource run` in this process, for one subject prefix.
struct Application {
    namespace: Namespace,
    commands: CommandClient,
    serving: InProcessRun,
}

impl Application {
    /// Every role, the blog aggregate and its persisted projection (so the
    /// projection's bucket and lease live under the prefix too), configured
    /// as a deployment would be: `[nats] subject_prefix`.
    async fn start(url: &str, prefix: &str, client: &async_nats::Client) -> Application {
        let mut config = Config::default();
        config.nats.subject_prefix = prefix.to_string();
        config.projectors.settings.query_wait = std::time::Duration::from_secs(30);
        let namespace = config.namespace().expect("a valid prefix");
        let app = App::new().aggregate::<BlogPost>().documents(|| BlogPosts);
        let serving = InProcessRun::spawn(app, config, Some(url));
        let commands = CommandClient::new(client.clone()).with_namespace(namespace.clone());
        // The handlers start last: once a command is answered, every role is up.
        let reply = eventually(format!("an answer in {prefix:?}"), DEADLINE, || {
            let commands = &commands;
            async move {
                let none = SendOptions::default();
                match commands
                    .send("blogpost", "warm-up", "publish", "{}", &none)
                    .await
                {
                    Ok(reply) => Some(reply),
                    Err(e) if e.kind() == SendErrorKind::NoAnswer => None,
                    Err(e) => panic!("{prefix:?} never answered: {e}"),
                }
            }
        })
        .await;
        assert_eq!(reply.code(), Some(RejectionCode::NotFound));
        Application {
            namespace,
            commands,
            serving,
        }
    }

    async fn send(&self, id: &str, command: &str, body: &str, command_id: &str) -> CommandReply {
        let options = with_id(command_id);
        send_with(&self.commands, id, command, body.to_string(), &options).await
    }

    async fn stop(self) {
        self.serving.stop().await.expect("a clean stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_share_a_server_without_crossing() {
    let server = NatsServer::new();
    let url = server.client_url();
    let client = async_nats::connect(&url).await.expect("connect");
    let a = Application::start(&url, "app-a", &client).await;
    let b = Application::start(&url, "app-b", &client).await;
    let plain = Application::start(&url, "", &client).await;

    // The same aggregate type and id, and even the same command id, in each:
    // three aggregates, each the first event of its own stream.
    for (app, title) in [(&a, "A"), (&b, "B"), (&plain, "plain")] {
        let body = format!(r#"{{"title":"{title}","body":"x"}}"#);
        let created = accepted(app.send("p1", "create", &body, "create-p1").await);
        assert!(
            !created.duplicate,
            "{title}: a resend of another namespace's command"
        );
        assert_eq!(created.events.len(), 1);
        assert_eq!(
            created.events[0].stream,
            app.namespace.stream_name("blogpost")
        );
        assert_eq!(created.events[0].seq, 1);
    }
    assert_eq!(a.namespace.stream_name("blogpost"), "app-a_EVT_BLOGPOST");
    assert_eq!(b.namespace.stream_name("blogpost"), "app-b_EVT_BLOGPOST");
    assert_eq!(plain.namespace.stream_name("blogpost"), "EVT_BLOGPOST");

    // More in app-a and app-b; one command id rejected in app-a, accepted in app-b.
    accepted(a.send("p1", "publish", "{}", "publish-p1").await);
    let rejected = a
        .send("p1", "change_title", r#"{"title":"  "}"#, "same-id")
        .await;
    assert_eq!(rejected.code(), Some(RejectionCode::Validation));
    let changed = accepted(
        b.send("p1", "change_title", r#"{"title":"B2"}"#, "same-id")
            .await,
    );
    assert_eq!(changed.events[0].seq, 2);

    // Each namespace's events only in its own stream.
    let js = async_nats::jetstream::new(client.clone());
    let mut event_streams = BTreeSet::new();
    for (app, stored) in [(&a, 2), (&b, 2), (&plain, 1)] {
        let name = app.namespace.stream_name("blogpost");
        let mut stream = js.get_stream(&name).await.expect("the stream exists");
        let info = stream.info().await.expect("stream info");
        assert_eq!(info.state.messages, stored, "{name}");
        assert_eq!(
            info.config.subjects,
            vec![app.namespace.type_filter("blogpost").expect("valid")]
        );
        event_streams.insert(name);
    }
    let mut names = js.stream_names();
    let mut all = BTreeSet::new();
    while let Some(name) = futures::StreamExt::next(&mut names).await {
        all.insert(name.expect("a stream name"));
    }
    let evt: BTreeSet<String> = all.into_iter().filter(|n| n.contains("EVT_")).collect();
    assert_eq!(evt, event_streams);

    // A command on a namespace nobody serves: no handler of another answers it.
    let unserved =
        CommandClient::new(client.clone()).with_namespace(Namespace::new("app-c").expect("valid"));
    let lost = unserved
        .send("blogpost", "p1", "publish", "{}", &SendOptions::default())
        .await
        .expect_err("nobody serves app-c");
    assert_eq!(lost.kind(), SendErrorKind::NoAnswer);

    // Feedback answers within its own namespace.
    let answer = known(
        &client,
        &a.namespace.errors_get_subject("same-id").expect("valid"),
    )
    .await;
    assert_eq!(answer.status(), "rejected");
    let answer = known(
        &client,
        &a.namespace.status_subject("same-id").expect("valid"),
    )
    .await;
    assert_eq!(answer.status(), "rejected");
    match known(
        &client,
        &b.namespace.status_subject("same-id").expect("valid"),
    )
    .await
    {
        FeedbackAnswer::Accepted(status) => {
            assert_eq!(status.events[0].stream, "app-b_EVT_BLOGPOST")
        }
        other => panic!("app-b's command is accepted there: {other:?}"),
    }
    let answer: FeedbackAnswer = ask(
        &client,
        &b.namespace.errors_get_subject("same-id").expect("valid"),
    )
    .await;
    assert_eq!(
        answer.status(),
        "unknown",
        "app-a's rejection reached app-b"
    );
    for subject in [
        plain.namespace.errors_get_subject("same-id"),
        plain.namespace.status_subject("same-id"),
    ] {
        let answer: FeedbackAnswer = ask(&client, &subject.expect("valid")).await;
        assert_eq!(answer.status(), "unknown", "{answer:?}");
    }
    for (app, rejections) in [(&a, 1), (&b, 0), (&plain, 0)] {
        let subject = app
            .namespace
            .errors_list_subject("blogpost", "p1")
            .expect("valid");
        let list: RejectionList = ask(&client, &subject).await;
        assert_eq!(list.rejections.len(), rejections, "{subject}");
        match known(
            &client,
            &app.namespace.status_subject("create-p1").expect("valid"),
        )
        .await
        {
            FeedbackAnswer::Accepted(status) => assert_eq!(
                status.events[0].stream,
                app.namespace.stream_name("blogpost")
            ),
            other => panic!("{subject}: create-p1 is accepted: {other:?}"),
        }
    }

    // Each projection sees its own events only.
    for (app, title, seq) in [(&a, "A", 2), (&b, "B2", 2), (&plain, "plain", 1)] {
        let stream = app.namespace.stream_name("blogpost");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            jetsource::schemas::headers::AFTER_SEQ,
            seq.to_string().as_str(),
        );
        let subject = app.namespace.subject("query.blogposts.get.p1");
        let reply = client
            .send_request(subject.clone(), async_nats::Request::new().headers(headers))
            .await
            .expect("a query answer");
        let answer: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
        assert_eq!(answer["status"], "ok", "{subject}: {answer}");
        assert_eq!(answer["result"]["title"], title, "{subject}: {answer}");
        assert_eq!(answer["result"]["last_seq"], seq, "{subject}: {answer}");
        assert_eq!(
            answer["positions"],
            serde_json::json!({ stream.clone(): seq }),
            "{subject}: {answer}"
        );
        let list: serde_json::Value =
            ask(&client, &app.namespace.subject("query.blogposts.list")).await;
        assert_eq!(list["result"]["items"].as_array().map(Vec::len), Some(1));
        let report: StatusReport = ask(
            &client,
            &jetsource::projector::status::status_subject(&app.namespace),
        )
        .await;
        let followed: Vec<&str> = report.projectors[0]
            .streams
            .iter()
            .map(|s| s.stream.as_str())
            .collect();
        assert_eq!(followed, vec![stream.as_str()]);
        // Its buckets are its own.
        for bucket in [
            app.namespace.command_index_bucket(),
            app.namespace.bucket("jetsource_projectors"),
            app.namespace.bucket("projection_blogposts"),
        ] {
            js.get_key_value(&bucket)
                .await
                .unwrap_or_else(|e| panic!("bucket {bucket}: {e}"));
        }
    }
    assert_eq!(
        a.namespace.command_index_bucket(),
        "APP-A_jetsource_command_index"
    );

    a.stop().await;
    b.stop().await;
    plain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_ignores_other_namespaces_on_its_own_connection() {
    // One connection carrying two namespaces' runtimes: each subscription
    // takes only its own commands.
    let server = NatsServer::new();
    let url = server.client_url();
    let client = connect(&url).await;
    let mut running = Vec::new();
    for prefix in ["team-1", "team-2"] {
        let config = jetsource::RuntimeConfig {
            namespace: Namespace::new(prefix).expect("valid"),
            ..jetsource::RuntimeConfig::default()
        };
        let runtime = App::new()
            .aggregate::<BlogPost>()
            .runtime_builder(client.clone())
            .config(config)
            .build()
            .await
            .expect("build");
        assert_eq!(
            runtime.store().namespace().prefix(),
            prefix,
            "the store is in the runtime's namespace"
        );
        running.push(runtime.start().await.expect("start"));
    }
    let one =
        CommandClient::new(client.clone()).with_namespace(Namespace::new("team-1").expect("valid"));
    let two =
        CommandClient::new(client.clone()).with_namespace(Namespace::new("team-2").expect("valid"));
    let body = r#"{"title":"t","body":"x"}"#;
    let first = one
        .send("blogpost", "p", "create", body, &SendOptions::default())
        .await
        .expect("reply");
    assert_eq!(accepted(first).events[0].stream, "team-1_EVT_BLOGPOST");
    // The same create in team-2 is a new aggregate there, not a conflict.
    let second = two
        .send("blogpost", "p", "create", body, &SendOptions::default())
        .await
        .expect("reply");
    assert_eq!(accepted(second).events[0].stream, "team-2_EVT_BLOGPOST");
    // Unprefixed commands reach nobody.
    let plain = CommandClient::new(client.clone())
        .send("blogpost", "p", "create", body, &SendOptions::default())
        .await
        .expect_err("no unprefixed runtime");
    assert_eq!(plain.kind(), SendErrorKind::NoAnswer);
    for running in running {
        running.shutdown().await.expect("clean shutdown");
    }
}

#[test]
fn an_invalid_prefix_fails_the_start_naming_the_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let by_flag = jetsource_command(dir.path())
        .args(["--subject-prefix", "Shop_1", "streams"])
        .output()
        .expect("run");
    let by_env = jetsource_command(dir.path())
        .env("JETSOURCE_SUBJECT_PREFIX", "cmd")
        .args(["run"])
        .output()
        .expect("run");
    std::fs::write(
        dir.path().join("bad.toml"),
        "[nats]\nsubject_prefix = \"a..b\"\n",
    )
    .expect("write");
    let by_file = jetsource_command(dir.path())
        .args(["--config", "bad.toml", "status", "c1"])
        .output()
        .expect("run");
    for out in [by_flag, by_env, by_file] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("nats.subject_prefix"), "{stderr}");
    }
}

#[test]
fn the_cli_works_inside_its_namespace() {
    let server = NatsServer::new();
    let url = server.client_url();
    let dir = tempfile::tempdir().expect("temp dir");
    // The prefix from the environment for `run`, from the flag for the clients.
    let run = JetsourceProcess::spawn(
        dir.path(),
        &["run", "--nats-url", &url],
        &[("JETSOURCE_SUBJECT_PREFIX", "cli-app")],
    );

    let client = |args: &[&str]| run_jetsource(dir.path(), &url, args);
    let out = client(&[
        "--subject-prefix",
        "cli-app",
        "send",
        "blogpost",
        "p1",
        "create",
        r#"{"title":"Hi","body":"x"}"#,
        "--command-id",
        "c1",
    ]);
    assert_exit(&out, 0);
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(reply["events"][0]["stream"], "cli-app_EVT_BLOGPOST");

    // Without the prefix nobody answers.
    let out = client(&[
        "send",
        "blogpost",
        "p2",
        "create",
        r#"{"title":"Hi","body":"x"}"#,
    ]);
    assert_exit(&out, 3);

    let out = client(&["--subject-prefix", "cli-app", "rewind", "blogpost", "p1"]);
    assert_exit(&out, 0);
    let rewound: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rewound["events"], 1, "{rewound}");

    // Other namespaces' streams, named like this one's but not its own:
    // prefixes `cli.app` and `cli`, no prefix, and one jetsource did not name.
    streams_by_hand(
        &url,
        &[
            ("cli_app_EVT_BLOGPOST", "cli.app.evt.blogpost.>"),
            ("cli_EVT_BLOGPOST", "cli.evt.blogpost.>"),
            ("EVT_BLOGPOST", "evt.blogpost.>"),
            (
                "KV_CLI_APP_jetsource_command_index",
                "$KV.CLI_APP_jetsource_command_index.>",
            ),
            (
                "KV_jetsource_command_index",
                "$KV.jetsource_command_index.>",
            ),
            ("ORDERS", "orders.>"),
        ],
        &std::collections::HashMap::from([(
            CONTRACT_METADATA_KEY.to_string(),
            CONTRACT_VERSION.to_string(),
        )]),
    );
    let out = client(&["--subject-prefix", "cli-app", "streams"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let listed = listed["streams"].as_array().expect("streams");
    let names: Vec<&str> = listed.iter().filter_map(|s| s["name"].as_str()).collect();
    let ours: Vec<&str> = listed
        .iter()
        .filter(|s| s["events"] == true)
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(ours, vec!["cli-app_EVT_ACCOUNT", "cli-app_EVT_BLOGPOST"]);
    for stream in listed {
        let name = stream["name"].as_str().expect("a name");
        if stream["events"] == true {
            assert_eq!(stream["contract"], CONTRACT_VERSION, "{name}");
        } else {
            assert!(name.starts_with("KV_CLI-APP_"), "{name} is not ours");
            assert_eq!(stream["contract"], serde_json::Value::Null, "{name}");
        }
    }
    assert!(
        names.contains(&"KV_CLI-APP_jetsource_command_index"),
        "{names:?}"
    );

    let out = client(&[
        "--subject-prefix",
        "cli-app",
        "tail",
        "evt.blogpost.>",
        "--from-start",
        "--count",
        "1",
    ]);
    assert_exit(&out, 0);
    let tailed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(tailed["subject"], "cli-app.evt.blogpost.p1.BlogPostCreated");

    let out = client(&["--subject-prefix", "cli-app", "projector", "status"]);
    assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        report["projectors"][0]["streams"][0]["stream"],
        "cli-app_EVT_BLOGPOST"
    );

    let status = eventually_blocking("c1 known", DEADLINE, || {
        let out = client(&["--subject-prefix", "cli-app", "status", "c1"]);
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        (answer["status"] != "unknown").then_some(answer)
    });
    assert_eq!(status["status"], "accepted", "{status}");

    assert_eq!(run.terminate().code(), Some(0));
}
