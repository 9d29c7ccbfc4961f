//! The client commands' plumbing: the connection, feedback queries, and
//! printing answers.

use crate::config::Config;
use crate::embedded;
use jetsource_schemas::Namespace;
use std::io::IsTerminal;
use std::process::ExitCode;

use super::op::{OpError, OpErrorKind};
use super::QueryTarget;

/// Asks `subject` (a feedback query: status, errors) and returns the
/// answer as JSON.
pub(crate) async fn ask(
    client: &async_nats::Client,
    subject: String,
    timeout: std::time::Duration,
) -> Result<serde_json::Value, OpError> {
    let request = async_nats::Request::new()
        .payload(bytes::Bytes::new())
        .timeout(Some(timeout));
    let answer = client.send_request(subject, request).await.map_err(|e| {
        OpError::with_message_and_source(
            OpErrorKind::Unavailable,
            "no answer (is `jetsource run` serving feedback?)",
            e,
        )
    })?;
    serde_json::from_slice(&answer.payload).map_err(|e| {
        OpError::with_message_and_source(OpErrorKind::Corrupt, "the answer is not JSON", e)
    })
}

/// The running projectors' status report.
pub(crate) async fn fetch_projector_status(
    client: &async_nats::Client,
    namespace: &Namespace,
    timeout: std::time::Duration,
) -> Result<jetsource_projector::StatusReport, OpError> {
    let subject = jetsource_projector::status::status_subject(namespace);
    let request = async_nats::Request::new().timeout(Some(timeout));
    let reply = client
        .send_request(subject.clone(), request)
        .await
        .map_err(|e| {
            OpError::with_message_and_source(
                OpErrorKind::Unavailable,
                format!("no answer on {subject}"),
                e,
            )
        })?;
    serde_json::from_slice(&reply.payload).map_err(|e| {
        OpError::with_message_and_source(OpErrorKind::Corrupt, "not a status report", e)
    })
}

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
    match ask(
        &client,
        subject,
        std::time::Duration::from_secs(target.timeout),
    )
    .await
    {
        Ok(value) => {
            print_json(&value);
            match value.get("status").and_then(|s| s.as_str()) {
                Some("unknown" | "pending") => ExitCode::from(1),
                Some("bad_request") => ExitCode::from(2),
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => super::op::exit(what, &e),
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

/// The master key from the settings, or the exit code 2 after saying why.
pub(crate) fn master_key(
    config: &Config,
    what: &str,
) -> Result<Option<jetsource_schemas::key_wrap::MasterKey>, ExitCode> {
    config.master_key().map_err(|e| {
        eprintln!("jetsource {what}: {e}");
        ExitCode::from(2)
    })
}

pub(crate) async fn projector_status(
    config: &Config,
    nats_url: Option<&str>,
    timeout: u64,
) -> ExitCode {
    let namespace = match namespace(config, "projector status") {
        Ok(ns) => ns,
        Err(code) => return code,
    };
    let client = match client_connection(config, nats_url, "projector status").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let timeout = std::time::Duration::from_secs(timeout);
    match fetch_projector_status(&client, &namespace, timeout).await {
        Ok(report) => {
            print_json(&report);
            ExitCode::SUCCESS
        }
        Err(e) => super::op::exit("projector status", &e),
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
