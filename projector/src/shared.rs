//! What a running projector shares between its driver (applying events),
//! its query server and the status report.

use crate::config::ProjectorConfig;
use crate::event::Event;
use crate::position::Positions;
use crate::projector::{Projector, ProjectorError, ProjectorErrorKind, Query, QueryError};
use crate::status::{Kind, Phase};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::{Arc, LockResult, Mutex, PoisonError, RwLock};
use tokio::sync::watch;

/// Takes a lock whose holder panicked as if it had not: every lock in this
/// crate goes through here.
///
/// Recovering is safe because nothing behind these locks can be left torn
/// in a way that spreads. The runtime's own sections (progress, positions)
/// only assign whole values. The model's sections run the projector's
/// code; if its `apply` panics (breaking its contract: fail with `Err`,
/// state unchanged), the driver task holding the lock dies with it, so that
/// model is never written to a checkpoint, and a persisted projection's
/// lease lapses for another instance to resume from the last checkpoint.
/// What recovering buys: queries and the status report keep answering
/// instead of every later one panicking too.
pub(crate) fn recover<G>(locked: LockResult<G>) -> G {
    locked.unwrap_or_else(PoisonError::into_inner)
}

/// The read side of a projector, type-erased for the query server.
pub(crate) trait Model: Send + Sync {
    /// Answers `query`, with the positions the answer reflects: read under
    /// the same lock as the model, so an in-memory projection's answer and
    /// its positions always agree.
    fn query<'a>(
        &'a self,
        query: Query,
        applied: &'a watch::Sender<Positions>,
    ) -> BoxFuture<'a, (Positions, Result<serde_json::Value, QueryError>)>;
}

impl<P: Projector> Model for RwLock<P> {
    fn query<'a>(
        &'a self,
        query: Query,
        applied: &'a watch::Sender<Positions>,
    ) -> BoxFuture<'a, (Positions, Result<serde_json::Value, QueryError>)> {
        let answer = {
            let guard = recover(self.read());
            let positions = applied.borrow().clone();
            (positions, guard.query(&query))
        };
        Box::pin(std::future::ready(answer))
    }
}

/// Progress of one stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamProgress {
    pub head_at_start: u64,
    pub pending: u64,
    pub caught_up: bool,
}

/// Progress of one projector.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    pub phase: Phase,
    pub error: Option<String>,
    pub streams: BTreeMap<String, StreamProgress>,
}

/// Batches refused in a row before a projection is reported `failing`
/// (fewer are passing trouble, retried quietly).
pub(crate) const FAILING_AFTER: u32 = 3;

/// One projector's shared parts.
pub(crate) struct Shared {
    pub name: &'static str,
    pub kind: Kind,
    /// Stream name to the filter subjects followed in it.
    pub streams: BTreeMap<String, Vec<String>>,
    /// The positions applied (and, when persisted, stored): queries with
    /// `After-Seq` wait on it.
    pub applied: watch::Sender<Positions>,
    pub progress: Mutex<Progress>,
}

impl Shared {
    pub(crate) fn new(
        name: &'static str,
        kind: Kind,
        streams: BTreeMap<String, Vec<String>>,
    ) -> Arc<Shared> {
        let progress = Progress {
            phase: Phase::Starting,
            error: None,
            streams: streams
                .keys()
                .map(|s| (s.clone(), StreamProgress::default()))
                .collect(),
        };
        Arc::new(Shared {
            name,
            kind,
            streams,
            applied: watch::channel(Positions::new()).0,
            progress: Mutex::new(progress),
        })
    }

    /// `positions` in the streams it names (`streams`): a persisted
    /// projection also keeps its place in the forgotten notices stream in
    /// its checkpoint, which no query or `After-Seq` names.
    pub(crate) fn named(&self, positions: &Positions) -> Positions {
        positions
            .iter()
            .filter(|(stream, _)| self.streams.contains_key(*stream))
            .map(|(stream, seq)| (stream.clone(), *seq))
            .collect()
    }

