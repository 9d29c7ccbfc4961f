//! The transfer figures: a command over two accounts (one decision over
//! both, one atomic append of an event on each) against a deposit on one,
//! over the same seeded accounts; and deposits, then transfers, among ten
//! accounts through two runtimes, where the checks meet and conflicts are
//! counted.

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
/// deposits), and `deposit_contended_10` and `transfer_contended_10` (two
/// runtimes on ten accounts, with `conflicts_per_command`: appends refused
/// by a check, per command answered).
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
    let contended = accounts(env, "acct-hot", CONTENDED, false);
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
    let deposited = contended_figure(env, "deposit_contended_10", &contended, None).await;
    let transferred = AccountCommands {
        transfer: true,
        ..contended
    };
    let transferred =
        contended_figure(env, "transfer_contended_10", &transferred, Some(&deposited)).await;
    second.shutdown().await.map_err(BenchError::nats)?;
    Ok(vec![deposits, transfers, deposited, transferred])
}

/// `workload` driven through both runtimes, as `name`, with the append
/// conflicts per command answered and the commands refused `conflict`.
async fn contended_figure(
    env: &Env,
    name: &str,
    workload: &AccountCommands,
    against: Option<&Figure>,
) -> Figure {
    let counters = metrics::global();
    let was_recording = counters.recording();
    counters.set_recording(true);
    let (conflicts, refused, appends) = (
        counters.conflicts(),
        counters.commands(Some(RejectionCode::Conflict)),
        counters.appends(),
    );
    let sample = load::drive(&env.clients, env.shape(), Arc::new(workload.clone())).await;
    let conflicts = counters.conflicts() - conflicts;
    let appends = counters.appends() - appends;
    let refused = counters.commands(Some(RejectionCode::Conflict)) - refused;
    counters.set_recording(was_recording);
    let answered = (sample.count + sample.unexpected).max(1);
    let figure = figure(name, &sample)
        .with("accounts", workload.count)
        .with("runtimes", 2)
        .with(
            "conflicts_per_command",
            (conflicts as f64 / answered as f64 * 100.0).round() / 100.0,
        )
        .with("refused_conflict", refused)
        .with(
            "appends_per_command",
            (appends as f64 / answered as f64 * 100.0).round() / 100.0,
        );
    match against {
        Some(baseline) => figure.against(baseline),
        None => figure,
    }
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
