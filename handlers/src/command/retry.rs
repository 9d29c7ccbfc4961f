//! What a command does after a failed append or a failed reload: read the
//! aggregate again and decide again, go round again, or give up with the
//! failure as its outcome.
//!
//! A policy is a value the handler is handed, so it is tested here without
//! a server. Conflicts (another writer appended, or the store had not
//! settled) reload at once the first time, then after a jittered, growing
//! pause; store outages back off linearly. A refused or full stream, a
//! corrupt history and everything else end the command.

use super::failure::{CommandFailure, Conflict, StoreFailure};
use super::handler::HandlerConfig;
use std::time::Duration;

/// How often and how patiently a command retries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Decide-append attempts after conflicts.
    conflict_retries: u32,
    /// Attempts after store trouble.
    unavailable_retries: u32,
    /// The first back-off after store trouble; it grows linearly.
    backoff: Duration,
}

/// One command's retries so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempts {
    conflicts: u32,
    outages: u32,
    /// Whether the last reload after a failed append found newer events.
    moved: bool,
}

/// What to do next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Read the aggregate again after the pause, then decide again.
    /// `after` is the failure recovered from, for the log.
    Reload {
        pause: Duration,
        after: CommandFailure,
    },
    /// Go round again after the pause, deciding on the state as it is.
    Retry(Duration),
    /// Stop: this is the command's outcome.
    GiveUp(CommandFailure),
}

impl Attempts {
    /// No retries yet.
    pub(crate) fn new() -> Self {
        Attempts {
            conflicts: 0,
            outages: 0,
            moved: true,
        }
    }

    /// A reload after a failed append found newer events (`moved`) or not.
    pub(crate) fn reloaded(&mut self, moved: bool) {
        self.moved = moved;
    }

    /// Conflicts met so far.
    pub(crate) fn conflicts(&self) -> u32 {
        self.conflicts
    }

    /// Store outages met so far.
    pub(crate) fn outages(&self) -> u32 {
        self.outages
    }
}

impl RetryPolicy {
    /// The policy `config` sets.
    pub(crate) fn new(config: &HandlerConfig) -> Self {
        RetryPolicy {
            conflict_retries: config.conflict_retries,
            unavailable_retries: config.unavailable_retries,
            backoff: config.retry_backoff,
        }
    }

    /// What to do after `failure`, counted in `attempts`.
    pub(crate) fn next(&self, attempts: &mut Attempts, failure: CommandFailure) -> Next {
        match failure {
            CommandFailure::Conflict(Conflict::Append(last)) => {
                attempts.conflicts += 1;
                if attempts.conflicts > self.conflict_retries {
                    let attempts_made = attempts.conflicts;
                    // Refused, yet the store showed nothing newer: no other
                    // writer is ahead, the store is not settling. The
                    // outcome is unknown, which is `unavailable`.
                    return Next::GiveUp(if attempts.moved {
                        Conflict::KeptMoving {
                            attempts: attempts_made,
                            last,
                        }
                        .into()
                    } else {
                        StoreFailure::Unsettled {
                            attempts: attempts_made,
                            last,
                        }
                        .into()
                    });
                }
                // Writers that keep colliding (other processes, or a
                // clustered proposal still in flight: 10164) need time
                // apart; a jittered, growing pause gives it.
                let pause = match attempts.conflicts {
                    1 => Duration::ZERO,
                    n => conflict_pause(n),
                };
                Next::Reload {
                    pause,
                    after: Conflict::Append(last).into(),
                }
            }
            // The write may have landed: read before deciding again.
            CommandFailure::Store(StoreFailure::Unavailable(_)) => {
                attempts.outages += 1;
                if attempts.outages > self.unavailable_retries {
                    return Next::GiveUp(failure);
                }
                Next::Reload {
                    pause: self.backoff * attempts.outages,
                    after: failure,
                }
            }
            // A reload failed: decide again on what the slot holds (the
            // next append's check refuses a stale decision).
            CommandFailure::Store(StoreFailure::Load(_) | StoreFailure::Reload(_)) => {
                attempts.outages += 1;
                if attempts.outages > self.unavailable_retries {
                    return Next::GiveUp(failure);
                }
                Next::Retry(self.backoff * attempts.outages)
            }
            failure => Next::GiveUp(failure),
        }
    }
}

