//! Writing events straight into a stream (pipelined publishes, acks awaited
//! in a window), to prepare the scale, replay and cold-load figures quickly
//! and without jetsource on the path.

use async_nats::jetstream::Context;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;

type Ack = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<
                    async_nats::jetstream::publish::PublishAck,
                    async_nats::jetstream::context::PublishError,
                >,
            > + Send,
    >,
>;

/// Publishes awaiting acknowledgements at once.
const WINDOW: usize = 4096;

/// Publishes every `(subject, body)` and waits for all acks.
pub async fn publish_all(
    jetstream: &Context,
    events: impl Iterator<Item = (String, Bytes)>,
) -> Result<u64, String> {
    let mut acks: FuturesUnordered<Ack> = FuturesUnordered::new();
    let mut count = 0;
    for (subject, body) in events {
        if acks.len() >= WINDOW {
            if let Some(ack) = acks.next().await {
                ack.map_err(|e| format!("seeding: {e}"))?;
            }
        }
        let ack = jetstream
            .publish(subject, body)
            .await
            .map_err(|e| format!("seeding: {e}"))?;
        acks.push(std::future::IntoFuture::into_future(ack));
        count += 1;
    }
    while let Some(ack) = acks.next().await {
        ack.map_err(|e| format!("seeding: {e}"))?;
    }
    Ok(count)
}
