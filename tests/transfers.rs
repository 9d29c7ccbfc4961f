//! Commands that decide over several aggregates: a transfer between two
//! accounts is one decision over both and one atomic append of an event on
//! each. Against a real nats-server: a batch whose check fails on any
//! aggregate stores nothing; a transfer that meets another writer is
//! decided again; replies, resends and status list both accounts; and
//! concurrent transfers through two runtimes, with nats-server killed and
//! restarted, never create, lose or overdraw money.

mod common;

use common::*;
use jetsource::client::CommandClient;
use jetsource::feedback::FeedbackConfig;
use jetsource::handlers::store::{AggregateAppend, AppendErrorKind, EventStore, StoredEvent};
use jetsource::schemas::feedback::FeedbackAnswer;
use jetsource::schemas::{Accepted, CommandReply, EventRef, RejectionCode};
use jetsource::RuntimeConfig;
use jetsource_reference::account::{Account, AccountEvent};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Opens account `id` and deposits `amount` into it (none when 0).
async fn funded(client: &CommandClient, id: &str, amount: u64) {
    let open = send_account(client, id, "open", r#"{"owner":"ada"}"#).await;
    assert!(open.is_accepted(), "{open:?}");
    if amount > 0 {
        let body = format!(r#"{{"amount":{amount}}}"#);
        let deposit = send_account(client, id, "deposit", body).await;
        assert!(deposit.is_accepted(), "{deposit:?}");
    }
}

fn transfer(to: &str, amount: u64) -> String {
    format!(r#"{{"to":"{to}","amount":{amount}}}"#)
}

/// Sends a transfer from `from` with `command_id`.
async fn send_transfer(
    client: &CommandClient,
    from: &str,
    to: &str,
    amount: u64,
    command_id: &str,
) -> CommandReply {
    send_to(
        client,
        "account",
        from,
        "transfer",
        transfer(to, amount),
        &with_id(command_id),
    )
    .await
}

/// The last stream sequence of account `id`'s events (0: none).
async fn last_seq(store: &EventStore, id: &str) -> u64 {
    let events = store.load("account", id, 0).await.expect("load");
    events.last().map_or(0, |e| e.seq)
}

fn sent(to: &str, amount: u64) -> AccountEvent {
    AccountEvent::TransferSent {
        to: to.into(),
        amount,
    }
}

fn received(from: &str, amount: u64) -> AccountEvent {
    AccountEvent::TransferReceived {
        from: from.into(),
        amount,
    }
}

#[tokio::test]
async fn a_batch_whose_check_fails_on_one_aggregate_stores_nothing_on_any() {
    let server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start_app(&url, &reference_app(), RuntimeConfig::default()).await;
    let client = commands(&url).await;
    funded(&client, "a", 10).await;
    funded(&client, "b", 0).await;
    let store = &js.store;
    let (a, b) = (last_seq(store, "a").await, last_seq(store, "b").await);
    let out = [encoded(&sent("b", 5))];
    let into = [encoded(&received("a", 5))];
    let before = stream_state(&js.client, "EVT_ACCOUNT").await;
    // Stale on the first aggregate, then on the second: either check
    // failing refuses the whole batch.
    for (expected_a, expected_b) in [(a - 1, b), (a, b - 1), (a, 0)] {
        let appends = [
            AggregateAppend {
                aggregate_id: "a",
                expected: expected_a,
                events: &out,
            },
            AggregateAppend {
                aggregate_id: "b",
                expected: expected_b,
                events: &into,
            },
        ];
        let refused = store
            .append_many("account", &appends, &meta("stale"))
            .await
            .expect_err("a stale check refuses the batch");
        assert_eq!(refused.kind(), AppendErrorKind::Conflict, "{refused}");
        assert_eq!(stream_state(&js.client, "EVT_ACCOUNT").await, before);
        assert_eq!(
            (last_seq(store, "a").await, last_seq(store, "b").await),
            (a, b)
        );
    }
    // Both current: both stored, at consecutive sequences.
    let appends = [
        AggregateAppend {
            aggregate_id: "a",
            expected: a,
            events: &out,
        },
        AggregateAppend {
            aggregate_id: "b",
            expected: b,
            events: &into,
        },
    ];
    let seqs = store
        .append_many("account", &appends, &meta("current"))
        .await
        .expect("stored");
    let head = before.0;
    assert_eq!(seqs, [head + 1, head + 2]);
    assert_eq!(
        (last_seq(store, "a").await, last_seq(store, "b").await),
        (head + 1, head + 2)
    );
    js.stop().await;
}

#[tokio::test]
async fn a_transfer_that_meets_another_writer_is_decided_again() {
    let server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start_app(&url, &reference_app(), RuntimeConfig::default()).await;
    let client = commands(&url).await;
    funded(&client, "a", 10).await;
    funded(&client, "b", 0).await;
    // The runtime holds both accounts now.
    assert!(send_transfer(&client, "a", "b", 4, "t1")
        .await
        .is_accepted());
    // Another writer empties the source behind the runtime's back.
    let store = &js.store;
    let a = last_seq(store, "a").await;
    let by_hand = [encoded(&AccountEvent::MoneyWithdrawn { amount: 6 })];
    store
        .append("account", "a", a, &by_hand, &meta("by-hand-a"))
        .await
        .expect("stored");
    let before = stream_state(&js.client, "EVT_ACCOUNT").await;
    // Decided on the cached balance (6) it would pass; the source's check
    // refuses the batch, the reload shows 0, and the decision says no.
    let reply = send_transfer(&client, "a", "b", 5, "t2").await;
    assert_eq!(rejected(&reply), RejectionCode::Validation, "{reply:?}");
    assert_eq!(stream_state(&js.client, "EVT_ACCOUNT").await, before);

    // Another writer moves the target: the target's check refuses the
    // first batch, and the transfer lands after the reload.
    let deposit = send_account(&client, "a", "deposit", r#"{"amount":10}"#).await;
    assert!(deposit.is_accepted());
    let b = last_seq(store, "b").await;
    let by_hand = [encoded(&AccountEvent::MoneyDeposited { amount: 1 })];
    store
        .append("account", "b", b, &by_hand, &meta("by-hand-b"))
        .await
        .expect("stored");
    let reply = accepted(send_transfer(&client, "a", "b", 3, "t3").await);
    assert_eq!(reply.events.len(), 2, "{reply:?}");
    let b_events = store.load("account", "b", 0).await.expect("load");
    let ids: Vec<_> = b_events.iter().filter_map(|e| e.command_id()).collect();
    assert_eq!(
        ids.iter().rev().take(2).collect::<Vec<_>>(),
        [&"t3", &"by-hand-b"]
    );
    assert_eq!(balances(&all_events(store, &["a", "b"]).await)["b"], 8);
    js.stop().await;
}

#[tokio::test]
async fn a_transfers_reply_resend_and_status_list_both_accounts() {
    let server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::with_feedback_app(
        &url,
        &reference_app(),
        FeedbackConfig::default(),
        RuntimeConfig::default(),
        true,
    )
    .await;
    let client = commands(&url).await;
    funded(&client, "a", 10).await;
    funded(&client, "b", 0).await;
    let reply = accepted(send_transfer(&client, "a", "b", 7, "t1").await);
    assert_eq!((reply.aggregate_id.as_str(), reply.duplicate), ("a", false));
    let listed: Vec<_> = reply
        .events
        .iter()
        .map(|e| (e.event_type.as_str(), e.aggregate_id.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [("TransferSent", None), ("TransferReceived", Some("b"))],
        "the other account's event names it"
    );
    assert_eq!(reply.events[1].seq, reply.events[0].seq + 1);
    let before = stream_state(&js.client, "EVT_ACCOUNT").await;
    let again = accepted(send_transfer(&client, "a", "b", 7, "t1").await);
    assert!(again.duplicate);
    assert_eq!(again.events, reply.events);
    assert_eq!(stream_state(&js.client, "EVT_ACCOUNT").await, before);

    let status = known(&js.client, "status.t1").await;
    check_status(&status, &reply.events);
    js.stop().await;

    // A new process knows it from the history and the command index.
    let js = Jetsource::with_feedback_app(
        &url,
        &reference_app(),
        FeedbackConfig::default(),
        RuntimeConfig::default(),
        true,
    )
    .await;
    let again = accepted(send_transfer(&client, "a", "b", 7, "t1").await);
    assert!(again.duplicate);
    assert_eq!(again.events, reply.events);
    assert_eq!(stream_state(&js.client, "EVT_ACCOUNT").await, before);
    let status = eventually("the index listing both accounts", DEADLINE, || {
        let client = js.client.clone();
        async move {
            let status = known(&client, "status.t1").await;
            match &status {
                FeedbackAnswer::Accepted(a) if !a.others.is_empty() => Some(status),
                _ => None,
            }
        }
    })
    .await;
    check_status(&status, &reply.events);
    js.stop().await;
}

/// `status` lists the source with its event and the target, under
/// `others`, with its own.
fn check_status(status: &FeedbackAnswer, events: &[EventRef]) {
    let FeedbackAnswer::Accepted(status) = status else {
        panic!("expected accepted, got {status:?}");
    };
    let unmarked = |e: &EventRef| EventRef {
        aggregate_id: None,
        ..e.clone()
    };
    assert_eq!(status.aggregate_id, "a");
    assert_eq!(status.events, [unmarked(&events[0])]);
    assert_eq!(status.others.len(), 1, "{status:?}");
    assert_eq!(status.others[0].aggregate_id, "b");
    assert_eq!(status.others[0].events, [unmarked(&events[1])]);
}

#[tokio::test]
async fn transfers_that_break_a_rule_or_name_no_account_write_nothing() {
    let server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start_app(&url, &reference_app(), RuntimeConfig::default()).await;
    let client = commands(&url).await;
    funded(&client, "a", 10).await;
    funded(&client, "b", 0).await;
    let deposit = send_to(
        &client,
        "account",
        "b",
        "deposit",
        r#"{"amount":1}"#,
        &with_id("used"),
    )
    .await;
    assert!(deposit.is_accepted());
    let before = stream_state(&js.client, "EVT_ACCOUNT").await;
    let long = "x".repeat(129);
    let cases: [(&str, &str, u64, &str, RejectionCode); 9] = [
        ("a", "b", 11, "over", RejectionCode::Validation),
        ("a", "a", 1, "self", RejectionCode::Validation),
        ("a", "b", 0, "zero", RejectionCode::Validation),
        ("a", "nobody", 1, "to-none", RejectionCode::NotFound),
        ("nobody", "a", 1, "from-none", RejectionCode::NotFound),
        ("a", "b.c", 1, "dot", RejectionCode::BadRequest),
        ("a", "*", 1, "star", RejectionCode::BadRequest),
        ("a", &long, 1, "long", RejectionCode::BadRequest),
        // The id was accepted on the target by another command.
        ("a", "b", 1, "used", RejectionCode::BadRequest),
    ];
    for (from, to, amount, id, code) in cases {
        let reply = send_transfer(&client, from, to, amount, id).await;
        assert_eq!(rejected(&reply), code, "{id}: {reply:?}");
    }
    let empty = send_to(
        &client,
        "account",
        "a",
        "transfer",
        r#"{"to":"","amount":1}"#,
        &with_id("empty"),
    )
    .await;
    assert_eq!(rejected(&empty), RejectionCode::BadRequest, "{empty:?}");
    assert_eq!(stream_state(&js.client, "EVT_ACCOUNT").await, before);
    js.stop().await;
}

/// Every event of `accounts`, in stream order.
async fn all_events(store: &EventStore, accounts: &[&str]) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    for id in accounts {
        events.extend(store.load("account", id, 0).await.expect("load"));
    }
    events.sort_by_key(|e| e.seq);
    events
}

/// The event as every reader reads it (the sealed owner as redacted: this
/// reader has no keys, and no balance depends on it).
fn decoded(event: &StoredEvent) -> AccountEvent {
    let mut read = None;
    jetsource::schemas::upcast::decode_stored::<Account>(
        event.event_type(),
        event.version(),
        &event.payload,
        None,
        |_, e| read = Some(e),
    )
    .expect("an account event");
    read.expect("one event")
}

/// The balance of every account after `events`.
fn balances(events: &[StoredEvent]) -> BTreeMap<String, i64> {
    let mut balances = BTreeMap::new();
    for event in events {
        fold(&mut balances, event);
    }
    balances
}

fn account_of(event: &StoredEvent) -> String {
    event
        .subject
        .split('.')
        .nth(2)
        .expect("evt.account.<id>.<type>")
        .to_string()
}

fn fold(balances: &mut BTreeMap<String, i64>, event: &StoredEvent) {
    let balance = balances.entry(account_of(event)).or_insert(0);
    match decoded(event) {
        AccountEvent::AccountOpened { .. } => {}
        AccountEvent::MoneyDeposited { amount } | AccountEvent::TransferReceived { amount, .. } => {
            *balance += amount as i64
        }
        AccountEvent::MoneyWithdrawn { amount } | AccountEvent::TransferSent { amount, .. } => {
            *balance -= amount as i64
        }
        // Not sent by these tests.
        _ => {}
    }
}

const ACCOUNTS: usize = 10;
const TRANSFERS: usize = 64;
const OPENING: u64 = 100;
const RESTARTS: usize = 3;

/// Sends one transfer until it gets an answer other than `unavailable`,
/// counting every attempt in `sent`.
async fn until_answered(
    client: &CommandClient,
    from: &str,
    body: String,
    command_id: &str,
    sent: &AtomicUsize,
) -> CommandReply {
    let options = with_id(command_id);
    eventually(
        format!("an answer to {command_id}"),
        Duration::from_secs(90),
        || {
            let (body, options) = (body.clone(), &options);
            async move {
                sent.fetch_add(1, Ordering::Relaxed);
                let reply = client
                    .send("account", from, "transfer", body, options)
                    .await;
                reply
                    .ok()
                    .filter(|reply| reply.code() != Some(RejectionCode::Unavailable))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_through_two_runtimes_and_a_server_crash_keep_every_balance() {
    let mut server = NatsServer::new();
    let url = server.client_url();
    let mut config = RuntimeConfig {
        store_timeout: Duration::from_secs(1),
        ..RuntimeConfig::default()
    };
    config.handler.unavailable_retries = 2;
    config.handler.retry_backoff = Duration::from_millis(20);
    // Two runtimes on their own connections share the command subjects.
    let first = start_all(&url, config.clone()).await;
    let second = start_all(&url, config).await;
    let client = CommandClient::new(
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(&url)
            .await
            .expect("client connects"),
    )
    // Longer than a handler takes over one command at worst (its store
    // timeout times its retries): a client that stops waiting and resends
    // while the first attempt is still being handled gets the resend's own
    // answer, which may be a refusal decided before the first attempt's
    // events land (PROTOCOL.md, Idempotency). This client resends only
    // once an attempt has finished, or its request or reply was lost.
    .with_timeout(Duration::from_secs(20));
    let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("acc-{i}")).collect();
    for id in &accounts {
        funded(&client, id, OPENING).await;
    }
    let opened = first.store.clone();

    // Every transfer at once, each resent with its id until answered; the
    // server is killed (SIGKILL) and restarted once a quarter, a half and
    // three quarters are answered.
    let answered = Arc::new(AtomicUsize::new(0));
    let sends = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..TRANSFERS {
        let from = accounts[i % ACCOUNTS].clone();
        let to = accounts[(i * 7 + 3) % ACCOUNTS].clone();
        // 10 to 150: enough large ones to be refused for want of funds.
        let amount = 10 + (i as u64 * 37) % 141;
        let (client, answered, sends) = (client.clone(), answered.clone(), sends.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("t-{i}");
            let reply = until_answered(&client, &from, transfer(&to, amount), &id, &sends).await;
            answered.fetch_add(1, Ordering::Relaxed);
            (id, from, to, amount, reply)
        }));
    }
    for round in 1..=RESTARTS {
        wait_until(
            format!("{round} quarters of the transfers answered"),
            HANG,
            || answered.load(Ordering::Relaxed) >= TRANSFERS * round / (RESTARTS + 1),
        )
        .await;
        tokio::task::block_in_place(|| server.restart());
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("transfer task"));
    }

    let store = event_store(&connect(&url).await).await;
    let ids: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let events = eventually("every account readable", DEADLINE, || {
        let (store, ids) = (&store, &ids);
        async move {
            let mut events = Vec::new();
            for id in ids {
                events.extend(store.load("account", id, 0).await.ok()?);
            }
            events.sort_by_key(|e: &StoredEvent| e.seq);
            Some(events)
        }
    })
    .await;

    // Folded in stream order, the total never changes once every account
    // is funded, except inside one transfer's batch; no balance is ever
    // negative.
    let total = OPENING as i64 * ACCOUNTS as i64;
    let mut running = BTreeMap::new();
    let mut by_command: BTreeMap<&str, Vec<&StoredEvent>> = BTreeMap::new();
    for (n, event) in events.iter().enumerate() {
        fold(&mut running, event);
        assert!(
            running.values().all(|b| *b >= 0),
            "a balance below zero at {}: {running:?}",
            event.seq
        );
        let command_id = event.command_id().expect("a Command-Id");
        by_command.entry(command_id).or_default().push(event);
        let inside = matches!(decoded(event), AccountEvent::TransferSent { .. });
        if n >= 2 * ACCOUNTS && !inside {
            assert_eq!(running.values().sum::<i64>(), total, "at {}", event.seq);
        }
    }

    let mut accepted_count = 0;
    let mut accepted_replies: Vec<(String, String, u64, Accepted)> = Vec::new();
    for (id, from, to, amount, reply) in outcomes {
        let stored = by_command.get(id.as_str()).cloned().unwrap_or_default();
        match reply {
            CommandReply::Accepted(reply) => {
                accepted_count += 1;
                // Both events, once each, one batch, where the reply says.
                let found: Vec<_> = stored
                    .iter()
                    .map(|e| (account_of(e), decoded(e), e.seq))
                    .collect();
                let first = reply.events[0].seq;
                assert_eq!(
                    found,
                    [
                        (from.clone(), sent(&to, amount), first),
                        (to.clone(), received(&from, amount), first + 1)
                    ],
                    "{id}"
                );
                assert_eq!(reply.events[1].aggregate_id.as_deref(), Some(to.as_str()));
                accepted_replies.push((id, from, amount, reply));
                let _ = to;
            }
            CommandReply::Rejected(r) => {
                // Refused for want of funds, or after writers kept moving
                // the accounts through every retry.
                assert!(
                    matches!(r.code, RejectionCode::Validation | RejectionCode::Conflict),
                    "{id}: {r:?}"
                );
                if !stored.is_empty() {
                    let history: Vec<_> = events
                        .iter()
                        .filter(|e| account_of(e) == from)
                        .map(|e| (e.seq, e.command_id().unwrap_or("").to_string(), decoded(e)))
                        .collect();
                    panic!("{id} was rejected ({r:?}), yet stored; {from}: {history:?}");
                }
            }
        }
    }
    assert!(accepted_count > 0, "some transfers went through");
    assert!(accepted_count < TRANSFERS, "some were refused");

    // Resent once more, each accepted transfer appends nothing.
    let before = stream_state(&first.client, "EVT_ACCOUNT").await;
    for (id, from, amount, reply) in &accepted_replies {
        let to = reply.events[1].aggregate_id.clone().expect("the target");
        let again = accepted(send_transfer(&client, from, &to, *amount, id).await);
        assert!(again.duplicate, "{id}");
        assert_eq!(again.events, reply.events, "{id}");
    }
    assert_eq!(stream_state(&first.client, "EVT_ACCOUNT").await, before);
    eprintln!(
        "{TRANSFERS} transfers among {ACCOUNTS} accounts through two runtimes, nats-server killed {RESTARTS} times: \
         {} sends (resends included), {accepted_count} accepted, {} refused, total kept at {total}",
        sends.load(Ordering::Relaxed),
        TRANSFERS - accepted_count,
    );
    drop(opened);
    first.stop().await;
    second.stop().await;
}
