//! One budget's worker: polls the targets of every account that shares a credential and
//! gateway, one request at a time, each when its schedule says and the budget (and the
//! global cap) allows, retrying a transient failure once and obeying the budget's pauses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::backoff::AuthVerdict;
use super::budget::Budget;
use super::schedule::Schedule;
use super::{FirstPolls, Plan, Shared};
use crate::config::Account;
use crate::hss::{ApiError, HssClient};
use crate::metrics::AccountStatus;
use crate::model::Target;

/// A transient failure is retried once after a pause drawn from this range.
const RETRY_PAUSE_MS: std::ops::Range<u64> = 1000..3000;

/// An account of the group and the client its requests go through.
struct Member {
    /// Labels, endpoint and credentials.
    account: Arc<Account>,
    /// Built from the account's endpoint and credentials; rebuilt when they change.
    client: HssClient,
}

/// Polls the targets of one budget group, one request at a time.
pub(super) struct Worker {
    /// The budget in logs and on the status page: kind and fingerprint of the credential,
    /// and the gateway.
    label: Arc<str>,
    /// For each account of the plan, the others that share the budget (for the page).
    shares_with: Vec<Arc<[String]>>,
    /// The group's accounts by name.
    members: HashMap<String, Member>,
    /// The HTTP client (for a new [`HssClient`] when credentials change), the store and
    /// the global cap.
    shared: Shared,
    /// The credential's window and pauses; the scheduler keeps it across reloads.
    budget: Arc<Mutex<Budget>>,
    /// Target `i` of the schedule: (account, target) positions in the plan, so that no
    /// target is copied.
    targets: Vec<(usize, usize)>,
    /// When each target is due.
    schedule: Schedule,
    /// The group and poll settings this worker runs on.
    plan: Plan,
    /// New plans on reload; `None` when polling every target once, then ending.
    updates: Option<watch::Receiver<Plan>>,
    /// Told when this worker's first poll has ended, for readiness.
    first_polls: Option<Arc<FirstPolls>>,
    /// Stops this worker: its budget left the configuration, or the exporter stops.
    cancel: CancellationToken,
}

impl Worker {
    pub(super) fn new(
        plan: Plan,
        shared: Shared,
        budget: Arc<Mutex<Budget>>,
        cancel: CancellationToken,
        updates: Option<watch::Receiver<Plan>>,
        first_polls: Option<Arc<FirstPolls>>,
    ) -> Self {
        let limit = plan.group.limit();
        lock(&budget).limiter.set_limit(limit);
        let targets = plan.positions();
        let schedule = Schedule::new(targets.len(), plan.poll.interval, limit, Instant::now());
        let mut worker = Worker {
            label: plan.group.key.to_string().into(),
            shares_with: shares_with(&plan),
            members: HashMap::new(),
            shared,
            budget,
            targets,
            schedule,
            plan,
            updates,
            first_polls,
            cancel,
        };
        worker.members = worker.build_members(&HashMap::new());
        worker
    }

    /// The members of the plan, keeping the clients of `old` whose account's endpoint and
    /// credentials stay the same (pass none when the timeout changed).
    fn build_members(&self, old: &HashMap<String, Member>) -> HashMap<String, Member> {
        let timeout = self.plan.poll.timeout;
        self.plan
            .group
            .accounts
            .iter()
            .map(|account| {
                let client = match old.get(&account.name) {
                    Some(m)
                        if m.account.endpoint == account.endpoint
                            && m.account.credentials == account.credentials
                            && m.account.network == account.network =>
                    {
                        m.client.clone()
                    }
                    _ => HssClient::for_account(
                        &account.endpoint,
                        &account.credentials,
                        &account.network,
                        timeout,
                        &self.shared.http,
                    ),
                };
                let member = Member {
                    account: account.clone(),
                    client,
                };
                (account.name.clone(), member)
            })
            .collect()
    }