/// A random pause of up to 2^attempt ms, capped at 100 ms.
fn conflict_pause(attempt: u32) -> Duration {
    let ceiling = 1u64 << attempt.min(7);
    let jitter = (uuid::Uuid::new_v4().as_u128() as u64) % ceiling.min(100);
    Duration::from_millis(jitter + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::store::{AppendErrorKind, LoadErrorKind};
    use jetsource_schemas::RejectionCode;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            conflict_retries: 3,
            unavailable_retries: 2,
            backoff: Duration::from_millis(50),
        }
    }

    fn append(kind: AppendErrorKind) -> CommandFailure {
        Error::new(kind, "from the store").into()
    }

    fn reload() -> CommandFailure {
        StoreFailure::Reload(Error::new(LoadErrorKind::Unavailable, "no answer")).into()
    }

    /// The pause of a reload, or what the policy said instead.
    fn reload_pause(next: Next) -> Duration {
        match next {
            Next::Reload { pause, .. } => pause,
            other => panic!("expected a reload, got {other:?}"),
        }
    }

    fn given_up(next: Next) -> CommandFailure {
        match next {
            Next::GiveUp(failure) => failure,
            other => panic!("expected to give up, got {other:?}"),
        }
    }

    #[test]
    fn conflicts_reload_at_once_then_after_a_growing_jittered_pause() {
        let (policy, mut attempts) = (policy(), Attempts::new());
        let conflict = || append(AppendErrorKind::Conflict);
        assert_eq!(
            reload_pause(policy.next(&mut attempts, conflict())),
            Duration::ZERO
        );
        for n in 2..=3 {
            let pause = reload_pause(policy.next(&mut attempts, conflict()));
            let ceiling = Duration::from_millis(1 << n);
            assert!(
                pause >= Duration::from_millis(1) && pause <= ceiling,
                "{pause:?}"
            );
        }
        assert_eq!(attempts.conflicts(), 3);
        // A duplicate counts as a conflict.
        let failure = given_up(policy.next(&mut attempts, append(AppendErrorKind::Duplicate)));
        assert!(matches!(
            failure,
            CommandFailure::Conflict(Conflict::KeptMoving { attempts: 4, .. })
        ));
        assert_eq!(failure.code(), RejectionCode::Conflict);
    }

    #[test]
    fn conflicts_without_newer_events_end_as_unavailable() {
        let (policy, mut attempts) = (policy(), Attempts::new());
        for _ in 0..3 {
            reload_pause(policy.next(&mut attempts, append(AppendErrorKind::Conflict)));
            attempts.reloaded(false);
        }
        let failure = given_up(policy.next(&mut attempts, append(AppendErrorKind::Conflict)));
        assert!(matches!(
            failure,
            CommandFailure::Store(StoreFailure::Unsettled { attempts: 4, .. })
        ));
        assert_eq!(failure.code(), RejectionCode::Unavailable);
    }

    #[test]
    fn outages_back_off_linearly_and_share_one_count_with_failed_reloads() {
        let (policy, mut attempts) = (policy(), Attempts::new());
        let unavailable = || append(AppendErrorKind::Unavailable);
        assert_eq!(
            reload_pause(policy.next(&mut attempts, unavailable())),
            Duration::from_millis(50)
        );
        match policy.next(&mut attempts, reload()) {
            Next::Retry(pause) => assert_eq!(pause, Duration::from_millis(100)),
            other => panic!("expected a retry, got {other:?}"),
        }
        assert_eq!(attempts.outages(), 2);
        let failure = given_up(policy.next(&mut attempts, unavailable()));
        assert!(matches!(
            failure,
            CommandFailure::Store(StoreFailure::Unavailable(_))
        ));
        assert_eq!(failure.code(), RejectionCode::Unavailable);
    }

    #[test]
    fn outages_do_not_spend_the_conflict_retries() {
        let (policy, mut attempts) = (policy(), Attempts::new());
        reload_pause(policy.next(&mut attempts, append(AppendErrorKind::Unavailable)));
        for _ in 0..3 {
            reload_pause(policy.next(&mut attempts, append(AppendErrorKind::Conflict)));
        }
        assert_eq!((attempts.conflicts(), attempts.outages()), (3, 1));
    }

    #[test]
    fn a_refused_or_full_stream_and_a_corrupt_history_end_at_once() {
        let policy = policy();
        for (failure, code) in [
            (append(AppendErrorKind::Full), RejectionCode::Unavailable),
            (append(AppendErrorKind::Refused), RejectionCode::Internal),
        ] {
            let mut attempts = Attempts::new();
            let failure = given_up(policy.next(&mut attempts, failure));
            assert_eq!(failure.code(), code);
            assert_eq!((attempts.conflicts(), attempts.outages()), (0, 0));
        }
        let corrupt = super::super::failure::CorruptHistory {
            stream: "EVT_T".into(),
            subject: "evt.t.a.E".into(),
            seq: 3,
            source: jetsource_schemas::upcast::ReadEventError::new(
                jetsource_schemas::upcast::ReadEventErrorKind::Undecodable,
                "not a number",
            ),
        };
        let failure = given_up(policy.next(&mut Attempts::new(), corrupt.into()));
        assert_eq!(failure.code(), RejectionCode::Internal);
    }
}
