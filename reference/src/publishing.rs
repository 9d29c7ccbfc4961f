//! Scheduled publishing, the reference process manager: a blog post
//! created and not published is published a set delay after its creation.
//!
//! Each post is an instance (keyed by its id). `BlogPostCreated` starts it
//! and sets the `publish` deadline at the event's time plus the delay (the
//! event's time, not the clock, so a redelivery decides the same); the
//! deadline coming sends `publish` to the post and ends the instance; a
//! `BlogPostPublished` first (the author published it by hand, or created
//! it published) ends it, which cancels the deadline.
//!
//! The delay is the manager's, not the post's: scheduling a time per post
//! (`schedule_publish {"at": …}`) needs commands of the blog post's own and
//! is not here.

use crate::blog::{BlogPost, BlogPostEvent};
use jetsource_process::{Command, ProcessManager, Reaction, Trigger};
use jetsource_projector::Envelope;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The deadline's name.
pub const PUBLISH: &str = "publish";

/// Publishes each post [`ScheduledPublishing::delay`] after its creation,
/// unless it was published before.
#[derive(Debug, Clone)]
pub struct ScheduledPublishing {
    /// How long after its creation a post is published.
    pub delay: Duration,
}

impl Default for ScheduledPublishing {
    /// One hour.
    fn default() -> Self {
        ScheduledPublishing {
            delay: Duration::from_secs(3600),
        }
    }
}

/// A post waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// The post.
    pub post: String,
}

impl ProcessManager for ScheduledPublishing {
    type Input = Envelope<BlogPost>;
    type State = Waiting;

    fn name(&self) -> &'static str {
        "publishing"
    }

    fn key(&self, input: &Envelope<BlogPost>) -> Option<String> {
        Some(input.meta.aggregate_id.clone())
    }

    fn react(
        &self,
        state: Option<Waiting>,
        trigger: Trigger<Envelope<BlogPost>>,
    ) -> Reaction<Waiting> {
        match (state, trigger) {
            (None, Trigger::Event(input)) => match input.event {
                BlogPostEvent::BlogPostCreated { .. } => {
                    // A stored event's time is RFC 3339; one that is not
                    // starts nothing rather than a deadline at a guess.
                    let Ok(created) = OffsetDateTime::parse(&input.meta.time, &Rfc3339) else {
                        return Reaction::end();
                    };
                    Reaction::keep(Waiting {
                        post: input.meta.aggregate_id,
                    })
                    .set_deadline(PUBLISH, created + self.delay)
                }
                // Not waiting: nothing to do.
                _ => Reaction::end(),
            },
            (Some(waiting), Trigger::Event(input)) => match input.event {
                BlogPostEvent::BlogPostPublished {} => Reaction::end().cancel_deadline(PUBLISH),
                _ => Reaction::keep(waiting),
            },
            (Some(waiting), Trigger::Deadline(fired)) if fired.name == PUBLISH => Reaction::end()
                .send(Command::to::<BlogPost>(
                    waiting.post,
                    "publish",
                    serde_json::json!({}),
                )),
            // Another deadline, or `publish` refused (the post was
            // published meanwhile, or deleted): nothing more to do.
            (state, Trigger::Deadline(_) | Trigger::Refused(_)) => match state {
                Some(waiting) => Reaction::keep(waiting),
                None => Reaction::end(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blog::UNKNOWN_AUTHOR;
    use jetsource_process::testing::ReactionTest;
    use jetsource_process::{Deadline, Fired};
    use jetsource_projector::Meta;

    const CREATED_AT: &str = "2026-01-01T10:00:00Z";

    fn manager() -> ScheduledPublishing {
        ScheduledPublishing {
            delay: Duration::from_secs(60),
        }
    }

    fn event(event: BlogPostEvent) -> Trigger<Envelope<BlogPost>> {
        let event_type = match &event {
            BlogPostEvent::BlogPostCreated { .. } => "BlogPostCreated",
            BlogPostEvent::BlogPostTitleChanged { .. } => "BlogPostTitleChanged",
            BlogPostEvent::BlogPostPublished {} => "BlogPostPublished",
        };
        Trigger::Event(Envelope {
            event,
            meta: Meta {
                stream: "EVT_BLOGPOST".into(),
                seq: 1,
                subject: format!("evt.blogpost.p1.{event_type}"),
                aggregate_type: "blogpost".into(),
                aggregate_id: "p1".into(),
                event_type: event_type.into(),
                version: 2,
                time: CREATED_AT.into(),
                command_id: None,
                correlation_id: None,
                causation_id: None,
            },
        })
    }

    fn created() -> Trigger<Envelope<BlogPost>> {
        event(BlogPostEvent::BlogPostCreated {
            title: "Hello".into(),
            body: "text".into(),
            author: UNKNOWN_AUTHOR.into(),
        })
    }

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).expect("a time")
    }

    fn waiting() -> Waiting {
        Waiting { post: "p1".into() }
    }

    #[test]
    fn a_created_post_waits_for_its_deadline() {
        let reaction = ReactionTest::new(&manager()).when(created());
        assert_eq!(reaction.state, Some(waiting()));
        assert_eq!(
            reaction.set,
            [Deadline {
                name: PUBLISH.into(),
                at: at("2026-01-01T10:01:00Z"),
            }],
            "the event's time plus the delay"
        );
        assert!(reaction.commands.is_empty() && reaction.cancel.is_empty());
    }

    #[test]
    fn the_deadline_publishes_the_post_and_ends() {
        let reaction = ReactionTest::given(&manager(), waiting()).when(Trigger::Deadline(Fired {
            name: PUBLISH.into(),
            at: at("2026-01-01T10:01:00Z"),
        }));
        assert_eq!(reaction.state, None, "ends");
        assert_eq!(
            reaction.commands,
            [Command::to::<BlogPost>(
                "p1",
                "publish",
                serde_json::json!({})
            )]
        );
    }

    #[test]
    fn a_post_published_first_cancels_the_deadline_and_ends() {
        let reaction = ReactionTest::given(&manager(), waiting())
            .when(event(BlogPostEvent::BlogPostPublished {}));
        assert_eq!(reaction.state, None);
        assert_eq!(reaction.cancel, [PUBLISH]);
        assert!(reaction.commands.is_empty());
    }

    #[test]
    fn created_published_at_once_never_waits() {
        let last = ReactionTest::new(&manager())
            .when_all([created(), event(BlogPostEvent::BlogPostPublished {})])
            .expect("two reactions");
        assert_eq!(last.state, None);
        assert!(last.commands.is_empty());
    }

    #[test]
    fn a_title_change_keeps_it_waiting_and_an_event_of_no_instance_starts_none() {
        let changed = || {
            event(BlogPostEvent::BlogPostTitleChanged {
                new_title: "New".into(),
            })
        };
        let reaction = ReactionTest::given(&manager(), waiting()).when(changed());
        assert_eq!(reaction.state, Some(waiting()));
        assert!(reaction.commands.is_empty() && reaction.set.is_empty());
        for trigger in [changed(), event(BlogPostEvent::BlogPostPublished {})] {
            let reaction = ReactionTest::new(&manager()).when(trigger);
            assert_eq!(reaction.state, None);
            assert!(reaction.commands.is_empty() && reaction.set.is_empty());
        }
    }
}
