//! Group commit: concurrent commands on different aggregates of one stream
//! share an ADR-50 atomic batch.
//!
//! It exists for servers that sync every write (`sync_interval: always`):
//! JetStream stores and syncs an atomic batch as one unit, so one fsync
//! serves many commands. Each command keeps its own expected-sequence check
//! (on its first message) and gets its own sequences back. A batch is
//! atomic, so one command's conflict (or a duplicate message id, 10201,
//! which jetsource's own events, written without ids, never meet) fails
//! them all: then each command is appended again on its own, and only the
//! culprit fails. A lane sends at once whatever is queued when a batch
//! permit is free (one per batch in flight), so a lone command never waits
//! for company.
//!
//! Under JetStream's default flushing the same batches cost throughput, so
//! by default ([`GroupCommitMode::Auto`]) each stream's appends share
//! batches only while that measures faster than single publishes (see
//! `commit_mode.rs`); `On` and `Off` fix the choice.

use super::commit_mode::Chooser;
use super::errors::{AppendError, AppendErrorKind};
use super::publish::{Outgoing, Publisher};
use crate::error::Error;
use jetsource_schemas::settings::{self, InvalidSetting, SettingError};
use serde::de::Visitor;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Whether concurrent appends share atomic batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GroupCommitMode {
    /// Per stream, whichever measures faster on the server at hand: batches
    /// on one that syncs every write, single publishes under default
    /// flushing; probed again now and then, so a change of server is
    /// followed (the default).
    #[default]
    Auto,
    /// Always share batches (the fastest on a server that syncs every
    /// write, when it is known to).
    On,
    /// Never: every command is its own publish (or its own batch when it
    /// has several events).
    Off,
}

/// How concurrent appends share atomic batches.
///
/// Deserializes from the keys `group_commit`, `batch_max_messages`,
/// `batch_max_wait` and `batch_max_in_flight`: named so beside the other
/// command handling keys in one table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupCommitConfig {
    /// Whether they share batches (default [`GroupCommitMode::Auto`]). Key
    /// `group_commit`.
    #[serde(rename = "group_commit")]
    pub mode: GroupCommitMode,
    /// Messages in one batch at most (default 256; JetStream allows 1,000).
    /// Key `batch_max_messages`.
    #[serde(rename = "batch_max_messages")]
    pub max_messages: usize,
    /// How long a batch may wait for more commands while another batch of
    /// the same stream is in flight (default 0: send what is queued). Key
    /// `batch_max_wait`.
    #[serde(rename = "batch_max_wait", with = "settings::duration")]
    pub max_wait: Duration,
    /// Batches in flight per stream at once (default 4; JetStream allows 50).
    /// Key `batch_max_in_flight`.
    #[serde(rename = "batch_max_in_flight")]
    pub max_in_flight: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        GroupCommitConfig {
            mode: GroupCommitMode::Auto,
            max_messages: 256,
            max_wait: Duration::ZERO,
            max_in_flight: 4,
        }
    }
}

impl GroupCommitConfig {
    /// Checks the bounds JetStream puts on atomic batches; the error's kind
    /// names the first key out of them.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !(1..=1000).contains(&self.max_messages) {
            return Err(SettingError::new(
                InvalidSetting("batch_max_messages"),
                "must be 1 to 1000 (JetStream's limit per atomic batch)",
            ));
        }
        if !(1..=50).contains(&self.max_in_flight) {
            return Err(SettingError::new(
                InvalidSetting("batch_max_in_flight"),
                "must be 1 to 50 (JetStream's limit per stream)",
            ));
        }
        Ok(())
    }
}

/// `auto`, `on` or `off` (any case), or a boolean as older settings files
/// wrote it: `true` is `on`, `false` is `off`.
impl<'de> Deserialize<'de> for GroupCommitMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Mode;
        impl Visitor<'_> for Mode {
            type Value = GroupCommitMode;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("auto, on or off")
            }

            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Self::Value, E> {
                Ok(match on {
                    true => GroupCommitMode::On,
                    false => GroupCommitMode::Off,
                })
            }

            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<Self::Value, E> {
                match word.trim().to_ascii_lowercase().as_str() {
                    "auto" => Ok(GroupCommitMode::Auto),
                    "on" => Ok(GroupCommitMode::On),
                    "off" => Ok(GroupCommitMode::Off),
                    _ => Err(E::custom(format!("{word:?} is not auto, on or off"))),
                }
            }
        }
        deserializer.deserialize_any(Mode)
    }
}

