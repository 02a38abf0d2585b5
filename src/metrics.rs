//! The metrics store: the latest result of every target, as Prometheus series and as the
//! status page's rows. Polling writes here; the HTTP server only reads.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::time::Instant;

use crate::config::Target;
use crate::hss::{ApiError, Statistics};

pub const TARGET_LABELS: [&str; 5] = [
    "account",
    "region",
    "project_id",
    "enterprise_project_id",
    "registry_type",
];

/// Where a target stands, for the status page.
#[derive(Debug, Clone, Default)]
pub struct TargetStatus {
    /// `None` until the first poll ends.
    pub up: Option<bool>,
    pub last: Option<Statistics>,
    pub last_success: Option<SystemTime>,
    /// Monotonic twin of `last_success`, what staleness is measured with.
    last_success_at: Option<Instant>,
    pub last_error: Option<String>,
    pub next_poll: Option<SystemTime>,
    /// The value series were removed for lack of a recent success.
    pub stale: bool,
}

/// Process metrics (CPU, memory) in a cached body are at most this old.
const PROCESS_METRICS_MAX_AGE: Duration = Duration::from_secs(5);

/// One encoded exposition, shared by every scrape until something changes.
pub struct Exposition {
    generation: u64,
    built: Instant,
    pub plain: Bytes,
    gzip: OnceLock<Bytes>,
}

impl Exposition {
    /// The gzip form, compressed once on first demand.
    pub fn gzip(&self) -> Bytes {
        self.gzip
            .get_or_init(|| {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.plain.len() / 4),
                    flate2::Compression::fast(),
                );
                enc.write_all(&self.plain)
                    .and_then(|_| enc.finish())
                    .map(Bytes::from)
                    .expect("gzip into a Vec cannot fail")
            })
            .clone()
    }
}

/// Owns the registry and every series; all methods take `&self` and are cheap.
pub struct Store {
    registry: Registry,
    success: GaugeVec,
    fail: GaugeVec,
    up: GaugeVec,
    last_success: GaugeVec,
    suspended: IntGaugeVec,
    requests: IntCounterVec,
    poll_errors: IntCounterVec,
    duration: HistogramVec,
    reload_ok: IntGaugeVec,
    reload_at: GaugeVec,
    stale_after: Mutex<Duration>,
    targets: Mutex<BTreeMap<Target, TargetStatus>>,
    /// Bumped by every change to a series, so a cached exposition knows it is current.
    generation: AtomicU64,
    exposition: Mutex<Option<Arc<Exposition>>>,
}

const ERROR_REASONS: [&str; 7] = [
    "timeout",
    "connect",
    "auth",
    "throttled",
    "http_4xx",
    "http_5xx",
    "decode",
];

