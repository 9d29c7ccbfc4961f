//! The life of a persisted projection in one process: stand by until it
//! holds the lease, then apply batches, serve the control subjects
//! (`rebuild`, `replay-parked`) and, during a rebuild, build the next
//! generation beside the one queries read, switching when it caught up.
//!
//! # Layout
//! - `rebuild`: a rebuild (starting one, switching to it, abandoning it).
//! - `served`: the generation queries read.

mod rebuild;
mod served;

use crate::config::ProjectorConfig;
use crate::control::{self, RebuildUpdate};
use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::lease::{Lease, Watcher};
use crate::persisted::{Opening, PersistedProjection};
use crate::position;
use crate::shared::Shared;
use crate::status::Phase;
use crate::store::ReadStore;
use async_nats::jetstream::{self, kv};
use async_nats::{Client, Subject};
use futures::StreamExt;
use rebuild::{rebuild_ready, Rebuild};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

pub(crate) use served::Served;

/// The longest wait between two attempts to store a refused batch.
const MAX_STORE_BACKOFF: Duration = Duration::from_secs(5);

/// One persisted projection's driver.
pub(crate) struct Driver<S: ReadStore> {
    pub client: Client,
    pub js: jetstream::Context,
    pub control: kv::Store,
    pub shared: Arc<Shared>,
    /// Where its generations are kept.
    pub store: Arc<S>,
    /// The generation queries read; a switch moves it.
    pub served: Arc<Served<S>>,
    pub config: ProjectorConfig,
    pub holder: String,
}

enum Held {
    Stopped,
    Lost,
}

enum Next {
    Stop,
    Lost,
    Request(async_nats::Message),
    Live(bool),
    Rebuild(bool),
    Tick,
}

