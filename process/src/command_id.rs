//! The `Command-Id` of each command a process manager sends, derived from
//! what caused it, so that reacting again to the same trigger (after a
//! redelivery, a crash between sending and recording, or in a second
//! process) sends the same ids and the handlers accept each command once.

/// What caused a reaction, as its command ids name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause<'a> {
    /// The stream the trigger came from (an event stream, or the
    /// manager's deadlines stream).
    pub stream: &'a str,
    /// Its sequence there.
    pub seq: u64,
    /// Which of the inputs the stored event reads as (an upcast event may
    /// read as several); 0 for most.
    pub part: usize,
}

/// The id of command `index` of the reaction of manager `manager`'s
/// instance `key` to `cause`: `pm-` and 32 hex digits of a 128-bit FNV-1a
/// hash of the parts, each length-prefixed so no two lists of parts meet.
/// A token (`[A-Za-z0-9_-]`, 35 characters) whatever the parts.
pub fn command_id(manager: &str, key: &str, cause: &Cause<'_>, index: usize) -> String {
    let mut hash = Fnv128::new();
    for part in [
        manager.as_bytes(),
        key.as_bytes(),
        cause.stream.as_bytes(),
        &cause.seq.to_be_bytes(),
        &(cause.part as u64).to_be_bytes(),
        &(index as u64).to_be_bytes(),
    ] {
        hash.write(&(part.len() as u64).to_be_bytes());
        hash.write(part);
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

    const CAUSE: Cause<'static> = Cause {
        stream: "EVT_BLOGPOST",
        seq: 7,
        part: 0,
    };

    #[test]
    fn the_same_cause_gives_the_same_id_and_any_other_part_another() {
        let id = command_id("publishing", "p1", &CAUSE, 0);
        assert_eq!(id, command_id("publishing", "p1", &CAUSE, 0));
        // Fixed: an id must not change between releases either.
        assert_eq!(id, "pm-b541011cf1feef2b9afb58c4eb71b1c2");
        let others = [
            command_id("publishing", "p1", &CAUSE, 1),
            command_id("publishing", "p2", &CAUSE, 0),
            command_id("other", "p1", &CAUSE, 0),
            command_id("publishing", "p1", &Cause { seq: 8, ..CAUSE }, 0),
            command_id("publishing", "p1", &Cause { part: 1, ..CAUSE }, 0),
            command_id(
                "publishing",
                "p1",
                &Cause {
                    stream: "EVT_X",
                    ..CAUSE
                },
                0,
            ),
            // Length prefixes: moving a character between parts changes it.
            command_id("publishingp", "1", &CAUSE, 0),
        ];
        for other in others {
            assert_ne!(id, other);
        }
        jetsource_schemas::token::validate("Command-Id", &id).expect("a token");
    }
}
