//! The `blogposts_pg` projection: the blog's read model in a PostgreSQL
//! table `posts`, written only against the public APIs, as a user's
//! PostgreSQL read model would be. Hosted when a PostgreSQL URL is
//! configured (`[projectors] postgres_url`).
//!
//! - `query.blogposts_pg.get.<id>`: one post (`id`, `title`, `body`,
//!   `published`, `events` applied, `last_seq`), or `not_found`;
//! - `query.blogposts_pg.list` with an optional body `{"limit":n,
//!   "after":"<cursor>"}`: `{"items":[…],"next":"<cursor>"|null}`, posts in
//!   id order, at most [`LIST_MAX`] a page ([`LIST_DEFAULT`] by default).

use crate::blog::{BlogPost, BlogPostEvent};
use crate::blogposts::PostView;
use jetsource_postgres::{projector_error, query_error, PgProjector};
use jetsource_projector::{Envelope, ProjectorError, Query, QueryError};
use jetsource_schemas::page::{self, PageRequest};
use jetsource_schemas::token;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row, Transaction};

/// Posts in a `list` page when the request names no limit.
pub const LIST_DEFAULT: usize = 100;
/// The most posts in a `list` page.
pub const LIST_MAX: usize = 1000;
/// The bytes a page's posts may take: half of NATS's default
/// `max_payload`, so an answer always fits a message.
pub const LIST_BUDGET: usize = 512 * 1024;

/// The blog's read model in PostgreSQL.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlogPostsPg;

impl BlogPostsPg {
    /// The projection's name.
    pub const NAME: &'static str = "blogposts_pg";
}

const COLUMNS: &str = "id, title, body, published, events, last_seq";

fn view(row: &Row) -> PostView {
    let count = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    PostView {
        id: row.get(0),
        title: row.get(1),
        body: row.get(2),
        author: None,
        scheduled_at: None,
        published: row.get(3),
        events: count(4),
        last_seq: count(5),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, QueryError> {
    serde_json::to_value(value).map_err(|e| QueryError::bad_request(e.to_string()))
}

impl PgProjector for BlogPostsPg {
    type Input = Envelope<BlogPost>;

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn migrations(&self) -> &'static [&'static str] {
        &["CREATE TABLE posts (
            id text PRIMARY KEY,
            title text NOT NULL,
            body text NOT NULL,
            published boolean NOT NULL,
            events bigint NOT NULL,
            last_seq bigint NOT NULL
        )"]
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        input: Envelope<BlogPost>,
    ) -> Result<(), ProjectorError> {
        let id = &input.meta.aggregate_id;
        let seq = i64::try_from(input.meta.seq).unwrap_or(i64::MAX);
        // Every event counts and moves last_seq; a post met first by a
        // later event (its creation was parked and skipped) still shows.
        let (title, body, published, set) = match input.event {
            BlogPostEvent::BlogPostCreated { title, body, .. } => (
                title,
                body,
                false,
                "title = excluded.title, body = excluded.body",
            ),
            BlogPostEvent::BlogPostTitleChanged { new_title } => {
                (new_title, String::new(), false, "title = excluded.title")
            }
            BlogPostEvent::BlogPostPublished {} => {
                (String::new(), String::new(), true, "published = true")
            }
            // The table has no column for a schedule: the event only counts.
            BlogPostEvent::BlogPostPublishScheduled { .. }
            | BlogPostEvent::BlogPostPublishUnscheduled {} => (
                String::new(),
                String::new(),
                false,
                "published = posts.published",
            ),
        };
        // Typed parameters: one round trip, where SQL text alone would be
        // prepared first.
        tx.execute_typed(
            &format!(
                "INSERT INTO posts ({COLUMNS}) VALUES ($1, $2, $3, $4, 1, $5)
                 ON CONFLICT (id) DO UPDATE SET {set},
                 events = posts.events + 1, last_seq = excluded.last_seq"
            ),
            &[
                (id, Type::TEXT),
                (&title, Type::TEXT),
                (&body, Type::TEXT),
                (&published, Type::BOOL),
                (&seq, Type::INT8),
            ],
        )
        .await
        .map_err(projector_error)?;
        Ok(())
    }

    async fn query(&self, client: &Client, query: &Query) -> Result<serde_json::Value, QueryError> {
        match query.path_str().as_slice() {
            ["get", id] => {
                token::validate("post id", id)
                    .map_err(|e| QueryError::bad_request(e.to_string()))?;
                let row = client
                    .query_opt(&format!("SELECT {COLUMNS} FROM posts WHERE id = $1"), &[id])
                    .await
                    .map_err(query_error)?;
                match row {
                    Some(row) => to_json(&view(&row)),
                    None => Err(QueryError::not_found(format!("no post {id:?}"))),
                }
            }
            ["list"] => {
                let request = PageRequest::parse(&query.body)
                    .map_err(|e| QueryError::bad_request(e.to_string()))?;
                let limit = request.limit_or(LIST_DEFAULT, LIST_MAX);
                // One more than the page, to know whether another follows.
                let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
                let after = request.after.unwrap_or_default();
                let rows = client
                    .query(
                        &format!("SELECT {COLUMNS} FROM posts WHERE id > $1 ORDER BY id LIMIT $2"),
                        &[&after, &fetch],
                    )
                    .await
                    .map_err(query_error)?;
                let posts: Vec<PostView> = rows.iter().map(view).collect();
                let (items, more) = page::fill(posts, limit, LIST_BUDGET);
                let next = if more {
                    items.last().map(|post| post.id.clone())
                } else {
                    None
                };
                to_json(&serde_json::json!({ "items": items, "next": next }))
            }
            _ => Err(QueryError::bad_request(
                "known queries: query.blogposts_pg.get.<id>, query.blogposts_pg.list",
            )),
        }
    }
}
