//! The polling workload: the simulated accounts and the exporter's configuration for them, the
//! simulated API with values changing, and the phases in which the exporter only polls:
//! filling every target, the soak (CPU per poll, memory), and the conditions of the latency
//! measurements (polling, polling paused, slow API).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hss_exporter::model::{Registry, RegistryStatus, RegistryType};
use hss_exporter::sim::{Fault, FaultRule, Sim, SimServer};
use rand::Rng;

use crate::client::{accounts_with_code, lines_starting};
use crate::exporter::Exporter;
use crate::loadgen::{measure_latency, Latency};
use crate::processes::{cpu_seconds, rss};
use crate::report::mib;
use crate::{fail, Case, Ctx, Params};

/// Replicas scrape this often during the second part of the soak (alternating plain and gzip).
pub const SCRAPE_EVERY: Duration = Duration::from_millis(7500);
const REGIONS: [&str; 10] = [
    "cn-north-4",
    "cn-east-3",
    "cn-south-1",
    "ap-southeast-1",
    "ap-southeast-3",
    "eu-west-101",
    "af-south-1",
    "la-north-2",
    "cn-north-1",
    "ap-southeast-2",
];

// ---------------------------------------------------------------------------------------------
// Simulated accounts and the configuration

struct AccountSpec {
    name: String,
    region: &'static str,
    ak: String,
    sk: String,
    ak_env: String,
    sk_env: String,
    projects: Vec<(String, Vec<RegistryType>)>,
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `n` targets over `accounts` accounts: projects of six registry types each, the last
/// project of an account taking the remainder.
fn layout(n: usize, accounts: usize) -> Vec<AccountSpec> {
    let accounts = accounts.min(n).max(1);
    (0..accounts)
        .map(|a| {
            let mut left = n / accounts + usize::from(a < n % accounts);
            let mut projects = Vec::new();
            let mut p = 0u64;
            while left > 0 {
                let k = left.min(RegistryType::ALL.len());
                let seed = ((n as u64) << 32) ^ ((a as u64) << 20) ^ p;
                let id = format!("{:016x}{:016x}", mix(seed), mix(seed ^ 0xa5a5));
                projects.push((id, RegistryType::ALL[..k].to_vec()));
                left -= k;
                p += 1;
            }
            AccountSpec {
                name: format!("acct{a:02}"),
                region: REGIONS[a % REGIONS.len()],
                ak: format!("BENCHAK{a:013}"),
                sk: format!("benchsecret{:029x}", mix(a as u64 + 7)),
                ak_env: format!("HSS_BENCH_AK_{a}"),
                sk_env: format!("HSS_BENCH_SK_{a}"),
                projects,
            }
        })
        .collect()
}

fn targets_of(accounts: &[AccountSpec]) -> Vec<(String, RegistryType)> {
    accounts
        .iter()
        .flat_map(|a| &a.projects)
        .flat_map(|(id, types)| types.iter().map(move |t| (id.clone(), *t)))
        .collect()
}

/// The registries listed in detail for account `a`'s first project: every tenth fails.
fn registries_of(a: usize, count: usize) -> Vec<Registry> {
    (0..count)
        .map(|i| {
            let failing = i % 10 == 0;
            Registry {
                id: format!(
                    "{a:02}{i:06}-{:08x}",
                    mix((a * 1_000_000 + i) as u64) as u32
                ),
                name: format!("registry-{a}-{i}"),
                registry_type: RegistryType::ALL[i % RegistryType::ALL.len()]
                    .as_str()
                    .into(),
                addr: format!("registry-{a}-{i}.example.com"),
                connect_cluster_id: format!("cluster-{}", i % 4),
                status: Some(if failing {
                    RegistryStatus::Fail
                } else {
                    RegistryStatus::Success
                }),
                fail_reason: if failing {
                    "REQUEST_API_ERROR".into()
                } else {
                    String::new()
                },
                images_num: Some((i % 97) as u64),
                latest_sync_time_ms: Some(1_764_000_000_000 + i as i64 * 1000),
            }
        })
        .collect()
}

/// `registries` spread over the accounts: how many account `a` lists.
fn registries_for(a: usize, accounts: usize, registries: usize) -> usize {
    registries / accounts + usize::from(a < registries % accounts)
}

fn config_yaml(
    accounts: &[AccountSpec],
    endpoint: &str,
    interval: Duration,
    rate: u32,
    registries: usize,
) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "web:\n  listen_address: \"127.0.0.1:0\"");
    let _ = writeln!(
        y,
        "poll:\n  interval: {}\n  timeout: 5s\n  stale_after: 30m",
        humantime::format_duration(interval)
    );
    y.push_str("accounts:\n");
    for a in accounts {
        let _ = writeln!(
            y,
            "  - name: \"{}\"\n    region: \"{}\"\n    endpoint: \"{endpoint}\"\n    rate_limit_per_minute: {rate}\n    auth:\n      ak_sk:\n        access_key_env: {}\n        secret_key_env: {}\n    projects:",
            a.name, a.region, a.ak_env, a.sk_env
        );
        let index = accounts.iter().position(|x| x.name == a.name).unwrap_or(0);
        for (k, (id, types)) in a.projects.iter().enumerate() {
            let list: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
            let _ = writeln!(
                y,
                "      - project_id: \"{id}\"\n        registry_types: [{}]",
                list.join(", ")
            );
            if k == 0 && registries_for(index, accounts.len(), registries) > 0 {
                y.push_str("        registries: true\n");
            }
        }
    }
    y
}

