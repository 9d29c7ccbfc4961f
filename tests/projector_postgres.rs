//! PostgreSQL read models against a real PostgreSQL (a fresh database per
//! test, see `common::postgres`) and real nats-servers: a batch and its
//! checkpoint in one transaction, restarts, crashes mid-batch, rebuilds
//! into a new schema, and failing statements.

mod common;

use common::*;
use jetsource::projector::{
    Envelope, Event, ProjectionErrorKind, ProjectorError, Query, QueryError,
};
use jetsource_postgres::{projector_error, query_error, Checkpoint, PgProjector, PgStore};
use jetsource_reference::blog::BlogPost;
use std::collections::BTreeMap;

/// Titles, one row per event, refusing the title `poison` (a CHECK
/// constraint): a statement that fails for one event only.
struct Titles;

impl PgProjector for Titles {
    type Input = Envelope<BlogPost>;

    fn name(&self) -> &'static str {
        "titles"
    }

    fn migrations(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE titles (seq bigint PRIMARY KEY, id text NOT NULL, \
           title text NOT NULL CHECK (title <> 'poison'))",
        ]
    }

    async fn apply(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        input: Envelope<BlogPost>,
    ) -> Result<(), ProjectorError> {
        use jetsource_reference::blog::BlogPostEvent::*;
        let title = match input.event {
            BlogPostCreated { title, .. } | BlogPostTitleChanged { new_title: title } => title,
            BlogPostPublished {} => "(published)".to_string(),
            BlogPostPublishScheduled { .. } | BlogPostPublishUnscheduled {} => {
                "(scheduled)".to_string()
            }
        };
        tx.execute(
            "INSERT INTO titles (seq, id, title) VALUES ($1, $2, $3)",
            &[&(input.meta.seq as i64), &input.meta.aggregate_id, &title],
        )
        .await
        .map_err(projector_error)?;
        Ok(())
    }

    async fn query(
        &self,
        client: &tokio_postgres::Client,
        _query: &Query,
    ) -> Result<serde_json::Value, QueryError> {
        let rows = client
            .query("SELECT seq, title FROM titles ORDER BY seq", &[])
            .await
            .map_err(query_error)?;
        let titles: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(serde_json::json!(titles))
    }
}

fn titled(seq: u64, id: &str, title: &str) -> Event {
    Event::from_parts(
        &Default::default(),
        format!("evt.blogpost.{id}.BlogPostTitleChanged"),
        "EVT_BLOGPOST".into(),
        seq,
        "2025-01-01T00:00:00Z".into(),
        BTreeMap::new(),
        serde_json::to_vec(&serde_json::json!({ "title": title }))
            .expect("encodes")
            .into(),
    )
    .expect("an event subject")
}

fn store_query(path: &[&str]) -> Query {
    Query {
        projection: "titles".into(),
        path: path.iter().map(|s| s.to_string()).collect(),
        body: Default::default(),
        // A default server's max_payload, less the answer's headroom.
        budget: 1024 * 1024 - 4096,
    }
}

