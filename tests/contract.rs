//! The contract where a client in another language found it broken, checked
//! against `jetsource run` as its own process: one command id on two
//! aggregates, replies to every request whatever it echoes, answers to
//! feedback subjects with the wrong number of tokens, and accepted commands
//! that never read as `unknown` after a restart.

mod common;

use common::{ask, connect, with_id, JetsourceProcess, NatsServer, DEADLINE};
use futures::StreamExt;
use jetsource::client::{CommandClient, SendOptions};
use jetsource_schemas::feedback::{FeedbackAnswer, COMMAND_INDEX_BUCKET};
use jetsource_schemas::{CommandReply, RejectionCode};
use std::time::{Duration, Instant};

/// `jetsource run` against `url`, every role on, in its own temp folder.
struct Run {
    process: JetsourceProcess,
    _dir: tempfile::TempDir,
}

impl Run {
    fn start(url: &str) -> Run {
        let dir = tempfile::tempdir().expect("a temp dir");
        let process = JetsourceProcess::start(url, dir.path());
        Run { process, _dir: dir }
    }

    /// SIGTERM, as an orchestrator stops it: a clean stop exits 0.
    fn terminate(self) {
        let exited = self.process.terminate();
        assert!(exited.success(), "a clean stop exits 0, got {exited}");
    }
}

async fn ask_json(client: &async_nats::Client, subject: &str) -> serde_json::Value {
    common::within(
        format!("an answer on {subject}"),
        DEADLINE,
        ask(client, subject),
    )
    .await
}

fn seqs(events: &serde_json::Value) -> Vec<u64> {
    events
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("a seq"))
        .collect()
}

/// `status.<id>` answers every aggregate the id was accepted on, each with
/// only its own events: `(aggregate id, seqs)`, the first one first.
fn listed(answer: &serde_json::Value) -> Vec<(String, Vec<u64>)> {
    assert_eq!(answer["status"], "accepted", "{answer}");
    let mut listed = vec![(
        answer["aggregate_id"].as_str().expect("an id").to_string(),
        seqs(&answer["events"]),
    )];
    for other in answer["others"].as_array().into_iter().flatten() {
        listed.push((
            other["aggregate_id"].as_str().expect("an id").to_string(),
            seqs(&other["events"]),
        ));
    }
    listed
}

