//! The `blogposts` projection: the blog's read model, one document per
//! post (its key the post's id), written only against the public projector
//! API, as a projection in a user's crate would be. The reference app keeps
//! it in KV, one entry per post (`App::documents`), so it grows with the
//! blog, not within one message; tests also fold it in memory
//! ([`jetsource_projector::document::InMemory`]).
//!
//! - `query.blogposts.get.<id>`: one post (`id`, `title`, `body`,
//!   `author`, `published`, `events` applied, `last_seq`), or `not_found`;
//! - `query.blogposts.list` with `{"limit": n, "after": "<cursor>"}` (both
//!   optional; `limit` [`BlogPosts::LIST_DEFAULT`] when absent, at most
//!   [`BlogPosts::LIST_MAX`]): one page of posts ordered by id,
//!   `{"items":[…],"next":"<cursor>"|null}`.

use crate::blog::{BlogPost, BlogPostEvent};
use jetsource_projector::document::{self, DocumentProjector};
use jetsource_projector::{Envelope, ProjectorError, ProjectorErrorKind};
use jetsource_schemas::error::Error;
use jetsource_schemas::token;
use serde::{Deserialize, Serialize};

/// One post as queries see it: the document of one post.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostView {
    /// The aggregate id.
    pub id: String,
    /// The current title.
    pub title: String,
    /// The text.
    pub body: String,
    /// Who wrote it (`unknown` for posts created before authors, at event
    /// version 1). Absent from the PostgreSQL variant, which has no column
    /// for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Whether it is published.
    pub published: bool,
    /// When it is to be published, RFC 3339 UTC, while a publication is
    /// scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    /// The number of its events applied.
    pub events: u64,
    /// The stream sequence of its last event applied.
    pub last_seq: u64,
}

/// The blog's posts, one document each.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlogPosts;

impl BlogPosts {
    /// The projection's name.
    pub const NAME: &'static str = "blogposts";
}

impl DocumentProjector for BlogPosts {
    type Input = Envelope<BlogPost>;
    type Document = PostView;

    const LIST_DEFAULT: usize = 100;
    const LIST_MAX: usize = 1000;

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn key(&self, input: &Envelope<BlogPost>) -> Option<String> {
        Some(input.meta.aggregate_id.clone())
    }

    fn apply(
        &self,
        post: Option<PostView>,
        input: Envelope<BlogPost>,
    ) -> Result<Option<PostView>, ProjectorError> {
        let meta = input.meta;
        // A post met first by a later event (its creation was parked and
        // skipped) still shows.
        let mut post = post.unwrap_or_else(|| PostView {
            id: meta.aggregate_id.clone(),
            ..PostView::default()
        });
        match input.event {
            BlogPostEvent::BlogPostCreated {
                title,
                body,
                author,
            } => {
                post.title = title;
                post.body = body;
                post.author = Some(author);
            }
            BlogPostEvent::BlogPostTitleChanged { new_title } => post.title = new_title,
            BlogPostEvent::BlogPostPublished {} => {
                post.published = true;
                post.scheduled_at = None;
            }
            BlogPostEvent::BlogPostPublishScheduled { at } => post.scheduled_at = Some(at),
            BlogPostEvent::BlogPostPublishUnscheduled {} => post.scheduled_at = None,
        }
        post.events += 1;
        post.last_seq = meta.seq;
        Ok(Some(post))
    }

    /// A post's id is an aggregate id: a query naming anything else is
    /// `bad_request`, not `not_found`.
    fn check_key(&self, key: &str) -> Result<(), ProjectorError> {
        document::check_key(key)?;
        token::validate("post id", key)
            .map_err(|e| Error::new(ProjectorErrorKind::BadKey, e.to_string()))
    }

