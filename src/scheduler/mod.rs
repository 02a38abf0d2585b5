//! Background polling within the API's rate limits. Calls are counted per credential and
//! gateway ([`budget`]): every account that uses one credential at one gateway shares one
//! budget and one worker, which polls their targets one at a time on a [`schedule`]: a first
//! round as fast as the budget allows, then spread over the interval. Budgets back off when
//! throttled and stop before a failing key gets locked ([`backoff`]), and outlive reloads.

mod backoff;
pub mod budget;
pub mod discover;
mod limiter;
pub mod plan;
mod schedule;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use backoff::{AUTH_FAILURES_BEFORE_SUSPENSION, AUTH_SUSPENSION};
pub use limiter::{RateLimiter, RATE_MARGIN, RATE_WINDOW};
pub use plan::{capacity_warnings, describe, min_interval};

use crate::config::{Account, PollSettings, Settings};
use crate::hss::HttpClients;
use crate::metrics::{InsecureAccount, Store};
use crate::model::{Listing, Target};
use budget::{Budget, BudgetKey, Group};
use worker::Worker;

/// The optional cap across all budgets; `None` inside when there is none.
type SharedLimiter = Arc<Mutex<Option<RateLimiter>>>;

/// What every worker shares: the HTTP clients, the store, the global cap and the grid
/// wake-ups are rounded to.
#[derive(Clone)]
struct Shared {
    /// One client per distinct network settings; each connection pool serves every account
    /// that reaches the API the same way.
    http: Arc<HttpClients>,
    /// Where results go.
    store: Arc<Store>,
    /// The cap across budgets (`poll.rate_limit_per_minute`).
    global: SharedLimiter,
    /// Where the grid of wake-ups starts (see [`schedule::coalesce`]).
    epoch: tokio::time::Instant,
}

impl Shared {
    fn new(settings: &Settings, store: Arc<Store>) -> Shared {
        Shared {
            http: Arc::new(HttpClients::new()),
            store,
            global: Arc::new(Mutex::new(
                settings
                    .poll
                    .global_rate_limit_per_minute
                    .map(RateLimiter::per_minute),
            )),
            epoch: tokio::time::Instant::now(),
        }
    }
}

/// What a worker runs on: its budget group and the poll settings. Sent again on reload.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    group: Group,
    poll: PollSettings,
}

impl Plan {
    /// Where every target of the group is: (account, target) positions, account by account
    /// in the order of the file.
    fn positions(&self) -> Vec<(usize, usize)> {
        self.positions_of(|a| a.targets.len())
    }

    /// Every registry listing of the group as (account, listing) positions, in the same
    /// order.
    fn listing_positions(&self) -> Vec<(usize, usize)> {
        self.positions_of(|a| a.listings.len())
    }

    fn positions_of(&self, count: impl Fn(&Account) -> usize) -> Vec<(usize, usize)> {
        self.group
            .accounts
            .iter()
            .enumerate()
            .flat_map(|(a, account)| (0..count(account)).map(move |t| (a, t)))
            .collect()
    }
}

/// How many of the workers started with the exporter have not finished their first poll.
#[derive(Debug)]
pub struct FirstPolls {
    pending: watch::Sender<usize>,
}

impl FirstPolls {
    fn new(workers: usize) -> Arc<FirstPolls> {
        Arc::new(FirstPolls {
            pending: watch::Sender::new(workers),
        })
    }

