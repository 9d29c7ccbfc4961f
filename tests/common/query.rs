//! Questions on core NATS: queries of projections and feedback.

use super::wait::{eventually, DEADLINE};
use jetsource::schemas::feedback::FeedbackAnswer;
use jetsource::schemas::headers::AFTER_SEQ;
use std::time::Duration;

/// The answer on `subject` to an empty request, parsed.
pub async fn ask<T: serde::de::DeserializeOwned>(client: &async_nats::Client, subject: &str) -> T {
    let reply = client
        .request(subject.to_string(), bytes::Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("no answer on {subject}: {e}"));
    serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|e| panic!("answer on {subject}: {e}: {:?}", reply.payload))
}

/// Asks the feedback question `subject` until the answer is not `unknown`
/// (a fire-and-forget command is handled, and its notice travels, after
/// the send returns).
pub async fn known(client: &async_nats::Client, subject: &str) -> FeedbackAnswer {
    eventually(
        format!("an answer other than unknown on {subject}"),
        DEADLINE,
        || async move {
            let answer: FeedbackAnswer = ask(client, subject).await;
            (!matches!(answer, FeedbackAnswer::Unknown(_))).then_some(answer)
        },
    )
    .await
}

/// Query `subject` of a projection, with `After-Seq` when given: the whole
/// answer (status, result, positions).
pub async fn query(
    client: &async_nats::Client,
    subject: &str,
    after_seq: Option<&str>,
) -> serde_json::Value {
    let mut request = async_nats::Request::new().timeout(Some(Duration::from_secs(30)));
    if let Some(after) = after_seq {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(AFTER_SEQ, after);
        request = request.headers(headers);
    }
    let reply = client
        .send_request(subject.to_string(), request)
        .await
        .unwrap_or_else(|e| panic!("no answer on {subject}: {e}"));
    serde_json::from_slice(&reply.payload).expect("JSON")
}
