//! Opening a generation of a persisted projection: its storage (created
//! when missing), the checkpoint stored there, and a durable consumer per
//! stream, checked against the checkpoint before anything is read.

use super::{Followed, PersistedProjection};
use crate::config::ProjectorConfig;
use crate::control;
use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::persisted;
use crate::position;
use crate::projector::PersistedProjector;
use crate::shared::Shared;
use crate::status::{Kind, Phase};
use crate::store::{OneValue, ReadStore};
use async_nats::jetstream::{self, consumer, kv};
use futures::StreamExt;
use jetsource_schemas::error::Error;
use jetsource_schemas::forgotten;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How to open a projection's generation.
pub(crate) struct Opening {
    pub generation: u64,
    /// The opener's lease token, written into the checkpoint.
    pub lease: u64,
    /// Side effects run (false while a rebuild replays).
    pub live: bool,
    pub control: kv::Store,
}

impl<P: PersistedProjector + Clone> PersistedProjection<OneValue<P>> {
    /// Opens the one-value projection of `projector` on `client`: its
    /// bucket (created when missing), the state stored there, and its
    /// durable consumers.
    pub async fn open(
        client: async_nats::Client,
        projector: P,
        config: &ProjectorConfig,
    ) -> Result<Self, ProjectionError> {
        let name = projector.name();
        position::validate_name(name)
            .map_err(|e| Error::with_source(ProjectionErrorKind::BadProjector, e))?;
        let streams = position::streams_of_in(&config.namespace, &projector.subjects())
            .map_err(|e| Error::with_source(ProjectionErrorKind::BadProjector, e))?;
        let shared = Shared::new(name, Kind::Persisted, streams);
        let js = jetstream::new(client);
        let control = control::open_bucket(&js, &config.namespace).await?;
        let generation = control::active_generation(&control, name).await?;
        let opening = Opening {
            generation,
            lease: 0,
            live: true,
            control,
        };
        let store = OneValue::new(js.clone(), config.clone(), move || projector.clone());
        Self::open_shared(&js, shared, Arc::new(store), config, opening).await
    }
}

impl<S: ReadStore> PersistedProjection<S> {
    pub(crate) async fn open_shared(
        js: &jetstream::Context,
        shared: Arc<Shared>,
        store: Arc<S>,
        config: &ProjectorConfig,
        opening: Opening,
    ) -> Result<Self, ProjectionError> {
        let name = shared.name;
        let generation = opening.generation;
        let consumer_name = |name: &str| control::generation_consumer(name, generation);
        let policy = store.poison_policy(config.poison_policy());
        let opened = store.open(generation, opening.lease).await?;
        let mut projection = PersistedProjection {
            shared: shared.clone(),
            store,
            config: config.clone(),
            control: opening.control,
            generation,
            live: opening.live,
            policy,
            checkpoint: opened.checkpoint,
            failures: BTreeMap::new(),
            followed: Vec::new(),
            merged: futures::stream::SelectAll::new().peekable(),
            keys: crate::keys::DataKeys::new(
                js.clone(),
                &config.namespace,
                config.master_key.clone(),
            ),
        };
        shared.set_applied(&projection.checkpoint.positions);
        let mut targets = Vec::new();
        for (stream_name, filters) in &shared.streams {
            let stream = crate::runtime::get_stream(js, stream_name).await?;
            targets.push((stream_name.clone(), filters.clone(), stream));
        }
        targets.extend(forgotten_target(js, projection.store.as_ref(), config).await);
        if opened.reset {
            let streams: Vec<_> = targets.iter().map(|(_, _, s)| s.clone()).collect();
            persisted::remove_consumers(name, generation, &streams).await;
        }
        for (stream_name, filters, stream) in targets {
            let stream_name = &stream_name;
            let head = stream
                .get_info()
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?
                .state
                .last_sequence;
            let mut wanted = consumer::pull::Config {
                durable_name: Some(consumer_name(name)),
                description: Some(format!("projection {name}")),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: config.max_ack_pending,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            };
            match filters.as_slice() {
                [one] => wanted.filter_subject = one.clone(),
                many => wanted.filter_subjects = many.to_vec(),
            }
            let mut consumer: consumer::PullConsumer = stream
                .get_or_create_consumer(&consumer_name(name), wanted)
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
            let info = consumer
                .info()
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
            let stored = projection
                .checkpoint
                .positions
                .get(stream_name)
                .copied()
                .unwrap_or(0);
            let acked = info.ack_floor.stream_sequence;
            if acked > stored {
                return Err(Error::new(
                    ProjectionErrorKind::Inconsistent,
                    format!("{stream_name}: consumer {} acknowledged up to #{acked} but the checkpoint holds #{stored}; resuming would skip events", consumer_name(name)),
                ));
            }
            if info.num_ack_pending > 0 {
                // Events a previous run took but never acknowledged: have
                // them redelivered now and in order (those already stored
                // are skipped by sequence) instead of after `ack_wait`.
                if let Err(e) = stream.reset_consumer(&consumer_name(name), None).await {
                    tracing::warn!(stream = %stream_name, error = %e, "cannot rewind the consumer to its ack floor (server older than 2.14?); unacknowledged events come back after ack_wait");
                }
            }
            let pending = info.num_pending + info.num_ack_pending as u64;
            shared.update(|p| {
                if let Some(s) = p.streams.get_mut(stream_name) {
                    s.head_at_start = head;
                    s.pending = pending;
                    s.caught_up = stored >= head || pending == 0;
                }
            });
            projection.followed.push(Followed {
                name: stream_name.clone(),
                filters,
                stream,
                consumer,
            });
        }
        let mut merged = futures::stream::SelectAll::new();
        for (index, followed) in projection.followed.iter().enumerate() {
            let messages = followed
                .consumer
                .messages()
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
            merged.push(messages.map(move |m| (index, m)).boxed());
        }
        projection.merged = merged.peekable();
        shared.update(|p| p.phase = Phase::Replaying);
        Ok(projection)
    }
}

/// The notices stream, with a filter per aggregate type whose notices
/// `store` wants (see [`ReadStore::forgotten_types`]), followed like an
/// event stream: its own durable consumer per generation, its position in
/// the checkpoint. `None` when the store wants none, or the stream is not
/// there (the handlers role makes it; a projection opened before that
/// learns of forgets from its next start on).
async fn forgotten_target<S: ReadStore>(
    js: &jetstream::Context,
    store: &S,
    config: &ProjectorConfig,
) -> Option<(String, Vec<String>, jetstream::stream::Stream)> {
    let types = store.forgotten_types();
    if types.is_empty() {
        return None;
    }
    let name = forgotten::stream_name(&config.namespace);
    match js.get_stream(&name).await {
        Ok(stream) => {
            let filters = types
                .iter()
                .map(|t| forgotten::type_filter(&config.namespace, t))
                .collect();
            Some((name, filters, stream))
        }
        Err(e) => {
            tracing::warn!(stream = %name, error = %e, "no forgotten notices to follow (the handlers role makes the stream); forgotten aggregates are dropped from the next start on");
            None
        }
    }
}
