//! The blog domain from the Rewind post: the reference plugin.
//!
//! It is written only against jetsource's public API, exactly as an
//! aggregate in a user's own crate would be.
//!
//! Rules: `create` on an existing post is a `validation` error; any other
//! command on a missing post is `not_found`; a title, trimmed, must be 1 to
//! 200 characters; a post is published once; `create` with `"publish": true`
//! yields both events, appended atomically.
//!
//! Its events are at version 2: version 2 added `author` to
//! `BlogPostCreated` (version 1 posts read as by [`UNKNOWN_AUTHOR`]) and
//! renamed `BlogPostTitleChanged`'s `title` to `new_title`. The upcasters in
//! [`BlogPost::upcasters`] read version 1 events as version 2 ones.

use jetsource_handlers::{Aggregate, Rejection};
use jetsource_schemas::upcast::Upcasters;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// The author of a post created without one, and of every post stored
/// before posts had authors (event version 1).
pub const UNKNOWN_AUTHOR: &str = "unknown";

/// The longest author name, in characters.
pub const MAX_AUTHOR_CHARS: usize = 100;

/// A blog post, as much as its commands need to know.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlogPost {
    exists: bool,
    title: String,
    published: bool,
}

/// Commands on a blog post: `cmd.blogpost.<id>.<name>` with the fields as
/// the JSON body. Unknown fields are refused (`bad_request`) so a typo never
/// passes silently.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BlogPostCommand {
    /// Creates the post, and publishes it at once when `publish` is true.
    Create {
        /// The title, 1 to 200 characters once trimmed.
        title: String,
        /// The text.
        body: String,
        /// Who wrote it, at most 100 characters; `unknown` when not given.
        #[serde(default)]
        author: Option<String>,
        /// Publish in the same atomic append.
        #[serde(default)]
        publish: bool,
    },
    /// Changes the title.
    ChangeTitle {
        /// The new title, 1 to 200 characters once trimmed.
        title: String,
    },
    /// Publishes the post.
    Publish {},
}

/// Events of a blog post: `evt.blogpost.<id>.<EventType>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BlogPostEvent {
    /// The post was created.
    BlogPostCreated {
        /// The trimmed title.
        title: String,
        /// The text.
        body: String,
        /// Who wrote it (since version 2; `unknown` for older posts).
        author: String,
    },
    /// The title changed.
    BlogPostTitleChanged {
        /// The trimmed new title (named `title` before version 2).
        new_title: String,
    },
    /// The post was published.
    BlogPostPublished {},
}

/// The title trimmed, or why it is refused. A title with nothing to trim
/// is kept as it came (no copy per command).
fn checked_title(title: String) -> Result<String, Rejection> {
    let trimmed = title.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(Rejection::validation("the title is empty"));
    }
    if chars > MAX_TITLE_CHARS {
        return Err(Rejection::validation(format!(
            "the title is {chars} characters long; at most {MAX_TITLE_CHARS} are allowed"
        )));
    }
    if trimmed.len() == title.len() {
        Ok(title)
    } else {
        Ok(trimmed.to_string())
    }
}

/// The author trimmed (`unknown` when none or blank), or why it is refused.
fn checked_author(author: Option<String>) -> Result<String, Rejection> {
    let author = author.as_deref().map(str::trim).unwrap_or_default();
    let chars = author.chars().count();
    if chars > MAX_AUTHOR_CHARS {
        return Err(Rejection::validation(format!(
            "the author is {chars} characters long; at most {MAX_AUTHOR_CHARS} are allowed"
        )));
    }
    Ok(match author {
        "" => UNKNOWN_AUTHOR.to_string(),
        named => named.to_string(),
    })
}

impl Aggregate for BlogPost {
    const TYPE: &'static str = "blogpost";
    const EVENT_VERSION: u32 = 2;
    type Command = BlogPostCommand;
    type Event = BlogPostEvent;

    fn upcasters() -> Upcasters {
        Upcasters::new()
            .add_field(1, "BlogPostCreated", "author", UNKNOWN_AUTHOR.into())
            .rename_field(1, "BlogPostTitleChanged", "title", "new_title")
    }

