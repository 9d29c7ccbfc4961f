//! `jetsource query`: a projection's answer, without the nats CLI.

use super::client::{client_connection, namespace, print_json};
use super::QueryTarget;
use crate::config::Config;
use jetsource_schemas::{headers, token};
use std::process::ExitCode;

/// One query as typed on the command line.
pub(crate) struct QueryRequest {
    pub(crate) projection: String,
    pub(crate) path: Vec<String>,
    pub(crate) after_seq: Option<String>,
    pub(crate) limit: Option<u64>,
    pub(crate) after: Option<String>,
}

/// What an `After-Seq` value may hold: digits, and the `<stream>:<seq>`
/// form's stream names, colons and commas. The projection checks the rest.
fn after_seq_chars(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 1024
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b','))
}

/// Sends the query and prints the answer. Exit 0 `ok`, 1 `not_found`, 2 bad
/// usage or `bad_request`, 3 no answer, `timeout`, or a projection that is
/// `halted` or `failing`.
pub(crate) async fn query(config: &Config, request: QueryRequest, target: QueryTarget) -> ExitCode {
    let bad = |why: String| {
        eprintln!("jetsource query: {why}");
        ExitCode::from(2)
    };
    if let Err(e) = token::validate("projection", &request.projection) {
        return bad(e.to_string());
    }
    for part in &request.path {
        if let Err(e) = token::validate("query path token", part) {
            return bad(e.to_string());
        }
    }
    let mut sent_headers = async_nats::HeaderMap::new();
    if let Some(after_seq) = &request.after_seq {
        if !after_seq_chars(after_seq) {
            return bad(format!(
                "--after-seq takes a sequence or <stream>:<seq>[,…], got {}",
                jetsource_schemas::reply::excerpt(after_seq, 64)
            ));
        }
        sent_headers.insert(headers::AFTER_SEQ, after_seq.as_str());
    }
    let mut page = serde_json::Map::new();
    if let Some(limit) = request.limit {
        page.insert("limit".into(), limit.into());
    }
    if let Some(after) = request.after {
        page.insert("after".into(), after.into());
    }
    let body = match page.is_empty() {
        true => bytes::Bytes::new(),
        false => bytes::Bytes::from(serde_json::Value::Object(page).to_string()),
    };
    let subject = match namespace(config, "query") {
        Ok(ns) => ns.subject(format_args!(
            "query.{}.{}",
            request.projection,
            request.path.join(".")
        )),
        Err(code) => return code,
    };
    let client = match client_connection(config, target.nats_url.as_deref(), "query").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let sent = async_nats::Request::new()
        .headers(sent_headers)
        .payload(body)
        .timeout(Some(std::time::Duration::from_secs(target.timeout)));
    let answer = match client.send_request(subject.clone(), sent).await {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!(
                "jetsource query: no answer on {subject} (is a projector named {:?} running?): {e}",
                request.projection
            );
            return ExitCode::from(3);
        }
    };
    let value: serde_json::Value = match serde_json::from_slice(&answer.payload) {
        Ok(value) => value,
        Err(e) => {
            eprintln!("jetsource query: the answer is not JSON: {e}");
            return ExitCode::from(3);
        }
    };
    print_json(&value);
    match value.get("status").and_then(|s| s.as_str()) {
        Some("ok") => ExitCode::SUCCESS,
        Some("not_found") => ExitCode::from(1),
        Some("bad_request") => ExitCode::from(2),
        _ => ExitCode::from(3),
    }
}
