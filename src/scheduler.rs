//! Background polling: one worker per account (= per credential) spreads its targets over the
//! interval, keeps every 60-second window within the account's rate limit (and the optional
//! global one), backs off when throttled and stops before a failing key gets locked.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{min_interval, Account, PollSettings, Settings, Target};
use crate::hss::client::http_client;
use crate::hss::{ApiError, HssClient};
use crate::metrics::Store;

/// The gateway counts calls per minute.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Added to the window so that network jitter never lets the gateway see too many calls in
/// its minute.
pub const RATE_MARGIN: Duration = Duration::from_secs(1);
/// The API locks a key for 5 minutes after more than 5 consecutive authentication failures;
/// stopping after 2 leaves room for the operator's own tools.
pub const AUTH_FAILURES_BEFORE_SUSPENSION: u32 = 2;
pub const AUTH_SUSPENSION: Duration = Duration::from_secs(300);
const MAX_AUTH_SUSPENSION: Duration = Duration::from_secs(3600);
/// Pause after a 429 without `Retry-After`: one rate window, doubling while it goes on.
const THROTTLE_BACKOFF: Duration = RATE_WINDOW;
const MAX_THROTTLE_BACKOFF: Duration = Duration::from_secs(900);
/// A transient failure is retried once after a pause drawn from this range.
const RETRY_PAUSE_MS: std::ops::Range<u64> = 1000..3000;

/// Remembers the last `limit` calls; a new call may go when the oldest of them has left the
/// window.
#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    calls: VecDeque<Instant>,
}

