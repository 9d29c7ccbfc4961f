//! The commands the clients send. The raw baseline and jetsource get the
//! same subjects' shape, the same headers and the same bodies, so the bytes
//! on the wire differ only where the two paths differ.
//!
//! Aggregates are split between client tasks (task `t` owns aggregates
//! `t`, `t + tasks`, ...), so two commands never race on one aggregate and
//! neither path spends time on conflicts.

use super::load::{Outgoing, Workload};
use async_nats::HeaderMap;
use bytes::Bytes;
use jetsource_schemas::headers;

const FILLER: &str =
    "Event sourcing keeps every change as an event, so the history explains the present state";

/// A `create` body of about 200 bytes.
pub fn create_body(id: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"title":"Post {id}: {}","body":"{FILLER}"}}"#,
        &FILLER[..60]
    ))
}

/// A `change_title` body of about 200 bytes, different for every `n`.
pub fn change_title_body(id: &str, n: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"title":"Revision {n} of post {id}: {FILLER} {}"}}"#,
        &FILLER[..50]
    ))
}

/// The blog event a `create` stores, for seeding streams directly.
pub fn created_event(id: &str) -> Bytes {
    create_body(id)
}

/// Which aggregates a workload addresses.
#[derive(Debug, Clone)]
pub struct Aggregates {
    /// Prefix of their ids, unique per figure and run.
    pub prefix: String,
    /// How many.
    pub count: u64,
    /// Client tasks sharing them.
    pub tasks: u64,
}

impl Aggregates {
    /// How many aggregates task `task` owns.
    fn owned(&self, task: u64) -> u64 {
        if task >= self.count {
            0
        } else {
            (self.count - task).div_ceil(self.tasks)
        }
    }

    /// The id of the `n`-th aggregate task `task` addresses (round robin
    /// over its own), and whether this is the first visit.
    fn pick(&self, task: usize, n: u64) -> (String, bool) {
        let task = task as u64;
        let owned = self.owned(task).max(1);
        let index = task + (n % owned) * self.tasks;
        (self.id(index), n < owned)
    }

    /// The id of aggregate `index`.
    pub fn id(&self, index: u64) -> String {
        format!("{}-{index}", self.prefix)
    }
}

fn command_headers(task: usize, n: u64, prefix: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(headers::COMMAND_ID, format!("{prefix}-{task}-{n}").as_str());
    h
}

/// The blog commands: `create` on an aggregate's first visit, `change_title`
/// after; or only `change_title` when the aggregates were seeded.
#[derive(Debug, Clone)]
pub struct BlogCommands {
    /// The aggregates addressed.
    pub aggregates: Aggregates,
    /// The first token of the subject: `cmd` for jetsource, another for the
    /// bare responders.
    pub root: &'static str,
    /// Whether the aggregates exist already (no `create`).
    pub seeded: bool,
}

impl Workload for BlogCommands {
    fn request(&self, task: usize, n: u64) -> Outgoing {
        let (id, first) = self.aggregates.pick(task, n);
        let (command, body) = if first && !self.seeded {
            ("create", create_body(&id))
        } else {
            ("change_title", change_title_body(&id, n))
        };
        Outgoing {
            subject: format!("{}.blogpost.{id}.{command}", self.root),
            headers: command_headers(task, n, &self.aggregates.prefix),
            body,
        }
    }

