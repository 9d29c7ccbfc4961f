//! The transfer figures: a command over two accounts (one decision over
//! both, one atomic append of an event on each) against a deposit on one,
//! over the same seeded accounts; and transfers among ten accounts through
//! two runtimes, where the batches' checks meet and conflicts are counted.

use super::env::Env;
use super::load;
use super::report::Figure;
use super::roundtrip::figure;
use super::workload::AccountCommands;
use super::BenchErrorExt as _;
use super::{seed, BenchError};
use jetsource_handlers::metrics;
use jetsource_handlers::Runtime;
use jetsource_reference::account::Account;
use jetsource_schemas::RejectionCode;
use std::sync::Arc;

/// The accounts of the contended figure.
const CONTENDED: u64 = 10;

/// Far above what any run moves, so no transfer is refused for want of
/// funds.
const OPENING_BALANCE: u64 = 1 << 50;

/// `account_deposit_roundtrip`, `transfer_roundtrip` (as a ratio to the
/// deposits) and `transfer_contended_10` (two runtimes, with
/// `conflicts_per_transfer`: refused batches per transfer answered).
pub async fn transfers(env: &mut Env) -> Result<Vec<Figure>, BenchError> {
    env.ensure_jetsource().await?;
    let spread = accounts(env, "acct", env.settings.aggregates.max(2), false);
    seed_accounts(env, &spread).await?;
    let deposits = load::drive(&env.clients, env.shape(), Arc::new(spread.clone())).await;
    let deposits = figure("account_deposit_roundtrip", &deposits).with("accounts", spread.count);
    let transfers = AccountCommands {
        transfer: true,
        ..spread
    };
    let sample = load::drive(&env.clients, env.shape(), Arc::new(transfers.clone())).await;
    let transfers = figure("transfer_roundtrip", &sample)
        .with("accounts", transfers.count)
        .against(&deposits);

    // A second runtime on its own connection shares the command subjects:
    // its batches and the hosted one's meet on the same ten accounts.
    let contended = accounts(env, "acct-hot", CONTENDED, true);
    seed_accounts(env, &contended).await?;
    let connection = jetsource_handlers::connect(&env.url)
        .await
        .map_err(BenchError::nats)?;
    let second = Runtime::builder(connection)
        .aggregate::<Account>()
        .config(env.runtime_config().clone())
        .build()
        .await
        .map_err(BenchError::nats)?
        .start()
        .await
        .map_err(BenchError::nats)?;
    let counters = metrics::global();
    let was_recording = counters.recording();
    counters.set_recording(true);
    let (conflicts, refused) = (
        counters.conflicts(),
        counters.commands(Some(RejectionCode::Conflict)),
    );
    let sample = load::drive(&env.clients, env.shape(), Arc::new(contended)).await;
    let conflicts = counters.conflicts() - conflicts;
    let refused = counters.commands(Some(RejectionCode::Conflict)) - refused;
    counters.set_recording(was_recording);
    second.shutdown().await.map_err(BenchError::nats)?;
    let answered = (sample.count + sample.unexpected).max(1);
    let contended = figure("transfer_contended_10", &sample)
        .with("accounts", CONTENDED)
        .with("runtimes", 2)
        .with(
            "conflicts_per_transfer",
            (conflicts as f64 / answered as f64 * 100.0).round() / 100.0,
        )
        .with("refused_conflict", refused)
        .against(&deposits);
    Ok(vec![deposits, transfers, contended])
}

fn accounts(env: &Env, figure: &str, count: u64, transfer: bool) -> AccountCommands {
    AccountCommands {
        prefix: format!("{figure}-{}", env.run_id),
        count,
        tasks: env.settings.clients as u64,
        transfer,
    }
}

/// Opens every account of `workload` and funds it, straight into the
/// stream (openings first, so each account's opening precedes its
/// deposit).
async fn seed_accounts(env: &Env, workload: &AccountCommands) -> Result<(), BenchError> {
    let opened = (0..workload.count).map(|i| {
        (
            format!("evt.account.{}.AccountOpened", workload.id(i)),
            bytes::Bytes::from_static(br#"{"owner":"bench"}"#),
        )
    });
    let funded = (0..workload.count).map(|i| {
        (
            format!("evt.account.{}.MoneyDeposited", workload.id(i)),
            bytes::Bytes::from(format!(r#"{{"amount":{OPENING_BALANCE}}}"#)),
        )
    });
    seed::publish_all(&env.jetstream(), opened.chain(funded))
        .await
        .map_err(BenchError::failed)?;
    Ok(())
}
