//! Asking a projection from Rust, its answer decoded into the caller's
//! type: `query.<projection>.<path…>`, optionally once the projection has
//! applied a command's events (`After-Seq`).

use bytes::Bytes;
use jetsource_schemas::error::Error;
use jetsource_schemas::{headers, token, Accepted, Namespace};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::Duration;

/// What went wrong asking a projection: each answer that is not `ok`, and
/// the failures to get one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// A token of the subject is invalid: nothing was sent.
    InvalidInput,
    /// `not_found`: the thing asked for does not exist.
    NotFound,
    /// `bad_request`: the projection does not know the query, or refused
    /// its arguments.
    BadRequest,
    /// `timeout`: the position asked for was not applied in time; ask
    /// again.
    Timeout,
    /// `halted` or `failing`: the position asked for will not be reached
    /// until an operator acts.
    Stuck,
    /// `too_large`: ask for less (a smaller page).
    TooLarge,
    /// `unavailable`: the read model could not answer now; ask again.
    Unavailable,
    /// No projection answered (none running, or too slow).
    NoAnswer,
    /// The answer was not a query answer, or its `result` did not decode
    /// as the type asked for.
    BadReply,
}

impl std::fmt::Display for QueryErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueryErrorKind::InvalidInput => "invalid input",
            QueryErrorKind::NotFound => "not found",
            QueryErrorKind::BadRequest => "bad request",
            QueryErrorKind::Timeout => "timeout",
            QueryErrorKind::Stuck => "halted or failing",
            QueryErrorKind::TooLarge => "too large",
            QueryErrorKind::Unavailable => "unavailable",
            QueryErrorKind::NoAnswer => "no answer",
            QueryErrorKind::BadReply => "bad reply",
        })
    }
}

/// A query failure; its message is the projection's `reason` when it
/// answered.
pub type QueryError = Error<QueryErrorKind>;

/// Where a projection must have got to before it answers: `After-Seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct After(BTreeMap<String, u64>);

impl After {
    /// No position: answered from what is applied now.
    pub fn nothing() -> Self {
        After::default()
    }

    /// After the events of `accepted` (the last of each stream it wrote).
    pub fn reply(accepted: &Accepted) -> Self {
        let mut after = After::default();
        for event in &accepted.events {
            after = after.and(&event.stream, event.seq);
        }
        after
    }

    /// Also after sequence `seq` of `stream` (the later one wins).
    pub fn and(mut self, stream: &str, seq: u64) -> Self {
        let at = self.0.entry(stream.to_string()).or_insert(0);
        *at = (*at).max(seq);
        self
    }

    /// The `After-Seq` header's value, `None` for no position.
    fn header(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let parts: Vec<String> = self.0.iter().map(|(s, q)| format!("{s}:{q}")).collect();
        Some(parts.join(","))
    }
}

/// Asks projections over one NATS connection.
#[derive(Debug, Clone)]
pub struct QueryClient {
    client: async_nats::Client,
    timeout: Duration,
    namespace: Namespace,
}

impl QueryClient {
    /// A client waiting up to 10 s for answers (more than a projection's
    /// default `query_wait`), asking on unprefixed subjects.
    pub fn new(client: async_nats::Client) -> Self {
        QueryClient {
            client,
            timeout: Duration::from_secs(10),
            namespace: Namespace::default(),
        }
    }