    /// A post names its id: listed as it is.
    fn list_item(&self, _key: &str, post: serde_json::Value) -> serde_json::Value {
        post
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource_projector::document::InMemory;
    use jetsource_projector::{Event, Projector, Query, QueryErrorCode};
    use jetsource_schemas::Namespace;
    use std::collections::BTreeMap;

    fn event(id: &str, seq: u64, event_type: &str, body: &str) -> Event {
        Event::from_parts(
            &Namespace::default(),
            format!("evt.blogpost.{id}.{event_type}"),
            "EVT_BLOGPOST".into(),
            seq,
            "2025-01-01T00:00:00Z".into(),
            BTreeMap::new(),
            body.to_string().into(),
        )
        .expect("an event subject")
    }

    fn query(path: &[&str]) -> Query {
        Query {
            projection: "blogposts".into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            body: Default::default(),
            budget: 1 << 20,
        }
    }

    #[test]
    fn folds_posts_and_answers_queries() {
        let mut p = InMemory::new(BlogPosts);
        p.apply(&event(
            "p1",
            1,
            "BlogPostCreated",
            r#"{"title":"A","body":"b"}"#,
        ))
        .expect("applies");
        p.apply(&event("p1", 3, "BlogPostTitleChanged", r#"{"title":"B"}"#))
            .expect("applies");
        p.apply(&event("p1", 4, "BlogPostPublished", "{}"))
            .expect("applies");
        let got = p.query(&query(&["get", "p1"])).expect("found");
        assert_eq!(
            got,
            // Version 1 events (no Event-Version), read as version 2.
            serde_json::json!({"id":"p1","title":"B","body":"b","author":"unknown","published":true,"events":3,"last_seq":4})
        );
        assert_eq!(
            p.query(&query(&["get", "p2"])).map_err(|e| e.code),
            Err(QueryErrorCode::NotFound)
        );
        for bad in [
            &["nope"][..],
            &["get"],
            &["get", "a", "b"],
            &["list", "more"],
        ] {
            assert_eq!(
                p.query(&query(bad)).map_err(|e| e.code),
                Err(QueryErrorCode::BadRequest),
                "{bad:?}"
            );
        }
        let list = p.query(&query(&["list"])).expect("list");
        assert_eq!(list["items"], serde_json::json!([got]));
        assert_eq!(list["next"], serde_json::Value::Null);
    }

    #[test]
    fn a_key_no_post_can_have_is_bad_request_not_not_found() {
        let p = InMemory::new(BlogPosts);
        // A valid document key, but longer than any aggregate id.
        let long = "x".repeat(token::MAX_TOKEN_LEN + 1);
        assert!(document::check_key(&long).is_ok());
        assert_eq!(
            p.query(&query(&["get", &long])).map_err(|e| e.code),
            Err(QueryErrorCode::BadRequest)
        );
        assert_eq!(
            p.query(&query(&["get", &"x".repeat(token::MAX_TOKEN_LEN)]))
                .map_err(|e| e.code),
            Err(QueryErrorCode::NotFound)
        );
    }

    #[test]
    fn an_unknown_event_is_refused_not_skipped() {
        let mut p = InMemory::new(BlogPosts);
        let e = p
            .apply(&event("p1", 1, "BlogPostDeleted", "{}"))
            .expect_err("unknown type");
        assert_eq!(e.kind(), ProjectorErrorKind::Invalid);
        assert!(p.documents().is_empty());
    }

    #[test]
    fn a_body_that_does_not_decode_is_refused() {
        let mut p = InMemory::new(BlogPosts);
        let e = p
            .apply(&event("p1", 1, "BlogPostCreated", r#"{"title":1}"#))
            .expect_err("a bad body");
        assert_eq!(e.kind(), ProjectorErrorKind::Invalid);
        assert!(p.documents().is_empty());
    }

    #[test]
    fn the_list_is_read_page_by_page_in_id_order() {
        let mut p = InMemory::new(BlogPosts);
        for (seq, id) in ["c", "a", "b"].into_iter().enumerate() {
            let body = r#"{"title":"T","body":"b"}"#;
            p.apply(&event(id, seq as u64 + 1, "BlogPostCreated", body))
                .expect("applies");
        }
        let mut asked = query(&["list"]);
        asked.body = r#"{"limit":2}"#.into();
        let first = p.query(&asked).expect("a page");
        assert_eq!(first["items"][0]["id"], "a");
        assert_eq!(first["items"][1]["id"], "b");
        assert_eq!(first["next"], "b");
        asked.body = r#"{"limit":2,"after":"b"}"#.into();
        let last = p.query(&asked).expect("a page");
        assert_eq!(last["items"][0]["id"], "c");
        assert_eq!(last["next"], serde_json::Value::Null);
        // Never more than LIST_MAX, whatever is asked.
        for i in 0..BlogPosts::LIST_MAX + 5 {
            p.apply(&event(
                &format!("q{i:05}"),
                10 + i as u64,
                "BlogPostPublished",
                "{}",
            ))
            .expect("applies");
        }
        asked.body = r#"{"limit":5000}"#.into();
        let capped = p.query(&asked).expect("a page");
        assert_eq!(
            capped["items"].as_array().map(Vec::len),
            Some(BlogPosts::LIST_MAX)
        );
    }
}
