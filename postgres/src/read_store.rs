//! [`PgStore`] as a [`ReadStore`]: the runtime's persisted-projection
//! driver (durable consumers, lease, rebuilds, parking, status) over
//! PostgreSQL.
//!
//! `jetsource_projections` follows the generations this instance has
//! open: the lowest is the one served (a rebuild opens the next beside
//! it; the switch removes the old one, an abandoned rebuild removes the
//! new one), so the table names the served generation from the moment the
//! lease holder opens it until the next switch.

use crate::store::PgStore;
use crate::PgProjector;
use jetsource_projector::store::{Checkpoint, Committed, Opened, ReadStore};
use jetsource_projector::{Event, Follows, PoisonPolicy, ProjectionError, Query, QueryError};

impl<P: PgProjector> PgStore<P> {
    /// Records the lowest generation open as the one served; a failure
    /// is only logged: the runtime's own pointer decides what is served.
    async fn track(&self, opened: Option<u64>, removed: Option<u64>) {
        let lowest = {
            let mut open = self.open_generations();
            if let Some(g) = opened {
                open.insert(g);
            }
            if let Some(g) = removed {
                open.remove(&g);
            }
            open.first().copied()
        };
        if let Some(generation) = lowest {
            if let Err(e) = self.serve(generation).await {
                tracing::warn!(projection = self.name(), generation, error = %e, "jetsource_projections not updated");
            }
        }
    }
}

impl<P: PgProjector> ReadStore for PgStore<P> {
    fn name(&self) -> &'static str {
        self.projector().name()
    }

    fn subjects(&self) -> Vec<String> {
        P::Input::subjects()
    }

    fn poison_policy(&self, default: PoisonPolicy) -> PoisonPolicy {
        self.projector().poison_policy(default)
    }

    async fn open(&self, generation: u64, lease: u64) -> Result<Opened, ProjectionError> {
        let checkpoint = PgStore::open(self, generation, lease).await?;
        self.track(Some(generation), None).await;
        Ok(Opened {
            checkpoint,
            reset: false,
        })
    }

    async fn refresh(&self, generation: u64) -> Result<Option<Checkpoint>, ProjectionError> {
        PgStore::refresh(self, generation).await
    }

    async fn commit(
        &self,
        generation: u64,
        events: Vec<Event>,
        checkpoint: Checkpoint,
        _live: bool,
    ) -> Result<Committed, ProjectionError> {
        PgStore::commit(self, generation, &checkpoint, &events).await
    }

    async fn query(&self, generation: u64, query: Query) -> Result<serde_json::Value, QueryError> {
        PgStore::query(self, generation, &query).await
    }

    async fn remove(&self, generation: u64) {
        if let Err(e) = PgStore::remove(self, generation).await {
            tracing::warn!(projection = self.name(), generation, error = %e, "schema not dropped");
        }
        self.track(None, Some(generation)).await;
    }
}