impl<S: ReadStore> Driver<S> {
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let shared = self.shared.clone();
        let span = tracing::info_span!("projector", projector = shared.name, kind = "persisted");
        async move {
            let subject = control::control_filter(&self.config.namespace, self.shared.name);
            let mut requests = match self.client.subscribe(subject).await {
                Ok(requests) => requests,
                Err(e) => {
                    self.shared
                        .halt(format!("cannot serve the control subjects: {e}"));
                    return;
                }
            };
            let poll = (self.config.lease_ttl / 4).max(Duration::from_millis(20));
            loop {
                self.shared.update(|p| p.phase = Phase::Standby);
                let mut watcher = Watcher::default();
                let lease = loop {
                    match Lease::try_acquire(
                        &self.control,
                        self.shared.name,
                        &self.holder,
                        self.config.lease_ttl,
                        &mut watcher,
                    )
                    .await
                    {
                        Ok(Some(lease)) => break Some(lease),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot read the lease"),
                    }
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "standby: cannot read the stored read model");
                    }
                    let stopped = tokio::select! {
                        _ = stop.wait_for(|s| *s) => true,
                        _ = tokio::time::sleep(poll) => false,
                        // Control requests are the holder's; a standby leaves them.
                        _ = requests.next() => false,
                    };
                    if stopped {
                        break None;
                    }
                };
                let Some(lease) = lease else { break };
                let (mut held, renewer) = lease.keep();
                let outcome = self.hold(&lease, &mut held, &mut requests, &mut stop).await;
                drop(renewer);
                match outcome {
                    Held::Stopped => {
                        lease.release().await;
                        break;
                    }
                    Held::Lost => continue,
                }
            }
            self.shared.update(|p| p.phase = Phase::Stopped);
        }
        .instrument(span)
        .await
    }

    /// A standby keeps the served generation at what the active one has
    /// stored, so its queries and a takeover start from there.
    async fn refresh(&self) -> Result<(), ProjectionError> {
        let generation = control::active_generation(&self.control, self.shared.name).await?;
        if let Some(checkpoint) = self.store.refresh(generation).await? {
            self.served.set(generation);
            let positions = self.shared.named(&checkpoint.positions);
            self.shared.applied.send_if_modified(|p| {
                let changed = *p != positions;
                *p = positions;
                changed
            });
        }
        Ok(())
    }

    pub(super) async fn open(
        &self,
        generation: u64,
        shared: Arc<Shared>,
        token: u64,
        live: bool,
    ) -> Result<PersistedProjection<S>, ProjectionError> {
        let opening = Opening {
            generation,
            lease: token,
            live,
            control: self.control.clone(),
        };
        PersistedProjection::open_shared(
            &self.js,
            shared,
            self.store.clone(),
            &self.config,
            opening,
        )
        .await
    }

    /// Opens the active generation, retrying while the lease holds.
    async fn open_live(
        &self,
        lease: &Lease,
        held: &watch::Receiver<bool>,
        stop: &watch::Receiver<bool>,
    ) -> Option<PersistedProjection<S>> {
        loop {
            let opened = match control::active_generation(&self.control, self.shared.name).await {
                Ok(generation) => {
                    self.open(generation, self.shared.clone(), lease.token(), true)
                        .await
                }
                Err(e) => Err(e),
            };
            match opened {
                Ok(projection) => {
                    self.served.set(projection.generation());
                    self.shared.update(|p| p.error = None);
                    return Some(projection);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the projection; retrying");
                    self.shared.update(|p| p.error = Some(e.to_string()));
                }
            }
            if *stop.borrow() || !*held.borrow() {
                return None;
            }
            tokio::time::sleep(self.config.retry_backoff.max(Duration::from_millis(100))).await;
        }
    }

    async fn hold(
        &self,
        lease: &Lease,
        held: &mut watch::Receiver<bool>,
        requests: &mut async_nats::Subscriber,
        stop: &mut watch::Receiver<bool>,
    ) -> Held {
        let Some(mut live) = self.open_live(lease, held, stop).await else {
            return if *stop.borrow() {
                Held::Stopped
            } else {
                Held::Lost
            };
        };
        let mut rebuild: Option<Rebuild<S>> = None;
        let mut halted = false;
        // Batches the store refused in a row.
        let mut refused: u32 = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            let rebuilding = rebuild.is_some();
            let next = tokio::select! {
                _ = stop.wait_for(|s| *s) => Next::Stop,
                _ = held.wait_for(|h| !*h) => Next::Lost,
                Some(m) = requests.next() => Next::Request(m),
                ok = live.ready(), if !halted => Next::Live(ok),
                ok = rebuild_ready(&mut rebuild), if rebuilding => Next::Rebuild(ok),
                _ = tick.tick(), if rebuilding => Next::Tick,
            };
            match next {
                Next::Stop | Next::Lost => {
                    if let Some(r) = rebuild.take() {
                        self.abandon(r, "the instance stopped or lost its lease")
                            .await;
                    }
                    return if matches!(next, Next::Stop) {
                        Held::Stopped
                    } else {
                        Held::Lost
                    };
                }
                Next::Live(true) => match live.next_batch().await {
                    Ok(batch) => {
                        if refused > 0 {
                            refused = 0;
                            self.shared.store_recovered();
                        }
                        let why = batch.halted().map(str::to_string);
                        if let Err(e) = batch.ack().await {
                            tracing::warn!(error = %e, "acks not sent; the events will be redelivered and skipped");
                        }
                        if let Some(why) = why {
                            self.shared.halt(why);
                            halted = true;
                        }
                    }
                    Err(e) if e.kind() == ProjectionErrorKind::Conflict => {
                        tracing::warn!(error = %e, "the checkpoint was written by another instance; stepping down");
                        return Held::Lost;
                    }
                    Err(e) => {
                        refused = refused.saturating_add(1);
                        tracing::warn!(error = %e, refused, "batch not stored; waiting for redelivery");
                        self.shared.store_failed(refused, e.to_string());
                        // A growing back-off: a full bucket or an oversized
                        // value does not heal at once.
                        let backoff = self.config.retry_backoff.max(Duration::from_millis(10))
                            * 2u32.saturating_pow(refused.min(8) - 1);
                        tokio::time::sleep(backoff.min(MAX_STORE_BACKOFF)).await;
                    }
                },
                Next::Live(false) => {
                    drop(live);
                    let Some(reopened) = self.open_live(lease, held, stop).await else {
                        return if *stop.borrow() {
                            Held::Stopped
                        } else {
                            Held::Lost
                        };
                    };
                    live = reopened;
                }
                Next::Request(message) => {
                    let action = message.subject.as_str().rsplit('.').next().unwrap_or("");
                    match action {
                        "replay-parked" => {
                            let summary = match live.replay_parked().await {
                                Ok(summary) => summary,
                                Err(e) => {
                                    let mut summary = control::ReplaySummary::default();
                                    summary.fail(e.to_string());
                                    summary
                                }
                            };
                            let resumes = halted && summary.all_done() && summary.waiting == 0;
                            if resumes {
                                self.shared.resuming();
                            }
                            self.reply(message.reply.as_ref(), &summary).await;
                            if resumes {
                                // Resume from the checkpoint, which now includes
                                // the event it stopped at.
                                drop(live);
                                let Some(reopened) = self.open_live(lease, held, stop).await else {
                                    return if *stop.borrow() {
                                        Held::Stopped
                                    } else {
                                        Held::Lost
                                    };
                                };
                                live = reopened;
                                halted = false;
                            }
                        }
                        "skip-parked" => {
                            let outcome = match serde_json::from_slice::<control::SkipRequest>(
                                &message.payload,
                            ) {
                                Ok(asked) => live
                                    .skip_parked(&asked.stream, asked.seq)
                                    .await
                                    .unwrap_or_else(|e| control::SkipOutcome::Refused {
                                        reason: e.to_string(),
                                    }),
                                Err(e) => control::SkipOutcome::Refused {
                                    reason: format!(
                                        "the request is not {{\"stream\":…,\"seq\":…}}: {e}"
                                    ),
                                },
                            };
                            let resumes = halted
                                && matches!(
                                    outcome,
                                    control::SkipOutcome::Skipped
                                        | control::SkipOutcome::AlreadyApplied
                                );
                            if resumes {
                                self.shared.resuming();
                            }
                            self.reply(message.reply.as_ref(), &outcome).await;
                            if resumes {
                                // Resume from the checkpoint, now past the
                                // event it stopped at.
                                drop(live);
                                let Some(reopened) = self.open_live(lease, held, stop).await else {
                                    return if *stop.borrow() {
                                        Held::Stopped
                                    } else {
                                        Held::Lost
                                    };
                                };
                                live = reopened;
                                halted = false;
                            }
                        }
                        "rebuild" => {
                            let refused = if rebuild.is_some() {
                                Some("a rebuild is already running".to_string())
                            } else if halted {
                                Some("the projection is halted at a parked event: replay-parked first".to_string())
                            } else {
                                None
                            };
                            match refused {
                                Some(reason) => {
                                    self.reply(
                                        message.reply.as_ref(),
                                        &RebuildUpdate::Failed { reason },
                                    )
                                    .await
                                }
                                None => match self
                                    .start_rebuild(live.generation() + 1, lease, message.reply)
                                    .await
                                {
                                    Ok(r) => rebuild = Some(r),
                                    Err((reply, e)) => {
                                        let reason = format!("the rebuild did not start: {e}");
                                        self.reply(
                                            reply.as_ref(),
                                            &RebuildUpdate::Failed { reason },
                                        )
                                        .await
                                    }
                                },
                            }
                        }
                        _ => {}
                    }
                }
                Next::Rebuild(ok) => {
                    let Some(mut r) = rebuild.take() else {
                        continue;
                    };
                    if !ok {
                        self.abandon(r, "its consumers stopped").await;
                        continue;
                    }
                    match r.projection.next_batch().await {
                        Ok(batch) => {
                            r.done += batch.applied() as u64;
                            let why = batch.halted().map(str::to_string);
                            let _ = batch.ack().await;
                            if let Some(why) = why {
                                self.abandon(r, &format!("halted: {why}")).await;
                                continue;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "rebuild batch not stored; waiting for redelivery");
                        }
                    }
                    rebuild = Some(r);
                }
                Next::Tick => {
                    let Some(mut r) = rebuild.take() else {
                        continue;
                    };
                    let outstanding = match r.projection.outstanding().await {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read the rebuild's consumers");
                            rebuild = Some(r);
                            continue;
                        }
                    };
                    r.total = r.total.max(r.done + outstanding);
                    let update = RebuildUpdate::Progress {
                        done: r.done,
                        total: r.total,
                        elapsed_ms: r.started.elapsed().as_millis() as u64,
                    };
                    self.reply(r.reply.as_ref(), &update).await;
                    if outstanding == 0
                        && position::reached(r.projection.positions(), live.positions())
                    {
                        live = self.switch(live, r).await;
                    } else {
                        rebuild = Some(r);
                    }
                }
            }
        }
    }

    pub(super) async fn reply<T: serde::Serialize>(&self, to: Option<&Subject>, body: &T) {
        let Some(to) = to else { return };
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                if let Err(e) = self.client.publish(to.clone(), bytes.into()).await {
                    tracing::warn!(error = %e, "control reply not sent");
                }
            }
            Err(e) => tracing::error!(error = %e, "control reply does not encode"),
        }
    }
}