    fn handle(&self, command: BlogPostCommand) -> Result<Vec<BlogPostEvent>, Rejection> {
        match command {
            BlogPostCommand::Create { .. } if self.exists => {
                Err(Rejection::validation("the post already exists"))
            }
            BlogPostCommand::Create {
                title,
                body,
                author,
                publish,
            } => {
                let mut events = vec![BlogPostEvent::BlogPostCreated {
                    title: checked_title(title)?,
                    body,
                    author: checked_author(author)?,
                }];
                if publish {
                    events.push(BlogPostEvent::BlogPostPublished {});
                }
                Ok(events)
            }
            _ if !self.exists => Err(Rejection::not_found("no such post")),
            BlogPostCommand::ChangeTitle { title } => {
                let title = checked_title(title)?;
                if title == self.title {
                    return Ok(Vec::new());
                }
                Ok(vec![BlogPostEvent::BlogPostTitleChanged {
                    new_title: title,
                }])
            }
            BlogPostCommand::Publish {} if self.published => {
                Err(Rejection::validation("the post is already published"))
            }
            BlogPostCommand::Publish {} => Ok(vec![BlogPostEvent::BlogPostPublished {}]),
        }
    }

    fn apply(&mut self, event: BlogPostEvent) {
        match event {
            BlogPostEvent::BlogPostCreated { title, .. } => {
                self.exists = true;
                self.title = title;
            }
            BlogPostEvent::BlogPostTitleChanged { new_title } => self.title = new_title,
            BlogPostEvent::BlogPostPublished {} => self.published = true,
        }
    }

