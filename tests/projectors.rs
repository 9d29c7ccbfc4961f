//! Projectors against real nats-servers: replay and live tail, persisted
//! resumption, redelivery after a crash, read-your-writes, and several
//! streams.

mod common;

use common::*;
use jetsource::client::{CommandClient, SendOptions};
use jetsource::handlers::store::EventStore;
use jetsource::projector::document::InMemory;
use jetsource::projector::persisted::{
    bucket_name, Checkpoint, PersistedProjection, CHECKPOINT_KEY,
};
use jetsource::projector::{
    Event, PersistedProjector, Phase, Projector, ProjectorConfig, ProjectorError, ProjectorRuntime,
    Query, QueryError,
};
use jetsource::{Aggregate, Rejection, Runtime, RuntimeConfig};
use jetsource_reference::blog::{BlogPost, BlogPostEvent};
use jetsource_reference::blogposts::{BlogPosts, PostView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---- a tiny second aggregate ------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Note {
    exists: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum NoteCommand {
    Add { text: String },
}

#[derive(Debug, Serialize, Deserialize)]
enum NoteEvent {
    NoteAdded { text: String },
}

impl Aggregate for Note {
    const TYPE: &'static str = "note";
    type Command = NoteCommand;
    type Event = NoteEvent;

    fn handle(&self, command: NoteCommand) -> Result<Vec<NoteEvent>, Rejection> {
        match command {
            NoteCommand::Add { .. } if self.exists => Err(Rejection::validation("exists")),
            NoteCommand::Add { text } => Ok(vec![NoteEvent::NoteAdded { text }]),
        }
    }

    fn apply(&mut self, _event: NoteEvent) {
        self.exists = true;
    }
}

// ---- test projectors --------------------------------------------------------

/// Records every (stream, seq) it applies, in order.
struct Recorder {
    name: &'static str,
    subjects: Vec<String>,
    seen: Arc<Mutex<Vec<(String, u64)>>>,
}

impl Projector for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }
    fn subjects(&self) -> Vec<String> {
        self.subjects.clone()
    }
    fn apply(&mut self, event: &Event) -> Result<(), ProjectorError> {
        self.seen
            .lock()
            .expect("lock")
            .push((event.stream.clone(), event.seq));
        Ok(())
    }
    fn query(&self, _query: &Query) -> Result<serde_json::Value, QueryError> {
        let seen = self.seen.lock().expect("lock");
        let mut per_stream: BTreeMap<&str, u64> = BTreeMap::new();
        for (stream, _) in seen.iter() {
            *per_stream.entry(stream.as_str()).or_default() += 1;
        }
        Ok(serde_json::json!({ "events": per_stream }))
    }
}