/// The checkpoint rows of `schema`, as SQL sees them.
async fn checkpoint_rows(db: &TestDb, schema: &str) -> BTreeMap<String, i64> {
    db.client()
        .await
        .query(
            &format!("SELECT stream, seq FROM \"{schema}\".jetsource_checkpoint"),
            &[],
        )
        .await
        .expect("checkpoint rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn a_failing_statement_keeps_the_events_before_it_and_only_those() {
    let db = TestDb::new().await;
    let store = PgStore::new(db.url(), Titles).expect("a store");
    let opened = store.open(0, 7).await.expect("opens");
    assert_eq!(
        opened,
        Checkpoint {
            lease: 7,
            ..Checkpoint::default()
        }
    );
    let events = vec![
        titled(1, "p1", "one"),
        titled(2, "p2", "two"),
        titled(3, "p1", "poison"),
        titled(4, "p2", "four"),
    ];
    let committed = store.commit(0, &opened, &events).await.expect("commits");
    assert_eq!(committed.applied, 2);
    assert_eq!(
        committed.failure.as_ref().map(|e| e.kind()),
        Some(jetsource::projector::ProjectorErrorKind::Invalid)
    );
    let stored = store.refresh(0).await.expect("reads").expect("a schema");
    assert_eq!(
        stored.positions,
        BTreeMap::from([("EVT_BLOGPOST".to_string(), 2)])
    );
    assert_eq!(
        store
            .query(0, &store_query(&["all"]))
            .await
            .expect("answers"),
        serde_json::json!([[1, "one"], [2, "two"]])
    );
    assert_eq!(
        checkpoint_rows(&db, "titles_g0").await,
        BTreeMap::from([("EVT_BLOGPOST".to_string(), 2)])
    );
    assert_eq!(store.refresh(1).await.expect("reads"), None);
}

#[tokio::test]
async fn a_commit_under_an_older_lease_is_refused_and_stores_nothing() {
    let db = TestDb::new().await;
    let store = PgStore::new(db.url(), Titles).expect("a store");
    let first = store.open(0, 1).await.expect("opens");
    let other = PgStore::new(db.url(), Titles).expect("a second store");
    let second = other.open(0, 2).await.expect("opens again");
    assert_eq!(second.lease, 2);
    let refused = store
        .commit(0, &first, &[titled(1, "p1", "late")])
        .await
        .expect_err("fenced out");
    assert_eq!(refused.kind(), ProjectionErrorKind::Conflict);
    assert_eq!(
        store
            .query(0, &store_query(&["all"]))
            .await
            .expect("answers"),
        serde_json::json!([])
    );
    let committed = other
        .commit(0, &second, &[titled(1, "p1", "current")])
        .await
        .expect("commits");
    assert_eq!(committed.applied, 1);
    other.remove(0).await.expect("drops");
    assert_eq!(other.refresh(0).await.expect("reads"), None);
}

// ---- through the runtime ----------------------------------------------------

use jetsource::projector::control::{self, RebuildUpdate};
use jetsource::projector::{parked, OnPoison, ProjectorConfig, ProjectorRuntime};
use jetsource_postgres::HostPostgres;
use jetsource_reference::blog::BlogPostEvent;
use jetsource_reference::blogposts_pg::BlogPostsPg;
use std::time::Duration;

const STREAM: &str = "EVT_BLOGPOST";

/// The schema `jetsource_projections` names as served for `name`.
async fn served_schema(db: &TestDb, name: &str) -> String {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT generation FROM jetsource_projections WHERE name = $1",
            &[&name],
        )
        .await
        .expect("a served generation");
    format!("{name}_g{}", row.get::<_, i64>(0))
}

