//! Faults under load: nats-server killed and restarted, a jetsource process
//! killed, a cluster losing its stream leader or its quorum. Clients resend
//! with the same Command-Id until they get an answer; a checker then shows
//! every accepted command's events stored exactly once, in accept order.

#[path = "faults/balances.rs"]
mod balances;
mod common;

use common::*;
use jetsource::client::CommandClient;
use jetsource::handlers::store::EventStore;
use jetsource::schemas::{Accepted, CommandReply, RejectionCode};
use jetsource::RuntimeConfig;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKERS: usize = 8;

/// Fault tests start servers and kill them: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fault_config(replicas: usize) -> RuntimeConfig {
    let mut config = RuntimeConfig {
        store_timeout: Duration::from_secs(1),
        ..RuntimeConfig::default()
    };
    config.handler.unavailable_retries = 2;
    config.handler.retry_backoff = Duration::from_millis(20);
    config.streams.replicas = replicas;
    config
}

/// Sends one command until it gets an answer other than `unavailable`,
/// counting every attempt in `sent`.
async fn until_answered(
    client: &CommandClient,
    account: &str,
    command: &str,
    body: String,
    command_id: &str,
    sent: &AtomicUsize,
) -> CommandReply {
    let options = with_id(command_id);
    let answer = format!("an answer to {command_id}");
    eventually(answer, Duration::from_secs(90), || {
        let (body, options) = (body.clone(), &options);
        async move {
            sent.fetch_add(1, Ordering::Relaxed);
            let reply = client
                .send("account", account, command, body, options)
                .await;
            reply
                .ok()
                .filter(|reply| reply.code() != Some(RejectionCode::Unavailable))
        }
    })
    .await
}

/// One client: opens its account, then deposits 1, 2, … in order until
/// `stop` is set.
async fn worker(
    url: String,
    w: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> Vec<Accepted> {
    let client = CommandClient::new(
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(url.split(',').collect::<Vec<_>>())
            .await
            .expect("client connects"),
    )
    .with_timeout(Duration::from_secs(2));
    let account = format!("acc-{w}");
    let mut accepted = Vec::new();
    let open = until_answered(
        &client,
        &account,
        "open",
        r#"{"owner":"ada"}"#.into(),
        &format!("open-{w}"),
        &sent,
    )
    .await;
    accepted.push(common::accepted(open));
    for i in 1.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let reply = until_answered(
            &client,
            &account,
            "deposit",
            format!(r#"{{"amount":{i}}}"#),
            &format!("dep-{w}-{i}"),
            &sent,
        )
        .await;
        accepted.push(common::accepted(reply));
    }
    accepted
}

/// What the checker found: every count but `accepted` must be 0.
#[derive(Debug, Default, PartialEq, Eq)]
struct Findings {
    /// Commands accepted.
    accepted: usize,
    /// Accepted commands with no event in the stream.
    lost: usize,
    /// Extra copies of an accepted command's events.
    doubled: usize,
    /// Accepted commands stored before one accepted earlier on the same
    /// aggregate, or at another sequence than their reply named.
    reordered: usize,
    /// Events of commands that were never accepted.
    unexplained: usize,
}

/// Compares, per aggregate, the commands accepted (in accept order) with
/// the events stored, as a queue checker would.
fn compare(accepted: &[Accepted], stored: &[jetsource::handlers::store::StoredEvent]) -> Findings {
    let mut findings = Findings {
        accepted: accepted.len(),
        ..Findings::default()
    };
    let stored_ids: Vec<&str> = stored
        .iter()
        .map(|e| e.command_id().unwrap_or(""))
        .collect();
    let mut last_position = None;
    for reply in accepted {
        let positions: Vec<usize> = stored_ids
            .iter()
            .enumerate()
            .filter(|(_, id)| **id == reply.command_id)
            .map(|(i, _)| i)
            .collect();
        let Some(&first) = positions.first() else {
            findings.lost += 1;
            continue;
        };
        findings.doubled += positions.len() - 1;
        let at_its_sequence = reply.events.len() == 1 && reply.events[0].seq == stored[first].seq;
        if last_position.is_some_and(|last| first < last) || !at_its_sequence {
            findings.reordered += 1;
        }
        last_position = Some(first);
    }
    findings.unexplained = stored_ids
        .iter()
        .filter(|id| !accepted.iter().any(|a| a.command_id == **id))
        .count();
    findings
}

/// Every accepted command is stored exactly once, at the sequences its reply
/// named, in the order it was accepted; nothing else is stored. Prints the
/// figures under `label`, then asserts them.
async fn check(store: &EventStore, results: Vec<Vec<Accepted>>, label: &str, sent: usize) {
    let mut total = Findings::default();
    for (w, accepted) in results.into_iter().enumerate() {
        let account = format!("acc-{w}");
        let stored = stored_with_retry(store, &account, accepted.len()).await;
        let found = compare(&accepted, &stored);
        total.accepted += found.accepted;
        total.lost += found.lost;
        total.doubled += found.doubled;
        total.reordered += found.reordered;
        total.unexplained += found.unexplained;
        let balance: u64 = stored
            .iter()
            .filter(|e| e.event_type() == "MoneyDeposited")
            .map(|e| {
                serde_json::from_slice::<serde_json::Value>(&e.payload).expect("json")["amount"]
                    .as_u64()
                    .expect("amount")
            })
            .sum();
        let deposits = accepted.len() as u64 - 1;
        assert_eq!(balance, deposits * (deposits + 1) / 2, "{account}: balance");
    }
    eprintln!(
        "{label}: {sent} commands sent (resends included), {} accepted, {} lost, {} doubled, {} reordered, {} unexplained",
        total.accepted, total.lost, total.doubled, total.reordered, total.unexplained
    );
    assert_eq!(
        total,
        Findings {
            accepted: total.accepted,
            ..Findings::default()
        },
        "{label}: nothing lost, doubled, reordered or unexplained"
    );
    assert!(total.accepted > WORKERS, "{label}: the load ran");
}

/// Loads an aggregate holding at least `at_least` events, waiting out a
/// leader election and replicas that are still catching up (direct gets
/// may be served by any replica).
async fn stored_with_retry(
    store: &EventStore,
    id: &str,
    at_least: usize,
) -> Vec<jetsource::handlers::store::StoredEvent> {
    let loaded = format!("{id} holding {at_least} events");
    eventually(loaded, DEADLINE, || async move {
        match store.load("account", id, 0).await {
            Ok(events) => (events.len() >= at_least).then_some(events),
            Err(e) => {
                eprintln!("load {id}: {e}");
                None
            }
        }
    })
    .await
}

struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<Accepted>>>,
}

