//! The report: what one target count measured, the goals it is held against, and the Markdown
//! table it becomes, with the formatting helpers.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::exporter::CHECK_CONFIG_SAMPLES;
use crate::loadgen::{Latency, LoadCell};
use crate::workload::{Realistic, SCRAPE_EVERY};

/// The goals: the report's "target" column.
const MAX_CPU_PER_POLL: f64 = 0.2e-3;
const MAX_RSS: u64 = 32 * 1024 * 1024;
/// With registries listed in detail.
const MAX_RSS_WITH_REGISTRIES: u64 = 48 * 1024 * 1024;
const RSS_FLATNESS: f64 = 0.10;
const MIN_THROUGHPUT_RATIO: f64 = 0.8;
const MAX_P99_RATIO: f64 = 2.0;
const MAX_STARTUP: Duration = Duration::from_millis(50);
const MAX_CONFIG_LOAD: Duration = Duration::from_millis(100);
/// "Does not rise": the p99 under a condition may exceed the paused p99 by this factor, or by
/// `LATENCY_SLACK_US` when that is more (sub-millisecond scheduling noise on a busy machine).
const LATENCY_TOLERANCE: f64 = 1.5;
const LATENCY_SLACK_US: f64 = 1000.0;

pub struct Report {
    pub n: usize,
    pub registries: usize,
    pub realistic: Option<Realistic>,
    pub accounts: usize,
    pub interval: Duration,
    pub rate_limit: u32,
    pub fill: Result<Duration, (usize, Duration)>,
    pub quiet: Duration,
    pub quiet_polls: f64,
    pub cpu_per_poll: f64,
    pub poll_rate: f64,
    pub planned_rate: f64,
    pub sim_cpu_per_request: f64,
    pub scraped: Duration,
    pub cpu_per_poll_scraped: f64,
    pub rss_fill: u64,
    pub rss_soak: u64,
    pub rss_min: u64,
    pub rss_max: u64,
    pub soak: Duration,
    pub hwm: u64,
    pub body_plain: usize,
    pub body_gzip: usize,
    pub served_gzip: bool,
    pub gzip_reference: usize,
    pub series: usize,
    pub load: [LoadCell; 2],
    pub lat_idle: Latency,
    pub lat_poll: Latency,
    pub lat_slow: Latency,
    pub slow_api: Duration,
    pub startup_healthy: Duration,
    pub startup_metrics: Duration,
    pub startup_samples: usize,
    pub check_big: Duration,
    pub check_trivial: Duration,
}

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => f64::midpoint(v[n / 2 - 1], v[n / 2]),
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.2} MiB ({bytes} B)", bytes as f64 / 1024.0 / 1024.0)
    } else if bytes >= 1024 {
        format!("{:.1} KiB ({bytes} B)", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

pub fn us(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v >= 1e6 {
        format!("{:.2} s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} ms", v / 1e3)
    } else {
        format!("{v:.0} µs")
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn ratio(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else if x < 0.1 {
        format!("{x:.3}")
    } else {
        format!("{x:.2}")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn latency_allowance(paused_p99_us: f64) -> f64 {
    (paused_p99_us * LATENCY_TOLERANCE).max(paused_p99_us + LATENCY_SLACK_US)
}

pub fn render(r: &Report) -> String {
    let mut t = String::new();
    let max_rss = if r.registries > 0 {
        MAX_RSS_WITH_REGISTRIES
    } else {
        MAX_RSS
    };
    let rss_goal = format!("≤ {} MiB", max_rss / 1024 / 1024);
    let _ = writeln!(
        t,
        "#### {} targets{} ({} accounts, poll.interval {}, rate_limit_per_minute {})\n",
        thousands(r.n),
        if r.registries > 0 {
            format!(" + {} registries listed in detail", thousands(r.registries))
        } else {
            String::new()
        },
        r.accounts,
        humantime::format_duration(r.interval),
        r.rate_limit
    );
    t.push_str("| measure | target | result | |\n|---|---|---|---|\n");
    let mut row = |measure: String, target: &str, result: String, mark: &str| {
        let _ = writeln!(t, "| {measure} | {target} | {result} | {mark} |");
    };
    row(
        "seconds until every target has a value".into(),
        "—",
        match r.fill {
            Ok(d) => format!(
                "{:.2} s (the first round goes as fast as the budget allows)",
                d.as_secs_f64()
            ),
            Err((have, d)) => format!("not reached: {have} after {:.0} s", d.as_secs_f64()),
        },
        if r.fill.is_ok() { "" } else { "**not met**" },
    );
    row(
        format!(
            "CPU per poll, no scrapes ({:.0} s, {:.0} polls, {:.0}/s of {:.0}/s planned)",
            r.quiet.as_secs_f64(),
            r.quiet_polls,
            r.poll_rate,
            r.planned_rate
        ),
        "≤ 0.2 ms",
        format!("{:.3} ms", r.cpu_per_poll * 1e3),
        verdict(r.cpu_per_poll <= MAX_CPU_PER_POLL),
    );
    if !r.cpu_per_poll_scraped.is_nan() {
        row(
            format!(
                "CPU per poll incl. a scrape every {} ({:.0} s)",
                humantime::format_duration(SCRAPE_EVERY),
                r.scraped.as_secs_f64()
            ),
            "—",
            format!("{:.3} ms", r.cpu_per_poll_scraped * 1e3),
            "",
        );
    }
    if let Some(q) = &r.realistic {
        row(
            format!(
                "CPU per poll at a realistic rate: every target once per {} ({:.0} s, {:.0} polls, {:.1}/s of {:.1}/s planned), a gzip scrape every {}",
                humantime::format_duration(q.interval),
                q.window.as_secs_f64(),
                q.polls,
                q.rate,
                q.planned,
                humantime::format_duration(SCRAPE_EVERY),
            ),
            "≤ 0.2 ms",
            format!("{:.3} ms", q.cpu_per_poll * 1e3),
            verdict(q.cpu_per_poll <= MAX_CPU_PER_POLL),
        );
    }
    row(
        "resident memory, every target in, scraped plain and gzip".into(),
        &rss_goal,
        mib(r.rss_fill),
        verdict(r.rss_fill <= max_rss),
    );
    let drift = r.rss_soak as f64 / r.rss_fill as f64 - 1.0;
    let spread_ok = r.rss_max as f64 <= r.rss_fill as f64 * (1.0 + RSS_FLATNESS)
        && r.rss_min as f64 >= r.rss_fill as f64 * (1.0 - RSS_FLATNESS);
    row(
        format!(
            "resident memory after {} more polling, values changing (min–max during)",
            humantime::format_duration(r.soak)
        ),
        &format!("{rss_goal}, ±10%"),
        format!(
            "{} ({:+.1}%; {} – {})",
            mib(r.rss_soak),
            drift * 100.0,
            mib(r.rss_min),
            mib(r.rss_max)
        ),
        verdict(r.rss_soak <= max_rss && drift.abs() <= RSS_FLATNESS && spread_ok),
    );
    row(
        format!("`/metrics` body, plain ({} samples)", thousands(r.series)),
        "—",
        size(r.body_plain),
        "",
    );
    row(
        "`/metrics` body, `Accept-Encoding: gzip`".into(),
        "—",
        if r.served_gzip {
            size(r.body_gzip)
        } else {
            format!(
                "served uncompressed, {} (gzip -6 would be {})",
                size(r.body_gzip),
                size(r.gzip_reference)
            )
        },
        "",
    );
    for (i, name) in ["plain", "gzip"].into_iter().enumerate() {
        let cell = &r.load[i];
        let (er, sr) = (
            median(cell.exporter.iter().map(|x| x.rps)),
            median(cell.stat.iter().map(|x| x.rps)),
        );
        let (e50, s50) = (
            median(cell.exporter.iter().map(|x| x.p50_us)),
            median(cell.stat.iter().map(|x| x.p50_us)),
        );
        let (e99, s99) = (
            median(cell.exporter.iter().map(|x| x.p99_us)),
            median(cell.stat.iter().map(|x| x.p99_us)),
        );
        let errors: u64 = cell
            .exporter
            .iter()
            .chain(&cell.stat)
            .map(|x| x.errors)
            .sum();
        let note = if errors > 0 {
            format!(" ({errors} errors)")
        } else {
            String::new()
        };
        row(
            format!("requests/s, {name}: exporter / static"),
            "ratio ≥ 0.8",
            format!("{er:.1} / {sr:.1} = **{}**{note}", ratio(er / sr)),
            verdict(er / sr >= MIN_THROUGHPUT_RATIO),
        );
        row(
            format!("p50, {name}: exporter / static"),
            "—",
            format!("{} / {}", us(e50), us(s50)),
            "",
        );
        row(
            format!("p99, {name}: exporter / static"),
            "ratio ≤ 2",
            format!("{} / {} = **{}**", us(e99), us(s99), ratio(e99 / s99)),
            verdict(e99 / s99 <= MAX_P99_RATIO),
        );
    }
    let lat = |l: &Latency| {
        format!(
            "{} / {} (max {}, {} scrapes, {:.0} polls/s)",
            us(l.p50_us),
            us(l.p99_us),
            us(l.max_us),
            l.samples,
            l.polls_per_s
        )
    };
    row(
        "scrape latency p50 / p99, polling paused".into(),
        "baseline",
        lat(&r.lat_idle),
        "",
    );
    row(
        "… while a poll round runs".into(),
        "p99 ≤ 1.5 × paused (or + 1 ms)",
        lat(&r.lat_poll),
        verdict(r.lat_poll.p99_us <= latency_allowance(r.lat_idle.p99_us)),
    );
    row(
        format!(
            "… while the API is slow (+{} per call)",
            humantime::format_duration(r.slow_api)
        ),
        "p99 ≤ 1.5 × paused (or + 1 ms)",
        lat(&r.lat_slow),
        verdict(r.lat_slow.p99_us <= latency_allowance(r.lat_idle.p99_us)),
    );
    row(
        format!(
            "start-up: spawn → first 200 from `/-/healthy` (median of {})",
            r.startup_samples
        ),
        "< 50 ms",
        ms(r.startup_healthy),
        verdict(r.startup_healthy < MAX_STARTUP),
    );
    row(
        "start-up: spawn → first 200 from `/metrics`".into(),
        "< 50 ms",
        ms(r.startup_metrics),
        verdict(r.startup_metrics < MAX_STARTUP),
    );
    let net = r.check_big.saturating_sub(r.check_trivial);
    row(
        format!(
            "config load + validate: `check-config` wall time, {} targets minus 1 target (medians of {CHECK_CONFIG_SAMPLES})",
            thousands(r.n)
        ),
        "< 100 ms",
        format!(
            "{} ({} − {})",
            ms(net),
            ms(r.check_big),
            ms(r.check_trivial)
        ),
        verdict(net < MAX_CONFIG_LOAD),
    );
    row(
        "peak resident memory (VmHWM), load runs included".into(),
        "—",
        mib(r.hwm),
        "",
    );
    row(
        "simulated API: bench-process CPU per request".into(),
        "—",
        format!("{:.3} ms", r.sim_cpu_per_request * 1e3),
        "",
    );
    t
}

pub fn git_revision(dir: &str) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if rev.is_empty() {
        return None;
    }
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    Some(if dirty {
        format!("{rev} + local changes")
    } else {
        rev
    })
}
