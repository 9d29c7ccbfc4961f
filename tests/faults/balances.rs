//! A read model of the accounts, run through the faults: the balance and
//! the number of events per account. At the end it must equal the fold of
//! the stream itself, which proves the projector saw every stored event
//! exactly once in effect.

use crate::common::{connect, eventually, Projectors, DEADLINE};
use jetsource::handlers::store::EventStore;
use jetsource::projector::{
    Event, PersistedProjector, Projector, ProjectorError, ProjectorErrorKind, ProjectorRuntime,
    Query, QueryError,
};
use jetsource_reference::account::{Account, AccountEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One account as the projection sees it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccountView {
    pub(crate) balance: i64,
    pub(crate) events: u64,
}

pub(crate) type Views = BTreeMap<String, AccountView>;

/// Folds `evt.account.>`; `query.<name>.all` answers every account.
#[derive(Clone)]
pub(crate) struct Balances {
    name: &'static str,
    accounts: Views,
}

impl Balances {
    pub(crate) fn named(name: &'static str) -> Self {
        Balances {
            name,
            accounts: Views::new(),
        }
    }
}

/// One event's effect on its account, the same rule for the projection and
/// for the fold of the stream.
fn fold(view: &mut AccountView, event: AccountEvent) {
    match event {
        AccountEvent::AccountOpened { .. } => {}
        AccountEvent::MoneyDeposited { amount } => view.balance += amount as i64,
        AccountEvent::MoneyWithdrawn { amount } | AccountEvent::TransferSent { amount, .. } => {
            view.balance -= amount as i64
        }
        AccountEvent::TransferReceived { amount, .. } => view.balance += amount as i64,
        AccountEvent::PaymentOffered { amount, .. } => view.balance -= amount as i64,
        AccountEvent::PaymentAccepted { amount, .. }
        | AccountEvent::PaymentRefunded { amount, .. } => view.balance += amount as i64,
        AccountEvent::PaymentPresented { .. }
        | AccountEvent::PaymentDeclined { .. }
        | AccountEvent::PaymentExpired { .. }
        | AccountEvent::PaymentSettled { .. } => {}
    }
    view.events += 1;
}

impl Projector for Balances {
    fn name(&self) -> &'static str {
        self.name
    }

    fn subjects(&self) -> Vec<String> {
        vec!["evt.account.>".into()]
    }

    fn apply(&mut self, event: &Event) -> Result<(), ProjectorError> {
        let decoded: AccountEvent = event
            .decode()
            .map_err(|e| ProjectorError::with_source(ProjectorErrorKind::Invalid, e))?;
        fold(
            self.accounts.entry(event.aggregate_id.clone()).or_default(),
            decoded,
        );
        Ok(())
    }

    fn query(&self, query: &Query) -> Result<serde_json::Value, QueryError> {
        match query.path_str().as_slice() {
            ["all"] => serde_json::to_value(&self.accounts)
                .map_err(|e| QueryError::bad_request(e.to_string())),
            _ => Err(QueryError::bad_request("known queries: all")),
        }
    }
}

impl PersistedProjector for Balances {
    type State = Views;

    fn state(&self) -> &Views {
        &self.accounts
    }

    fn restore(&mut self, state: Views) {
        self.accounts = state;
    }
}

/// The in-memory projection `balances` and, when `persisted`, the KV-backed
/// `balances_kv`, on their own connection; retried while a cluster elects
/// its leaders.
pub(crate) async fn start(url: &str, persisted: bool) -> Projectors {
    eventually("the projectors' start", DEADLINE, || async move {
        let client = connect(url).await;
        let mut builder = ProjectorRuntime::builder(client).in_memory(Balances::named("balances"));
        if persisted {
            builder = builder.persisted(Balances::named("balances_kv"));
        }
        match Projectors::try_start(builder).await {
            Ok(running) => Some(running),
            Err(e) => {
                eprintln!("projectors not ready yet: {e}");
                None
            }
        }
    })
    .await
}

/// The stream's last sequence and message count.
pub(crate) async fn stream_head(client: &async_nats::Client) -> (u64, u64) {
    let js = &async_nats::jetstream::new(client.clone());
    eventually("EVT_ACCOUNT's info", DEADLINE, || async move {
        let info = match js.get_stream("EVT_ACCOUNT").await {
            Ok(mut stream) => stream
                .info()
                .await
                .map(|i| i.state.clone())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match info {
            Ok(state) => Some((state.last_sequence, state.messages)),
            Err(e) => {
                eprintln!("stream info: {e}");
                None
            }
        }
    })
    .await
}

/// Asks projection `name` for every account once it has applied `after`
/// (the stream's last sequence), retrying while it catches up after a fault.
pub(crate) async fn query_all(client: &async_nats::Client, name: &str, after: u64) -> Views {
    let reached = format!("projection {name} reaching {after}");
    eventually(reached, Duration::from_secs(60), || async move {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("After-Seq", after.to_string().as_str());
        let request = async_nats::Request::new()
            .headers(headers)
            .timeout(Some(Duration::from_secs(10)));
        let answer = client
            .send_request(format!("query.{name}.all"), request)
            .await
            .map_err(|e| e.to_string())
            .and_then(|m| {
                serde_json::from_slice::<serde_json::Value>(&m.payload).map_err(|e| e.to_string())
            });
        match answer {
            Ok(answer) if answer["status"] == "ok" => {
                Some(serde_json::from_value(answer["result"].clone()).expect("views"))
            }
            other => {
                eprintln!("query {name}: {other:?}");
                None
            }
        }
    })
    .await
}

/// The fold of what the stream holds for `ids`.
pub(crate) async fn fold_of_stream(
    store: &EventStore,
    ids: impl IntoIterator<Item = &String>,
) -> Views {
    let mut views = Views::new();
    for id in ids {
        let view = views.entry(id.clone()).or_default();
        for event in super::stored_with_retry(store, id, 0).await {
            // Read as every reader reads it; without the key the sealed
            // owner reads as redacted, which no balance depends on.
            jetsource::schemas::upcast::decode_stored::<Account>(
                event.event_type(),
                event.version(),
                &event.payload,
                None,
                |_, decoded| fold(view, decoded),
            )
            .expect("a stored account event decodes");
        }
    }
    views
}

/// Checks projection `name` against the stream: every account's balance and
/// event count equal the fold of its stored events, and the projection
/// holds as many events as the stream (no account missing or invented).
pub(crate) async fn check_projection(
    client: &async_nats::Client,
    store: &EventStore,
    name: &str,
    accounts: &[String],
) {
    let (last, messages) = stream_head(client).await;
    let projected = query_all(client, name, last).await;
    let ids: std::collections::BTreeSet<&String> =
        projected.keys().chain(accounts.iter()).collect();
    let folded = fold_of_stream(store, ids).await;
    assert_eq!(projected, folded, "{name} equals the fold of the stream");
    let applied: u64 = projected.values().map(|v| v.events).sum();
    assert_eq!(applied, messages, "{name} applied every stored event once");
    eprintln!(
        "projection {name}: {} accounts, {applied} events, equal to the fold of the stream at #{last}",
        projected.len()
    );
}
