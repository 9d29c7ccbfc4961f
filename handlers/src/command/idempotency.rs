//! The idempotency record: the command ids an aggregate accepted, and
//! where their events went, so a resent command is answered from it.

use jetsource_schemas::EventRef;

/// Where one accepted command's events went: a run of consecutive stream
/// sequences (one command's events are one atomic batch) and their types.
///
/// The record holds every command of an aggregate's history while the
/// aggregate is cached, so it is kept small. Nearly every command appends
/// one event of a type the aggregate declares (`names`, the event enum's
/// variants): that is stored as an index, with no allocation.
#[derive(Debug)]
pub(super) struct Recorded {
    pub(super) first_seq: u64,
    types: Types,
}

#[derive(Debug)]
enum Types {
    /// One event, of type `names[i]`.
    One(u16),
    /// The event types joined by `.`, which no token contains.
    Joined(Box<str>),
}

impl Recorded {
    pub(super) fn new(seq: u64, event_type: &str, names: &[&'static str]) -> Self {
        let index = names
            .iter()
            .position(|name| *name == event_type)
            .and_then(|i| u16::try_from(i).ok());
        Recorded {
            first_seq: seq,
            types: match index {
                Some(i) => Types::One(i),
                None => Types::Joined(event_type.into()),
            },
        }
    }

    /// A record read back from a snapshot: `joined` is
    /// [`Recorded::joined`]'s form.
    pub(super) fn restore(first_seq: u64, joined: &str, names: &[&'static str]) -> Self {
        if joined.contains('.') {
            Recorded {
                first_seq,
                types: Types::Joined(joined.into()),
            }
        } else {
            Recorded::new(first_seq, joined, names)
        }
    }

    /// The event types joined by `.`.
    pub(super) fn joined<'a>(&'a self, names: &[&'static str]) -> &'a str {
        match &self.types {
            // The index came from the same names.
            Types::One(i) => names.get(usize::from(*i)).copied().unwrap_or_default(),
            Types::Joined(joined) => joined,
        }
    }

    fn len(&self) -> u64 {
        match &self.types {
            Types::One(_) => 1,
            Types::Joined(joined) => joined.split('.').count() as u64,
        }
    }

    /// Adds the command's next event. An event of the same command id
    /// that does not follow the run (written by another writer) is left
    /// out: the record says where the command's events first went.
    pub(super) fn extend(&mut self, seq: u64, event_type: &str, names: &[&'static str]) {
        if seq == self.first_seq + self.len() {
            let joined = format!("{}.{event_type}", self.joined(names));
            self.types = Types::Joined(joined.into_boxed_str());
        }
    }

    /// The events as a reply lists them.
    pub(super) fn events(&self, stream: &str, names: &[&'static str]) -> Vec<EventRef> {
        self.joined(names)
            .split('.')
            .zip(self.first_seq..)
            .map(|(event_type, seq)| EventRef {
                event_type: event_type.to_string(),
                stream: stream.to_string(),
                seq,
                aggregate_id: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_lists_a_commands_events_in_order() {
        let names = ["BlogPostCreated", "BlogPostPublished"];
        let mut recorded = Recorded::new(7, "BlogPostCreated", &names);
        assert!(
            matches!(recorded.types, Types::One(0)),
            "a known type is an index"
        );
        recorded.extend(8, "BlogPostPublished", &names);
        let events = recorded.events("EVT_BLOGPOST", &names);
        let listed: Vec<_> = events
            .iter()
            .map(|e| (e.event_type.as_str(), e.stream.as_str(), e.seq))
            .collect();
        assert_eq!(
            listed,
            [
                ("BlogPostCreated", "EVT_BLOGPOST", 7),
                ("BlogPostPublished", "EVT_BLOGPOST", 8)
            ]
        );
    }

    #[test]
    fn a_one_event_record_lists_its_type_by_index_or_by_name() {
        let names = ["BlogPostCreated", "BlogPostPublished"];
        let listed = |recorded: &Recorded| {
            recorded
                .events("S", &names)
                .into_iter()
                .map(|e| (e.event_type, e.seq))
                .collect::<Vec<_>>()
        };
        let known = Recorded::new(4, "BlogPostPublished", &names);
        assert!(matches!(known.types, Types::One(1)));
        assert_eq!(listed(&known), [("BlogPostPublished".to_string(), 4)]);
        let unknown = Recorded::new(5, "SomethingElse", &names);
        assert!(matches!(unknown.types, Types::Joined(_)));
        assert_eq!(listed(&unknown), [("SomethingElse".to_string(), 5)]);
    }

    #[test]
    fn an_event_off_the_run_is_left_out() {
        let mut recorded = Recorded::new(7, "A", &[]);
        recorded.extend(9, "B", &[]);
        recorded.extend(8, "C", &[]);
        let seqs: Vec<_> = recorded
            .events("S", &[])
            .into_iter()
            .map(|e| (e.event_type, e.seq))
            .collect();
        assert_eq!(seqs, [("A".to_string(), 7), ("C".to_string(), 8)]);
    }
}
