//! Long-lived tasks that serve one command after another.
//!
//! A task per command allocates the command's whole future (over 3 KB)
//! every time, and with glibc's allocator a block that large also pays for
//! consolidating the small blocks freed since the last one: about 2.5 µs
//! per command on a 2-core machine, more than any step of the command's
//! own work. A worker keeps its future. A command goes to the worker that
//! went idle last, through a channel of one; only when none is idle does
//! a new worker start. So the workers number about as many as commands
//! were in flight at once, and those that stay idle for [`Pool::linger`]
//! are let go as others go idle, or by [`Pool::reap`], which the runtime
//! calls now and then so that they go with no commands at all too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The idle workers of one kind of job.
pub(crate) struct Pool<J> {
    state: Mutex<State<J>>,
    linger: Duration,
}

struct State<J> {
    /// Oldest idle first.
    idle: VecDeque<Idle<J>>,
    closed: bool,
}

struct Idle<J> {
    home: mpsc::Sender<Handoff<J>>,
    since: Instant,
}

/// A job, and the way back to the worker it went to (so the worker holds
/// its own sender only while busy: dropping the idle list ends it).
struct Handoff<J> {
    job: J,
    home: mpsc::Sender<Handoff<J>>,
}

impl<J> Pool<J> {
    /// A pool letting workers go after `linger` idle.
    pub(crate) fn new(linger: Duration) -> Self {
        Pool {
            state: Mutex::new(State {
                idle: VecDeque::new(),
                closed: false,
            }),
            linger,
        }
    }

    fn state(&self) -> MutexGuard<'_, State<J>> {
        // Nothing panics while the lock is held; a poisoned pool is intact.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `job` to the worker that went idle last; gives it back when
    /// no worker is idle (then the caller starts one).
    pub(crate) fn hand_over(&self, mut job: J) -> Result<(), J> {
        loop {
            let Some(idle) = self.state().idle.pop_back() else {
                return Err(job);
            };
            let home = idle.home.clone();
            match idle.home.try_send(Handoff { job, home }) {
                Ok(()) => return Ok(()),
                // The worker is gone (its task ended); try the next one.
                Err(mpsc::error::TrySendError::Closed(d) | mpsc::error::TrySendError::Full(d)) => {
                    job = d.job
                }
            }
        }
    }

    /// Lets every idle worker go, and every worker that goes idle from now
    /// on.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.idle.clear();
    }

    /// Lets go of the workers idle for the linger or longer.
    pub(crate) fn reap(&self) {
        let now = Instant::now();
        self.reap_at(&mut self.state(), now);
    }

    fn reap_at(&self, state: &mut State<J>, now: Instant) {
        // Dropping a worker's sender ends its wait: it was the only one.
        while state
            .idle
            .front()
            .is_some_and(|i| now.saturating_duration_since(i.since) >= self.linger)
        {
            state.idle.pop_front();
        }
    }

    fn rest(&self, home: mpsc::Sender<Handoff<J>>) {
        let now = Instant::now();
        let mut state = self.state();
        if state.closed {
            return;
        }
        self.reap_at(&mut state, now);
        state.idle.push_back(Idle { home, since: now });
    }

    /// Workers idle now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.state().idle.len()
    }
}

/// One worker's end of a [`Pool`].
pub(crate) struct Worker<J> {
    pool: Arc<Pool<J>>,
    home: Option<mpsc::Sender<Handoff<J>>>,
    inbox: mpsc::Receiver<Handoff<J>>,
}

impl<J> Worker<J> {
    /// A worker of `pool`, busy with its first job (which the caller has).
    pub(crate) fn new(pool: Arc<Pool<J>>) -> Self {
        let (home, inbox) = mpsc::channel(1);
        Worker {
            pool,
            home: Some(home),
            inbox,
        }
    }