    /// One worker's first poll has ended, whatever its outcome.
    fn done(&self) {
        self.pending.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Waits until every worker's first poll has ended: each credential has been tried.
    pub async fn wait(&self) {
        let mut pending = self.pending.subscribe();
        let _ = pending.wait_for(|n| *n == 0).await;
    }
}

/// A running worker of one budget.
struct Running {
    /// What it runs on now.
    plan: Plan,
    /// Where reloaded plans go.
    updates: watch::Sender<Plan>,
    /// A child of the root token: stops this worker alone when its budget leaves.
    cancel: CancellationToken,
    /// To wait for it to end before its series are removed.
    handle: JoinHandle<()>,
}

/// The budgets' workers and the sweeper; [`Scheduler::apply`] moves them to new settings.
pub struct Scheduler {
    /// The HTTP client, the store and the global cap, handed to every worker.
    shared: Shared,
    /// The root token: stops everything.
    cancel: CancellationToken,
    /// Owns every task, for shutdown.
    tracker: TaskTracker,
    /// Every budget in use, and those left by a reload whose calls still count.
    budgets: HashMap<BudgetKey, Arc<Mutex<Budget>>>,
    /// One worker per budget in use.
    workers: HashMap<BudgetKey, Running>,
    /// The first polls of the workers started with the exporter.
    first_polls: Arc<FirstPolls>,
    /// The runtime the workers (and the connections of their requests) run on.
    runtime: Handle,
}

impl Scheduler {
    /// Starts one worker per budget on `runtime` and the stale-series sweeper, all owned by
    /// `tracker`.
    pub fn start(
        settings: &Settings,
        store: Arc<Store>,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
        runtime: &Handle,
    ) -> Result<Scheduler, reqwest::Error> {
        let groups = budget::groups(settings);
        let mut scheduler = Scheduler {
            shared: Shared::new(settings, store.clone()),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            budgets: HashMap::new(),
            workers: HashMap::new(),
            first_polls: FirstPolls::new(groups.len()),
            runtime: runtime.clone(),
        };
        store.add_accounts(
            settings
                .accounts
                .iter()
                .map(|a| (a.name.as_str(), a.region.as_str())),
        );
        store.add_targets(settings.targets());
        flag_insecure_tls(settings, &store);
        store.add_listings(settings.listings());
        for group in groups {
            let plan = Plan {
                group,
                poll: settings.poll,
            };
            let first = Some(scheduler.first_polls.clone());
            scheduler.spawn(plan, first);
        }
        tracker.spawn(sweep(store, settings.poll.stale_after, cancel.clone()));
        Ok(scheduler)
    }

    /// The HTTP clients of the workers, by network settings: project discovery shares them.
    pub fn http_clients(&self) -> Arc<HttpClients> {
        self.shared.http.clone()
    }

    /// The first polls of the workers started with the exporter, for readiness.
    pub fn first_polls(&self) -> Arc<FirstPolls> {
        self.first_polls.clone()
    }

    /// Moves to `settings`. Workers of budgets that are gone are stopped and awaited before
    /// their series are removed, so no answer of theirs can bring a series back. Kept
    /// budgets keep their window of calls and their targets' places in the schedule;
    /// changed credentials are used from the next request on; added targets get a first
    /// round at the speed of their budget.
    pub async fn apply(&mut self, settings: &Settings) {
        let names: HashSet<&str> = settings.accounts.iter().map(|a| a.name.as_str()).collect();
        let removed: Vec<String> = self
            .workers
            .values()
            .flat_map(|r| r.plan.group.accounts.iter())
            .filter(|a| !names.contains(a.name.as_str()))
            .map(|a| a.name.clone())
            .collect();
        let groups = budget::groups(settings);
        let keys: HashSet<&BudgetKey> = groups.iter().map(|g| &g.key).collect();
        let gone: Vec<BudgetKey> = self
            .workers
            .keys()
            .filter(|k| !keys.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(running) = self.workers.remove(&key) {
                running.cancel.cancel();
                let _ = running.handle.await;
            }
        }
        let mut added = Vec::new();
        for group in groups {
            let plan = Plan {
                group,
                poll: settings.poll,
            };
            match self.workers.get_mut(&plan.group.key) {
                Some(running) => {
                    if running.plan != plan {
                        running.plan = plan.clone();
                        let _ = running.updates.send(plan);
                    }
                }
                None => added.push(plan),
            }
        }
        self.shared.store.set_stale_after(settings.poll.stale_after);
        flag_insecure_tls(settings, &self.shared.store);
        {
            let mut global = self
                .shared
                .global
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match (settings.poll.global_rate_limit_per_minute, global.as_mut()) {
                (None, _) => *global = None,
                (Some(n), Some(limiter)) => limiter.set_limit(n),
                (Some(n), None) => *global = Some(RateLimiter::per_minute(n)),
            }
        }
        let keep_listings: HashSet<&Listing> = settings.listings().collect();
        self.shared.store.retain_listings(&keep_listings);
        let keep: HashSet<&Target> = settings.targets().collect();
        self.shared.store.retain_targets(&keep);
        let accounts: HashSet<(&str, &str)> = settings
            .accounts
            .iter()
            .map(|a| (a.name.as_str(), a.region.as_str()))
            .collect();
        self.shared.store.retain_accounts(&accounts);
        self.shared.store.add_accounts(accounts.iter().copied());
        self.shared.store.add_targets(settings.targets());
        self.shared.store.add_listings(settings.listings());
        for plan in added {
            self.spawn(plan, None);
        }
        for account in removed {
            tracing::info!(%account, "account removed; its polling stopped");
        }
        // A budget nobody uses any more is forgotten once its calls have left the window.
        let now = Instant::now();
        let workers = &self.workers;
        self.budgets.retain(|key, budget| {
            workers.contains_key(key)
                || !budget
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_idle(now)
        });
    }

