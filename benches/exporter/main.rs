//! End-to-end benchmark: the release-built exporter polling the simulated HSS API.
//!
//! `cargo bench --bench exporter` builds `hss-exporter` in release mode, then for each target
//! count starts the simulated API (several accounts, no API rate limit, values changing) and
//! the exporter against it, and measures:
//!
//! - start-up to serving, and how long `check-config` takes on the big configuration;
//! - the time until every target has a value;
//! - CPU per poll (the process's CPU clock, to the nanosecond, divided by API requests made),
//!   at the benchmark's rate and again at a realistic one (every target once per
//!   `HSS_BENCH_REALISTIC_INTERVAL`, with gzip scrapes), on an exporter of its own;
//! - resident memory once every target is in and a plain and a gzip scrape have been served,
//!   and after a soak of further polling;
//! - the `/metrics` body size, plain and gzip;
//! - `/metrics` under load (wrk when installed, a small built-in client otherwise), plain and
//!   gzip, alternating with a minimal static server that serves the very same bytes;
//! - scrape latency while idle, while polling, and while the API is slow.
//!
//! It prints one Markdown table per target count on stdout; progress goes to stderr.
//!
//! Settings (environment variables; `--quick` shortens the defaults to a 30 s soak, one run
//! and 5 s per load run):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HSS_BENCH_TARGETS` | `1000,10000,10000:10000` | cases, comma-separated: a target count, or `targets:registries` to also list that many registries in detail (one project per account) |
//! | `HSS_BENCH_ACCOUNTS` | `10` | accounts the targets are spread over |
//! | `HSS_BENCH_INTERVAL` | `10s` | `poll.interval` |
//! | `HSS_BENCH_SOAK` | `10m` | polling after the fill, for memory flatness |
//! | `HSS_BENCH_RUNS` | `3` | repetitions of the load phase (medians reported) |
//! | `HSS_BENCH_DURATION` | `10s` | length of each load run and latency window |
//! | `HSS_BENCH_CONNECTIONS` | `16` | load generator connections |
//! | `HSS_BENCH_THREADS` | `2` | load generator threads |
//! | `HSS_BENCH_LOADGEN` | `auto` | `wrk`, `rust`, or `auto` (wrk when on PATH) |
//! | `HSS_BENCH_SLOW_API` | `1s` | delay added to every API call in the slow-API phase |
//! | `HSS_BENCH_RATE_LIMIT` | 2 × what a round needs | `rate_limit_per_minute` per account |
//! | `HSS_BENCH_REALISTIC_INTERVAL` | `10m` | `poll.interval` of the realistic-rate phase; `0` skips it |
//! | `HSS_BENCH_REALISTIC_WINDOW` | `4m` | how long the realistic-rate phase measures (`--quick`: 30s) |
//! | `HSS_BENCH_ONLY` | none | `realistic`: run only the realistic-rate phase of each case and print its figure |
//! | `HSS_BENCH_EXPORTER` | build it | path to an `hss-exporter` binary; skips the build |
//! | `HSS_BENCH_OUT` | none | also write the Markdown report to this file |

mod client;
mod exporter;
mod loadgen;
mod processes;
mod report;
mod static_server;
mod workload;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::exporter::{
    build_exporter, median_duration, startup_times, time_check_config, Exporter,
    CHECK_CONFIG_SAMPLES, STARTUP_SAMPLES,
};
use crate::loadgen::{compare_with_static, LoadGen};
use crate::processes::{
    install_signal_cleanup, kill_all_children, machine_description, memory, remove_temp_dir,
    TEMP_DIR,
};
use crate::report::{git_revision, render, Report};
use crate::workload::Workload;

// ---------------------------------------------------------------------------------------------
// Settings

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LoadGenChoice {
    Auto,
    Wrk,
    Rust,
}

/// One benchmarked configuration: targets, and registries listed in detail.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Statistics targets.
    pub n: usize,
    /// Registries listed one by one, spread over one project per account.
    pub registries: usize,
}

