//! A token bucket that paces a sink: `reserve(n)` says how long to wait before sending n events.
//!
//! Pacing instead of dropping: events over the rate wait (in the queue, then the spool), so a
//! rate limit never loses data. Alert sinks fold what they cannot send into digests instead.

use std::time::Duration;

use tokio::time::Instant;

/// Events per second with a burst of one second's worth.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub(crate) fn new(per_second: f64) -> Self {
        let rate = per_second.max(0.001);
        let burst = rate.max(1.0);
        Self { rate, burst, tokens: burst, last: Instant::now() }
    }

    /// Takes `n` tokens, going into debt if needed; returns the wait that pays the debt.
    pub(crate) fn reserve(&mut self, n: usize) -> Duration {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_paces() {
        let mut r = RateLimiter::new(10.0);
        assert_eq!(r.reserve(10), Duration::ZERO);
        assert_eq!(r.reserve(5), Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(r.reserve(1), Duration::from_millis(100));
    }
}
