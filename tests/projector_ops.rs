//! Operating persisted projections against real nats-servers: blue-green
//! rebuilds under query load, parked poison events (skip and stop), replay
//! of parked events, and one active instance across processes.

mod common;

use common::*;
use jetsource::handlers::store::{EventStore, NewEvent};
use jetsource::projector::control::{self, RebuildUpdate, CONTROL_BUCKET};
use jetsource::projector::lease::{Lease, Watcher};
use jetsource::projector::parked;
use jetsource::projector::persisted::{
    bucket_name, Checkpoint, PersistedProjection, CHECKPOINT_KEY,
};
use jetsource::projector::{
    Event, OnPoison, PersistedProjector, Phase, PoisonPolicy, ProjectionErrorKind, Projector,
    ProjectorConfig, ProjectorError, ProjectorErrorKind, ProjectorRuntime, Query, QueryError,
};
use jetsource::schemas::Namespace;
use jetsource::RuntimeConfig;
use jetsource_reference::blog::BlogPostEvent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---- the test projector -----------------------------------------------------

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct CountState {
    total: u64,
    per_id: BTreeMap<String, u64>,
}

/// What the test observes from outside the model, shared by every instance
/// a factory builds.
#[derive(Default)]
struct Probe {
    /// Successful applies, by stream sequence (repeats show double applies).
    applied: Mutex<Vec<u64>>,
    /// Failed applies.
    failures: AtomicU64,
    /// Side effects run.
    effects: AtomicU64,
    /// While set, events of this aggregate id fail to apply.
    fail_on: Mutex<Option<String>>,
}

#[derive(Clone)]
struct Counter {
    state: CountState,
    probe: Arc<Probe>,
    on_poison: Option<OnPoison>,
}

impl Counter {
    fn new(probe: &Arc<Probe>) -> Self {
        Counter {
            state: CountState::default(),
            probe: probe.clone(),
            on_poison: None,
        }
    }
}

impl Projector for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }
    fn subjects(&self) -> Vec<String> {
        vec!["evt.blogpost.>".into()]
    }
    fn apply(&mut self, event: &Event) -> Result<(), ProjectorError> {
        if self.probe.fail_on.lock().expect("lock").as_deref() == Some(&event.aggregate_id) {
            self.probe.failures.fetch_add(1, Ordering::SeqCst);
            return Err(ProjectorError::new(
                ProjectorErrorKind::Invalid,
                format!("refused {}", event.aggregate_id),
            ));
        }
        self.state.total += 1;
        *self
            .state
            .per_id
            .entry(event.aggregate_id.clone())
            .or_default() += 1;
        self.probe.applied.lock().expect("lock").push(event.seq);
        Ok(())
    }
    fn side_effects(&self, _event: &Event) {
        self.probe.effects.fetch_add(1, Ordering::SeqCst);
    }
    fn query(&self, _query: &Query) -> Result<serde_json::Value, QueryError> {
        Ok(serde_json::json!({ "total": self.state.total }))
    }
}

impl PersistedProjector for Counter {
    type State = CountState;
    fn state(&self) -> &CountState {
        &self.state
    }
    fn restore(&mut self, state: CountState) {
        self.state = state;
    }
    fn poison_policy(&self, default: PoisonPolicy) -> PoisonPolicy {
        PoisonPolicy {
            on_poison: self.on_poison.unwrap_or(default.on_poison),
            ..default
        }
    }
}

// ---- helpers ----------------------------------------------------------------

/// A server, and the command runtime for blog posts on it.
async fn fixture() -> (NatsServer, Jetsource) {
    fixture_in(&Namespace::default()).await
}

/// A fixture whose blog posts live under `namespace`'s subject prefix.
async fn fixture_in(namespace: &Namespace) -> (NatsServer, Jetsource) {
    let server = NatsServer::new();
    let config = RuntimeConfig {
        namespace: namespace.clone(),
        ..RuntimeConfig::default()
    };
    let runtime = Jetsource::start_with(&server.client_url(), config).await;
    (server, runtime)
}