impl Store {
    pub fn new(stale_after: Duration) -> Self {
        let registry = Registry::new();
        let target_gauge = |name: &str, help: &str| {
            let g = GaugeVec::new(Opts::new(name, help), &TARGET_LABELS).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let success = target_gauge(
            "hss_registry_access_success",
            "Image registries connected to HSS whose access succeeded (success_num), as of the last successful poll.",
        );
        let fail = target_gauge(
            "hss_registry_access_fail",
            "Image registries connected to HSS whose access is abnormal (fail_num), as of the last successful poll.",
        );
        let up = target_gauge(
            "hss_registry_statistics_up",
            "1 if the last poll of this target's registry statistics succeeded, 0 if it failed.",
        );
        let last_success = target_gauge(
            "hss_registry_statistics_last_success_timestamp_seconds",
            "Unix time of the last successful poll of this target.",
        );
        let account_labels = ["account", "region"];
        let suspended = IntGaugeVec::new(
            Opts::new(
                "hss_exporter_account_suspended",
                "1 while polling of this account is suspended after repeated authentication failures.",
            ),
            &account_labels,
        )
        .expect("valid metric");
        let requests = IntCounterVec::new(
            Opts::new(
                "hss_exporter_api_requests_total",
                "HSS API requests made, by HTTP status code (timeout or connect when no answer came).",
            ),
            &["account", "region", "code"],
        )
        .expect("valid metric");
        let poll_errors = IntCounterVec::new(
            Opts::new(
                "hss_exporter_poll_errors_total",
                "Failed polls of a target, by reason.",
            ),
            &["account", "region", "reason"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "hss_exporter_api_request_duration_seconds",
                "Duration of HSS API requests.",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &account_labels,
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "hss_exporter_build_info",
                "Always 1; the labels say which build is running.",
            ),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("HSS_EXPORTER_REVISION").unwrap_or("unknown"),
            ])
            .set(1);
        let reload_ok = IntGaugeVec::new(
            Opts::new(
                "hss_exporter_config_last_reload_successful",
                "1 if the last configuration (re)load succeeded, 0 if it failed and the previous configuration is still running.",
            ),
            &[],
        )
        .expect("valid metric");
        let reload_at = GaugeVec::new(
            Opts::new(
                "hss_exporter_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration (re)load.",
            ),
            &[],
        )
        .expect("valid metric");
        for c in [
            Box::new(reload_ok.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reload_at.clone()),
            Box::new(suspended.clone()),
            Box::new(requests.clone()),
            Box::new(poll_errors.clone()),
            Box::new(duration.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("unique metric");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        Store {
            registry,
            success,
            fail,
            up,
            last_success,
            suspended,
            requests,
            poll_errors,
            duration,
            reload_ok,
            reload_at,
            stale_after: Mutex::new(stale_after),
            targets: Mutex::new(BTreeMap::new()),
            generation: AtomicU64::new(0),
            exposition: Mutex::new(None),
        }
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, BTreeMap<Target, TargetStatus>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Makes the accounts' series exist from the start (at 0), so rates work from the first
    /// error on; targets are listed on the status page before their first poll.
    pub fn add_targets<'a>(&self, targets: impl IntoIterator<Item = &'a Target>) {
        let mut map = self.targets();
        for t in targets {
            map.entry(t.clone()).or_default();
            let account = [t.account.as_str(), t.region.as_str()];
            self.suspended.with_label_values(&account).set(0);
            for reason in ERROR_REASONS {
                self.poll_errors
                    .with_label_values(&[&t.account, &t.region, reason]);
            }
        }
        self.changed();
    }

    /// Forgets every target not in `keep`, with all its series at once; the per-account
    /// series of accounts left without targets go too.
    pub fn retain_targets(&self, keep: &std::collections::HashSet<&Target>) {
        let mut map = self.targets();
        let gone: Vec<Target> = map.keys().filter(|t| !keep.contains(t)).cloned().collect();
        for target in &gone {
            map.remove(target);
            let labels = target.label_values();
            for gauge in [&self.success, &self.fail, &self.up, &self.last_success] {
                let _ = gauge.remove_label_values(&labels);
            }
        }
        let live: std::collections::HashSet<(&str, &str)> = keep
            .iter()
            .map(|t| (t.account.as_str(), t.region.as_str()))
            .collect();
        let mut accounts: Vec<(String, String)> = gone
            .iter()
            .map(|t| (t.account.clone(), t.region.clone()))
            .filter(|(a, r)| !live.contains(&(a.as_str(), r.as_str())))
            .collect();
        accounts.dedup();
        for (account, region) in &accounts {
            let labels = [account.as_str(), region.as_str()];
            let _ = self.suspended.remove_label_values(&labels);
            let _ = self.duration.remove_label_values(&labels);
            for reason in ERROR_REASONS {
                let _ = self
                    .poll_errors
                    .remove_label_values(&[account, region, reason]);
            }
            use prometheus::core::Collector as _;
            let codes: Vec<String> = self
                .requests
                .collect()
                .iter()
                .flat_map(|family| family.get_metric())
                .filter(|m| {
                    let l = m.get_label();
                    let get = |n: &str| l.iter().find(|p| p.get_name() == n).map(|p| p.get_value());
                    get("account") == Some(account) && get("region") == Some(region)
                })
                .filter_map(|m| {
                    m.get_label()
                        .iter()
                        .find(|p| p.get_name() == "code")
                        .map(|p| p.get_value().to_string())
                })
                .collect();
            for code in &codes {
                let _ = self.requests.remove_label_values(&[account, region, code]);
            }
        }
        self.changed();
    }

    /// The outcome of loading the configuration, at start-up or on reload.
    pub fn record_reload(&self, ok: bool) {
        self.reload_ok.with_label_values(&[]).set(i64::from(ok));
        if ok {
            self.reload_at
                .with_label_values(&[])
                .set(unix_seconds(SystemTime::now()));
        }
        self.changed();
    }

    pub fn set_stale_after(&self, stale_after: Duration) {
        *self.stale_after.lock().unwrap_or_else(|e| e.into_inner()) = stale_after;
    }

    pub fn record_request(&self, account: &str, region: &str, code: &str, elapsed: Duration) {
        self.requests
            .with_label_values(&[account, region, code])
            .inc();
        self.duration
            .with_label_values(&[account, region])
            .observe(elapsed.as_secs_f64());
        self.changed();
    }

    /// A successful poll. Results for a target that is no longer configured are dropped, so
    /// a poll that was under way during a reload cannot bring its series back.
    pub fn record_success(&self, target: &Target, stats: Statistics) {
        let now = SystemTime::now();
        let mut map = self.targets();
        let Some(status) = map.get_mut(target) else {
            return;
        };
        let labels = target.label_values();
        self.success
            .with_label_values(&labels)
            .set(stats.success_num as f64);
        self.fail
            .with_label_values(&labels)
            .set(stats.fail_num as f64);
        self.up.with_label_values(&labels).set(1.0);
        self.last_success
            .with_label_values(&labels)
            .set(unix_seconds(now));
        status.up = Some(true);
        status.last = Some(stats);
        status.last_success = Some(now);
        status.last_success_at = Some(Instant::now());
        status.last_error = None;
        status.stale = false;
        self.changed();
    }

    /// A failed poll: counts it by reason and marks the target down; values stay until stale.
    pub fn record_failure(&self, target: &Target, error: &ApiError) {
        if self.mark_down(target, &error.to_string()) {
            self.poll_errors
                .with_label_values(&[&target.account, &target.region, error.reason()])
                .inc();
        }
    }

    /// Marks a target down without a poll having failed (its account is suspended).
    /// Returns false for a target that is no longer configured.
    pub fn mark_down(&self, target: &Target, why: &str) -> bool {
        let mut map = self.targets();
        let Some(status) = map.get_mut(target) else {
            return false;
        };
        self.up.with_label_values(&target.label_values()).set(0.0);
        status.up = Some(false);
        status.last_error = Some(why.to_string());
        self.changed();
        true
    }

    pub fn set_next_poll(&self, target: &Target, at: SystemTime) {
        if let Some(status) = self.targets().get_mut(target) {
            status.next_poll = Some(at);
        }
    }

    pub fn set_suspended(&self, account: &str, region: &str, suspended: bool) {
        self.suspended
            .with_label_values(&[account, region])
            .set(i64::from(suspended));
        self.changed();
    }

    /// Removes the value series of targets with no success for `stale_after`; `up` and the
    /// timestamp stay so that the outage itself remains visible. Returns how many went.
    pub fn sweep_stale(&self) -> usize {
        let now = Instant::now();
        let stale_after = *self.stale_after.lock().unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        for (target, status) in self.targets().iter_mut() {
            let expired = status
                .last_success_at
                .is_some_and(|at| now.duration_since(at) >= stale_after);
            if expired && !status.stale {
                let labels = target.label_values();
                let _ = self.success.remove_label_values(&labels);
                let _ = self.fail.remove_label_values(&labels);
                status.stale = true;
                removed += 1;
                tracing::warn!(%target, stale_after = %humantime::format_duration(stale_after), "no successful poll for too long; its values are no longer exported");
            }
        }
        if removed > 0 {
            self.changed();
        }
        removed
    }

    /// The current exposition: encoded once per change and shared by every scrape until
    /// the next one, so a scrape costs a lookup (and its gzip form one compression).
    pub fn exposition(&self) -> Arc<Exposition> {
        let mut cached = self.exposition.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(e) = cached.as_ref() {
            if e.generation == generation && e.built.elapsed() < PROCESS_METRICS_MAX_AGE {
                return e.clone();
            }
        }
        let fresh = Arc::new(Exposition {
            generation,
            built: Instant::now(),
            plain: Bytes::from(self.render()),
            gzip: OnceLock::new(),
        });
        *cached = Some(fresh.clone());
        fresh
    }

    /// The text exposition of every series, freshly encoded.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        out
    }

    pub fn statuses(&self) -> Vec<(Target, TargetStatus)> {
        self.targets()
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect()
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hss::RegistryType;

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
        store.record_failure(&t, &ApiError::Decode("x".into()));
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
}