/// What group commit has done so far.
#[derive(Debug, Default)]
pub struct GroupCommitStats {
    /// Batches shared by two or more commands.
    pub shared_batches: std::sync::atomic::AtomicU64,
    /// Commands that went out in a shared batch.
    pub shared_commands: std::sync::atomic::AtomicU64,
    /// Shared batches that failed on a conflict or a duplicate and were
    /// appended command by command instead.
    pub split_batches: std::sync::atomic::AtomicU64,
    /// Changes of the way a stream appends under [`GroupCommitMode::Auto`]
    /// (probes of the other way included).
    pub switches: std::sync::atomic::AtomicU64,
}

/// One command's messages, waiting in a lane, and where its sequences go.
struct PendingAppend {
    messages: Vec<Outgoing>,
    done: oneshot::Sender<Result<Vec<u64>, AppendError>>,
}

/// One stream's commit lane, and under `Auto` its way of appending.
#[derive(Clone)]
struct Lane {
    queue: mpsc::UnboundedSender<PendingAppend>,
    chooser: Arc<Chooser>,
}

/// The commit lanes, one per stream (keyed by aggregate type, which names
/// exactly one stream).
pub(crate) struct GroupCommit {
    config: GroupCommitConfig,
    lanes: Mutex<HashMap<String, Lane>>,
    stats: Arc<GroupCommitStats>,
}

impl GroupCommit {
    /// Group commit with `config`, not yet with any lane.
    pub(crate) fn new(config: GroupCommitConfig) -> Self {
        GroupCommit {
            config,
            lanes: Mutex::new(HashMap::new()),
            stats: Arc::default(),
        }
    }

    /// Its settings.
    pub(crate) fn config(&self) -> &GroupCommitConfig {
        &self.config
    }

    /// What it has done so far.
    pub(crate) fn stats(&self) -> Arc<GroupCommitStats> {
        self.stats.clone()
    }

    /// Appends one command's messages to the stream of `aggregate_type`:
    /// through the stream's lane (started with `publisher` when there is
    /// none), or under `Auto` alone while that measures faster; returns
    /// their sequences.
    pub(crate) async fn append(
        &self,
        aggregate_type: &str,
        messages: Vec<Outgoing>,
        publisher: &Publisher,
    ) -> Result<Vec<u64>, AppendError> {
        let lane = self.lane(aggregate_type, publisher);
        if self.config.mode != GroupCommitMode::Auto {
            return enqueue(&lane.queue, messages).await;
        }
        let was_batching = lane.chooser.batching();
        let result = match lane.chooser.start() {
            true => enqueue(&lane.queue, messages).await,
            false => publisher.direct(messages).await,
        };
        lane.chooser.finished(std::time::Instant::now());
        let batching = lane.chooser.batching();
        if batching != was_batching {
            self.stats
                .switches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::metrics::global().commit_mode(batching);
        }
        result
    }

    /// Whether `aggregate_type`'s appends share batches now (`None`: none
    /// has been appended yet).
    pub(crate) fn batching(&self, aggregate_type: &str) -> Option<bool> {
        let lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .get(aggregate_type)
            .map(|lane| match self.config.mode {
                GroupCommitMode::Auto => lane.chooser.batching(),
                mode => mode == GroupCommitMode::On,
            })
    }

    /// The lane of `aggregate_type`'s stream, started when there is none
    /// (or it ended). A lane publishes with its own publisher, so it holds
    /// no reference back to the lanes.
    fn lane(&self, aggregate_type: &str, publisher: &Publisher) -> Lane {
        // Only map operations run under the lock, and none panics midway:
        // a poisoned map is still consistent.
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lane) = lanes.get(aggregate_type).filter(|l| !l.queue.is_closed()) {
            return lane.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_lane(
            publisher.clone(),
            self.config.clone(),
            self.stats.clone(),
            rx,
        ));
        let lane = Lane {
            queue: tx,
            chooser: Arc::new(Chooser::new(std::time::Instant::now())),
        };
        lanes.insert(aggregate_type.to_string(), lane.clone());
        lane
    }
}

/// Queues `messages` on a lane and waits for their sequences.
async fn enqueue(
    lane: &mpsc::UnboundedSender<PendingAppend>,
    messages: Vec<Outgoing>,
) -> Result<Vec<u64>, AppendError> {
    let (done, result) = oneshot::channel();
    if lane.send(PendingAppend { messages, done }).is_err() {
        return Err(Error::new(
            AppendErrorKind::Unavailable,
            "the commit lane stopped",
        ));
    }
    result.await.unwrap_or_else(|_| {
        Err(Error::new(
            AppendErrorKind::Unavailable,
            "the commit lane stopped",
        ))
    })
}