/// Appends `per_post` events to each of `posts` posts named `<prefix><i>`,
/// one post after the other; returns the last sequence.
async fn write_posts(store: &EventStore, prefix: &str, posts: usize, per_post: usize) -> u64 {
    let mut last_seq = 0;
    for i in 0..posts {
        let id = format!("{prefix}{i}");
        let mut events = vec![BlogPostEvent::BlogPostCreated {
            title: id.clone(),
            body: "b".into(),
            author: "unknown".into(),
        }];
        for n in 1..per_post {
            events.push(BlogPostEvent::BlogPostTitleChanged {
                new_title: format!("{id} t{n}"),
            });
        }
        let events: Vec<NewEvent> = events.iter().map(encoded).collect();
        let seqs = store
            .append("blogpost", &id, 0, &events, &meta(&format!("{id}-c")))
            .await
            .expect("append");
        last_seq = *seqs.last().expect("appended");
    }
    last_seq
}

fn config() -> ProjectorConfig {
    ProjectorConfig {
        batch: 8,
        ack_wait: Duration::from_secs(2),
        retry_backoff: Duration::from_millis(10),
        // Short, so takeovers are quick; long enough that a loaded machine
        // renews in time (at 600 ms, a renewal late under load made the
        // holder step down for a moment).
        lease_ttl: Duration::from_secs(2),
        ..ProjectorConfig::default()
    }
}

async fn start(
    client: &async_nats::Client,
    config: ProjectorConfig,
    make: impl Fn() -> Counter + Send + Sync + 'static,
) -> Projectors {
    Projectors::start(
        ProjectorRuntime::builder(client.clone())
            .config(config)
            .persisted_with(make),
    )
    .await
}

async fn wait_applied(running: &Projectors, seq: u64) {
    running.wait_applied("counter", "EVT_BLOGPOST", seq).await;
}

async fn control_kv(client: &async_nats::Client) -> async_nats::jetstream::kv::Store {
    async_nats::jetstream::new(client.clone())
        .get_key_value(CONTROL_BUCKET)
        .await
        .expect("control bucket")
}

async fn read_record(client: &async_nats::Client) -> Checkpoint<CountState> {
    let js = async_nats::jetstream::new(client.clone());
    let generation = control::active_generation(&control_kv(client).await, "counter")
        .await
        .expect("pointer");
    let kv = js
        .get_key_value(control::generation_bucket("counter", generation))
        .await
        .expect("bucket");
    let value = kv
        .get(CHECKPOINT_KEY)
        .await
        .expect("get")
        .expect("a record");
    serde_json::from_slice(&value).expect("a record")
}

/// Waits until the stored record has applied `seq`.
async fn wait_stored(client: &async_nats::Client, seq: u64) -> Checkpoint<CountState> {
    eventually(format!("#{seq} stored"), HANG, || async move {
        let record = read_record(client).await;
        (record.positions.get("EVT_BLOGPOST").copied().unwrap_or(0) >= seq).then_some(record)
    })
    .await
}

async fn total(client: &async_nats::Client, after: Option<u64>) -> (u64, u64) {
    let mut request = async_nats::Request::new().timeout(Some(Duration::from_secs(10)));
    if let Some(after) = after {
        let mut h = async_nats::HeaderMap::new();
        h.insert("After-Seq", after.to_string().as_str());
        request = request.headers(h);
    }
    let reply = client
        .send_request("query.counter.total".to_string(), request)
        .await
        .expect("a reply");
    let v: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(v["status"], "ok", "{v}");
    (
        v["result"]["total"].as_u64().expect("total"),
        v["positions"]["EVT_BLOGPOST"].as_u64().unwrap_or(0),
    )
}

