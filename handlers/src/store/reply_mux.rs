//! Routes the many replies of batched direct gets and atomic batches to
//! their callers over one wildcard subscription, so a load or a batch costs
//! no SUB/UNSUB round trip.

use async_nats::{Client, Subscriber};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Replies to `<prefix>.<id>`, each handed to the waiter registered as `id`.
#[derive(Debug)]
pub(crate) struct ReplyMux {
    prefix: String,
    next: AtomicU64,
    waiting: Mutex<Waiting>,
}

/// Who waits for the replies to each id.
type Waiting = HashMap<u64, mpsc::UnboundedSender<async_nats::Message>>;

impl ReplyMux {
    /// Subscribes to a new inbox's wildcard and starts routing.
    pub(crate) async fn start(client: &Client) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let prefix = format!("{}.load", client.new_inbox());
        let subscriber = client.subscribe(format!("{prefix}.*")).await?;
        let mux = Arc::new(ReplyMux {
            prefix,
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
        });
        tokio::spawn(Self::route(Arc::downgrade(&mux), subscriber));
        Ok(mux)
    }

    async fn route(mux: std::sync::Weak<Self>, mut subscriber: Subscriber) {
        while let Some(message) = subscriber.next().await {
            let Some(mux) = mux.upgrade() else { return };
            let Some(id) = message
                .subject
                .rsplit('.')
                .next()
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            let sender = mux.waiting().get(&id).cloned();
            if let Some(sender) = sender {
                let _ = sender.send(message);
            }
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        // Only map operations run under the lock, and none panics midway:
        // a poisoned map is still consistent. Skipping it instead would
        // leave a waiter without its replies, or registered for good.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A reply subject of its own, and the waiter its replies come to.
    pub(crate) fn register(self: &Arc<Self>) -> (String, ReplyWaiter) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiting().insert(id, tx);
        (
            format!("{}.{id}", self.prefix),
            ReplyWaiter {
                mux: self.clone(),
                id,
                rx,
            },
        )
    }
}

/// The replies to one registered subject; dropping it unregisters.
pub(crate) struct ReplyWaiter {
    mux: Arc<ReplyMux>,
    id: u64,
    pub(crate) rx: mpsc::UnboundedReceiver<async_nats::Message>,
}

impl Drop for ReplyWaiter {
    fn drop(&mut self) {
        self.mux.waiting().remove(&self.id);
    }
}
