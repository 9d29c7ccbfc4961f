//! The bare responder: the physical limit of jetsource's hot path with no
//! domain logic. It queue-subscribes `raw.>`, appends the request's body to
//! `rawevt.<id>` with `Nats-Expected-Last-Subject-Sequence` taken from an
//! in-memory map of each aggregate's last sequence, and replies with the
//! sequence. One task per request, like the runtime.
//!
//! With `contract` on it writes what jetsource's contract puts on every
//! event as well: the wildcard `Nats-Expected-Last-Subject-Sequence-Subject`
//! over the aggregate's subjects and `Command-Id` (`Event-Version` only
//! goes on events past version 1), on a subject with the event type as its
//! last token. That separates what the
//! contract costs the server from what jetsource's own code costs.

use async_nats::jetstream::stream::{Config, StorageType};
use async_nats::{Client, HeaderMap, Message};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// The subject root the bare responder serves.
pub const ROOT: &str = "raw";
/// The subject root of the responder writing the contract's headers, so
/// both can serve at once.
pub const CONTRACT_ROOT: &str = "rawc";

/// The subject root of the responder with `contract` on or off.
pub fn root(contract: bool) -> &'static str {
    if contract {
        CONTRACT_ROOT
    } else {
        ROOT
    }
}
/// Its stream.
pub const STREAM: &str = "BENCH_RAW";

/// A running bare responder; stopped on drop.
#[derive(Debug)]
pub struct RawResponder {
    task: JoinHandle<()>,
}

impl Drop for RawResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Deserialize)]
struct Ack {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Creates the raw stream and starts answering on `client`.
pub async fn start(client: Client, contract: bool) -> Result<RawResponder, String> {
    let jetstream = async_nats::jetstream::new(client.clone());
    jetstream
        .get_or_create_stream(Config {
            name: STREAM.into(),
            subjects: vec!["rawevt.>".into()],
            storage: StorageType::File,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating {STREAM}: {e}"))?;
    let mut subscriber = client
        .queue_subscribe(format!("{}.>", root(contract)), "bench-raw".to_string())
        .await
        .map_err(|e| format!("subscribing: {e}"))?;
    let last: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let task = tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            let client = client.clone();
            let last = last.clone();
            tokio::spawn(async move { respond(&client, &last, message, contract).await });
        }
    });
    Ok(RawResponder { task })
}

async fn respond(
    client: &Client,
    last: &Mutex<HashMap<String, u64>>,
    message: Message,
    contract: bool,
) {
    let Some(reply_to) = message.reply else {
        return;
    };
    let answer = append(client, last, &message.subject, message.payload, contract).await;
    let _ = client.publish(reply_to, answer).await;
}

async fn append(
    client: &Client,
    last: &Mutex<HashMap<String, u64>>,
    subject: &str,
    body: Bytes,
    contract: bool,
) -> Bytes {
    let Some(id) = subject.split('.').nth(2) else {
        return Bytes::from_static(br#"{"error":"bad subject"}"#);
    };
    let expected = last
        .lock()
        .ok()
        .and_then(|l| l.get(id).copied())
        .unwrap_or(0);
    let mut h = HeaderMap::new();
    h.insert(
        "Nats-Expected-Last-Subject-Sequence",
        expected.to_string().as_str(),
    );
    let subject = if contract {
        let command_id = uuid::Uuid::now_v7().to_string();
        h.insert(
            "Nats-Expected-Last-Subject-Sequence-Subject",
            format!("rawevt.{id}.*").as_str(),
        );
        h.insert("Command-Id", command_id.as_str());
        format!("rawevt.{id}.BlogPostTitleChanged")
    } else {
        format!("rawevt.{id}")
    };
    let ack = match client.request_with_headers(subject, h, body).await {
        Ok(reply) => serde_json::from_slice::<Ack>(&reply.payload).ok(),
        Err(_) => None,
    };
    match ack {
        Some(Ack {
            seq, error: None, ..
        }) if seq > 0 => {
            if let Ok(mut last) = last.lock() {
                last.insert(id.to_string(), seq);
            }
            Bytes::from(format!(r#"{{"seq":{seq}}}"#))
        }
        _ => Bytes::from_static(br#"{"error":"append failed"}"#),
    }
}
