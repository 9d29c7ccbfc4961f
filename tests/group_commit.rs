//! Group commit: concurrent appends to different aggregates share atomic
//! batches, and one aggregate's conflict never costs the other commands
//! anything.

mod common;

use common::*;
use jetsource::handlers::store::{
    AppendErrorKind, EventStore, GroupCommitConfig, GroupCommitMode, NewEvent, StreamSettings,
};
use jetsource::schemas::CommandReply;
use jetsource::RuntimeConfig;
use std::sync::atomic::Ordering;

fn event(title: &str) -> Vec<NewEvent> {
    vec![new_event(
        "BlogPostTitleChanged",
        format!(r#"{{"title":"{title}"}}"#),
    )]
}

/// A store whose lanes allow a single batch in flight, so appends queued
/// behind it are sure to share the next one.
async fn store(url: &str) -> EventStore {
    let client = async_nats::connect(url).await.expect("connect");
    let store = event_store(&client)
        .await
        .with_group_commit(GroupCommitConfig {
            mode: GroupCommitMode::On,
            max_in_flight: 1,
            ..GroupCommitConfig::default()
        });
    store
        .ensure_stream("blogpost", &StreamSettings::default())
        .await
        .expect("stream");
    store
}

/// Appends to `count` aggregates at once; aggregate `bad` (if any) with a
/// stale expected sequence.
async fn concurrent(
    store: &EventStore,
    round: &str,
    count: usize,
    expected: &[u64],
    bad: Option<usize>,
) -> Vec<Result<Vec<u64>, AppendErrorKind>> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let store = store.clone();
            let expected = match bad {
                Some(b) if b == i => expected[i] + 1_000,
                _ => expected[i],
            };
            let round = round.to_string();
            tokio::spawn(async move {
                let id = format!("agg-{i}");
                let command = format!("{round}-{i}");
                store
                    .append("blogpost", &id, expected, &event(&command), &meta(&command))
                    .await
                    .map_err(|e| e.kind())
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_conflict_in_a_shared_batch_fails_only_its_command() {
    let server = NatsServer::new();
    let store = store(&server.client_url()).await;
    let stats = store.group_commit_stats().expect("group commit is on");
    let count = 40;
    // Round 1: every aggregate's first event.
    let first = concurrent(&store, "r1", count, &vec![0; count], None).await;
    let mut last: Vec<u64> = first
        .iter()
        .map(|r| *r.as_ref().expect("accepted").last().expect("seq"))
        .collect();
    // Round 2, until batches were shared: aggregate 7's expected sequence is stale.
    let mut rounds = 0;
    loop {
        rounds += 1;
        let split_before = stats.split_batches.load(Ordering::Relaxed);
        let results = concurrent(&store, &format!("r{}", rounds + 1), count, &last, Some(7)).await;
        for (i, result) in results.iter().enumerate() {
            if i == 7 {
                assert_eq!(result, &Err(AppendErrorKind::Conflict), "the culprit fails");
            } else {
                let seqs = result.as_ref().expect("every other command is accepted");
                last[i] = seqs[0];
            }
        }
        if stats.split_batches.load(Ordering::Relaxed) > split_before || rounds == 20 {
            break;
        }
    }
    assert!(
        stats.shared_batches.load(Ordering::Relaxed) > 0,
        "batches were shared"
    );
    assert!(
        stats.split_batches.load(Ordering::Relaxed) > 0,
        "a shared batch hit the conflict"
    );
    // Exactly once: each aggregate holds its first event plus one per round.
    for (i, last) in last.iter().enumerate() {
        let stored = store
            .load("blogpost", &format!("agg-{i}"), 0)
            .await
            .expect("load");
        let expected = if i == 7 { 1 } else { 1 + rounds };
        assert_eq!(stored.len(), expected, "agg-{i}");
        assert_eq!(stored.last().expect("event").seq, *last);
        let ids: std::collections::HashSet<_> = stored
            .iter()
            .map(|e| e.command_id().map(str::to_string))
            .collect();
        assert_eq!(ids.len(), stored.len(), "no command stored twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_through_the_runtime_share_batches_and_each_gets_its_own_reply() {
    let server = NatsServer::new();
    let js = Jetsource::start_with(
        &server.client_url(),
        RuntimeConfig {
            group_commit: GroupCommitConfig {
                mode: GroupCommitMode::On,
                max_in_flight: 1,
                ..GroupCommitConfig::default()
            },
            ..RuntimeConfig::default()
        },
    )
    .await;
    let client = commands(&server.client_url()).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let body = serde_json::json!({"title": format!("t{i}"), "body": "b", "publish": i % 2 == 0});
                (i, send(&client, &format!("p{i}"), "create", body).await)
            })
        })
        .collect();
    for task in tasks {
        let (i, reply) = task.await.expect("task");
        let CommandReply::Accepted(accepted) = reply else {
            panic!("p{i} rejected: {reply:?}");
        };
        let stored = js.events_of(&format!("p{i}")).await;
        let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
        let replied: Vec<u64> = accepted.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, replied, "p{i}: its own sequences");
        assert_eq!(stored.len(), if i % 2 == 0 { 2 } else { 1 });
    }
    let stats = js.store.group_commit_stats().expect("on");
    assert!(
        stats.shared_batches.load(Ordering::Relaxed) > 0,
        "batches were shared"
    );
    js.stop().await;
}

