//! The metrics store: the latest result of every target, as Prometheus series and as the
//! status page's rows. Polling writes here; the HTTP server only reads.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

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
    stale_after: Duration,
    targets: Mutex<BTreeMap<Target, TargetStatus>>,
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
        for c in [
            Box::new(suspended.clone()) as Box<dyn prometheus::core::Collector>,
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
            stale_after,
            targets: Mutex::new(BTreeMap::new()),
        }
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, BTreeMap<Target, TargetStatus>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
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
    }

    pub fn record_request(&self, account: &str, region: &str, code: &str, elapsed: Duration) {
        self.requests
            .with_label_values(&[account, region, code])
            .inc();
        self.duration
            .with_label_values(&[account, region])
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_success(&self, target: &Target, stats: Statistics) {
        let labels = target.label_values();
        let now = SystemTime::now();
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
        let mut map = self.targets();
        let status = map.entry(target.clone()).or_default();
        status.up = Some(true);
        status.last = Some(stats);
        status.last_success = Some(now);
        status.last_success_at = Some(Instant::now());
        status.last_error = None;
        status.stale = false;
    }

    /// A failed poll: counts it by reason and marks the target down; values stay until stale.
    pub fn record_failure(&self, target: &Target, error: &ApiError) {
        self.poll_errors
            .with_label_values(&[&target.account, &target.region, error.reason()])
            .inc();
        self.mark_down(target, &error.to_string());
    }

    /// Marks a target down without a poll having failed (its account is suspended).
    pub fn mark_down(&self, target: &Target, why: &str) {
        self.up.with_label_values(&target.label_values()).set(0.0);
        let mut map = self.targets();
        let status = map.entry(target.clone()).or_default();
        status.up = Some(false);
        status.last_error = Some(why.to_string());
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
    }

    /// Removes the value series of targets with no success for `stale_after`; `up` and the
    /// timestamp stay so that the outage itself remains visible. Returns how many went.
    pub fn sweep_stale(&self) -> usize {
        let now = Instant::now();
        let mut removed = 0;
        for (target, status) in self.targets().iter_mut() {
            let expired = status
                .last_success_at
                .is_some_and(|at| now.duration_since(at) >= self.stale_after);
            if expired && !status.stale {
                let labels = target.label_values();
                let _ = self.success.remove_label_values(&labels);
                let _ = self.fail.remove_label_values(&labels);
                status.stale = true;
                removed += 1;
                tracing::warn!(%target, stale_after = %humantime::format_duration(self.stale_after), "no successful poll for too long; its values are no longer exported");
            }
        }
        removed
    }

    /// The text exposition of every series.
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
