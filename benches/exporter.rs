//! End-to-end benchmark: the release-built exporter polling the simulated HSS API.
//!
//! `cargo bench --bench exporter` builds `hss-exporter` in release mode, then for each target
//! count starts the simulated API (several accounts, no API rate limit, values changing) and
//! the exporter against it, and measures:
//!
//! - start-up to serving, and how long `check-config` takes on the big configuration;
//! - the time until every target has a value;
//! - CPU per poll (process CPU from /proc divided by API requests made);
//! - resident memory once every target is in, and after a soak of further polling;
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
//! | `HSS_BENCH_TARGETS` | `1000,10000` | target counts, comma-separated |
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
//! | `HSS_BENCH_EXPORTER` | build it | path to an `hss-exporter` binary; skips the build |
//! | `HSS_BENCH_OUT` | none | also write the Markdown report to this file |

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hss_exporter::model::RegistryType;
use hss_exporter::sim::{Fault, FaultRule, Sim, SimServer};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// The targets.
const MAX_CPU_PER_POLL: f64 = 0.2e-3;
const MAX_RSS: u64 = 32 * 1024 * 1024;
const RSS_FLATNESS: f64 = 0.10;
const MIN_THROUGHPUT_RATIO: f64 = 0.8;
const MAX_P99_RATIO: f64 = 2.0;
const MAX_STARTUP: Duration = Duration::from_millis(50);
const MAX_CONFIG_LOAD: Duration = Duration::from_millis(100);
/// "Does not rise": the p99 under a condition may exceed the paused p99 by this factor, or by
/// `LATENCY_SLACK_US` when that is more (sub-millisecond scheduling noise on a busy machine).
const LATENCY_TOLERANCE: f64 = 1.5;
const LATENCY_SLACK_US: f64 = 1000.0;
/// Pause between two scrapes of the latency probe.
const PROBE_GAP: Duration = Duration::from_millis(10);
/// Replicas scrape this often during the second part of the soak (alternating plain and gzip).
const SCRAPE_EVERY: Duration = Duration::from_millis(7500);
const STARTUP_SAMPLES: usize = 5;
const CHECK_CONFIG_SAMPLES: usize = 5;
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
// Settings

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LoadGenChoice {
    Auto,
    Wrk,
    Rust,
}

