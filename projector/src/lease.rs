//! One active instance per persisted projection: a lease in the control
//! bucket (key `<name>.lease`), taken and renewed by compare-and-set on the
//! key's revision.
//!
//! No clocks are compared between machines: a standby notes when it first
//! saw the lease's current revision, by its own clock, and takes the lease
//! (a compare-and-set on that revision) only once the revision has stood
//! still for the lease's TTL. The holder renews every third of the TTL.
//! On taking the lease an instance rewrites its projection's checkpoint (a
//! compare-and-set too), so a former holder that has not noticed its loss
//! fails its next write: the checkpoint's revision moved under it.

use crate::error::{ProjectionError, ProjectionErrorKind};
use async_nats::jetstream::kv;
use jetsource_schemas::error::Error;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The lease key of projection `name` in the control bucket.
pub fn lease_key(name: &str) -> String {
    format!("{name}.lease")
}

/// The lease's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    /// Who holds it.
    pub holder: String,
    /// How long it lasts unrenewed, in milliseconds.
    pub ttl_ms: u64,
}

/// What a standby remembers between looks at the lease.
#[derive(Debug, Default)]
pub struct Watcher {
    seen: Option<(u64, Instant)>,
}

/// The task renewing a lease; dropping it stops the renewals.
#[derive(Debug)]
pub struct Renewer(tokio::task::JoinHandle<()>);

impl Drop for Renewer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    kv: kv::Store,
    key: String,
    value: bytes::Bytes,
    ttl: Duration,
    /// The revision it was taken at: the holder's fencing token.
    taken_at: u64,
    revision: Arc<AtomicU64>,
}

fn store_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> ProjectionError {
    Error::with_source(ProjectionErrorKind::Store, e)
}

impl Lease {
    /// One attempt to take the lease of `name` for `holder`: taken when it
    /// is free, released, or unrenewed for its TTL since `watcher` first saw
    /// its current revision.
    pub async fn try_acquire(
        control: &kv::Store,
        name: &str,
        holder: &str,
        ttl: Duration,
        watcher: &mut Watcher,
    ) -> Result<Option<Lease>, ProjectionError> {
        let key = lease_key(name);
        let value: bytes::Bytes = serde_json::to_vec(&LeaseValue {
            holder: holder.to_string(),
            ttl_ms: ttl.as_millis() as u64,
        })
        .map_err(store_error)?
        .into();
        let entry = control.entry(key.as_str()).await.map_err(store_error)?;
        let expected = match entry {
            None => 0,
            Some(entry) if entry.operation != kv::Operation::Put => entry.revision,
            Some(entry) => {
                let their_ttl = serde_json::from_slice::<LeaseValue>(&entry.value)
                    .map(|v| Duration::from_millis(v.ttl_ms))
                    .unwrap_or(ttl);
                match watcher.seen {
                    Some((revision, since)) if revision == entry.revision => {
                        if since.elapsed() < their_ttl {
                            return Ok(None);
                        }
                    }
                    _ => {
                        watcher.seen = Some((entry.revision, Instant::now()));
                        return Ok(None);
                    }
                }
                entry.revision
            }
        };
        match control.update(key.as_str(), value.clone(), expected).await {
            Ok(revision) => {
                tracing::info!(projector = name, holder, revision, "lease taken");
                Ok(Some(Lease {
                    kv: control.clone(),
                    key,
                    value,
                    ttl,
                    taken_at: revision,
                    revision: Arc::new(AtomicU64::new(revision)),
                }))
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                watcher.seen = None;
                Ok(None)
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// The revision it was taken at (written into the projection's checkpoint).
    pub fn token(&self) -> u64 {
        self.taken_at
    }

    /// Renews it once: refused (kind `Conflict`) when another instance
    /// took it.
    pub async fn renew(&self) -> Result<(), ProjectionError> {
        let current = self.revision.load(Ordering::SeqCst);
        match self
            .kv
            .update(self.key.as_str(), self.value.clone(), current)
            .await
        {
            Ok(revision) => {
                self.revision.store(revision, Ordering::SeqCst);
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(Error::with_source(ProjectionErrorKind::Conflict, e))
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Renews it every third of its TTL in a task, until the returned
    /// [`Renewer`] is dropped (so a crashed driver stops renewing with it);
    /// the watch turns false once it is lost (taken by another, or not
    /// renewed within the TTL).
    pub fn keep(&self) -> (watch::Receiver<bool>, Renewer) {
        let (held, rx) = watch::channel(true);
        let lease = Lease {
            kv: self.kv.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
            ttl: self.ttl,
            taken_at: self.taken_at,
            revision: self.revision.clone(),
        };
        let task = tokio::spawn(async move {
            // Valid until the TTL after the last renewal that was *sent*:
            // a standby's TTL runs from when it saw that renewal, later.
            let mut valid_until = Instant::now() + lease.ttl;
            loop {
                let sleep =
                    (lease.ttl / 3).min(valid_until.saturating_duration_since(Instant::now()));
                tokio::time::sleep(sleep).await;
                if Instant::now() >= valid_until {
                    tracing::warn!(key = %lease.key, "lease not renewed within its TTL; stepping down");
                    let _ = held.send(false);
                    return;
                }
                let sent = Instant::now();
                match lease.renew().await {
                    Ok(()) => valid_until = sent + lease.ttl,
                    Err(e) if e.kind() == ProjectionErrorKind::Conflict => {
                        tracing::warn!(key = %lease.key, "lease taken by another instance; stepping down");
                        let _ = held.send(false);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(key = %lease.key, error = %e, "lease renewal failed; retrying")
                    }
                }
            }
        });
        (rx, Renewer(task))
    }

    /// Gives it up, so a standby takes over at once.
    pub async fn release(self) {
        let current = self.revision.load(Ordering::SeqCst);
        if let Err(e) = self
            .kv
            .delete_expect_revision(self.key.as_str(), Some(current))
            .await
        {
            tracing::warn!(key = %self.key, error = %e, "lease not released; it expires");
        }
    }
}
