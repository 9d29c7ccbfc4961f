//! The payments saga against a real nats-server and command runtime, with
//! two processes running the manager: a payment is settled when the payee
//! accepts it, and refunded to the payer when the payee declines it, does
//! not exist (the second step refused), or does not answer in time; a late
//! acceptance is refused; no money appears or vanishes, and nothing is
//! left held; payments whose time runs out while no jetsource runs are
//! refunded once after a restart.

mod common;

use async_nats::jetstream::{self, kv};
use common::*;
use jetsource::client::CommandClient;
use jetsource::handlers::store::EventStore;
use jetsource::handlers::Aggregate;
use jetsource::process::{ProcessConfig, RunningProcessManager};
use jetsource::schemas::RejectionCode;
use jetsource_reference::account::{Account, AccountEvent};
use jetsource_reference::payments::Payments;
use std::collections::BTreeMap;
use std::time::Duration;

async fn manager(url: &str) -> RunningProcessManager {
    jetsource::process::start(connect(url).await, ProcessConfig::default(), Payments)
        .await
        .expect("the process manager starts")
}

/// Every event of account `id`, as every reader reads it.
async fn events_of(store: &EventStore, id: &str) -> Vec<AccountEvent> {
    let stored = store.load("account", id, 0).await.expect("load");
    let mut events = Vec::new();
    for event in &stored {
        jetsource::schemas::upcast::decode_stored::<Account>(
            event.event_type(),
            event.version(),
            &event.payload,
            None,
            |_, e| events.push(e),
        )
        .expect("an account event");
    }
    events
}

/// Account `id` as its events leave it.
async fn account(store: &EventStore, id: &str) -> Account {
    let mut account = Account::default();
    for event in events_of(store, id).await {
        account.apply(event);
    }
    account
}

