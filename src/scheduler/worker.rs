//! One account's worker: polls its targets one request at a time, each when due, within
//! the account's rate limit and the global cap, retrying a transient failure once and
//! obeying the back-off state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::backoff::{AuthVerdict, Backoff};
use super::limiter::RateLimiter;
use super::{Plan, SharedLimiter};
use crate::hss::{ApiError, HssClient};
use crate::metrics::Store;
use crate::model::Target;

/// A transient failure is retried once after a pause drawn from this range.
const RETRY_PAUSE_MS: std::ops::Range<u64> = 1000..3000;

/// When a target is due; slot `i` is target `i` of the worker's plan.
struct Slot {
    due: Instant,
}

/// Polls the targets of one account, one request at a time.
pub(super) struct Worker {
    /// The account's name and region: its per-account series' labels.
    name: String,
    region: String,
    /// The account's endpoint and credentials; replaced when either changes.
    client: HssClient,
    /// The shared HTTP client, for a new [`HssClient`] when the credentials change.
    http: reqwest::Client,
    /// Where results go.
    store: Arc<Store>,
    /// This account's calls of the last minute.
    limiter: RateLimiter,
    /// Shared by all accounts; holds a limiter when `poll.rate_limit_per_minute` is set.
    global: SharedLimiter,
    /// Slot `i` is when target `i` of the plan is due.
    slots: Vec<Slot>,
    /// The account and poll settings this worker runs on.
    plan: Plan,
    /// New plans on reload; `None` when polling every target once, then ending.
    updates: Option<watch::Receiver<Plan>>,
    /// Pauses after throttling and suspensions after authentication failures.
    backoff: Backoff,
    /// Stops this worker: its account left the configuration, or the exporter stops.
    cancel: CancellationToken,
}

impl Worker {
    pub(super) fn new(
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
            client: HssClient::new(&account.endpoint, &account.credentials, poll.timeout, http),
            http: http.clone(),
            store,
            limiter: RateLimiter::per_minute(account.rate_limit_per_minute),
            global,
            slots,
            plan: plan.clone(),
            updates,
            backoff: Backoff::default(),
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
            self.client = HssClient::new(
                &new.endpoint,
                &new.credentials,
                plan.poll.timeout,
                &self.http,
            );
            if self.backoff.new_credentials() {
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

    /// Polls until cancelled; with no updates channel, polls every target once and ends.
    pub(super) async fn run(mut self) {
        self.publish_next_polls();
        if self.updates.is_none() {
            for i in 0..self.slots.len() {
                if self.backoff.is_suspended() {
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
            let wake = self
                .backoff
                .hold_until()
                .map_or(planned, |h| h.max(planned));
            let updates = self
                .updates
                .as_mut()
                .expect("a scheduled worker has updates");
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = sleep_until(wake) => {}
                changed = updates.changed() => {
                    if changed.is_ok() {
                        let plan = updates.borrow_and_update().clone();
                        self.replan(plan);
                    }
                    continue;
                }
            }
            let hold_before = self.backoff.hold_until();
            if self.poll(i).await.is_none() {
                return;
            }
            self.slots[i].due = (planned + self.plan.poll.interval).max(Instant::now());
            // Every target's next poll moves only when a pause began; otherwise just this one.
            if self.backoff.hold_until() == hold_before {
                self.publish_next_poll(i);
            } else {
                self.publish_next_polls();
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
                    self.fail(target, &e);
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
                    self.backoff.succeeded();
                    tracing::debug!(%target, fail_num = stats.fail_num, success_num = stats.success_num, "polled");
                    self.store.record_success(target, stats);
                    return Some(());
                }
                // An IAM token may have been revoked or expired early: fetch a new one and try
                // once more, but only when the key has no failure streak.
                Err(ApiError::Auth { .. })
                    if self.client.authenticator().can_refresh()
                        && !refreshed
                        && self.backoff.may_fetch_new_token() =>
                {
                    refreshed = true;
                    self.backoff.token_refused();
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
                    self.fail(target, &e);
                    return Some(());
                }
            }
        }
    }

    fn fail(&mut self, target: &Target, error: &ApiError) {
        self.store
            .record_failure(target, error.reason(), &error.to_string());
        match error {
            ApiError::Auth {
                request_id, code, ..
            } => match self.backoff.auth_failed(Instant::now()) {
                AuthVerdict::Warn => tracing::warn!(%target, %error, "authentication refused"),
                AuthVerdict::Suspend { pause, first } => {
                    self.suspend(target, pause, first, request_id, code, error);
                }
            },
            ApiError::Throttled { retry_after, .. } => {
                let wait = self.backoff.throttled(*retry_after, Instant::now());
                tracing::warn!(%target, %error, pause = %humantime::format_duration(wait), "throttled by the API; pausing this account");
            }
            _ => tracing::warn!(%target, %error, "poll failed"),
        }
    }

    /// Marks every other target down with the reason and says so, once loudly.
    fn suspend(
        &self,
        target: &Target,
        pause: Duration,
        first: bool,
        request_id: &str,
        code: &str,
        error: &ApiError,
    ) {
        self.store.set_suspended(&self.name, &self.region, true);
        let failures = self.backoff.auth_failures();
        let why = format!(
            "account suspended for {} after {failures} consecutive authentication failures (last: {error})",
            humantime::format_duration(pause),
        );
        for t in &self.plan.account.targets {
            if t != target {
                self.store.mark_down(t, &why);
            }
        }
        if first {
            tracing::error!(account = %self.name, region = %self.region, %request_id, %code, pause = %humantime::format_duration(pause),
                "authentication refused {failures} times in a row; suspending this account so the API does not lock its key (check the credentials)");
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
            () = self.cancel.cancelled() => None,
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
        let at = self
            .backoff
            .hold_until()
            .map_or(slot.due, |h| h.max(slot.due));
        self.store
            .set_next_poll(&self.plan.account.targets[i], wall_clock_at(at));
    }

    /// Waits until this account (and the global cap) may make one more call, and takes it.
    async fn wait_for_permit(&mut self) -> Option<()> {
        loop {
            let now = Instant::now();
            let mut at = self.limiter.next_free(now);
            if let Some(h) = self.backoff.hold_until() {
                at = at.max(h);
            }
            if let Some(g) = self
                .global
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_mut()
            {
                at = at.max(g.next_free(now));
                if at <= now {
                    g.record(now);
                }
            }
            if at <= now {
                self.limiter.record(now);
                if self.backoff.resume() {
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
