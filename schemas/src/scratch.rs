//! A per-thread buffer to encode outgoing bodies into.
//!
//! A `Vec` with spare capacity becomes `Bytes` only with a second
//! allocation (the shared header that remembers the capacity), and a fresh
//! `Vec` sized for every body is guesswork. Encoding into a reused buffer
//! and copying out exactly the bytes wanted costs one allocation of the
//! exact size, once per body.

use bytes::Bytes;
use std::cell::Cell;
use std::ops::Range;

/// A buffer that grew past this (a huge body) is not kept for the next one.
const KEEP_BYTES: usize = 64 * 1024;

thread_local! {
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `write` on an empty buffer and returns the bytes of the range it
/// names. The buffer is taken out of the thread's slot while `write` runs,
/// so a nested call just starts with a buffer of its own.
pub(crate) fn encode<E>(
    write: impl FnOnce(&mut Vec<u8>) -> Result<Range<usize>, E>,
) -> Result<Bytes, E> {
    let mut buffer = SCRATCH.take();
    buffer.clear();
    let result = write(&mut buffer).map(|range| Bytes::copy_from_slice(&buffer[range]));
    if buffer.capacity() <= KEEP_BYTES {
        SCRATCH.set(buffer);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_exactly_the_range_and_reuses_the_buffer() {
        let first = encode::<()>(|b| {
            b.extend_from_slice(b"xx{\"a\":1}y");
            Ok(2..9)
        });
        assert_eq!(first.as_deref(), Ok(&b"{\"a\":1}"[..]));
        // The next body starts empty, whatever the last one left.
        let second = encode::<()>(|b| {
            assert!(b.is_empty());
            b.extend_from_slice(b"z");
            Ok(0..1)
        });
        assert_eq!(second.as_deref(), Ok(&b"z"[..]));
        assert_eq!(encode::<&str>(|_| Err("no")), Err("no"));
    }

    #[test]
    fn a_nested_call_gets_its_own_buffer() {
        let outer = encode::<()>(|b| {
            b.extend_from_slice(b"outer");
            let inner = encode::<()>(|b| {
                b.extend_from_slice(b"inner");
                Ok(0..5)
            });
            assert_eq!(inner.as_deref(), Ok(&b"inner"[..]));
            Ok(0..5)
        });
        assert_eq!(outer.as_deref(), Ok(&b"outer"[..]));
    }
}