#[derive(Clone, Debug)]
struct Params {
    targets: Vec<usize>,
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
                    println!("{}", HELP);
                    std::process::exit(0);
                }
                other => eprintln!("bench: ignoring argument {other:?}"),
            }
        }
        let (soak, runs, duration) = if quick {
            (Duration::from_secs(30), 1, Duration::from_secs(5))
        } else {
            (Duration::from_secs(600), 3, Duration::from_secs(10))
        };
        let targets = std::env::var("HSS_BENCH_TARGETS")
            .unwrap_or_else(|_| "1000,10000".into())
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .replace('_', "")
                    .parse::<usize>()
                    .unwrap_or_else(|_| {
                        eprintln!("bench: HSS_BENCH_TARGETS: {s:?} is not a number");
                        std::process::exit(2)
                    })
            })
            .filter(|&n| n > 0)
            .collect::<Vec<_>>();
        let loadgen = match std::env::var("HSS_BENCH_LOADGEN").as_deref() {
            Ok("wrk") => LoadGenChoice::Wrk,
            Ok("rust") => LoadGenChoice::Rust,
            Ok("auto") | Ok("") | Err(_) => LoadGenChoice::Auto,
            Ok(other) => {
                eprintln!("bench: HSS_BENCH_LOADGEN={other:?}: expected wrk, rust or auto");
                std::process::exit(2)
            }
        };
        let rate_limit = match std::env::var("HSS_BENCH_RATE_LIMIT") {
            Ok(v) if !v.trim().is_empty() => Some(env_parse("HSS_BENCH_RATE_LIMIT", 0u32)),
            _ => None,
        };
        Params {
            targets,
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

Environment: HSS_BENCH_TARGETS (1000,10000), HSS_BENCH_ACCOUNTS (10), HSS_BENCH_INTERVAL (10s),
HSS_BENCH_SOAK (10m), HSS_BENCH_RUNS (3), HSS_BENCH_DURATION (10s), HSS_BENCH_CONNECTIONS (16),
HSS_BENCH_THREADS (2), HSS_BENCH_LOADGEN (auto|wrk|rust), HSS_BENCH_SLOW_API (1s),
HSS_BENCH_RATE_LIMIT, HSS_BENCH_EXPORTER (binary; skips the build), HSS_BENCH_OUT (file).";

// ---------------------------------------------------------------------------------------------
// Child processes: every one is registered so that any exit path can end it.

static CHILDREN: Mutex<Vec<(u32, Child)>> = Mutex::new(Vec::new());
static TEMP_DIR: OnceLock<PathBuf> = OnceLock::new();

fn children() -> MutexGuard<'static, Vec<(u32, Child)>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child process that is killed when this guard goes away.
struct Proc {
    pid: u32,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> std::io::Result<Proc> {
        // Held while spawning, so that a signal arriving now still finds the child.
        let mut list = children();
        let child = cmd.spawn()?;
        let pid = child.id();
        list.push((pid, child));
        Ok(Proc { pid })
    }

    fn try_wait(&self) -> Option<ExitStatus> {
        children()
            .iter_mut()
            .find(|(p, _)| *p == self.pid)
            .and_then(|(_, c)| c.try_wait().ok().flatten())
    }

    fn wait_timeout(&self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let taken = {
            let mut list = children();
            list.iter()
                .position(|(p, _)| *p == self.pid)
                .map(|i| list.swap_remove(i))
        };
        if let Some((_, mut child)) = taken {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn kill_all_children() {
    let all: Vec<(u32, Child)> = children().drain(..).collect();
    for (_, mut child) in all {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn remove_temp_dir() {
    if let Some(dir) = TEMP_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: end every child, remove the scratch directory, exit.
fn install_signal_cleanup() {
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let got = rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let mut int = signal(SignalKind::interrupt()).ok()?;
                let mut term = signal(SignalKind::terminate()).ok()?;
                let mut hup = signal(SignalKind::hangup()).ok()?;
                tokio::select! {
                    _ = int.recv() => Some("SIGINT"),
                    _ = term.recv() => Some("SIGTERM"),
                    _ = hup.recv() => Some("SIGHUP"),
                }
            });
            if let Some(name) = got {
                eprintln!("bench: {name}: stopping child processes");
                kill_all_children();
                remove_temp_dir();
                std::process::exit(130);
            }
        });
    if let Err(e) = spawned {
        eprintln!("bench: cannot watch for signals: {e}");
    }
}

fn fail(msg: impl std::fmt::Display) -> ! {
    panic!("{msg}")
}

// ---------------------------------------------------------------------------------------------
// The machine and /proc

fn nproc() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Hardware"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "nproc {}, {model}, {:.1} GiB RAM, Linux {kernel}",
        nproc(),
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|&t| t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds of a process (`self` for this one).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// (VmRSS, VmHWM) in bytes.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn rss(pid: u32) -> u64 {
    memory(pid).map(|m| m.0).unwrap_or(0)
}

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

fn config_yaml(accounts: &[AccountSpec], endpoint: &str, interval: Duration, rate: u32) -> String {
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
        for (id, types) in &a.projects {
            let list: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
            let _ = writeln!(
                y,
                "      - project_id: \"{id}\"\n        registry_types: [{}]",
                list.join(", ")
            );
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

fn exporter_command(exe: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(exe);
    for (k, _) in std::env::vars() {
        if k.starts_with("HSS_EXPORTER__") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.stdin(Stdio::null());
    cmd
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (keep-alive, Content-Length or chunked bodies)

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    close: bool,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request_bytes(path: &str, gzip: bool) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: hss-bench\r\n");
    if gzip {
        r.push_str("Accept-Encoding: gzip\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

struct Conn {
    r: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::with_capacity(256 * 1024, s),
            line: Vec::with_capacity(256),
        })
    }

    async fn read_line(&mut self) -> std::io::Result<&str> {
        self.line.clear();
        if self.r.read_until(b'\n', &mut self.line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        std::str::from_utf8(&self.line)
            .map(|s| s.trim_end_matches(['\r', '\n']))
            .map_err(|_| invalid("header is not UTF-8"))
    }

    /// Reads `n` body bytes into `keep`, or discards them.
    async fn body_part(&mut self, n: u64, keep: &mut Option<&mut Vec<u8>>) -> std::io::Result<u64> {
        let mut part = (&mut self.r).take(n);
        let got = match keep {
            Some(buf) => part.read_to_end(buf).await? as u64,
            None => tokio::io::copy_buf(&mut part, &mut tokio::io::sink()).await?,
        };
        if got != n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(got)
    }

    /// Sends `request` and reads the answer; returns its head and body length.
    async fn exchange(
        &mut self,
        request: &[u8],
        mut keep: Option<&mut Vec<u8>>,
    ) -> std::io::Result<(Head, u64)> {
        self.r.get_mut().write_all(request).await?;
        let status_line = self.read_line().await?.to_string();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let mut headers = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut head = Head {
            status,
            headers,
            close: false,
        };
        head.close = head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || status_line.starts_with("HTTP/1.0");
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = head
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        let mut total = 0u64;
        if chunked {
            loop {
                let size_line = self.read_line().await?;
                let size =
                    u64::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| invalid("bad chunk size"))?;
                if size == 0 {
                    while !self.read_line().await?.is_empty() {}
                    break;
                }
                total += self.body_part(size, &mut keep).await?;
                self.read_line().await?;
            }
        } else if let Some(n) = length {
            total = self.body_part(n, &mut keep).await?;
        } else {
            let mut sink = Vec::new();
            let buf = keep.unwrap_or(&mut sink);
            total = self.r.read_to_end(buf).await? as u64;
            head.close = true;
        }
        Ok((head, total))
    }
}

/// One GET on a new connection, keeping the body.
fn fetch(
    rt: &Runtime,
    addr: SocketAddr,
    path: &str,
    gzip: bool,
) -> std::io::Result<(Head, Vec<u8>)> {
    rt.block_on(async {
        let work = async {
            let mut c = Conn::open(addr).await?;
            let mut body = Vec::new();
            let (head, _) = c
                .exchange(&request_bytes(path, gzip), Some(&mut body))
                .await?;
            Ok((head, body))
        };
        tokio::time::timeout(Duration::from_secs(30), work)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    })
}

/// Blocking probe for the start-up measurement: the status of `GET path`, or `None`.
fn probe(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.set_nodelay(true).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let head = std::str::from_utf8(&out[..out.len().min(64)]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| fail(format!("cannot find a free port: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Reading the exposition

fn lines_starting(body: &[u8], prefix: &str) -> usize {
    body.split(|&b| b == b'\n')
        .filter(|l| l.starts_with(prefix.as_bytes()))
        .count()
}

/// Sum of every sample of `name` (with labels).
fn sum_samples(body: &[u8], name: &str) -> f64 {
    let prefix = format!("{name}{{");
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many accounts have seen at least one answer with this code.
fn accounts_with_code(body: &[u8], code: &str) -> usize {
    let needle = format!("code=\"{code}\"");
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| l.starts_with("hss_exporter_api_requests_total{") && l.contains(&needle))
        .filter(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// The exporter process

struct Exporter {
    proc: Proc,
    addr: SocketAddr,
    spawned: Instant,
    log: PathBuf,
}

impl Exporter {
    fn spawn(
        exe: &Path,
        config: &Path,
        env: &[(String, String)],
        dir: &Path,
        tag: &str,
    ) -> Exporter {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = dir.join(format!("exporter-{tag}.log"));
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| fail(format!("cannot create {}: {e}", log.display())));
        let err = file
            .try_clone()
            .unwrap_or_else(|e| fail(format!("cannot reopen {}: {e}", log.display())));
        let mut cmd = exporter_command(exe, env);
        cmd.arg("--config")
            .arg(config)
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .arg("--log.level")
            .arg("warn")
            .stdout(file)
            .stderr(err);
        let spawned = Instant::now();
        let proc = Proc::spawn(&mut cmd)
            .unwrap_or_else(|e| fail(format!("cannot start {}: {e}", exe.display())));
        Exporter {
            proc,
            addr,
            spawned,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.proc.pid
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn check_alive(&self) {
        if let Some(status) = self.proc.try_wait() {
            fail(format!(
                "the exporter exited ({status}); its log ends with:\n{}",
                self.log_tail()
            ));
        }
    }

    /// Times from spawn to the first 200 from `/-/healthy`, then from `/metrics`.
    fn wait_serving(&self) -> (Duration, Duration) {
        let give_up = self.spawned + Duration::from_secs(20);
        let healthy = loop {
            if probe(self.addr, "/-/healthy") == Some(200) {
                break self.spawned.elapsed();
            }
            self.check_alive();
            if Instant::now() > give_up {
                fail(format!(
                    "the exporter did not answer /-/healthy within 20 s:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let metrics = loop {
            if probe(self.addr, "/metrics") == Some(200) {
                break self.spawned.elapsed();
            }
            self.check_alive();
            if Instant::now() > give_up {
                fail("the exporter did not answer /metrics with 200 within 20 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        (healthy, metrics)
    }

    fn scrape(&self, rt: &Runtime, gzip: bool) -> (Head, Vec<u8>) {
        match fetch(rt, self.addr, "/metrics", gzip) {
            Ok((head, body)) if head.status == 200 => (head, body),
            Ok((head, _)) => fail(format!("/metrics answered {}", head.status)),
            Err(e) => {
                self.check_alive();
                fail(format!("/metrics: {e}"))
            }
        }
    }

    /// API requests made so far (polls, retries included).
    fn polls(&self, rt: &Runtime) -> f64 {
        sum_samples(&self.scrape(rt, false).1, "hss_exporter_api_requests_total")
    }

    fn cpu(&self) -> f64 {
        cpu_seconds(&self.pid().to_string()).unwrap_or(f64::NAN)
    }
}

// ---------------------------------------------------------------------------------------------
// The static server: the same bytes, no work per request

#[derive(Clone)]
struct Variant {
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Variant {
    fn from_answer(head: &Head, body: Vec<u8>) -> Variant {
        let headers = head
            .headers
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "content-type" | "content-encoding" | "vary"))
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        Variant {
            headers,
            body: Bytes::from(body),
        }
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(self.body.clone()));
        for (k, v) in &self.headers {
            r.headers_mut().insert(k.clone(), v.clone());
        }
        r
    }
}

struct StaticServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StaticServer {
    /// Serves `gzip` to requests that accept gzip and `plain` to the others, on its own
    /// runtime with `threads` workers (one per core: at least as many as the exporter's).
    fn start(plain: Variant, gzip: Variant, threads: usize) -> StaticServer {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("static-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("static")
                    .enable_all()
                    .build()
                    .expect("static server runtime");
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = addr_tx.send(listener.local_addr());
                    let (plain, gzip) = (Arc::new(plain), Arc::new(gzip));
                    tokio::pin!(stopped);
                    loop {
                        let stream = tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => match accepted {
                                Ok((s, _)) => s,
                                Err(_) => continue,
                            },
                        };
                        let (plain, gzip) = (plain.clone(), gzip.clone());
                        let service = service_fn(move |req: Request<Incoming>| {
                            let accepts_gzip = req
                                .headers()
                                .get(http::header::ACCEPT_ENCODING)
                                .and_then(|v| v.to_str().ok())
                                .is_some_and(|v| v.contains("gzip"));
                            let r = if accepts_gzip {
                                gzip.response()
                            } else {
                                plain.response()
                            };
                            async move { Ok::<_, Infallible>(r) }
                        });
                        tokio::spawn(async move {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .unwrap_or_else(|e| fail(format!("cannot start the static server thread: {e}")));
        let addr = addr_rx
            .recv()
            .unwrap_or_else(|_| fail("the static server thread died"))
            .unwrap_or_else(|e| fail(format!("static server cannot listen: {e}")));
        StaticServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load generation

#[derive(Clone)]
enum LoadGen {
    Wrk(String),
    Rust,
}

impl LoadGen {
    fn pick(choice: LoadGenChoice) -> LoadGen {
        let wrk = || {
            let out = Command::new("wrk")
                .arg("-v")
                .stdin(Stdio::null())
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            Some(text.lines().next().unwrap_or("wrk").trim().to_string())
        };
        match choice {
            LoadGenChoice::Rust => LoadGen::Rust,
            LoadGenChoice::Wrk => match wrk() {
                Some(v) => LoadGen::Wrk(v),
                None => fail("HSS_BENCH_LOADGEN=wrk but wrk cannot be run"),
            },
            LoadGenChoice::Auto => wrk().map(LoadGen::Wrk).unwrap_or(LoadGen::Rust),
        }
    }

    fn describe(&self, p: &Params) -> String {
        let how = format!(
            "{} threads, {} connections, {} per run",
            p.threads,
            p.connections,
            humantime::format_duration(p.duration)
        );
        match self {
            LoadGen::Wrk(v) => format!("{} ({how})", v.split(" [").next().unwrap_or(v)),
            LoadGen::Rust => format!("built-in Rust client ({how})"),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct LoadResult {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

fn run_load(
    gen: &LoadGen,
    rt: &Runtime,
    addr: SocketAddr,
    gzip: bool,
    p: &Params,
    dir: &Path,
) -> LoadResult {
    match gen {
        LoadGen::Wrk(_) => run_wrk(addr, gzip, p, dir),
        LoadGen::Rust => run_rust_load(rt, addr, gzip, p),
    }
}

fn parse_wrk_time_us(s: &str) -> Option<f64> {
    let s = s.trim();
    for (suffix, factor) in [
        ("us", 1.0),
        ("ms", 1e3),
        ("s", 1e6),
        ("m", 60e6),
        ("h", 3600e6),
    ] {
        if let Some(v) = s.strip_suffix(suffix) {
            if let Ok(x) = v.parse::<f64>() {
                return Some(x * factor);
            }
        }
    }
    None
}

fn parse_wrk(text: &str) -> Option<LoadResult> {
    let mut r = LoadResult::default();
    let mut rps = None;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            r.p50_us = parse_wrk_time_us(v).unwrap_or(f64::NAN);
        } else if let Some(v) = line.strip_prefix("99%") {
            r.p99_us = parse_wrk_time_us(v).unwrap_or(f64::NAN);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            r.errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    r.rps = rps?;
    Some(r)
}

fn run_wrk(addr: SocketAddr, gzip: bool, p: &Params, dir: &Path) -> LoadResult {
    let out_path = dir.join("wrk.out");
    let out = std::fs::File::create(&out_path).unwrap_or_else(|e| fail(format!("wrk output: {e}")));
    let secs = p.duration.as_secs_f64().ceil().max(1.0) as u64;
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", p.threads))
        .arg(format!("-c{}", p.connections))
        .arg(format!("-d{secs}s"))
        .arg("--timeout")
        .arg("10s")
        .arg("--latency");
    if gzip {
        cmd.arg("-H").arg("Accept-Encoding: gzip");
    }
    cmd.arg(format!("http://{addr}/metrics"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null());
    let proc = Proc::spawn(&mut cmd).unwrap_or_else(|e| fail(format!("cannot run wrk: {e}")));
    if proc.wait_timeout(Duration::from_secs(secs + 30)).is_none() {
        fail("wrk did not finish in time");
    }
    drop(proc);
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    parse_wrk(&text).unwrap_or_else(|| fail(format!("cannot read wrk's output:\n{text}")))
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1])
}

fn run_rust_load(rt: &Runtime, addr: SocketAddr, gzip: bool, p: &Params) -> LoadResult {
    let request: Arc<[u8]> = request_bytes("/metrics", gzip).into();
    let duration = p.duration;
    let connections = p.connections;
    let (mut latencies, errors) = rt.block_on(async move {
        let deadline = tokio::time::Instant::now() + duration;
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let request = request.clone();
                tokio::spawn(async move {
                    let mut lat: Vec<u32> = Vec::with_capacity(1024);
                    let mut errors = 0u64;
                    let mut conn: Option<Conn> = None;
                    while tokio::time::Instant::now() < deadline {
                        let c = match conn.as_mut() {
                            Some(c) => c,
                            None => match tokio::time::timeout_at(deadline, Conn::open(addr)).await
                            {
                                Ok(Ok(c)) => conn.insert(c),
                                Ok(Err(_)) => {
                                    errors += 1;
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                    continue;
                                }
                                Err(_) => break,
                            },
                        };
                        let started = Instant::now();
                        match tokio::time::timeout_at(deadline, c.exchange(&request, None)).await {
                            Err(_) => break,
                            Ok(Ok((head, _))) => {
                                if head.status == 200 {
                                    let us = started.elapsed().as_micros();
                                    lat.push(u32::try_from(us).unwrap_or(u32::MAX));
                                } else {
                                    errors += 1;
                                }
                                if head.close {
                                    conn = None;
                                }
                            }
                            Ok(Err(_)) => {
                                errors += 1;
                                conn = None;
                            }
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            if let Ok((lat, e)) = t.await {
                all.extend(lat);
                errors += e;
            }
        }
        (all, errors)
    });
    latencies.sort_unstable();
    LoadResult {
        rps: latencies.len() as f64 / duration.as_secs_f64(),
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        errors,
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Latency {
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    samples: usize,
    polls_per_s: f64,
}

/// One Prometheus-like client: plain scrapes back to back on one connection, a short pause
/// between them, for `duration`.
fn probe_latency(rt: &Runtime, addr: SocketAddr, duration: Duration) -> (Vec<u32>, u64) {
    rt.block_on(async move {
        let request = request_bytes("/metrics", false);
        let until = Instant::now() + duration;
        let mut lat = Vec::new();
        let mut errors = 0;
        let mut conn: Option<Conn> = None;
        while Instant::now() < until {
            if conn.is_none() {
                conn = Conn::open(addr).await.ok();
            }
            let Some(c) = conn.as_mut() else {
                errors += 1;
                tokio::time::sleep(PROBE_GAP).await;
                continue;
            };
            let started = Instant::now();
            match tokio::time::timeout(Duration::from_secs(30), c.exchange(&request, None)).await {
                Ok(Ok((head, _))) if head.status == 200 => {
                    lat.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
                    if head.close {
                        conn = None;
                    }
                }
                _ => {
                    errors += 1;
                    conn = None;
                }
            }
            tokio::time::sleep(PROBE_GAP).await;
        }
        (lat, errors)
    })
}

fn measure_latency(rt: &Runtime, exporter: &Exporter, duration: Duration) -> Latency {
    let polls0 = exporter.polls(rt);
    let t0 = Instant::now();
    let (mut lat, errors) = probe_latency(rt, exporter.addr, duration);
    let polls1 = exporter.polls(rt);
    let elapsed = t0.elapsed().as_secs_f64();
    if errors > 0 {
        eprintln!("bench:   {errors} failed scrapes");
    }
    lat.sort_unstable();
    Latency {
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        max_us: lat.last().map(|&v| f64::from(v)).unwrap_or(f64::NAN),
        samples: lat.len(),
        polls_per_s: (polls1 - polls0).max(0.0) / elapsed,
    }
}

// ---------------------------------------------------------------------------------------------
// One target count

struct Ctx {
    exe: PathBuf,
    dir: PathBuf,
    sim_rt: Runtime,
    client_rt: Runtime,
    loadgen: LoadGen,
}

#[derive(Default)]
struct LoadCell {
    exporter: Vec<LoadResult>,
    stat: Vec<LoadResult>,
}

struct Report {
    n: usize,
    accounts: usize,
    interval: Duration,
    rate_limit: u32,
    fill: Result<Duration, (usize, Duration)>,
    quiet: Duration,
    quiet_polls: f64,
    cpu_per_poll: f64,
    poll_rate: f64,
    planned_rate: f64,
    sim_cpu_per_request: f64,
    scraped: Duration,
    cpu_per_poll_scraped: f64,
    rss_fill: u64,
    rss_soak: u64,
    rss_min: u64,
    rss_max: u64,
    soak: Duration,
    hwm: u64,
    body_plain: usize,
    body_gzip: usize,
    served_gzip: bool,
    gzip_reference: usize,
    series: usize,
    load: [LoadCell; 2],
    lat_idle: Latency,
    lat_poll: Latency,
    lat_slow: Latency,
    slow_api: Duration,
    startup_healthy: Duration,
    startup_metrics: Duration,
    startup_samples: usize,
    check_big: Duration,
    check_trivial: Duration,
}

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median_duration(mut v: Vec<Duration>) -> Duration {
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn time_check_config(exe: &Path, config: &Path, env: &[(String, String)]) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..CHECK_CONFIG_SAMPLES {
        let mut cmd = exporter_command(exe, env);
        cmd.arg("check-config")
            .arg("--config")
            .arg(config)
            .arg("--log.level")
            .arg("warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let out = cmd
            .output()
            .unwrap_or_else(|e| fail(format!("cannot run check-config: {e}")));
        let took = started.elapsed();
        if !out.status.success() {
            fail(format!(
                "check-config refused {}:\n{}",
                config.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        samples.push(took);
    }
    median_duration(samples)
}

fn sleep_sampling(pid: u32, d: Duration, samples: &mut Vec<u64>) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::thread::sleep((until - Instant::now()).min(Duration::from_secs(5)));
        samples.push(rss(pid));
    }
}

fn bench_targets(n: usize, p: &Params, ctx: &Ctx) -> Report {
    let accounts = layout(n, p.accounts);
    let targets = Arc::new(targets_of(&accounts));
    assert_eq!(targets.len(), n);
    let per_account = n.div_ceil(accounts.len());
    let needed_per_minute = (per_account as f64 * 60.0 / p.interval.as_secs_f64()).ceil() as u32;
    let rate = p.rate_limit.unwrap_or((needed_per_minute * 2).max(60));
    eprintln!(
        "bench: == {n} targets, {} accounts, poll.interval {}, rate_limit_per_minute {rate} ==",
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
        config_yaml(&accounts, &server.url(), p.interval, rate),
    )
    .unwrap_or_else(|e| fail(format!("cannot write the config: {e}")));
    let trivial_accounts = layout(1, 1);
    let trivial = ctx.dir.join("config-trivial.yaml");
    std::fs::write(
        &trivial,
        config_yaml(&trivial_accounts, &server.url(), p.interval, 60),
    )
    .unwrap_or_else(|e| fail(format!("cannot write the config: {e}")));

    eprintln!("bench: check-config, {CHECK_CONFIG_SAMPLES} runs each of the {n}-target and a 1-target config");
    let check_trivial = time_check_config(&ctx.exe, &trivial, &secret_env(&trivial_accounts));
    let check_big = time_check_config(&ctx.exe, &config, &env);

    eprintln!("bench: start-up, {STARTUP_SAMPLES} separate starts");
    let mut healthy = Vec::new();
    let mut metrics = Vec::new();
    for i in 0..STARTUP_SAMPLES {
        let e = Exporter::spawn(
            &ctx.exe,
            &config,
            &env,
            &ctx.dir,
            &format!("{n}-startup{i}"),
        );
        let (h, m) = e.wait_serving();
        healthy.push(h);
        metrics.push(m);
    }

    eprintln!("bench: starting the exporter and waiting until every target has a value");
    let exporter = Exporter::spawn(&ctx.exe, &config, &env, &ctx.dir, &n.to_string());
    let (h, m) = exporter.wait_serving();
    healthy.push(h);
    metrics.push(m);
    let fill_limit = p.interval * 3 + Duration::from_secs(60);
    let mut last_report = Instant::now();
    let fill = loop {
        let (_, body) = exporter.scrape(&ctx.client_rt, false);
        let have = lines_starting(&body, "hss_registry_access_success{");
        let elapsed = exporter.spawned.elapsed();
        if have >= n {
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
    std::thread::sleep(Duration::from_secs(1));
    let pid = exporter.pid();
    let rss_fill = rss(pid);
    let mut rss_samples = vec![rss_fill];

    // Soak, first without scrapes (CPU per poll), then with two replicas scraping.
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
    let rss_soak = rss(pid);
    rss_samples.push(rss_soak);
    let rss_min = rss_samples.iter().copied().min().unwrap_or(0);
    let rss_max = rss_samples.iter().copied().max().unwrap_or(0);
    eprintln!(
        "bench:   RSS after fill {}, after soak {} (min {}, max {})",
        mib(rss_fill),
        mib(rss_soak),
        mib(rss_min),
        mib(rss_max)
    );

    // Scrape latency: while polling, with polling paused, with a slow API.
    eprintln!("bench: scrape latency while polling");
    let lat_poll = measure_latency(&ctx.client_rt, &exporter, p.duration);
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
    let lat_idle = measure_latency(&ctx.client_rt, &exporter, p.duration);
    // Let the paused accounts resume and catch up before the next phase.
    let resume = throttled_from + hold + Duration::from_secs(3);
    std::thread::sleep(resume.saturating_duration_since(Instant::now()));
    eprintln!(
        "bench: scrape latency with a slow API (+{} per call)",
        humantime::format_duration(p.slow_api)
    );
    sim.add_fault(FaultRule::always(Fault::Delay(p.slow_api)));
    std::thread::sleep(p.slow_api + Duration::from_millis(200));
    let lat_slow = measure_latency(&ctx.client_rt, &exporter, p.duration);
    sim.clear_faults();
    std::thread::sleep(p.slow_api + Duration::from_secs(1));

    // The bodies, and the static server serving them.
    let (plain_head, plain_body) = exporter.scrape(&ctx.client_rt, false);
    let (gzip_head, gzip_body) = exporter.scrape(&ctx.client_rt, true);
    let served_gzip = gzip_head
        .header("content-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let gzip_reference = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = enc.write_all(&plain_body);
        enc.finish().map(|v| v.len()).unwrap_or(0)
    };
    let series = plain_body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .count();
    let (body_plain, body_gzip) = (plain_body.len(), gzip_body.len());
    let static_server = StaticServer::start(
        Variant::from_answer(&plain_head, plain_body),
        Variant::from_answer(&gzip_head, gzip_body),
        nproc(),
    );
    eprintln!(
        "bench: load: {} runs x (plain, gzip) x (exporter, static) with {}",
        p.runs,
        ctx.loadgen.describe(p)
    );
    let mut load: [LoadCell; 2] = Default::default();
    for run in 0..p.runs {
        for (e, gzip) in [false, true].into_iter().enumerate() {
            let order = if run % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for to_exporter in order {
                let addr = if to_exporter {
                    exporter.addr
                } else {
                    static_server.addr
                };
                let r = run_load(&ctx.loadgen, &ctx.client_rt, addr, gzip, p, &ctx.dir);
                eprintln!(
                    "bench:   run {} {} {}: {:.1} req/s, p50 {}, p99 {}{}",
                    run + 1,
                    if gzip { "gzip " } else { "plain" },
                    if to_exporter { "exporter" } else { "static  " },
                    r.rps,
                    us(r.p50_us),
                    us(r.p99_us),
                    if r.errors > 0 {
                        format!(", {} errors", r.errors)
                    } else {
                        String::new()
                    }
                );
                if to_exporter {
                    exporter.check_alive();
                    load[e].exporter.push(r);
                } else {
                    load[e].stat.push(r);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    drop(static_server);
    let hwm = memory(pid).map(|m| m.1).unwrap_or(0);

    stop_changes.store(true, Ordering::Relaxed);
    drop(exporter);
    ctx.sim_rt.block_on(server.shutdown());

    Report {
        n,
        accounts: accounts.len(),
        interval: p.interval,
        rate_limit: rate,
        fill,
        quiet: quiet_elapsed,
        quiet_polls,
        cpu_per_poll,
        poll_rate,
        planned_rate: n as f64 / p.interval.as_secs_f64(),
        sim_cpu_per_request,
        scraped,
        cpu_per_poll_scraped,
        rss_fill,
        rss_soak,
        rss_min,
        rss_max,
        soak: p.soak,
        hwm,
        body_plain,
        body_gzip,
        served_gzip,
        gzip_reference,
        series,
        load,
        lat_idle,
        lat_poll,
        lat_slow,
        slow_api: p.slow_api,
        startup_samples: healthy.len(),
        startup_healthy: median_duration(healthy),
        startup_metrics: median_duration(metrics),
        check_big,
        check_trivial,
    }
}

// ---------------------------------------------------------------------------------------------
// The report

fn mib(bytes: u64) -> String {
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

fn us(v: f64) -> String {
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

fn render(r: &Report) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "#### {} targets ({} accounts, poll.interval {}, rate_limit_per_minute {})\n",
        thousands(r.n),
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
                "{:.2} s (polls are spread over poll.interval)",
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
    row(
        "resident memory, every target in".into(),
        "≤ 32 MiB",
        mib(r.rss_fill),
        verdict(r.rss_fill <= MAX_RSS),
    );
    let drift = r.rss_soak as f64 / r.rss_fill as f64 - 1.0;
    let spread_ok = r.rss_max as f64 <= r.rss_fill as f64 * (1.0 + RSS_FLATNESS)
        && r.rss_min as f64 >= r.rss_fill as f64 * (1.0 - RSS_FLATNESS);
    row(
        format!(
            "resident memory after {} more polling, values changing (min–max during)",
            humantime::format_duration(r.soak)
        ),
        "≤ 32 MiB, ±10%",
        format!(
            "{} ({:+.1}%; {} – {})",
            mib(r.rss_soak),
            drift * 100.0,
            mib(r.rss_min),
            mib(r.rss_max)
        ),
        verdict(r.rss_soak <= MAX_RSS && drift.abs() <= RSS_FLATNESS && spread_ok),
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

fn git_revision(dir: &str) -> Option<String> {
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

// ---------------------------------------------------------------------------------------------

fn build_exporter(p: &Params) -> PathBuf {
    if let Some(exe) = &p.exporter {
        return exe.clone();
    }
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("bench: cargo build --release --bin hss-exporter");
    let status = Command::new(&cargo)
        .args(["build", "--release", "--bin", "hss-exporter"])
        .current_dir(manifest_dir)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| fail(format!("cannot run {cargo}: {e}")));
    if !status.success() {
        fail("building hss-exporter failed");
    }
    // This binary is target/<profile>/deps/exporter-*; the exporter is in target/release.
    let from_exe = std::env::current_exe().ok().and_then(|p| {
        let target = p.parent()?.parent()?.parent()?;
        Some(target.join("release").join("hss-exporter"))
    });
    let from_env = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| PathBuf::from(d).join("release").join("hss-exporter"));
    let default = Path::new(manifest_dir).join("target/release/hss-exporter");
    [from_exe, from_env, Some(default)]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| fail("cannot find target/release/hss-exporter after building it"))
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
    let mut reports = Vec::new();
    for &n in &p.targets {
        reports.push(bench_targets(n, p, &ctx));
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