impl RateLimiter {
    pub fn per_minute(limit: u32) -> Self {
        RateLimiter {
            limit: limit.max(1) as usize,
            window: RATE_WINDOW + RATE_MARGIN,
            calls: VecDeque::new(),
        }
    }

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

/// The optional cap across all accounts; `None` inside when there is none.
type SharedLimiter = Arc<Mutex<Option<RateLimiter>>>;

/// Start-up warnings: rounds that cannot fit in the interval at the configured rates.
pub fn capacity_warnings(settings: &Settings) -> Vec<String> {
    let interval = settings.poll.interval;
    let mut out = Vec::new();
    for a in &settings.accounts {
        let need = min_interval(a.targets.len(), a.rate_limit_per_minute);
        if need > interval {
            out.push(format!(
                "account {:?}: {} targets at {} calls/min need a poll.interval of at least {}; polling will run slower than the configured {}",
                a.name, a.targets.len(), a.rate_limit_per_minute,
                humantime::format_duration(round_up(need)), humantime::format_duration(interval)
            ));
        }
    }
    if let Some(global) = settings.poll.global_rate_limit_per_minute {
        let total = settings.targets().count();
        let need = min_interval(total, global);
        if need > interval {
            out.push(format!(
                "poll.rate_limit_per_minute: {total} targets at {global} calls/min need a poll.interval of at least {}; polling will run slower than the configured {}",
                humantime::format_duration(round_up(need)), humantime::format_duration(interval)
            ));
        }
    }
    out
}

fn round_up(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// What a worker runs on: its account and the poll settings. Sent again on reload.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    /// Shared: a plan is cloned into the worker and its update channel.
    account: Arc<Account>,
    poll: PollSettings,
}

/// The account workers and the sweeper; [`Scheduler::apply`] moves them to new settings.
pub struct Scheduler {
    store: Arc<Store>,
    /// Shared by every account's client.
    http: reqwest::Client,
    cancel: CancellationToken,
    tracker: TaskTracker,
    global: SharedLimiter,
    accounts: HashMap<String, RunningAccount>,
}

struct RunningAccount {
    plan: Plan,
    updates: watch::Sender<Plan>,
    /// A child of the root token: stops this account alone when it leaves the config.
    cancel: CancellationToken,
}

impl Scheduler {
    /// Starts one worker per account and the stale-series sweeper, all owned by `tracker`.
    pub fn start(
        settings: &Settings,
        store: Arc<Store>,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Scheduler, ApiError> {
        let mut scheduler = Scheduler {
            store: store.clone(),
            http: http_client()?,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            global: Arc::new(Mutex::new(None)),
            accounts: HashMap::new(),
        };
        scheduler.apply(settings);
        tracker.spawn(sweep(store, settings.poll.stale_after, cancel.clone()));
        Ok(scheduler)
    }

    /// Moves to `settings`: removed targets lose their series at once, added ones start
    /// polling, unchanged ones keep their values and their place in the schedule, and
    /// changed credentials are used from the next request on.
    pub fn apply(&mut self, settings: &Settings) {
        let mut new_workers = Vec::new();
        for account in &settings.accounts {
            if !self.accounts.contains_key(&account.name) {
                let plan = Plan {
                    account: Arc::new(account.clone()),
                    poll: settings.poll,
                };
                let cancel = self.cancel.child_token();
                let (tx, rx) = watch::channel(plan.clone());
                let worker = Worker::new(
                    &plan,
                    &self.http,
                    self.store.clone(),
                    self.global.clone(),
                    cancel.clone(),
                    Some(rx),
                );
                new_workers.push((
                    RunningAccount {
                        plan,
                        updates: tx,
                        cancel,
                    },
                    worker,
                ));
            }
        }
        self.store.set_stale_after(settings.poll.stale_after);
        {
            let mut global = self.global.lock().unwrap_or_else(|e| e.into_inner());
            match (settings.poll.global_rate_limit_per_minute, global.as_mut()) {
                (None, _) => *global = None,
                (Some(n), Some(limiter)) => limiter.set_limit(n),
                (Some(n), None) => *global = Some(RateLimiter::per_minute(n)),
            }
        }
        let keep: HashSet<&Target> = settings.targets().collect();
        self.store.retain_targets(&keep);
        self.store.add_targets(settings.targets());

        let names: HashSet<&str> = settings.accounts.iter().map(|a| a.name.as_str()).collect();
        self.accounts.retain(|name, running| {
            let stays = names.contains(name.as_str());
            if !stays {
                running.cancel.cancel();
                tracing::info!(account = %name, "account removed; its polling stopped");
            }
            stays
        });
        for account in &settings.accounts {
            if let Some(running) = self.accounts.get_mut(&account.name) {
                let plan = Plan {
                    account: Arc::new(account.clone()),
                    poll: settings.poll,
                };
                if running.plan != plan {
                    running.plan = plan.clone();
                    let _ = running.updates.send(plan);
                }
            }
        }
        for (running, worker) in new_workers {
            self.accounts
                .insert(running.plan.account.name.clone(), running);
            self.tracker.spawn(worker.run());
        }
    }
}

/// Polls every target once, within the rate limits; returns how many polls failed.
pub async fn poll_once(settings: &Settings, store: Arc<Store>) -> Result<usize, ApiError> {
    let global: SharedLimiter = Arc::new(Mutex::new(
        settings
            .poll
            .global_rate_limit_per_minute
            .map(RateLimiter::per_minute),
    ));
    let cancel = CancellationToken::new();
    let http = http_client()?;
    store.add_targets(settings.targets());
    let mut handles = Vec::new();
    for account in &settings.accounts {
        let plan = Plan {
            account: Arc::new(account.clone()),
            poll: settings.poll,
        };
        let w = Worker::new(
            &plan,
            &http,
            store.clone(),
            global.clone(),
            cancel.clone(),
            None,
        );
        handles.push(tokio::spawn(w.run()));
    }
    for h in handles {
        let _ = h.await;
    }
    Ok(store
        .statuses()
        .iter()
        .filter(|(_, s)| s.up != Some(true))
        .count())
}

async fn sweep(store: Arc<Store>, stale_after: Duration, cancel: CancellationToken) {
    let every = (stale_after / 20).clamp(Duration::from_secs(1), Duration::from_secs(15));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => { store.sweep_stale(); }
        }
    }
}

