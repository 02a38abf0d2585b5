//! The exporter's own series. The per-account families (requests, durations, errors,
//! suspensions) change with every API call, so each account keeps its own counters and its
//! lines per family, and only the families an account changed are encoded again: a poll
//! costs one account's few lines, not every account's. The few global families (the
//! configuration's state, the build, discoveries) go through the prometheus crate in a
//! registry of their own, encoded again only when one of them changed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use prometheus::{Encoder as _, Gauge, GaugeVec, IntGaugeVec, Opts, Registry, TextEncoder};

use super::exposition::{escape_label, Run, Segment};
use super::AccountStatus;
use crate::model::Reason;

/// Upper bounds of `hss_exporter_api_request_duration_seconds`' buckets, in seconds.
const DURATION_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The per-account families: name, type and help, in the order they are written.
const ACCOUNT_FAMILIES: [(&str, &str, &str); 5] = [
    (
        "hss_exporter_account_suspended",
        "gauge",
        "1 while polling of this account is suspended after repeated authentication failures.",
    ),
    (
        "hss_exporter_api_request_duration_seconds",
        "histogram",
        "Duration of HSS API requests.",
    ),
    (
        "hss_exporter_api_requests_total",
        "counter",
        "HSS API requests made, by HTTP status code (timeout or connect when no answer came).",
    ),
    (
        "hss_exporter_poll_errors_total",
        "counter",
        "Failed polls of a target, by reason.",
    ),
    (
        "hss_exporter_registry_listings_truncated_total",
        "counter",
        "Registry listings that held more registries than poll.max_registries_per_project; only that many were exported.",
    ),
];
const FAMILIES: usize = ACCOUNT_FAMILIES.len();
const SUSPENDED: usize = 0;
const DURATION: usize = 1;
const REQUESTS: usize = 2;
const POLL_ERRORS: usize = 3;
const TRUNCATED: usize = 4;

/// An account's counters: what its series say.
#[derive(Debug, Clone, Default)]
struct Counts {
    suspended: bool,
    /// Requests by `code` label.
    requests: BTreeMap<String, u64>,
    /// Durations: per bucket (not cumulative), then the sum and the count.
    duration: [u64; DURATION_BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
    /// Failed polls, per `Reason::ALL`.
    poll_errors: [u64; Reason::ALL.len()],
    /// Present once the account lists registries.
    truncated: Option<u64>,
}

/// An account's lines, one segment per family; `None` where they are to be encoded again.
type Lines = [Option<Arc<Segment>>; FAMILIES];

/// An account's counters copied out to be encoded, with the families whose lines changed.
struct Copied {
    version: u64,
    counts: Counts,
    stale: [bool; FAMILIES],
}

/// A per-account family as last written: the accounts' lines it was made of, and the
/// family's text in one segment. A gzip scrape deflates each new segment on its own, and
/// each deflate starts by clearing 128 KB of match tables: one segment for the family
/// costs one of those however many accounts changed, where a segment per account cost one
/// each. The text is copied again only when an account's lines changed.
type FamilyRun = (Vec<Arc<Segment>>, Arc<Run>);

/// One configured (account, region).
#[derive(Default)]
struct Account {
    /// Where its credential stands, for the status page.
    status: AccountStatus,
    counts: Counts,
    /// Bumped by every change to `counts`, so that lines encoded from an older copy are
    /// not kept.
    version: u64,
    /// Its lines per family, each kept while the family's counters do not change.
    encoded: Lines,
}

/// The per-account, configuration and build families.
pub(super) struct SelfMetrics {
    /// The (account, region) pairs configured now with their counters. Per-account series
    /// are written only for these, under this lock, so that a late answer for an account a
    /// reload removed cannot bring its series back.
    live: Mutex<BTreeMap<(String, String), Account>>,
    /// The per-account families' HELP and TYPE lines.
    headers: [Arc<Segment>; FAMILIES],
    /// The per-account families as last written, reused while no account's lines changed.
    families: Mutex<[Option<FamilyRun>; FAMILIES]>,
    /// Owns the global families below.
    registry: Registry,
    /// The global families' lines, while none of them changed. Their setters hold this lock,
    /// so an encoding cannot keep lines older than a change.
    global: Mutex<Option<Arc<Run>>>,
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
            Box::new(reload_ok.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reload_at.clone()),
            Box::new(stale_after_seconds.clone()),
            Box::new(discovered.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("unique metric");
        }
        SelfMetrics {
            live: Mutex::new(BTreeMap::new()),
            headers: ACCOUNT_FAMILIES.map(|(name, kind, help)| {
                Segment::new(format!("# HELP {name} {help}\n# TYPE {name} {kind}\n").into_bytes())
            }),
            families: Mutex::new(Default::default()),
            registry,
            global: Mutex::new(None),
            discovered,
            reload_ok,
            reload_at,
            stale_after: stale_after_seconds,
        }
    }

