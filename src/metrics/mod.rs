//! The metrics store: the latest result of every target, as Prometheus series and as the
//! status page's rows. Polling writes here; the HTTP server only reads.
//!
//! The per-target series (four lines a target, tens of thousands of lines for big users) are
//! encoded here, group by group and family by family: a poll re-encodes only the lines of
//! the families whose value it changed, in its target's group. The few per-account and
//! process series go through the prometheus crate.

mod exposition;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, SystemTime};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::time::Instant;

use exposition::{escape_label, Run, Segment};
pub use exposition::{Body, Exposition};

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
/// Targets per group: a change re-encodes the group's lines of the families it changed.
const GROUP: usize = 64;
/// Groups per run: the unit a gzip body is assembled from.
const RUN: usize = 16;

/// A per-target sample's value: compared to tell whether a family's lines changed, and
/// written into them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Count(u64),
    Time(SystemTime),
}

impl Value {
    fn write(self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = match self {
            Value::Count(n) => write!(out, "{n}"),
            Value::Time(t) => {
                let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis())
            }
        };
    }
}

/// The per-target families: name, help, and the sample of a target (if it has one).
type Sample = fn(&TargetStatus) -> Option<Value>;
const TARGET_FAMILIES: [(&str, &str, Sample); 4] = [
    (
        "hss_registry_access_success",
        "Image registries connected to HSS whose access succeeded (success_num), as of the last successful poll.",
        |s| s.last.filter(|_| !s.stale).map(|v| Value::Count(v.success_num)),
    ),
    (
        "hss_registry_access_fail",
        "Image registries connected to HSS whose access is abnormal (fail_num), as of the last successful poll.",
        |s| s.last.filter(|_| !s.stale).map(|v| Value::Count(v.fail_num)),
    ),
    (
        "hss_registry_statistics_up",
        "1 if the last poll of this target's registry statistics succeeded, 0 if it failed.",
        |s| s.up.map(|up| Value::Count(u64::from(up))),
    ),
    (
        "hss_registry_statistics_last_success_timestamp_seconds",
        "Unix time of the last successful poll of this target.",
        |s| s.last_success.map(Value::Time),
    ),
];

fn samples(status: &TargetStatus) -> [Option<Value>; 4] {
    TARGET_FAMILIES.map(|(_, _, sample)| sample(status))
}

/// A target's state and the group it is encoded in.
struct Entry {
    status: TargetStatus,
    group: usize,
}

/// A run of consecutive targets (map order) and its encoded lines per family.
struct Group {
    first: Target,
    encoded: [Option<Arc<Segment>>; 4],
}

impl Group {
    /// This group's lines of `family`, encoded if they changed since last time.
    fn segment(
        &mut self,
        family: usize,
        map: &BTreeMap<Target, Entry>,
        scratch: &mut Vec<u8>,
    ) -> Arc<Segment> {
        self.encoded[family]
            .get_or_insert_with(|| {
                let members: Vec<(&Target, &Entry)> =
                    map.range(&self.first..).take(GROUP).collect();
                encode_family(family, &members, scratch);
                // Copied out at its exact size.
                Segment::new(scratch.clone())
            })
            .clone()
    }
}

#[derive(Default)]
struct Targets {
    map: BTreeMap<Target, Entry>,
    groups: Vec<Group>,
    /// Per family, the runs of `RUN` groups' segments, assembled again after a change.
    runs: [Vec<Option<Arc<Run>>>; 4],
    /// Targets came or went: the groups must be formed again.
    regroup: bool,
    /// Reused encoding buffer; segments are copied out of it at their exact size.
    scratch: Vec<u8>,
}

impl Targets {
    /// Runs `f` on a target's status and forgets the encoding of the families whose lines
    /// it changed. Returns whether any did, `None` for a target that is not configured.
    fn touch(&mut self, target: &Target, f: impl FnOnce(&mut TargetStatus)) -> Option<bool> {
        let entry = self.map.get_mut(target)?;
        let before = samples(&entry.status);
        f(&mut entry.status);
        let after = samples(&entry.status);
        if before == after {
            return Some(false);
        }
        if !self.regroup {
            if let Some(g) = self.groups.get_mut(entry.group) {
                for (family, (b, a)) in before.iter().zip(&after).enumerate() {
                    if b != a {
                        g.encoded[family] = None;
                        if let Some(run) = self.runs[family].get_mut(entry.group / RUN) {
                            *run = None;
                        }
                    }
                }
            }
        }
        Some(true)
    }
}

