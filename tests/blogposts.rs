//! The reference `blogposts` projection as deployed, one KV entry per post,
//! against real nats-servers and through its query API: a deployment's old
//! one-value record is not misread but rebuilt as documents, and
//! `jetsource run` killed -9 mid-replay again and again leaves every post
//! the fold of the stream, each listed once.

mod common;

use common::*;
use jetsource::projector::persisted::CHECKPOINT_KEY;
use jetsource::projector::store::DOCUMENT_CHECKPOINT_KEY;
use jetsource::projector::{
    DocumentProjector, Envelope, Event, PersistedProjector, Projector, ProjectorError,
    ProjectorRuntime, Query, QueryError,
};
use jetsource_reference::blog::BlogPost;
use jetsource_reference::blogposts::{BlogPosts, PostView};
use std::collections::BTreeMap;

const STREAM: &str = "EVT_BLOGPOST";
const BUCKET: &str = "projection_blogposts";

/// Every post through `query.blogposts.list`, `limit` a page; asserts each
/// post is listed once, in id order, and is the fold of what
/// [`write_blog_posts`] wrote (`written`, `per_post` events each).
async fn assert_listed_folded(
    client: &async_nats::Client,
    written: &BTreeMap<String, u64>,
    per_post: usize,
    limit: u64,
) -> usize {
    let (items, pages) = list_all(client, "query.blogposts.list", Some(limit), None).await;
    let posts: Vec<PostView> = items
        .into_iter()
        .map(|item| serde_json::from_value(item).expect("a post"))
        .collect();
    let ids: Vec<&str> = posts.iter().map(|p| p.id.as_str()).collect();
    let expected: Vec<&str> = written.keys().map(String::as_str).collect();
    assert_eq!(ids.len(), expected.len(), "each post listed once");
    assert_eq!(ids, expected, "each post once, in id order");
    for post in &posts {
        let last = per_post.saturating_sub(2);
        assert_eq!(
            (
                post.title.as_str(),
                post.published,
                post.events,
                post.last_seq
            ),
            (
                format!("{} t{last}", post.id).as_str(),
                per_post > 1,
                per_post as u64,
                written[&post.id]
            ),
            "{} is the fold of its events",
            post.id
        );
    }
    pages.len()
}

/// What `blogposts` kept before it was documents: the whole model as one
/// KV value, with the same fold.
#[derive(Debug, Clone, Default)]
struct OneValueBlogPosts(BTreeMap<String, PostView>);

impl Projector for OneValueBlogPosts {
    fn name(&self) -> &'static str {
        BlogPosts::NAME
    }

    fn subjects(&self) -> Vec<String> {
        DocumentProjector::subjects(&BlogPosts)
    }

    fn apply(&mut self, event: &Event) -> Result<(), ProjectorError> {
        let Some(input) = Envelope::<BlogPost>::decode(event)? else {
            return Ok(());
        };
        let id = input.meta.aggregate_id.clone();
        if let Some(post) = BlogPosts.apply(self.0.get(&id).cloned(), input)? {
            self.0.insert(id, post);
        }
        Ok(())
    }

    fn query(&self, _query: &Query) -> Result<serde_json::Value, QueryError> {
        Err(QueryError::bad_request("not asked"))
    }
}

impl PersistedProjector for OneValueBlogPosts {
    type State = BTreeMap<String, PostView>;

    fn state(&self) -> &Self::State {
        &self.0
    }