    /// Makes an account's series exist from the start (at 0), so rates work from the first
    /// error on.
    pub(super) fn add_account(&self, account: &str, region: &str) {
        self.live()
            .entry((account.to_string(), region.to_string()))
            .or_default();
    }

    /// Removes every series of an account that is no longer configured.
    pub(super) fn remove_account(&self, account: &str, region: &str) {
        self.live()
            .remove(&(account.to_string(), region.to_string()));
    }

    /// Changes a configured account's counters of `families` (indexes into
    /// `ACCOUNT_FAMILIES`); nothing for an account no longer configured.
    fn count(&self, account: &str, region: &str, families: &[usize], f: impl FnOnce(&mut Counts)) {
        let mut live = self.live();
        if let Some(a) = configured(&mut live, account, region) {
            f(&mut a.counts);
            a.version += 1;
            for &family in families {
                a.encoded[family] = None;
            }
        }
    }

    pub(super) fn record_request(
        &self,
        account: &str,
        region: &str,
        code: &str,
        elapsed: Duration,
    ) {
        let seconds = elapsed.as_secs_f64();
        self.count(account, region, &[DURATION, REQUESTS], |c| {
            match c.requests.get_mut(code) {
                Some(n) => *n += 1,
                None => {
                    c.requests.insert(code.to_string(), 1);
                }
            }
            // Like the prometheus crate: a value on a bound falls in that bound's bucket.
            if let Some(i) = DURATION_BUCKETS.iter().position(|&le| seconds <= le) {
                c.duration[i] += 1;
            }
            c.duration_sum += seconds;
            c.duration_count += 1;
        });
    }

    /// Every (account, region) configured now.
    pub(super) fn live_accounts(&self) -> Vec<(String, String)> {
        self.live().keys().cloned().collect()
    }

    /// How many projects an account's discovery found; `None` removes the series.
    pub(super) fn set_discovered(&self, account: &str, projects: Option<usize>) {
        let mut global = self.global();
        match projects {
            Some(n) => self
                .discovered
                .with_label_values(&[account])
                .set(i64::try_from(n).unwrap_or(i64::MAX)),
            None => {
                let _ = self.discovered.remove_label_values(&[account]);
            }
        }
        *global = None;
    }

    /// The listing counters of an account that lists registries, at 0 from the start.
    pub(super) fn add_listing_account(&self, account: &str, region: &str) {
        self.count(account, region, &[TRUNCATED], |c| {
            c.truncated.get_or_insert(0);
        });
    }

    pub(super) fn record_listing_truncated(&self, account: &str, region: &str) {
        self.count(account, region, &[TRUNCATED], |c| {
            *c.truncated.get_or_insert(0) += 1;
        });
    }

    pub(super) fn record_poll_error(&self, account: &str, region: &str, reason: Reason) {
        self.count(account, region, &[POLL_ERRORS], |c| {
            if let Some(i) = Reason::ALL.iter().position(|&r| r == reason) {
                c.poll_errors[i] += 1;
            }
        });
    }