/// Counts events per aggregate id; the state is persisted, the apply
/// counter is not (it proves how often apply ran in this process).
#[derive(Default, Clone)]
struct Tally {
    state: TallyState,
    applies: Arc<AtomicU64>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct TallyState {
    total: u64,
    per_id: BTreeMap<String, u64>,
}

impl Projector for Tally {
    fn name(&self) -> &'static str {
        "tally"
    }
    fn subjects(&self) -> Vec<String> {
        vec!["evt.blogpost.>".into()]
    }
    fn apply(&mut self, event: &Event) -> Result<(), ProjectorError> {
        self.state.total += 1;
        *self
            .state
            .per_id
            .entry(event.aggregate_id.clone())
            .or_default() += 1;
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn query(&self, _query: &Query) -> Result<serde_json::Value, QueryError> {
        Ok(serde_json::json!({ "total": self.state.total }))
    }
}

impl PersistedProjector for Tally {
    type State = TallyState;
    fn state(&self) -> &TallyState {
        &self.state
    }
    fn restore(&mut self, state: TallyState) {
        self.state = state;
    }
}

// ---- helpers ----------------------------------------------------------------

/// A server, and the command runtime for blog posts and notes on it.
async fn fixture() -> (NatsServer, Jetsource) {
    let server = NatsServer::new();
    let runtime = Jetsource::start_from(&server.client_url(), RuntimeConfig::default(), |client| {
        Runtime::builder(client)
            .aggregate::<BlogPost>()
            .aggregate::<Note>()
    })
    .await;
    (server, runtime)
}

/// Appends `per_post` events to each of `posts` posts (created, retitled,
/// published last), 16 posts at a time, in two atomic batches per
/// post, so posts interleave in the stream. Returns the last sequence.
async fn write_posts(store: &EventStore, prefix: &str, posts: usize, per_post: usize) -> u64 {
    assert!(per_post >= 4 && per_post.is_multiple_of(2));
    let tasks = (0..posts).map(|i| {
        let store = store.clone();
        let id = format!("{prefix}{i}");
        async move {
            let mut events = vec![encoded(&BlogPostEvent::BlogPostCreated {
                title: format!("{id} t0"),
                body: format!("body of {id}"),
                author: "unknown".into(),
            })];
            for n in 1..per_post - 1 {
                events.push(encoded(&BlogPostEvent::BlogPostTitleChanged {
                    new_title: format!("{id} t{n}"),
                }));
            }
            events.push(encoded(&BlogPostEvent::BlogPostPublished {}));
            let (first, second) = events.split_at(per_post / 2);
            let mut last = 0;
            for (part, chunk) in [first, second].into_iter().enumerate() {
                let command_id = format!("{id}-w{part}");
                let seqs = store
                    .append("blogpost", &id, last, chunk, &meta(&command_id))
                    .await
                    .expect("append");
                last = *seqs.last().expect("appended");
            }
            last
        }
    });
    // JetStream allows 50 atomic batches in flight per stream.
    let lasts: Vec<u64> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
        futures::stream::iter(tasks),
        16,
    ))
    .await;
    lasts.into_iter().max().unwrap_or(0)
}

/// The aggregate's own state, folded from its stored events.
async fn aggregate_state(store: &EventStore, id: &str) -> (BlogPost, usize, u64) {
    let events = store.load("blogpost", id, 0).await.expect("load");
    let mut state = BlogPost::default();
    for e in &events {
        state.apply(
            jetsource::handlers::codec::decode_event(e.event_type(), &e.payload).expect("decodes"),
        );
    }
    (
        state,
        events.len(),
        events.last().map(|e| e.seq).unwrap_or(0),
    )
}

/// The `blogposts` projection, answering a query with `After-Seq` within
/// `query_wait`.
async fn listing(client: &async_nats::Client, query_wait: Duration) -> Projectors {
    Projectors::start(
        ProjectorRuntime::builder(client.clone())
            .config(ProjectorConfig {
                query_wait,
                ..ProjectorConfig::default()
            })
            .in_memory(InMemory::new(BlogPosts)),
    )
    .await
}

/// Creates post p1, titled "One".
async fn create_p1(commands: &CommandClient) -> jetsource::schemas::CommandReply {
    let body = r#"{"title":"One","body":"b"}"#;
    send_with(commands, "p1", "create", body, &SendOptions::default()).await
}

/// The aggregate state a projected view describes.
fn state_of(view: &PostView) -> BlogPost {
    let mut state = BlogPost::default();
    state.apply(BlogPostEvent::BlogPostCreated {
        title: view.title.clone(),
        body: view.body.clone(),
        author: "unknown".into(),
    });
    if view.published {
        state.apply(BlogPostEvent::BlogPostPublished {});
    }
    state
}

