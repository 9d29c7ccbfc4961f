//! The subject prefix: several applications sharing one NATS account, each
//! under its own prefix.
//!
//! A [`Namespace`] is the configured prefix (`nats.subject_prefix`),
//! checked once, with every name jetsource puts on NATS derived from it:
//!
//! | what | no prefix (the default) | prefix `acme.shop` |
//! |---|---|---|
//! | command subject | `cmd.<type>.<id>.<command>` | `acme.shop.cmd.<type>.<id>.<command>` |
//! | event subject | `evt.<type>.<id>.<EventType>` | `acme.shop.evt.<type>.<id>.<EventType>` |
//! | feedback, query, control subjects | `status.<id>`, `query.<name>.…` | `acme.shop.status.<id>`, `acme.shop.query.<name>.…` |
//! | event stream | `EVT_BLOGPOST` | `acme_shop_EVT_BLOGPOST` |
//! | key-value bucket | `jetsource_command_index` | `ACME_SHOP_jetsource_command_index` |
//!
//! Without a prefix every name is exactly what the free functions and
//! constants of [`crate::subject`] and [`crate::feedback`] give.
//!
//! # Why these rules
//!
//! A prefix is one or more dot-separated tokens of `[a-z0-9-]`, at most
//! [`MAX_PREFIX_LEN`] characters, none of them one of jetsource's first
//! subject tokens ([`RESERVED_TOKENS`]). That makes the namespaces disjoint:
//!
//! - **subjects**: jetsource subscribes to and stores only
//!   `<prefix>.<root>.…` with `<root>` a reserved token and no wildcard
//!   within `<prefix>.<root>`. Two distinct prefixes either differ at a
//!   token both have, or one is a proper beginning of the other, and then
//!   the shorter one's subjects have a reserved token where the longer
//!   one's have a prefix token, which is never reserved.
//! - **stream names** are the prefix in lower case with `.` turned into
//!   `_`, then `_`, then the unprefixed name (`EVT_` and the aggregate type
//!   in upper case). A prefix holds no upper-case letter and no `_`, so the
//!   first upper-case letter of a name is the `E` of `EVT_`: what stands
//!   before it gives the prefix back (split on `_`, join with `.`), what
//!   follows gives the aggregate type back (lower-cased; types are lower
//!   case). Unprefixed names start with `EVT_`, prefixed ones never with an
//!   upper-case letter.
//! - **bucket names** are the prefix in upper case with `.` turned into
//!   `_`, then `_`, then the unprefixed name, which always starts with a
//!   lower-case letter (`jetsource_…`, `projection_…`): the first lower-case
//!   letter marks where the prefix ends, by the same argument.
//!
//! The `$JS.API.…` subjects are JetStream's own and are never prefixed
//! (JetStream domains and API prefixes are a different feature). Queue
//! groups and durable consumer names are not prefixed either: a queue group
//! only shares messages between subscriptions whose subjects match them,
//! and namespaces' subjects never overlap; a durable consumer's name is
//! scoped by its stream, and streams are per namespace.

use crate::feedback::{
    self, QuerySubjectError, COMMAND_INDEX_BUCKET, ERRORS_GET_ROOT, ERRORS_LIST_ROOT, NOTICE_ROOT,
    PEER_GET_ROOT, PEER_LIST_ROOT, STATUS_ROOT,
};
use crate::subject::{
    self, CommandSubject, EventSubject, SubjectError, COMMAND_ROOT, EVENT_ROOT, STREAM_PREFIX,
};
use crate::token::{validate, TokenError};
use std::fmt;
use std::sync::Arc;

/// The longest subject prefix.
pub const MAX_PREFIX_LEN: usize = 64;

/// The first tokens of jetsource's subjects. None of them may be a token of
/// a prefix, so that no namespace's subjects overlap another's.
pub const RESERVED_TOKENS: &[&str] = &[
    "cmd",
    "evt",
    "notice",
    "errors",
    "status",
    "feedback",
    "query",
    "projector",
    "forget",
    "forgotten",
];

