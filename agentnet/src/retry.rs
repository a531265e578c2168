//! Bounded retries with exponential backoff.
//!
//! Every loop that waits for something outside the agent (a metadata
//! service, a device, an etcd member catching up) goes through [`Retry`],
//! which stops at whichever comes first: the attempt limit or the total time
//! limit. Each attempt is told its deadline so that its own I/O timeouts never
//! run past the total.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Error};

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts at most (at least one is always made).
    pub max_attempts: u32,
    /// Total time at most, from the first attempt's start.
    pub max_total: Duration,
    /// Delay after the first failure; doubled after each further one.
    pub initial_delay: Duration,
    /// Delays never grow past this.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 10,
            max_total: Duration::from_secs(120),
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(15),
        }
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum Attempt {
    /// Worth trying again (connection refused, timeout, HTTP 5xx, not yet ready).
    Transient(Error),
    /// Trying again cannot help (HTTP 404, untrusted certificate, bad data).
    Permanent(Error),
}

impl Attempt {
    /// A transient failure with this message.
    pub fn transient(e: impl Into<Error>) -> Self {
        Attempt::Transient(e.into())
    }
    /// A permanent failure with this message.
    pub fn permanent(e: impl Into<Error>) -> Self {
        Attempt::Permanent(e.into())
    }
}

impl Retry {
    /// A policy that makes exactly one attempt within `max_total`.
    pub fn once(max_total: Duration) -> Self {
        Retry {
            max_attempts: 1,
            max_total,
            ..Retry::default()
        }
    }

    /// The delay after failed attempt number `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Run `f` until it succeeds, fails permanently, or the limits are hit.
    /// `f` receives the deadline of the whole loop. `what` names the thing
    /// being waited for in progress lines and in the final error.
    pub fn run<T>(
        &self,
        what: &str,
        mut f: impl FnMut(Instant) -> Result<T, Attempt>,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        let deadline = start + self.max_total;
        let mut n = 0;
        loop {
            n += 1;
            let err = match f(deadline) {
                Ok(v) => return Ok(v),
                Err(Attempt::Permanent(e)) => return Err(e),
                Err(Attempt::Transient(e)) => e,
            };
            let now = Instant::now();
            let delay = self.delay(n);
            if n >= self.max_attempts || now + delay >= deadline {
                return Err(anyhow!(
                    "gave up on {what} after {n} attempt{} in {:.1}s: {err:#}",
                    if n == 1 { "" } else { "s" },
                    (now - start).as_secs_f64()
                ));
            }
            crate::log(&format!(
                "{what}: attempt {n} failed ({err:#}); retrying in {:.1}s",
                delay.as_secs_f64()
            ));
            std::thread::sleep(delay);
        }
    }
}

/// Time left until `deadline`, at least 1 ms (socket timeouts reject zero).
pub fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(attempts: u32, total_ms: u64) -> Retry {
        Retry {
            max_attempts: attempts,
            max_total: Duration::from_millis(total_ms),
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let r = quick(10, 1000);
        let d: Vec<u128> = (1..=5).map(|n| r.delay(n).as_millis()).collect();
        assert_eq!(d, vec![10, 20, 40, 40, 40]);
        assert_eq!(r.delay(200), Duration::from_millis(40));
    }

    #[test]
    fn stops_after_max_attempts() {
        let mut calls = 0;
        let e = quick(3, 10_000)
            .run("thing", |_| -> Result<(), _> {
                calls += 1;
                Err(Attempt::transient(anyhow!("nope")))
            })
            .unwrap_err();
        assert_eq!(calls, 3);
        assert!(format!("{e}").contains("after 3 attempts"), "{e}");
    }

    #[test]
    fn stops_at_total_time() {
        let start = Instant::now();
        let mut calls = 0;
        quick(1000, 150)
            .run("thing", |_| -> Result<(), _> {
                calls += 1;
                Err(Attempt::transient(anyhow!("nope")))
            })
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(400));
        assert!(calls < 20, "{calls}");
    }

    #[test]
    fn permanent_errors_stop_at_once() {
        let mut calls = 0;
        let e = quick(10, 10_000)
            .run("thing", |_| -> Result<(), _> {
                calls += 1;
                Err(Attempt::permanent(anyhow!("no such thing")))
            })
            .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(format!("{e}"), "no such thing");
    }

    #[test]
    fn success_after_failures() {
        let mut calls = 0;
        let v = quick(5, 10_000)
            .run("thing", |_| {
                calls += 1;
                if calls < 3 {
                    Err(Attempt::transient(anyhow!("not yet")))
                } else {
                    Ok(calls)
                }
            })
            .unwrap();
        assert_eq!(v, 3);
    }
}
