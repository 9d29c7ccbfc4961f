//! The in-memory read model: at every start, one ordered consumer per
//! stream replays from sequence 1 and then follows the live tail, so every
//! process serving queries holds a complete model.
//!
//! The ordered consumer checks its own consumer sequence and recreates
//! itself from the last stream sequence it delivered after any gap, so the
//! hand-over from replay to live tail has no gap and no duplicate; the
//! driver also refuses to go backwards within a stream.

use crate::config::ProjectorConfig;
use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::event;
use crate::position::Positions;
use crate::projector::Projector;
use crate::shared::{self, Shared};
use crate::status::Phase;
use async_nats::jetstream::consumer::pull::{OrderedConfig, OrderedError};
use async_nats::jetstream::{self, consumer::DeliverPolicy};
use futures::{FutureExt, StreamExt};
use jetsource_schemas::error::Error;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

type Delivery = (usize, Result<jetstream::Message, OrderedError>);
pub(crate) type Merged = futures::stream::SelectAll<futures::stream::BoxStream<'static, Delivery>>;

/// Probes each stream's head and opens its ordered consumer from sequence 1.
pub(crate) async fn open(
    js: &jetstream::Context,
    shared: &Shared,
) -> Result<Merged, ProjectionError> {
    let merged = open_from(js, shared, &Positions::new(), true).await?;
    shared.update(|p| p.phase = Phase::Replaying);
    Ok(merged)
}

/// Opens each stream's ordered consumer after the position applied there
/// (from sequence 1 where there is none); `probe` also records the heads.
async fn open_from(
    js: &jetstream::Context,
    shared: &Shared,
    positions: &Positions,
    probe: bool,
) -> Result<Merged, ProjectionError> {
    let mut merged = futures::stream::SelectAll::new();
    for (index, (stream_name, filters)) in shared.streams.iter().enumerate() {
        let stream = crate::runtime::get_stream(js, stream_name).await?;
        if probe {
            let head = stream
                .get_info()
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?
                .state
                .last_sequence;
            shared.update(|p| {
                if let Some(s) = p.streams.get_mut(stream_name) {
                    s.head_at_start = head;
                    s.caught_up = head == 0;
                }
            });
        }
        let deliver_policy = match positions.get(stream_name).copied().unwrap_or(0) {
            0 => DeliverPolicy::All,
            applied => DeliverPolicy::ByStartSequence {
                start_sequence: applied + 1,
            },
        };
        let mut config = OrderedConfig {
            deliver_policy,
            ..Default::default()
        };
        match filters.as_slice() {
            [one] => config.filter_subject = one.clone(),
            many => config.filter_subjects = many.to_vec(),
        }
        let messages = stream
            .create_consumer(config)
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?
            .messages()
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
        merged.push(messages.map(move |m| (index, m)).boxed());
    }
    Ok(merged)
}

/// How long the driver waits without a delivery before it checks whether
/// its consumers stalled.
const STALL_CHECK: Duration = Duration::from_secs(3);

/// True when a stream holds an event the projector follows beyond what it
/// applied: events exist that its consumers have not delivered.
async fn stalled(js: &jetstream::Context, shared: &Shared, positions: &Positions) -> bool {
    for (stream_name, filters) in &shared.streams {
        let Ok(stream) = js.get_stream_no_info(stream_name).await else {
            continue;
        };
        let after = positions.get(stream_name).copied().unwrap_or(0);
        for filter in filters {
            if stream
                .direct_get_next_for_subject(filter, Some(after + 1))
                .await
                .is_ok()
            {
                return true;
            }
        }
    }
    false
}

/// Applies events until `stop` turns true or the projector halts.
///
/// An ordered consumer notices a lost server only after missing two idle
/// heartbeats (30 s), so the driver also checks, after [`STALL_CHECK`]
/// without a delivery, whether events it follows exist beyond what it
/// applied, and if so reopens its consumers right after its positions.
pub(crate) async fn drive<P: Projector>(
    js: jetstream::Context,
    shared: Arc<Shared>,
    model: Arc<RwLock<P>>,
    mut merged: Merged,
    config: ProjectorConfig,
    mut stop: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("projector", projector = shared.name, kind = "in_memory");
    async move {
        let names = shared.stream_names();
        let keys = crate::keys::DataKeys::new(js.clone(), &config.namespace, config.master_key.clone());
        let mut positions: Positions = names.iter().map(|s| (s.clone(), 0)).collect();
        loop {
            let first = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                next = merged.next() => Some(next),
                _ = tokio::time::sleep(STALL_CHECK) => None,
            };
            let Some(first) = first else {
                if stalled(&js, &shared, &positions).await {
                    match open_from(&js, &shared, &positions, false).await {
                        Ok(reopened) => {
                            tracing::warn!("consumers stalled behind the stream; reopened after the applied positions");
                            merged = reopened;
                        }
                        Err(e) => tracing::warn!(error = %e, "consumers stalled; reopening failed, trying again"),
                    }
                }
                continue;
            };
            let Some(first) = first else {
                shared.halt("the event streams ended".into());
                return;
            };
            let mut batch = vec![first];
            while batch.len() < config.batch.max(1) {
                match merged.next().now_or_never() {
                    Some(Some(next)) => batch.push(next),
                    _ => break,
                }
            }
            let mut halted = None;
            for (index, delivery) in batch {
                let message = match delivery {
                    Ok(message) => message,
                    Err(e) => {
                        // The ordered consumer recreates itself after
                        // these; nothing was delivered.
                        tracing::warn!(stream = %names[index], error = %e, "consumer trouble; it recovers from the last sequence");
                        continue;
                    }
                };
                let event = match event::from_message(&config.namespace, &message) {
                    Ok(event) => keys.reveal(event).await,
                    Err(e) => Err(e),
                };
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        halted = Some(e.to_string());
                        break;
                    }
                };
                let pending = message.info().map(|i| i.pending).unwrap_or(0);
                let last = positions.get(&event.stream).copied().unwrap_or(0);
                if event.seq <= last {
                    tracing::warn!(stream = %event.stream, seq = event.seq, last, "event delivered again; already applied");
                    continue;
                }
                let applying = crate::trace::applying(shared.name, &event);
                let applied = shared::apply(&model, &event, &config, Some(&shared.applied), true, false);
                let applied = match &applying {
                    Some(span) => applied.instrument(span.clone()).await,
                    None => applied.await,
                };
                drop(applying);
                if let Err(e) = applied {
                    halted = Some(format!("{} #{} ({}): {e}", event.stream, event.seq, event.subject));
                    break;
                }
                positions.insert(event.stream.clone(), event.seq);
                shared.delivered(&event.stream, event.seq, pending);
            }
            shared.applied.send_replace(positions.clone());
            if let Some(why) = halted {
                shared.halt(why);
                return;
            }
        }
        shared.update(|p| p.phase = Phase::Stopped);
    }
    .instrument(span)
    .await
}