/// Takes queued appends into batches while a batch permit is free. Ends when
/// every sender (the store) is gone.
async fn run_lane(
    publisher: Publisher,
    config: GroupCommitConfig,
    stats: Arc<GroupCommitStats>,
    mut queue: mpsc::UnboundedReceiver<PendingAppend>,
) {
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let max_messages = config.max_messages.clamp(1, 1000);
    let mut carried: Option<PendingAppend> = None;
    loop {
        let first = match carried.take() {
            Some(append) => append,
            None => match queue.recv().await {
                Some(append) => append,
                None => return,
            },
        };
        // Wait for a batch permit first: commands arriving meanwhile queue
        // up and go out together.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let busy = permits.available_permits() + 1 < config.max_in_flight.max(1);
        let mut size = first.messages.len();
        let mut appends = vec![first];
        let deadline = tokio::time::Instant::now() + config.max_wait;
        while size < max_messages {
            let next = match queue.try_recv() {
                Ok(append) => Some(append),
                Err(_) if busy && !config.max_wait.is_zero() => {
                    tokio::time::timeout_at(deadline, queue.recv())
                        .await
                        .unwrap_or_default()
                }
                Err(_) => None,
            };
            let Some(append) = next else { break };
            if size + append.messages.len() > max_messages {
                carried = Some(append);
                break;
            }
            size += append.messages.len();
            appends.push(append);
        }
        crate::metrics::global().batch(appends.len());
        if appends.len() > 1 {
            use std::sync::atomic::Ordering::Relaxed;
            stats.shared_batches.fetch_add(1, Relaxed);
            stats
                .shared_commands
                .fetch_add(appends.len() as u64, Relaxed);
        }
        let publisher = publisher.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            commit(&publisher, appends, &stats).await;
            drop(permit);
        });
    }
}

/// Commits several commands' messages in one batch; on a conflict or a
/// duplicate, each command again on its own.
async fn commit(publisher: &Publisher, appends: Vec<PendingAppend>, stats: &GroupCommitStats) {
    if let [_] = appends.as_slice() {
        if let Some(append) = appends.into_iter().next() {
            let result = publisher.direct(append.messages).await;
            let _ = append.done.send(result);
        }
        return;
    }
    let result = publisher
        .batch(
            appends
                .iter()
                .flat_map(|append| append.messages.iter())
                .collect::<Vec<_>>()
                .into_iter(),
            false,
        )
        .await;
    match result {
        Ok(seqs) => {
            let mut seqs = seqs.into_iter();
            for append in appends {
                let mine: Vec<u64> = seqs.by_ref().take(append.messages.len()).collect();
                let _ = append.done.send(Ok(mine));
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                AppendErrorKind::Conflict | AppendErrorKind::Duplicate
            ) =>
        {
            tracing::debug!(error = %e, commands = appends.len(), "shared batch failed; appending each command alone");
            stats
                .split_batches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::metrics::global().batch_split();
            let alone = appends.into_iter().map(|append| async move {
                let result = publisher.direct(append.messages).await;
                let _ = append.done.send(result);
            });
            futures::future::join_all(alone).await;
        }
        Err(e) => {
            // Every command sharing the batch gets the batch's failure, as
            // the source of its own.
            let shared = Arc::new(e);
            for append in appends {
                let own = Error::with_source(shared.kind(), shared.clone());
                let _ = append.done.send(Err(own));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(json: &str) -> Result<GroupCommitMode, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn the_mode_reads_as_a_word_or_a_switch() {
        assert_eq!(mode(r#""auto""#), Ok(GroupCommitMode::Auto));
        assert_eq!(mode(r#"" On ""#), Ok(GroupCommitMode::On));
        assert_eq!(mode(r#""OFF""#), Ok(GroupCommitMode::Off));
        assert_eq!(mode("true"), Ok(GroupCommitMode::On));
        assert_eq!(mode("false"), Ok(GroupCommitMode::Off));
        let e = mode(r#""sometimes""#).expect_err("not a mode");
        assert!(e.contains("is not auto, on or off"), "{e}");
        assert!(mode("1").is_err());
    }

    #[test]
    fn batches_stay_within_what_jetstream_allows() {
        assert!(GroupCommitConfig::default().validate().is_ok());
        for (max_messages, max_in_flight, key) in [
            (0, 4, "batch_max_messages"),
            (1001, 4, "batch_max_messages"),
            (256, 0, "batch_max_in_flight"),
            (256, 51, "batch_max_in_flight"),
        ] {
            let config = GroupCommitConfig {
                max_messages,
                max_in_flight,
                ..GroupCommitConfig::default()
            };
            let e = config.validate().expect_err("out of range");
            assert_eq!(
                e.kind(),
                InvalidSetting(key),
                "{max_messages} {max_in_flight}"
            );
        }
    }
}
