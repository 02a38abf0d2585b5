//! The metrics store: the latest result of every target, as Prometheus series and as the
//! status page's rows. Polling writes here; the HTTP server only reads.
//!
//! The per-target series are kept in a table of their own ([`targets`]) and encoded
//! incrementally ([`encode`]); the per-account series are encoded per account, the global
//! and process ones through the prometheus crate ([`self_metrics`]); scrapes share one
//! cached encoding ([`cache`]).

mod cache;
mod crc;
mod deflate;
mod encode;
mod exposition;
mod process;
mod registries;
mod self_metrics;
mod targets;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use exposition::{Body, Exposition};
pub use registries::ListingStatus;
pub use targets::TargetStatus;

use crate::model::{Listing, Reason, Registry, Statistics, Target};
use cache::Cache;
use registries::Listings;
use self_metrics::SelfMetrics;
use targets::Targets;

/// The label names of the per-target series.
pub const TARGET_LABELS: [&str; 5] = [
    "account",
    "region",
    "project_id",
    "enterprise_project_id",
    "registry_type",
];

/// Where an account's credential stands, for the status page (not exported as series).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountStatus {
    /// The budget it spends: the credential's kind and fingerprint, and the gateway.
    /// Shared, as it is published after every call.
    pub budget: Arc<str>,
    /// The other accounts that spend the same budget.
    pub shares_with: Arc<[String]>,
    /// Calls made in the last 60 seconds on that budget.
    pub calls_last_minute: usize,
    /// Calls the budget allows a minute.
    pub limit: u32,
    /// Suspended after repeated authentication failures.
    pub suspended: bool,
    /// No call before this moment (throttled, or the end of a suspension).
    pub paused_until: Option<SystemTime>,
}

/// Owns every series; all methods take `&self` and are cheap.
pub struct Store {
    /// The per-account, configuration and build series.
    own: SelfMetrics,
    /// Without a success for this long, a target's values go (the sweep reads it).
    stale_after: Mutex<Duration>,
    /// Every target's state and encoding.
    targets: Mutex<Targets>,
    /// Every registry listing's state and encoding.
    listings: Mutex<Listings>,
    /// Bumped by every change to a series, so a cached exposition knows it is current.
    generation: AtomicU64,
    /// What scrapes share.
    cache: Cache,
    /// The accounts that do not verify the API's certificates, for the status page.
    insecure_tls: Mutex<Vec<InsecureAccount>>,
}

/// An account with `tls.insecure_skip_verify`: its answers could come from anyone on the
/// path, which the status page says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsecureAccount {
    /// The `account` label.
    pub account: String,
    /// The `region` label.
    pub region: String,
    /// The host whose certificate is not checked (`host:port`).
    pub endpoint: String,
}

impl Store {
    /// An empty store; targets come with [`Store::add_targets`].
    pub fn new(stale_after: Duration) -> Self {
        Store {
            own: SelfMetrics::new(stale_after),
            stale_after: Mutex::new(stale_after),
            targets: Mutex::new(Targets::default()),
            listings: Mutex::new(Listings::default()),
            generation: AtomicU64::new(0),
            cache: Cache::new(),
            insecure_tls: Mutex::new(Vec::new()),
        }
    }

    /// Sets the accounts that run with certificate verification off (at start and reload).
    pub fn set_insecure_tls(&self, accounts: Vec<InsecureAccount>) {
        *self
            .insecure_tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = accounts;
    }

