//! The sliding-window rate limiter: no 60-second window may hold more calls than the limit.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The gateway counts calls per minute.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Added to the window so that network jitter never lets the gateway see too many calls in
/// its minute.
pub const RATE_MARGIN: Duration = Duration::from_secs(1);

/// Remembers the last `limit` calls; a new call may go when the oldest of them has left the
/// window.
#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    calls: VecDeque<Instant>,
}

impl RateLimiter {
    /// A limiter of `limit` calls in any window of a minute (and the margin).
    pub fn per_minute(limit: u32) -> Self {
        RateLimiter {
            limit: limit.max(1) as usize,
            window: RATE_WINDOW + RATE_MARGIN,
            calls: VecDeque::new(),
        }
    }

    /// The earliest moment, not before `now`, at which one more call fits.
    pub fn next_free(&self, now: Instant) -> Instant {
        if self.calls.len() < self.limit {
            now
        } else {
            (self.calls[0] + self.window).max(now)
        }
    }

    /// Changes the limit, keeping the calls already made in the window.
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit.max(1) as usize;
        while self.calls.len() > self.limit {
            self.calls.pop_front();
        }
    }

    /// The limit, in calls per window.
    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// Calls made in the window that ends at `now` (the calls are in time order: a binary
    /// search, as a high limit keeps many).
    pub fn used(&self, now: Instant) -> usize {
        let left = self
            .calls
            .partition_point(|t| now.duration_since(*t) >= self.window);
        self.calls.len() - left
    }

    /// No call in the window that ends at `now`: forgetting this limiter loses nothing.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.used(now) == 0
    }

    /// Counts a call made at `at`.
    pub fn record(&mut self, at: Instant) {
        self.calls.push_back(at);
        // Only the last `limit` calls, and only those still in the window, can hold back the
        // next one: a high limit costs no memory beyond a minute of calls.
        while self.calls.len() > self.limit
            || self
                .calls
                .front()
                .is_some_and(|t| at.duration_since(*t) >= self.window)
        {
            self.calls.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_keeps_every_window_within_the_limit() {
        let mut l = RateLimiter::per_minute(5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.next_free(t0), t0);
            l.record(t0);
        }
        assert_eq!(l.next_free(t0), t0 + RATE_WINDOW + RATE_MARGIN);
        let t1 = t0 + Duration::from_secs(61);
        l.record(t1);
        assert_eq!(l.next_free(t1), t1, "four calls remain in the window");
        assert_eq!(l.used(t1), 1);
        assert!(!l.is_idle(t1));
        assert!(l.is_idle(t1 + RATE_WINDOW + RATE_MARGIN));
    }
}
