//! `jetsource forget <type> <id>`: destroys an aggregate's data key, so its
//! personal fields read as their redaction value from then on.

use super::client::{client_connection, namespace, print_json};
use super::QueryTarget;
use crate::config::Config;
use std::process::ExitCode;

/// Sends `forget.<type>.<id>` to the handlers and prints the answer. Exit 0
/// forgotten (also when there was nothing to forget), 2 bad usage or
/// `bad_request`, 3 no answer or `unavailable` (send again).
pub(crate) async fn forget(
    config: &Config,
    aggregate_type: &str,
    aggregate_id: &str,
    target: QueryTarget,
) -> ExitCode {
    let subject = match namespace(config, "forget") {
        Ok(ns) => jetsource_handlers::forget::forget_subject(&ns, aggregate_type, aggregate_id),
        Err(code) => return code,
    };
    let subject = match subject {
        Ok(subject) => subject,
        Err(e) => {
            eprintln!("jetsource forget: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match client_connection(config, target.nats_url.as_deref(), "forget").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let request = async_nats::Request::new()
        .payload(bytes::Bytes::new())
        .timeout(Some(std::time::Duration::from_secs(target.timeout)));
    let answer = match client.send_request(subject, request).await {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("jetsource forget: no answer (is `jetsource run` serving handlers?): {e}");
            return ExitCode::from(3);
        }
    };
    let value: serde_json::Value = match serde_json::from_slice(&answer.payload) {
        Ok(value) => value,
        Err(e) => {
            eprintln!("jetsource forget: the answer is not JSON: {e}");
            return ExitCode::from(3);
        }
    };
    print_json(&value);
    match (value["status"].as_str(), value["code"].as_str()) {
        (Some("forgotten"), _) => ExitCode::SUCCESS,
        (_, Some("bad_request")) => ExitCode::from(2),
        _ => ExitCode::from(3),
    }
}
