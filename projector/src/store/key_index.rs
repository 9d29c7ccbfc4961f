//! An ordered index of a document bucket's keys, so a `list` page costs
//! O(log N + page) instead of a scan of every key per page.
//!
//! JetStream keeps no key order: a bucket lists its keys in stream order,
//! and nothing reads "the keys after k". So the process that answers lists
//! keeps the order itself, in memory: an ordered consumer over the bucket's
//! subjects, headers only, first the last entry of every key, then every
//! write as it lands. It holds the keys (never the documents) of a
//! generation once that generation was listed, and is dropped with it.
//!
//! A page is answered only once the index has seen the bucket's last
//! sequence as of the query's arrival, so every document stored before the
//! page was asked is in it.

use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

use crate::shared;

/// The header a KV write names its operation in (absent: a put).
const KV_OPERATION: &str = "KV-Operation";
/// The header of a server-made marker (a key removed by age or purge).
const MARKER_REASON: &str = "Nats-Marker-Reason";

/// The keys of one bucket, in order, followed live.
pub(crate) struct KeyIndex {
    keys: Arc<Mutex<BTreeSet<String>>>,
    /// The last stream sequence applied to `keys`; closed when the
    /// consumer ended (the index is then rebuilt).
    seen: watch::Receiver<u64>,
    /// When the bucket's stream was created: a bucket deleted and made
    /// again (a reset) needs a new index.
    created: time::OffsetDateTime,
    follow: tokio::task::JoinHandle<()>,
}

impl Drop for KeyIndex {
    fn drop(&mut self) {
        self.follow.abort();
    }
}

impl KeyIndex {
    /// Starts following `kv`'s keys (`created`: its stream's creation).
    pub(crate) async fn follow(
        client: &async_nats::Client,
        kv: &kv::Store,
        created: time::OffsetDateTime,
    ) -> Result<Self, String> {
        let consumer = kv
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                description: Some("jetsource document key index".to_string()),
                filter_subject: format!("{}>", kv.prefix),
                headers_only: true,
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        let keys = Arc::new(Mutex::new(BTreeSet::new()));
        let (tx, seen) = watch::channel(0);
        let prefix = kv.prefix.clone();
        let followed = keys.clone();
        let follow = tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let Ok(message) = message else { break };
                let Ok(info) = message.info() else { break };
                let seq = info.stream_sequence;
                let Some(key) = message.subject.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                let removed = message.headers.as_ref().is_some_and(|h| {
                    h.get(KV_OPERATION)
                        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
                        || h.get(MARKER_REASON).is_some()
                });
                // The store's own entries (`_checkpoint`) are not listed.
                if !key.starts_with('_') {
                    let mut keys = shared::recover(followed.lock());
                    if removed {
                        keys.remove(key);
                    } else if !keys.contains(key) {
                        keys.insert(key.to_string());
                    }
                }
                tx.send_modify(|at| *at = (*at).max(seq));
            }
            // Dropping `tx` tells readers the index stopped following.
        });
        Ok(KeyIndex {
            keys,
            seen,
            created,
            follow,
        })
    }

    /// Whether it follows the bucket whose stream was created at `created`.
    pub(crate) fn follows(&self, created: time::OffsetDateTime) -> bool {
        self.created == created && !self.follow.is_finished()
    }

    /// Waits until the index holds every write up to `last`, at most
    /// `wait`.
    pub(crate) async fn caught_up(&self, last: u64, wait: Duration) -> Result<(), String> {
        let mut seen = self.seen.clone();
        let reached = tokio::time::timeout(wait, async {
            seen.wait_for(|at| *at >= last).await.map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the key index stopped following the bucket".into()),
            Err(_) => Err(format!(
                "the key index has not reached the bucket's sequence {last} within {wait:?}"
            )),
        }
    }

    /// Up to `n` keys after `after` (from the first without one), in order.
    pub(crate) fn after(&self, after: Option<&str>, n: usize) -> Vec<String> {
        let from = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        shared::recover(self.keys.lock())
            .range::<str, _>((from, Bound::Unbounded))
            .take(n)
            .cloned()
            .collect()
    }
}