    /// Takes a reloaded plan: targets that stay keep their place in the schedule, added
    /// ones get a first round, and new credentials end a suspension.
    fn replan(&mut self, plan: Plan) {
        let timeout_changed = plan.poll.timeout != self.plan.poll.timeout;
        let new_credentials = plan.group.accounts.iter().any(|a| {
            self.members.get(&a.name).is_some_and(|m| {
                m.account.credentials != a.credentials || m.account.endpoint != a.endpoint
            })
        });
        let limit = plan.group.limit();
        let targets = plan.positions();
        let kept: Vec<Option<usize>> = {
            let old: HashMap<&Target, usize> = (0..self.targets.len())
                .map(|i| (self.target(i), i))
                .collect();
            targets
                .iter()
                .map(|&(a, t)| old.get(&plan.group.accounts[a].targets[t]).copied())
                .collect()
        };
        self.schedule
            .replan(&kept, plan.poll.interval, limit, Instant::now());
        self.targets = targets;
        self.shares_with = shares_with(&plan);
        self.plan = plan;
        let old = std::mem::take(&mut self.members);
        self.members = if timeout_changed {
            self.build_members(&HashMap::new())
        } else {
            self.build_members(&old)
        };
        let ended_suspension = {
            let mut budget = lock(&self.budget);
            budget.limiter.set_limit(limit);
            new_credentials && budget.backoff.new_credentials()
        };
        if new_credentials {
            tracing::info!(budget = %self.label, "new credentials or endpoint in use");
        }
        self.publish_budget();
        if ended_suspension {
            self.set_suspended(false);
        } else if self.suspended() {
            // Accounts that joined a suspended credential are suspended with it.
            self.set_suspended(true);
        }
        self.publish_next_polls();
    }

    /// Polls until cancelled; with no updates channel, polls every target once and ends.
    pub(super) async fn run(mut self) {
        self.publish_next_polls();
        self.publish_budget();
        loop {
            let now = Instant::now();
            let once = self.updates.is_none();
            let next = if once {
                // Every target once: only those not polled yet, in their first-round order.
                (0..self.schedule.len())
                    .filter(|&i| self.schedule.is_first(i))
                    .min_by_key(|&i| self.schedule.due(i))
                    .map(|i| (i, self.schedule.due(i)))
            } else {
                self.schedule.next(now)
            };
            let Some((i, due)) = next else {
                return self.told_first_polls();
            };
            if once && self.suspended() {
                self.shared.store.mark_down(
                    self.target(i),
                    "not polled: account suspended after repeated authentication failures",
                );
                self.schedule.polled(i, now);
                continue;
            }
            // Wake when the target is due and the budget would let a call through; then
            // choose again, in case a first-round target became due meanwhile.
            let wake = due.max(self.permit_at(now));
            if wake > now {
                if !self.wait(wake).await {
                    return;
                }
                continue;
            }
            let started = Instant::now();
            let hold_before = lock(&self.budget).backoff.hold_until();
            if self.poll(i).await.is_none() {
                return;
            }
            self.told_first_polls();
            self.schedule.polled(i, started);
            self.publish_budget();
            // A pause that began holds back every target: the page shows them all later.
            if lock(&self.budget).backoff.hold_until() == hold_before {
                self.publish_next_poll(i);
            } else {
                self.publish_next_polls();
            }
        }
    }

    /// Target `i` of the schedule.
    fn target(&self, i: usize) -> &Target {
        let (a, t) = self.targets[i];
        &self.plan.group.accounts[a].targets[t]
    }

    /// Sleeps until `wake`, taking a reloaded plan if one comes first; `false` when
    /// cancelled.
    async fn wait(&mut self, wake: Instant) -> bool {
        let Some(updates) = self.updates.as_mut() else {
            return self.unless_cancelled(sleep_until(wake)).await.is_some();
        };
        tokio::select! {
            () = self.cancel.cancelled() => return false,
            () = sleep_until(wake) => {}
            changed = updates.changed() => {
                if changed.is_ok() {
                    let plan = updates.borrow_and_update().clone();
                    self.replan(plan);
                }
            }
        }
        true
    }

