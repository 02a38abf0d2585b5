//! The exporter's own series: per-account request and error counters, durations and
//! suspensions, the configuration's state and the build, through the prometheus crate in a
//! registry of their own. They are few, so they are encoded whole on every change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use prometheus::core::Collector;
use prometheus::{
    Encoder as _, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use super::exposition::{Run, Segment};
use super::AccountStatus;
use crate::model::Reason;

/// The per-account, configuration and build families.
pub(super) struct SelfMetrics {
    /// The (account, region) pairs configured now, with where their credential stands for
    /// the status page. Per-account series are written only for these, under this lock, so
    /// that a late answer for an account a reload removed cannot bring its series back.
    live: Mutex<BTreeMap<(String, String), AccountStatus>>,
    /// Owns the families below; gathered for every encoding.
    registry: Registry,
    /// `hss_exporter_account_suspended{account,region}`.
    suspended: IntGaugeVec,
    /// `hss_exporter_api_requests_total{account,region,code}`.
    requests: IntCounterVec,
    /// `hss_exporter_poll_errors_total{account,region,reason}`.
    poll_errors: IntCounterVec,
    /// `hss_exporter_api_request_duration_seconds{account,region}`.
    duration: HistogramVec,
    /// `hss_exporter_registry_listings_truncated_total{account,region}`.
    truncated: IntCounterVec,
    /// `hss_exporter_discovered_projects{account}`.
    discovered: IntGaugeVec,
    /// `hss_exporter_config_last_reload_successful`; a vector without labels, so that it is
    /// absent until a configuration is loaded (`once` never reports one).
    reload_ok: IntGaugeVec,
    /// `hss_exporter_config_last_reload_success_timestamp_seconds`, likewise.
    reload_at: GaugeVec,
    /// `poll.stale_after` as a series, so alert rules need not repeat the config value.
    stale_after: Gauge,
}

fn valid<T>(metric: prometheus::Result<T>) -> T {
    metric.expect("valid metric")
}

impl SelfMetrics {
    pub(super) fn new(stale_after: Duration) -> Self {
        let registry = Registry::new();
        let account_labels = ["account", "region"];
        let suspended = valid(IntGaugeVec::new(
            Opts::new(
                "hss_exporter_account_suspended",
                "1 while polling of this account is suspended after repeated authentication failures.",
            ),
            &account_labels,
        ));
        let requests = valid(IntCounterVec::new(
            Opts::new(
                "hss_exporter_api_requests_total",
                "HSS API requests made, by HTTP status code (timeout or connect when no answer came).",
            ),
            &["account", "region", "code"],
        ));
        let poll_errors = valid(IntCounterVec::new(
            Opts::new(
                "hss_exporter_poll_errors_total",
                "Failed polls of a target, by reason.",
            ),
            &["account", "region", "reason"],
        ));
        let duration = valid(HistogramVec::new(
            HistogramOpts::new(
                "hss_exporter_api_request_duration_seconds",
                "Duration of HSS API requests.",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &account_labels,
        ));
        let truncated = valid(IntCounterVec::new(
            Opts::new(
                "hss_exporter_registry_listings_truncated_total",
                "Registry listings that held more registries than poll.max_registries_per_project; only that many were exported.",
            ),
            &account_labels,
        ));
        let discovered = valid(IntGaugeVec::new(
            Opts::new(
                "hss_exporter_discovered_projects",
                "Projects of the account's last successful IAM discovery that are polled.",
            ),
            &["account"],
        ));
        let build_info = valid(IntGaugeVec::new(
            Opts::new(
                "hss_exporter_build_info",
                "Always 1; the labels say which build is running.",
            ),
            &["version", "revision"],
        ));
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("HSS_EXPORTER_REVISION").unwrap_or("unknown"),
            ])
            .set(1);
        let reload_ok = valid(IntGaugeVec::new(
            Opts::new(
                "hss_exporter_config_last_reload_successful",
                "1 if the last configuration (re)load succeeded, 0 if it failed and the previous configuration is still running.",
            ),
            &[],
        ));
        let reload_at = valid(GaugeVec::new(
            Opts::new(
                "hss_exporter_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration (re)load.",
            ),
            &[],
        ));
        let stale_after_seconds = valid(Gauge::new(
            "hss_exporter_stale_after_seconds",
            "poll.stale_after: a target with no successful poll for this long loses its value series.",
        ));
        stale_after_seconds.set(stale_after.as_secs_f64());
        for c in [
            Box::new(reload_ok.clone()) as Box<dyn Collector>,
            Box::new(reload_at.clone()),
            Box::new(stale_after_seconds.clone()),
            Box::new(suspended.clone()),
            Box::new(requests.clone()),
            Box::new(poll_errors.clone()),
            Box::new(duration.clone()),
            Box::new(truncated.clone()),
            Box::new(discovered.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("unique metric");
        }
        SelfMetrics {
            live: Mutex::new(BTreeMap::new()),
            registry,
            suspended,
            requests,
            poll_errors,
            duration,
            truncated,
            discovered,
            reload_ok,
            reload_at,
            stale_after: stale_after_seconds,
        }
    }

    /// Makes an account's series exist from the start (at 0), so rates work from the first
    /// error on.
    pub(super) fn add_account(&self, account: &str, region: &str) {
        let mut live = self.live();
        live.entry((account.to_string(), region.to_string()))
            .or_default();
        self.suspended.with_label_values(&[account, region]);
        for reason in Reason::ALL {
            self.poll_errors
                .with_label_values(&[account, region, reason.as_str()]);
        }
    }

    /// Removes every series of an account that is no longer configured.
    pub(super) fn remove_account(&self, account: &str, region: &str) {
        let mut live = self.live();
        live.remove(&(account.to_string(), region.to_string()));
        let labels = [account, region];
        let _ = self.suspended.remove_label_values(&labels);
        let _ = self.duration.remove_label_values(&labels);
        let _ = self.truncated.remove_label_values(&labels);
        for reason in Reason::ALL {
            let _ = self
                .poll_errors
                .remove_label_values(&[account, region, reason.as_str()]);
        }
        let codes: Vec<String> = self
            .requests
            .collect()
            .iter()
            .flat_map(prometheus::proto::MetricFamily::get_metric)
            .filter_map(|m| {
                let label = |n: &str| {
                    m.get_label()
                        .iter()
                        .find(|p| p.get_name() == n)
                        .map(prometheus::proto::LabelPair::get_value)
                };
                (label("account") == Some(account) && label("region") == Some(region))
                    .then(|| label("code").map(str::to_string))
                    .flatten()
            })
            .collect();
        for code in &codes {
            let _ = self.requests.remove_label_values(&[account, region, code]);
        }
    }

    pub(super) fn record_request(
        &self,
        account: &str,
        region: &str,
        code: &str,
        elapsed: Duration,
    ) {
        let live = self.live();
        if !is_live(&live, account, region) {
            return;
        }
        self.requests
            .with_label_values(&[account, region, code])
            .inc();
        self.duration
            .with_label_values(&[account, region])
            .observe(elapsed.as_secs_f64());
    }

    /// Every (account, region) configured now.
    pub(super) fn live_accounts(&self) -> Vec<(String, String)> {
        self.live().keys().cloned().collect()
    }

    /// How many projects an account's discovery found; `None` removes the series.
    pub(super) fn set_discovered(&self, account: &str, projects: Option<usize>) {
        match projects {
            Some(n) => self.discovered.with_label_values(&[account]).set(n as i64),
            None => {
                let _ = self.discovered.remove_label_values(&[account]);
            }
        }
    }

    /// The listing counters of an account that lists registries, at 0 from the start.
    pub(super) fn add_listing_account(&self, account: &str, region: &str) {
        let live = self.live();
        if is_live(&live, account, region) {
            self.truncated.with_label_values(&[account, region]);
        }
    }

    pub(super) fn record_listing_truncated(&self, account: &str, region: &str) {
        let live = self.live();
        if is_live(&live, account, region) {
            self.truncated.with_label_values(&[account, region]).inc();
        }
    }

    pub(super) fn record_poll_error(&self, account: &str, region: &str, reason: Reason) {
        let live = self.live();
        if !is_live(&live, account, region) {
            return;
        }
        self.poll_errors
            .with_label_values(&[account, region, reason.as_str()])
            .inc();
    }

    pub(super) fn record_reload(&self, ok: bool) {
        self.reload_ok.with_label_values(&[]).set(i64::from(ok));
        if ok {
            self.reload_at
                .with_label_values(&[])
                .set(unix_seconds(SystemTime::now()));
        }
    }

    pub(super) fn set_stale_after(&self, stale_after: Duration) {
        self.stale_after.set(stale_after.as_secs_f64());
    }

    pub(super) fn set_suspended(&self, account: &str, region: &str, suspended: bool) {
        let live = self.live();
        if !is_live(&live, account, region) {
            return;
        }
        self.suspended
            .with_label_values(&[account, region])
            .set(i64::from(suspended));
    }

    /// Where an account's credential stands now; ignored for an account no longer configured.
    pub(super) fn set_account_status(&self, account: &str, region: &str, status: AccountStatus) {
        let mut live = self.live();
        if let Some(s) = live
            .iter_mut()
            .find(|((a, r), _)| a == account && r == region)
            .map(|(_, s)| s)
        {
            *s = status;
        }
    }

    /// Every configured account with its status, in label order.
    pub(super) fn account_statuses(&self) -> Vec<((String, String), AccountStatus)> {
        self.live()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn live(&self) -> MutexGuard<'_, BTreeMap<(String, String), AccountStatus>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The families as exposition text.
    pub(super) fn render(&self) -> Arc<Run> {
        render(&self.registry)
    }
}

fn is_live(live: &BTreeMap<(String, String), AccountStatus>, account: &str, region: &str) -> bool {
    // Few accounts: a scan costs less than building an owned key for every request.
    live.keys().any(|(a, r)| a == account && r == region)
}

/// A registry's families through the prometheus crate's text encoder.
pub(super) fn render(registry: &Registry) -> Arc<Run> {
    let mut out = Vec::with_capacity(16 * 1024);
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    Run::new(vec![Segment::new(out)])
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