    /// Asks on `namespace`'s query subjects (the application's prefix).
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// Changes the answer timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Asks `query.<projection>.<path…>` with `body` (`Null` for none),
    /// once `after` is applied, and decodes the `result` as `T`: the type
    /// the projection answers with (an `OrderView` for `get`, a
    /// `Page<OrderView>` for `list`).
    pub async fn ask<T: DeserializeOwned>(
        &self,
        projection: &str,
        path: &[&str],
        body: serde_json::Value,
        after: &After,
    ) -> Result<T, QueryError> {
        let invalid = |e: token::TokenError| Error::with_source(QueryErrorKind::InvalidInput, e);
        token::validate("projection", projection).map_err(invalid)?;
        for part in path {
            token::validate("query path", part).map_err(invalid)?;
        }
        let mut subject = format!("query.{projection}");
        for part in path {
            subject.push('.');
            subject.push_str(part);
        }
        let mut h = async_nats::HeaderMap::new();
        if let Some(value) = after.header() {
            h.insert(headers::AFTER_SEQ, value.as_str());
        }
        let payload = match body {
            serde_json::Value::Null => Bytes::new(),
            other => other.to_string().into(),
        };
        let request = async_nats::Request::new()
            .headers(h)
            .payload(payload)
            .timeout(Some(self.timeout));
        let reply = self
            .client
            .send_request(self.namespace.subject(subject), request)
            .await
            .map_err(|e| Error::with_source(QueryErrorKind::NoAnswer, e))?;
        answer(&reply.payload)
    }
}

/// Reads one answer: the `result` of an `ok`, else the error its status
/// names.
fn answer<T: DeserializeOwned>(payload: &[u8]) -> Result<T, QueryError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        status: String,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        result: serde_json::Value,
    }
    let answer: Answer = serde_json::from_slice(payload)
        .map_err(|e| Error::with_source(QueryErrorKind::BadReply, e))?;
    let kind = match answer.status.as_str() {
        "ok" => {
            return serde_json::from_value(answer.result)
                .map_err(|e| Error::with_source(QueryErrorKind::BadReply, e))
        }
        "not_found" => QueryErrorKind::NotFound,
        "bad_request" => QueryErrorKind::BadRequest,
        "timeout" => QueryErrorKind::Timeout,
        "halted" | "failing" => QueryErrorKind::Stuck,
        "too_large" => QueryErrorKind::TooLarge,
        "unavailable" => QueryErrorKind::Unavailable,
        other => {
            return Err(Error::new(
                QueryErrorKind::BadReply,
                format!("unknown answer status {other:?}"),
            ))
        }
    };
    Err(Error::new(kind, answer.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_their_result_or_their_kind() {
        let ok: Result<u64, _> = answer(br#"{"status":"ok","positions":{},"result":7}"#);
        assert_eq!(ok.ok(), Some(7));
        for (body, kind) in [
            (
                &br#"{"status":"not_found","reason":"no o9"}"#[..],
                QueryErrorKind::NotFound,
            ),
            (
                br#"{"status":"bad_request","reason":"?"}"#,
                QueryErrorKind::BadRequest,
            ),
            (
                br#"{"status":"timeout","reason":"?"}"#,
                QueryErrorKind::Timeout,
            ),
            (
                br#"{"status":"halted","reason":"?"}"#,
                QueryErrorKind::Stuck,
            ),
            (
                br#"{"status":"too_large","reason":"?","size":2,"max_payload":1}"#,
                QueryErrorKind::TooLarge,
            ),
            (
                br#"{"status":"unavailable","reason":"?"}"#,
                QueryErrorKind::Unavailable,
            ),
            (
                br#"{"status":"ok","result":"seven"}"#,
                QueryErrorKind::BadReply,
            ),
            (br#"{"status":"maybe"}"#, QueryErrorKind::BadReply),
            (b"not json", QueryErrorKind::BadReply),
        ] {
            let e = answer::<u64>(body).expect_err("an error");
            assert_eq!(e.kind(), kind, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn after_a_reply_names_the_last_event_of_each_stream() {
        let after = After::nothing()
            .and("EVT_ORDER", 4)
            .and("EVT_PAYMENT", 2)
            .and("EVT_ORDER", 3);
        assert_eq!(after.header().as_deref(), Some("EVT_ORDER:4,EVT_PAYMENT:2"));
        assert_eq!(After::nothing().header(), None);
    }
}
