//! The one-value store: a [`PersistedProjector`]'s whole state and its
//! checkpoint in one KV value per generation (key
//! [`CHECKPOINT_KEY`](crate::persisted::CHECKPOINT_KEY)), written by
//! compare-and-set on its revision. State and positions can never
//! disagree; the value must stay under the server's `max_payload` (1 MiB by
//! default): beyond it every commit fails and the projection is `failing`.

use super::{Checkpoint, Committed, Opened, ReadStore};
use crate::config::{PoisonPolicy, ProjectorConfig};
use crate::control;
use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::event::Event;
use crate::persisted::CHECKPOINT_KEY;
use crate::projector::{PersistedProjector, Query, QueryError};
use crate::shared;
use async_nats::jetstream::{self, kv};
use jetsource_schemas::error::Error;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// Builds a projector in its initial state.
pub(crate) type Make<P> = Arc<dyn Fn() -> P + Send + Sync>;

/// One generation: its model, and where it is stored.
struct Generation<P> {
    model: Arc<RwLock<P>>,
    stored: tokio::sync::Mutex<Stored>,
}

/// The generation's KV value as last read or written.
#[derive(Default)]
struct Stored {
    /// Its bucket, once opened for writing.
    kv: Option<kv::Store>,
    revision: u64,
    checkpoint: Checkpoint,
    /// The model may be ahead of the stored value: a write failed and the
    /// reload after it did too (the server was away). The next commit
    /// reloads first: applying on a model ahead of the store would apply
    /// the redelivered events twice.
    ahead: bool,
}

/// A [`PersistedProjector`] kept as one KV value per generation.
pub struct OneValue<P: PersistedProjector> {
    js: jetstream::Context,
    config: ProjectorConfig,
    make: Make<P>,
    /// A projector in its initial state, for what does not depend on it.
    probe: P,
    name: &'static str,
    subjects: Vec<String>,
    generations: Mutex<BTreeMap<u64, Arc<Generation<P>>>>,
}

impl<P: PersistedProjector> OneValue<P> {
    /// A store for the projectors `make` builds (in their initial state),
    /// in the buckets of `config`'s namespace.
    pub fn new(
        js: jetstream::Context,
        config: ProjectorConfig,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        let make: Make<P> = Arc::new(make);
        let probe = make();
        OneValue {
            js,
            config,
            name: probe.name(),
            subjects: probe.subjects(),
            make,
            probe,
            generations: Mutex::new(BTreeMap::new()),
        }
    }

    fn generation(&self, generation: u64) -> Arc<Generation<P>> {
        let mut all = shared::recover(self.generations.lock());
        all.entry(generation)
            .or_insert_with(|| {
                Arc::new(Generation {
                    model: Arc::new(RwLock::new((self.make)())),
                    stored: tokio::sync::Mutex::new(Stored::default()),
                })
            })
            .clone()
    }

    /// Reads generation `generation`'s projector.
    pub(crate) fn read<R>(&self, generation: u64, f: impl FnOnce(&P) -> R) -> R {
        let model = self.generation(generation).model.clone();
        let guard = shared::recover(model.read());
        f(&guard)
    }

    /// The largest message the server takes (a KV value must fit in one).
    fn max_payload(&self) -> usize {
        self.js.client().server_info().max_payload
    }

    fn bucket(&self, generation: u64) -> String {
        self.config
            .namespace
            .bucket(&control::generation_bucket(self.name, generation))
    }

    /// Loads the stored value into `g`'s model (the initial state when there
    /// is none) and notes its revision.
    async fn load(
        g: &Generation<P>,
        kv: &kv::Store,
        stored: &mut Stored,
        make: &Make<P>,
    ) -> Result<(), ProjectionError> {
        let entry = kv
            .entry(CHECKPOINT_KEY)
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let checkpoint: Checkpoint<P::State> = serde_json::from_slice(&entry.value)
                    .map_err(|e| {
                        Error::with_message_and_source(
                            ProjectionErrorKind::Store,
                            "the stored checkpoint does not decode",
                            e,
                        )
                    })?;
                stored.checkpoint = checkpoint.mark();
                shared::recover(g.model.write()).restore(checkpoint.state);
                stored.revision = entry.revision;
            }
            other => {
                *shared::recover(g.model.write()) = make();
                stored.checkpoint = Checkpoint::default();
                stored.revision = other.map_or(0, |e| e.revision);
            }
        }
        stored.ahead = false;
        Ok(())
    }

    /// Writes `checkpoint` with `g`'s state by compare-and-set.
    async fn write(
        g: &Generation<P>,
        stored: &mut Stored,
        checkpoint: Checkpoint,
        max_payload: usize,
    ) -> Result<(), ProjectionError> {
        let Some(kv) = stored.kv.clone() else {
            return Err(Error::new(
                ProjectionErrorKind::Store,
                "the generation is not open for writing",
            ));
        };
        let value = {
            let guard = shared::recover(g.model.read());
            serde_json::to_vec(&checkpoint.clone().with(guard.state()))
        }
        .map_err(|e| {
            Error::with_message_and_source(
                ProjectionErrorKind::Store,
                "the state does not encode",
                e,
            )
        })?;
        if value.len() > max_payload {
            return Err(Error::new(
                ProjectionErrorKind::Store,
                format!(
                    "the state is {} bytes, over the server's max_payload of {max_payload}: \
                     a one-value projection must stay under it (keep a large model as documents)",
                    value.len()
                ),
            ));
        }
        match kv
            .update(CHECKPOINT_KEY, value.into(), stored.revision)
            .await
        {
            Ok(revision) => {
                stored.revision = revision;
                stored.checkpoint = checkpoint;
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(Error::with_source(ProjectionErrorKind::Conflict, e))
            }
            Err(e) => Err(Error::with_source(ProjectionErrorKind::Store, e)),
        }
    }
}

