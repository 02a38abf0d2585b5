//! Background polling: one worker per account (= per credential) spreads its targets over the
//! interval, keeps every 60-second window within the account's rate limit (and the optional
//! global one), backs off when throttled and stops before a failing key gets locked.

mod backoff;
mod limiter;
pub mod plan;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use backoff::{AUTH_FAILURES_BEFORE_SUSPENSION, AUTH_SUSPENSION};
pub use limiter::{RateLimiter, RATE_MARGIN, RATE_WINDOW};
pub use plan::{capacity_warnings, describe, min_interval};

use crate::config::{Account, PollSettings, Settings};
use crate::hss::http_client;
use crate::metrics::Store;
use crate::model::Target;
use worker::Worker;

/// The optional cap across all accounts; `None` inside when there is none.
type SharedLimiter = Arc<Mutex<Option<RateLimiter>>>;

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
    ) -> Result<Scheduler, reqwest::Error> {
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
            let mut global = self
                .global
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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
pub async fn poll_once(settings: &Settings, store: Arc<Store>) -> Result<usize, reqwest::Error> {
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
            () = cancel.cancelled() => return,
            _ = tick.tick() => { store.sweep_stale(); }
        }
    }
}