    fn restore(&mut self, state: Self::State) {
        self.0 = state;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_one_value_record_of_blogposts_is_rebuilt_as_one_document_per_post() {
    const PER_POST: usize = 3;
    let server = NatsServer::new();
    let f = Jetsource::start(&server.client_url()).await;
    let (written, last) = write_blog_posts(&f.store, "old", 40, PER_POST).await;
    let mut written: BTreeMap<String, u64> = written.into_iter().collect();
    let old = Projectors::start(
        ProjectorRuntime::builder(f.client.clone()).persisted(OneValueBlogPosts::default()),
    )
    .await;
    old.wait_applied(BlogPosts::NAME, STREAM, last).await;
    old.stop().await.expect("stop");
    let js = async_nats::jetstream::new(f.client.clone());
    let bucket = js.get_key_value(BUCKET).await.expect("the old bucket");
    let record = bucket.get(CHECKPOINT_KEY).await.expect("read");
    assert!(record.is_some(), "the one-value record is there to begin");

    // Events after the old record too: the rebuild sees the whole stream.
    let (more, last) = write_blog_posts(&f.store, "new", 10, PER_POST).await;
    written.extend(more);
    let documents =
        Projectors::start(ProjectorRuntime::builder(f.client.clone()).documents(BlogPosts)).await;
    documents.wait_applied(BlogPosts::NAME, STREAM, last).await;
    assert_listed_folded(&f.client, &written, PER_POST, 7).await;
    let bucket = js.get_key_value(BUCKET).await.expect("the bucket");
    assert!(bucket.get(CHECKPOINT_KEY).await.expect("read").is_none());
    assert!(bucket
        .get(DOCUMENT_CHECKPOINT_KEY)
        .await
        .expect("read")
        .is_some());
    let status = bucket.status().await.expect("bucket status");
    assert_eq!(
        status.values(),
        written.len() as u64 + 1,
        "one entry per post and a checkpoint"
    );
    documents.stop().await.expect("stop");
    f.stop().await;
}

/// The last sequence of [`STREAM`] the stored checkpoint covers (0: none
/// stored yet).
async fn stored_seq(js: &async_nats::jetstream::Context) -> u64 {
    let Ok(bucket) = js.get_key_value(BUCKET).await else {
        return 0;
    };
    let Ok(Some(value)) = bucket.get(DOCUMENT_CHECKPOINT_KEY).await else {
        return 0;
    };
    let checkpoint: serde_json::Value = serde_json::from_slice(&value).expect("a checkpoint");
    checkpoint["positions"][STREAM].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_replay_again_and_again_leaves_every_post_the_fold_of_the_stream() {
    const PER_POST: usize = 10;
    let server = NatsServer::new();
    let url = server.client_url();
    let f = Jetsource::start(&url).await;
    let js = async_nats::jetstream::new(f.client.clone());
    let (written, last) = write_blog_posts(&f.store, "p", 2000, PER_POST).await;
    let written: BTreeMap<String, u64> = written.into_iter().collect();
    let dir = tempfile::tempdir().expect("a dir");
    let config = dir.path().join("jetsource.toml");
    std::fs::write(&config, "[projectors]\nlease_ttl = \"1s\"\n").expect("config");
    let config = config.to_string_lossy().to_string();
    let args = [
        "--config",
        config.as_str(),
        "run",
        "--nats-url",
        url.as_str(),
    ];
    let env = [("RUST_LOG", "info"), ("JETSOURCE_ROLES", "projectors")];
    let (mut stored, mut mid_replay) = (0, 0);
    for round in 0..4 {
        let mut process =
            tokio::task::block_in_place(|| JetsourceProcess::spawn(dir.path(), &args, &env));
        // Killed as soon as it has stored a batch more than the last one.
        let before = stored;
        eventually(format!("round {round} storing a batch"), HANG, || async {
            let now = stored_seq(&js).await;
            (now > before || now == last).then_some(())
        })
        .await;
        tokio::task::block_in_place(|| process.kill());
        let after_kill = stored_seq(&js).await;
        if after_kill < last {
            mid_replay += 1;
        }
        stored = after_kill;
    }
    assert!(mid_replay > 0, "no kill landed mid-replay");
    let _process = tokio::task::block_in_place(|| JetsourceProcess::spawn(dir.path(), &args, &env));
    eventually("the replay completing", HANG, || async {
        (stored_seq(&js).await == last).then_some(())
    })
    .await;
    // Through the query API of the process that finished it.
    assert_listed_folded(&f.client, &written, PER_POST, 1000).await;
    let one = query(&f.client, "query.blogposts.get.p00042", None).await;
    assert_eq!(one["status"], "ok", "{one}");
    assert_eq!(one["result"]["events"], PER_POST as u64);
    f.stop().await;
}