/// When a target is due; slot `i` is target `i` of the worker's plan.
struct Slot {
    due: Instant,
}

/// Polls the targets of one account, one request at a time.
struct Worker {
    name: String,
    region: String,
    client: HssClient,
    /// The shared HTTP client, for a new [`HssClient`] when the credentials change.
    http: reqwest::Client,
    store: Arc<Store>,
    limiter: RateLimiter,
    /// Shared by all accounts; holds a limiter when `poll.rate_limit_per_minute` is set.
    global: SharedLimiter,
    slots: Vec<Slot>,
    plan: Plan,
    /// New plans on reload; `None` when polling every target once, then ending.
    updates: Option<watch::Receiver<Plan>>,
    /// No request before this moment (throttled or suspended).
    hold_until: Option<Instant>,
    suspended: bool,
    throttle_backoff: Duration,
    /// Consecutive authentication failures; reset by any success.
    auth_failures: u32,
    /// Suspensions since the last success; each doubles the next one.
    suspensions: u32,
    cancel: CancellationToken,
}

impl Worker {
    fn new(
        plan: &Plan,
        http: &reqwest::Client,
        store: Arc<Store>,
        global: SharedLimiter,
        cancel: CancellationToken,
        updates: Option<watch::Receiver<Plan>>,
    ) -> Self {
        let (account, poll) = (&plan.account, &plan.poll);
        let start = Instant::now();
        let n = account.targets.len().max(1) as u32;
        let once = updates.is_none();
        let slots = account
            .targets
            .iter()
            .enumerate()
            .map(|(i, _)| Slot {
                // Spread over the interval so the API sees a steady trickle, not a burst.
                due: if once {
                    start
                } else {
                    start + poll.interval * i as u32 / n
                },
            })
            .collect();
        Worker {
            name: account.name.clone(),
            region: account.region.clone(),
            client: HssClient::new(account, poll.timeout, http),
            http: http.clone(),
            store,
            limiter: RateLimiter::per_minute(account.rate_limit_per_minute),
            global,
            slots,
            plan: plan.clone(),
            updates,
            hold_until: None,
            suspended: false,
            throttle_backoff: THROTTLE_BACKOFF,
            auth_failures: 0,
            suspensions: 0,
            cancel,
        }
    }

    /// Takes a reloaded plan: keeps the due time of every target that stays, spreads new
    /// ones over the interval, and starts afresh with new credentials.
    fn replan(&mut self, plan: Plan) {
        let (old, new) = (&self.plan.account, &plan.account);
        let credentials_changed = old.credentials != new.credentials
            || old.endpoint != new.endpoint
            || self.plan.poll.timeout != plan.poll.timeout;
        if credentials_changed {
            self.client = HssClient::new(new, plan.poll.timeout, &self.http);
            self.auth_failures = 0;
            self.suspensions = 0;
            if self.suspended {
                self.suspended = false;
                self.hold_until = None;
                self.store.set_suspended(&self.name, &self.region, false);
            }
            tracing::info!(account = %self.name, "new credentials or endpoint in use");
        }
        self.limiter.set_limit(new.rate_limit_per_minute);
        self.region = new.region.clone();
        let now = Instant::now();
        let mut due: HashMap<&Target, Instant> = old
            .targets
            .iter()
            .zip(&self.slots)
            .map(|(t, s)| (t, s.due))
            .collect();
        let added = new
            .targets
            .iter()
            .filter(|t| !due.contains_key(t))
            .count()
            .max(1) as u32;
        let mut k = 0;
        let slots = new
            .targets
            .iter()
            .map(|t| Slot {
                due: due.remove(t).unwrap_or_else(|| {
                    k += 1;
                    now + plan.poll.interval * (k - 1) / added
                }),
            })
            .collect();
        self.slots = slots;
        self.plan = plan;
        self.publish_next_polls();
    }

