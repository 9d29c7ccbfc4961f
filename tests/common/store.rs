//! The event store and the streams, written and read by hand, as another
//! writer on the same server (or a test setting the scene) would.

use jetsource::handlers::store::{AppendMeta, EventStore, NewEvent};
use std::collections::HashMap;
use std::time::Duration;

/// An event store on `client`.
pub async fn event_store(client: &async_nats::Client) -> EventStore {
    EventStore::new(client.clone(), Duration::from_secs(5))
        .await
        .expect("store")
}

/// What an append writes besides the events: `command_id`, no correlation
/// or causation, events of version 1.
pub fn meta(command_id: &str) -> AppendMeta<'_> {
    AppendMeta {
        command_id,
        correlation_id: None,
        causation_id: None,
        event_version: 1,
        traceparent: None,
    }
}

/// An event of `event_type` with the JSON `body`.
pub fn new_event(event_type: &str, body: impl Into<bytes::Bytes>) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        body: body.into(),
    }
}

/// A domain event as the runtime would append it.
pub fn encoded<E: serde::Serialize>(event: &E) -> NewEvent {
    let encoded = jetsource::handlers::codec::encode_event(event).expect("encodes");
    NewEvent {
        event_type: encoded.event_type,
        body: encoded.body,
    }
}

/// Messages and bytes in a stream.
pub async fn stream_state(client: &async_nats::Client, stream: &str) -> (u64, u64) {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    let info = stream.info().await.expect("stream info");
    (info.state.messages, info.state.bytes)
}

/// Publishes `body` on `subject` straight into its stream, as a writer that
/// bypasses jetsource could; returns its stream sequence.
pub async fn publish_by_hand(
    js: &async_nats::jetstream::Context,
    subject: &str,
    body: impl Into<bytes::Bytes>,
) -> u64 {
    js.publish(subject.to_string(), body.into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence
}

/// Creates streams by hand, as another application or tool sharing the
/// server would: `(name, subject)` pairs, with `metadata` on each. For the
/// tests that drive the binary and have no async runtime of their own.
pub fn streams_by_hand(url: &str, streams: &[(&str, &str)], metadata: &HashMap<String, String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        for (name, subject) in streams {
            js.create_stream(async_nats::jetstream::stream::Config {
                name: name.to_string(),
                subjects: vec![subject.to_string()],
                metadata: metadata.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
        }
    });
}

/// Appends `posts` blog posts `<prefix><n>` of `per_post` events each
/// (created, retitled, published last) straight to the store, as today's
/// blog post writes them, one command each, 16 at a time; each post's id
/// and last sequence, and the stream's last sequence.
pub async fn write_blog_posts(
    store: &EventStore,
    prefix: &str,
    posts: usize,
    per_post: usize,
) -> (Vec<(String, u64)>, u64) {
    use jetsource::Aggregate as _;
    use jetsource_reference::blog::{BlogPost, BlogPostEvent};
    let tasks = (0..posts).map(|i| {
        let store = store.clone();
        let id = format!("{prefix}{i:05}");
        async move {
            let mut events = vec![encoded(&BlogPostEvent::BlogPostCreated {
                title: format!("{id} t0"),
                body: format!("body of {id}"),
                author: "unknown".into(),
            })];
            for n in 1..per_post.saturating_sub(1) {
                events.push(encoded(&BlogPostEvent::BlogPostTitleChanged {
                    new_title: format!("{id} t{n}"),
                }));
            }
            if per_post > 1 {
                events.push(encoded(&BlogPostEvent::BlogPostPublished {}));
            }
            let command_id = format!("{id}-c");
            let meta = AppendMeta {
                event_version: BlogPost::EVENT_VERSION,
                traceparent: None,
                ..meta(&command_id)
            };
            let seqs = store
                .append("blogpost", &id, 0, &events, &meta)
                .await
                .expect("append");
            (id, *seqs.last().expect("appended"))
        }
    });
    let written: Vec<(String, u64)> = futures::StreamExt::collect(
        futures::StreamExt::buffer_unordered(futures::stream::iter(tasks), 16),
    )
    .await;
    let last = written.iter().map(|(_, seq)| *seq).max().unwrap_or(0);
    (written, last)
}
