//! The load: `connections` tasks sending requests until a deadline (or until pre-generated
//! inputs run out), recording each latency; then the numbers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A task's source of requests; `None` when its pre-generated inputs run out.
pub(crate) type Generator = Box<dyn FnMut() -> Option<reqwest::RequestBuilder> + Send>;

/// The answer a scenario's requests should get; any other counts as an error.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Expected {
    /// A 2xx.
    Success,
    /// This status (a scenario of refusals).
    Status(u16),
}

impl Expected {
    fn matches(self, status: reqwest::StatusCode) -> bool {
        match self {
            Self::Success => status.is_success(),
            Self::Status(expected) => status.as_u16() == expected,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    pub(crate) requests: usize,
    pub(crate) errors: usize,
    pub(crate) seconds: f64,
    pub(crate) latencies_us: Vec<u64>,
    pub(crate) first_error: Option<String>,
}

impl Stats {
    pub(crate) fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub(crate) fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us.get(index).copied().unwrap_or_default() as f64 / 1000.0
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.seconds,
            "requests_per_second": self.rate(),
            "latency_ms": {"p50": self.percentile(0.5), "p90": self.percentile(0.9), "p99": self.percentile(0.99), "max": self.percentile(1.0)},
            "first_error": self.first_error,
        })
    }
}

/// Paces an open loop: a thread of its own hands request `k` its scheduled time, `start` +
/// `k / rate` seconds, through connection `k % connections`'s channel, until `deadline` or until
/// every connection has ended. The thread sleeps to each time with the system's high-resolution
/// timer: tokio's timer rounds a sleep up to its next millisecond tick, which added up to a
/// millisecond of the generator's own lateness to every latency measured from a scheduled time.
fn pace(
    connections: usize,
    rate: f64,
    start: Instant,
    deadline: Instant,
) -> Vec<tokio::sync::mpsc::UnboundedReceiver<Instant>> {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..connections.max(1))
        .map(|_| tokio::sync::mpsc::unbounded_channel())
        .unzip();
    std::thread::spawn(move || {
        for k in 0u64.. {
            let Some(at) = scheduled(start, k, rate) else {
                break;
            };
            if at >= deadline || senders.iter().all(|sender| sender.is_closed()) {
                break;
            }
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let index = usize::try_from(k).unwrap_or_default() % senders.len();
            if let Some(sender) = senders.get(index) {
                let _ = sender.send(at);
            }
        }
    });
    receivers
}

/// When request `k` is due at `rate` requests per second (`--rate` is finite and above 0), or
/// `None` if that is beyond what an `Instant` can hold.
fn scheduled(start: Instant, k: u64, rate: f64) -> Option<Instant> {
    start.checked_add(Duration::try_from_secs_f64(k as f64 / rate).ok()?)
}

/// Runs one task per generator (one connection each) for `duration`: as fast as each connection
/// goes, or paced so that all together send `rate` requests per second (open loop: latency is
/// measured from each request's scheduled time, so a slow server cannot hide queueing; see
/// [`pace`]).
pub(crate) async fn run(
    generators: Vec<Generator>,
    duration: Duration,
    rate: Option<f64>,
    expected: Expected,
) -> Stats {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    let mut schedules = rate.map(|rate| pace(generators.len(), rate, start, deadline).into_iter());
    for mut next in generators {
        let mut schedule = schedules.as_mut().and_then(Iterator::next);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            while Instant::now() < deadline {
                let Some(request) = next() else { break };
                let sent = match schedule.as_mut() {
                    Some(schedule) => {
                        let Some(at) = schedule.recv().await else {
                            break;
                        };
                        at
                    }
                    None => Instant::now(),
                };
                match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.bytes().await;
                        latencies
                            .push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                        if !expected.matches(status) || body.is_err() {
                            errors += 1;
                            if first_error.is_none() {
                                first_error = Some(format!(
                                    "{status}: {}",
                                    body.map(|b| String::from_utf8_lossy(&b).into_owned())
                                        .unwrap_or_default()
                                ));
                            }
                        }
                    }
                    Err(error) => {
                        errors += 1;
                        latencies
                            .push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                        if first_error.is_none() {
                            first_error = Some(error.to_string());
                        }
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut stats = Stats {
        requests: 0,
        errors: 0,
        seconds: 0.0,
        latencies_us: Vec::new(),
        first_error: None,
    };
    for task in tasks {
        if let Ok((latencies, errors, first_error)) = task.await {
            stats.requests += latencies.len();
            stats.errors += errors;
            stats.latencies_us.extend(latencies);
            if stats.first_error.is_none() {
                stats.first_error = first_error;
            }
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    stats.latencies_us.sort_unstable();
    stats
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

    use super::*;

    /// Request `k` is due `k / rate` seconds after the start, on connection `k % connections`,
    /// and none is due at or after the deadline: each connection's times are its own schedule,
    /// staggered within one interval, whatever the pacing thread's lateness.
    #[test]
    fn the_pacer_hands_each_connection_its_scheduled_times() {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(10);
        let mut schedules = pace(3, 1000.0, start, deadline);
        for (connection, schedule) in schedules.iter_mut().enumerate() {
            let mut times = Vec::new();
            while let Some(at) = schedule.blocking_recv() {
                assert!(Instant::now() >= at, "handed over before its time");
                times.push(at.duration_since(start));
            }
            let expected: Vec<Duration> = (0..10u64)
                .filter(|k| usize::try_from(*k).unwrap() % 3 == connection)
                .map(|k| Duration::from_secs_f64(k as f64 / 1000.0))
                .collect();
            assert_eq!(times, expected, "connection {connection}");
        }
    }

    /// A rate below one a second keeps its spacing, and a due time past what an `Instant`
    /// holds ends the schedule instead of panicking.
    #[test]
    fn a_slow_rate_is_kept_and_an_endless_one_ends() {
        let start = Instant::now();
        assert_eq!(
            scheduled(start, 3, 0.5).map(|at| at.duration_since(start)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(scheduled(start, 1, 1e-300), None);
    }
}
