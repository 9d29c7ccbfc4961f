//! Rebuilding a persisted projection blue-green: the next generation is
//! built from empty storage beside the one queries read,
//! and swapped in once it has caught up.

use super::Driver;
use crate::control::{self, RebuildUpdate};
use crate::error::ProjectionError;
use crate::lease::Lease;
use crate::persisted::{self, PersistedProjection};
use crate::shared::Shared;
use crate::status::Kind;
use crate::store::ReadStore;
use async_nats::Subject;
use std::time::Instant;

/// A rebuild in progress: the next generation, built beside the served
/// one, and who asked for it.
pub(super) struct Rebuild<S: ReadStore> {
    pub(super) projection: PersistedProjection<S>,
    pub(super) reply: Option<Subject>,
    pub(super) started: Instant,
    pub(super) total: u64,
    pub(super) done: u64,
}

/// Completes once the rebuild has an event waiting; never without one.
pub(super) async fn rebuild_ready<S: ReadStore>(rebuild: &mut Option<Rebuild<S>>) -> bool {
    match rebuild {
        Some(r) => r.projection.ready().await,
        None => std::future::pending().await,
    }
}

impl<S: ReadStore> Driver<S> {
    /// Opens generation `generation` beside the served one, from the
    /// projector's initial state, after removing what an abandoned attempt
    /// left.
    pub(super) async fn start_rebuild(
        &self,
        generation: u64,
        lease: &Lease,
        reply: Option<Subject>,
    ) -> Result<Rebuild<S>, (Option<Subject>, ProjectionError)> {
        let name = self.shared.name;
        let mut streams = Vec::new();
        for stream in self.shared.streams.keys() {
            match crate::runtime::get_stream(&self.js, stream).await {
                Ok(s) => streams.push(s),
                Err(e) => return Err((reply, e)),
            }
        }
        // What an abandoned attempt may have left.
        persisted::remove_generation(self.store.as_ref(), name, generation, &streams).await;
        let building = Shared::new(name, Kind::Persisted, self.shared.streams.clone());
        let mut projection = match self.open(generation, building, lease.token(), false).await {
            Ok(p) => p,
            Err(e) => return Err((reply, e)),
        };
        let total = projection.outstanding().await.unwrap_or(0);
        tracing::info!(generation, total, "rebuild started");
        self.reply(
            reply.as_ref(),
            &RebuildUpdate::Started { generation, total },
        )
        .await;
        Ok(Rebuild {
            projection,
            reply,
            started: Instant::now(),
            total,
            done: 0,
        })
    }

    /// Points queries at the rebuilt generation and removes the old one.
    pub(super) async fn switch(
        &self,
        old: PersistedProjection<S>,
        r: Rebuild<S>,
    ) -> PersistedProjection<S> {
        let mut new = r.projection;
        let generation = new.generation();
        if let Err(e) = control::set_generation(&self.control, self.shared.name, generation).await {
            let reason = format!("the generation pointer was not written: {e}");
            self.reply(r.reply.as_ref(), &RebuildUpdate::Failed { reason })
                .await;
            new.remove().await;
            return old;
        }
        // Queries read the old generation complete or the new one caught
        // up, never a partial one.
        self.served.set(generation);
        self.shared.set_applied(new.positions());
        new.adopt(self.shared.clone());
        let positions = self.shared.named(new.positions());
        old.remove().await;
        tracing::info!(generation, events = r.done, "rebuild switched");
        let done = RebuildUpdate::Done {
            generation,
            events: r.done,
            elapsed_ms: r.started.elapsed().as_millis() as u64,
            positions,
        };
        self.reply(r.reply.as_ref(), &done).await;
        new
    }

    /// Gives a rebuild up, says why to who asked, and removes what it built.
    pub(super) async fn abandon(&self, r: Rebuild<S>, why: &str) {
        tracing::warn!(reason = why, "rebuild abandoned");
        let reason = format!("rebuild abandoned: {why}");
        self.reply(r.reply.as_ref(), &RebuildUpdate::Failed { reason })
            .await;
        r.projection.remove().await;
    }
}
