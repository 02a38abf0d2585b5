//! `rate_limit`: a token bucket over every request, as the exporter-toolkit's (Go's
//! `rate.Limiter`): `burst` tokens at most, one more every `interval`, full at start.

use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

use super::config::RateLimit;

/// One bucket for the whole listener.
pub(super) struct RateLimiter {
    /// What it was built from, so that a reload with the same settings keeps the bucket.
    pub(super) settings: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub(super) fn new(settings: RateLimit) -> RateLimiter {
        RateLimiter {
            settings,
            state: Mutex::new((settings.burst as f64, Instant::now())),
        }
    }

    /// Takes a token if there is one. With `burst` 0 nothing is ever let through, as in Go.
    pub(super) fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill =
            now.duration_since(state.1).as_secs_f64() / self.settings.interval.as_secs_f64();
        state.0 = (state.0 + refill).min(self.settings.burst as f64);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn lets_a_burst_through_then_one_per_interval() {
        let l = RateLimiter::new(RateLimit {
            interval: Duration::from_secs(1),
            burst: 3,
        });
        assert_eq!((0..5).filter(|_| l.allow()).count(), 3);
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(l.allow());
        assert!(!l.allow());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            (0..5).filter(|_| l.allow()).count(),
            3,
            "never more than burst"
        );
        let none = RateLimiter::new(RateLimit {
            interval: Duration::from_secs(1),
            burst: 0,
        });
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!none.allow());
    }
}