#[derive(Clone, Debug)]
struct Params {
    targets: Vec<Case>,
    realistic_interval: Duration,
    realistic_window: Duration,
    /// Only the realistic-rate phase (`HSS_BENCH_ONLY=realistic`).
    realistic_only: bool,
    accounts: usize,
    interval: Duration,
    soak: Duration,
    runs: usize,
    duration: Duration,
    connections: usize,
    threads: usize,
    slow_api: Duration,
    rate_limit: Option<u32>,
    loadgen: LoadGenChoice,
    exporter: Option<PathBuf>,
    out: Option<PathBuf>,
}

fn env_parse<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("bench: {name}={v:?} is not valid");
            std::process::exit(2)
        }),
        _ => default,
    }
}

fn env_duration(name: &str, default: Duration) -> Duration {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => humantime::parse_duration(v.trim()).unwrap_or_else(|e| {
            eprintln!("bench: {name}={v:?}: {e}");
            std::process::exit(2)
        }),
        _ => default,
    }
}

impl Params {
    fn from_env_and_args() -> Params {
        let mut quick = false;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => quick = true,
                "--bench" => {}
                "--help" | "-h" => {
                    println!("{HELP}");
                    std::process::exit(0);
                }
                other => eprintln!("bench: ignoring argument {other:?}"),
            }
        }
        let (soak, runs, duration, window) = if quick {
            (
                Duration::from_secs(30),
                1,
                Duration::from_secs(5),
                Duration::from_secs(30),
            )
        } else {
            (
                Duration::from_secs(600),
                3,
                Duration::from_secs(10),
                // At 1,000 targets, 400 polls and 32 scrapes: shorter windows varied by
                // some 6% from run to run.
                Duration::from_secs(240),
            )
        };
        let number = |s: &str| {
            s.trim()
                .replace('_', "")
                .parse::<usize>()
                .unwrap_or_else(|_| {
                    eprintln!("bench: HSS_BENCH_TARGETS: {s:?} is not a number");
                    std::process::exit(2)
                })
        };
        let targets = std::env::var("HSS_BENCH_TARGETS")
            .unwrap_or_else(|_| "1000,10000,10000:10000".into())
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| match s.split_once(':') {
                Some((n, r)) => Case {
                    n: number(n),
                    registries: number(r),
                },
                None => Case {
                    n: number(s),
                    registries: 0,
                },
            })
            .filter(|c| c.n > 0)
            .collect::<Vec<_>>();
        let loadgen = match std::env::var("HSS_BENCH_LOADGEN").as_deref() {
            Ok("wrk") => LoadGenChoice::Wrk,
            Ok("rust") => LoadGenChoice::Rust,
            Ok("auto" | "") | Err(_) => LoadGenChoice::Auto,
            Ok(other) => {
                eprintln!("bench: HSS_BENCH_LOADGEN={other:?}: expected wrk, rust or auto");
                std::process::exit(2)
            }
        };
        let realistic_only = match std::env::var("HSS_BENCH_ONLY").as_deref() {
            Ok("realistic") => true,
            Ok("") | Err(_) => false,
            Ok(other) => {
                eprintln!("bench: HSS_BENCH_ONLY={other:?}: expected realistic");
                std::process::exit(2)
            }
        };
        let rate_limit = match std::env::var("HSS_BENCH_RATE_LIMIT") {
            Ok(v) if !v.trim().is_empty() => Some(env_parse("HSS_BENCH_RATE_LIMIT", 0u32)),
            _ => None,
        };
        Params {
            targets,
            realistic_interval: env_duration(
                "HSS_BENCH_REALISTIC_INTERVAL",
                Duration::from_secs(600),
            ),
            realistic_window: env_duration("HSS_BENCH_REALISTIC_WINDOW", window)
                .max(Duration::from_secs(10)),
            realistic_only,
            accounts: env_parse("HSS_BENCH_ACCOUNTS", 10usize).max(1),
            interval: env_duration("HSS_BENCH_INTERVAL", Duration::from_secs(10))
                .max(Duration::from_secs(1)),
            soak: env_duration("HSS_BENCH_SOAK", soak),
            runs: env_parse("HSS_BENCH_RUNS", runs).max(1),
            duration: env_duration("HSS_BENCH_DURATION", duration).max(Duration::from_secs(1)),
            connections: env_parse("HSS_BENCH_CONNECTIONS", 16usize).max(1),
            threads: env_parse("HSS_BENCH_THREADS", 2usize).max(1),
            slow_api: env_duration("HSS_BENCH_SLOW_API", Duration::from_secs(1)),
            rate_limit: rate_limit.filter(|&r| r > 0),
            loadgen,
            exporter: std::env::var_os("HSS_BENCH_EXPORTER").map(PathBuf::from),
            out: std::env::var_os("HSS_BENCH_OUT").map(PathBuf::from),
        }
    }
}

