//! Positions in event streams: what a projector has applied, what a query's
//! `After-Seq` header asks for, and which streams a projector's subjects
//! map to.

use jetsource_schemas::error::Error;
use jetsource_schemas::reply::excerpt;
use jetsource_schemas::{subject, token, Namespace};
use std::collections::BTreeMap;

/// The last stream sequence applied, per stream name.
pub type Positions = BTreeMap<String, u64>;

/// The projection names the runtime keeps for itself (`query.projectors.status`).
pub const RESERVED_NAMES: &[&str] = &["projectors"];

/// The longest projection name (it becomes part of consumer and bucket names).
pub const MAX_NAME_LEN: usize = 64;

/// Why a projection name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameErrorKind {
    /// It is empty or holds a character outside `[A-Za-z0-9_-]`.
    NotAToken,
    /// It is longer than [`MAX_NAME_LEN`].
    TooLong,
    /// It is one of [`RESERVED_NAMES`].
    Reserved,
    /// It ends in `_g<digits>`, as the names of later generations do.
    GenerationSuffix,
}

impl std::fmt::Display for NameErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameErrorKind::NotAToken => "projection name is not a subject token",
            NameErrorKind::TooLong => "projection name too long",
            NameErrorKind::Reserved => "reserved projection name",
            NameErrorKind::GenerationSuffix => {
                "projection name ends like a generation suffix (_g<N>)"
            }
        })
    }
}

/// A refused projection name.
pub type NameError = Error<NameErrorKind>;

/// Checks a projection name: a token of at most [`MAX_NAME_LEN`]
/// characters, not reserved.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    token::validate("projection name", name)
        .map_err(|e| Error::with_source(NameErrorKind::NotAToken, e))?;
    if name.len() > MAX_NAME_LEN {
        return Err(Error::new(
            NameErrorKind::TooLong,
            format!("{name:?} is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::new(NameErrorKind::Reserved, format!("{name:?}")));
    }
    // `<name>_g<N>` names generation N of `<name>`'s bucket and consumers.
    if let Some((_, digits)) = name.rsplit_once("_g") {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::new(
                NameErrorKind::GenerationSuffix,
                format!("{name:?}"),
            ));
        }
    }
    Ok(())
}

/// Why a projector's subjects are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterErrorKind {
    /// It follows no subject at all.
    NoSubjects,
    /// A subject is not `evt.<aggregate_type>.<id|*>.<EventType|*>` or
    /// `evt.<aggregate_type>.>`.
    NotAFilter,
    /// A subject's aggregate type is not a valid (lower-case) one.
    BadAggregateType,
}

impl std::fmt::Display for FilterErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FilterErrorKind::NoSubjects => "no subjects to follow",
            FilterErrorKind::NotAFilter => "not an event filter",
            FilterErrorKind::BadAggregateType => "invalid aggregate type",
        })
    }
}

/// Refused projector subjects.
pub type FilterError = Error<FilterErrorKind>;

/// Groups filter subjects by the stream holding them:
/// `evt.<type>.<rest>` belongs to `EVT_<TYPE>`. The type must be a literal
/// aggregate type; later tokens are tokens, `*`, or a final `>`. (No
/// subject prefix; see [`streams_of_in`].)
pub fn streams_of(filters: &[String]) -> Result<BTreeMap<String, Vec<String>>, FilterError> {
    streams_of_in(&Namespace::default(), filters)
}

/// Like [`streams_of`], in `namespace`: `filters` are written without the
/// prefix (`evt.blogpost.>`, as projectors name them); the result holds the
/// namespace's stream names and the filters under its prefix.
pub fn streams_of_in(
    namespace: &Namespace,
    filters: &[String],
) -> Result<BTreeMap<String, Vec<String>>, FilterError> {
    if filters.is_empty() {
        return Err(Error::new(
            FilterErrorKind::NoSubjects,
            "a projector must follow at least one subject",
        ));
    }
    let mut streams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for filter in filters {
        let tokens: Vec<&str> = filter.split('.').collect();
        let shape = || {
            Error::new(
                FilterErrorKind::NotAFilter,
                format!("{filter:?} is not evt.<aggregate_type>.<id|*>.<EventType|*> or evt.<aggregate_type>.>"),
            )
        };
        if tokens.len() < 3 || tokens[0] != subject::EVENT_ROOT || tokens.len() > 4 {
            return Err(shape());
        }
        subject::validate_aggregate_type(tokens[1]).map_err(|e| {
            Error::with_message_and_source(
                FilterErrorKind::BadAggregateType,
                format!("{filter:?}"),
                e,
            )
        })?;
        for (i, t) in tokens.iter().enumerate().skip(2) {
            let last = i == tokens.len() - 1;
            let ok =
                *t == "*" || (*t == ">" && last) || token::validate("subject token", t).is_ok();
            if !ok || (*t == ">" && tokens.len() != 3) {
                return Err(shape());
            }
        }
        if tokens.len() == 3 && tokens[2] != ">" {
            return Err(shape());
        }
        let list = streams.entry(namespace.stream_name(tokens[1])).or_default();
        let filter = namespace.subject(filter);
        if !list.contains(&filter) {
            list.push(filter);
        }
    }
    Ok(streams)
}

