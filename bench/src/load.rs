//! The client load generator, the same for every round-trip figure: `tasks`
//! concurrent tasks spread over a few NATS connections, each sending one
//! request, awaiting its reply, and sending the next. Latency is measured
//! per request; only requests sent after the warm-up and answered before the
//! end count.

use async_nats::{Client, HeaderMap, Request};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request a client task sends.
#[derive(Debug)]
pub struct Outgoing {
    /// The subject.
    pub subject: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// What the clients send, and what counts as the expected answer.
pub trait Workload: Send + Sync + 'static {
    /// The `n`-th request of client task `task`.
    fn request(&self, task: usize, n: u64) -> Outgoing;
    /// Whether `reply` is the answer this workload expects.
    fn expected(&self, reply: &[u8]) -> bool;
}

/// How long and how hard to drive a workload.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    /// Concurrent client tasks.
    pub tasks: usize,
    /// Time run before measuring (caches, connections, first appends).
    pub warmup: Duration,
    /// Time measured.
    pub measure: Duration,
}

/// What one load run measured.
#[derive(Debug, Default)]
pub struct Sample {
    /// Requests answered as expected.
    pub count: u64,
    /// Requests answered otherwise, or not at all.
    pub unexpected: u64,
    /// The measured time.
    pub elapsed: Duration,
    /// Latencies of the expected answers, in microseconds, sorted.
    latencies_us: Vec<u32>,
}

impl Sample {
    /// Expected answers per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Adds `other`'s requests and time to this sample (rounds of one
    /// figure measured apart).
    pub fn merge(&mut self, other: Sample) {
        self.count += other.count;
        self.unexpected += other.unexpected;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
    }

    /// The `q` quantile (0..=1) of latency, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let last = self.latencies_us.len() - 1;
        let index = ((last as f64) * q).round() as usize;
        self.latencies_us
            .get(index.min(last))
            .map(|us| f64::from(*us) / 1000.0)
    }
}

/// A request's time limit: long enough that only a stuck server hits it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Drives `workload` from `connections` with `shape`.
pub async fn drive(
    connections: &[Client],
    shape: LoadShape,
    workload: Arc<dyn Workload>,
) -> Sample {
    drive_from(connections, shape, workload, &mut Vec::new()).await
}

/// Drives `workload` like [`drive`], task `t` starting at request
/// `next[t]` (0 when absent); afterwards `next` holds where each task
/// stopped, so a later round continues the same sequence of requests
/// (command ids stay unique, first visits stay first).
pub async fn drive_from(
    connections: &[Client],
    shape: LoadShape,
    workload: Arc<dyn Workload>,
    next: &mut Vec<u64>,
) -> Sample {
    next.resize(next.len().max(shape.tasks), 0);
    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let until = measure_from + shape.measure;
    let mut tasks = Vec::with_capacity(shape.tasks);
    for task in 0..shape.tasks {
        let Some(client) = connections.get(task % connections.len().max(1)).cloned() else {
            break;
        };
        let workload = workload.clone();
        let first = next.get(task).copied().unwrap_or(0);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut unexpected = 0u64;
            let mut n = first;
            loop {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                let out = workload.request(task, n);
                n += 1;
                let request = Request::new()
                    .headers(out.headers)
                    .payload(out.body)
                    .timeout(Some(REQUEST_TIMEOUT));
                let result = client.send_request(out.subject, request).await;
                let done = Instant::now();
                if sent < measure_from || done > until {
                    continue;
                }
                match result {
                    Ok(reply) if workload.expected(&reply.payload) => {
                        let us = done.duration_since(sent).as_micros();
                        latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    _ => unexpected += 1,
                }
            }
            (latencies, unexpected, n)
        }));
    }
    let mut sample = Sample {
        elapsed: shape.measure,
        ..Sample::default()
    };
    for (index, task) in tasks.into_iter().enumerate() {
        if let Ok((latencies, unexpected, n)) = task.await {
            sample.latencies_us.extend(latencies);
            sample.unexpected += unexpected;
            if let Some(slot) = next.get_mut(index) {
                *slot = n;
            }
        }
    }
    sample.latencies_us.sort_unstable();
    sample.count = sample.latencies_us.len() as u64;
    sample
}