const HELP: &str = "cargo bench --bench exporter [-- --quick]

Environment: HSS_BENCH_TARGETS (1000,10000,10000:10000), HSS_BENCH_ACCOUNTS (10), HSS_BENCH_INTERVAL (10s),
HSS_BENCH_REALISTIC_INTERVAL (10m; 0 skips), HSS_BENCH_REALISTIC_WINDOW (4m), HSS_BENCH_ONLY (realistic),
HSS_BENCH_SOAK (10m), HSS_BENCH_RUNS (3), HSS_BENCH_DURATION (10s), HSS_BENCH_CONNECTIONS (16),
HSS_BENCH_THREADS (2), HSS_BENCH_LOADGEN (auto|wrk|rust), HSS_BENCH_SLOW_API (1s),
HSS_BENCH_RATE_LIMIT, HSS_BENCH_EXPORTER (binary; skips the build), HSS_BENCH_OUT (file).";

// ---------------------------------------------------------------------------------------------
// One target count

/// What every phase shares: the exporter binary, the scratch directory, the runtimes of the
/// simulated API and of the clients, and the load generator.
struct Ctx {
    exe: PathBuf,
    dir: PathBuf,
    sim_rt: Runtime,
    client_rt: Runtime,
    loadgen: LoadGen,
}