    /// Publishes `positions` (those of its named streams) as applied.
    pub(crate) fn set_applied(&self, positions: &Positions) {
        self.applied.send_replace(self.named(positions));
    }

    pub(crate) fn stream_names(&self) -> Vec<String> {
        self.streams.keys().cloned().collect()
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut Progress)) {
        let mut guard = recover(self.progress.lock());
        change(&mut guard);
        if guard.phase == Phase::Replaying && guard.streams.values().all(|s| s.caught_up) {
            guard.phase = Phase::Live;
            tracing::info!(projector = self.name, "caught up; following the live tail");
        }
    }

    pub(crate) fn progress(&self) -> Progress {
        recover(self.progress.lock()).clone()
    }

    /// Records a halt: the projector stops at `seq` and says why.
    pub(crate) fn halt(&self, why: String) {
        tracing::error!(projector = self.name, error = %why, "projector halted");
        self.update(|p| {
            p.phase = Phase::Halted;
            p.error = Some(why);
        });
    }

    /// Records that a halted projector is about to go on (its parked event
    /// replayed or skipped): queries wait for positions again rather than
    /// answer `halted` while it reopens.
    pub(crate) fn resuming(&self) {
        self.update(|p| {
            if p.phase == Phase::Halted {
                tracing::info!(projector = self.name, "resuming past the parked event");
                p.phase = Phase::Replaying;
                p.error = None;
            }
        });
    }

    /// Records that the store refused a batch `attempts` times in a row:
    /// from [`FAILING_AFTER`] on, the projection is `failing`.
    pub(crate) fn store_failed(&self, attempts: u32, why: String) {
        if attempts < FAILING_AFTER {
            return;
        }
        self.update(|p| {
            if p.phase != Phase::Failing {
                tracing::error!(projector = self.name, error = %why, attempts, "the store keeps refusing writes");
            }
            p.phase = Phase::Failing;
            p.error = Some(why);
        });
    }

    /// Records a batch stored after failures: back to replaying or live.
    pub(crate) fn store_recovered(&self) {
        self.update(|p| {
            if p.phase == Phase::Failing {
                tracing::info!(projector = self.name, "the store takes writes again");
                p.phase = Phase::Replaying;
                p.error = None;
            }
        });
    }

    /// Notes one delivered event's stream position and what is left.
    pub(crate) fn delivered(&self, stream: &str, seq: u64, pending: u64) {
        self.update(|p| {
            if let Some(s) = p.streams.get_mut(stream) {
                s.pending = pending;
                if seq >= s.head_at_start || pending == 0 {
                    s.caught_up = true;
                }
            }
        });
    }
}

/// Applies `event`, retrying transient failures up to `config.apply_retries`
/// times when `retry` (persisted projections retry by redelivery instead);
/// runs its side effects when `live`. The lock is never held across a wait.
pub(crate) async fn apply<P: Projector>(
    model: &RwLock<P>,
    event: &Event,
    config: &ProjectorConfig,
    publish: Option<&watch::Sender<Positions>>,
    retry: bool,
    live: bool,
) -> Result<(), ProjectorError> {
    let mut attempt = 0u32;
    loop {
        let result = {
            let mut guard = recover(model.write());
            let result = guard.apply(event);
            if result.is_ok() && live {
                guard.side_effects(event);
            }
            // Publishing the position under the write lock keeps it in step
            // with the model for readers (see `Model::query`).
            if let (Ok(()), Some(applied)) = (&result, publish) {
                applied.send_modify(|p| {
                    p.insert(event.stream.clone(), event.seq);
                });
            }
            result
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e)
                if retry
                    && e.kind() == ProjectorErrorKind::Transient
                    && attempt < config.apply_retries =>
            {
                attempt += 1;
                tracing::warn!(stream = %event.stream, seq = event.seq, attempt, error = %e, "apply failed; retrying");
                tokio::time::sleep(config.retry_backoff * attempt).await;
            }
            Err(e) => return Err(e),
        }
    }
}