    pub(super) fn record_reload(&self, ok: bool) {
        let mut global = self.global();
        self.reload_ok.with_label_values(&[]).set(i64::from(ok));
        if ok {
            self.reload_at
                .with_label_values(&[])
                .set(unix_seconds(SystemTime::now()));
        }
        *global = None;
    }

    pub(super) fn set_stale_after(&self, stale_after: Duration) {
        let mut global = self.global();
        self.stale_after.set(stale_after.as_secs_f64());
        *global = None;
    }

    pub(super) fn set_suspended(&self, account: &str, region: &str, suspended: bool) {
        self.count(account, region, &[SUSPENDED], |c| {
            c.suspended = suspended;
        });
    }

    /// Where an account's credential stands now; ignored for an account no longer configured.
    pub(super) fn set_account_status(&self, account: &str, region: &str, status: AccountStatus) {
        if let Some(a) = configured(&mut self.live(), account, region) {
            a.status = status;
        }
    }

    /// Every configured account with its status, in label order.
    pub(super) fn account_statuses(&self) -> Vec<((String, String), AccountStatus)> {
        self.live()
            .iter()
            .map(|(k, a)| (k.clone(), a.status.clone()))
            .collect()
    }

    fn live(&self) -> MutexGuard<'_, BTreeMap<(String, String), Account>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn global(&self) -> MutexGuard<'_, Option<Arc<Run>>> {
        self.global
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The families as exposition text: the global run, then one run per account family.
    /// Only the accounts that changed since the last call are encoded, outside the lock
    /// that polls need; under it, only their counters are copied.
    pub(super) fn render(&self) -> Vec<Arc<Run>> {
        let global = self
            .global()
            .get_or_insert_with(|| render(&self.registry))
            .clone();
        // Under the lock: a copy of the counters of the accounts that changed.
        let changed: Vec<((String, String), Copied)> = self
            .live()
            .iter()
            .filter(|(_, a)| a.encoded.iter().any(Option::is_none))
            .map(|(key, a)| {
                let copied = Copied {
                    version: a.version,
                    counts: a.counts.clone(),
                    stale: a.encoded.each_ref().map(Option::is_none),
                };
                (key.clone(), copied)
            })
            .collect();
        // Outside it: the lines of the families that changed.
        let mut scratch = Vec::new();
        let fresh: BTreeMap<(String, String), (u64, Lines)> = changed
            .into_iter()
            .map(|(key, c)| {
                let lines = std::array::from_fn(|family| {
                    c.stale[family]
                        .then(|| encode_family(family, (&key.0, &key.1), &c.counts, &mut scratch))
                });
                (key, (c.version, lines))
            })
            .collect();
        // Under the lock again: keep the lines of accounts that did not change meanwhile,
        // and take every account's. One that changed meanwhile goes out as copied (this
        // body is out of date at once), except for families it had no lines of: those,
        // like the lines of an account added meanwhile, are encoded here (a rare race).
        let accounts: Vec<[Arc<Segment>; FAMILIES]> = {
            let mut live = self.live();
            live.iter_mut()
                .map(|(key, a)| {
                    let fresh = fresh.get(key);
                    let current = fresh.is_some_and(|(version, _)| a.version == *version);
                    std::array::from_fn(|family| {
                        if let Some(kept) = &a.encoded[family] {
                            return kept.clone();
                        }
                        if let Some(new) = fresh.and_then(|(_, lines)| lines[family].clone()) {
                            if current {
                                a.encoded[family] = Some(new.clone());
                            }
                            return new;
                        }
                        let new = encode_family(family, (&key.0, &key.1), &a.counts, &mut scratch);
                        a.encoded[family] = Some(new.clone());
                        new
                    })
                })
                .collect()
        };
        let mut runs = vec![global];
        let mut families = self.families();
        for (family, header) in self.headers.iter().enumerate() {
            let lines: Vec<Arc<Segment>> = accounts
                .iter()
                .map(|a| a[family].clone())
                .filter(|s| !s.plain.is_empty())
                .collect();
            // Like the prometheus crate: no HELP and TYPE for a family without series.
            if lines.is_empty() {
                families[family] = None;
                continue;
            }
            let run = match &families[family] {
                Some((from, run))
                    if from.len() == lines.len()
                        && from.iter().zip(&lines).all(|(a, b)| Arc::ptr_eq(a, b)) =>
                {
                    run.clone()
                }
                _ => {
                    let mut text = Vec::with_capacity(
                        header.plain.len() + lines.iter().map(|s| s.plain.len()).sum::<usize>(),
                    );
                    for segment in std::iter::once(header).chain(&lines) {
                        text.extend_from_slice(&segment.plain);
                    }
                    let run = Run::new(vec![Segment::new(text)]);
                    families[family] = Some((lines, run.clone()));
                    run
                }
            };
            runs.push(run);
        }
        runs
    }

    fn families(&self) -> MutexGuard<'_, [Option<FamilyRun>; FAMILIES]> {
        self.families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The entry of a configured (account, region); `None` for one no longer configured.
fn configured<'a>(
    live: &'a mut BTreeMap<(String, String), Account>,
    account: &str,
    region: &str,
) -> Option<&'a mut Account> {
    // Few accounts: a scan costs less than building an owned key for every request.
    live.iter_mut()
        .find(|((a, r), _)| a == account && r == region)
        .map(|(_, a)| a)
}