/// A scrape waiting for the encoder thread.
struct Job {
    gzip: bool,
    reply: tokio::sync::oneshot::Sender<Arc<Exposition>>,
}

/// Owns every series; all methods take `&self` and are cheap.
pub struct Store {
    registry: Registry,
    /// The process collector apart: it reads `/proc`, so its lines are kept for up to
    /// `PROCESS_METRICS_MAX_AGE` instead of being gathered again on every change.
    process: Registry,
    process_lines: Mutex<Option<(Instant, Arc<Run>)>>,
    suspended: IntGaugeVec,
    requests: IntCounterVec,
    poll_errors: IntCounterVec,
    duration: HistogramVec,
    reload_ok: IntGaugeVec,
    reload_at: GaugeVec,
    stale_after: Mutex<Duration>,
    /// `poll.stale_after` as a series, so alert rules need not repeat the config value.
    stale_after_seconds: GaugeVec,
    targets: Mutex<Targets>,
    /// Bumped by every change to a series, so a cached exposition knows it is current.
    generation: AtomicU64,
    exposition: Mutex<Option<Arc<Exposition>>>,
    /// The thread scrapes have the exposition encoded on, started on first use.
    encoder: OnceLock<Option<mpsc::Sender<Job>>>,
    /// The families' HELP and TYPE lines, encoded once.
    headers: [Arc<Run>; 4],
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
        let stale_after_seconds = GaugeVec::new(
            Opts::new(
                "hss_exporter_stale_after_seconds",
                "poll.stale_after: a target with no successful poll for this long loses its value series.",
            ),
            &[],
        )
        .expect("valid metric");
        stale_after_seconds
            .with_label_values(&[])
            .set(stale_after.as_secs_f64());
        for c in [
            Box::new(reload_ok.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(stale_after_seconds.clone()),
            Box::new(reload_at.clone()),
            Box::new(suspended.clone()),
            Box::new(requests.clone()),
            Box::new(poll_errors.clone()),
            Box::new(duration.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("unique metric");
        }
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        process
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        let headers = TARGET_FAMILIES.map(|(name, help, _)| {
            Run::new(vec![Segment::new(
                format!("# HELP {name} {help}\n# TYPE {name} gauge\n").into_bytes(),
            )])
        });
        Store {
            registry,
            process,
            process_lines: Mutex::new(None),
            suspended,
            requests,
            poll_errors,
            duration,
            reload_ok,
            reload_at,
            stale_after: Mutex::new(stale_after),
            stale_after_seconds,
            targets: Mutex::new(Targets::default()),
            generation: AtomicU64::new(0),
            exposition: Mutex::new(None),
            encoder: OnceLock::new(),
            headers,
        }
    }

    fn targets(&self) -> MutexGuard<'_, Targets> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut t = self.targets();
        // Built apart and appended: one sorted merge instead of a map insert per target.
        let mut fresh: BTreeMap<Target, Entry> = targets
            .into_iter()
            .inspect(|target| {
                accounts.insert((&target.account, &target.region));
            })
            .filter(|target| !t.map.contains_key(target))
            .map(|target| {
                (
                    target.clone(),
                    Entry {
                        status: TargetStatus::default(),
                        group: 0,
                    },
                )
            })
            .collect();
        if !fresh.is_empty() {
            t.map.append(&mut fresh);
            t.regroup = true;
        }
        drop(t);
        for (account, region) in accounts {
            self.suspended.with_label_values(&[account, region]);
            for reason in ERROR_REASONS {
                self.poll_errors
                    .with_label_values(&[account, region, reason]);
            }
        }
        self.changed();
    }

