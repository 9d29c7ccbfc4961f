//! The blog domain from the Rewind post: the reference plugin.
//!
//! It is written only against jetsource's public API, exactly as an
//! aggregate in a user's own crate would be.
//!
//! Rules: `create` on an existing post is a `validation` error; any other
//! command on a missing post is `not_found`; a title, trimmed, must be 1 to
//! 200 characters; a post is published once; `create` with `"publish": true`
//! yields both events, appended atomically. `schedule_publish {"at": …}`
//! records a time to publish at (an RFC 3339 time in the future, for a post
//! not published yet; scheduling again moves it), `unschedule_publish {}`
//! withdraws it; the [`ScheduledPublishing`](crate::publishing::ScheduledPublishing)
//! process manager publishes the post at that time.
//!
//! Its events are at version 2: version 2 added `author` to
//! `BlogPostCreated` (version 1 posts read as by [`UNKNOWN_AUTHOR`]) and
//! renamed `BlogPostTitleChanged`'s `title` to `new_title`. The upcasters in
//! [`BlogPost::upcasters`] read version 1 events as version 2 ones.

use jetsource_handlers::{Aggregate, Rejection};
use jetsource_schemas::upcast::Upcasters;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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
    /// When it is to be published, RFC 3339 UTC (absent in snapshots taken
    /// before posts could be scheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheduled: Option<String>,
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
    /// Publishes the post at a time: recorded now, carried out then by the
    /// scheduled-publishing process manager. Scheduling again moves it.
    SchedulePublish {
        /// When, an RFC 3339 time in the future (`2027-01-01T09:00:00Z`).
        at: String,
    },
    /// Withdraws the scheduled publication.
    UnschedulePublish {},
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
    /// The post is to be published at `at` (replacing an earlier time).
    BlogPostPublishScheduled {
        /// When, RFC 3339 UTC.
        at: String,
    },
    /// The scheduled publication was withdrawn.
    BlogPostPublishUnscheduled {},
}

/// The longest a publication may be scheduled ahead, in days: a time
/// further out is more likely a typo than a plan.
pub const MAX_SCHEDULE_DAYS: i64 = 3660;