/// Why an `After-Seq` header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfterSeqErrorKind {
    /// A sequence is not digits only.
    NotASequence,
    /// A sequence does not fit 64 bits.
    TooLarge,
    /// A bare sequence for a projection following several streams.
    Unnamed,
    /// A part is not `<stream>:<seq>`.
    NotAPosition,
    /// A stream the projection does not follow.
    NotFollowed,
}

impl std::fmt::Display for AfterSeqErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AfterSeqErrorKind::NotASequence => "After-Seq: not a stream sequence",
            AfterSeqErrorKind::TooLarge => "After-Seq: sequence too large",
            AfterSeqErrorKind::Unnamed => "After-Seq: streams not named",
            AfterSeqErrorKind::NotAPosition => "After-Seq: not <stream>:<seq>",
            AfterSeqErrorKind::NotFollowed => "After-Seq: a stream this projection does not follow",
        })
    }
}

/// A refused `After-Seq` header.
pub type AfterSeqError = Error<AfterSeqErrorKind>;

/// The most characters of an `After-Seq` value a reason quotes: the value
/// is the client's, and an answer must fit in a message whatever it sent.
const QUOTED: usize = 64;

/// Parses an `After-Seq` header: `<seq>` when the projection follows one
/// stream (`single`), or `<stream>:<seq>[,<stream>:<seq>…]` naming streams
/// it follows. Anything else is refused, with the reason in its kind.
pub fn parse_after_seq(value: &str, followed: &[String]) -> Result<Positions, AfterSeqError> {
    let number = |s: &str| -> Result<u64, AfterSeqError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::new(
                AfterSeqErrorKind::NotASequence,
                format!("{} (digits only)", excerpt(s, QUOTED)),
            ));
        }
        s.parse::<u64>().map_err(|e| {
            Error::with_message_and_source(AfterSeqErrorKind::TooLarge, excerpt(s, QUOTED), e)
        })
    };
    let mut wanted = Positions::new();
    if !value.contains(':') {
        let seq = number(value)?;
        return match followed {
            [stream] => {
                wanted.insert(stream.clone(), seq);
                Ok(wanted)
            }
            _ => Err(Error::new(
                AfterSeqErrorKind::Unnamed,
                format!(
                    "this projection follows {} streams; name them as <stream>:<seq>[,…]",
                    followed.len()
                ),
            )),
        };
    }
    for part in value.split(',') {
        let Some((stream, seq)) = part.split_once(':') else {
            return Err(Error::new(
                AfterSeqErrorKind::NotAPosition,
                excerpt(part, QUOTED),
            ));
        };
        if !followed.iter().any(|s| s == stream) {
            return Err(Error::new(
                AfterSeqErrorKind::NotFollowed,
                format!(
                    "{} (it follows {})",
                    excerpt(stream, QUOTED),
                    followed.join(", ")
                ),
            ));
        }
        let seq = number(seq)?;
        let entry = wanted.entry(stream.to_string()).or_insert(0);
        *entry = (*entry).max(seq);
    }
    Ok(wanted)
}