    /// Counts this worker's first poll towards readiness, once.
    fn told_first_polls(&mut self) {
        if let Some(first) = self.first_polls.take() {
            first.done();
        }
    }

    /// One poll of entry `i`, with its allowed retries; `None` when cancelled.
    async fn poll(&mut self, i: usize) -> Option<()> {
        let target = self.target(i).clone();
        let Some(member) = self.members.get(&target.account) else {
            return Some(());
        };
        let (client, region) = (member.client.clone(), member.account.region.clone());
        if let Some(e) = client.broken() {
            self.fail(&target, &e);
            return Some(());
        }
        let mut retried = false;
        let mut refreshed = false;
        loop {
            let auth = match client.authenticator().for_project(&target.project_id).await {
                Ok(auth) => auth,
                Err(e) => {
                    if e.is_transient() && !retried {
                        retried = true;
                        self.pause_before_retry(&target, &e).await?;
                        continue;
                    }
                    self.fail(&target, &e);
                    return Some(());
                }
            };
            self.wait_for_permit().await?;
            let exchange = self.unless_cancelled(client.fetch(&target, &auth)).await?;
            self.shared.store.record_request(
                &target.account,
                &region,
                &exchange.code,
                exchange.elapsed,
            );
            match exchange.result {
                Ok(stats) => {
                    lock(&self.budget).backoff.succeeded();
                    tracing::debug!(%target, fail_num = stats.fail_num, success_num = stats.success_num, "polled");
                    self.shared.store.record_success(&target, stats);
                    return Some(());
                }
                // An IAM token may have been revoked or expired early: fetch a new one and try
                // once more, but only when the credential has no failure streak.
                Err(ApiError::Auth { .. })
                    if client.authenticator().can_refresh()
                        && !refreshed
                        && lock(&self.budget).backoff.may_fetch_new_token() =>
                {
                    refreshed = true;
                    lock(&self.budget).backoff.token_refused();
                    tracing::info!(%target, "token refused; fetching a new one");
                    client
                        .authenticator()
                        .refused(&target.project_id, &auth)
                        .await;
                }
                Err(e) if e.is_transient() && !retried => {
                    retried = true;
                    self.pause_before_retry(&target, &e).await?;
                }
                Err(e) => {
                    self.fail(&target, &e);
                    return Some(());
                }
            }
        }
    }

    fn fail(&mut self, target: &Target, error: &ApiError) {
        self.shared
            .store
            .record_failure(target, error.reason(), &error.to_string());
        let now = Instant::now();
        match error {
            ApiError::Auth {
                request_id, code, ..
            } => {
                let verdict = lock(&self.budget).backoff.auth_failed(now);
                match verdict {
                    AuthVerdict::Warn => {
                        tracing::warn!(%target, %error, "authentication refused");
                    }
                    AuthVerdict::Suspend { pause, first } => {
                        self.suspend(target, pause, first, request_id, code, error);
                    }
                }
            }
            ApiError::Throttled { retry_after, .. } => {
                let wait = lock(&self.budget).backoff.throttled(*retry_after, now);
                tracing::warn!(%target, %error, budget = %self.label, pause = %humantime::format_duration(wait), "throttled by the API; pausing every account of this credential");
            }
            _ => tracing::warn!(%target, %error, "poll failed"),
        }
    }

    /// Marks every other target of the budget down with the reason and says so, once
    /// loudly.
    fn suspend(
        &self,
        target: &Target,
        pause: Duration,
        first: bool,
        request_id: &str,
        code: &str,
        error: &ApiError,
    ) {
        self.set_suspended(true);
        let failures = lock(&self.budget).backoff.auth_failures();
        let why = format!(
            "account suspended for {} after {failures} consecutive authentication failures (last: {error})",
            humantime::format_duration(pause),
        );
        for i in 0..self.schedule.len() {
            let t = self.target(i);
            if t != target {
                self.shared.store.mark_down(t, &why);
            }
        }
        let accounts = self.plan.group.names();
        if first {
            tracing::error!(%accounts, budget = %self.label, %request_id, %code, pause = %humantime::format_duration(pause),
                "authentication refused {failures} times in a row; suspending the accounts of this credential so the API does not lock its key (check the credentials)");
        } else {
            tracing::warn!(%accounts, budget = %self.label, %request_id, pause = %humantime::format_duration(pause), "authentication still refused; suspending again");
        }
    }