/// Why a string is not a valid subject prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    /// Longer than [`MAX_PREFIX_LEN`].
    #[error("the subject prefix is {len} characters long, more than {MAX_PREFIX_LEN}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A token is empty: a leading, trailing or doubled dot.
    #[error(
        "the subject prefix has an empty token (a leading, trailing or doubled '.') at byte {at}"
    )]
    EmptyToken {
        /// The byte offset where the empty token is.
        at: usize,
    },
    /// A character outside `[a-z0-9-]` and the separating dots.
    #[error(
        "the subject prefix may only contain a-z, 0-9 and '-' in dot-separated tokens \
         (lower case, no '_': found {found:?} at byte {at})"
    )]
    BadChar {
        /// The first offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
    /// A token is one of jetsource's own first subject tokens.
    #[error(
        "the subject prefix may not contain the token {token:?}: jetsource's subjects start with it"
    )]
    Reserved {
        /// The token.
        token: String,
    },
}

/// Checks a non-empty prefix against the rules above.
fn check(prefix: &str) -> Result<(), NamespaceError> {
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(NamespaceError::TooLong { len: prefix.len() });
    }
    let mut start = 0;
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err(NamespaceError::EmptyToken { at: start });
        }
        if let Some((i, found)) = token
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(NamespaceError::BadChar {
                found,
                at: start + i,
            });
        }
        if RESERVED_TOKENS.contains(&token) {
            return Err(NamespaceError::Reserved {
                token: token.to_string(),
            });
        }
        start += token.len() + 1;
    }
    Ok(())
}

/// The names derived from one prefix, computed once.
#[derive(PartialEq, Eq)]
struct Names {
    /// `acme.shop`
    prefix: String,
    /// `acme.shop.`
    head: String,
    /// `acme.shop.cmd`
    command_root: String,
    /// `acme.shop.evt`
    event_root: String,
    /// `acme_shop_EVT_`
    stream_prefix: String,
    /// `ACME_SHOP_`
    bucket_prefix: String,
}

/// A subject prefix and every name derived from it. The default is no
/// prefix. Cheap to clone (one reference count).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Namespace(Option<Arc<Names>>);

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Namespace").field(&self.prefix()).finish()
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

impl std::str::FromStr for Namespace {
    type Err = NamespaceError;

    fn from_str(prefix: &str) -> Result<Self, Self::Err> {
        Namespace::new(prefix)
    }
}

impl Namespace {
    /// The namespace of `prefix`: `""` is no prefix; otherwise one or more
    /// dot-separated tokens of `[a-z0-9-]`, at most [`MAX_PREFIX_LEN`]
    /// characters, none of them in [`RESERVED_TOKENS`].
    pub fn new(prefix: &str) -> Result<Namespace, NamespaceError> {
        if prefix.is_empty() {
            return Ok(Namespace::default());
        }
        check(prefix)?;
        let joined = prefix.replace('.', "_");
        Ok(Namespace(Some(Arc::new(Names {
            prefix: prefix.to_string(),
            head: format!("{prefix}."),
            command_root: format!("{prefix}.{COMMAND_ROOT}"),
            event_root: format!("{prefix}.{EVENT_ROOT}"),
            stream_prefix: format!("{joined}_{STREAM_PREFIX}"),
            bucket_prefix: format!("{}_", joined.to_ascii_uppercase()),
        }))))
    }

    /// The prefix (`""` when none).
    pub fn prefix(&self) -> &str {
        self.0.as_ref().map_or("", |n| n.prefix.as_str())
    }

    /// True without a prefix.
    pub fn is_default(&self) -> bool {
        self.0.is_none()
    }

    fn head(&self) -> &str {
        self.0.as_ref().map_or("", |n| n.head.as_str())
    }

