//! The generation of a persisted projection that queries read.

use crate::position::Positions;
use crate::projector::{Query, QueryError};
use crate::shared::Model;
use crate::store::ReadStore;
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// A store with the generation queries read from it.
pub(crate) struct Served<S> {
    store: Arc<S>,
    generation: AtomicU64,
}

impl<S: ReadStore> Served<S> {
    pub(crate) fn new(store: Arc<S>) -> Self {
        Served {
            store,
            generation: AtomicU64::new(0),
        }
    }

    /// Points queries at `generation`.
    pub(crate) fn set(&self, generation: u64) {
        self.generation.store(generation, Ordering::Release);
    }
}

impl<S: ReadStore> Model for Served<S> {
    fn query<'a>(
        &'a self,
        query: Query,
        applied: &'a watch::Sender<Positions>,
    ) -> BoxFuture<'a, (Positions, Result<serde_json::Value, QueryError>)> {
        // The positions stored before the answer is read: the answer holds
        // at least those (a persisted one may be a batch ahead).
        let positions = applied.borrow().clone();
        let generation = self.generation.load(Ordering::Acquire);
        Box::pin(async move { (positions, self.store.query(generation, query).await) })
    }
}