/// Creates posts from `tasks` concurrent clients until `stop` turns true,
/// resending each command (same id) until it is accepted, as a client
/// facing `unavailable` should; returns `(post id, command id)` of every
/// accepted one.
async fn keep_creating(
    url: String,
    tasks: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<(String, String)> {
    let client = commands(&url).await;
    let workers = (0..tasks).map(|task| {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let (post, command) = (format!("load-{task}-{n}"), format!("c-{task}-{n}"));
                loop {
                    let reply = client
                        .send(
                            "blogpost",
                            &post,
                            "create",
                            r#"{"title":"T","body":"b"}"#,
                            &with_id(&command),
                        )
                        .await;
                    if matches!(reply, Ok(CommandReply::Accepted(_))) {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                accepted.push((post, command));
                n += 1;
            }
            accepted
        })
    });
    let mut all = Vec::new();
    for worker in futures::future::join_all(workers).await {
        all.extend(worker.expect("a client task"));
    }
    all
}

/// Waits until the runtime's `auto` group commit reports `batching` for
/// blog posts while commands keep coming.
async fn until_batched(js: &Jetsource, batching: bool) {
    eventually(
        format!("auto group commit choosing batching = {batching}"),
        HANG,
        || async move { (js.store.appends_batched("blogpost") == Some(batching)).then_some(()) },
    )
    .await;
}

/// Every accepted create stored exactly once, under its own command id.
async fn each_stored_once(js: &Jetsource, accepted: &[(String, String)]) {
    for (post, command) in accepted {
        let events = js.events_of(post).await;
        let mine = events
            .iter()
            .filter(|e| e.command_id() == Some(command.as_str()))
            .count();
        assert_eq!(
            (events.len(), mine),
            (1, 1),
            "{post}: one event, {command}'s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_batches_on_a_syncing_server_and_publishes_alone_under_default_flushing() {
    for syncing in [true, false] {
        let server = NatsServer::with(|o| o.sync_always = syncing);
        let js = Jetsource::start(&server.client_url()).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = tokio::spawn(keep_creating(server.client_url(), 64, stop.clone()));
        if syncing {
            until_batched(&js, true).await;
        } else {
            // Under default flushing it starts alone; once it has probed
            // batches (a switch there and one back), it is alone again.
            eventually("a probe of batches and back", HANG, || {
                let stats = js.store.group_commit_stats().expect("auto is on");
                async move { (stats.switches.load(Ordering::Relaxed) >= 2).then_some(()) }
            })
            .await;
            until_batched(&js, false).await;
        }
        stop.store(true, Ordering::Relaxed);
        let accepted = load.await.expect("the load");
        assert!(!accepted.is_empty());
        js.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_syncing_under_load_is_followed_losing_and_doubling_nothing() {
    let mut server = NatsServer::with(|o| o.sync_always = true);
    let url = server.client_url();
    let js = Jetsource::start(&url).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(keep_creating(url.clone(), 64, stop.clone()));
    until_batched(&js, true).await;
    // The same store and port, no longer syncing every write: the
    // deployment moved to a faster disk setting under a running process.
    tokio::task::block_in_place(|| server.restart_with(|o| o.sync_always = false));
    until_batched(&js, false).await;
    stop.store(true, Ordering::Relaxed);
    let accepted = load.await.expect("the load");
    each_stored_once(&js, &accepted).await;
    js.stop().await;
}