fn spawn_workers(url: &str) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let workers = (0..WORKERS)
        .map(|w| tokio::spawn(worker(url.to_string(), w, stop.clone(), sent.clone())))
        .collect();
    Load {
        stop,
        sent,
        workers,
    }
}

/// Lets the load run on for `more`, then stops it and collects the results
/// and the number of commands sent.
async fn join(load: Load, more: Duration) -> (Vec<Vec<Accepted>>, usize) {
    tokio::time::sleep(more).await;
    load.stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for w in load.workers {
        results.push(w.await.expect("worker"));
    }
    (results, load.sent.load(Ordering::Relaxed))
}

fn worker_accounts() -> Vec<String> {
    (0..WORKERS).map(|w| format!("acc-{w}")).collect()
}

const ROUNDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_and_restarted_under_load() {
    let _serial = SERIAL.lock().await;
    let mut server = NatsServer::new();
    let url = server.client_url();
    let js = start_all(&url, fault_config(1)).await;
    let projectors = balances::start(&url, true).await;
    let workers = spawn_workers(&url);
    for _ in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(400)).await;
        tokio::task::block_in_place(|| server.restart());
    }
    let (results, sent) = join(workers, Duration::from_millis(500)).await;
    check(
        &js.store,
        results,
        &format!("server crash ({ROUNDS} kill -9 rounds)"),
        sent,
    )
    .await;
    // It serves again without operator action.
    let client = commands(&url).await;
    let reply = until_answered(
        &client,
        "acc-0",
        "deposit",
        r#"{"amount":1}"#.into(),
        "after",
        &AtomicUsize::new(0),
    )
    .await;
    assert!(reply.is_accepted());
    // Both read models, in memory and in KV, equal the fold of the stream.
    for name in ["balances", "balances_kv"] {
        balances::check_projection(&js.client, &js.store, name, &worker_accounts()).await;
    }
    projectors.stop().await.expect("projectors stop");
    js.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetsource_process_killed_under_load() {
    let _serial = SERIAL.lock().await;
    let server = NatsServer::new();
    let url = server.client_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = JetsourceProcess::start(&url, dir.path());
    let _second = JetsourceProcess::start(&url, dir.path());
    let projectors = balances::start(&url, false).await;
    let workers = spawn_workers(&url);
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill();
    let (results, sent) = join(workers, Duration::from_millis(1000)).await;
    let client = async_nats::connect(&url).await.expect("connect");
    let store = event_store(&client).await;
    check(&store, results, "jetsource crash (1 kill -9)", sent).await;
    balances::check_projection(&client, &store, "balances", &worker_accounts()).await;
    projectors.stop().await.expect("projectors stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_loses_its_stream_leader_under_load() {
    let _serial = SERIAL.lock().await;
    let mut cluster = NatsCluster::new(3);
    let urls = cluster.client_urls();
    let js = start_all(&urls, fault_config(3)).await;
    let projectors = balances::start(&urls, false).await;
    let workers = spawn_workers(&urls);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let jetstream = async_nats::jetstream::new(js.client.clone());
    let info = jetstream
        .get_stream("EVT_ACCOUNT")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .clone();
    let leader = info.cluster.and_then(|c| c.leader).expect("a leader");
    let index = cluster.index_of(&leader).expect("leader is a node");
    tokio::task::block_in_place(|| cluster.node(index).kill());
    let (results, sent) = join(workers, Duration::from_millis(1000)).await;
    check(
        &js.store,
        results,
        "leader failover (1 leader killed)",
        sent,
    )
    .await;
    balances::check_projection(&js.client, &js.store, "balances", &worker_accounts()).await;
    projectors.stop().await.expect("projectors stop");
    js.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_quorum_answers_unavailable_then_recovers() {
    let _serial = SERIAL.lock().await;
    let mut cluster = NatsCluster::new(3);
    let urls = cluster.client_urls();
    let js = start_all(&urls, fault_config(3)).await;
    let client = CommandClient::new(
        async_nats::ConnectOptions::new()
            .connect(urls.split(',').collect::<Vec<_>>())
            .await
            .expect("connect"),
    )
    .with_timeout(Duration::from_secs(20));
    let open = send_account(&client, "q", "open", r#"{"owner":"ada"}"#).await;
    assert!(open.is_accepted());
    let before = js.store.load("account", "q", 0).await.expect("load").len();

    // Two of three down: the stream has no quorum. Keep the node the
    // runtime is connected to, so the command reaches a handler.
    let connected = js.client.server_info().server_name.clone();
    let keep = cluster.index_of(&connected).expect("connected to a node");
    for i in (0..3).filter(|i| *i != keep) {
        tokio::task::block_in_place(|| cluster.node(i).kill());
    }
    let started = Instant::now();
    let during = with_id("during-outage");
    // Ask through the surviving node, so the question cannot be lost to
    // the client's own reconnection.
    let survivor = CommandClient::new(
        async_nats::connect(cluster.node(keep).client_url())
            .await
            .expect("connect to the surviving node"),
    )
    .with_timeout(Duration::from_secs(20));
    let reply = survivor
        .send("account", "q", "deposit", r#"{"amount":5}"#, &during)
        .await
        .expect("an answer, not a hang");
    assert_eq!(reply.code(), Some(RejectionCode::Unavailable), "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(20));

    for i in (0..3).filter(|i| *i != keep) {
        tokio::task::block_in_place(|| cluster.node(i).restart());
    }
    // `unavailable` means the outcome was not confirmed: the client resends
    // with the same Command-Id, and the deposit counts exactly once.
    let reply = until_answered(
        &client,
        "q",
        "deposit",
        r#"{"amount":5}"#.into(),
        "during-outage",
        &AtomicUsize::new(0),
    )
    .await;
    assert!(reply.is_accepted(), "{reply:?}");
    let reply = until_answered(
        &client,
        "q",
        "deposit",
        r#"{"amount":7}"#.into(),
        "after-recovery",
        &AtomicUsize::new(0),
    )
    .await;
    assert!(reply.is_accepted(), "{reply:?}");
    let stored = stored_with_retry(&js.store, "q", before + 2).await;
    let amounts: Vec<_> = stored
        .iter()
        .skip(before)
        .map(|e| {
            serde_json::from_slice::<serde_json::Value>(&e.payload).expect("json")["amount"].clone()
        })
        .collect();
    assert_eq!(
        amounts,
        [serde_json::json!(5), serde_json::json!(7)],
        "each deposit exactly once"
    );
    js.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_at_its_byte_limit_answers_unavailable_then_recovers() {
    let _serial = SERIAL.lock().await;
    let server = NatsServer::new();
    let url = server.client_url();
    let mut config = fault_config(1);
    config.streams.max_bytes = Some(2048);
    let js = start_all(&url, config.clone()).await;
    let client = commands(&url).await.with_timeout(Duration::from_secs(20));
    let sent = AtomicUsize::new(0);
    let send = |command: &'static str, body: String, id: String| {
        let client = client.clone();
        let sent = &sent;
        async move {
            sent.fetch_add(1, Ordering::Relaxed);
            client
                .send("account", "full", command, body, &with_id(&id))
                .await
                .expect("an answer within the client's timeout, not a hang")
        }
    };
    assert!(send("open", r#"{"owner":"ada"}"#.into(), "open".into())
        .await
        .is_accepted());
    // Deposit 1, 2, … until the stream refuses; a few hundred bytes each,
    // so 2 KiB is reached long before the bound.
    let mut deposited = 0;
    let mut refused = None;
    for i in 1..=100u64 {
        let reply = send("deposit", format!(r#"{{"amount":{i}}}"#), format!("d{i}")).await;
        if reply.is_accepted() {
            deposited += i;
        } else {
            refused = Some((i, reply));
            break;
        }
    }
    let (i, reply) = refused.expect("the stream filled up");
    assert_eq!(rejected(&reply), RejectionCode::Unavailable, "{reply:?}");
    let before = stream_state(&js.client, "EVT_ACCOUNT").await;
    let stored = js.store.load("account", "full", 0).await.expect("load");
    // Nothing written by the refused command, and history intact: every
    // accepted command is still there (discard new, never old).
    assert_eq!(stored.len() as u64, i, "open + {} deposits", i - 1);
    // Handler state did not advance: withdrawing one more than the stored
    // balance is refused as insufficient funds, not as a full store.
    let overdraw = send(
        "withdraw",
        format!(r#"{{"amount":{}}}"#, deposited + 1),
        "overdraw".into(),
    )
    .await;
    assert_eq!(
        rejected(&overdraw),
        RejectionCode::Validation,
        "{overdraw:?}"
    );
    // Resending the refused deposit is refused the same way.
    let again = send("deposit", format!(r#"{{"amount":{i}}}"#), format!("d{i}")).await;
    assert_eq!(rejected(&again), RejectionCode::Unavailable, "{again:?}");
    assert_eq!(stream_state(&js.client, "EVT_ACCOUNT").await, before);

    // Recovery: an operator raises the limit (as a restarted process with
    // a larger `streams.max_bytes` would).
    let mut raised = config.streams.clone();
    raised.max_bytes = Some(1 << 20);
    js.store
        .ensure_stream("account", &raised)
        .await
        .expect("raise the limit");
    let retried = send("deposit", format!(r#"{{"amount":{i}}}"#), format!("d{i}")).await;
    assert!(retried.is_accepted(), "{retried:?}");
    let withdraw = send(
        "withdraw",
        format!(r#"{{"amount":{}}}"#, deposited + i),
        "all".into(),
    )
    .await;
    assert!(withdraw.is_accepted(), "the whole balance: {withdraw:?}");
    let stored = js.store.load("account", "full", 0).await.expect("load");
    let ids: Vec<_> = stored
        .iter()
        .map(|e| e.command_id().unwrap_or(""))
        .collect();
    assert_eq!(ids.len() as u64, i + 2, "the refused deposit counted once");
    assert_eq!(ids.last(), Some(&"all"));
    eprintln!(
        "store full: refused after {} deposits ({} commands sent), state held, accepted again after the limit was raised",
        i - 1,
        sent.load(Ordering::Relaxed)
    );
    js.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_never_overdraw_across_two_processes() {
    let _serial = SERIAL.lock().await;
    let server = NatsServer::new();
    let url = server.client_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let _a = JetsourceProcess::start(&url, dir.path());
    let _b = JetsourceProcess::start(&url, dir.path());
    let client = commands(&url).await;
    let ok = |r: CommandReply| assert!(r.is_accepted(), "{r:?}");
    ok(send_account(&client, "bank", "open", r#"{"owner":"ada"}"#).await);
    ok(send_account(&client, "bank", "deposit", r#"{"amount":1000}"#).await);
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let amount = 10 + (i % 7) * 10;
            let body = format!(r#"{{"amount":{amount}}}"#);
            let reply = send_account(&client, "bank", "withdraw", body).await;
            (amount, reply)
        }));
    }
    let mut withdrawn = 0;
    for task in tasks {
        let (amount, reply) = task.await.expect("task");
        match reply {
            CommandReply::Accepted(_) => withdrawn += amount,
            CommandReply::Rejected(r) => assert_eq!(r.code, RejectionCode::Validation, "{r:?}"),
        }
    }
    let store = event_store(&async_nats::connect(&url).await.expect("connect")).await;
    let mut balance: i64 = 0;
    for event in store.load("account", "bank", 0).await.expect("load") {
        let body: serde_json::Value = serde_json::from_slice(&event.payload).expect("json");
        match event.event_type() {
            "MoneyDeposited" => balance += body["amount"].as_i64().expect("amount"),
            "MoneyWithdrawn" => balance -= body["amount"].as_i64().expect("amount"),
            _ => {}
        }
        assert!(balance >= 0, "the balance went negative at {}", event.seq);
    }
    assert_eq!(balance, 1000 - withdrawn as i64);
    assert!(withdrawn > 0 && withdrawn <= 1000);
}
