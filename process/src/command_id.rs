//! The `Command-Id` of each command a process manager sends, derived from
//! what caused it, so that reacting again to the same trigger (after a
//! redelivery, a crash between sending and recording, or in a second
//! process) sends the same ids and the handlers accept each command once.

/// What caused a reaction, as its command ids name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause<'a> {
    /// An event: where it is stored, and which of the inputs it reads as
    /// (an upcast event may read as several; 0 for most).
    Event {
        /// Its stream.
        stream: &'a str,
        /// Its sequence there.
        seq: u64,
        /// The input's index among those it reads as.
        part: usize,
    },
    /// A deadline: its name and the time it was set for (RFC 3339 UTC),
    /// not where its firing is stored, so that a deadline set again for the
    /// same time (an instance's state lost and rebuilt) names the same
    /// commands.
    Deadline {
        /// Its name.
        name: &'a str,
        /// Its time.
        at: &'a str,
    },
}

/// The id of command `index` of the reaction of manager `manager`'s
/// instance `key` to `cause`: `pm-` and 32 hex digits of a 128-bit FNV-1a
/// hash of the parts, each length-prefixed so no two lists of parts meet.
/// A token (`[A-Za-z0-9_-]`, 35 characters) whatever the parts.
pub fn command_id(manager: &str, key: &str, cause: &Cause<'_>, index: usize) -> String {
    command_id_at(manager, key, cause, &[index])
}

/// The id of a command by its path in the reaction: `[index]` for one the
/// trigger's reaction sent (as [`command_id`]), `[index, then]` for command
/// `then` of the reaction to the refusal of command `index`.
pub fn command_id_at(manager: &str, key: &str, cause: &Cause<'_>, path: &[usize]) -> String {
    let mut hash = Fnv128::new();
    let mut part = |bytes: &[u8]| {
        hash.write(&(bytes.len() as u64).to_be_bytes());
        hash.write(bytes);
    };
    part(manager.as_bytes());
    part(key.as_bytes());
    match cause {
        Cause::Event {
            stream,
            seq,
            part: p,
        } => {
            part(b"event");
            part(stream.as_bytes());
            part(&seq.to_be_bytes());
            part(&(*p as u64).to_be_bytes());
        }
        Cause::Deadline { name, at } => {
            part(b"deadline");
            part(name.as_bytes());
            part(at.as_bytes());
        }
    }
    for index in path {
        part(&(*index as u64).to_be_bytes());
    }
    format!("pm-{:032x}", hash.0)
}

/// FNV-1a, 128 bits: stable across compilers and releases (std's hasher
/// is not), which ids that outlive a process need.
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;

    fn new() -> Self {
        Fnv128(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u128::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAUSE: Cause<'static> = Cause::Event {
        stream: "EVT_BLOGPOST",
        seq: 7,
        part: 0,
    };

    fn event(stream: &'static str, seq: u64, part: usize) -> Cause<'static> {
        Cause::Event { stream, seq, part }
    }

    fn deadline(at: &'static str) -> Cause<'static> {
        Cause::Deadline {
            name: "publish",
            at,
        }
    }

    #[test]
    fn the_same_cause_gives_the_same_id_and_any_other_part_another() {
        let id = command_id("publishing", "p1", &CAUSE, 0);
        assert_eq!(id, command_id("publishing", "p1", &CAUSE, 0));
        // Fixed: an id must not change between releases either.
        assert_eq!(id, "pm-f677af1cd6f1ca598e043a97b782a941");
        let others = [
            command_id("publishing", "p1", &CAUSE, 1),
            command_id("publishing", "p2", &CAUSE, 0),
            command_id("other", "p1", &CAUSE, 0),
            command_id("publishing", "p1", &event("EVT_BLOGPOST", 8, 0), 0),
            command_id("publishing", "p1", &event("EVT_BLOGPOST", 7, 1), 0),
            command_id("publishing", "p1", &event("EVT_X", 7, 0), 0),
            command_id("publishing", "p1", &deadline("2026-01-01T10:00:00Z"), 0),
            command_id("publishing", "p1", &deadline("2026-01-01T10:00:01Z"), 0),
            command_id_at("publishing", "p1", &CAUSE, &[0, 0]),
            // Length prefixes: moving a character between parts changes it.
            command_id("publishingp", "1", &CAUSE, 0),
        ];
        for other in others {
            assert_ne!(id, other);
        }
        jetsource_schemas::token::validate("Command-Id", &id).expect("a token");
    }
}
