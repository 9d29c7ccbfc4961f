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
    answer(client, subject, async_nats::Request::new(), after_seq).await
}

/// One page of the list `subject`: the request `{"limit", "after"}` (each
/// when given), with `After-Seq` when given; the whole answer.
pub async fn page(
    client: &async_nats::Client,
    subject: &str,
    limit: Option<u64>,
    after: Option<&str>,
    after_seq: Option<&str>,
) -> serde_json::Value {
    let body = jetsource::schemas::page::PageRequest {
        limit,
        after: after.map(str::to_string),
    };
    let request =
        async_nats::Request::new().payload(serde_json::to_vec(&body).expect("JSON").into());
    answer(client, subject, request, after_seq).await
}

/// Sends `request` to `subject`, with `After-Seq` when given, and reads the
/// JSON answer.
async fn answer(
    client: &async_nats::Client,
    subject: &str,
    mut request: async_nats::Request,
    after_seq: Option<&str>,
) -> serde_json::Value {
    request = request.timeout(Some(Duration::from_secs(30)));
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

/// Every item of the paginated list `subject`, page after page (the first
/// with `After-Seq` when given), and the number of items of each page.
pub async fn list_all(
    client: &async_nats::Client,
    subject: &str,
    limit: Option<u64>,
    after_seq: Option<&str>,
) -> (Vec<serde_json::Value>, Vec<usize>) {
    let (mut items, mut pages) = (Vec::new(), Vec::new());
    let mut after: Option<String> = None;
    loop {
        let seq = if pages.is_empty() { after_seq } else { None };
        let answer = page(client, subject, limit, after.as_deref(), seq).await;
        assert_eq!(
            answer["status"], "ok",
            "{subject} after {after:?}: {answer}"
        );
        let got = answer["result"]["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{subject}: no items in {answer}"))
            .clone();
        pages.push(got.len());
        items.extend(got);
        match &answer["result"]["next"] {
            serde_json::Value::Null => return (items, pages),
            serde_json::Value::String(next) => after = Some(next.clone()),
            other => panic!("{subject}: next is {other}"),
        }
        assert!(pages.len() <= 100_000, "{subject}: the pages never end");
    }
}
