//! The in-memory halves of feedback: rejections (the error cache, a `moka`
//! cache) and recently accepted commands (two generations of maps), each
//! bounded by a time to live and by weight in bytes.
//!
//! Eviction is LRU rather than moka's default TinyLFU admission: a new
//! rejection is always admitted (a client asks for its latest errors), and
//! the oldest give way.

use jetsource_schemas::feedback::{AcceptedStatus, RejectionNotice};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use std::collections::hash_map::{Entry, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
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
                    // The details as their JSON would take (the value
                    // itself takes more, in a bound of the same order).
                    n.details.as_ref().map_or(0, |d| d.to_string().len()),
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

    /// The aggregate's rejections held here, newest first, after `after`
    /// (a page's last one), at most `limit`.
    ///
    /// A scan: lists are rare diagnostic queries, and a scan needs no second
    /// structure that would have to be bounded and expired as well.
    pub fn list(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Vec<RejectionNotice> {
        let found = self
            .cache
            .iter()
            .filter(|(_, n)| n.aggregate_type == aggregate_type && n.aggregate_id == aggregate_id)
            .filter(|(_, n)| after.is_none_or(|c| c.precedes(n)))
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

fn at(notice: &RejectionNotice) -> OffsetDateTime {
    OffsetDateTime::parse(&notice.at, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Where a page of `errors.list` ended: its last rejection's time and
/// command id, the list's order (newest first, then by command id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    at: OffsetDateTime,
    command_id: String,
}

impl Cursor {
    /// The cursor after `notice`.
    pub fn after(notice: &RejectionNotice) -> Self {
        Cursor {
            at: at(notice),
            command_id: notice.command_id.clone(),
        }
    }

    /// Reads a cursor as [`Cursor::encode`] writes it.
    pub fn parse(text: &str) -> Option<Self> {
        let (when, command_id) = text.rsplit_once('/')?;
        jetsource_schemas::token::validate("command id", command_id).ok()?;
        Some(Cursor {
            at: OffsetDateTime::parse(when, &Rfc3339).ok()?,
            command_id: command_id.to_string(),
        })
    }

    /// `<at>/<command id>`: opaque to clients.
    pub fn encode(&self) -> String {
        let when = self.at.format(&Rfc3339).unwrap_or_default();
        format!("{when}/{}", self.command_id)
    }

    /// True when `notice` comes after this cursor in the list's order.
    fn precedes(&self, notice: &RejectionNotice) -> bool {
        let when = at(notice);
        when < self.at || (when == self.at && notice.command_id > self.command_id)
    }
}

/// Sorts rejections newest first (by `at`), drops duplicates by command id
/// and keeps `limit`.
pub fn newest_first(mut notices: Vec<RejectionNotice>, limit: usize) -> Vec<RejectionNotice> {
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
///
/// Not moka: this insert runs on every accepted command's path in a process
/// with the feedback role, and moka's (its bookkeeping, eviction policy and
/// weigher) cost 6 to 11 µs of CPU per command in `jetsource bench`, a
/// sixth of the accepted path's throughput. Two generations of plain maps
/// behind one lock cost a hash and an insert: a generation takes inserts
/// until it is `ttl / 2` old or holds half the capacity, then becomes the
/// previous one, and the previous one is dropped whole. So an outcome is
/// kept for between `ttl / 2` and `ttl` (less when the capacity runs out
/// first), and the two hold at most `capacity` bytes by `ENTRY_OVERHEAD`'s
/// estimate.
#[derive(Clone)]
pub struct AcceptedCache {
    inner: Arc<Mutex<Generations>>,
    ttl: Duration,
    capacity: u64,
}

struct Generations {
    current: Generation,
    previous: Generation,
}

struct Generation {
    started: Instant,
    bytes: u64,
    by_id: HashMap<Box<str>, AcceptedStatus>,
}

impl Generation {
    fn new(started: Instant) -> Self {
        Generation {
            started,
            bytes: 0,
            by_id: HashMap::new(),
        }
    }
}

/// Adds `status`'s aggregates to `held` (both of one command id).
fn merge_status(held: &mut AcceptedStatus, status: AcceptedStatus) {
    for part in status.parts() {
        held.merge(part);
    }
}

/// Generations taken out of use.
type Retired = [Option<Generation>; 2];

/// Drops retired generations off the command path: tens of thousands of
/// entries take milliseconds to free, which a command would wait for.
fn dispose(retired: Retired) {
    if retired.iter().flatten().all(|g| g.by_id.is_empty()) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(retired))),
        Err(_) => drop(retired),
    }
}

impl AcceptedCache {
    /// A cache keeping each outcome for `ttl` (see above), at most
    /// `capacity` bytes.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let now = Instant::now();
        AcceptedCache {
            inner: Arc::new(Mutex::new(Generations {
                current: Generation::new(now),
                previous: Generation::new(now),
            })),
            ttl,
            capacity,
        }
    }

    fn generations(&self) -> MutexGuard<'_, Generations> {
        // Nothing panics while the lock is held; a poisoned cache is intact.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Retires what is due at `now`, making room for `incoming` bytes;
    /// returns what was retired, for the caller to drop once unlocked.
    #[must_use]
    fn retire(&self, generations: &mut Generations, now: Instant, incoming: u64) -> Retired {
        let age = now.saturating_duration_since(generations.current.started);
        if age >= self.ttl {
            // Nothing inserted for a whole ttl: both generations are stale.
            [
                Some(std::mem::replace(
                    &mut generations.current,
                    Generation::new(now),
                )),
                Some(std::mem::replace(
                    &mut generations.previous,
                    Generation::new(now),
                )),
            ]
        } else if age >= self.ttl / 2 || generations.current.bytes + incoming > self.capacity / 2 {
            let current = std::mem::replace(&mut generations.current, Generation::new(now));
            [
                Some(std::mem::replace(&mut generations.previous, current)),
                None,
            ]
        } else {
            [None, None]
        }
    }

    /// Keeps `status`; merged with what is held for its command id when
    /// that id was accepted on another aggregate too.
    pub fn insert(&self, status: AcceptedStatus) {
        self.insert_at(status, Instant::now());
    }

    fn insert_at(&self, status: AcceptedStatus, now: Instant) {
        let events: usize = status
            .events
            .iter()
            .map(|e| e.event_type.len() + e.stream.len() + 8)
            .sum();
        let id = &status.command_id;
        let bytes = u64::from(weight(
            &[id, id, &status.aggregate_type, &status.aggregate_id],
            events,
        ));
        let mut generations = self.generations();
        let retired = self.retire(&mut generations, now, bytes);
        let Generations { current, previous } = &mut *generations;
        current.bytes += bytes;
        match current.by_id.entry(status.command_id.as_str().into()) {
            // A resend (same aggregate) changes nothing; the same id on
            // another aggregate is listed beside it, never mixed into it.
            Entry::Occupied(mut held) => merge_status(held.get_mut(), status),
            Entry::Vacant(vacant) => match previous.by_id.get(status.command_id.as_str()) {
                Some(older) => {
                    let mut merged = older.clone();
                    merge_status(&mut merged, status);
                    vacant.insert(merged);
                }
                None => {
                    vacant.insert(status);
                }
            },
        }
        drop(generations);
        dispose(retired);
    }

    /// The accepted command `command_id`, if held (the current generation's
    /// entry holds what the previous one knew of it).
    pub fn get(&self, command_id: &str) -> Option<AcceptedStatus> {
        self.get_at(command_id, Instant::now())
    }

    fn get_at(&self, command_id: &str, now: Instant) -> Option<AcceptedStatus> {
        let mut generations = self.generations();
        let retired = self.retire(&mut generations, now, 0);
        let found = generations
            .current
            .by_id
            .get(command_id)
            .or_else(|| generations.previous.by_id.get(command_id))
            .cloned();
        drop(generations);
        dispose(retired);
        found
    }

    /// The estimated bytes held.
    pub fn weighted_size(&self) -> u64 {
        let generations = self.generations();
        generations.current.bytes + generations.previous.bytes
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
            details: None,
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

    fn status(id: &str) -> AcceptedStatus {
        on(id, "p1", 1)
    }

    /// `id` accepted on blog post `aggregate` with one event at `seq`.
    fn on(id: &str, aggregate: &str, seq: u64) -> AcceptedStatus {
        AcceptedStatus::new(
            id,
            jetsource_schemas::feedback::AggregateEvents {
                aggregate_type: "blogpost".into(),
                aggregate_id: aggregate.into(),
                events: vec![jetsource_schemas::EventRef {
                    event_type: "BlogPostCreated".into(),
                    stream: "EVT_BLOGPOST".into(),
                    seq,
                    aggregate_id: None,
                }],
            },
        )
    }

    #[test]
    fn one_id_on_two_aggregates_is_held_as_two_never_mixed() {
        let cache = AcceptedCache::new(Duration::from_secs(60), 1 << 20);
        cache.insert(on("X", "p-A", 13));
        cache.insert(on("X", "p-B", 14));
        // A resend of the first is answered as before.
        cache.insert(on("X", "p-A", 13));
        let held = cache.get("X").expect("held");
        assert_eq!((held.aggregate_id.as_str(), held.events.len()), ("p-A", 1));
        assert_eq!(held.events[0].seq, 13);
        assert_eq!(held.others.len(), 1);
        assert_eq!(
            (
                held.others[0].aggregate_id.as_str(),
                held.others[0].events[0].seq
            ),
            ("p-B", 14)
        );
    }

    #[test]
    fn an_accepted_outcome_is_kept_for_half_the_ttl_to_the_ttl() {
        let ttl = Duration::from_secs(60);
        let cache = AcceptedCache::new(ttl, 1 << 20);
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        cache.insert_at(status("a"), at(0));
        assert!(cache.get_at("a", at(29)).is_some());
        // Half the ttl on, the next insert starts a generation; `a` is in
        // the previous one until that is half the ttl old too.
        cache.insert_at(status("b"), at(31));
        assert!(cache.get_at("a", at(45)).is_some());
        assert!(cache.get_at("b", at(45)).is_some());
        cache.insert_at(status("c"), at(62));
        assert!(cache.get_at("a", at(62)).is_none(), "retired whole");
        assert!(cache.get_at("b", at(62)).is_some());
        // Nothing for a whole ttl: nothing is kept.
        assert!(cache.get_at("c", at(62 + 61)).is_none());
        assert!(cache.get_at("b", at(62 + 61)).is_none());
    }

    #[test]
    fn accepted_outcomes_stay_within_the_capacity() {
        let cache = AcceptedCache::new(Duration::from_secs(60), 4096);
        for i in 0..1000 {
            cache.insert(status(&format!("c{i}")));
        }
        assert!(cache.weighted_size() <= 4096, "{}", cache.weighted_size());
        assert!(cache.get("c999").is_some(), "the newest is kept");
        assert!(cache.get("c0").is_none(), "the oldest gave way");
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