// ---- tests ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_attached_after_1000_events_sees_all_in_order_then_the_live_tail() {
    let (_server, f) = fixture().await;
    let head = write_posts(&f.store, "p", 100, 10).await;
    assert_eq!(head, 1000);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let running = Projectors::start(
        ProjectorRuntime::builder(f.client.clone())
            .in_memory(InMemory::new(BlogPosts))
            .in_memory(Recorder {
                name: "recorder",
                subjects: vec!["evt.blogpost.>".into()],
                seen: seen.clone(),
            }),
    )
    .await;
    // More events while the replay runs: the hand-over must lose none.
    let live_head = write_posts(&f.store, "q", 20, 6).await;
    assert_eq!(live_head, 1120);
    running
        .wait_applied("recorder", "EVT_BLOGPOST", live_head)
        .await;

    let seqs: Vec<u64> = seen.lock().expect("lock").iter().map(|(_, s)| *s).collect();
    assert_eq!(
        seqs,
        (1..=live_head).collect::<Vec<_>>(),
        "every event once, in order"
    );

    let list = query(
        &f.client,
        "query.blogposts.list",
        Some(&live_head.to_string()),
    )
    .await;
    assert_eq!(list["status"], "ok", "{list}");
    assert_eq!(list["positions"]["EVT_BLOGPOST"], live_head);
    let (items, _) = list_all(&f.client, "query.blogposts.list", None, None).await;
    let posts: Vec<PostView> =
        serde_json::from_value(serde_json::Value::Array(items)).expect("posts");
    assert_eq!(posts.len(), 120);
    for view in &posts {
        let (state, events, last_seq) = aggregate_state(&f.store, &view.id).await;
        assert_eq!(state_of(view), state, "{}", view.id);
        assert_eq!((view.events, view.last_seq), (events as u64, last_seq));
    }
    let one = query(&f.client, "query.blogposts.get.p7", None).await;
    assert_eq!(one["result"]["title"], "p7 t8");
    assert_eq!(one["result"]["published"], true);

    let status = running.status().await;
    let recorder = status
        .projectors
        .iter()
        .find(|p| p.name == "recorder")
        .expect("reported");
    assert_eq!(recorder.phase, Phase::Live);
    assert_eq!(recorder.streams[0].applied_seq, live_head);
    assert_eq!(recorder.streams[0].lag, 0);
    assert_eq!(recorder.streams[0].head_at_start, 1000);
    running.stop().await.expect("stop");
}