// ---- tests ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_query_load_never_answers_from_a_partial_model_and_switches() {
    let (server, f) = fixture().await;
    let head = write_posts(&f.store, "p", 50, 10).await;
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let running = start(&f.client, config(), move || Counter::new(&p)).await;
    wait_applied(&running, head).await;
    assert_eq!(probe.effects.load(Ordering::SeqCst), head);

    // Hammer queries from another connection while the rebuild runs.
    let rebuilding = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let querier = connect(&server.client_url()).await;
    let hammer = tokio::spawn({
        let (rebuilding, stop) = (rebuilding.clone(), stop.clone());
        async move {
            let mut during = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let was_rebuilding = rebuilding.load(Ordering::SeqCst);
                let (total, positions) = total(&querier, None).await;
                assert_eq!(
                    (total, positions),
                    (head, head),
                    "answered from a partial model"
                );
                if was_rebuilding && rebuilding.load(Ordering::SeqCst) {
                    during += 1;
                }
            }
            during
        }
    });
    let mut updates = Vec::new();
    let done = control::rebuild(&f.client, "counter", HANG, |u| {
        if matches!(u, RebuildUpdate::Started { .. }) {
            rebuilding.store(true, Ordering::SeqCst);
        }
        if matches!(u, RebuildUpdate::Done { .. }) {
            rebuilding.store(false, Ordering::SeqCst);
        }
        updates.push(u.clone());
    })
    .await
    .expect("rebuilt");
    stop.store(true, Ordering::SeqCst);
    let during = hammer.await.expect("every answer was complete");
    assert!(during > 0, "no query overlapped the rebuild");

    match done {
        RebuildUpdate::Done {
            generation,
            events,
            positions,
            ..
        } => {
            assert_eq!(generation, 1);
            assert_eq!(events, head);
            assert_eq!(positions["EVT_BLOGPOST"], head);
        }
        other => panic!("not done: {other:?}"),
    }
    assert_eq!(
        updates[0],
        RebuildUpdate::Started {
            generation: 1,
            total: head
        }
    );
    assert!(updates
        .iter()
        .any(|u| matches!(u, RebuildUpdate::Progress { .. })));
    // The whole history was applied again, without side effects.
    assert_eq!(probe.applied.lock().expect("lock").len() as u64, 2 * head);
    assert_eq!(probe.effects.load(Ordering::SeqCst), head);
    // Queries read generation 1; generation 0 is gone.
    let control = control_kv(&f.client).await;
    assert_eq!(
        control::active_generation(&control, "counter")
            .await
            .expect("pointer"),
        1
    );
    let js = async_nats::jetstream::new(f.client.clone());
    assert!(js.get_key_value(bucket_name("counter")).await.is_err());
    assert!(js
        .get_stream("EVT_BLOGPOST")
        .await
        .expect("stream")
        .consumer_info("projector_counter")
        .await
        .is_err());

    // The new generation follows the live tail, with side effects again.
    let more = write_posts(&f.store, "q", 5, 4).await;
    assert_eq!(total(&f.client, Some(more)).await, (more, more));
    assert_eq!(probe.effects.load(Ordering::SeqCst), more);
    let record = wait_stored(&f.client, more).await;
    assert_eq!(record.state.total, more);
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_after_n_deliveries_skipped_then_replayed_once() {
    let (_server, f) = fixture().await;
    let probe = Arc::new(Probe::default());
    *probe.fail_on.lock().expect("lock") = Some("bad0".into());
    let config = ProjectorConfig {
        max_deliveries: 3,
        ..config()
    };
    let p = probe.clone();
    let running = start(&f.client, config, move || Counter {
        on_poison: Some(OnPoison::Skip),
        ..Counter::new(&p)
    })
    .await;
    write_posts(&f.store, "p", 2, 4).await;
    let bad_last = write_posts(&f.store, "bad", 1, 4).await;
    let head = write_posts(&f.store, "q", 2, 4).await;
    assert_eq!((bad_last, head), (12, 20));

    // The rest continue past the four parked events.
    let record = wait_stored(&f.client, head).await;
    assert_eq!(record.state.total, head - 4);
    assert_eq!(record.skipped["EVT_BLOGPOST"], (9..=12).collect());
    assert_eq!(probe.failures.load(Ordering::SeqCst), 4 * 3);
    let parked = parked::list(&f.client, "counter").await.expect("list");
    assert_eq!(
        parked.iter().map(|p| p.seq).collect::<Vec<_>>(),
        [9, 10, 11, 12]
    );
    assert!(parked
        .iter()
        .all(|p| p.deliveries == 3 && p.error.contains("refused bad0")));
    assert_eq!(running.status().await.projectors[0].phase, Phase::Live);

    // After the fix, replaying applies each once; a second replay finds none.
    *probe.fail_on.lock().expect("lock") = None;
    let summary = control::replay_parked(&f.client, "counter", HANG)
        .await
        .expect("replayed");
    assert_eq!((summary.applied, summary.failed.len()), (4, 0));
    let again = control::replay_parked(&f.client, "counter", HANG)
        .await
        .expect("replayed");
    assert_eq!((again.applied, again.already_applied), (0, 0));
    assert!(parked::list(&f.client, "counter")
        .await
        .expect("list")
        .is_empty());
    let record = read_record(&f.client).await;
    assert_eq!(record.state.total, head);
    assert_eq!(record.state.per_id["bad0"], 4);
    assert!(record.skipped.is_empty());
    let mut applied = probe.applied.lock().expect("lock").clone();
    applied.sort_unstable();
    assert_eq!(applied, (1..=head).collect::<Vec<_>>(), "each event once");
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_halts_the_stop_policy_and_resumes_after_replay() {
    let (_server, f) = fixture().await;
    let probe = Arc::new(Probe::default());
    *probe.fail_on.lock().expect("lock") = Some("bad0".into());
    let config = ProjectorConfig {
        max_deliveries: 2,
        ..config()
    };
    let p = probe.clone();
    let running = start(&f.client, config, move || Counter::new(&p)).await;
    write_posts(&f.store, "p", 2, 4).await;
    write_posts(&f.store, "bad", 1, 4).await;
    let head = write_posts(&f.store, "q", 2, 4).await;

    let halted = eventually("the halt", HANG, || async {
        let status = running.status().await;
        (status.projectors[0].phase == Phase::Halted).then(|| status.projectors[0].clone())
    })
    .await;
    let why = halted.error.expect("a reason");
    assert!(
        why.contains("EVT_BLOGPOST #9") && why.contains("parked"),
        "{why}"
    );
    assert_eq!(halted.streams[0].applied_seq, 8);
    assert_eq!(read_record(&f.client).await.positions["EVT_BLOGPOST"], 8);
    let parked = parked::list(&f.client, "counter").await.expect("list");
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].seq, parked[0].deliveries), (9, 2));

    *probe.fail_on.lock().expect("lock") = None;
    let summary = control::replay_parked(&f.client, "counter", HANG)
        .await
        .expect("replayed");
    assert_eq!((summary.applied, summary.failed.len()), (1, 0));
    let record = wait_stored(&f.client, head).await;
    assert_eq!(record.state.total, head);
    assert!(parked::list(&f.client, "counter")
        .await
        .expect("list")
        .is_empty());
    let mut applied = probe.applied.lock().expect("lock").clone();
    applied.sort_unstable();
    assert_eq!(applied, (1..=head).collect::<Vec<_>>(), "each event once");
    assert_eq!(running.status().await.projectors[0].phase, Phase::Live);
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_skipped_for_good_is_never_applied_and_a_halted_projection_resumes() {
    let (_server, f) = fixture().await;
    let probe = Arc::new(Probe::default());
    *probe.fail_on.lock().expect("lock") = Some("bad0".into());
    let config = ProjectorConfig {
        max_deliveries: 2,
        ..config()
    };
    let p = probe.clone();
    let running = start(&f.client, config, move || Counter::new(&p)).await;
    write_posts(&f.store, "p", 2, 4).await;
    write_posts(&f.store, "bad", 1, 4).await;
    let head = write_posts(&f.store, "q", 2, 4).await;
    eventually("the halt", HANG, || async {
        let status = running.status().await;
        (status.projectors[0].phase == Phase::Halted).then_some(())
    })
    .await;
    let namespace = Namespace::default();
    let skip = |stream: &str, seq| control::SkipRequest {
        stream: stream.to_string(),
        seq,
    };
    // Only a parked event can be skipped, and only the one it halted at.
    let missing = control::skip_parked_in(
        &f.client,
        &namespace,
        "counter",
        &skip("EVT_BLOGPOST", 10),
        HANG,
    )
    .await
    .expect("an answer");
    assert_eq!(missing, control::SkipOutcome::NotParked);
    let outcome = control::skip_parked_in(
        &f.client,
        &namespace,
        "counter",
        &skip("EVT_BLOGPOST", 9),
        HANG,
    )
    .await
    .expect("an answer");
    assert_eq!(outcome, control::SkipOutcome::Skipped);
    assert!(parked::list(&f.client, "counter")
        .await
        .expect("list")
        .is_empty());
    // The projection resumes after it, and the next bad ones park again:
    // skip each, the halted projection goes on each time.
    for seq in 10..=12 {
        let parked = eventually(format!("#{seq} parked"), HANG, || async {
            let parked = parked::list(&f.client, "counter").await.expect("list");
            parked.iter().any(|p| p.seq == seq).then_some(parked)
        })
        .await;
        assert_eq!(parked.len(), 1, "{parked:?}");
        let outcome = control::skip_parked_in(
            &f.client,
            &namespace,
            "counter",
            &skip("EVT_BLOGPOST", seq),
            HANG,
        )
        .await
        .expect("an answer");
        assert_eq!(outcome, control::SkipOutcome::Skipped, "#{seq}");
    }
    let record = wait_stored(&f.client, head).await;
    assert_eq!(record.state.total, head - 4);
    assert!(!record.state.per_id.contains_key("bad0"));
    // Fixed now, a replay finds nothing to apply: skipped is for good.
    *probe.fail_on.lock().expect("lock") = None;
    let summary = control::replay_parked(&f.client, "counter", HANG)
        .await
        .expect("replayed");
    assert_eq!((summary.applied, summary.already_applied), (0, 0));
    let mut applied = probe.applied.lock().expect("lock").clone();
    applied.sort_unstable();
    let expected: Vec<u64> = (1..=head).filter(|s| !(9..=12).contains(s)).collect();
    assert_eq!(applied, expected, "each event once, the skipped ones never");
    assert_eq!(running.status().await.projectors[0].phase, Phase::Live);
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_skipped_by_the_skip_policy_can_be_given_up_for_good() {
    let (_server, f) = fixture().await;
    let probe = Arc::new(Probe::default());
    *probe.fail_on.lock().expect("lock") = Some("bad0".into());
    let config = ProjectorConfig {
        max_deliveries: 2,
        ..config()
    };
    let p = probe.clone();
    let running = start(&f.client, config, move || Counter {
        on_poison: Some(OnPoison::Skip),
        ..Counter::new(&p)
    })
    .await;
    write_posts(&f.store, "p", 2, 4).await;
    write_posts(&f.store, "bad", 1, 2).await;
    let head = write_posts(&f.store, "q", 1, 4).await;
    let record = wait_stored(&f.client, head).await;
    assert_eq!(
        record.skipped["EVT_BLOGPOST"],
        [9, 10].into_iter().collect()
    );
    let namespace = Namespace::default();
    let outcome = control::skip_parked_in(
        &f.client,
        &namespace,
        "counter",
        &control::SkipRequest {
            stream: "EVT_BLOGPOST".into(),
            seq: 9,
        },
        HANG,
    )
    .await
    .expect("an answer");
    assert_eq!(outcome, control::SkipOutcome::Skipped);
    let record = read_record(&f.client).await;
    assert_eq!(record.skipped["EVT_BLOGPOST"], [10].into_iter().collect());
    // After the fix, a replay applies the one left and never the other.
    *probe.fail_on.lock().expect("lock") = None;
    let summary = control::replay_parked(&f.client, "counter", HANG)
        .await
        .expect("replayed");
    assert_eq!((summary.applied, summary.failed.len()), (1, 0));
    let record = read_record(&f.client).await;
    assert_eq!(record.state.total, head - 1);
    assert!(record.skipped.is_empty());
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_is_replayed_under_a_subject_prefix() {
    let namespace = Namespace::new("acme.shop").expect("a valid prefix");
    let stream = namespace.stream_name("blogpost");
    let (_server, f) = fixture_in(&namespace).await;
    let probe = Arc::new(Probe::default());
    *probe.fail_on.lock().expect("lock") = Some("bad0".into());
    let config = ProjectorConfig {
        max_deliveries: 2,
        namespace: namespace.clone(),
        ..config()
    };
    let p = probe.clone();
    let running = start(&f.client, config, move || Counter::new(&p)).await;
    write_posts(&f.store, "p", 1, 4).await;
    let bad = write_posts(&f.store, "bad", 1, 1).await;
    let head = write_posts(&f.store, "q", 1, 4).await;

    let deadline = tokio::time::Instant::now() + HANG;
    while running.status().await.projectors[0].phase != Phase::Halted {
        assert!(tokio::time::Instant::now() < deadline, "never halted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let parked = parked::list_in(&f.client, &namespace, "counter")
        .await
        .expect("list");
    assert_eq!(
        parked
            .iter()
            .map(|p| (p.stream.as_str(), p.seq))
            .collect::<Vec<_>>(),
        [(stream.as_str(), bad)]
    );

    *probe.fail_on.lock().expect("lock") = None;
    let summary = control::replay_parked_in(&f.client, &namespace, "counter", HANG)
        .await
        .expect("replayed");
    assert_eq!((summary.applied, summary.failed), (1, Vec::<String>::new()));
    running.wait_applied("counter", &stream, head).await;
    assert!(parked::list_in(&f.client, &namespace, "counter")
        .await
        .expect("list")
        .is_empty());
    let mut applied = probe.applied.lock().expect("lock").clone();
    applied.sort_unstable();
    assert_eq!(applied, (1..=head).collect::<Vec<_>>(), "each event once");
    assert_eq!(running.status().await.projectors[0].phase, Phase::Live);
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_instances_one_applies_and_the_other_takes_over_when_it_dies() {
    let (server, f) = fixture().await;
    let url = server.client_url();
    let head = write_posts(&f.store, "p", 20, 5).await;
    let (first_probe, second_probe) = (Arc::new(Probe::default()), Arc::new(Probe::default()));
    let p = first_probe.clone();
    let first_client = connect(&url).await;
    let first = start(&first_client, config(), move || Counter::new(&p)).await;
    wait_applied(&first, head).await;
    let p = second_probe.clone();
    let second_client = connect(&url).await;
    let second = start(&second_client, config(), move || Counter::new(&p)).await;
    let more = write_posts(&f.store, "q", 10, 5).await;
    wait_stored(&f.client, more).await;
    // The standby follows the stored record; it has applied nothing.
    wait_applied(&second, more).await;
    assert_eq!(first_probe.applied.lock().expect("lock").len() as u64, more);
    assert!(second_probe.applied.lock().expect("lock").is_empty());
    assert_eq!(second.status().await.projectors[0].phase, Phase::Standby);

    // The holder dies without a word; the standby takes over.
    first.abort();
    drop(first_client);
    let last = write_posts(&f.store, "r", 10, 5).await;
    let record = wait_stored(&f.client, last).await;
    assert_eq!(first_probe.applied.lock().expect("lock").len() as u64, more);
    let taken: Vec<u64> = second_probe.applied.lock().expect("lock").clone();
    assert_eq!(taken, (more + 1..=last).collect::<Vec<_>>());
    // The read model is the fold of the stream.
    let mut folded = CountState::default();
    for prefix in ["p", "q", "r"] {
        let posts = if prefix == "p" { 20 } else { 10 };
        for i in 0..posts {
            let id = format!("{prefix}{i}");
            let events = f.store.load("blogpost", &id, 0).await.expect("load");
            folded.total += events.len() as u64;
            folded.per_id.insert(id, events.len() as u64);
        }
    }
    assert_eq!(record.state, folded);
    assert_eq!(total(&f.client, Some(last)).await, (last, last));
    second.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holder_cannot_write_after_losing_its_turn() {
    let (_server, f) = fixture().await;
    let js = async_nats::jetstream::new(f.client.clone());
    let control = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: CONTROL_BUCKET.into(),
            ..Default::default()
        })
        .await
        .expect("bucket");

    // The lease: taken by a, silent past its TTL, taken by b; a's renewal fails.
    let ttl = Duration::from_millis(300);
    let a = Lease::try_acquire(&control, "counter", "a", ttl, &mut Watcher::default())
        .await
        .expect("read")
        .expect("free: taken");
    let mut b_watch = Watcher::default();
    assert!(
        Lease::try_acquire(&control, "counter", "b", ttl, &mut b_watch)
            .await
            .expect("read")
            .is_none()
    );
    let b = loop {
        tokio::time::sleep(ttl / 3).await;
        if let Some(b) = Lease::try_acquire(&control, "counter", "b", ttl, &mut b_watch)
            .await
            .expect("read")
        {
            break b;
        }
    };
    assert!(b.token() > a.token());
    assert_eq!(
        a.renew().await.expect_err("stale").kind(),
        ProjectionErrorKind::Conflict
    );
    b.renew().await.expect("b holds it");

    // The record: the first opener's write fails once another opened it.
    write_posts(&f.store, "p", 2, 4).await;
    let probe = Arc::new(Probe::default());
    let mut stale = PersistedProjection::open(f.client.clone(), Counter::new(&probe), &config())
        .await
        .expect("open");
    stale
        .next_batch()
        .await
        .expect("a batch")
        .ack()
        .await
        .expect("ack");
    let stored = stale.positions()["EVT_BLOGPOST"];
    let head = write_posts(&f.store, "q", 1, 4).await;
    // The stale instance has the next events in hand when the other opens.
    assert!(within("a delivery", HANG, stale.ready()).await);
    let mut fresh = PersistedProjection::open(f.client.clone(), Counter::new(&probe), &config())
        .await
        .expect("open");
    assert_eq!(fresh.positions()["EVT_BLOGPOST"], stored);
    let refused = stale.next_batch().await.err().map(|e| e.kind());
    assert_eq!(refused, Some(ProjectionErrorKind::Conflict));
    assert_eq!(
        read_record(&f.client).await.positions["EVT_BLOGPOST"],
        stored
    );
    while fresh.positions()["EVT_BLOGPOST"] < head {
        let batch = within("a delivery", HANG, fresh.next_batch())
            .await
            .expect("stored");
        batch.ack().await.expect("ack");
    }
    assert_eq!(read_record(&f.client).await.state.total, head);
}

#[tokio::test]
async fn a_commit_stored_though_its_answer_was_lost_is_not_applied_again() {
    use jetsource::projector::store::{OneValue, ReadStore};
    let server = NatsServer::new();
    let client = connect(&server.client_url()).await;
    let js = async_nats::jetstream::new(client.clone());
    let probe = Arc::new(Probe::default());
    let make = {
        let probe = probe.clone();
        move || Counter::new(&probe)
    };
    let store = OneValue::new(js, ProjectorConfig::default(), make);
    let opened = store.open(0, 7).await.expect("open");
    let events: Vec<Event> = (1..=3)
        .map(|seq| {
            Event::from_parts(
                &Namespace::default(),
                format!("evt.blogpost.p{seq}.BlogPostPublished"),
                "EVT_BLOGPOST".into(),
                seq,
                "2026-01-01T00:00:00Z".into(),
                BTreeMap::new(),
                "{}".into(),
            )
            .expect("an event")
        })
        .collect();
    let first = store
        .commit(0, events[..2].to_vec(), opened.checkpoint.clone(), true)
        .await
        .expect("stored");
    assert_eq!(first.applied, 2);
    // As the runtime does when that answer never came: the same events
    // again, and one more, against the checkpoint it knew before.
    let again = store
        .commit(0, events.clone(), opened.checkpoint.clone(), true)
        .await
        .expect("stored");
    assert_eq!(
        again.applied, 3,
        "the held ones count as applied, to be acked"
    );
    assert_eq!(*probe.applied.lock().expect("lock"), [1, 2, 3]);
    let query = Query {
        projection: "counter".into(),
        path: vec![],
        body: Default::default(),
        budget: 1 << 20,
    };
    let answer = store.query(0, query).await.expect("an answer");
    assert_eq!(answer["total"], 3);
    let stored = store.refresh(0).await.expect("refresh").expect("stored");
    assert_eq!(stored.positions.get("EVT_BLOGPOST"), Some(&3));
}