    /// `rest` under the prefix: `<prefix>.<rest>`, or `rest` itself when
    /// there is none. `rest` is an unprefixed jetsource subject whose
    /// untrusted parts were validated.
    pub fn subject(&self, rest: impl fmt::Display) -> String {
        format!("{}{rest}", self.head())
    }

    /// The unprefixed part of `subject`: `None` when it is not under this
    /// prefix.
    pub fn strip<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject.strip_prefix(self.head())
    }

    /// A key-value bucket's name: the prefix in upper case with `_` for
    /// `.`, then `_`, then `name`; just `name` without a prefix. `name` is
    /// one of jetsource's bucket names, which start with a lower-case
    /// letter: that keeps the mapping one-to-one (see the module docs).
    pub fn bucket(&self, name: &str) -> String {
        match &self.0 {
            None => name.to_string(),
            Some(n) => format!("{}{name}", n.bucket_prefix),
        }
    }

    /// The first tokens of command subjects: `<prefix>.cmd`.
    pub fn command_root(&self) -> &str {
        self.0.as_ref().map_or(COMMAND_ROOT, |n| &n.command_root)
    }

    /// The first tokens of event subjects: `<prefix>.evt`.
    pub fn event_root(&self) -> &str {
        self.0.as_ref().map_or(EVENT_ROOT, |n| &n.event_root)
    }

    /// Every command subject: `<prefix>.cmd.>`.
    pub fn commands_filter(&self) -> String {
        format!("{}.>", self.command_root())
    }

    /// Every event subject: `<prefix>.evt.>`.
    pub fn events_filter(&self) -> String {
        format!("{}.>", self.event_root())
    }

    /// `<prefix>.cmd.<type>.<id>.<command>` from validated parts.
    pub fn command_subject(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        command: &str,
    ) -> Result<String, TokenError> {
        validate("aggregate type", aggregate_type)?;
        validate("aggregate id", aggregate_id)?;
        validate("command", command)?;
        Ok(format!(
            "{}.{aggregate_type}.{aggregate_id}.{command}",
            self.command_root()
        ))
    }

    /// Parses `<prefix>.cmd.<type>.<id>.<command>`, validating every token;
    /// a subject outside the prefix is refused as misshapen.
    pub fn parse_command<'a>(&self, subject: &'a str) -> Result<CommandSubject<'a>, SubjectError> {
        match self.strip(subject) {
            Some(rest) => subject::parse_command(subject, rest),
            None => Err(SubjectError::Shape {
                subject: subject.chars().take(256).collect(),
            }),
        }
    }

    /// The `<type>` token of a subject shaped like
    /// `<prefix>.cmd.<type>…`, unvalidated: enough to pick a handler, which
    /// then parses the whole subject with [`Namespace::parse_command`].
    pub fn command_type_token<'a>(&self, subject: &'a str) -> Option<&'a str> {
        let mut parts = self.strip(subject)?.split('.');
        match (parts.next(), parts.next()) {
            (Some(COMMAND_ROOT), Some(aggregate_type)) => Some(aggregate_type),
            _ => None,
        }
    }

    /// `<prefix>.evt.<type>.<id>.<EventType>` from validated parts.
    pub fn event_subject(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
    ) -> Result<String, TokenError> {
        validate("aggregate type", aggregate_type)?;
        validate("aggregate id", aggregate_id)?;
        validate("event type", event_type)?;
        Ok(join(&[
            self.event_root(),
            aggregate_type,
            aggregate_id,
            event_type,
        ]))
    }

    /// Parses `<prefix>.evt.<type>.<id>.<EventType>`; `None` for anything
    /// else, a subject outside the prefix included.
    pub fn parse_event<'a>(&self, subject: &'a str) -> Option<EventSubject<'a>> {
        EventSubject::parse(self.strip(subject)?)
    }

    /// All events of one aggregate instance: `<prefix>.evt.<type>.<id>.*`,
    /// also the subject of its expected-sequence check.
    pub fn aggregate_filter(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<String, TokenError> {
        validate("aggregate type", aggregate_type)?;
        validate("aggregate id", aggregate_id)?;
        Ok(join(&[
            self.event_root(),
            aggregate_type,
            aggregate_id,
            "*",
        ]))
    }

    /// All events of one aggregate type: `<prefix>.evt.<type>.>`, its
    /// stream's subject.
    pub fn type_filter(&self, aggregate_type: &str) -> Result<String, TokenError> {
        validate("aggregate type", aggregate_type)?;
        Ok(format!("{}.{aggregate_type}.>", self.event_root()))
    }

    /// What every event stream name of this namespace starts with: `EVT_`,
    /// or `<prefix with _ for .>_EVT_`. No other namespace's stream name
    /// starts with it.
    pub fn stream_prefix(&self) -> &str {
        self.0.as_ref().map_or(STREAM_PREFIX, |n| &n.stream_prefix)
    }

    /// The stream of an aggregate type: [`Self::stream_prefix`] and the
    /// type in upper case (`acme_shop_EVT_BLOGPOST`).
    pub fn stream_name(&self, aggregate_type: &str) -> String {
        let prefix = self.stream_prefix();
        let mut name = String::with_capacity(prefix.len() + aggregate_type.len());
        name.push_str(prefix);
        name.extend(aggregate_type.chars().map(|c| c.to_ascii_uppercase()));
        name
    }

    /// `<prefix>.notice.rejected.<type>.<id>`.
    pub fn notice_subject(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<String, TokenError> {
        self.aggregate_subject(NOTICE_ROOT, aggregate_type, aggregate_id)
    }

    /// `<prefix>.errors.get.<command_id>`.
    pub fn errors_get_subject(&self, command_id: &str) -> Result<String, TokenError> {
        self.command_id_subject(ERRORS_GET_ROOT, command_id)
    }

    /// `<prefix>.errors.list.<type>.<id>`.
    pub fn errors_list_subject(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<String, TokenError> {
        self.aggregate_subject(ERRORS_LIST_ROOT, aggregate_type, aggregate_id)
    }

    /// `<prefix>.status.<command_id>`.
    pub fn status_subject(&self, command_id: &str) -> Result<String, TokenError> {
        self.command_id_subject(STATUS_ROOT, command_id)
    }

    /// `<prefix>.feedback.peer.get.<command_id>`.
    pub fn peer_get_subject(&self, command_id: &str) -> Result<String, TokenError> {
        self.command_id_subject(PEER_GET_ROOT, command_id)
    }

    /// `<prefix>.feedback.peer.list.<type>.<id>`.
    pub fn peer_list_subject(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<String, TokenError> {
        self.aggregate_subject(PEER_LIST_ROOT, aggregate_type, aggregate_id)
    }

    /// `<prefix>.<root>.<type>.<id>`, the parts validated.
    fn aggregate_subject(
        &self,
        root: &str,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<String, TokenError> {
        validate("aggregate type", aggregate_type)?;
        validate("aggregate id", aggregate_id)?;
        Ok(format!(
            "{}{root}.{aggregate_type}.{aggregate_id}",
            self.head()
        ))
    }

    /// `<prefix>.<root>.<command_id>`, the id validated.
    fn command_id_subject(&self, root: &str, command_id: &str) -> Result<String, TokenError> {
        validate("command id", command_id)?;
        Ok(format!("{}{root}.{command_id}", self.head()))
    }

    /// The command id of `<prefix>.<root>.<command_id>` (`root` one of
    /// [`ERRORS_GET_ROOT`], [`STATUS_ROOT`], [`PEER_GET_ROOT`]), validated.
    pub fn parse_command_id<'a>(
        &self,
        subject: &'a str,
        root: &str,
    ) -> Result<&'a str, QuerySubjectError> {
        let rest = self.strip(subject).ok_or(QuerySubjectError::Shape {
            expected: "<prefix>.<command_id>",
        })?;
        feedback::parse_command_id(rest, root)
    }

    /// The aggregate of `<prefix>.<root>.<type>.<id>` (`root` one of
    /// [`NOTICE_ROOT`], [`ERRORS_LIST_ROOT`], [`PEER_LIST_ROOT`]), validated.
    pub fn parse_aggregate<'a>(
        &self,
        subject: &'a str,
        root: &str,
    ) -> Result<(&'a str, &'a str), QuerySubjectError> {
        let rest = self.strip(subject).ok_or(QuerySubjectError::Shape {
            expected: "<prefix>.<aggregate_type>.<aggregate_id>",
        })?;
        feedback::parse_aggregate(rest, root)
    }

    /// The command index bucket: [`COMMAND_INDEX_BUCKET`] under the prefix.
    pub fn command_index_bucket(&self) -> String {
        self.bucket(COMMAND_INDEX_BUCKET)
    }
}

/// `parts` joined by `.`, in one allocation of the exact size (these are
/// built for every appended event).
fn join(parts: &[&str]) -> String {
    let len = parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut joined = String::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            joined.push('.');
        }
        joined.push_str(part);
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(prefix: &str) -> Namespace {
        Namespace::new(prefix).expect("valid prefix")
    }

    #[test]
    fn the_type_token_routes_only_command_subjects_in_the_namespace() {
        let none = Namespace::default();
        let acme = ns("acme");
        assert_eq!(
            none.command_type_token("cmd.blogpost.p1.create"),
            Some("blogpost")
        );
        assert_eq!(none.command_type_token("cmd.blogpost"), Some("blogpost"));
        assert_eq!(none.command_type_token("cmd"), None);
        assert_eq!(none.command_type_token("evt.blogpost.p1.X"), None);
        assert_eq!(
            acme.command_type_token("acme.cmd.blogpost.p1.create"),
            Some("blogpost")
        );
        assert_eq!(acme.command_type_token("cmd.blogpost.p1.create"), None);
        assert_eq!(
            acme.command_type_token("other.cmd.blogpost.p1.create"),
            None
        );
    }

    #[test]
    fn valid_prefixes() {
        for ok in [
            "a",
            "acme",
            "acme.shop",
            "app-a",
            "0",
            "a-b.c-d.e1",
            "-",
            "cmds",
        ] {
            assert_eq!(ns(ok).prefix(), ok);
        }
        assert!(ns("").is_default());
        assert_eq!(ns(""), Namespace::default());
        assert_eq!(
            ns(&"x".repeat(MAX_PREFIX_LEN)).prefix().len(),
            MAX_PREFIX_LEN
        );
        assert_eq!("acme.shop".parse::<Namespace>(), Ok(ns("acme.shop")));
    }

    #[test]
    fn invalid_prefixes_say_what_is_wrong() {
        assert!(matches!(
            Namespace::new(&"x".repeat(MAX_PREFIX_LEN + 1)),
            Err(NamespaceError::TooLong { len: 65 })
        ));
        for (bad, at) in [(".a", 0), ("a.", 2), ("a..b", 2), (".", 0)] {
            assert_eq!(
                Namespace::new(bad),
                Err(NamespaceError::EmptyToken { at }),
                "{bad:?}"
            );
        }
        for (bad, found, at) in [
            ("Acme", 'A', 0),
            ("acme_shop", '_', 4),
            ("acme.sHop", 'H', 6),
            ("a*", '*', 1),
            ("a.>", '>', 2),
            ("a b", ' ', 1),
            ("a\n", '\n', 1),
            ("$js", '$', 0),
            ("é", 'é', 0),
        ] {
            assert_eq!(
                Namespace::new(bad),
                Err(NamespaceError::BadChar { found, at }),
                "{bad:?}"
            );
        }
        for reserved in RESERVED_TOKENS {
            assert!(matches!(
                Namespace::new(reserved),
                Err(NamespaceError::Reserved { .. })
            ));
            assert!(matches!(
                Namespace::new(&format!("acme.{reserved}.x")),
                Err(NamespaceError::Reserved { .. })
            ));
        }
    }

    #[test]
    fn no_prefix_is_today() {
        let d = Namespace::default();
        assert_eq!(
            d.command_subject("blogpost", "p1", "create").as_deref(),
            Ok("cmd.blogpost.p1.create")
        );
        assert_eq!(
            d.event_subject("blogpost", "p1", "BlogPostCreated")
                .as_deref(),
            Ok("evt.blogpost.p1.BlogPostCreated")
        );
        assert_eq!(
            d.aggregate_filter("blogpost", "p1").as_deref(),
            Ok("evt.blogpost.p1.*")
        );
        assert_eq!(d.type_filter("blogpost").as_deref(), Ok("evt.blogpost.>"));
        assert_eq!(d.commands_filter(), "cmd.>");
        assert_eq!(d.events_filter(), "evt.>");
        assert_eq!(d.stream_name("blogpost"), "EVT_BLOGPOST");
        assert_eq!(d.command_index_bucket(), COMMAND_INDEX_BUCKET);
        assert_eq!(d.bucket("projection_posts"), "projection_posts");
        assert_eq!(d.subject("query.posts.all"), "query.posts.all");
        assert_eq!(
            d.notice_subject("blogpost", "p1").as_deref(),
            Ok("notice.rejected.blogpost.p1")
        );
        assert_eq!(d.status_subject("c1").as_deref(), Ok("status.c1"));
        assert_eq!(d.errors_get_subject("c1").as_deref(), Ok("errors.get.c1"));
        assert_eq!(
            d.errors_list_subject("blogpost", "p1").as_deref(),
            Ok("errors.list.blogpost.p1")
        );
        assert_eq!(
            d.peer_get_subject("c1").as_deref(),
            Ok("feedback.peer.get.c1")
        );
        assert_eq!(
            d.peer_list_subject("blogpost", "p1").as_deref(),
            Ok("feedback.peer.list.blogpost.p1")
        );
    }

    #[test]
    fn every_name_carries_the_prefix() {
        let n = ns("acme.shop");
        assert_eq!(
            n.command_subject("blogpost", "p1", "create").as_deref(),
            Ok("acme.shop.cmd.blogpost.p1.create")
        );
        assert_eq!(
            n.event_subject("blogpost", "p1", "BlogPostCreated")
                .as_deref(),
            Ok("acme.shop.evt.blogpost.p1.BlogPostCreated")
        );
        assert_eq!(
            n.aggregate_filter("blogpost", "p1").as_deref(),
            Ok("acme.shop.evt.blogpost.p1.*")
        );
        assert_eq!(
            n.type_filter("blogpost").as_deref(),
            Ok("acme.shop.evt.blogpost.>")
        );
        assert_eq!(n.commands_filter(), "acme.shop.cmd.>");
        assert_eq!(n.events_filter(), "acme.shop.evt.>");
        assert_eq!(n.stream_name("blogpost"), "acme_shop_EVT_BLOGPOST");
        assert_eq!(n.stream_prefix(), "acme_shop_EVT_");
        assert_eq!(
            n.command_index_bucket(),
            "ACME_SHOP_jetsource_command_index"
        );
        assert_eq!(n.bucket("projection_posts"), "ACME_SHOP_projection_posts");
        assert_eq!(n.subject("query.posts.all"), "acme.shop.query.posts.all");
        assert_eq!(
            n.notice_subject("blogpost", "p1").as_deref(),
            Ok("acme.shop.notice.rejected.blogpost.p1")
        );
        assert_eq!(n.status_subject("c1").as_deref(), Ok("acme.shop.status.c1"));
        assert_eq!(
            n.errors_get_subject("c1").as_deref(),
            Ok("acme.shop.errors.get.c1")
        );
        assert_eq!(
            n.errors_list_subject("blogpost", "p1").as_deref(),
            Ok("acme.shop.errors.list.blogpost.p1")
        );
        assert_eq!(
            n.peer_get_subject("c1").as_deref(),
            Ok("acme.shop.feedback.peer.get.c1")
        );
        assert_eq!(
            n.peer_list_subject("blogpost", "p1").as_deref(),
            Ok("acme.shop.feedback.peer.list.blogpost.p1")
        );
        assert!(n.command_subject("blogpost", "p.1", "create").is_err());
        assert!(n.status_subject(">").is_err());
    }

    #[test]
    fn parsing_strips_and_checks_the_prefix() {
        let n = ns("app-a");
        let built = n
            .command_subject("blogpost", "p1", "create")
            .expect("valid");
        let parsed = n.parse_command(&built).expect("parses");
        assert_eq!(
            (parsed.aggregate_type, parsed.aggregate_id, parsed.command),
            ("blogpost", "p1", "create")
        );
        for foreign in [
            "cmd.blogpost.p1.create",
            "app-b.cmd.blogpost.p1.create",
            "app-a.evt.blogpost.p1.create",
            "app-a.cmd.blogpost.p1",
            "app-a.cmd.blogpost.p1.create.x",
            "app-ax.cmd.blogpost.p1.create",
            "app-a.cmd.blogpost.*.create",
        ] {
            assert!(n.parse_command(foreign).is_err(), "{foreign:?} parsed");
        }
        assert!(Namespace::default()
            .parse_command("app-a.cmd.blogpost.p1.create")
            .is_err());

        let event = n
            .event_subject("blogpost", "p1", "BlogPostCreated")
            .expect("valid");
        let parsed = n.parse_event(&event).expect("parses");
        assert_eq!(
            (
                parsed.aggregate_type,
                parsed.aggregate_id,
                parsed.event_type
            ),
            ("blogpost", "p1", "BlogPostCreated")
        );
        assert!(n.parse_event("evt.blogpost.p1.BlogPostCreated").is_none());
        assert!(Namespace::default().parse_event(&event).is_none());

        let status = n.status_subject("c-1").expect("valid");
        assert_eq!(n.parse_command_id(&status, STATUS_ROOT), Ok("c-1"));
        assert!(n.parse_command_id("status.c-1", STATUS_ROOT).is_err());
        assert!(n.parse_command_id(&status, ERRORS_GET_ROOT).is_err());
        let notice = n.notice_subject("blogpost", "p1").expect("valid");
        assert_eq!(
            n.parse_aggregate(&notice, NOTICE_ROOT),
            Ok(("blogpost", "p1"))
        );
        assert!(Namespace::default()
            .parse_aggregate(&notice, NOTICE_ROOT)
            .is_err());
        assert_eq!(n.strip("app-a.query.x"), Some("query.x"));
        assert_eq!(n.strip("app-ab.query.x"), None);
    }

    #[test]
    fn distinct_prefixes_give_distinct_names() {
        // Pairs that a naive mapping (dots to '-' or '_', one case) would merge.
        let prefixes = [
            "", "a", "a-b", "a.b", "a.b.c", "a.b-c", "a-b.c", "ab", "b.a", "evt-x",
        ];
        let types = ["b", "c", "b_c", "b-c", "a", "evt_c", "a_b", "x"];
        let mut streams = std::collections::BTreeMap::new();
        let mut buckets = std::collections::BTreeMap::new();
        for p in prefixes {
            let n = ns(p);
            for t in types {
                if let Some(earlier) = streams.insert(n.stream_name(t), (p, t)) {
                    panic!("{p:?}/{t:?} and {earlier:?} share a stream name");
                }
            }
            for name in [
                "jetsource_command_index",
                "projection_b",
                "projection_b_c",
                "projection_B",
            ] {
                if let Some(earlier) = buckets.insert(n.bucket(name), (p, name)) {
                    panic!("{p:?}/{name:?} and {earlier:?} share a bucket name");
                }
            }
        }
    }
}