/// True when `applied` has reached every position in `wanted`.
pub fn reached(applied: &Positions, wanted: &Positions) -> bool {
    wanted
        .iter()
        .all(|(stream, seq)| applied.get(stream).copied().unwrap_or(0) >= *seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_map_to_streams() {
        let s = streams_of(&[
            "evt.blogpost.>".into(),
            "evt.comment.*.CommentAdded".into(),
            "evt.comment.c1.*".into(),
        ])
        .expect("valid");
        assert_eq!(s["EVT_BLOGPOST"], vec!["evt.blogpost.>".to_string()]);
        assert_eq!(s["EVT_COMMENT"].len(), 2);
        for bad in [
            "evt.>",
            "evt.*.>",
            "evt.BlogPost.>",
            "cmd.blogpost.>",
            "evt.blogpost",
            "evt.blogpost.p1",
            "evt.blogpost.>.X",
            "evt.blogpost.p 1.*",
            "evt.blogpost.p1.X.Y",
            "evt.blogpost..X",
        ] {
            assert!(streams_of(&[bad.to_string()]).is_err(), "{bad:?} accepted");
        }
        let refused = streams_of(&["evt.BlogPost.>".into()]).expect_err("upper case");
        assert_eq!(refused.kind(), FilterErrorKind::BadAggregateType);
        let refused = streams_of(&["evt.blogpost".into()]).expect_err("too short");
        assert_eq!(refused.kind(), FilterErrorKind::NotAFilter);
        assert_eq!(
            streams_of(&[]).expect_err("none").kind(),
            FilterErrorKind::NoSubjects
        );
    }

    #[test]
    fn filters_map_to_the_namespace_streams() {
        let ns = Namespace::new("app-a").expect("valid prefix");
        let s = streams_of_in(&ns, &["evt.blogpost.>".into(), "evt.comment.c1.*".into()])
            .expect("valid");
        assert_eq!(
            s["app-a_EVT_BLOGPOST"],
            vec!["app-a.evt.blogpost.>".to_string()]
        );
        assert_eq!(
            s["app-a_EVT_COMMENT"],
            vec!["app-a.evt.comment.c1.*".to_string()]
        );
        // Subjects are named without the prefix.
        assert!(streams_of_in(&ns, &["app-a.evt.blogpost.>".into()]).is_err());
    }

    #[test]
    fn after_seq_is_strict() {
        let one = vec!["EVT_BLOGPOST".to_string()];
        let two = vec!["EVT_A".to_string(), "EVT_B".to_string()];
        assert_eq!(parse_after_seq("12", &one).expect("ok")["EVT_BLOGPOST"], 12);
        let p = parse_after_seq("EVT_A:3,EVT_B:9", &two).expect("ok");
        assert_eq!((p["EVT_A"], p["EVT_B"]), (3, 9));
        use AfterSeqErrorKind::*;
        for (bad, kind) in [
            ("", NotASequence),
            ("x", NotASequence),
            ("-1", NotASequence),
            (" 1", NotASequence),
            ("1.5", NotASequence),
            ("12a", NotASequence),
            ("99999999999999999999999", TooLarge),
        ] {
            let refused = parse_after_seq(bad, &one).expect_err(bad);
            assert_eq!(refused.kind(), kind, "{bad:?}");
        }
        for (bad, kind) in [
            ("5", Unnamed),
            ("EVT_C:1", NotFollowed),
            ("EVT_A:", NotASequence),
            ("EVT_A:x", NotASequence),
            ("EVT_A:1,", NotAPosition),
            ("EVT_A:1;EVT_B:2", NotASequence),
        ] {
            let refused = parse_after_seq(bad, &two).expect_err(bad);
            assert_eq!(refused.kind(), kind, "{bad:?}");
        }
    }

    #[test]
    fn reached_needs_every_stream() {
        let applied = Positions::from([("EVT_A".to_string(), 5)]);
        assert!(reached(
            &applied,
            &Positions::from([("EVT_A".to_string(), 5)])
        ));
        assert!(!reached(
            &applied,
            &Positions::from([("EVT_A".to_string(), 6)])
        ));
        assert!(!reached(
            &applied,
            &Positions::from([("EVT_B".to_string(), 1)])
        ));
        assert!(reached(&applied, &Positions::new()));
    }

    #[test]
    fn names_are_tokens_and_not_reserved() {
        assert!(validate_name("blogposts").is_ok());
        use NameErrorKind::*;
        for (bad, kind) in [
            ("", NotAToken),
            ("a.b", NotAToken),
            ("projectors", Reserved),
            ("*", NotAToken),
            ("posts_g2", GenerationSuffix),
            (&"x".repeat(65), TooLong),
        ] {
            let refused = validate_name(bad).expect_err(bad);
            assert_eq!(refused.kind(), kind, "{bad:?}");
        }
    }
}
