//! The `blogposts` projection: the blog's read model, written only against
//! the public projector API, as a projection in a user's crate would be.
//!
//! - `query.blogposts.get.<id>`: one post (`id`, `title`, `body`,
//!   `published`, `events` applied, `last_seq`), or `not_found`;
//! - `query.blogposts.list`: `{"posts":[…]}`, every post ordered by id.

use crate::blog::BlogPostEvent;
use jetsource_projector::{
    Event, PersistedProjector, Projector, ProjectorError, ProjectorErrorKind, Query, QueryError,
};
use jetsource_schemas::token;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One post as queries see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostView {
    /// The aggregate id.
    pub id: String,
    /// The current title.
    pub title: String,
    /// The text.
    pub body: String,
    /// Whether it is published.
    pub published: bool,
    /// The number of its events applied.
    pub events: u64,
    /// The stream sequence of its last event applied.
    pub last_seq: u64,
}

/// Every blog post, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlogPosts {
    posts: BTreeMap<String, PostView>,
}

impl BlogPosts {
    /// The projection's name.
    pub const NAME: &'static str = "blogposts";

    /// The posts, by id.
    pub fn posts(&self) -> &BTreeMap<String, PostView> {
        &self.posts
    }
}

impl Projector for BlogPosts {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn subjects(&self) -> Vec<String> {
        vec!["evt.blogpost.>".to_string()]
    }

    fn apply(&mut self, event: &Event) -> Result<(), ProjectorError> {
        let decoded: BlogPostEvent = event
            .decode()
            .map_err(|e| ProjectorError::with_source(ProjectorErrorKind::Invalid, e))?;
        let post = self
            .posts
            .entry(event.aggregate_id.clone())
            .or_insert_with(|| PostView {
                id: event.aggregate_id.clone(),
                ..PostView::default()
            });
        match decoded {
            BlogPostEvent::BlogPostCreated { title, body } => {
                post.title = title;
                post.body = body;
            }
            BlogPostEvent::BlogPostTitleChanged { title } => post.title = title,
            BlogPostEvent::BlogPostPublished {} => post.published = true,
        }
        post.events += 1;
        post.last_seq = event.seq;
        Ok(())
    }

    fn query(&self, query: &Query) -> Result<serde_json::Value, QueryError> {
        match query.path_str().as_slice() {
            ["get", id] => {
                token::validate("post id", id)
                    .map_err(|e| QueryError::bad_request(e.to_string()))?;
                match self.posts.get(*id) {
                    Some(post) => to_json(post),
                    None => Err(QueryError::not_found(format!("no post {id:?}"))),
                }
            }
            ["list"] => {
                let posts: Vec<&PostView> = self.posts.values().collect();
                to_json(&serde_json::json!({ "posts": posts }))
            }
            _ => Err(QueryError::bad_request(
                "known queries: query.blogposts.get.<id>, query.blogposts.list",
            )),
        }
    }
}

/// Serialises an answer; a failure (impossible for these types) becomes a
/// reply rather than a panic.
fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, QueryError> {
    serde_json::to_value(value).map_err(|e| QueryError::bad_request(e.to_string()))
}

impl PersistedProjector for BlogPosts {
    type State = BTreeMap<String, PostView>;

    fn state(&self) -> &Self::State {
        &self.posts
    }

    fn restore(&mut self, state: Self::State) {
        self.posts = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource_schemas::Namespace;

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
        }
    }

    #[test]
    fn folds_posts_and_answers_queries() {
        let mut p = BlogPosts::default();
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
            serde_json::json!({"id":"p1","title":"B","body":"b","published":true,"events":3,"last_seq":4})
        );
        assert_eq!(
            p.query(&query(&["get", "p2"])).map_err(|e| e.code),
            Err(jetsource_projector::QueryErrorCode::NotFound)
        );
        assert_eq!(
            p.query(&query(&["nope"])).map_err(|e| e.code),
            Err(jetsource_projector::QueryErrorCode::BadRequest)
        );
        let list = p.query(&query(&["list"])).expect("list");
        assert_eq!(list["posts"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn an_unknown_event_is_refused_not_skipped() {
        let mut p = BlogPosts::default();
        let e = p
            .apply(&event("p1", 1, "BlogPostDeleted", "{}"))
            .expect_err("unknown type");
        assert_eq!(e.kind(), ProjectorErrorKind::Invalid);
        assert!(p.posts().is_empty());
    }
}
