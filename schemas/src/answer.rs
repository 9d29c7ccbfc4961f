//! Sending an answer that always arrives: every query and feedback answer
//! goes through [`send`], so an answer too large for one message becomes a
//! small `too_large` reply and one whose publish fails is followed by an
//! `unavailable` reply, never by silence.
//!
//! ```json
//! {"status":"too_large","reason":"…","size":1300000,"max_payload":1048576}
//! {"status":"unavailable","reason":"…"}
//! ```
//!
//! The transport is a closure, so this contract crate stays free of NATS:
//! the caller passes its publish (`|body| client.publish(reply_to, body)`)
//! and the server's `max_payload`.

use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::future::Future;

/// The reply sent instead of an answer that could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Unsent {
    /// The answer is larger than one message may be: ask for less (a
    /// smaller page, a smaller document).
    TooLarge {
        /// Why, for people.
        reason: String,
        /// The answer's size in bytes.
        size: u64,
        /// The most bytes a message may have on this connection.
        max_payload: u64,
    },
    /// The answer could not be published; ask again.
    Unavailable {
        /// Why, for people.
        reason: String,
    },
}

impl Unsent {
    /// The encoded reply (small, and plain data, so encoding cannot fail;
    /// should it, an empty body still answers).
    pub fn to_bytes(&self) -> Bytes {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .unwrap_or_default()
    }
}

/// `body` when it fits in `max_payload` bytes, else the `too_large` reply
/// saying how large it was.
pub fn fit(body: Bytes, max_payload: usize) -> Bytes {
    if body.len() <= max_payload {
        return body;
    }
    Unsent::TooLarge {
        reason: format!(
            "the answer is {} bytes, more than the {max_payload} bytes a message may have: ask for less",
            body.len()
        ),
        size: body.len() as u64,
        max_payload: max_payload as u64,
    }
    .to_bytes()
}

/// Publishes `body` (as [`fit`] makes it) with `publish`; when that fails,
/// publishes an `unavailable` reply in its place. The error returned is the
/// last publish's, for the caller to log.
pub async fn send<F, Fut, E>(body: Bytes, max_payload: usize, publish: F) -> Result<(), E>
where
    F: Fn(Bytes) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let Err(e) = publish(fit(body, max_payload)).await else {
        return Ok(());
    };
    let unsent = Unsent::Unavailable {
        reason: format!(
            "the answer could not be sent: {}",
            crate::reply::excerpt(&e.to_string(), 200)
        ),
    };
    publish(unsent.to_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::task::{Context, Poll, Waker};

    /// Runs a future that never waits (the publishes here are immediate).
    fn now<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the future waited"),
        }
    }

    #[test]
    fn an_answer_that_fits_is_sent_as_it_is() {
        let body = Bytes::from_static(br#"{"status":"ok"}"#);
        assert_eq!(fit(body.clone(), body.len()), body);
    }

    #[test]
    fn an_answer_too_large_becomes_a_small_too_large_reply() {
        let body = Bytes::from(vec![b'x'; 5000]);
        let reply = fit(body, 4096);
        assert!(reply.len() < 4096);
        let unsent: Unsent = serde_json::from_slice(&reply).expect("a reply");
        assert!(matches!(
            unsent,
            Unsent::TooLarge {
                size: 5000,
                max_payload: 4096,
                ..
            }
        ));
        let value: serde_json::Value = serde_json::from_slice(&reply).expect("JSON");
        assert_eq!(value["status"], "too_large");
    }

    #[test]
    fn a_failed_publish_is_followed_by_an_unavailable_reply() {
        let sent = RefCell::new(Vec::<Bytes>::new());
        let result = now(send(Bytes::from_static(b"{}"), 1024, |body| {
            let first = sent.borrow().is_empty();
            sent.borrow_mut().push(body);
            async move {
                match first {
                    true => Err("connection closed"),
                    false => Ok(()),
                }
            }
        }));
        assert_eq!(result, Ok(()));
        let sent = sent.into_inner();
        assert_eq!(sent.len(), 2);
        let unsent: Unsent = serde_json::from_slice(&sent[1]).expect("a reply");
        assert!(matches!(unsent, Unsent::Unavailable { .. }));
    }
}