    /// Starts the worker of `plan`'s budget, on the budget's remembered state if any.
    fn spawn(&mut self, plan: Plan, first_polls: Option<Arc<FirstPolls>>) {
        let key = plan.group.key.clone();
        let budget = self
            .budgets
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Budget::new(plan.group.limit()))))
            .clone();
        let cancel = self.cancel.child_token();
        let (updates, receiver) = watch::channel(plan.clone());
        let worker = Worker::new(
            plan.clone(),
            self.shared.clone(),
            budget,
            cancel.clone(),
            Some(receiver),
            first_polls,
        );
        let handle = self.tracker.spawn_on(worker.run(), &self.runtime);
        self.workers.insert(
            key,
            Running {
                plan,
                updates,
                cancel,
                handle,
            },
        );
    }
}

/// Polls every target and lists every listing once, within the rate limits; returns how
/// many of them failed.
pub async fn poll_once(settings: &Settings, store: Arc<Store>) -> Result<usize, reqwest::Error> {
    let shared = Shared::new(settings, store.clone());
    let cancel = CancellationToken::new();
    store.add_targets(settings.targets());
    flag_insecure_tls(settings, &store);
    store.add_listings(settings.listings());
    let mut handles = Vec::new();
    for group in budget::groups(settings) {
        let budget = Arc::new(Mutex::new(Budget::new(group.limit())));
        let plan = Plan {
            group,
            poll: settings.poll,
        };
        let w = Worker::new(plan, shared.clone(), budget, cancel.clone(), None, None);
        handles.push(tokio::spawn(w.run()));
    }
    for h in handles {
        let _ = h.await;
    }
    let failed_targets = store
        .statuses()
        .iter()
        .filter(|(_, s)| s.up != Some(true))
        .count();
    let failed_listings = store
        .listing_statuses()
        .iter()
        .filter(|(_, s)| s.up != Some(true))
        .count();
    Ok(failed_targets + failed_listings)
}

/// Warns of every account that does not verify certificates, at start and at each reload,
/// and tells the store, for the status page.
fn flag_insecure_tls(settings: &Settings, store: &Store) {
    let insecure: Vec<InsecureAccount> = settings
        .accounts
        .iter()
        .filter(|a| a.network.tls.insecure_skip_verify)
        .map(|a| InsecureAccount {
            account: a.name.clone(),
            region: a.region.clone(),
            endpoint: budget::BudgetKey::of(a).gateway,
        })
        .collect();
    for a in &insecure {
        tracing::warn!(
            account = %a.account,
            endpoint = %a.endpoint,
            "tls.insecure_skip_verify is on: the API's certificate is not checked, so anyone on the network path can read the credentials' requests and forge the answers"
        );
    }
    store.set_insecure_tls(insecure);
}

async fn sweep(store: Arc<Store>, stale_after: Duration, cancel: CancellationToken) {
    let every = (stale_after / 20).clamp(Duration::from_secs(1), Duration::from_secs(15));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => { store.sweep_stale(); }
        }
    }
}