async fn read_record(client: &async_nats::Client) -> Checkpoint<TallyState> {
    let kv = async_nats::jetstream::new(client.clone())
        .get_key_value(bucket_name("tally"))
        .await
        .expect("bucket");
    let value = kv
        .get(CHECKPOINT_KEY)
        .await
        .expect("get")
        .expect("a record");
    serde_json::from_slice(&value).expect("a record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_persisted_projector_resumes_without_reapplying() {
    let (_server, f) = fixture().await;
    let first_head = write_posts(&f.store, "p", 30, 10).await;
    let config = ProjectorConfig {
        batch: 16,
        ..ProjectorConfig::default()
    };

    let first_applies = Arc::new(AtomicU64::new(0));
    let running = Projectors::start(
        ProjectorRuntime::builder(f.client.clone())
            .config(config.clone())
            .persisted(Tally {
                applies: first_applies.clone(),
                ..Tally::default()
            }),
    )
    .await;
    running.wait_applied("tally", "EVT_BLOGPOST", 100).await;
    running.stop().await.expect("stop");

    let record = read_record(&f.client).await;
    let stopped_at = record.positions["EVT_BLOGPOST"];
    assert!(stopped_at >= 100 && stopped_at <= first_head);
    assert_eq!(first_applies.load(Ordering::SeqCst), stopped_at);
    assert_eq!(record.state.total, stopped_at);

    let head = write_posts(&f.store, "q", 10, 10).await;
    assert_eq!(head, first_head + 100);
    let second_applies = Arc::new(AtomicU64::new(0));
    let running = Projectors::start(
        ProjectorRuntime::builder(f.client.clone())
            .config(config)
            .persisted(Tally {
                applies: second_applies.clone(),
                ..Tally::default()
            }),
    )
    .await;
    running.wait_applied("tally", "EVT_BLOGPOST", head).await;
    let answer = query(&f.client, "query.tally.total", Some(&head.to_string())).await;
    assert_eq!(answer["result"]["total"], head);
    running.stop().await.expect("stop");

    assert_eq!(second_applies.load(Ordering::SeqCst), head - stopped_at);
    let record = read_record(&f.client).await;
    assert_eq!(record.positions["EVT_BLOGPOST"], head);
    assert_eq!(record.state.total, head);
    assert_eq!(record.state.per_id.len(), 40);
    assert!(record.state.per_id.values().all(|n| *n == 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_store_and_ack_does_not_apply_twice() {
    let (_server, f) = fixture().await;
    let head = write_posts(&f.store, "p", 5, 4).await;
    let config = ProjectorConfig {
        // Redeliver unacknowledged events soon after the crash.
        ack_wait: Duration::from_secs(1),
        ..ProjectorConfig::default()
    };

    let crashed_applies = Arc::new(AtomicU64::new(0));
    let mut crashed = PersistedProjection::open(
        f.client.clone(),
        Tally {
            applies: crashed_applies.clone(),
            ..Tally::default()
        },
        &config,
    )
    .await
    .expect("open");
    let batch = crashed.next_batch().await.expect("a batch");
    let stored = crashed.positions()["EVT_BLOGPOST"];
    assert_eq!(batch.applied() as u64, stored);
    assert_eq!(
        read_record(&f.client).await.positions["EVT_BLOGPOST"],
        stored
    );
    // The crash: stored, never acknowledged.
    drop(batch);
    drop(crashed);

    let applies = Arc::new(AtomicU64::new(0));
    let mut restarted = PersistedProjection::open(
        f.client.clone(),
        Tally {
            applies: applies.clone(),
            ..Tally::default()
        },
        &config,
    )
    .await
    .expect("reopen");
    assert_eq!(restarted.positions()["EVT_BLOGPOST"], stored);
    let mut skipped = 0;
    while restarted.positions()["EVT_BLOGPOST"] < head || (skipped as u64) < stored {
        let batch = within("the redelivery", HANG, restarted.next_batch())
            .await
            .expect("a batch");
        skipped += batch.skipped();
        batch.ack().await.expect("ack");
    }
    assert_eq!(
        skipped as u64, stored,
        "every redelivered event was skipped"
    );
    assert_eq!(crashed_applies.load(Ordering::SeqCst), stored);
    assert_eq!(applies.load(Ordering::SeqCst), head - stored);
    assert_eq!(restarted.read(|t| t.state.total), head);
    let record = read_record(&f.client).await;
    assert_eq!(record.positions["EVT_BLOGPOST"], head);
    assert_eq!(record.state.total, head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_seq_waits_for_a_write_and_times_out_on_one_never_made() {
    let (_server, f) = fixture().await;
    let running = listing(&f.client, Duration::from_millis(300)).await;
    let commands = CommandClient::new(f.client.clone());
    let created = create_p1(&commands).await;
    assert!(created.is_accepted());

    // A position never written: a clean timeout with what was applied.
    let late = query(&f.client, "query.blogposts.get.p1", Some("1000000")).await;
    assert_eq!(late["status"], "timeout", "{late}");
    assert_eq!(late["after_seq"]["EVT_BLOGPOST"], 1_000_000);
    assert_eq!(late["positions"]["EVT_BLOGPOST"], 1);

    // Malformed positions and unknown ids are refused, never waited on.
    for bad in [
        "abc",
        "-1",
        "1.5",
        "EVT_NOTE:1",
        "EVT_BLOGPOST:x",
        "EVT_BLOGPOST:1,",
    ] {
        let answer = query(&f.client, "query.blogposts.get.p1", Some(bad)).await;
        assert_eq!(answer["status"], "bad_request", "{bad:?}: {answer}");
    }
    let missing = query(&f.client, "query.blogposts.get.nope", None).await;
    assert_eq!(missing["status"], "not_found");
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_seq_answers_as_soon_as_the_write_lands() {
    let (_server, f) = fixture().await;
    let running = listing(&f.client, Duration::from_secs(60)).await;
    let commands = CommandClient::new(f.client.clone());
    let created = create_p1(&commands).await;
    assert!(created.is_accepted());

    // Ask for seq 2 before it exists; the request is on the wire before
    // the next one.
    let inbox = f.client.new_inbox();
    let mut waiting = f.client.subscribe(inbox.clone()).await.expect("inbox");
    let mut h = async_nats::HeaderMap::new();
    h.insert("After-Seq", "EVT_BLOGPOST:2");
    f.client
        .publish_with_reply_and_headers("query.blogposts.get.p1", inbox, h, "".into())
        .await
        .expect("publish");
    f.client.flush().await.expect("flush");
    // A query sent after it on the same connection reaches the projection
    // after it; its answer shows seq 2 was not written yet.
    let before = eventually("p1 in the projection", DEADLINE, || async {
        let before = query(&f.client, "query.blogposts.get.p1", None).await;
        (before["result"]["title"] == "One").then_some(before)
    })
    .await;
    assert_eq!(before["positions"]["EVT_BLOGPOST"], 1);
    let early = futures::FutureExt::now_or_never(futures::StreamExt::next(&mut waiting));
    assert!(early.is_none(), "answered before the write: {early:?}");

    let changed = send_with(
        &commands,
        "p1",
        "change_title",
        r#"{"title":"Two"}"#,
        &SendOptions::default(),
    )
    .await;
    assert!(changed.is_accepted());
    let answer = futures::StreamExt::next(&mut waiting)
        .await
        .expect("an answer");
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).expect("JSON");
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["result"]["title"], "Two");
    assert_eq!(answer["result"]["last_seq"], 2);
    assert!(answer["positions"]["EVT_BLOGPOST"].as_u64() >= Some(2));
    running.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_over_two_aggregate_types_sees_both_streams() {
    let (_server, f) = fixture().await;
    let commands = CommandClient::new(f.client.clone());
    let post = create_p1(&commands).await;
    assert!(post.is_accepted());

    let seen = Arc::new(Mutex::new(Vec::new()));
    let running = Projectors::start(ProjectorRuntime::builder(f.client.clone()).in_memory(
        Recorder {
            name: "activity",
            subjects: vec!["evt.blogpost.>".into(), "evt.note.*.NoteAdded".into()],
            seen: seen.clone(),
        },
    ))
    .await;
    let mut last_note = 0;
    for i in 0..3 {
        let reply = send_to(
            &commands,
            "note",
            &format!("n{i}"),
            "add",
            r#"{"text":"hi"}"#,
            &SendOptions::default(),
        )
        .await;
        match reply {
            jetsource::schemas::CommandReply::Accepted(a) => last_note = a.events[0].seq,
            other => panic!("note not accepted: {other:?}"),
        }
    }
    let answer = query(
        &f.client,
        "query.activity.count",
        Some(&format!("EVT_BLOGPOST:1,EVT_NOTE:{last_note}")),
    )
    .await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["result"]["events"]["EVT_BLOGPOST"], 1);
    assert_eq!(answer["result"]["events"]["EVT_NOTE"], 3);
    // One stream: a bare number is ambiguous here.
    let ambiguous = query(&f.client, "query.activity.count", Some("1")).await;
    assert_eq!(ambiguous["status"], "bad_request");

    let status = running.status().await;
    let streams: Vec<&str> = status.projectors[0]
        .streams
        .iter()
        .map(|s| s.stream.as_str())
        .collect();
    assert_eq!(streams, ["EVT_BLOGPOST", "EVT_NOTE"]);
    let notes: Vec<u64> = seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|(s, _)| s == "EVT_NOTE")
        .map(|(_, seq)| *seq)
        .collect();
    assert_eq!(notes, [1, 2, 3]);
    running.stop().await.expect("stop");
}