/// An account's lines of one per-account family, encoded in `out`.
fn encode_family(
    family: usize,
    (account, region): (&str, &str),
    c: &Counts,
    out: &mut Vec<u8>,
) -> Arc<Segment> {
    let (name, _, _) = ACCOUNT_FAMILIES[family];
    out.clear();
    let mut line = |suffix: &str, extra: Option<(&str, &str)>, value: &dyn std::fmt::Display| {
        sample_line(out, (name, suffix), (account, region), extra, value);
    };
    match family {
        SUSPENDED => line("", None, &u8::from(c.suspended)),
        DURATION if c.duration_count > 0 => {
            let mut cumulative = 0;
            for (le, n) in DURATION_BUCKETS.iter().zip(c.duration) {
                cumulative += n;
                line("_bucket", Some(("le", &le.to_string())), &cumulative);
            }
            line("_bucket", Some(("le", "+Inf")), &c.duration_count);
            line("_sum", None, &c.duration_sum);
            line("_count", None, &c.duration_count);
        }
        REQUESTS => {
            for (code, n) in &c.requests {
                line("", Some(("code", code)), n);
            }
        }
        POLL_ERRORS => {
            let mut reasons: Vec<(&str, u64)> = Reason::ALL
                .iter()
                .zip(c.poll_errors)
                .map(|(r, n)| (r.as_str(), n))
                .collect();
            reasons.sort_unstable();
            for (reason, n) in reasons {
                line("", Some(("reason", reason)), &n);
            }
        }
        TRUNCATED => {
            if let Some(n) = c.truncated {
                line("", None, &n);
            }
        }
        _ => {}
    }
    // Copied out at its exact size.
    Segment::new(out.clone())
}

/// One sample line with the labels as the prometheus crate writes them: `account`, then
/// `code` or `reason`, then `region`, in name order; `le` last.
fn sample_line(
    out: &mut Vec<u8>,
    (name, suffix): (&str, &str),
    (account, region): (&str, &str),
    extra: Option<(&str, &str)>,
    value: &dyn std::fmt::Display,
) {
    let (before, after) = match extra {
        Some(("le", _)) => (None, extra),
        _ => (extra, None),
    };
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(b"{account=\"");
    escape_label(account, out);
    if let Some((label, value)) = before {
        let _ = write!(out, "\",{label}=\"");
        escape_label(value, out);
    }
    out.extend_from_slice(b"\",region=\"");
    escape_label(region, out);
    if let Some((label, value)) = after {
        let _ = write!(out, "\",{label}=\"");
        escape_label(value, out);
    }
    let _ = writeln!(out, "\"}} {value}");
}

