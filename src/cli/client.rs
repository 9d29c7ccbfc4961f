//! The client commands' plumbing: the connection, feedback queries, and
//! printing answers.

use crate::config::Config;
use crate::embedded;
use jetsource_schemas::Namespace;
use std::io::IsTerminal;
use std::process::ExitCode;

use super::QueryTarget;

/// Sends one feedback query and prints the answer. Exit 0 when the answer
/// says what became of the command (`accepted`, `rejected`) or lists an
/// aggregate's rejections; 1 when nothing is known of it (`unknown`,
/// `pending`); 2 for an invalid id; 3 when NATS or the feedback role is
/// unreachable.
pub(crate) async fn query(
    config: &Config,
    what: &str,
    subject: Result<String, jetsource_schemas::TokenError>,
    target: QueryTarget,
) -> ExitCode {
    let subject = match subject {
        Ok(subject) => subject,
        Err(e) => {
            eprintln!("jetsource {what}: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match client_connection(config, target.nats_url.as_deref(), what).await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let request = async_nats::Request::new()
        .payload(bytes::Bytes::new())
        .timeout(Some(std::time::Duration::from_secs(target.timeout)));
    match client.send_request(subject, request).await {
        Ok(answer) => match serde_json::from_slice::<serde_json::Value>(&answer.payload) {
            Ok(value) => {
                print_json(&value);
                match value.get("status").and_then(|s| s.as_str()) {
                    Some("unknown" | "pending") => ExitCode::from(1),
                    Some("bad_request") => ExitCode::from(2),
                    _ => ExitCode::SUCCESS,
                }
            }
            Err(e) => {
                eprintln!("jetsource {what}: the answer is not JSON: {e}");
                ExitCode::from(3)
            }
        },
        Err(e) => {
            eprintln!("jetsource {what}: no answer (is `jetsource run` serving feedback?): {e}");
            ExitCode::from(3)
        }
    }
}

/// The configured subject prefix. On an invalid one (checked at start, so
/// only by mistake), prints why and returns the exit code (2).
pub(crate) fn namespace(config: &Config, what: &str) -> Result<Namespace, ExitCode> {
    config.namespace().map_err(|e| {
        eprintln!("jetsource {what}: {e}");
        ExitCode::from(2)
    })
}

pub(crate) async fn projector_status(
    config: &Config,
    nats_url: Option<&str>,
    timeout: u64,
) -> ExitCode {
    let subject = match namespace(config, "projector status") {
        Ok(ns) => jetsource_projector::status::status_subject(&ns),
        Err(code) => return code,
    };
    let client = match client_connection(config, nats_url, "projector status").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let request = async_nats::Request::new().timeout(Some(std::time::Duration::from_secs(timeout)));
    let reply = match client.send_request(subject.clone(), request).await {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!("jetsource projector status: no answer on {subject}: {e}");
            return ExitCode::from(3);
        }
    };
    match serde_json::from_slice::<jetsource_projector::StatusReport>(&reply.payload) {
        Ok(report) => {
            print_json(&report);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jetsource projector status: not a status report: {e}");
            ExitCode::from(3)
        }
    }
}

/// The connection of a client command (`send`, queries, …): the URL from
/// the flag, the environment or the config file, else the one `jetsource run`
/// recorded; credentials as configured. On failure, prints why and returns
/// the exit code (3).
pub async fn client_connection(
    config: &Config,
    flag: Option<&str>,
    what: &str,
) -> Result<async_nats::Client, ExitCode> {
    let Some(url) = config
        .nats_url(flag)
        .or_else(|| embedded::recorded_url(&config.embedded))
    else {
        eprintln!("jetsource {what}: no NATS server: start `jetsource run`, or pass --nats-url");
        return Err(ExitCode::from(3));
    };
    crate::auth::connect(config, &url).await.map_err(|e| {
        eprintln!("jetsource {what}: {e}");
        ExitCode::from(3)
    })
}

/// Prints JSON: pretty on a terminal, one line otherwise.
pub fn print_json<T: serde::Serialize>(value: &T) {
    let text = if std::io::stdout().is_terminal() {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    match text {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("jetsource: cannot print the answer: {e}"),
    }
}
