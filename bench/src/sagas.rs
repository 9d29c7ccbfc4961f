//! The saga figure: payments carried through by the `payments` process
//! manager, each offered to an account that does not exist, so each is an
//! offer, a refused presentation and a refund (three commands, two of them
//! the manager's, and three writes of its instance's KV entry), measured
//! from the first offer to the last refund stored.
//!
//! Against one client sending deposits one after another to the same
//! runtime: the manager reacts to one trigger at a time per stream, so one
//! client's round trip is what one of its reactions is made of.

use super::env::Env;
use super::report::Figure;
use super::BenchErrorExt as _;
use super::{seed, BenchError};
use jetsource_client::{CommandClient, SendOptions};
use jetsource_process::ProcessConfig;
use jetsource_reference::payments::Payments;
use jetsource_schemas::CommandReply;
use std::time::{Duration, Instant};

/// Accounts paying, each offering its share one after another.
const PAYERS: usize = 16;

/// `one_client_deposit_roundtrip` and `payment_saga` (as a ratio to it).
pub async fn sagas(env: &mut Env) -> Result<Vec<Figure>, BenchError> {
    env.ensure_jetsource().await?;
    let count = if env.settings.quick { 200 } else { 2_000 };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let payer = |i: usize| format!("saga-{}-{}", &run[..8], i % PAYERS);
    let opened = (0..PAYERS).flat_map(|i| {
        [
            (
                format!("evt.account.{}.AccountOpened", payer(i)),
                bytes::Bytes::from_static(br#"{"owner":"bench"}"#),
            ),
            (
                format!("evt.account.{}.MoneyDeposited", payer(i)),
                bytes::Bytes::from_static(br#"{"amount":1000000000}"#),
            ),
        ]
    });
    seed::publish_all(&env.jetstream(), opened)
        .await
        .map_err(BenchError::failed)?;
    let connection = jetsource_handlers::connect(&env.url)
        .await
        .map_err(BenchError::nats)?;
    let client = CommandClient::new(connection.clone());

    let started = Instant::now();
    for i in 0..count {
        accepted(
            client
                .send(
                    "account",
                    &payer(i),
                    "deposit",
                    r#"{"amount":1}"#,
                    &SendOptions::default(),
                )
                .await,
        )?;
    }
    let mut baseline = Figure::named("one_client_deposit_roundtrip");
    baseline.count = Some(count as u64);
    baseline.rate = Some(count as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON));

    let manager = jetsource_process::start(
        connection,
        ProcessConfig {
            namespace: env.runtime_config().namespace.clone(),
            ..ProcessConfig::default()
        },
        Payments,
    )
    .await
    .map_err(BenchError::failed_display)?;
    let started = Instant::now();
    let offers = (0..PAYERS).map(|p| {
        let (client, run) = (client.clone(), run.clone());
        let payer = payer(p);
        async move {
            for i in (p..count).step_by(PAYERS) {
                let body = format!(
                    r#"{{"payment":"pay-{}-{i}","to":"nobody-{}","amount":1,"accept_within_secs":600}}"#,
                    &run[..8],
                    &run[..8]
                );
                accepted(
                    client
                        .send("account", &payer, "offer_payment", body, &SendOptions::default())
                        .await,
                )?;
            }
            Ok::<(), BenchError>(())
        }
    });
    for offered in futures::future::join_all(offers).await {
        offered?;
    }
    let offered = started.elapsed();
    let refunds = format!("evt.account.saga-{}-", &run[..8]);
    let done = refunded(env, &refunds, count as u64, Duration::from_secs(900)).await?;
    let elapsed = started.elapsed();
    manager.stop().await;
    if !done {
        return Err(BenchError::failed(format!(
            "not every payment was refunded within 900 s ({refunds}*)"
        )));
    }
    let mut saga = Figure::named("payment_saga");
    saga.count = Some(count as u64);
    saga.rate = Some(count as f64 / elapsed.as_secs_f64().max(f64::EPSILON));
    let saga = saga
        .with("commands_per_saga", 3)
        .with(
            "offers_per_s",
            (count as f64 / offered.as_secs_f64().max(f64::EPSILON)).round(),
        )
        .against(&baseline);
    Ok(vec![baseline, saga])
}

fn accepted(reply: Result<CommandReply, jetsource_client::SendError>) -> Result<(), BenchError> {
    match reply {
        Ok(CommandReply::Accepted(_)) => Ok(()),
        Ok(CommandReply::Rejected(r)) => Err(BenchError::failed(format!(
            "refused: {} {}",
            r.code.as_str(),
            r.reason
        ))),
        Err(e) => Err(BenchError::nats(e)),
    }
}

/// Whether `count` refunds to accounts whose subjects start with
/// `prefix` are stored within `limit`.
async fn refunded(
    env: &Env,
    prefix: &str,
    count: u64,
    limit: Duration,
) -> Result<bool, BenchError> {
    use futures::StreamExt as _;
    let deadline = Instant::now() + limit;
    let stream = env
        .jetstream()
        .get_stream("EVT_ACCOUNT")
        .await
        .map_err(BenchError::nats)?;
    while Instant::now() < deadline {
        let mut subjects = stream
            .info_with_subjects("evt.account.*.PaymentRefunded")
            .await
            .map_err(BenchError::nats)?;
        let mut stored = 0;
        while let Some(subject) = subjects.next().await {
            let (subject, n) = subject.map_err(BenchError::nats)?;
            if subject.starts_with(prefix) {
                stored += n as u64;
            }
        }
        if stored >= count {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}