/// `at` as an RFC 3339 UTC time in the future (by the clock of the
/// process deciding), or why it is refused.
fn checked_schedule(at: &str) -> Result<String, Rejection> {
    let when = OffsetDateTime::parse(at.trim(), &Rfc3339).map_err(|_| {
        Rejection::validation("at must be an RFC 3339 time, like 2027-01-01T09:00:00Z")
    })?;
    // The one check against the clock: whether the time asked for is still
    // ahead. The event records the time itself, so replaying never asks the
    // clock again.
    let now = OffsetDateTime::now_utc();
    if when <= now {
        return Err(Rejection::validation("at must be in the future"));
    }
    if when - now > time::Duration::days(MAX_SCHEDULE_DAYS) {
        return Err(Rejection::validation(format!(
            "at must be within {MAX_SCHEDULE_DAYS} days"
        )));
    }
    when.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|_| Rejection::validation("at is out of range"))
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
            BlogPostCommand::SchedulePublish { .. } if self.published => {
                Err(Rejection::validation("the post is already published"))
            }
            BlogPostCommand::SchedulePublish { at } => {
                Ok(vec![BlogPostEvent::BlogPostPublishScheduled {
                    at: checked_schedule(&at)?,
                }])
            }
            BlogPostCommand::UnschedulePublish {} if self.scheduled.is_none() => {
                Err(Rejection::validation("no publication is scheduled"))
            }
            BlogPostCommand::UnschedulePublish {} => {
                Ok(vec![BlogPostEvent::BlogPostPublishUnscheduled {}])
            }
        }
    }

    fn apply(&mut self, event: BlogPostEvent) {
        match event {
            BlogPostEvent::BlogPostCreated { title, .. } => {
                self.exists = true;
                self.title = title;
            }
            BlogPostEvent::BlogPostTitleChanged { new_title } => self.title = new_title,
            BlogPostEvent::BlogPostPublished {} => {
                self.published = true;
                self.scheduled = None;
            }
            BlogPostEvent::BlogPostPublishScheduled { at } => self.scheduled = Some(at),
            BlogPostEvent::BlogPostPublishUnscheduled {} => self.scheduled = None,
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

    fn in_a_minute() -> String {
        (OffsetDateTime::now_utc() + time::Duration::minutes(1))
            .format(&Rfc3339)
            .expect("a time")
    }

    #[test]
    fn a_publication_is_scheduled_in_utc_and_withdrawn() {
        let at = OffsetDateTime::now_utc() + time::Duration::hours(2);
        let in_paris = at
            .to_offset(time::UtcOffset::from_hms(1, 0, 0).expect("an offset"))
            .format(&Rfc3339)
            .expect("a time");
        let utc = at.format(&Rfc3339).expect("a time");
        AggregateTest::<BlogPost>::given(vec![created()])
            .when(BlogPostCommand::SchedulePublish { at: in_paris })
            .then_expect_events(vec![BlogPostPublishScheduled { at: utc.clone() }]);
        AggregateTest::<BlogPost>::given(vec![created(), BlogPostPublishScheduled { at: utc }])
            .when_wire("unschedule_publish", "{}")
            .then_expect_events(vec![BlogPostPublishUnscheduled {}]);
    }

    #[test]
    fn a_schedule_is_refused_in_the_past_unparsable_or_once_published() {
        for at in [
            "2020-01-01T00:00:00Z",
            "tomorrow",
            "",
            "9999-01-01T00:00:00Z",
        ] {
            AggregateTest::<BlogPost>::given(vec![created()])
                .when(BlogPostCommand::SchedulePublish { at: at.into() })
                .then_expect_rejection(RejectionKind::Validation);
        }
        AggregateTest::<BlogPost>::given(vec![created(), BlogPostPublished {}])
            .when(BlogPostCommand::SchedulePublish { at: in_a_minute() })
            .then_expect_rejection(RejectionKind::Validation);
        AggregateTest::<BlogPost>::given_no_previous_events()
            .when(BlogPostCommand::SchedulePublish { at: in_a_minute() })
            .then_expect_rejection(RejectionKind::NotFound);
    }

    #[test]
    fn nothing_to_withdraw_after_publishing_or_withdrawing() {
        let scheduled = || BlogPostPublishScheduled { at: in_a_minute() };
        for given in [
            vec![created()],
            vec![created(), scheduled(), BlogPostPublished {}],
            vec![created(), scheduled(), BlogPostPublishUnscheduled {}],
        ] {
            AggregateTest::<BlogPost>::given(given)
                .when_wire("unschedule_publish", "{}")
                .then_expect_rejection(RejectionKind::Validation);
        }
    }

    #[test]
    fn a_body_that_does_not_decode_is_bad_request_and_state_follows_the_events() {
        let why = AggregateTest::<BlogPost>::given_no_previous_events()
            .when_wire("create", r#"{"title":"Hello","bodyy":"typo"}"#)
            .then_expect_bad_request();
        assert!(why.contains("bodyy"), "{why}");
        let why = AggregateTest::<BlogPost>::given_no_previous_events()
            .when_wire("archive", "{}")
            .then_expect_bad_request();
        assert!(why.contains("unknown command"), "{why}");
        let state = AggregateTest::<BlogPost>::given(vec![created()])
            .when_wire("change_title", r#"{"title":"Again"}"#)
            .then_expect_events_and_state(vec![BlogPostTitleChanged {
                new_title: "Again".into(),
            }]);
        assert_eq!(state.title, "Again");
        AggregateTest::<BlogPost>::given(vec![created(), BlogPostPublished {}])
            .when_wire("publish", "{}")
            .then_expect_rejection_saying(RejectionKind::Validation, "already published");
    }
}