    /// The accounts that run with certificate verification off, in the order of the file.
    pub fn insecure_tls(&self) -> Vec<InsecureAccount> {
        self.insecure_tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn targets(&self) -> MutexGuard<'_, Targets> {
        self.targets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn listings(&self) -> MutexGuard<'_, Listings> {
        self.listings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Runs `f` on a configured target's entry and marks the families whose lines it changed
    /// for encoding; `false` for a target that is no longer configured.
    fn update(&self, target: &Target, f: impl FnOnce(&mut TargetStatus)) -> bool {
        let changed = self.targets().touch(target, f);
        if changed == Some(true) {
            self.changed();
        }
        changed.is_some()
    }

    /// Makes the accounts' series exist from the start (at 0), so rates work from the first
    /// error on; targets are listed on the status page before their first poll.
    pub fn add_targets<'a>(&self, targets: impl IntoIterator<Item = &'a Target>) {
        let mut accounts: HashSet<(&str, &str)> = HashSet::new();
        self.targets().add(targets.into_iter().inspect(|target| {
            accounts.insert((&target.account, &target.region));
        }));
        for (account, region) in accounts {
            self.own.add_account(account, region);
        }
        self.changed();
    }

    /// Forgets every target not in `keep`, with all its series at once; the per-account
    /// series of accounts left without targets go too.
    pub fn retain_targets(&self, keep: &HashSet<&Target>) {
        let gone = self.targets().retain(|t| keep.contains(t));
        let live: HashSet<(&str, &str)> = keep
            .iter()
            .map(|t| (t.account.as_str(), t.region.as_str()))
            .collect();
        let mut accounts: Vec<(&str, &str)> = gone
            .iter()
            .map(|t| (t.account.as_str(), t.region.as_str()))
            .filter(|a| !live.contains(a))
            .collect();
        accounts.dedup();
        for (account, region) in accounts {
            self.own.remove_account(account, region);
        }
        self.changed();
    }

