//! The one way the tests wait: poll a condition until a deadline, and fail
//! the test as "never happened" once it passes. A deadline is a guard
//! against hanging on a bug, never a performance bound: nothing here
//! asserts how long anything took.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// Long enough for anything this machine does; only reached by a failure.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The deadline of waits on bulk work (a replay of a long history, a
/// projector catching up with thousands of events).
pub const HANG: Duration = Duration::from_secs(120);

/// How often a condition is asked again.
const POLL: Duration = Duration::from_millis(50);

/// Runs `attempt` until it gives a value, every [`POLL`], and returns it;
/// fails the test once `deadline` has passed, naming `what` it waited for.
pub async fn eventually<T, F, Fut>(what: impl Display, deadline: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(done) = attempt().await {
            return done;
        }
        if Instant::now() >= until {
            never(what, deadline);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for a condition on what the test holds in memory.
pub async fn wait_until(what: impl Display, deadline: Duration, mut done: impl FnMut() -> bool) {
    eventually(what, deadline, || std::future::ready(done().then_some(()))).await
}

/// [`eventually`] for the tests without an async runtime (those driving
/// the binary).
pub fn eventually_blocking<T>(
    what: impl Display,
    deadline: Duration,
    mut attempt: impl FnMut() -> Option<T>,
) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(done) = attempt() {
            return done;
        }
        if Instant::now() >= until {
            never(what, deadline);
        }
        std::thread::sleep(POLL);
    }
}

/// Awaits `future`, which waits by itself (a watch, a delivery); fails
/// the test as [`eventually`] does when it is not done by `deadline`.
pub async fn within<T>(
    what: impl Display,
    deadline: Duration,
    future: impl Future<Output = T>,
) -> T {
    match tokio::time::timeout(deadline, future).await {
        Ok(done) => done,
        Err(_) => never(what, deadline),
    }
}

fn never(what: impl Display, deadline: Duration) -> ! {
    panic!("{what} never happened (waited {deadline:?})")
}