async fn open(client: &CommandClient, id: &str, funds: u64) {
    accepted(send_account(client, id, "open", r#"{"owner":"someone"}"#).await);
    if funds > 0 {
        let body = format!(r#"{{"amount":{funds}}}"#);
        accepted(send_account(client, id, "deposit", body).await);
    }
}

async fn offer(
    client: &CommandClient,
    from: &str,
    payment: &str,
    to: &str,
    amount: u64,
    within: u64,
) {
    let body = format!(
        r#"{{"payment":"{payment}","to":"{to}","amount":{amount},"accept_within_secs":{within}}}"#
    );
    accepted(send_account(client, from, "offer_payment", body).await);
}

/// Waits until `payment` is waiting on account `payee`.
async fn presented(store: &EventStore, payee: &str, payment: &str) {
    eventually(
        format!("{payment} is presented to {payee}"),
        DEADLINE,
        || async {
            account(store, payee)
                .await
                .presented()
                .contains_key(payment)
                .then_some(())
        },
    )
    .await;
}

/// Waits until instance `payment` has ended.
async fn ended(js: &jetstream::Context, payment: &str) {
    let bucket = js.get_key_value("pm_payments").await.expect("the bucket");
    eventually(format!("{payment}'s instance ends"), DEADLINE, || {
        let bucket = bucket.clone();
        async move {
            let entry = bucket.entry(payment).await.ok()?;
            (!matches!(entry, Some(e) if e.operation == kv::Operation::Put)).then_some(())
        }
    })
    .await;
}

/// How a payment ended on the payer's side: `(settled, refunded)`.
fn outcome(events: &[AccountEvent], id: &str) -> (usize, usize) {
    let mut settled = 0;
    let mut refunded = 0;
    for event in events {
        match event {
            AccountEvent::PaymentSettled { payment, .. } if payment == id => settled += 1,
            AccountEvent::PaymentRefunded { payment, .. } if payment == id => refunded += 1,
            _ => {}
        }
    }
    (settled, refunded)
}

#[tokio::test]
async fn a_payment_is_settled_when_accepted_and_refunded_when_refused_or_unanswered() {
    let server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start_app(
        &url,
        &jetsource::App::new().aggregate::<Account>(),
        Default::default(),
    )
    .await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    // Two processes share the manager's consumers.
    let one = manager(&url).await;
    let two = manager(&url).await;
    open(&client, "ada", 100).await;
    open(&client, "bob", 0).await;
    open(&client, "carol", 0).await;

    offer(&client, "ada", "p-accepted", "bob", 10, 600).await;
    offer(&client, "ada", "p-declined", "bob", 20, 600).await;
    // The second step refused: there is no such payee.
    offer(&client, "ada", "p-nobody", "nobody", 30, 600).await;
    // Nobody answers in time.
    offer(&client, "ada", "p-late", "carol", 15, 2).await;

    presented(&runtime.store, "bob", "p-accepted").await;
    accepted(
        send_account(
            &client,
            "bob",
            "accept_payment",
            r#"{"payment":"p-accepted"}"#,
        )
        .await,
    );
    presented(&runtime.store, "bob", "p-declined").await;
    accepted(
        send_account(
            &client,
            "bob",
            "decline_payment",
            r#"{"payment":"p-declined"}"#,
        )
        .await,
    );
    for payment in ["p-accepted", "p-declined", "p-nobody", "p-late"] {
        ended(&js, payment).await;
    }
    // Accepting after the time ran out is refused: the payment expired.
    let late = send_account(
        &client,
        "carol",
        "accept_payment",
        r#"{"payment":"p-late"}"#,
    )
    .await;
    assert_eq!(rejected(&late), RejectionCode::Validation);
    let carol = events_of(&runtime.store, "carol").await;
    assert!(
        carol.iter().any(
            |e| matches!(e, AccountEvent::PaymentExpired { payment, .. } if payment == "p-late")
        ),
        "expired on the payee: {carol:?}"
    );

    let ada = events_of(&runtime.store, "ada").await;
    assert_eq!(outcome(&ada, "p-accepted"), (1, 0), "settled once");
    for payment in ["p-declined", "p-nobody", "p-late"] {
        assert_eq!(outcome(&ada, payment), (0, 1), "{payment} refunded once");
    }
    let (ada, bob, carol) = (
        account(&runtime.store, "ada").await,
        account(&runtime.store, "bob").await,
        account(&runtime.store, "carol").await,
    );
    assert_eq!((ada.balance(), bob.balance(), carol.balance()), (90, 10, 0));
    for held in [&ada, &bob, &carol] {
        assert!(held.offered().is_empty() && held.presented().is_empty());
    }
    one.stop().await;
    two.stop().await;
    runtime.stop().await;
}

#[tokio::test]
async fn many_payments_answered_at_their_deadline_keep_every_balance() {
    const PAYMENTS: usize = 40;
    const PAYERS: [&str; 3] = ["a0", "a1", "a2"];
    const PAYEES: [&str; 3] = ["b0", "b1", "b2"];
    let server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start_app(
        &url,
        &jetsource::App::new().aggregate::<Account>(),
        Default::default(),
    )
    .await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    let one = manager(&url).await;
    let two = manager(&url).await;
    for payer in PAYERS {
        open(&client, payer, 1_000).await;
    }
    for payee in PAYEES {
        open(&client, payee, 0).await;
    }
    let payments: Vec<(String, &str, &str, u64)> = (0..PAYMENTS)
        .map(|i| {
            let payee = if i % 8 == 7 { "missing" } else { PAYEES[i % 3] };
            (format!("pay-{i}"), PAYERS[i % 3], payee, 1 + i as u64)
        })
        .collect();
    for (payment, payer, payee, amount) in &payments {
        offer(&client, payer, payment, payee, *amount, 2).await;
    }
    // Answer some just as their time runs out, so acceptances, refusals
    // and expiries race on the payees.
    tokio::time::sleep(Duration::from_millis(1_900)).await;
    let mut answers = Vec::new();
    let client = &client;
    for (i, (payment, _, payee, _)) in payments.iter().enumerate() {
        let command = match i % 4 {
            0 => "accept_payment",
            1 => "decline_payment",
            _ => continue,
        };
        let body = format!(r#"{{"payment":"{payment}"}}"#);
        answers.push(async move { (command, send_account(client, payee, command, body).await) });
    }
    let mut accepted_by_payee = 0;
    for (command, answer) in futures::future::join_all(answers).await {
        // Accepted, or refused: the payment expired first, or was never
        // presented (no such payee, or not yet).
        if let jetsource::schemas::CommandReply::Rejected(r) = &answer {
            assert!(
                matches!(r.code, RejectionCode::Validation | RejectionCode::NotFound),
                "{r:?}"
            );
        } else if command == "accept_payment" {
            accepted_by_payee += 1;
        }
    }
    for (payment, ..) in &payments {
        ended(&js, payment).await;
    }

    let mut total = 0;
    let mut settled_total = 0;
    let mut accepted_total = 0;
    for id in PAYERS.iter().chain(PAYEES.iter()) {
        let account = account(&runtime.store, id).await;
        assert!(
            account.offered().is_empty() && account.presented().is_empty(),
            "{id} holds nothing: {account:?}"
        );
        total += account.balance();
    }
    assert_eq!(total, 3 * 1_000, "no money appeared or vanished");
    let mut by_payee: BTreeMap<&str, Vec<AccountEvent>> = BTreeMap::new();
    for payee in PAYEES {
        by_payee.insert(payee, events_of(&runtime.store, payee).await);
    }
    for (payment, payer, payee, amount) in &payments {
        let (settled, refunded) = outcome(&events_of(&runtime.store, payer).await, payment);
        assert_eq!(
            settled + refunded,
            1,
            "{payment} ends once: {settled} {refunded}"
        );
        let accepted = by_payee.get(payee).map_or(0, |events| {
            events
                .iter()
                .filter(|e| matches!(e, AccountEvent::PaymentAccepted { payment: p, .. } if p == payment))
                .count()
        });
        assert_eq!(
            accepted, settled,
            "{payment}: settled exactly when accepted"
        );
        settled_total += settled as u64 * amount;
        accepted_total += accepted;
    }
    assert_eq!(
        accepted_total, accepted_by_payee,
        "every accepted answer is one acceptance"
    );
    let received: u64 = {
        let mut sum = 0;
        for payee in PAYEES {
            sum += account(&runtime.store, payee).await.balance();
        }
        sum
    };
    assert_eq!(received, settled_total, "payees hold what was settled");
    one.stop().await;
    two.stop().await;
    runtime.stop().await;
}

#[tokio::test]
async fn payments_unanswered_while_jetsource_is_killed_are_refunded_once_after_a_restart() {
    const PAYMENTS: usize = 50;
    // Long enough to offer them all and see them presented before the
    // kill, on a loaded machine too.
    const WITHIN: u64 = 12;
    let server = NatsServer::new();
    let url = server.client_url();
    let js = jetstream::new(connect(&url).await);
    let store = event_store(&connect(&url).await).await;
    let (one_dir, two_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    // The shipped binary, every role on: both host the manager.
    let mut one = JetsourceProcess::start(&url, one_dir.path());
    let mut two = JetsourceProcess::start(&url, two_dir.path());
    let client = commands(&url).await;
    open(&client, "ada", 1_000).await;
    open(&client, "bob", 0).await;
    let started = std::time::Instant::now();
    let mut payments = Vec::new();
    for i in 0..PAYMENTS {
        let payment = format!("pay-{i}");
        offer(&client, "ada", &payment, "bob", 10, WITHIN).await;
        payments.push(payment);
    }
    eventually("every payment is presented", DEADLINE, || async {
        (account(&store, "bob").await.presented().len() == PAYMENTS).then_some(())
    })
    .await;
    // SIGKILL before the time: the deadlines come while no jetsource runs.
    assert!(
        started.elapsed() < Duration::from_secs(WITHIN - 1),
        "the payments were offered too slowly for the test to mean anything"
    );
    one.kill();
    two.kill();
    tokio::time::sleep(Duration::from_secs(WITHIN + 1).saturating_sub(started.elapsed())).await;
    let _one = JetsourceProcess::start(&url, one_dir.path());
    let _two = JetsourceProcess::start(&url, two_dir.path());
    for payment in &payments {
        ended(&js, payment).await;
    }
    let ada_events = events_of(&store, "ada").await;
    for payment in &payments {
        assert_eq!(
            outcome(&ada_events, payment),
            (0, 1),
            "{payment} refunded once"
        );
    }
    let (ada, bob) = (account(&store, "ada").await, account(&store, "bob").await);
    assert_eq!((ada.balance(), bob.balance()), (1_000, 0));
    assert!(ada.offered().is_empty() && bob.presented().is_empty());
    let expired = events_of(&store, "bob")
        .await
        .into_iter()
        .filter(|e| matches!(e, AccountEvent::PaymentExpired { .. }))
        .count();
    assert_eq!(expired, PAYMENTS, "each expired once on the payee");
}
