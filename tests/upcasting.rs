//! A stream written by version 1 of the blog post, read by today's code
//! (version 2: `BlogPostCreated` gained `author`, `BlogPostTitleChanged`'s
//! `title` became `new_title`). The version 1 events are written by hand,
//! in version 1's shapes, never through today's types.

mod common;

use common::*;
use jetsource::feedback::FeedbackConfig;
use jetsource::rewind::rewind;
use jetsource::schemas::feedback::{self as contract, FeedbackAnswer};
use jetsource::RuntimeConfig;
use jetsource_reference::blog::BlogPost;
use std::time::Duration;

/// Post `old` as version 1 stored it: created, retitled, published, each
/// by its own command. Returns the three sequences.
async fn version_1_post(client: &async_nats::Client) -> [u64; 3] {
    let store = event_store(client).await;
    let mut seqs = [0; 3];
    let mut last = 0;
    for (i, (command_id, event_type, body)) in [
        (
            "v1-create",
            "BlogPostCreated",
            r#"{"title":"First","body":"b"}"#,
        ),
        (
            "v1-retitle",
            "BlogPostTitleChanged",
            r#"{"title":"Second"}"#,
        ),
        ("v1-publish", "BlogPostPublished", "{}"),
    ]
    .into_iter()
    .enumerate()
    {
        let event = new_event(event_type, body);
        last = store
            .append("blogpost", "old", last, &[event], &meta(command_id))
            .await
            .expect("append")[0];
        seqs[i] = last;
    }
    seqs
}

async fn start(url: &str) -> Jetsource {
    Jetsource::with_feedback(
        url,
        FeedbackConfig::default(),
        RuntimeConfig::default(),
        true,
    )
    .await
}

#[tokio::test]
async fn a_version_1_stream_is_decided_on_resent_rewound_and_tailed_as_version_2() {
    let server = NatsServer::new();
    let url = server.client_url();
    let admin = connect(&url).await;
    // The runtime sets up the stream; the post is written beside it, and
    // its first load reads the version 1 history.
    let first = start(&url).await;
    let [created, retitled, published] = version_1_post(&admin).await;
    let client = commands(&url).await;
    let retitle = |title: &str| serde_json::json!({ "title": title }).to_string();

    // Old command ids are recognised.
    let resent = accepted(
        send_with(
            &client,
            "old",
            "change_title",
            retitle("anything"),
            &with_id("v1-retitle"),
        )
        .await,
    );
    assert!(resent.duplicate, "{resent:?}");
    assert_eq!(
        resent
            .events
            .iter()
            .map(|e| (e.event_type.as_str(), e.seq))
            .collect::<Vec<_>>(),
        [("BlogPostTitleChanged", retitled)]
    );
    // Decided on the upcast state: the title read through the renamed
    // field is the current one, so the same title changes nothing.
    let same = accepted(
        send_with(
            &client,
            "old",
            "change_title",
            retitle("Second"),
            &with_id("v2-same"),
        )
        .await,
    );
    assert!(same.events.is_empty(), "{same:?}");
    let third = accepted(
        send_with(
            &client,
            "old",
            "change_title",
            retitle("Third"),
            &with_id("v2-third"),
        )
        .await,
    );
    let third = third.events[0].seq;
    // The command index reads the version 1 events' ids too.
    let status = contract::status_subject("v1-create").expect("valid subject");
    let indexed = eventually("v1-create's status", Duration::from_secs(20), || {
        let status = &status;
        let admin = &admin;
        async move {
            match ask::<FeedbackAnswer>(admin, status).await {
                FeedbackAnswer::Accepted(a) => Some(a),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(
        (indexed.aggregate_id.as_str(), indexed.events[0].seq),
        ("old", created)
    );
    first.stop().await;

    // And after a restart, also a `create`, which is appended without a
    // load first and finds its duplicate through the conflict.
    let second = start(&url).await;
    let create = send_with(
        &client,
        "old",
        "create",
        r#"{"title":"First","body":"b"}"#,
        &with_id("v1-create"),
    )
    .await;
    let create = accepted(create);
    assert!(create.duplicate, "{create:?}");
    assert_eq!(create.events[0].seq, created);
    second.stop().await;

    // rewind folds today's state at every sequence, old and new events
    // alike.
    let store = event_store(&admin).await;
    for (seq, title, published) in [
        (created, "First", false),
        (retitled, "Second", false),
        (published, "Second", true),
        (third, "Third", true),
    ] {
        let rewound = rewind::<BlogPost>(&store, "old", Some(seq))
            .await
            .expect("rewind");
        assert_eq!(
            rewound.state,
            serde_json::json!({"exists": true, "title": title, "published": published}),
            "at {seq}"
        );
    }

    // tail shows each event as stored, with its version, and what today's
    // code reads an older one as.
    let dir = tempfile::tempdir().expect("temp dir");
    let tail = {
        let (dir, url) = (dir.path().to_path_buf(), url.clone());
        tokio::task::spawn_blocking(move || {
            run_jetsource(
                &dir,
                &url,
                &["tail", "evt.blogpost.old.>", "--from-start", "--count", "4"],
            )
        })
        .await
        .expect("tail ran")
    };
    assert_exit(&tail, 0);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&tail.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let shown: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["version"].clone(),
                e["body"].clone(),
                e["reads_as"].clone(),
            )
        })
        .collect();
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("json");
    assert_eq!(
        shown,
        [
            (
                1.into(),
                json(r#"{"title":"First","body":"b"}"#),
                json(
                    r#"[{"event_type":"BlogPostCreated","body":{"title":"First","body":"b","author":"unknown"}}]"#
                )
            ),
            (
                1.into(),
                json(r#"{"title":"Second"}"#),
                json(r#"[{"event_type":"BlogPostTitleChanged","body":{"new_title":"Second"}}]"#)
            ),
            (
                1.into(),
                json("{}"),
                json(r#"[{"event_type":"BlogPostPublished","body":{}}]"#)
            ),
            (
                2.into(),
                json(r#"{"new_title":"Third"}"#),
                serde_json::Value::Null
            ),
        ]
    );
}