    fn snapshot(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self).ok()
    }

    fn from_snapshot(snapshot: serde_json::Value) -> Option<Self> {
        serde_json::from_value(snapshot).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource_handlers::testing::AggregateTest;
    use jetsource_handlers::RejectionKind;
    use BlogPostEvent::*;

    fn created() -> BlogPostEvent {
        BlogPostCreated {
            title: "Hello".into(),
            body: "text".into(),
            author: UNKNOWN_AUTHOR.into(),
        }
    }

    #[test]
    fn create_a_post() {
        AggregateTest::<BlogPost>::given_no_previous_events()
            .when_wire("create", r#"{"title":"  Hello ","body":"text"}"#)
            .then_expect_events(vec![created()]);
    }

    #[test]
    fn create_and_publish_in_one_command() {
        AggregateTest::<BlogPost>::given_no_previous_events()
            .when_wire(
                "create",
                r#"{"title":"Hello","body":"text","publish":true}"#,
            )
            .then_expect_events(vec![created(), BlogPostPublished {}]);
    }

    #[test]
    fn create_twice_is_a_validation_error() {
        AggregateTest::<BlogPost>::given(vec![created()])
            .when_wire("create", r#"{"title":"Again","body":""}"#)
            .then_expect_rejection(RejectionKind::Validation);
    }

    #[test]
    fn commands_on_a_missing_post_are_not_found() {
        AggregateTest::<BlogPost>::given_no_previous_events()
            .when_wire("change_title", r#"{"title":"x"}"#)
            .then_expect_rejection(RejectionKind::NotFound);
        AggregateTest::<BlogPost>::given_no_previous_events()
            .when_wire("publish", "")
            .then_expect_rejection(RejectionKind::NotFound);
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        for bad in ["", "   ", &"x".repeat(MAX_TITLE_CHARS + 1)] {
            AggregateTest::<BlogPost>::given(vec![created()])
                .when(BlogPostCommand::ChangeTitle {
                    title: bad.to_string(),
                })
                .then_expect_rejection(RejectionKind::Validation);
        }
        let longest = "é".repeat(MAX_TITLE_CHARS);
        AggregateTest::<BlogPost>::given(vec![created()])
            .when(BlogPostCommand::ChangeTitle {
                title: format!(" {longest} "),
            })
            .then_expect_events(vec![BlogPostTitleChanged { new_title: longest }]);
    }

    #[test]
    fn authors_are_trimmed_bounded_and_unknown_when_not_given() {
        AggregateTest::<BlogPost>::given_no_previous_events()
            .when_wire(
                "create",
                r#"{"title":"Hello","body":"text","author":" Ada "}"#,
            )
            .then_expect_events(vec![BlogPostCreated {
                title: "Hello".into(),
                body: "text".into(),
                author: "Ada".into(),
            }]);
        AggregateTest::<BlogPost>::given_no_previous_events()
            .when_wire("create", r#"{"title":"Hello","body":"text","author":"  "}"#)
            .then_expect_events(vec![created()]);
        let long = serde_json::json!({
            "title": "Hello", "body": "", "author": "x".repeat(MAX_AUTHOR_CHARS + 1)
        });
        AggregateTest::<BlogPost>::given_no_previous_events()
            .when_wire("create", &long.to_string())
            .then_expect_rejection(RejectionKind::Validation);
    }

    /// Version 1 events, as a version 1 release stored them.
    fn stored_v1() -> Vec<(u32, &'static str, serde_json::Value)> {
        vec![
            (
                1,
                "BlogPostCreated",
                serde_json::json!({"title": "Hello", "body": "text"}),
            ),
            (
                1,
                "BlogPostTitleChanged",
                serde_json::json!({"title": "Hello again"}),
            ),
        ]
    }

    #[test]
    fn version_1_events_decide_as_version_2_ones() {
        let given = AggregateTest::<BlogPost>::given_stored(stored_v1());
        assert_eq!(given.state().title, "Hello again");
        assert!(given.state().exists);
        // The renamed field carried the title: the same one changes nothing.
        AggregateTest::<BlogPost>::given_stored(stored_v1())
            .when_wire("change_title", r#"{"title":"Hello again"}"#)
            .then_expect_events(vec![]);
        AggregateTest::<BlogPost>::given_stored(stored_v1())
            .when_wire("create", r#"{"title":"Again","body":""}"#)
            .then_expect_rejection(RejectionKind::Validation);
        // Version 1 and 2 events mixed, as a long-lived post has them.
        let mut mixed = stored_v1();
        mixed.push((
            2,
            "BlogPostTitleChanged",
            serde_json::json!({"new_title": "Third"}),
        ));
        let given = AggregateTest::<BlogPost>::given_stored(mixed);
        assert_eq!(given.state().title, "Third");
    }

    /// The README's "Changing an event" example, as written there.
    #[test]
    fn the_readme_example_decides_on_version_1_events() {
        AggregateTest::<BlogPost>::given_stored(vec![
            (
                1,
                "BlogPostCreated",
                serde_json::json!({"title": "Old", "body": "b"}),
            ),
            (
                1,
                "BlogPostTitleChanged",
                serde_json::json!({"title": "Older"}),
            ),
        ])
        .when_wire("change_title", r#"{"title": "New"}"#)
        .then_expect_events(vec![BlogPostEvent::BlogPostTitleChanged {
            new_title: "New".into(),
        }]);
    }

    #[test]
    fn version_1_bodies_read_as_version_2_events() {
        let mut read = Vec::new();
        for (version, event_type, body) in stored_v1() {
            jetsource_schemas::upcast::decode_stored::<BlogPost>(
                event_type,
                version,
                body.to_string().as_bytes(),
                None,
                |_, event| read.push(event),
            )
            .expect("reads");
        }
        assert_eq!(
            read,
            [
                BlogPostCreated {
                    title: "Hello".into(),
                    body: "text".into(),
                    author: UNKNOWN_AUTHOR.into(),
                },
                BlogPostTitleChanged {
                    new_title: "Hello again".into(),
                },
            ]
        );
        // A version 1 body read as version 2 (no upcasting) does not decode.
        let err = jetsource_schemas::upcast::decode_stored::<BlogPost>(
            "BlogPostTitleChanged",
            2,
            br#"{"title":"x"}"#,
            None,
            |_, _| {},
        )
        .expect_err("the old field name");
        assert_eq!(
            err.kind(),
            jetsource_schemas::upcast::ReadEventErrorKind::Undecodable
        );
    }

    #[test]
    fn the_same_title_changes_nothing() {
        AggregateTest::<BlogPost>::given(vec![created()])
            .when_wire("change_title", r#"{"title":"Hello "}"#)
            .then_expect_events(vec![]);
    }

    #[test]
    fn publish_once() {
        AggregateTest::<BlogPost>::given(vec![created()])
            .when_wire("publish", "{}")
            .then_expect_events(vec![BlogPostPublished {}]);
        AggregateTest::<BlogPost>::given(vec![created(), BlogPostPublished {}])
            .when_wire("publish", "{}")
            .then_expect_rejection(RejectionKind::Validation);
    }
}