/// Every phase for one case, in order, against one simulated API.
fn bench_targets(case: Case, p: &Params, ctx: &Ctx) -> Report {
    let n = case.n;
    let w = Workload::start(case, p, ctx);

    eprintln!("bench: check-config, {CHECK_CONFIG_SAMPLES} runs each of the {n}-target and a 1-target config");
    let check_trivial = time_check_config(&ctx.exe, &w.trivial, &w.trivial_env);
    let check_big = time_check_config(&ctx.exe, &w.config, &w.env);

    eprintln!("bench: start-up, {STARTUP_SAMPLES} separate starts");
    let (mut healthy, mut metrics) = startup_times(ctx, &w.config, &w.env, n);

    eprintln!("bench: starting the exporter and waiting until every target has a value");
    let exporter = Exporter::spawn(&ctx.exe, &w.config, &w.env, &ctx.dir, &n.to_string());
    let (h, m) = exporter.wait_serving();
    healthy.push(h);
    metrics.push(m);
    let fill = workload::fill(&exporter, case, p, ctx);

    // Soak, first without scrapes (CPU per poll), then with two replicas scraping.
    let soak = workload::soak(&exporter, p, ctx);

    // Scrape latency: while polling, with polling paused, with a slow API.
    let latency = w.latencies(&exporter, p, ctx);

    // The bodies, and the static server serving them.
    let (bodies, load) = compare_with_static(&exporter, p, ctx);
    let hwm = memory(exporter.pid()).map_or(0, |m| m.1);

    let (accounts, rate_limit) = (w.accounts(), w.rate);
    drop(exporter);
    let realistic = w.realistic(p, ctx);
    w.stop(ctx);

    Report {
        n,
        registries: case.registries,
        realistic,
        accounts,
        interval: p.interval,
        rate_limit,
        fill,
        quiet: soak.quiet,
        quiet_polls: soak.quiet_polls,
        cpu_per_poll: soak.cpu_per_poll,
        poll_rate: soak.poll_rate,
        planned_rate: n as f64 / p.interval.as_secs_f64(),
        sim_cpu_per_request: soak.sim_cpu_per_request,
        scraped: soak.scraped,
        cpu_per_poll_scraped: soak.cpu_per_poll_scraped,
        rss_fill: soak.rss_fill,
        rss_soak: soak.rss_end,
        rss_min: soak.rss_min,
        rss_max: soak.rss_max,
        soak: p.soak,
        hwm,
        body_plain: bodies.plain,
        body_gzip: bodies.gzip,
        served_gzip: bodies.served_gzip,
        gzip_reference: bodies.gzip_reference,
        series: bodies.series,
        load,
        lat_idle: latency.paused,
        lat_poll: latency.polling,
        lat_slow: latency.slow,
        slow_api: p.slow_api,
        startup_samples: healthy.len(),
        startup_healthy: median_duration(healthy),
        startup_metrics: median_duration(metrics),
        check_big,
        check_trivial,
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// Ends the run: `main` catches the panic and ends every child process.
fn fail(msg: impl std::fmt::Display) -> ! {
    panic!("{msg}")
}

fn main() {
    let params = Params::from_env_and_args();
    install_signal_cleanup();
    let outcome = std::panic::catch_unwind(|| run(&params));
    kill_all_children();
    remove_temp_dir();
    if outcome.is_err() {
        eprintln!("bench: failed");
        std::process::exit(101);
    }
}

fn run(p: &Params) {
    let exe = build_exporter(p);
    let dir = tempfile::Builder::new()
        .prefix("hss-bench-")
        .tempdir()
        .unwrap_or_else(|e| fail(format!("cannot create a scratch directory: {e}")));
    let _ = TEMP_DIR.set(dir.path().to_path_buf());
    let runtime = |name: &str, threads: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail(format!("cannot start a runtime: {e}")))
    };
    let ctx = Ctx {
        exe,
        dir: dir.path().to_path_buf(),
        sim_rt: runtime("sim", 2),
        client_rt: runtime("client", p.threads),
        loadgen: LoadGen::pick(p.loadgen),
    };
    let machine = machine_description();
    eprintln!("bench: {machine}");
    eprintln!("bench: exporter {}", ctx.exe.display());
    eprintln!("bench: load generator: {}", ctx.loadgen.describe(p));
    let started = Instant::now();
    if p.realistic_only {
        for &case in &p.targets {
            let w = Workload::start(case, p, &ctx);
            let r = w.realistic(p, &ctx);
            w.stop(&ctx);
            if let Some(r) = r {
                println!(
                    "{} targets, {} registries: {:.3} ms CPU per poll at a realistic rate ({:.0} polls, {:.1}/s)",
                    case.n,
                    case.registries,
                    r.cpu_per_poll * 1e3,
                    r.polls,
                    r.rate
                );
            }
        }
        return;
    }
    let mut reports = Vec::new();
    for &case in &p.targets {
        reports.push(bench_targets(case, p, &ctx));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### `cargo bench --bench exporter`: hss-exporter{}\n",
        git_revision(env!("CARGO_MANIFEST_DIR"))
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    for r in &reports {
        out.push_str(&render(r));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Machine: {machine}. Load generator: {}; {} run{} alternating exporter and static server, medians. Exporter, static server, load generator and simulated API share the machine; polling goes on at the configured rate throughout, load runs included. Whole run {:.0} s.",
        ctx.loadgen.describe(p),
        p.runs,
        if p.runs == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64()
    );
    print!("{out}");
    let _ = std::io::stdout().flush();
    if let Some(path) = &p.out {
        if let Err(e) = std::fs::write(path, &out) {
            eprintln!("bench: cannot write {}: {e}", path.display());
        }
    }
    drop(ctx);
    drop(dir);
}