    fn suspended(&self) -> bool {
        lock(&self.budget).backoff.is_suspended()
    }

    /// `hss_exporter_account_suspended` of every account of the budget.
    fn set_suspended(&self, suspended: bool) {
        for a in &self.plan.group.accounts {
            self.shared
                .store
                .set_suspended(&a.name, &a.region, suspended);
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

    /// Shows on the status page where the budget stands, for every account that spends it.
    fn publish_budget(&self) {
        let now = Instant::now();
        let (calls_last_minute, limit, suspended, hold) = {
            let b = lock(&self.budget);
            (
                b.limiter.used(now),
                b.limiter.limit(),
                b.backoff.is_suspended(),
                b.backoff.hold_until(),
            )
        };
        let paused_until = hold.filter(|h| *h > now).map(wall_clock_at);
        for (a, shares_with) in self.plan.group.accounts.iter().zip(&self.shares_with) {
            let status = AccountStatus {
                budget: self.label.clone(),
                shares_with: shares_with.clone(),
                calls_last_minute,
                limit,
                suspended,
                paused_until,
            };
            self.shared
                .store
                .set_account_status(&a.name, &a.region, status);
        }
    }

    /// Shows on the status page when each target will be polled, pauses included.
    fn publish_next_polls(&self) {
        for i in 0..self.schedule.len() {
            self.publish_next_poll(i);
        }
    }

    fn publish_next_poll(&self, i: usize) {
        let due = self.schedule.due(i);
        let at = lock(&self.budget)
            .backoff
            .hold_until()
            .map_or(due, |h| h.max(due));
        self.shared
            .store
            .set_next_poll(self.target(i), wall_clock_at(at));
    }

    /// When one more call would be allowed, by the budget, its pauses and the global cap.
    fn permit_at(&self, now: Instant) -> Instant {
        let budget = lock(&self.budget);
        let mut at = budget.limiter.next_free(now);
        if let Some(h) = budget.backoff.hold_until() {
            at = at.max(h);
        }
        drop(budget);
        if let Some(g) = lock(&self.shared.global).as_ref() {
            at = at.max(g.next_free(now));
        }
        at
    }

    /// Waits until this budget (and the global cap) may make one more call, and takes it.
    async fn wait_for_permit(&mut self) -> Option<()> {
        loop {
            let now = Instant::now();
            let at = self.permit_at(now);
            if at <= now {
                // The global cap is shared: take it and the budget's together, or neither.
                let mut global = lock(&self.shared.global);
                if let Some(g) = global.as_mut() {
                    if g.next_free(now) > now {
                        continue;
                    }
                    g.record(now);
                }
                drop(global);
                let resumed = {
                    let mut budget = lock(&self.budget);
                    budget.limiter.record(now);
                    budget.backoff.resume()
                };
                if resumed {
                    self.set_suspended(false);
                    tracing::info!(accounts = %self.plan.group.names(), "suspension over; trying the credentials again");
                }
                return Some(());
            }
            self.unless_cancelled(sleep_until(at)).await?;
        }
    }
}

/// For each account of `plan`, the other accounts of its budget.
fn shares_with(plan: &Plan) -> Vec<Arc<[String]>> {
    let accounts = &plan.group.accounts;
    accounts
        .iter()
        .map(|a| {
            accounts
                .iter()
                .filter(|o| o.name != a.name)
                .map(|o| o.name.clone())
                .collect()
        })
        .collect()
}

/// Locks a mutex whose holder may have panicked: the data stays usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