/// Asks `status.<id>` until the index has it (or the deadline passes).
async fn indexed_status(
    client: &async_nats::Client,
    id: &str,
    aggregates: usize,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let answer = ask_json(client, &format!("status.{id}")).await;
        let known = answer["status"] == "accepted" && listed(&answer).len() == aggregates;
        if known || started.elapsed() > DEADLINE {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_command_id_on_two_aggregates_is_two_commands_never_mixed() {
    let server = NatsServer::new();
    let url = server.client_url();
    let run = Run::start(&url);
    let client = connect(&url).await;
    let commands = CommandClient::new(client.clone());
    let body = r#"{"title":"Hello","body":"text"}"#;
    let mut seq = std::collections::BTreeMap::new();
    for post in ["p-A", "p-B"] {
        let reply = commands
            .send("blogpost", post, "create", body.to_string(), &with_id("X"))
            .await
            .expect("a reply");
        let CommandReply::Accepted(accepted) = reply else {
            panic!("{post}: the same id on another aggregate is another command: {reply:?}");
        };
        assert!(!accepted.duplicate, "{post}: a new command, not a resend");
        seq.insert(post, accepted.events[0].seq);
    }
    let want = vec![
        ("p-A".to_string(), vec![seq["p-A"]]),
        ("p-B".to_string(), vec![seq["p-B"]]),
    ];
    // A resend on either is still its own aggregate's duplicate.
    let resent = commands
        .send("blogpost", "p-B", "create", body.to_string(), &with_id("X"))
        .await
        .expect("a reply");
    match resent {
        CommandReply::Accepted(a) => {
            assert!(a.duplicate);
            assert_eq!(
                (a.aggregate_id.as_str(), a.events[0].seq),
                ("p-B", seq["p-B"])
            );
        }
        other => panic!("a resend is accepted: {other:?}"),
    }
    assert_eq!(
        listed(&indexed_status(&client, "X", 2).await),
        want,
        "before a restart"
    );
    // The durable index holds them apart too.
    let js = async_nats::jetstream::new(client.clone());
    let index = js
        .get_key_value(COMMAND_INDEX_BUCKET)
        .await
        .expect("the index");
    // The index is written behind the answer (its consumer acks in chunks),
    // so the entry is read until it holds both or the deadline passes.
    let started = Instant::now();
    let entry = loop {
        let entry = index.get("X").await.expect("read");
        let entry: serde_json::Value = entry
            .map(|bytes| serde_json::from_slice(&bytes).expect("json"))
            .unwrap_or_default();
        if entry["others"].is_array() || started.elapsed() > DEADLINE {
            break entry;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entry["aggregate_id"], "p-A");
    assert_eq!(seqs(&entry["events"]), [seq["p-A"]]);
    assert_eq!(entry["others"][0]["aggregate_id"], "p-B");
    assert_eq!(seqs(&entry["others"][0]["events"]), [seq["p-B"]]);
    run.terminate();
    let _run = Run::start(&url);
    assert_eq!(
        listed(&indexed_status(&client, "X", 2).await),
        want,
        "after a restart"
    );
}

#[tokio::test]
async fn every_query_with_the_wrong_number_of_tokens_is_answered_bad_request() {
    let server = NatsServer::new();
    let url = server.client_url();
    let _run = Run::start(&url);
    let client = connect(&url).await;
    for subject in [
        "status",
        "status.a.b",
        "errors.get",
        "errors.get.a.b",
        "errors.list",
        "errors.list.blogpost",
        "errors.list.blogpost.p1.extra",
    ] {
        let answer = ask_json(&client, subject).await;
        assert_eq!(answer["status"], "bad_request", "{subject}: {answer}");
        assert_eq!(answer["command_id"], "", "{subject}: nothing is echoed");
    }
}

#[tokio::test]
async fn a_command_echoing_a_huge_header_gets_its_reply_and_its_notice() {
    let server = NatsServer::new();
    let url = server.client_url();
    let _run = Run::start(&url);
    let client = connect(&url).await;
    let max_payload = client.server_info().max_payload;
    let junk = "\u{1}".repeat(200_000);
    for n in 0..8 {
        let id = format!("junk-{n}");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Command-Id", id.as_str());
        headers.insert("Expected-Seq", junk.as_str());
        let reply = tokio::time::timeout(
            DEADLINE,
            client.request_with_headers(
                "cmd.blogpost.p1.create".to_string(),
                headers,
                bytes::Bytes::from_static(b"{}"),
            ),
        )
        .await
        .expect("answered in time")
        .expect("a reply, not silence");
        assert!(
            reply.payload.len() < max_payload / 4,
            "{} bytes",
            reply.payload.len()
        );
        let reply: CommandReply = serde_json::from_slice(&reply.payload).expect("a reply");
        assert_eq!(reply.code(), Some(RejectionCode::BadRequest));
        assert_eq!(reply.command_id(), id);
        let started = Instant::now();
        loop {
            let found = ask_json(&client, &format!("errors.get.{id}")).await;
            if found["status"] == "rejected" {
                assert_eq!(found["code"], "bad_request");
                break;
            }
            assert!(started.elapsed() < DEADLINE, "no notice for {id}: {found}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let list = ask_json(&client, "errors.list.blogpost.p1").await;
    assert_eq!(
        list["rejections"].as_array().map(Vec::len),
        Some(8),
        "{list}"
    );
    // A query quoting it back is answered too.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("After-Seq", junk.as_str());
    let answer = tokio::time::timeout(
        DEADLINE,
        client.request_with_headers(
            "query.blogposts.list".to_string(),
            headers,
            bytes::Bytes::new(),
        ),
    )
    .await
    .expect("answered in time")
    .expect("an answer, not silence");
    assert!(
        answer.payload.len() < max_payload / 4,
        "{} bytes",
        answer.payload.len()
    );
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).expect("JSON");
    assert_eq!(answer["status"], "bad_request", "{answer}");
}

#[tokio::test]
async fn accepted_commands_never_read_unknown_after_a_clean_restart() {
    let server = NatsServer::new();
    let url = server.client_url();
    let run = Run::start(&url);
    let client = connect(&url).await;
    let commands = CommandClient::new(client.clone());
    let ids: Vec<String> = (0..2000).map(|i| format!("burst-{i}")).collect();
    let sent = futures::stream::iter(ids.clone())
        .map(|id| {
            let commands = commands.clone();
            async move {
                let reply = commands
                    .send(
                        "blogpost",
                        &format!("post-{id}"),
                        "create",
                        r#"{"title":"Hello","body":"text"}"#.to_string(),
                        &with_id(&id),
                    )
                    .await
                    .expect("a reply");
                assert!(reply.is_accepted(), "{reply:?}");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>();
    sent.await;
    run.terminate();
    let _run = Run::start(&url);
    let mut pending = 0;
    for id in &ids {
        let started = Instant::now();
        loop {
            let answer = ask_json(&client, &format!("status.{id}")).await;
            match answer["status"].as_str() {
                Some("accepted") => break,
                // The index is catching up: documented, and asked again.
                Some("pending") if started.elapsed() < DEADLINE => pending += 1,
                _ => panic!("{id}: an accepted command answered {answer}"),
            }
        }
    }
    eprintln!("{pending} answers were pending before the index caught up");
}

#[tokio::test]
async fn a_command_id_rejected_then_accepted_reads_accepted() {
    let server = NatsServer::new();
    let url = server.client_url();
    let _run = Run::start(&url);
    let client = connect(&url).await;
    let commands = CommandClient::new(client.clone());
    let body = r#"{"title":"Hello","body":"text"}"#;
    let first = commands
        .send(
            "blogpost",
            "late",
            "publish",
            "{}".to_string(),
            &with_id("retry-1"),
        )
        .await
        .expect("a reply");
    assert_eq!(first.code(), Some(RejectionCode::NotFound));
    commands
        .send(
            "blogpost",
            "late",
            "create",
            body.to_string(),
            &SendOptions::default(),
        )
        .await
        .expect("a reply");
    let second = commands
        .send(
            "blogpost",
            "late",
            "publish",
            "{}".to_string(),
            &with_id("retry-1"),
        )
        .await
        .expect("a reply");
    assert!(
        second.is_accepted(),
        "a resend after a rejection is decided again"
    );
    let status = indexed_status(&client, "retry-1", 1).await;
    let answer: FeedbackAnswer = serde_json::from_value(status.clone()).expect("an answer");
    assert_eq!(answer.status(), "accepted", "{status}");
}

/// Runs a client subcommand of `jetsource` against `url`: its exit code
/// and the answer it printed.
fn cli(url: &str, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = common::run_jetsource(dir.path(), url, args);
    let answer = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), answer)
}

#[tokio::test]
async fn the_cli_reads_projections_and_its_exit_codes_follow_the_answer() {
    let server = NatsServer::new();
    let url = server.client_url();
    let _run = Run::start(&url);
    let commands = CommandClient::new(connect(&url).await);
    let reply = commands
        .send(
            "blogpost",
            "cli-1",
            "create",
            r#"{"title":"Hello","body":"text"}"#.to_string(),
            &with_id("cli-c1"),
        )
        .await
        .expect("a reply");
    let CommandReply::Accepted(accepted) = reply else {
        panic!("accepted: {reply:?}");
    };
    let seq = accepted.events[0].seq.to_string();
    let (code, answer) = cli(
        &url,
        &["query", "blogposts", "get", "cli-1", "--after-seq", &seq],
    );
    assert_eq!(
        (code, &answer["status"]),
        (Some(0), &"ok".into()),
        "{answer}"
    );
    assert_eq!(answer["result"]["title"], "Hello");
    let (code, answer) = cli(&url, &["query", "blogposts", "get", "nobody"]);
    assert_eq!(
        (code, &answer["status"]),
        (Some(1), &"not_found".into()),
        "{answer}"
    );
    let (code, _) = cli(&url, &["query", "blogposts", "get", "p.1"]);
    assert_eq!(
        code,
        Some(2),
        "a token that is not one never reaches a subject"
    );
    let (code, _) = cli(
        &url,
        &["query", "blogposts", "get", "x", "--after-seq", "1 2"],
    );
    assert_eq!(code, Some(2), "nor a header");
    let (code, answer) = cli(&url, &["status", "never-sent"]);
    assert_eq!(
        (code, &answer["status"]),
        (Some(1), &"unknown".into()),
        "{answer}"
    );
    let (code, answer) = cli(&url, &["status", "cli-c1"]);
    assert_eq!(
        (code, &answer["status"]),
        (Some(0), &"accepted".into()),
        "{answer}"
    );
    let (code, answer) = cli(&url, &["errors", "get", "cli-c1"]);
    assert_eq!(
        (code, &answer["status"]),
        (Some(1), &"unknown".into()),
        "no rejection: {answer}"
    );
}

/// Asks `errors.list.blogpost.<id>` for one page.
async fn errors_page(
    client: &async_nats::Client,
    id: &str,
    page: serde_json::Value,
) -> serde_json::Value {
    let subject = format!("errors.list.blogpost.{id}");
    let answer = tokio::time::timeout(
        DEADLINE,
        client.request(subject.clone(), page.to_string().into_bytes().into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer to {subject}"))
    .unwrap_or_else(|e| panic!("{subject}: {e}"));
    assert!(answer.payload.len() <= client.server_info().max_payload);
    serde_json::from_slice(&answer.payload).expect("a JSON answer")
}

#[tokio::test]
async fn errors_list_pages_visit_every_rejection_once_and_each_page_fits() {
    let server = NatsServer::new();
    let url = server.client_url();
    let _run = Run::start(&url);
    let client = connect(&url).await;
    // Rejections whose reasons are as long as a reason may be: a thousand
    // of them are more than one message holds.
    let junk = "x".repeat(4096);
    let total = 1100;
    for n in 0..total {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Command-Id", format!("long-{n}").as_str());
        headers.insert("Expected-Seq", junk.as_str());
        client
            .publish_with_headers("cmd.blogpost.paged.create", headers, "{}".into())
            .await
            .expect("published");
    }
    let started = Instant::now();
    while errors_page(&client, "paged", serde_json::json!({"limit": 1000})).await["rejections"]
        .as_array()
        .map_or(0, Vec::len)
        == 0
        || ask_json(&client, &format!("errors.get.long-{}", total - 1)).await["status"]
            != "rejected"
    {
        assert!(started.elapsed() < DEADLINE, "the notices never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let default = errors_page(&client, "paged", serde_json::json!({})).await;
    assert_eq!(
        default["rejections"].as_array().map(Vec::len),
        Some(100),
        "the default page"
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let mut last_at = time::OffsetDateTime::now_utc() + Duration::from_secs(3600);
    loop {
        let mut page = serde_json::json!({"limit": 1000});
        if let Some(cursor) = &after {
            page["after"] = cursor.clone().into();
        }
        let answer = errors_page(&client, "paged", page).await;
        let items = answer["rejections"].as_array().expect("rejections").clone();
        assert!(
            !items.is_empty(),
            "a page before the last is never empty: {answer}"
        );
        pages += 1;
        for item in &items {
            let id = item["command_id"].as_str().expect("an id").to_string();
            let at = time::OffsetDateTime::parse(item["at"].as_str().expect("a time"), rfc3339)
                .expect("RFC 3339");
            assert!(at <= last_at, "newest first");
            last_at = at;
            assert!(seen.insert(id.clone()), "{id} listed twice");
        }
        match answer["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), total, "every rejection, once");
    assert!(
        pages >= 2,
        "a thousand long rejections do not fit one message"
    );
    let bad = errors_page(&client, "paged", serde_json::json!({"after": "nonsense"})).await;
    assert_eq!(bad["status"], "bad_request", "{bad}");
    let bad = errors_page(&client, "paged", serde_json::json!({"limit": 0})).await;
    assert_eq!(bad["status"], "bad_request", "{bad}");
}