    /// Forgets every target not in `keep`, with all its series at once; the per-account
    /// series of accounts left without targets go too.
    pub fn retain_targets(&self, keep: &HashSet<&Target>) {
        let mut t = self.targets();
        let gone: Vec<Target> = t
            .map
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for target in &gone {
            t.map.remove(target);
            t.regroup = true;
        }
        drop(t);
        let live: HashSet<(&str, &str)> = keep
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
        self.stale_after_seconds
            .with_label_values(&[])
            .set(stale_after.as_secs_f64());
        self.changed();
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
        let mut t = self.targets();
        let expired: Vec<Target> = t
            .map
            .iter()
            .filter(|(_, e)| {
                !e.status.stale
                    && e.status
                        .last_success_at
                        .is_some_and(|at| now.duration_since(at) >= stale_after)
            })
            .map(|(target, _)| target.clone())
            .collect();
        for target in &expired {
            t.touch(target, |status| status.stale = true);
            tracing::warn!(%target, stale_after = %humantime::format_duration(stale_after), "no successful poll for too long; its values are no longer exported");
        }
        let removed = expired.len();
        drop(t);
        if removed > 0 {
            self.changed();
        }
        removed
    }

    /// The current exposition for a scrape, with its gzip form ready if asked for. When
    /// something must be encoded, that happens on the store's encoder thread: the serving
    /// threads go on with other connections meanwhile, and the encoded text is always
    /// allocated by one thread, which keeps the allocator from holding a copy's worth of
    /// freed memory per serving thread.
    pub async fn scrape(self: &Arc<Self>, gzip: bool) -> Arc<Exposition> {
        if let Some(e) = self.current().filter(|e| !gzip || e.has_gzip()) {
            return e;
        }
        // A single-threaded runtime has one thread to allocate from anyway, and there a wait
        // on another thread would let a paused test clock jump ahead.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread {
            return self.exposition();
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = match self.encoder.get_or_init(|| self.start_encoder().ok()) {
            Some(encoder) => encoder.send(Job { gzip, reply }).is_ok(),
            None => false,
        };
        match rx.await {
            Ok(e) if sent => e,
            // No encoder thread (it could not start, or died): encode here.
            _ => self.exposition(),
        }
    }

