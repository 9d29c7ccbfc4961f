//! Scheduled publishing, the reference process manager: a blog post is
//! published at the time its `schedule_publish` command recorded.
//!
//! Each post is an instance (keyed by its id). `BlogPostPublishScheduled`
//! starts it, or moves its `publish` deadline to the new time when it was
//! waiting already (so a rescheduled post publishes once, at the latest
//! time); `BlogPostPublishUnscheduled` and `BlogPostPublished` (the author
//! published it by hand) end it, which cancels the deadline. The deadline
//! coming sends `publish` to the post and ends the instance. Every time
//! decided comes from an event, never the clock, so a redelivery decides
//! the same.

use crate::blog::{BlogPost, BlogPostEvent};
use jetsource_process::{Command, ProcessManager, Reaction, Trigger};
use jetsource_projector::Envelope;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The deadline's name.
pub const PUBLISH: &str = "publish";

/// Publishes each post at the time scheduled for it, unless it was
/// published or unscheduled before.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScheduledPublishing;

/// A post waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// The post.
    pub post: String,
    /// When, RFC 3339.
    #[serde(default)]
    pub at: String,
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
        match trigger {
            Trigger::Event(input) => match input.event {
                BlogPostEvent::BlogPostPublishScheduled { at } => {
                    // The handler recorded an RFC 3339 time; one that is
                    // not (written past it) schedules nothing rather than a
                    // deadline at a guess.
                    let Ok(when) = OffsetDateTime::parse(&at, &Rfc3339) else {
                        return Reaction::end().cancel_deadline(PUBLISH);
                    };
                    Reaction::keep(Waiting {
                        post: input.meta.aggregate_id,
                        at,
                    })
                    .set_deadline(PUBLISH, when)
                }
                BlogPostEvent::BlogPostPublishUnscheduled {}
                | BlogPostEvent::BlogPostPublished {} => Reaction::end().cancel_deadline(PUBLISH),
                BlogPostEvent::BlogPostCreated { .. }
                | BlogPostEvent::BlogPostTitleChanged { .. } => keep_or_end(state),
            },
            Trigger::Deadline(fired) if fired.name == PUBLISH => match state {
                Some(waiting) => Reaction::end().send(Command::to::<BlogPost>(
                    waiting.post,
                    "publish",
                    serde_json::json!({}),
                )),
                None => Reaction::end(),
            },
            // Another deadline, or `publish` refused (the post was
            // published meanwhile): nothing more to do.
            Trigger::Deadline(_) | Trigger::Refused(_) | Trigger::Forgotten(_) => {
                keep_or_end(state)
            }
        }
    }
}

/// Goes on waiting, or stays ended.
fn keep_or_end(state: Option<Waiting>) -> Reaction<Waiting> {
    match state {
        Some(waiting) => Reaction::keep(waiting),
        None => Reaction::end(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blog::UNKNOWN_AUTHOR;
    use jetsource_process::testing::ReactionTest;
    use jetsource_process::{Deadline, Fired};
    use jetsource_projector::Meta;

    const AT: &str = "2026-01-01T10:01:00Z";
    const LATER: &str = "2026-01-01T11:00:00Z";

    fn event(event: BlogPostEvent) -> Trigger<Envelope<BlogPost>> {
        let event_type = match &event {
            BlogPostEvent::BlogPostCreated { .. } => "BlogPostCreated",
            BlogPostEvent::BlogPostTitleChanged { .. } => "BlogPostTitleChanged",
            BlogPostEvent::BlogPostPublished {} => "BlogPostPublished",
            BlogPostEvent::BlogPostPublishScheduled { .. } => "BlogPostPublishScheduled",
            BlogPostEvent::BlogPostPublishUnscheduled {} => "BlogPostPublishUnscheduled",
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
                time: "2026-01-01T10:00:00Z".into(),
                command_id: None,
                correlation_id: None,
                causation_id: None,
            },
        })
    }

    fn scheduled(at: &str) -> Trigger<Envelope<BlogPost>> {
        event(BlogPostEvent::BlogPostPublishScheduled { at: at.into() })
    }

    fn time_of(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).expect("a time")
    }

    fn waiting(at: &str) -> Waiting {
        Waiting {
            post: "p1".into(),
            at: at.into(),
        }
    }

    #[test]
    fn a_scheduled_post_waits_for_its_time() {
        let reaction = ReactionTest::new(&ScheduledPublishing).when(scheduled(AT));
        assert_eq!(reaction.state, Some(waiting(AT)));
        assert_eq!(
            reaction.set,
            [Deadline {
                name: PUBLISH.into(),
                at: time_of(AT),
            }],
            "the time the event recorded"
        );
        assert!(reaction.commands.is_empty() && reaction.cancel.is_empty());
    }

    #[test]
    fn rescheduling_moves_the_deadline() {
        let reaction =
            ReactionTest::given(&ScheduledPublishing, waiting(AT)).when(scheduled(LATER));
        assert_eq!(reaction.state, Some(waiting(LATER)));
        assert_eq!(
            reaction.set,
            [Deadline {
                name: PUBLISH.into(),
                at: time_of(LATER),
            }],
            "set again under the same name, which moves it"
        );
    }

    #[test]
    fn the_deadline_publishes_the_post_and_ends() {
        let reaction =
            ReactionTest::given(&ScheduledPublishing, waiting(AT)).when(Trigger::Deadline(Fired {
                name: PUBLISH.into(),
                at: time_of(AT),
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
    fn publishing_or_unscheduling_first_cancels_the_deadline_and_ends() {
        for first in [
            BlogPostEvent::BlogPostPublished {},
            BlogPostEvent::BlogPostPublishUnscheduled {},
        ] {
            let reaction =
                ReactionTest::given(&ScheduledPublishing, waiting(AT)).when(event(first));
            assert_eq!(reaction.state, None);
            assert_eq!(reaction.cancel, [PUBLISH]);
            assert!(reaction.commands.is_empty());
        }
    }

    #[test]
    fn other_events_keep_it_as_it_is_and_start_nothing() {
        let others = || {
            [
                event(BlogPostEvent::BlogPostCreated {
                    title: "Hello".into(),
                    body: "text".into(),
                    author: UNKNOWN_AUTHOR.into(),
                }),
                event(BlogPostEvent::BlogPostTitleChanged {
                    new_title: "New".into(),
                }),
            ]
        };
        for other in others() {
            let reaction = ReactionTest::given(&ScheduledPublishing, waiting(AT)).when(other);
            assert_eq!(reaction.state, Some(waiting(AT)));
            assert!(reaction.commands.is_empty() && reaction.set.is_empty());
        }
        for other in others() {
            let reaction = ReactionTest::new(&ScheduledPublishing).when(other);
            assert_eq!(reaction.state, None);
            assert!(reaction.commands.is_empty() && reaction.set.is_empty());
        }
    }

    #[test]
    fn a_deadline_of_an_ended_instance_sends_nothing() {
        let reaction = ReactionTest::new(&ScheduledPublishing).when(Trigger::Deadline(Fired {
            name: PUBLISH.into(),
            at: time_of(AT),
        }));
        assert_eq!(reaction.state, None);
        assert!(reaction.commands.is_empty());
    }
}