/// Asserts that `posts` in `schema` (those whose id starts with the
/// prefix of `written`) is the fold of the posts written:
/// every post once, with all its `per_post` events counted exactly once,
/// its last title, published, and its last sequence.
async fn assert_folded(db: &TestDb, schema: &str, written: &[(String, u64)], per_post: usize) {
    let prefix = format!("{}%", &written[0].0[..1]);
    let rows = db
        .client()
        .await
        .query(
            &format!(
                "SELECT id, title, published, events, last_seq FROM \"{schema}\".posts \
                 WHERE id LIKE $1 ORDER BY id"
            ),
            &[&prefix],
        )
        .await
        .expect("rows");
    let mut expected: Vec<(String, String, bool, i64, i64)> = written
        .iter()
        .map(|(id, last)| {
            (
                id.clone(),
                format!("{id} t{}", per_post.saturating_sub(2)),
                per_post > 1,
                per_post as i64,
                *last as i64,
            )
        })
        .collect();
    expected.sort();
    let found: Vec<(String, String, bool, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(found.len(), expected.len(), "one row per post");
    assert_eq!(found, expected, "the tables are the fold of the stream");
}

fn fast_config() -> ProjectorConfig {
    ProjectorConfig {
        lease_ttl: Duration::from_secs(1),
        retry_backoff: Duration::from_millis(20),
        ..ProjectorConfig::default()
    }
}

async fn start_pg(client: &async_nats::Client, db: &TestDb, config: ProjectorConfig) -> Projectors {
    Projectors::start(
        ProjectorRuntime::builder(client.clone())
            .config(config)
            .postgres(db.url(), BlogPostsPg)
            .expect("a valid URL and name"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_rows_out_and_a_restart_resumes_without_applying_twice() {
    let server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start(&url).await;
    let client = connect(&url).await;
    let db = TestDb::new().await;
    let (written, last) = write_blog_posts(&js.store, "p", 40, 3).await;

    let projectors = start_pg(&client, &db, fast_config()).await;
    projectors
        .wait_applied(BlogPostsPg::NAME, STREAM, last)
        .await;
    let schema = served_schema(&db, BlogPostsPg::NAME).await;
    assert_eq!(schema, "blogposts_pg_g0");
    assert_folded(&db, &schema, &written, 3).await;
    assert_eq!(
        checkpoint_rows(&db, &schema).await,
        BTreeMap::from([(STREAM.to_string(), last as i64)]),
        "the checkpoint row holds what the rows hold"
    );

    // Queries answer from the tables.
    let got = query(&client, "query.blogposts_pg.get.p00003", None).await;
    assert_eq!(got["status"], "ok", "{got}");
    assert_eq!(got["result"]["title"], "p00003 t1");
    assert_eq!(got["result"]["events"], 3);
    let missing = query(&client, "query.blogposts_pg.get.nope", None).await;
    assert_eq!(missing["status"], "not_found", "{missing}");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let body = match &after {
            Some(cursor) => serde_json::json!({"limit": 7, "after": cursor}),
            None => serde_json::json!({"limit": 7}),
        };
        let reply = client
            .request(
                "query.blogposts_pg.list",
                serde_json::to_vec(&body).expect("JSON").into(),
            )
            .await
            .expect("a page");
        let page: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
        assert_eq!(page["status"], "ok", "{page}");
        let items = page["result"]["items"].as_array().expect("items");
        assert!(items.len() <= 7);
        seen.extend(
            items
                .iter()
                .map(|i| i["id"].as_str().expect("an id").to_string()),
        );
        match page["result"]["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    let mut ids: Vec<String> = written.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    assert_eq!(seen, ids, "every post once, in id order");
    let bad = client
        .request("query.blogposts_pg.list", "[1]".into())
        .await
        .expect("an answer");
    let bad: serde_json::Value = serde_json::from_slice(&bad.payload).expect("JSON");
    assert_eq!(bad["status"], "bad_request", "{bad}");

    // A restart resumes from the checkpoint: nothing is applied twice.
    projectors.stop().await.expect("stops");
    let (more, last) = write_blog_posts(&js.store, "q", 10, 4).await;
    let projectors = start_pg(&client, &db, fast_config()).await;
    projectors
        .wait_applied(BlogPostsPg::NAME, STREAM, last)
        .await;
    assert_folded(&db, &schema, &written, 3).await;
    assert_folded(&db, &schema, &more, 4).await;
    assert_eq!(
        checkpoint_rows(&db, &schema).await,
        BTreeMap::from([(STREAM.to_string(), last as i64)])
    );
    projectors.stop().await.expect("stops");
    js.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_fills_a_new_schema_switches_and_drops_the_old_one() {
    let server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start(&url).await;
    let client = connect(&url).await;
    let db = TestDb::new().await;
    let (written, last) = write_blog_posts(&js.store, "p", 50, 4).await;
    let projectors = start_pg(&client, &db, fast_config()).await;
    projectors
        .wait_applied(BlogPostsPg::NAME, STREAM, last)
        .await;
    assert_eq!(
        served_schema(&db, BlogPostsPg::NAME).await,
        "blogposts_pg_g0"
    );

    let done = control::rebuild(&client, BlogPostsPg::NAME, HANG, |_| {})
        .await
        .expect("rebuilt");
    match done {
        RebuildUpdate::Done {
            generation, events, ..
        } => {
            assert_eq!(generation, 1);
            assert_eq!(events, last);
        }
        other => panic!("not done: {other:?}"),
    }
    let schema = served_schema(&db, BlogPostsPg::NAME).await;
    assert_eq!(schema, "blogposts_pg_g1");
    assert_folded(&db, &schema, &written, 4).await;
    let schemas: Vec<String> = db
        .client()
        .await
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'blogposts_pg_g%' ORDER BY 1",
            &[],
        )
        .await
        .expect("schemas")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(schemas, ["blogposts_pg_g1"], "the old schema is dropped");
    // Queries and new events go to the new generation.
    let (more, last) = write_blog_posts(&js.store, "q", 3, 2).await;
    projectors
        .wait_applied(BlogPostsPg::NAME, STREAM, last)
        .await;
    let got = query(
        &client,
        &format!("query.blogposts_pg.get.{}", more[0].0),
        None,
    )
    .await;
    assert_eq!(got["status"], "ok", "{got}");
    assert_eq!(got["result"]["events"], 2);
    projectors.stop().await.expect("stops");
    js.stop().await;
}

/// Titles, hosted on the runtime with the skip policy.
struct SkippingTitles;

impl PgProjector for SkippingTitles {
    type Input = Envelope<BlogPost>;
    fn name(&self) -> &'static str {
        Titles.name()
    }
    fn migrations(&self) -> &'static [&'static str] {
        Titles.migrations()
    }
    async fn apply(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        input: Envelope<BlogPost>,
    ) -> Result<(), ProjectorError> {
        Titles.apply(tx, input).await
    }
    async fn query(
        &self,
        client: &tokio_postgres::Client,
        query: &Query,
    ) -> Result<serde_json::Value, QueryError> {
        Titles.query(client, query).await
    }
    fn poison_policy(
        &self,
        _default: jetsource::projector::PoisonPolicy,
    ) -> jetsource::projector::PoisonPolicy {
        jetsource::projector::PoisonPolicy {
            max_deliveries: 3,
            on_poison: OnPoison::Skip,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_statement_is_retried_then_parked_and_the_rest_go_on() {
    let server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start(&url).await;
    let client = connect(&url).await;
    let db = TestDb::new().await;
    let (written, _) = write_blog_posts(&js.store, "p", 5, 1).await;
    let (id, created) = &written[0];
    let poison = js
        .store
        .append(
            "blogpost",
            id,
            *created,
            &[encoded(&BlogPostEvent::BlogPostTitleChanged {
                new_title: "poison".into(),
            })],
            &meta("poison"),
        )
        .await
        .expect("append")[0];
    let (_, last) = write_blog_posts(&js.store, "q", 5, 1).await;
    let projectors = Projectors::start(
        ProjectorRuntime::builder(client.clone())
            .config(fast_config())
            .postgres(db.url(), SkippingTitles)
            .expect("valid"),
    )
    .await;
    projectors.wait_applied("titles", STREAM, last).await;
    let parked = parked::list(&client, "titles").await.expect("parked");
    assert_eq!(
        parked
            .iter()
            .map(|p| (p.seq, p.deliveries))
            .collect::<Vec<_>>(),
        [(poison, 3)]
    );
    let titles = query(&client, "query.titles.all", None).await;
    let seqs: Vec<u64> = titles["result"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r[0].as_u64().expect("seq"))
        .collect();
    let expected: Vec<u64> = (1..=last).filter(|s| *s != poison).collect();
    assert_eq!(seqs, expected, "every event but the parked one, once");
    assert_eq!(
        checkpoint_rows(&db, "titles_g0").await,
        BTreeMap::from([(STREAM.to_string(), last as i64)])
    );
    projectors.stop().await.expect("stops");
    js.stop().await;
}

/// The checkpoint of `schema` for the stream, 0 while it has none (or no
/// schema yet).
async fn stored_seq(db: &TestDb, schema: &str) -> u64 {
    let client = db.client().await;
    client
        .query_opt(
            &format!("SELECT seq FROM \"{schema}\".jetsource_checkpoint WHERE stream = $1"),
            &[&STREAM],
        )
        .await
        .ok()
        .flatten()
        .map_or(0, |r| r.get::<_, i64>(0) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_replay_again_and_again_leaves_the_tables_the_fold_of_the_stream() {
    const PER_POST: usize = 10;
    let server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start(&url).await;
    let db = TestDb::new().await;
    let (written, last) = write_blog_posts(&js.store, "p", 2000, PER_POST).await;
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
    let env = [
        ("RUST_LOG", "info"),
        ("JETSOURCE_ROLES", "projectors"),
        ("JETSOURCE_POSTGRES_URL", db.url()),
    ];
    let schema = "blogposts_pg_g0";
    let (mut stored, mut mid_replay) = (0, 0);
    for round in 0..4 {
        let mut process =
            tokio::task::block_in_place(|| JetsourceProcess::spawn(dir.path(), &args, &env));
        // Killed as soon as it has stored a batch more than the last one.
        let before = stored;
        eventually(format!("round {round} storing a batch"), HANG, || async {
            let now = stored_seq(&db, schema).await;
            (now > before || now == last).then_some(())
        })
        .await;
        tokio::task::block_in_place(|| process.kill());
        let after_kill = stored_seq(&db, schema).await;
        if after_kill < last {
            mid_replay += 1;
        }
        stored = after_kill;
    }
    assert!(mid_replay > 0, "no kill landed mid-replay");
    let _process = tokio::task::block_in_place(|| JetsourceProcess::spawn(dir.path(), &args, &env));
    eventually("the replay completing", HANG, || async {
        (stored_seq(&db, schema).await == last).then_some(())
    })
    .await;
    assert_folded(&db, schema, &written, PER_POST).await;
    js.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subject_prefixes_keep_their_read_models_apart_in_one_database() {
    let server = NatsServer::new();
    let url = server.client_url();
    let client = connect(&url).await;
    let db = TestDb::new().await;
    let shop = jetsource::schemas::Namespace::new("acme.shop").expect("a prefix");
    let plain = Jetsource::start(&url).await;
    let prefixed = Jetsource::start_with(
        &url,
        jetsource::RuntimeConfig {
            namespace: shop.clone(),
            ..jetsource::RuntimeConfig::default()
        },
    )
    .await;
    let (plain_posts, plain_last) = write_blog_posts(&plain.store, "p", 12, 2).await;
    let (shop_posts, shop_last) = write_blog_posts(&prefixed.store, "s", 7, 3).await;

    let plain_projectors = start_pg(&client, &db, fast_config()).await;
    let shop_projectors = start_pg(
        &client,
        &db,
        ProjectorConfig {
            namespace: shop.clone(),
            ..fast_config()
        },
    )
    .await;
    plain_projectors
        .wait_applied(BlogPostsPg::NAME, STREAM, plain_last)
        .await;
    shop_projectors
        .wait_applied(BlogPostsPg::NAME, &shop.stream_name("blogpost"), shop_last)
        .await;

    // Each in its own schema, named as its buckets are; the default one as
    // before, so a deployment upgrading keeps its tables.
    let plain_schema = served_schema(&db, BlogPostsPg::NAME).await;
    let shop_schema = served_schema(&db, &shop.bucket(BlogPostsPg::NAME)).await;
    assert_eq!(plain_schema, "blogposts_pg_g0");
    assert_eq!(shop_schema, "ACME_SHOP_blogposts_pg_g0");
    let rows = |schema: String| {
        let db = &db;
        async move {
            db.client()
                .await
                .query_one(&format!("SELECT count(*) FROM \"{schema}\".posts"), &[])
                .await
                .expect("a count")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(rows(plain_schema.clone()).await, 12, "only its own posts");
    assert_eq!(rows(shop_schema.clone()).await, 7, "only its own posts");
    assert_folded(&db, &plain_schema, &plain_posts, 2).await;
    assert_folded(&db, &shop_schema, &shop_posts, 3).await;
    // Each answers from its own tables.
    let got = query(&client, "acme.shop.query.blogposts_pg.get.s00001", None).await;
    assert_eq!(got["result"]["events"], 3, "{got}");
    let got = query(&client, "query.blogposts_pg.get.s00001", None).await;
    assert_eq!(got["status"], "not_found", "{got}");

    shop_projectors.stop().await.expect("stops");
    plain_projectors.stop().await.expect("stops");
    prefixed.stop().await;
    plain.stop().await;
}