    /// The encoder answers every scrape waiting for it with one encoding, done after they
    /// all came in, so scrapes that arrive during a rebuild do not queue a rebuild each.
    fn start_encoder(self: &Arc<Self>) -> std::io::Result<mpsc::Sender<Job>> {
        let (tx, jobs) = mpsc::channel::<Job>();
        // Weak: the thread must not keep the store alive; it ends when the store, which
        // holds the sender, is dropped.
        let store = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || {
                while let Ok(first) = jobs.recv() {
                    let batch: Vec<Job> = std::iter::once(first).chain(jobs.try_iter()).collect();
                    let Some(store) = store.upgrade() else { break };
                    let e = store.exposition();
                    drop(store);
                    if batch.iter().any(|job| job.gzip) {
                        e.prepare_gzip();
                    }
                    for job in batch {
                        let _ = job.reply.send(e.clone());
                    }
                }
            })
            .map(|_| tx)
            .inspect_err(|e| tracing::warn!(error = %e, "cannot start the encoder thread; scrapes encode on their own thread"))
    }

    /// The cached exposition if it is still current; `None` as well while one is being
    /// encoded, rather than wait for it here.
    fn current(&self) -> Option<Arc<Exposition>> {
        let cached = match self.exposition.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        cached.as_ref().filter(|e| self.is_current(e)).cloned()
    }

    /// Nothing changed since `e` was encoded, and its process metrics are recent enough.
    fn is_current(&self, e: &Exposition) -> bool {
        e.generation == self.generation.load(Ordering::Acquire)
            && e.built.elapsed() < PROCESS_METRICS_MAX_AGE
    }

    /// The current exposition, never older than the last change: the per-account part is
    /// encoded again, and of the per-target part only the groups whose targets changed.
    pub fn exposition(&self) -> Arc<Exposition> {
        let mut cached = self.exposition.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = cached.as_ref().filter(|e| self.is_current(e)) {
            return e.clone();
        }
        // Read before encoding: a change made meanwhile makes this body out of date at once.
        let generation = self.generation.load(Ordering::Acquire);
        // Let the segments of changed groups go before their successors are encoded.
        *cached = None;
        let (process_at, process) = self.process_lines();
        let mut runs = vec![render(&self.registry), process];
        for (header, family) in self.headers.iter().zip(self.encode_targets()) {
            runs.push(header.clone());
            runs.extend(family);
        }
        // A body is as old as its oldest part.
        let fresh = Arc::new(Exposition::new(generation, process_at, runs));
        *cached = Some(fresh.clone());
        fresh
    }

    /// Per family, its runs of encoded groups: those that changed are encoded and assembled
    /// again (all of them after targets came or went).
    fn encode_targets(&self) -> [Vec<Arc<Run>>; 4] {
        let mut guard = self.targets();
        let t = &mut *guard;
        if t.regroup {
            t.groups.clear();
            for (i, (target, entry)) in t.map.iter_mut().enumerate() {
                if i % GROUP == 0 {
                    t.groups.push(Group {
                        first: target.clone(),
                        encoded: Default::default(),
                    });
                }
                entry.group = i / GROUP;
            }
            t.runs = std::array::from_fn(|_| vec![None; t.groups.len().div_ceil(RUN)]);
            t.regroup = false;
        }
        let Targets {
            map,
            groups,
            runs,
            scratch,
            ..
        } = t;
        std::array::from_fn(|family| {
            runs[family]
                .iter_mut()
                .zip(groups.chunks_mut(RUN))
                .map(|(run, groups)| {
                    run.get_or_insert_with(|| {
                        let segments = groups.iter_mut().map(|g| g.segment(family, map, scratch));
                        Run::new(segments.collect())
                    })
                    .clone()
                })
                .collect()
        })
    }

    /// The process families, gathered again once they are `PROCESS_METRICS_MAX_AGE` old.
    fn process_lines(&self) -> (Instant, Arc<Run>) {
        let mut lines = self.process_lines.lock().unwrap_or_else(|e| e.into_inner());
        match lines.as_ref() {
            Some((at, run)) if at.elapsed() < PROCESS_METRICS_MAX_AGE => (*at, run.clone()),
            _ => lines
                .insert((Instant::now(), render(&self.process)))
                .clone(),
        }
    }

    /// The whole text exposition in one buffer.
    pub fn render(&self) -> Vec<u8> {
        self.exposition().to_vec()
    }

    pub fn statuses(&self) -> Vec<(Target, TargetStatus)> {
        self.targets()
            .map
            .iter()
            .map(|(t, e)| (t.clone(), e.status.clone()))
            .collect()
    }
}

/// A registry's families through the prometheus crate's text encoder.
fn render(registry: &Registry) -> Arc<Run> {
    let mut out = Vec::with_capacity(16 * 1024);
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    Run::new(vec![Segment::new(out)])
}

/// `{account="..",...}` with the label names in the order the text format sorts them.
fn render_labels(target: &Target, out: &mut Vec<u8>) {
    let [account, region, project, eps, rtype] = target.label_values();
    for (i, (name, value)) in [
        ("account", account),
        ("enterprise_project_id", eps),
        ("project_id", project),
        ("region", region),
        ("registry_type", rtype),
    ]
    .into_iter()
    .enumerate()
    {
        out.extend_from_slice(if i == 0 { b"{" } else { b"," });
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_label(value, out);
        out.push(b'"');
    }
    out.push(b'}');
}

/// Writes the lines of one per-target family for a group of targets into `out`.
fn encode_family(family: usize, members: &[(&Target, &Entry)], out: &mut Vec<u8>) {
    let (name, _, sample) = TARGET_FAMILIES[family];
    out.clear();
    for (target, entry) in members {
        if let Some(value) = sample(&entry.status) {
            out.extend_from_slice(name.as_bytes());
            render_labels(target, out);
            out.push(b' ');
            value.write(out);
            out.push(b'\n');
        }
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
        assert!(text(&store).contains("\nhss_exporter_stale_after_seconds 600\n"));
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

    /// Only the per-target lines (the process metrics move on their own).
    fn target_lines(store: &Store) -> String {
        text(store)
            .lines()
            .filter(|l| l.contains("hss_registry_"))
            .collect::<Vec<_>>()
            .join("\n")
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
                    1 => store.record_failure(t, &ApiError::Decode("x".into())),
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
