//! When an account may call again after the API pushed back: pauses after throttling, and
//! suspensions after repeated authentication failures, before the API locks the key. A pure
//! state machine: the worker feeds it outcomes and the time, and obeys its pauses.

use std::time::Duration;

use tokio::time::Instant;

use super::limiter::RATE_WINDOW;

/// The API locks a key for 5 minutes after more than 5 consecutive authentication failures;
/// stopping after 2 leaves room for the operator's own tools.
pub const AUTH_FAILURES_BEFORE_SUSPENSION: u32 = 2;
/// The first suspension; each further one in a row doubles it.
pub const AUTH_SUSPENSION: Duration = Duration::from_secs(300);
const MAX_AUTH_SUSPENSION: Duration = Duration::from_secs(3600);
/// Pause after a 429 without `Retry-After`: one rate window, doubling while it goes on.
const THROTTLE_BACKOFF: Duration = RATE_WINDOW;
const MAX_THROTTLE_BACKOFF: Duration = Duration::from_secs(900);

/// What an authentication failure leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Not yet a streak: log it and go on.
    Warn,
    /// Stop using the credentials for `pause`; `first` when this streak had no suspension.
    Suspend {
        /// How long no request goes out.
        pause: Duration,
        /// The first suspension since the last success (it gets the louder log line).
        first: bool,
    },
}

/// One account's back-off state.
#[derive(Debug)]
pub struct Backoff {
    /// No request before this moment (throttled or suspended).
    hold_until: Option<Instant>,
    /// Suspended for failing authentication, until the next permitted call.
    suspended: bool,
    /// The pause of the next 429 without `Retry-After`.
    throttle_pause: Duration,
    /// Consecutive authentication failures; reset by any success.
    auth_failures: u32,
    /// Suspensions since the last success; each doubles the next one.
    suspensions: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            hold_until: None,
            suspended: false,
            throttle_pause: THROTTLE_BACKOFF,
            auth_failures: 0,
            suspensions: 0,
        }
    }
}

impl Backoff {
    /// No request before this moment, if any.
    pub fn hold_until(&self) -> Option<Instant> {
        self.hold_until
    }

    /// Suspended after repeated authentication failures.
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Consecutive authentication failures so far.
    pub fn auth_failures(&self) -> u32 {
        self.auth_failures
    }

    /// A successful call ends every streak.
    pub fn succeeded(&mut self) {
        self.auth_failures = 0;
        self.suspensions = 0;
        self.throttle_pause = THROTTLE_BACKOFF;
    }

    /// A refused IAM token may be replaced and tried once more, but only while the
    /// credentials have no failure streak: a wrong password must not be tried again at once.
    pub fn may_fetch_new_token(&self) -> bool {
        self.auth_failures == 0
    }

    /// A token was refused and a new one will be tried; it counts towards the streak.
    pub fn token_refused(&mut self) {
        self.auth_failures += 1;
    }

    /// Authentication failed at `now`: a warning, or a suspension once the streak is long
    /// enough, each one in a row twice as long as the last (up to an hour).
    pub fn auth_failed(&mut self, now: Instant) -> AuthVerdict {
        self.auth_failures += 1;
        if self.auth_failures < AUTH_FAILURES_BEFORE_SUSPENSION {
            return AuthVerdict::Warn;
        }
        let factor = 1u32 << self.suspensions.min(8);
        let pause = (AUTH_SUSPENSION * factor).min(MAX_AUTH_SUSPENSION);
        self.suspensions += 1;
        self.hold_until = Some(now + pause);
        self.suspended = true;
        AuthVerdict::Suspend {
            pause,
            first: self.suspensions == 1,
        }
    }

    /// Throttled at `now`: pause for `retry_after` when the API said, else for the current
    /// back-off, which doubles (up to 15 minutes) while throttling goes on. Returns the pause.
    pub fn throttled(&mut self, retry_after: Option<Duration>, now: Instant) -> Duration {
        let wait = retry_after.unwrap_or(self.throttle_pause);
        self.throttle_pause = (self.throttle_pause * 2).min(MAX_THROTTLE_BACKOFF);
        self.hold_until = Some(now + wait);
        wait
    }

    /// A call is about to go out: a suspension, if any, is over. Returns whether it was.
    pub fn resume(&mut self) -> bool {
        std::mem::take(&mut self.suspended)
    }

    /// New credentials: their predecessor's failures do not count against them, and a
    /// suspension ends. Returns whether one did.
    pub fn new_credentials(&mut self) -> bool {
        self.auth_failures = 0;
        self.suspensions = 0;
        if self.suspended {
            self.suspended = false;
            self.hold_until = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn suspends_after_two_auth_failures_and_doubles_up_to_an_hour() {
        let mut b = Backoff::default();
        let now = Instant::now();
        assert_eq!(b.auth_failed(now), AuthVerdict::Warn);
        assert!(!b.is_suspended());
        assert_eq!(
            b.auth_failed(now),
            AuthVerdict::Suspend {
                pause: Duration::from_secs(300),
                first: true
            }
        );
        assert!(b.is_suspended());
        assert_eq!(b.hold_until(), Some(now + Duration::from_secs(300)));
        assert!(b.resume(), "the next permitted call ends the suspension");
        assert!(!b.resume());
        let pauses: Vec<u64> = (0..5)
            .map(|_| match b.auth_failed(now) {
                AuthVerdict::Suspend { pause, first } => {
                    assert!(!first);
                    pause.as_secs()
                }
                AuthVerdict::Warn => panic!("a streak goes on suspending"),
            })
            .collect();
        assert_eq!(pauses, [600, 1200, 2400, 3600, 3600]);
        b.succeeded();
        assert_eq!(
            b.auth_failed(now),
            AuthVerdict::Warn,
            "a success ends the streak"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_token_is_replaced_once_and_counts_towards_the_streak() {
        let mut b = Backoff::default();
        assert!(b.may_fetch_new_token());
        b.token_refused();
        assert!(!b.may_fetch_new_token());
        assert!(matches!(
            b.auth_failed(Instant::now()),
            AuthVerdict::Suspend { first: true, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_honours_retry_after_else_doubles_up_to_fifteen_minutes() {
        let mut b = Backoff::default();
        let now = Instant::now();
        assert_eq!(
            b.throttled(Some(Duration::from_secs(7)), now),
            Duration::from_secs(7)
        );
        assert_eq!(b.hold_until(), Some(now + Duration::from_secs(7)));
        let waits: Vec<u64> = (0..6).map(|_| b.throttled(None, now).as_secs()).collect();
        assert_eq!(waits, [120, 240, 480, 900, 900, 900]);
        b.succeeded();
        assert_eq!(b.throttled(None, now), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn new_credentials_end_a_suspension() {
        let mut b = Backoff::default();
        let now = Instant::now();
        b.auth_failed(now);
        b.auth_failed(now);
        assert!(b.new_credentials());
        assert!(!b.is_suspended());
        assert_eq!(b.hold_until(), None);
        assert_eq!(b.auth_failures(), 0);
        assert!(!b.new_credentials());
    }
}