    /// Makes the series of these (account, region) pairs exist from the start, with or
    /// without targets (an account whose projects are all discovered).
    pub fn add_accounts<'a>(&self, accounts: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (account, region) in accounts {
            self.own.add_account(account, region);
        }
        self.changed();
    }

    /// Removes the series of every account not in `keep`.
    pub fn retain_accounts(&self, keep: &HashSet<(&str, &str)>) {
        for (account, region) in self.own.live_accounts() {
            if !keep.contains(&(account.as_str(), region.as_str())) {
                self.own.remove_account(&account, &region);
                if !keep.iter().any(|(a, _)| *a == account) {
                    self.own.set_discovered(&account, None);
                }
            }
        }
        self.changed();
    }

    /// How many projects the last discovery of `account` found (`None`: it no longer
    /// discovers).
    pub fn set_discovered(&self, account: &str, projects: Option<usize>) {
        self.own.set_discovered(account, projects);
        self.changed();
    }

    /// A failed discovery of `account`: counted in `hss_exporter_poll_errors_total`.
    pub fn record_discovery_failure(&self, account: &str, region: &str, reason: Reason) {
        self.own.record_poll_error(account, region, reason);
        self.changed();
    }

    /// The outcome of loading the configuration, at start-up or on reload.
    pub fn record_reload(&self, ok: bool) {
        self.own.record_reload(ok);
        self.changed();
    }

    /// A new `poll.stale_after`, from the next sweep on.
    pub fn set_stale_after(&self, stale_after: Duration) {
        *self
            .stale_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stale_after;
        self.own.set_stale_after(stale_after);
        self.changed();
    }

    /// One API request of an account: its `code` label and how long it took.
    pub fn record_request(&self, account: &str, region: &str, code: &str, elapsed: Duration) {
        self.own.record_request(account, region, code, elapsed);
        self.changed();
    }

    /// A successful poll. Results for a target that is no longer configured are dropped, so
    /// a poll that was under way during a reload cannot bring its series back.
    pub fn record_success(&self, target: &Target, stats: Statistics) {
        let (now, at) = (SystemTime::now(), Instant::now());
        self.update(target, |status| {
            status.up = Some(true);
            status.last = Some(stats);
            status.last_success = Some(now);
            status.last_success_at = Some(at);
            status.last_error = None;
            status.stale = false;
        });
    }

    /// A failed poll: counts it by `reason` and marks the target down with `message`;
    /// values stay until stale.
    pub fn record_failure(&self, target: &Target, reason: Reason, message: &str) {
        if self.mark_down(target, message) {
            self.own
                .record_poll_error(&target.account, &target.region, reason);
        }
    }

    /// Marks a target down without a poll having failed (its account is suspended).
    /// Returns false for a target that is no longer configured.
    pub fn mark_down(&self, target: &Target, why: &str) -> bool {
        self.update(target, |status| {
            status.up = Some(false);
            status.last_error = Some(why.to_string());
        })
    }

    /// When the target is polled next, for the status page (not an exported series).
    pub fn set_next_poll(&self, target: &Target, at: SystemTime) {
        if let Some(entry) = self.targets().map.get_mut(target) {
            entry.status.next_poll = Some(at);
        }
    }

    /// Whether an account is suspended after repeated authentication failures.
    pub fn set_suspended(&self, account: &str, region: &str, suspended: bool) {
        self.own.set_suspended(account, region, suspended);
        self.changed();
    }

    /// Removes the value series of targets with no success for `stale_after`; `up` and the
    /// timestamp stay so that the outage itself remains visible. Returns how many went.
    pub fn sweep_stale(&self) -> usize {
        let stale_after = *self
            .stale_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let expired = self.targets().expire(Instant::now(), stale_after);
        for target in &expired {
            tracing::warn!(%target, stale_after = %humantime::format_duration(stale_after), "no successful poll for too long; its values are no longer exported");
        }
        let listings = self.listings().expire(Instant::now(), stale_after);
        for listing in &listings {
            tracing::warn!(%listing, stale_after = %humantime::format_duration(stale_after), "no successful listing for too long; its registries' series are no longer exported");
        }
        if !expired.is_empty() || !listings.is_empty() {
            self.changed();
        }
        expired.len() + listings.len()
    }

    /// Makes the listings known (their accounts' series exist from the start); their
    /// series appear with their first listing.
    pub fn add_listings<'a>(&self, listings: impl IntoIterator<Item = &'a Listing>) {
        let mut accounts: HashSet<(&str, &str)> = HashSet::new();
        let added = self.listings().add(listings.into_iter().inspect(|l| {
            accounts.insert((&l.account, &l.region));
        }));
        for (account, region) in accounts {
            self.own.add_account(account, region);
            self.own.add_listing_account(account, region);
        }
        if added {
            self.changed();
        }
    }

    /// Forgets every listing not in `keep`, with all its series at once. Call it before
    /// [`Store::retain_targets`], which removes the accounts left without targets.
    pub fn retain_listings(&self, keep: &HashSet<&Listing>) {
        if !self.listings().retain(keep).is_empty() {
            self.changed();
        }
    }

    /// A successful listing: the registries now listed replace the previous ones, so a
    /// registry that left the listing loses its series. Dropped for a listing that is no
    /// longer configured.
    pub fn record_listing_success(&self, listing: &Listing, registries: Vec<Registry>) {
        if self.listings().succeeded(listing, registries) {
            self.changed();
        }
    }

    /// A failed listing: counts it by `reason` and marks it down with `message`; the
    /// registries of the last good listing stay until stale.
    pub fn record_listing_failure(&self, listing: &Listing, reason: Reason, message: &str) {
        if self.mark_listing_down(listing, message) {
            self.own
                .record_poll_error(&listing.account, &listing.region, reason);
        }
    }

    /// Marks a listing down without a call having failed (its account is suspended).
    pub fn mark_listing_down(&self, listing: &Listing, why: &str) -> bool {
        let known = self.listings().failed(listing, why);
        if known {
            self.changed();
        }
        known
    }

    /// A listing held more registries than `poll.max_registries_per_project`.
    pub fn record_listing_truncated(&self, listing: &Listing) {
        self.own
            .record_listing_truncated(&listing.account, &listing.region);
        self.changed();
    }

    /// Every listing with its state, in label order.
    pub fn listing_statuses(&self) -> Vec<(Listing, ListingStatus)> {
        self.listings().statuses()
    }

    /// Where an account's credential stands now (ignored for an account no longer
    /// configured).
    pub fn set_account_status(&self, account: &str, region: &str, status: AccountStatus) {
        self.own.set_account_status(account, region, status);
    }

    /// Every configured (account, region) with where its credential stands.
    pub fn account_statuses(&self) -> Vec<((String, String), AccountStatus)> {
        self.own.account_statuses()
    }

    /// Every target with its state, in label order.
    pub fn statuses(&self) -> Vec<(Target, TargetStatus)> {
        self.targets()
            .map
            .iter()
            .map(|(t, e)| (Target::clone(t), e.status.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RegistryType;
    use encode::{GROUP, RUN};
    use std::sync::Arc;

    fn target() -> Target {
        Target {
            account: "prod".into(),
            region: "cn-north-4".into(),
            project_id: "p1".into(),
            enterprise_project_id: None,
            registry_type: Some(RegistryType::Harbor),
        }
    }

    fn text(store: &Store) -> String {
        String::from_utf8(store.render()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_values_through_failures_until_stale() {
        let store = Store::new(Duration::from_secs(600));
        let t = target();
        store.add_targets([&t]);
        store.record_success(
            &t,
            Statistics {
                fail_num: 3,
                success_num: 7,
            },
        );
        let series = r#"{account="prod",enterprise_project_id="",project_id="p1",region="cn-north-4",registry_type="Harbor"}"#;
        assert!(text(&store).contains(&format!("hss_registry_access_fail{series} 3\n")));
        assert!(text(&store).contains("\nhss_exporter_stale_after_seconds 600\n"));
        store.record_failure(&t, Reason::Decode, "bad answer: x");
        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(store.sweep_stale(), 0);
        let body = text(&store);
        assert!(
            body.contains(&format!("hss_registry_access_success{series} 7\n")),
            "{body}"
        );
        assert!(body.contains(&format!("hss_registry_statistics_up{series} 0\n")));
        assert!(body.contains(r#"hss_exporter_poll_errors_total{account="prod",reason="decode",region="cn-north-4"} 1"#));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(store.sweep_stale(), 1);
        let body = text(&store);
        assert!(!body.contains("hss_registry_access_success{"), "{body}");
        assert!(!body.contains("hss_registry_access_fail{"));
        assert!(body.contains(&format!("hss_registry_statistics_up{series} 0\n")));
        assert!(body.contains("hss_registry_statistics_last_success_timestamp_seconds{"));
        // A later success brings the values back.
        store.record_success(
            &t,
            Statistics {
                fail_num: 0,
                success_num: 1,
            },
        );
        assert!(text(&store).contains(&format!("hss_registry_access_fail{series} 0\n")));
    }

    #[tokio::test]
    async fn a_removed_account_gets_no_series_back_from_a_late_answer() {
        let store = Store::new(Duration::from_secs(600));
        let t = target();
        store.add_targets([&t]);
        store.record_request("prod", "cn-north-4", "200", Duration::from_millis(5));
        assert!(text(&store).contains(r#"hss_exporter_api_requests_total{account="prod""#));
        store.retain_targets(&HashSet::new());
        // What a poll that was under way during the reload would write.
        store.record_request("prod", "cn-north-4", "200", Duration::from_millis(5));
        store.record_failure(&t, Reason::Timeout, "timed out");
        store.set_suspended("prod", "cn-north-4", true);
        store.record_success(
            &t,
            Statistics {
                fail_num: 1,
                success_num: 1,
            },
        );
        let body = text(&store);
        assert!(!body.contains(r#"account="prod""#), "{body}");
    }

    /// Only the per-target lines (the process metrics move on their own).
    fn target_lines(store: &Store) -> String {
        text(store)
            .lines()
            .filter(|l| l.contains("hss_registry_"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn targets_come_out_in_label_order_however_they_were_added() {
        let store = Store::new(Duration::from_secs(600));
        let id = |i: usize| Target {
            project_id: format!("p{i:05}"),
            ..target()
        };
        // Added in three batches, out of order and with repeats; then some removed.
        let n = GROUP * 3 + 5;
        let odd: Vec<Target> = (0..n).rev().filter(|i| i % 2 == 1).map(id).collect();
        let even: Vec<Target> = (0..n).filter(|i| i % 2 == 0).map(id).collect();
        store.add_targets(&odd);
        store.add_targets(&even);
        store.add_targets(&odd[..3]);
        let keep: Vec<Target> = (0..n).filter(|i| i % 3 != 0).map(id).collect();
        store.retain_targets(&keep.iter().collect());
        for (i, t) in keep.iter().enumerate() {
            store.record_success(
                t,
                Statistics {
                    fail_num: i as u64,
                    success_num: 0,
                },
            );
        }
        let statuses: Vec<Target> = store.statuses().into_iter().map(|(t, _)| t).collect();
        assert_eq!(statuses, keep);
        // Every target's line, in label order, with its own value.
        let lines: Vec<(String, String)> = target_lines(&store)
            .lines()
            .filter(|l| l.starts_with("hss_registry_access_fail{"))
            .map(|l| {
                // Not the end of `enterprise_project_id="`.
                let at = l.find(",project_id=\"").unwrap() + 13;
                let value = l.rsplit(' ').next().unwrap();
                (l[at..at + 6].to_string(), value.to_string())
            })
            .collect();
        let wanted: Vec<(String, String)> = keep
            .iter()
            .enumerate()
            .map(|(i, t)| (t.project_id.clone(), i.to_string()))
            .collect();
        assert_eq!(lines, wanted);
    }

    #[tokio::test]
    async fn cached_encoding_always_matches_a_fresh_one() {
        let store = Store::new(Duration::from_secs(600));
        // Enough targets for many groups and several runs per family.
        let targets: Vec<Target> = (0..GROUP * RUN * 2 + 37)
            .map(|i| Target {
                project_id: format!("p{i:05}"),
                ..target()
            })
            .collect();
        store.add_targets(&targets);
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for round in 0..30 {
            for _ in 0..40 {
                let t = &targets[next(targets.len())];
                match next(4) {
                    0 => store.record_success(
                        t,
                        Statistics {
                            fail_num: next(3) as u64,
                            success_num: 5,
                        },
                    ),
                    1 => store.record_failure(t, Reason::Decode, "bad answer: x"),
                    2 => {
                        store.mark_down(t, "suspended");
                    }
                    _ => store.set_next_poll(t, SystemTime::now()),
                }
            }
            if round == 20 {
                store.set_stale_after(Duration::ZERO);
                assert!(store.sweep_stale() > 0);
            }
            let cached = target_lines(&store);
            // Forget every encoding and build the body from scratch.
            store.targets().regroup = true;
            store.changed();
            let fresh = target_lines(&store);
            assert_eq!(cached, fresh, "round {round}");
            assert!(
                fresh.contains("hss_registry_statistics_up{"),
                "round {round}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_encoded_on_the_encoder_thread_see_every_change() {
        use http_body_util::BodyExt as _;
        use std::io::Read as _;
        let store = Arc::new(Store::new(Duration::from_secs(600)));
        let t = target();
        store.add_targets([&t]);
        let series = r#"{account="prod",enterprise_project_id="",project_id="p1",region="cn-north-4",registry_type="Harbor"}"#;
        for n in 0..40u64 {
            store.record_success(
                &t,
                Statistics {
                    fail_num: n,
                    success_num: 1,
                },
            );
            let gzip = n % 2 == 0;
            let e = store.scrape(gzip).await;
            let text = String::from_utf8(e.to_vec()).unwrap();
            assert!(
                text.contains(&format!("hss_registry_access_fail{series} {n}\n")),
                "{text}"
            );
            if gzip {
                assert!(e.has_gzip(), "the gzip form comes ready");
                let body = e.gzip().collect().await.unwrap().to_bytes();
                let mut decoded = String::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_string(&mut decoded)
                    .unwrap();
                assert_eq!(decoded, text);
            }
        }
    }
}