impl<P: PersistedProjector> ReadStore for OneValue<P> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn subjects(&self) -> Vec<String> {
        self.subjects.clone()
    }

    fn poison_policy(&self, default: PoisonPolicy) -> PoisonPolicy {
        self.probe.poison_policy(default)
    }

    async fn open(&self, generation: u64, lease: u64) -> Result<Opened, ProjectionError> {
        let kv = self
            .js
            .create_or_update_key_value(kv::Config {
                bucket: self.bucket(generation),
                description: format!("read model of projection {}", self.name),
                history: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
        let g = self.generation(generation);
        let mut stored = g.stored.lock().await;
        stored.kv = Some(kv.clone());
        Self::load(&g, &kv, &mut stored, &self.make).await?;
        // Fencing: from here on, whoever opened this generation before
        // writes against an old revision and is refused.
        let mut checkpoint = stored.checkpoint.clone();
        checkpoint.lease = lease;
        Self::write(&g, &mut stored, checkpoint.clone(), self.max_payload()).await?;
        Ok(Opened {
            checkpoint,
            reset: false,
        })
    }

    async fn refresh(&self, generation: u64) -> Result<Option<Checkpoint>, ProjectionError> {
        let Ok(kv) = self.js.get_key_value(self.bucket(generation)).await else {
            return Ok(None);
        };
        let entry = kv
            .entry(CHECKPOINT_KEY)
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let g = self.generation(generation);
        let mut stored = g.stored.lock().await;
        if stored.revision != entry.revision {
            let checkpoint: Checkpoint<P::State> =
                serde_json::from_slice(&entry.value).map_err(|e| {
                    Error::with_message_and_source(
                        ProjectionErrorKind::Store,
                        "the stored checkpoint does not decode",
                        e,
                    )
                })?;
            stored.checkpoint = checkpoint.mark();
            stored.revision = entry.revision;
            shared::recover(g.model.write()).restore(checkpoint.state);
        }
        Ok(Some(stored.checkpoint.clone()))
    }

    async fn commit(
        &self,
        generation: u64,
        events: Vec<Event>,
        mut checkpoint: Checkpoint,
        live: bool,
    ) -> Result<Committed, ProjectionError> {
        let g = self.generation(generation);
        let mut stored = g.stored.lock().await;
        if stored.ahead {
            let Some(kv) = stored.kv.clone() else {
                return Err(Error::new(
                    ProjectionErrorKind::Store,
                    "the generation is not open for writing",
                ));
            };
            Self::load(&g, &kv, &mut stored, &self.make).await?;
        }
        let mut committed = Committed {
            applied: 0,
            failure: None,
        };
        // The store may hold events the caller thinks it does not: a write
        // whose answer was lost (a timeout while the server went away) may
        // have been stored all the same, and the model reloaded with it.
        // Those events are in the state already; applying them again would
        // count them twice. (A parked event being replayed is below the
        // position but listed as skipped: it is applied.)
        let held: Vec<bool> = events
            .iter()
            .map(|event| {
                let at = stored.checkpoint.positions.get(&event.stream);
                let skipped = stored
                    .checkpoint
                    .skipped
                    .get(&event.stream)
                    .is_some_and(|s| s.contains(&event.seq));
                at.is_some_and(|&at| at >= event.seq) && !skipped
            })
            .collect();
        for (stream, &at) in &stored.checkpoint.positions {
            checkpoint.advance_to(stream, at);
        }
        for (event, held) in events.iter().zip(held) {
            if held {
                committed.applied += 1;
                continue;
            }
            match shared::apply(&g.model, event, &self.config, None, false, live).await {
                Ok(()) => {
                    checkpoint.advance(event);
                    committed.applied += 1;
                }
                Err(e) => {
                    committed.failure = Some(e);
                    break;
                }
            }
        }
        if committed.applied == 0 && checkpoint == stored.checkpoint {
            return Ok(committed);
        }
        if let Err(e) = Self::write(&g, &mut stored, checkpoint, self.max_payload()).await {
            // The model is ahead of the stored value: back to it, for the
            // redelivery to apply the batch again.
            stored.ahead = true;
            if let Some(kv) = stored.kv.clone() {
                if let Err(reload) = Self::load(&g, &kv, &mut stored, &self.make).await {
                    tracing::warn!(error = %reload, "cannot reload the stored state");
                }
            }
            return Err(e);
        }
        Ok(committed)
    }

    async fn query(&self, generation: u64, query: Query) -> Result<serde_json::Value, QueryError> {
        let g = self.generation(generation);
        let guard = shared::recover(g.model.read());
        guard.query(&query)
    }

    async fn remove(&self, generation: u64) {
        shared::recover(self.generations.lock()).remove(&generation);
        let bucket = self.bucket(generation);
        if let Err(e) = self.js.delete_key_value(&bucket).await {
            tracing::debug!(%bucket, error = %e, "bucket not deleted");
        }
    }
}
