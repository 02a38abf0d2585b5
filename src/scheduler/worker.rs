//! One budget's worker: polls the targets of every account that shares a credential and
//! gateway, one request at a time, each when its schedule says and the budget (and the
//! global cap) allows, retrying a transient failure once and obeying the budget's pauses.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::backoff::AuthVerdict;
use super::budget::Budget;
use super::schedule::{coalesce, Schedule};
use super::{FirstPolls, Plan, Shared};
use crate::config::Account;
use crate::hss::{ApiError, HssClient, Page, PAGE_LIMIT};
use crate::metrics::AccountStatus;
use crate::model::{Listing, Registry, Statistics, Target};

/// The API's largest documented `offset`: paging never goes past it.
const MAX_OFFSET: usize = 2_000_000;

/// What a poll is about, for the store and the logs.
#[derive(Clone, Copy)]
enum Subject<'a> {
    /// A statistics target.
    Target(&'a Target),
    /// A project's registry listing.
    Listing(&'a Listing),
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Target(t) => t.fmt(f),
            Subject::Listing(l) => l.fmt(f),
        }
    }
}

/// One API call of a poll.
#[derive(Clone, Copy)]
enum Call<'a> {
    /// The statistics of a target.
    Statistics(&'a Target),
    /// The page at an offset of a listing.
    Page(&'a Listing, usize),
}

/// Its answer.
enum Answer {
    Statistics(Statistics),
    Page(Page),
}

/// The next thing to poll: entry `i` of the statistics or of the listing schedule.
#[derive(Clone, Copy, Debug)]
enum Job {
    Poll(usize),
    List(usize),
}

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
    /// The group's accounts by name and region (one account's discovered projects of
    /// several regions share a gateway when its endpoint is set).
    members: HashMap<(String, String), Member>,
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
    /// Listing `i` of the listing schedule: (account, listing) positions in the plan.
    listed: Vec<(usize, usize)>,
    /// When each registry listing is due (`poll.registries_interval`).
    listings: Schedule,
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
        let listed = plan.listing_positions();
        let listings = Schedule::new(
            listed.len(),
            plan.poll.registries_interval,
            limit,
            Instant::now(),
        );
        let mut worker = Worker {
            label: plan.group.key.to_string().into(),
            shares_with: shares_with(&plan),
            members: HashMap::new(),
            shared,
            budget,
            targets,
            schedule,
            listed,
            listings,
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
    fn build_members(
        &self,
        old: &HashMap<(String, String), Member>,
    ) -> HashMap<(String, String), Member> {
        let timeout = self.plan.poll.timeout;
        self.plan
            .group
            .accounts
            .iter()
            .map(|account| {
                let key = (account.name.clone(), account.region.clone());
                let client = match old.get(&key) {
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
                (key, member)
            })
            .collect()
    }

    /// Takes a reloaded plan: targets that stay keep their place in the schedule, added
    /// ones get a first round, and new credentials end a suspension.
    fn replan(&mut self, plan: Plan) {
        let timeout_changed = plan.poll.timeout != self.plan.poll.timeout;
        let new_credentials = plan.group.accounts.iter().any(|a| {
            let key = (a.name.clone(), a.region.clone());
            self.members.get(&key).is_some_and(|m| {
                m.account.credentials != a.credentials || m.account.endpoint != a.endpoint
            })
        });
        let limit = plan.group.limit();
        let targets = plan.positions();
        let kept = earlier_places(
            (0..self.targets.len()).map(|i| self.target(i)),
            targets
                .iter()
                .map(|&(a, t)| &plan.group.accounts[a].targets[t]),
        );
        self.schedule
            .replan(&kept, plan.poll.interval, limit, Instant::now());
        self.targets = targets;
        let listed = plan.listing_positions();
        let kept = earlier_places(
            (0..self.listed.len()).map(|i| self.listing(i)),
            listed
                .iter()
                .map(|&(a, l)| &plan.group.accounts[a].listings[l]),
        );
        self.listings
            .replan(&kept, plan.poll.registries_interval, limit, Instant::now());
        self.listed = listed;
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

    /// The next job and when it is due: the earliest of both schedules; among those already
    /// due at `now`, first rounds go before regular polls. With `once`, only what has not
    /// been polled yet, in first-round order.
    fn next_job(&self, now: Instant, once: bool) -> Option<(Job, Instant)> {
        fn pick(s: &Schedule, now: Instant, once: bool) -> Option<(usize, Instant, bool)> {
            if once {
                (0..s.len())
                    .filter(|&i| s.is_first(i))
                    .min_by_key(|&i| s.due(i))
                    .map(|i| (i, s.due(i), true))
            } else {
                s.next(now).map(|(i, due)| (i, due, s.is_first(i)))
            }
        }
        let poll = pick(&self.schedule, now, once).map(|(i, d, f)| (Job::Poll(i), d, f));
        let list = pick(&self.listings, now, once).map(|(i, d, f)| (Job::List(i), d, f));
        [poll, list]
            .into_iter()
            .flatten()
            .min_by_key(|&(_, due, first)| (due.max(now), !first, due))
            .map(|(job, due, _)| (job, due))
    }

    /// Polls until cancelled; with no updates channel, polls every target once and ends.
    pub(super) async fn run(mut self) {
        self.publish_next_polls();
        self.publish_budget();
        loop {
            let now = Instant::now();
            let once = self.updates.is_none();
            let Some((job, due)) = self.next_job(now, once) else {
                self.told_first_polls();
                // Nothing to poll (yet): an account whose projects are all discovered waits
                // for them.
                if once || !self.wait(now + Duration::from_secs(86_400)).await {
                    return;
                }
                continue;
            };
            if once && self.suspended() {
                let why = "not polled: account suspended after repeated authentication failures";
                match job {
                    Job::Poll(i) => {
                        self.shared.store.mark_down(self.target(i), why);
                        self.schedule.polled(i, now);
                    }
                    Job::List(i) => {
                        self.shared.store.mark_listing_down(self.listing(i), why);
                        self.listings.polled(i, now);
                    }
                }
                continue;
            }
            // Wake when the job is due and the budget would let a call through, at the next
            // point of the shared grid; then choose again, in case a first-round job became
            // due meanwhile.
            let wake = due.max(self.permit_at(now));
            if wake > now {
                let wake = coalesce(wake, self.shared.epoch, self.plan.poll.interval);
                if !self.wait(wake).await {
                    return;
                }
                continue;
            }
            let started = Instant::now();
            let hold_before = lock(&self.budget).backoff.hold_until();
            let done = match job {
                Job::Poll(i) => self.poll(i).await,
                Job::List(i) => self.list(i).await,
            };
            if done.is_none() {
                return;
            }
            self.told_first_polls();
            match job {
                Job::Poll(i) => self.schedule.polled(i, started),
                Job::List(i) => self.listings.polled(i, started),
            }
            self.publish_budget();
            // A pause that began holds back every target: the page shows them all later.
            if lock(&self.budget).backoff.hold_until() != hold_before {
                self.publish_next_polls();
            } else if let Job::Poll(i) = job {
                self.publish_next_poll(i);
            }
        }
    }

    /// Target `i` of the schedule.
    fn target(&self, i: usize) -> &Target {
        let (a, t) = self.targets[i];
        &self.plan.group.accounts[a].targets[t]
    }

    /// Listing `i` of the listing schedule.
    fn listing(&self, i: usize) -> &Listing {
        let (a, l) = self.listed[i];
        &self.plan.group.accounts[a].listings[l]
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
        let key = (target.account.clone(), target.region.clone());
        let Some(member) = self.members.get(&key) else {
            return Some(());
        };
        let (client, region) = (member.client.clone(), member.account.region.clone());
        let subject = Subject::Target(&target);
        match self
            .request(&client, &region, subject, Call::Statistics(&target))
            .await?
        {
            Ok(Answer::Statistics(stats)) => {
                tracing::debug!(%target, fail_num = stats.fail_num, success_num = stats.success_num, "polled");
                self.shared.store.record_success(&target, stats);
            }
            Ok(Answer::Page(_)) => unreachable!("a statistics call answers statistics"),
            Err(e) => {
                self.shared
                    .store
                    .record_failure(&target, e.reason(), &e.to_string());
                self.failed(subject, &e);
            }
        }
        Some(())
    }

    /// One listing of entry `i` of the listing schedule: every page until `total_num` (or
    /// `poll.max_registries_per_project`) is reached, each page one call of the budget. Any
    /// failed page fails the whole listing: never a partial truth. `None` when cancelled.
    async fn list(&mut self, i: usize) -> Option<()> {
        let listing = self.listing(i).clone();
        let key = (listing.account.clone(), listing.region.clone());
        let Some(member) = self.members.get(&key) else {
            return Some(());
        };
        let (client, region) = (member.client.clone(), member.account.region.clone());
        let subject = Subject::Listing(&listing);
        let max = self.plan.poll.max_registries_per_project;
        let mut registries: Vec<Registry> = Vec::new();
        let mut ids: HashSet<String> = HashSet::new();
        let (mut offset, mut without_id, mut pages) = (0usize, 0usize, 0usize);
        let outcome = loop {
            let page = match self
                .request(&client, &region, subject, Call::Page(&listing, offset))
                .await?
            {
                Ok(Answer::Page(page)) => page,
                Ok(Answer::Statistics(_)) => unreachable!("a listing call answers a page"),
                Err(e) => break Err(e),
            };
            pages += 1;
            let n = page.registries.len();
            for r in page.registries {
                if r.id.is_empty() {
                    without_id += 1;
                } else if ids.insert(r.id.clone()) {
                    registries.push(r);
                }
            }
            offset += n;
            if registries.len() >= max {
                break Ok(page
                    .total_num
                    .map_or(registries.len() > max, |t| t > max as u64));
            }
            match page.total_num {
                Some(total) if offset as u64 >= total => break Ok(false),
                Some(total) if n == 0 => {
                    break Err(ApiError::Decode(format!(
                        "the page at offset {offset} is empty, but total_num is {total}"
                    )))
                }
                None if n < PAGE_LIMIT => break Ok(false),
                _ => {}
            }
            if offset >= MAX_OFFSET {
                break Err(ApiError::Decode(format!(
                    "paging reached offset {offset} without reaching total_num"
                )));
            }
        };
        match outcome {
            Ok(truncated) => {
                if truncated {
                    registries.truncate(max);
                    tracing::warn!(%listing, max_registries_per_project = max, "the project has more registries than poll.max_registries_per_project; only that many are exported");
                    self.shared.store.record_listing_truncated(&listing);
                }
                if without_id > 0 {
                    tracing::warn!(%listing, registries = without_id, "registries without an id in the listing are not exported");
                }
                tracing::debug!(%listing, registries = registries.len(), pages, "listed");
                self.shared
                    .store
                    .record_listing_success(&listing, registries);
            }
            Err(e) => {
                self.shared
                    .store
                    .record_listing_failure(&listing, e.reason(), &e.to_string());
                self.failed(subject, &e);
            }
        }
        Some(())
    }

    /// One API call with its allowed retries, within the budget: `None` when cancelled.
    /// Every attempt is counted; an IAM token the API refuses is replaced once.
    async fn request(
        &mut self,
        client: &HssClient,
        region: &str,
        subject: Subject<'_>,
        call: Call<'_>,
    ) -> Option<Result<Answer, ApiError>> {
        let (account, project_id) = match call {
            Call::Statistics(t) => (&t.account, &t.project_id),
            Call::Page(l, _) => (&l.account, &l.project_id),
        };
        if let Some(e) = client.broken() {
            return Some(Err(e));
        }
        let mut retried = false;
        let mut refreshed = false;
        loop {
            let auth = match client.authenticator().for_project(project_id).await {
                Ok(auth) => auth,
                Err(e) => {
                    if e.is_transient() && !retried {
                        retried = true;
                        self.pause_before_retry(subject, &e).await?;
                        continue;
                    }
                    return Some(Err(e));
                }
            };
            self.wait_for_permit().await?;
            let (code, elapsed, result) = match call {
                Call::Statistics(target) => {
                    let e = self.unless_cancelled(client.fetch(target, &auth)).await?;
                    (e.code, e.elapsed, e.result.map(Answer::Statistics))
                }
                Call::Page(listing, offset) => {
                    let e = self
                        .unless_cancelled(client.list_registries(listing, offset, &auth))
                        .await?;
                    (e.code, e.elapsed, e.result.map(Answer::Page))
                }
            };
            self.shared
                .store
                .record_request(account, region, &code, elapsed);
            match result {
                Ok(answer) => {
                    lock(&self.budget).backoff.succeeded();
                    return Some(Ok(answer));
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
                    tracing::info!(%subject, "token refused; fetching a new one");
                    client.authenticator().refused(project_id, &auth).await;
                }
                Err(e) if e.is_transient() && !retried => {
                    retried = true;
                    self.pause_before_retry(subject, &e).await?;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// What a failed poll means for the budget: a warning, a suspension, or a pause.
    fn failed(&mut self, subject: Subject<'_>, error: &ApiError) {
        let now = Instant::now();
        match error {
            ApiError::Auth {
                request_id, code, ..
            } => {
                let verdict = lock(&self.budget).backoff.auth_failed(now);
                match verdict {
                    AuthVerdict::Warn => {
                        tracing::warn!(%subject, %error, "authentication refused");
                    }
                    AuthVerdict::Suspend { pause, first } => {
                        self.suspend(subject, pause, first, request_id, code, error);
                    }
                }
            }
            ApiError::Throttled { retry_after, .. } => {
                let wait = lock(&self.budget).backoff.throttled(*retry_after, now);
                tracing::warn!(%subject, %error, budget = %self.label, pause = %humantime::format_duration(wait), "throttled by the API; pausing every account of this credential");
            }
            _ => tracing::warn!(%subject, %error, "poll failed"),
        }
    }

    /// Marks every other target of the budget down with the reason and says so, once
    /// loudly.
    fn suspend(
        &self,
        subject: Subject<'_>,
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
            if !matches!(subject, Subject::Target(s) if s == t) {
                self.shared.store.mark_down(t, &why);
            }
        }
        for i in 0..self.listings.len() {
            let l = self.listing(i);
            if !matches!(subject, Subject::Listing(s) if s == l) {
                self.shared.store.mark_listing_down(l, &why);
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

    async fn pause_before_retry(&self, subject: Subject<'_>, error: &ApiError) -> Option<()> {
        let pause = Duration::from_millis(rand::thread_rng().gen_range(RETRY_PAUSE_MS));
        tracing::debug!(%subject, %error, ?pause, "transient failure; retrying once");
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

/// For each of the `new` entries, the index among the `old` ones of the same entry, if any.
fn earlier_places<'a, T: Eq + std::hash::Hash + 'a>(
    old: impl Iterator<Item = &'a T>,
    new: impl Iterator<Item = &'a T>,
) -> Vec<Option<usize>> {
    let old: HashMap<&T, usize> = old.enumerate().map(|(i, t)| (t, i)).collect();
    new.map(|t| old.get(t).copied()).collect()
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