    /// Goes idle and waits for the next job; `None` when the pool lets
    /// this worker go.
    pub(crate) async fn next(&mut self) -> Option<J> {
        if let Some(home) = self.home.take() {
            self.pool.rest(home);
        }
        let handoff = self.inbox.recv().await?;
        self.home = Some(handoff.home);
        Some(handoff.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts a worker that reports every job it gets on `done`.
    fn start(pool: &Arc<Pool<u32>>, first: u32, done: mpsc::UnboundedSender<u32>) {
        let mut worker = Worker::new(pool.clone());
        tokio::spawn(async move {
            let mut job = first;
            loop {
                let _ = done.send(job);
                match worker.next().await {
                    Some(next) => job = next,
                    None => break,
                }
            }
            drop(done);
        });
    }

    async fn until_idle(pool: &Pool<u32>, n: usize) {
        while pool.idle() != n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_job_goes_to_an_idle_worker_or_back_to_the_caller() {
        let pool = Arc::new(Pool::new(Duration::from_secs(60)));
        assert_eq!(pool.hand_over(1), Err(1), "no worker yet");
        let (done, mut reported) = mpsc::unbounded_channel();
        start(&pool, 1, done);
        assert_eq!(reported.recv().await, Some(1));
        until_idle(&pool, 1).await;
        assert_eq!(pool.hand_over(2), Ok(()));
        assert_eq!(reported.recv().await, Some(2));
        until_idle(&pool, 1).await;
        assert_eq!(pool.hand_over(3), Ok(()));
        assert_eq!(reported.recv().await, Some(3));
    }

    #[tokio::test]
    async fn closing_ends_idle_workers_and_those_going_idle() {
        let pool = Arc::new(Pool::new(Duration::from_secs(60)));
        let (done, mut reported) = mpsc::unbounded_channel();
        start(&pool, 1, done.clone());
        start(&pool, 2, done);
        until_idle(&pool, 2).await;
        pool.close();
        assert_eq!(pool.hand_over(3), Err(3));
        let mut seen = Vec::new();
        // Both workers end, so the channel closes.
        while let Some(job) = reported.recv().await {
            seen.push(job);
        }
        seen.sort_unstable();
        assert_eq!(seen, [1, 2]);
    }

    #[tokio::test]
    async fn workers_idle_longer_than_the_linger_are_let_go() {
        let pool = Arc::new(Pool::new(Duration::from_millis(20)));
        let (first_done, mut first) = mpsc::unbounded_channel();
        start(&pool, 1, first_done);
        until_idle(&pool, 1).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        // A second worker going idle lets the stale one go.
        let (second_done, mut second) = mpsc::unbounded_channel();
        start(&pool, 2, second_done);
        assert_eq!(second.recv().await, Some(2));
        assert_eq!(first.recv().await, Some(1));
        assert_eq!(first.recv().await, None, "the stale worker ended");
        assert_eq!(pool.idle(), 1);
        assert_eq!(pool.hand_over(3), Ok(()));
        assert_eq!(second.recv().await, Some(3));
    }

    #[tokio::test]
    async fn a_reap_lets_stale_workers_go_with_no_other_traffic() {
        let pool = Arc::new(Pool::new(Duration::from_millis(20)));
        let (first_done, mut first) = mpsc::unbounded_channel();
        start(&pool, 1, first_done);
        let (second_done, mut second) = mpsc::unbounded_channel();
        start(&pool, 2, second_done);
        until_idle(&pool, 2).await;
        pool.reap();
        assert_eq!(pool.idle(), 2, "not idle long enough yet");
        tokio::time::sleep(Duration::from_millis(40)).await;
        pool.reap();
        assert_eq!(pool.idle(), 0);
        for reported in [&mut first, &mut second] {
            assert!(reported.recv().await.is_some());
            assert_eq!(reported.recv().await, None, "the stale worker ended");
        }
        assert!(pool.hand_over(3).is_err(), "no worker left to take it");
    }
}
