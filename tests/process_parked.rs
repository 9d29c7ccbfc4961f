//! A process manager's parked triggers operated from outside: replayed
//! after a fix (reacted to as live, once), refused for an instance that
//! has reacted to a later event of the stream since, skipped for good.

mod common;

use common::*;
use jetsource::process::{Command, ProcessConfig, ProcessManager, Reaction, Trigger};
use jetsource::projector::control::{SkipOutcome, SkipRequest};
use jetsource::projector::Envelope;
use jetsource_reference::blog::{BlogPost, BlogPostEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Publishes each post created; while `broken`, a post whose id starts
/// with `bad` routes to a key that is not a token, so its trigger is
/// parked (a bug, fixed by clearing the flag). A title change keeps the
/// instance, so it records a later position.
struct Publisher {
    broken: Arc<AtomicBool>,
}

impl ProcessManager for Publisher {
    type Input = Envelope<BlogPost>;
    type State = u32;

    fn name(&self) -> &'static str {
        "publisher"
    }

    fn key(&self, input: &Self::Input) -> Option<String> {
        let id = &input.meta.aggregate_id;
        if self.broken.load(Ordering::SeqCst) && id.starts_with("bad") {
            return Some(format!("{id} is not a token"));
        }
        Some(id.clone())
    }

    fn react(&self, state: Option<u32>, trigger: Trigger<Self::Input>) -> Reaction<u32> {
        match trigger {
            Trigger::Event(input) => match input.event {
                BlogPostEvent::BlogPostCreated { .. } => {
                    Reaction::keep(0).send(Command::to::<BlogPost>(
                        &input.meta.aggregate_id,
                        "publish",
                        serde_json::json!({}),
                    ))
                }
                BlogPostEvent::BlogPostTitleChanged { .. } => {
                    Reaction::keep(state.unwrap_or(0) + 1)
                }
                _ => match state {
                    Some(state) => Reaction::keep(state),
                    None => Reaction::end(),
                },
            },
            _ => match state {
                Some(state) => Reaction::keep(state),
                None => Reaction::end(),
            },
        }
    }
}

async fn published(js: &jetsource::handlers::store::EventStore, id: &str) -> usize {
    js.load("blogpost", id, 0)
        .await
        .expect("load")
        .iter()
        .filter(|e| e.event_type() == "BlogPostPublished")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_triggers_are_replayed_after_a_fix_refused_when_stale_and_skipped() {
    let server = NatsServer::new();
    let url = server.client_url();
    let running = Jetsource::start(&url).await;
    let client = commands(&url).await;
    let broken = Arc::new(AtomicBool::new(true));
    let manager = jetsource::process::start(
        connect(&url).await,
        ProcessConfig::default(),
        Publisher {
            broken: broken.clone(),
        },
    )
    .await
    .expect("the manager starts");
    let nats = connect(&url).await;
    let namespace = jetsource::schemas::Namespace::default();
    let parked = || async {
        jetsource::process::parked::list(&nats, &namespace, "publisher")
            .await
            .expect("the parked triggers")
    };
    let wait = Duration::from_secs(30);

    for id in ["good1", "bad1", "bad2", "bad3"] {
        create(&client, id).await;
    }
    eventually("good1 published", DEADLINE, || async {
        (published(&running.store, "good1").await == 1).then_some(())
    })
    .await;
    let first = eventually("three triggers parked", DEADLINE, || async {
        let parked = parked().await;
        (parked.len() == 3).then_some(parked)
    })
    .await;
    let seq_of = |id: &str| {
        first
            .iter()
            .find(|p| p.subject.contains(&format!(".{id}.")))
            .map(|p| (p.stream.clone(), p.seq))
            .expect("parked")
    };

    // Still broken: a replay fails each again, and they stay parked.
    let again = jetsource::process::parked::replay_in(&nats, &namespace, "publisher", wait)
        .await
        .expect("an answer");
    assert_eq!((again.applied, again.failed.len()), (0, 3), "{again:?}");
    assert_eq!(parked().await.len(), 3);

    // Fixed; bad3 reacted to a later event meanwhile.
    broken.store(false, Ordering::SeqCst);
    accepted(
        send(
            &client,
            "bad3",
            "change_title",
            serde_json::json!({"title": "Later"}),
        )
        .await,
    );
    let manager_bucket = async_nats::jetstream::new(nats.clone())
        .get_key_value("pm_publisher")
        .await
        .expect("the bucket");
    eventually("bad3's instance at its later event", DEADLINE, || async {
        manager_bucket.get("bad3").await.ok().flatten().map(|_| ())
    })
    .await;
    // bad2 is given up for good first.
    let (stream, seq) = seq_of("bad2");
    let skip = SkipRequest { stream, seq };
    let skipped = jetsource::process::parked::skip_in(&nats, &namespace, "publisher", &skip, wait)
        .await
        .expect("an answer");
    assert_eq!(skipped, SkipOutcome::Skipped);
    let twice = jetsource::process::parked::skip_in(&nats, &namespace, "publisher", &skip, wait)
        .await
        .expect("an answer");
    assert_eq!(twice, SkipOutcome::NotParked);

    let replayed = jetsource::process::parked::replay_in(&nats, &namespace, "publisher", wait)
        .await
        .expect("an answer");
    assert_eq!(replayed.applied, 1, "{replayed:?}");
    assert_eq!(replayed.failed.len(), 1, "{replayed:?}");
    assert!(
        replayed.failed[0].contains("bad3") && replayed.failed[0].contains("since"),
        "{replayed:?}"
    );
    let left: Vec<u64> = parked().await.iter().map(|p| p.seq).collect();
    assert_eq!(left, [seq_of("bad3").1], "bad3's stays parked");
    eventually("bad1 published by the replay", DEADLINE, || async {
        (published(&running.store, "bad1").await == 1).then_some(())
    })
    .await;
    // Once: a second replay sends nothing more.
    let _ = jetsource::process::parked::replay_in(&nats, &namespace, "publisher", wait).await;
    assert_eq!(published(&running.store, "bad1").await, 1);
    assert_eq!(published(&running.store, "bad2").await, 0, "skipped");
    manager.stop().await;
    running.stop().await;
}