/// A registry's families through the prometheus crate's text encoder.
pub(super) fn render(registry: &Registry) -> Arc<Run> {
    let mut out = Vec::with_capacity(4 * 1024);
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    Run::new(vec![Segment::new(out)])
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec};

    /// The per-account families as the prometheus crate writes them, for the same calls.
    struct Reference {
        registry: Registry,
        suspended: IntGaugeVec,
        requests: IntCounterVec,
        errors: IntCounterVec,
        duration: HistogramVec,
        truncated: IntCounterVec,
    }

    impl Reference {
        fn new() -> Self {
            let [(s, _, sh), (d, _, dh), (r, _, rh), (e, _, eh), (t, _, th)] = ACCOUNT_FAMILIES;
            let labels = ["account", "region"];
            let reference = Reference {
                registry: Registry::new(),
                suspended: valid(IntGaugeVec::new(Opts::new(s, sh), &labels)),
                requests: valid(IntCounterVec::new(
                    Opts::new(r, rh),
                    &["account", "region", "code"],
                )),
                errors: valid(IntCounterVec::new(
                    Opts::new(e, eh),
                    &["account", "region", "reason"],
                )),
                duration: valid(HistogramVec::new(
                    HistogramOpts::new(d, dh).buckets(DURATION_BUCKETS.to_vec()),
                    &labels,
                )),
                truncated: valid(IntCounterVec::new(Opts::new(t, th), &labels)),
            };
            for c in [
                Box::new(reference.suspended.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(reference.requests.clone()),
                Box::new(reference.errors.clone()),
                Box::new(reference.duration.clone()),
                Box::new(reference.truncated.clone()),
            ] {
                reference.registry.register(c).unwrap();
            }
            reference
        }

        fn add(&self, account: &str, region: &str) {
            self.suspended.with_label_values(&[account, region]);
            for reason in Reason::ALL {
                self.errors
                    .with_label_values(&[account, region, reason.as_str()]);
            }
        }
    }

    /// Sample lines and HELP/TYPE lines, sorted: the order of series within a family
    /// differs (the crate sorts by every label value, the store by account first).
    fn sorted_lines(text: &[u8]) -> Vec<String> {
        let mut lines: Vec<String> = String::from_utf8(text.to_vec())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }

    fn own_text(own: &SelfMetrics) -> Vec<u8> {
        // Without the global run, which the reference does not have.
        own.render()[1..]
            .iter()
            .flat_map(|run| run.segments_text())
            .collect()
    }

    #[test]
    fn per_account_lines_are_those_of_the_prometheus_crate() {
        let own = SelfMetrics::new(Duration::from_secs(600));
        let reference = Reference::new();
        let accounts = [
            ("prod", "cn-north-4"),
            ("prod", "ap-southeast-1"),
            ("we\"ird\\name\n", "eu-west-101"),
            ("idle", "cn-east-3"),
        ];
        for (account, region) in accounts {
            own.add_account(account, region);
            reference.add(account, region);
        }
        assert_eq!(
            sorted_lines(&own_text(&own)),
            sorted_lines(&render(&reference.registry).segments_text())
        );
        let durations = [
            0.0,
            0.05,
            0.050_000_1,
            0.1,
            0.3,
            1.0,
            2.5,
            9.99,
            30.0,
            31.0,
            600.0,
        ];
        for (i, (account, region)) in accounts[..3].iter().enumerate() {
            for (k, seconds) in durations.iter().enumerate().skip(i) {
                let code = ["200", "429", "timeout", "5\"03"][k % 4];
                let elapsed = Duration::from_secs_f64(*seconds);
                own.record_request(account, region, code, elapsed);
                reference
                    .requests
                    .with_label_values(&[account, region, code])
                    .inc();
                reference
                    .duration
                    .with_label_values(&[account, region])
                    .observe(elapsed.as_secs_f64());
                let reason = Reason::ALL[k % Reason::ALL.len()];
                own.record_poll_error(account, region, reason);
                reference
                    .errors
                    .with_label_values(&[account, region, reason.as_str()])
                    .inc();
            }
            // A render between changes: cached lines of unchanged accounts stay right.
            assert_eq!(
                sorted_lines(&own_text(&own)),
                sorted_lines(&render(&reference.registry).segments_text())
            );
        }
        own.set_suspended("prod", "cn-north-4", true);
        reference
            .suspended
            .with_label_values(&["prod", "cn-north-4"])
            .set(1);
        own.add_listing_account("prod", "ap-southeast-1");
        own.record_listing_truncated("prod", "ap-southeast-1");
        reference
            .truncated
            .with_label_values(&["prod", "ap-southeast-1"])
            .inc();
        let text = own_text(&own);
        assert_eq!(
            sorted_lines(&text),
            sorted_lines(&render(&reference.registry).segments_text())
        );
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains(
            "hss_exporter_api_request_duration_seconds_bucket{account=\"prod\",region=\"cn-north-4\",le=\"1\"} 6\n"
        ), "{text}");
        assert!(text.contains(
            "hss_exporter_api_requests_total{account=\"we\\\"ird\\\\name\\n\",code=\"429\",region=\"eu-west-101\"} 2\n"
        ), "{text}");
        // Each family's lines together, under one HELP and TYPE.
        for (name, kind, _) in ACCOUNT_FAMILIES {
            assert_eq!(
                text.matches(&format!("# TYPE {name} {kind}\n")).count(),
                1,
                "{text}"
            );
        }
    }

    #[test]
    fn a_removed_account_loses_its_lines_and_gets_none_back() {
        let own = SelfMetrics::new(Duration::from_secs(600));
        own.add_account("old", "cn-north-4");
        own.add_account("new", "cn-north-4");
        own.record_request("old", "cn-north-4", "200", Duration::from_millis(3));
        assert!(String::from_utf8(own_text(&own))
            .unwrap()
            .contains("account=\"old\""));
        own.remove_account("old", "cn-north-4");
        own.record_request("old", "cn-north-4", "200", Duration::from_millis(3));
        own.record_poll_error("old", "cn-north-4", Reason::Timeout);
        own.set_suspended("old", "cn-north-4", true);
        let text = String::from_utf8(own_text(&own)).unwrap();
        assert!(!text.contains("account=\"old\""), "{text}");
        assert!(
            text.contains(
                "hss_exporter_account_suspended{account=\"new\",region=\"cn-north-4\"} 0\n"
            ),
            "{text}"
        );
        // No requests yet: no histogram, and no HELP or TYPE for it.
        assert!(
            !text.contains("hss_exporter_api_request_duration_seconds"),
            "{text}"
        );
    }

    #[test]
    fn global_lines_follow_their_setters() {
        let own = SelfMetrics::new(Duration::from_secs(600));
        let global =
            |own: &SelfMetrics| String::from_utf8(own.render()[0].segments_text()).unwrap();
        assert!(global(&own).contains("\nhss_exporter_stale_after_seconds 600\n"));
        assert!(!global(&own).contains("hss_exporter_config_last_reload_successful"));
        own.set_stale_after(Duration::from_secs(90));
        own.record_reload(false);
        own.set_discovered("prod", Some(3));
        let text = global(&own);
        assert!(
            text.contains("\nhss_exporter_stale_after_seconds 90\n"),
            "{text}"
        );
        assert!(
            text.contains("\nhss_exporter_config_last_reload_successful 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nhss_exporter_discovered_projects{account=\"prod\"} 3\n"),
            "{text}"
        );
        own.set_discovered("prod", None);
        assert!(!global(&own).contains("hss_exporter_discovered_projects{"));
    }
}