    async fn run(mut self) {
        self.publish_next_polls();
        if self.updates.is_none() {
            for i in 0..self.slots.len() {
                if self.suspended {
                    let target = self.plan.account.targets[i].clone();
                    self.store.mark_down(
                        &target,
                        "not polled: account suspended after repeated authentication failures",
                    );
                    continue;
                }
                if self.poll(i).await.is_none() {
                    return;
                }
            }
            return;
        }
        loop {
            let Some(i) = (0..self.slots.len()).min_by_key(|&i| self.slots[i].due) else {
                return;
            };
            let planned = self.slots[i].due;
            let wake = self.hold_until.map_or(planned, |h| h.max(planned));
            let updates = self
                .updates
                .as_mut()
                .expect("a scheduled worker has updates");
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = sleep_until(wake) => {}
                changed = updates.changed() => {
                    if changed.is_ok() {
                        let plan = updates.borrow_and_update().clone();
                        self.replan(plan);
                    }
                    continue;
                }
            }
            let hold_before = self.hold_until;
            if self.poll(i).await.is_none() {
                return;
            }
            self.slots[i].due = (planned + self.plan.poll.interval).max(Instant::now());
            // Every target's next poll moves only when a pause began; otherwise just this one.
            if self.hold_until != hold_before {
                self.publish_next_polls();
            } else {
                self.publish_next_poll(i);
            }
        }
    }

    /// One poll of slot `i`, with its allowed retries; `None` when cancelled.
    async fn poll(&mut self, i: usize) -> Option<()> {
        // The plan is shared: holding it keeps the target while `self` changes.
        let account = self.plan.account.clone();
        let target = &account.targets[i];
        let mut retried = false;
        let mut refreshed = false;
        loop {
            let auth = match self
                .client
                .authenticator()
                .for_project(&target.project_id)
                .await
            {
                Ok(auth) => auth,
                Err(e) => {
                    if e.is_transient() && !retried {
                        retried = true;
                        self.pause_before_retry(target, &e).await?;
                        continue;
                    }
                    self.fail(target, e);
                    return Some(());
                }
            };
            self.wait_for_permit().await?;
            let exchange = self
                .unless_cancelled(self.client.fetch(target, &auth))
                .await?;
            self.store
                .record_request(&self.name, &self.region, &exchange.code, exchange.elapsed);
            match exchange.result {
                Ok(stats) => {
                    self.auth_failures = 0;
                    self.suspensions = 0;
                    self.throttle_backoff = THROTTLE_BACKOFF;
                    tracing::debug!(%target, fail_num = stats.fail_num, success_num = stats.success_num, "polled");
                    self.store.record_success(target, stats);
                    return Some(());
                }
                // An IAM token may have been revoked or expired early: fetch a new one and try
                // once more, but only when the key has no failure streak.
                Err(ApiError::Auth { .. })
                    if self.client.authenticator().can_refresh()
                        && !refreshed
                        && self.auth_failures == 0 =>
                {
                    refreshed = true;
                    self.auth_failures += 1;
                    tracing::info!(%target, "token refused; fetching a new one");
                    self.client
                        .authenticator()
                        .refused(&target.project_id, &auth)
                        .await;
                }
                Err(e) if e.is_transient() && !retried => {
                    retried = true;
                    self.pause_before_retry(target, &e).await?;
                }
                Err(e) => {
                    self.fail(target, e);
                    return Some(());
                }
            }
        }
    }

    fn fail(&mut self, target: &Target, error: ApiError) {
        self.store.record_failure(target, &error);
        match &error {
            ApiError::Auth {
                request_id, code, ..
            } => {
                self.auth_failures += 1;
                if self.auth_failures >= AUTH_FAILURES_BEFORE_SUSPENSION {
                    self.suspend(target, request_id, code, &error);
                } else {
                    tracing::warn!(%target, %error, "authentication refused");
                }
            }
            ApiError::Throttled { retry_after, .. } => {
                let wait = retry_after.unwrap_or(self.throttle_backoff);
                self.throttle_backoff = (self.throttle_backoff * 2).min(MAX_THROTTLE_BACKOFF);
                self.hold_until = Some(Instant::now() + wait);
                tracing::warn!(%target, %error, pause = %humantime::format_duration(wait), "throttled by the API; pausing this account");
            }
            _ => tracing::warn!(%target, %error, "poll failed"),
        }
    }

    fn suspend(&mut self, target: &Target, request_id: &str, code: &str, error: &ApiError) {
        let factor = 1u32 << self.suspensions.min(8);
        let pause = (AUTH_SUSPENSION * factor).min(MAX_AUTH_SUSPENSION);
        self.suspensions += 1;
        self.hold_until = Some(Instant::now() + pause);
        self.suspended = true;
        self.store.set_suspended(&self.name, &self.region, true);
        let why = format!(
            "account suspended for {} after {} consecutive authentication failures (last: {error})",
            humantime::format_duration(pause),
            self.auth_failures
        );
        for t in &self.plan.account.targets {
            if t != target {
                self.store.mark_down(t, &why);
            }
        }
        if self.suspensions == 1 {
            tracing::error!(account = %self.name, region = %self.region, %request_id, %code, pause = %humantime::format_duration(pause),
                "authentication refused {} times in a row; suspending this account so the API does not lock its key (check the credentials)", self.auth_failures);
        } else {
            tracing::warn!(account = %self.name, %request_id, pause = %humantime::format_duration(pause), "authentication still refused; suspending again");
        }
    }

    async fn pause_before_retry(&self, target: &Target, error: &ApiError) -> Option<()> {
        let pause = Duration::from_millis(rand::thread_rng().gen_range(RETRY_PAUSE_MS));
        tracing::debug!(%target, %error, ?pause, "transient failure; retrying once");
        self.unless_cancelled(tokio::time::sleep(pause)).await
    }

    /// Runs `work` unless shutdown comes first (`None`): shutdown never waits on the cloud.
    async fn unless_cancelled<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            _ = self.cancel.cancelled() => None,
            out = work => Some(out),
        }
    }

    /// Shows on the status page when each target will be polled, pauses included.
    fn publish_next_polls(&self) {
        for i in 0..self.slots.len() {
            self.publish_next_poll(i);
        }
    }

    fn publish_next_poll(&self, i: usize) {
        let slot = &self.slots[i];
        let at = self.hold_until.map_or(slot.due, |h| h.max(slot.due));
        self.store
            .set_next_poll(&self.plan.account.targets[i], wall_clock_at(at));
    }

    /// Waits until this account (and the global cap) may make one more call, and takes it.
    async fn wait_for_permit(&mut self) -> Option<()> {
        loop {
            let now = Instant::now();
            let mut at = self.limiter.next_free(now);
            if let Some(h) = self.hold_until {
                at = at.max(h);
            }
            if let Some(g) = self
                .global
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                at = at.max(g.next_free(now));
                if at <= now {
                    g.record(now);
                }
            }
            if at <= now {
                self.limiter.record(now);
                if self.suspended {
                    self.suspended = false;
                    self.store.set_suspended(&self.name, &self.region, false);
                    tracing::info!(account = %self.name, "suspension over; trying the credentials again");
                }
                return Some(());
            }
            self.unless_cancelled(sleep_until(at)).await?;
        }
    }
}

/// The wall-clock time of a monotonic instant, for the status page.
fn wall_clock_at(at: Instant) -> SystemTime {
    let now = Instant::now();
    if at >= now {
        SystemTime::now() + (at - now)
    } else {
        SystemTime::now() - (now - at)
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
    }
}
