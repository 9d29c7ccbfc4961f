//! `jetsource process status | parked`: the process managers the
//! application hosts, read from JetStream (no running process needed).

use crate::app::App;
use crate::cli::client::namespace;
use crate::cli::{client_connection, print_json};
use crate::config::Config;
use jetsource_process::status::ProcessStatus;
use jetsource_process::ProcessError;
use std::process::ExitCode;

/// `jetsource process status`: one status per hosted process manager.
pub(crate) async fn status(app: &App, config: &Config, nats_url: Option<&str>) -> ExitCode {
    let namespace = match namespace(config, "process status") {
        Ok(ns) => ns,
        Err(code) => return code,
    };
    let client = match client_connection(config, nats_url, "process status").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    match statuses(app, &client, &namespace).await {
        Ok(report) => {
            print_json(&serde_json::json!({ "process_managers": report }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jetsource process status: {e}");
            ExitCode::from(3)
        }
    }
}

/// The status of every process manager `app` hosts (what `process status`
/// prints and the console shows).
pub(crate) async fn statuses(
    app: &App,
    client: &async_nats::Client,
    namespace: &jetsource_schemas::Namespace,
) -> Result<Vec<ProcessStatus>, ProcessError> {
    let mut report = Vec::new();
    for manager in app.process_managers() {
        report.push(
            jetsource_process::status::status(
                client,
                namespace,
                manager.name,
                &manager.aggregate_types,
            )
            .await?,
        );
    }
    Ok(report)
}

/// `jetsource process parked <name>`: the triggers parked for it.
pub(crate) async fn parked(
    app: &App,
    config: &Config,
    nats_url: Option<&str>,
    name: &str,
) -> ExitCode {
    if !app.process_managers().iter().any(|m| m.name == name) {
        let known: Vec<&str> = app.process_managers().iter().map(|m| m.name).collect();
        eprintln!(
            "jetsource process parked: no process manager {:?}; hosted: {}",
            jetsource_schemas::reply::bounded_reason(name.to_string()),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
        return ExitCode::from(2);
    }
    let namespace = match namespace(config, "process parked") {
        Ok(ns) => ns,
        Err(code) => return code,
    };
    let client = match client_connection(config, nats_url, "process parked").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    match jetsource_process::parked::list(&client, &namespace, name).await {
        Ok(parked) => {
            print_json(&serde_json::json!({ "parked": parked }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jetsource process parked: {e}");
            ExitCode::from(3)
        }
    }
}

/// `jetsource process replay-parked <name>` (`skip` absent) or `process
/// skip-parked <name> <stream> <seq>`. Exit 0 done, 1 some failed or not
/// skipped, 2 bad usage, 3 no answer.
pub(crate) async fn operate(
    app: &App,
    config: &Config,
    nats_url: Option<&str>,
    name: &str,
    skip: Option<jetsource_projector::control::SkipRequest>,
    timeout: u64,
) -> ExitCode {
    let what = if skip.is_some() {
        "process skip-parked"
    } else {
        "process replay-parked"
    };
    if !app.process_managers().iter().any(|m| m.name == name) {
        eprintln!(
            "jetsource {what}: no process manager {:?} is hosted",
            jetsource_schemas::reply::bounded_reason(name.to_string())
        );
        return ExitCode::from(2);
    }
    let namespace = match namespace(config, what) {
        Ok(ns) => ns,
        Err(code) => return code,
    };
    let client = match client_connection(config, nats_url, what).await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let timeout = std::time::Duration::from_secs(timeout);
    let done = match skip {
        Some(parked) => {
            jetsource_process::parked::skip_in(&client, &namespace, name, &parked, timeout)
                .await
                .map(|outcome| {
                    let ok = matches!(outcome, jetsource_projector::control::SkipOutcome::Skipped);
                    print_json(&outcome);
                    ok
                })
        }
        None => jetsource_process::parked::replay_in(&client, &namespace, name, timeout)
            .await
            .map(|summary| {
                let ok = summary.all_done();
                print_json(&summary);
                ok
            }),
    };
    match done {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("jetsource {what}: {e}");
            ExitCode::from(3)
        }
    }
}