fn secret_env(accounts: &[AccountSpec]) -> Vec<(String, String)> {
    accounts
        .iter()
        .flat_map(|a| {
            [
                (a.ak_env.clone(), a.ak.clone()),
                (a.sk_env.clone(), a.sk.clone()),
            ]
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The simulated API and the configurations of one target count

/// The simulated API, values changing, and the configurations that point the exporter at it.
pub struct Workload {
    accounts: Vec<AccountSpec>,
    case: Case,
    pub rate: u32,
    sim: Sim,
    server: SimServer,
    stop_changes: Arc<AtomicBool>,
    /// The configuration for every target, and the secrets it reads from the environment.
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
    /// A configuration of one target, for the baseline of `check-config`.
    pub trivial: PathBuf,
    pub trivial_env: Vec<(String, String)>,
}

impl Workload {
    /// Starts the simulated API for `n` targets and writes the configurations.
    pub fn start(case: Case, p: &Params, ctx: &Ctx) -> Workload {
        let n = case.n;
        let accounts = layout(n, p.accounts);
        let targets = Arc::new(targets_of(&accounts));
        assert_eq!(targets.len(), n);
        let per_account = n.div_ceil(accounts.len());
        let needed_per_minute =
            (per_account as f64 * 60.0 / p.interval.as_secs_f64()).ceil() as u32;
        let rate = p.rate_limit.unwrap_or((needed_per_minute * 2).max(60));
        eprintln!(
            "bench: == {n} targets, {} registries, {} accounts, poll.interval {}, rate_limit_per_minute {rate} ==",
            case.registries,
            accounts.len(),
            humantime::format_duration(p.interval)
        );

        // The simulated API.
        let sim = Sim::new();
        sim.set_logging(false);
        sim.set_rate_limit(None);
        {
            let mut rng = rand::thread_rng();
            for a in &accounts {
                sim.add_access_key(&a.ak, &a.sk);
            }
            for (project, t) in targets.iter() {
                sim.set_stats(project, None, *t, rng.gen_range(0..3), rng.gen_range(0..50));
            }
            for (i, a) in accounts.iter().enumerate() {
                let count = registries_for(i, accounts.len(), case.registries);
                if count > 0 {
                    sim.set_registries(&a.projects[0].0, None, registries_of(i, count));
                }
            }
        }
        let server: SimServer = ctx
            .sim_rt
            .block_on(sim.start(([127, 0, 0, 1], 0).into()))
            .unwrap_or_else(|e| fail(format!("cannot start the simulated API: {e}")));
        let stop_changes = Arc::new(AtomicBool::new(false));
        {
            let (sim, targets, stop) = (sim.clone(), targets.clone(), stop_changes.clone());
            ctx.sim_rt.spawn(async move {
                // About 5% of the targets get new values every second.
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let mut rng = rand::thread_rng();
                    for _ in 0..(targets.len() / 20).max(1) {
                        let (project, t) = &targets[rng.gen_range(0..targets.len())];
                        sim.set_stats(project, None, *t, rng.gen_range(0..3), rng.gen_range(0..50));
                    }
                }
            });
        }

        // Configurations.
        let env = secret_env(&accounts);
        let config = ctx.dir.join(format!("config-{n}.yaml"));
        std::fs::write(
            &config,
            config_yaml(&accounts, &server.url(), p.interval, rate, case.registries),
        )
        .unwrap_or_else(|e| fail(format!("cannot write the config: {e}")));
        let trivial_accounts = layout(1, 1);
        let trivial = ctx.dir.join("config-trivial.yaml");
        std::fs::write(
            &trivial,
            config_yaml(&trivial_accounts, &server.url(), p.interval, 60, 0),
        )
        .unwrap_or_else(|e| fail(format!("cannot write the config: {e}")));
        Workload {
            accounts,
            case,
            rate,
            sim,
            server,
            stop_changes,
            config,
            env,
            trivial,
            trivial_env: secret_env(&trivial_accounts),
        }
    }

    /// How many accounts the targets are spread over.
    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }

    /// Scrape latency while polling, with polling paused (every account answered 429 +
    /// Retry-After), and with a slow API.
    pub fn latencies(&self, exporter: &Exporter, p: &Params, ctx: &Ctx) -> Latencies {
        let (sim, accounts) = (&self.sim, &self.accounts);
        eprintln!("bench: scrape latency while polling");
        let lat_poll = measure_latency(&ctx.client_rt, exporter, p.duration);
        eprintln!(
            "bench: scrape latency with polling paused (every account answered 429 + Retry-After)"
        );
        let hold = p.duration + Duration::from_secs(4);
        sim.add_fault(
            FaultRule::always(Fault::Throttle {
                retry_after: Some(hold.as_secs()),
            })
            .times(accounts.len() as u32),
        );
        let throttled_from = Instant::now();
        loop {
            let (_, body) = exporter.scrape(&ctx.client_rt, false);
            if accounts_with_code(&body, "429") >= accounts.len()
                || throttled_from.elapsed() > Duration::from_secs(3)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        sim.clear_faults();
        let lat_idle = measure_latency(&ctx.client_rt, exporter, p.duration);
        // Let the paused accounts resume and catch up before the next phase.
        let resume = throttled_from + hold + Duration::from_secs(3);
        std::thread::sleep(resume.saturating_duration_since(Instant::now()));
        eprintln!(
            "bench: scrape latency with a slow API (+{} per call)",
            humantime::format_duration(p.slow_api)
        );
        sim.add_fault(FaultRule::always(Fault::Delay(p.slow_api)));
        std::thread::sleep(p.slow_api + Duration::from_millis(200));
        let lat_slow = measure_latency(&ctx.client_rt, exporter, p.duration);
        sim.clear_faults();
        std::thread::sleep(p.slow_api + Duration::from_secs(1));
        Latencies {
            polling: lat_poll,
            paused: lat_idle,
            slow: lat_slow,
        }
    }

    /// Stops the value changes, then the simulated API (the exporters are stopped).
    pub fn stop(self, ctx: &Ctx) {
        self.stop_changes.store(true, Ordering::Relaxed);
        ctx.sim_rt.block_on(self.server.shutdown());
    }

    /// CPU per poll at a realistic rate, on an exporter of its own: every target polled once
    /// per `p.realistic_interval`, each account allowed just what that takes, so that after
    /// the first minute's burst the polls go at that rate; a scrape every `SCRAPE_EVERY`,
    /// asking for gzip and keeping its connection open as Prometheus (and every other
    /// scraper that accepts it) always does, so that the figure is what the exporter costs
    /// in service. `None` when skipped.
    pub fn realistic(&self, p: &Params, ctx: &Ctx) -> Option<Realistic> {
        let interval = p.realistic_interval;
        if interval.is_zero() {
            return None;
        }
        let per_account = self.case.n.div_ceil(self.accounts.len());
        let pages = self
            .case
            .registries
            .div_ceil(self.accounts.len())
            .div_ceil(200);
        let rate = (((per_account + pages) as f64) * 60.0 / interval.as_secs_f64()).ceil() as u32;
        let config = self
            .config
            .with_file_name(format!("config-{}-realistic.yaml", self.case.n));
        std::fs::write(
            &config,
            config_yaml(
                &self.accounts,
                &self.server.url(),
                interval,
                rate.max(1),
                self.case.registries,
            ),
        )
        .unwrap_or_else(|e| fail(format!("cannot write the config: {e}")));
        let planned = (self.case.n as f64 + self.case.registries.div_ceil(200) as f64)
            / interval.as_secs_f64();
        eprintln!(
            "bench: realistic rate: poll.interval {}, {rate} calls/min per account ({planned:.1} polls/s); 65 s for the first burst, then {} measured",
            humantime::format_duration(interval),
            humantime::format_duration(p.realistic_window)
        );
        let exporter = Exporter::spawn(
            &ctx.exe,
            &config,
            &self.env,
            &ctx.dir,
            &format!("{}-realistic", self.case.n),
        );
        exporter.wait_serving();
        std::thread::sleep(Duration::from_secs(65));
        let polls0 = exporter.polls(&ctx.client_rt);
        let cpu0 = exporter.cpu();
        let t0 = Instant::now();
        let mut scraper = exporter.keep_alive();
        while t0.elapsed() < p.realistic_window {
            std::thread::sleep(SCRAPE_EVERY.min(p.realistic_window.saturating_sub(t0.elapsed())));
            scraper.scrape(&ctx.client_rt, &exporter, true);
        }
        let cpu1 = exporter.cpu();
        let polls1 = exporter.polls(&ctx.client_rt);
        let elapsed = t0.elapsed();
        let polls = polls1 - polls0;
        let r = Realistic {
            interval,
            window: elapsed,
            polls,
            rate: polls / elapsed.as_secs_f64(),
            planned,
            cpu_per_poll: (cpu1 - cpu0) / polls,
        };
        eprintln!(
            "bench:   {polls} polls, {:.1}/s, {:.3} ms CPU per poll",
            r.rate,
            r.cpu_per_poll * 1e3
        );
        Some(r)
    }
}

/// What the realistic-rate phase measured.
pub struct Realistic {
    pub interval: Duration,
    pub window: Duration,
    pub polls: f64,
    pub rate: f64,
    pub planned: f64,
    pub cpu_per_poll: f64,
}

/// Scrape latency under each condition.
pub struct Latencies {
    pub polling: Latency,
    pub paused: Latency,
    pub slow: Latency,
}

// ---------------------------------------------------------------------------------------------
// Fill and soak

/// Waits until every one of the `n` targets has a value: the time from spawn, or how many had
/// one when the wait gave up.
pub fn fill(
    exporter: &Exporter,
    case: Case,
    p: &Params,
    ctx: &Ctx,
) -> Result<Duration, (usize, Duration)> {
    let n = case.n;
    let fill_limit = p.interval * 3 + Duration::from_secs(60);
    let mut last_report = Instant::now();
    let fill = loop {
        let (_, body) = exporter.scrape(&ctx.client_rt, false);
        let have = lines_starting(&body, "hss_registry_access_success{");
        let listed = lines_starting(&body, "hss_registry_info{");
        let elapsed = exporter.spawned.elapsed();
        if have >= n && listed >= case.registries {
            break Ok(elapsed);
        }
        if elapsed > fill_limit {
            eprintln!("bench: only {have} of {n} targets have a value after {elapsed:?}; going on");
            break Err((have, elapsed));
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "bench:   {have} of {n} after {:.1} s",
                elapsed.as_secs_f64()
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if let Ok(d) = fill {
        eprintln!("bench:   all {n} after {:.2} s", d.as_secs_f64());
    }
    fill
}

/// What the soak measured.
pub struct Soak {
    pub rss_fill: u64,
    pub quiet: Duration,
    pub quiet_polls: f64,
    pub cpu_per_poll: f64,
    pub poll_rate: f64,
    pub sim_cpu_per_request: f64,
    pub scraped: Duration,
    pub cpu_per_poll_scraped: f64,
    pub rss_end: u64,
    pub rss_min: u64,
    pub rss_max: u64,
}

/// Polling for `p.soak` once every target is in: first without scrapes (CPU per poll), then
/// with two replicas scraping; resident memory sampled throughout.
pub fn soak(exporter: &Exporter, p: &Params, ctx: &Ctx) -> Soak {
    // The first round goes as fast as the budget allows; targets settle on their place in
    // the spread schedule over the next interval or so. Measure the steady state.
    let settle = (p.interval * 3 / 2).max(Duration::from_secs(1));
    eprintln!(
        "bench: {} for the schedule to settle after the first round",
        humantime::format_duration(settle)
    );
    std::thread::sleep(settle);
    // The fill scraped plain text; Prometheus asks for gzip. One gzip scrape makes the
    // exporter hold what it holds while serving Prometheus (the compressed form of the body),
    // so the soak measures drift, not that one-time step.
    exporter.scrape(&ctx.client_rt, true);
    let pid = exporter.pid();
    let rss_fill = rss(pid);
    let mut rss_samples = vec![rss_fill];

    let quiet = (p.soak / 2).clamp(Duration::from_secs(10), Duration::from_secs(60));
    let scraped = p.soak.saturating_sub(quiet);
    eprintln!(
        "bench: soak: {} of polling without scrapes, then {} with scrapes every {} (alternating plain/gzip)",
        humantime::format_duration(quiet),
        humantime::format_duration(scraped),
        humantime::format_duration(SCRAPE_EVERY)
    );
    let polls0 = exporter.polls(&ctx.client_rt);
    let cpu0 = exporter.cpu();
    let self0 = cpu_seconds("self").unwrap_or(f64::NAN);
    let t0 = Instant::now();
    sleep_sampling(pid, quiet, &mut rss_samples);
    let cpu1 = exporter.cpu();
    let self1 = cpu_seconds("self").unwrap_or(f64::NAN);
    let quiet_elapsed = t0.elapsed();
    let polls1 = exporter.polls(&ctx.client_rt);
    let quiet_polls = polls1 - polls0;
    let cpu_per_poll = (cpu1 - cpu0) / quiet_polls;
    let poll_rate = quiet_polls / quiet_elapsed.as_secs_f64();
    let sim_cpu_per_request = (self1 - self0) / quiet_polls;
    eprintln!(
        "bench:   {quiet_polls} polls, {:.1}/s, {:.3} ms CPU per poll",
        poll_rate,
        cpu_per_poll * 1e3
    );
    let cpu2 = exporter.cpu();
    let polls2 = polls1;
    let t2 = Instant::now();
    let mut gzip = false;
    let mut last_progress = Instant::now();
    while t2.elapsed() < scraped {
        let step = SCRAPE_EVERY.min(scraped.saturating_sub(t2.elapsed()));
        sleep_sampling(pid, step, &mut rss_samples);
        if t2.elapsed() < scraped {
            exporter.scrape(&ctx.client_rt, gzip);
            gzip = !gzip;
        }
        if last_progress.elapsed() >= Duration::from_secs(60) {
            eprintln!(
                "bench:   soak {:.0} s of {:.0} s, RSS {}",
                t2.elapsed().as_secs_f64(),
                scraped.as_secs_f64(),
                mib(rss(pid))
            );
            last_progress = Instant::now();
        }
    }
    let cpu3 = exporter.cpu();
    let polls3 = exporter.polls(&ctx.client_rt);
    let cpu_per_poll_scraped = if scraped.is_zero() {
        f64::NAN
    } else {
        (cpu3 - cpu2) / (polls3 - polls2)
    };
    let rss_end = rss(pid);
    rss_samples.push(rss_end);
    let rss_min = rss_samples.iter().copied().min().unwrap_or(0);
    let rss_max = rss_samples.iter().copied().max().unwrap_or(0);
    eprintln!(
        "bench:   RSS after fill {}, after soak {} (min {}, max {})",
        mib(rss_fill),
        mib(rss_end),
        mib(rss_min),
        mib(rss_max)
    );
    Soak {
        rss_fill,
        quiet: quiet_elapsed,
        quiet_polls,
        cpu_per_poll,
        poll_rate,
        sim_cpu_per_request,
        scraped,
        cpu_per_poll_scraped,
        rss_end,
        rss_min,
        rss_max,
    }
}

fn sleep_sampling(pid: u32, d: Duration, samples: &mut Vec<u64>) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::thread::sleep((until - Instant::now()).min(Duration::from_secs(5)));
        samples.push(rss(pid));
    }
}
