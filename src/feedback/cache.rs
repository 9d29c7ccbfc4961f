//! The in-memory halves of feedback: rejections (the error cache) and
//! recently accepted commands, each a `moka` cache bounded by a time to live
//! and by weight in bytes.
//!
//! Eviction is LRU rather than moka's default TinyLFU admission: a new
//! rejection is always admitted (a client asks for its latest errors), and
//! the oldest give way.

use jetsource_schemas::feedback::{AcceptedStatus, RejectionNotice};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Bytes charged per entry beyond its strings: moka's bookkeeping, the
/// key's and value's headers. An estimate; it only has to be in proportion.
const ENTRY_OVERHEAD: usize = 160;

fn weight(parts: &[&str], extra: usize) -> u32 {
    let bytes = parts.iter().map(|s| s.len()).sum::<usize>() + extra + ENTRY_OVERHEAD;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// Rejections by command id.
#[derive(Clone)]
pub struct ErrorCache {
    cache: Cache<String, Arc<RejectionNotice>>,
    capacity: u64,
}

impl ErrorCache {
    /// A cache keeping each rejection for `ttl`, at most `capacity` bytes.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|key: &String, n: &Arc<RejectionNotice>| {
                weight(
                    &[
                        key,
                        &n.command_id,
                        &n.aggregate_type,
                        &n.aggregate_id,
                        &n.command,
                        &n.reason,
                        &n.at,
                    ],
                    0,
                )
            })
            .build();
        ErrorCache { cache, capacity }
    }

    /// Keeps `notice` (a newer notice for the same id replaces it).
    pub fn insert(&self, notice: RejectionNotice) {
        self.cache
            .insert(notice.command_id.clone(), Arc::new(notice));
    }

    /// The rejection of `command_id`, unless unknown or expired.
    pub fn get(&self, command_id: &str) -> Option<RejectionNotice> {
        self.cache.get(command_id).map(|n| (*n).clone())
    }

    /// The aggregate's rejections held here, newest first, at most `limit`.
    ///
    /// A scan: lists are rare diagnostic queries, and a scan needs no second
    /// structure that would have to be bounded and expired as well.
    pub fn list(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        limit: usize,
    ) -> Vec<RejectionNotice> {
        let found = self
            .cache
            .iter()
            .filter(|(_, n)| n.aggregate_type == aggregate_type && n.aggregate_id == aggregate_id)
            .map(|(_, n)| (*n).clone())
            .collect();
        newest_first(found, limit)
    }

    /// The configured bound in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The weight held, in bytes (exact after [`Self::run_pending_tasks`]).
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Entries held (exact after [`Self::run_pending_tasks`]).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Applies pending evictions and expirations now.
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

/// Sorts rejections newest first (by `at`), drops duplicates by command id
/// and keeps `limit`.
pub fn newest_first(mut notices: Vec<RejectionNotice>, limit: usize) -> Vec<RejectionNotice> {
    let at = |n: &RejectionNotice| {
        OffsetDateTime::parse(&n.at, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    notices.sort_by(|a, b| {
        at(b)
            .cmp(&at(a))
            .then_with(|| a.command_id.cmp(&b.command_id))
    });
    let mut seen = std::collections::HashSet::new();
    notices.retain(|n| seen.insert(n.command_id.clone()));
    notices.truncate(limit);
    notices
}

/// The current time as RFC 3339 UTC, the `at` of notices.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Recently accepted commands by id: answers `status` before the durable
/// command index has caught up.
#[derive(Clone)]
pub struct AcceptedCache {
    cache: Cache<String, Arc<AcceptedStatus>>,
}

impl AcceptedCache {
    /// A cache keeping each outcome for `ttl`, at most `capacity` bytes.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|key: &String, a: &Arc<AcceptedStatus>| {
                let events: usize = a
                    .events
                    .iter()
                    .map(|e| e.event_type.len() + e.stream.len() + 8)
                    .sum();
                weight(
                    &[key, &a.command_id, &a.aggregate_type, &a.aggregate_id],
                    events,
                )
            })
            .build();
        AcceptedCache { cache }
    }

    /// Keeps `status`.
    pub fn insert(&self, status: AcceptedStatus) {
        self.cache
            .insert(status.command_id.clone(), Arc::new(status));
    }

    /// The accepted command `command_id`, if held.
    pub fn get(&self, command_id: &str) -> Option<AcceptedStatus> {
        self.cache.get(command_id).map(|a| (*a).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource_schemas::RejectionCode;

    fn notice(id: &str, at: &str) -> RejectionNotice {
        RejectionNotice {
            command_id: id.into(),
            aggregate_type: "blogpost".into(),
            aggregate_id: "p1".into(),
            command: "create".into(),
            code: RejectionCode::Validation,
            reason: "no".into(),
            at: at.into(),
        }
    }

    #[test]
    fn lists_newest_first_without_duplicates() {
        let list = newest_first(
            vec![
                notice("a", "2025-01-01T00:00:01Z"),
                notice("b", "2025-01-01T00:00:03Z"),
                notice("a", "2025-01-01T00:00:01Z"),
                notice("c", "2025-01-01T00:00:02.5Z"),
            ],
            2,
        );
        let ids: Vec<_> = list.iter().map(|n| n.command_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn weight_is_bounded_by_capacity() {
        let cache = ErrorCache::new(Duration::from_secs(60), 4096);
        for i in 0..1000 {
            cache.insert(notice(&format!("c{i}"), &now_rfc3339()));
        }
        cache.run_pending_tasks();
        assert!(cache.weighted_size() <= 4096, "{}", cache.weighted_size());
        assert!(cache.entry_count() > 0);
        assert!(cache.get("c999").is_some(), "the newest is admitted");
    }
}