    fn expected(&self, reply: &[u8]) -> bool {
        if self.root == "cmd" {
            reply.starts_with(br#"{"status":"accepted""#)
        } else {
            reply.starts_with(br#"{"seq":"#)
        }
    }
}

/// Invalid commands, in turn: an empty title on an existing post
/// (`validation`), a title change on a post that never existed
/// (`not_found`, which also fills the state cache with empty slots), and a
/// body that is not JSON (`bad_request`).
#[derive(Debug, Clone)]
pub struct InvalidCommands {
    /// Existing aggregates (created by an earlier figure).
    pub existing: Aggregates,
    /// Prefix of never-created aggregate ids.
    pub ghost_prefix: String,
}

impl Workload for InvalidCommands {
    fn request(&self, task: usize, n: u64) -> Outgoing {
        let (subject, body) = match n % 3 {
            0 => {
                let (id, _) = self.existing.pick(task, n / 3);
                (
                    format!("cmd.blogpost.{id}.change_title"),
                    Bytes::from_static(br#"{"title":"   "}"#),
                )
            }
            1 => (
                format!("cmd.blogpost.{}-{task}-{n}.change_title", self.ghost_prefix),
                change_title_body("ghost", n),
            ),
            _ => {
                let (id, _) = self.existing.pick(task, n / 3);
                (
                    format!("cmd.blogpost.{id}.change_title"),
                    Bytes::from_static(br#"{"title": "unterminated"#),
                )
            }
        };
        Outgoing {
            subject,
            headers: command_headers(task, n, &self.ghost_prefix),
            body,
        }
    }

    fn expected(&self, reply: &[u8]) -> bool {
        reply.starts_with(br#"{"status":"rejected""#)
    }
}

/// Account commands over `count` seeded accounts, all accepted: a
/// `deposit` of 1, or a `transfer` of 1 to another account (the balances
/// are seeded far above what a run moves). Task `task`'s `n`-th command
/// addresses account `(task + n * tasks) % count`: with as many accounts
/// as tasks or more, each task its own; a transfer pays into the next
/// account, another task's, so transfers meet on accounts.
#[derive(Debug, Clone)]
pub struct AccountCommands {
    /// Prefix of the account ids (`<prefix>-<index>`).
    pub prefix: String,
    /// Accounts, at least 2.
    pub count: u64,
    /// Client tasks.
    pub tasks: u64,
    /// Transfers rather than deposits.
    pub transfer: bool,
}

impl AccountCommands {
    /// The account at `index`.
    pub fn id(&self, index: u64) -> String {
        format!("{}-{index}", self.prefix)
    }
}

impl Workload for AccountCommands {
    fn request(&self, task: usize, n: u64) -> Outgoing {
        let count = self.count.max(2);
        let from = (task as u64 + n.wrapping_mul(self.tasks)) % count;
        let id = self.id(from);
        let (command, body) = if self.transfer {
            let to = self.id((from + 1) % count);
            ("transfer", format!(r#"{{"to":"{to}","amount":1}}"#))
        } else {
            ("deposit", r#"{"amount":1}"#.to_string())
        };
        // Ids of their own per command, so that transfers over accounts
        // that took deposits are never answered as those deposits' resends.
        Outgoing {
            subject: format!("cmd.account.{id}.{command}"),
            headers: command_headers(task, n, &format!("{}-{command}", self.prefix)),
            body: Bytes::from(body),
        }
    }

    fn expected(&self, reply: &[u8]) -> bool {
        reply.starts_with(br#"{"status":"accepted""#) && reply.ends_with(br#""duplicate":false}"#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_about_200_bytes_and_titles_are_valid() {
        let create = create_body("rt-999");
        let change = change_title_body("rt-999", 123_456);
        for body in [&create, &change] {
            assert!((150..=260).contains(&body.len()), "{} bytes", body.len());
        }
        let command: jetsource_reference::blog::BlogPostCommand =
            jetsource_handlers::codec::decode_command("change_title", &change).expect("decodes");
        let jetsource_reference::blog::BlogPostCommand::ChangeTitle { title } = command else {
            panic!("not a title change")
        };
        assert!(title.chars().count() <= jetsource_reference::blog::MAX_TITLE_CHARS);
        jetsource_handlers::codec::decode_command::<jetsource_reference::blog::BlogPostCommand>(
            "create", &create,
        )
        .expect("create decodes");
    }

    #[test]
    fn tasks_own_disjoint_aggregates_covering_all() {
        let aggregates = Aggregates {
            prefix: "a".into(),
            count: 10,
            tasks: 4,
        };
        let mut seen = std::collections::HashSet::new();
        for task in 0..4 {
            for n in 0..aggregates.owned(task as u64) {
                let (id, first) = aggregates.pick(task, n);
                assert!(first);
                assert!(seen.insert(id), "two tasks share an aggregate");
            }
        }
        assert_eq!(seen.len(), 10);
        assert!(
            !aggregates.pick(0, 3).1,
            "the second round is not a first visit"
        );
    }
}
