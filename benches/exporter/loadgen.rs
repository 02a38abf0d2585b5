//! Load generation and latency measurement: wrk or the built-in client against `/metrics` of
//! the exporter and of the static server, and a Prometheus-like probe timing single scrapes.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::client::{request_bytes, Conn};
use crate::exporter::Exporter;
use crate::processes::{nproc, Proc};
use crate::report::us;
use crate::static_server::{StaticServer, Variant};
use crate::{fail, Ctx, LoadGenChoice, Params};

/// Pause between two scrapes of the latency probe.
const PROBE_GAP: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// wrk and the built-in client

#[derive(Clone)]
pub enum LoadGen {
    Wrk(String),
    Rust,
}

impl LoadGen {
    pub fn pick(choice: LoadGenChoice) -> LoadGen {
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
            LoadGenChoice::Auto => wrk().map_or(LoadGen::Rust, LoadGen::Wrk),
        }
    }

    pub fn describe(&self, p: &Params) -> String {
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
pub struct LoadResult {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: u64,
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

/// One wrk run; a run whose output cannot be read (wrk exited without its report, as it
/// now and then does on a busy machine) is tried once more before the benchmark fails.
fn run_wrk(addr: SocketAddr, gzip: bool, p: &Params, dir: &Path) -> LoadResult {
    match run_wrk_once(addr, gzip, p, dir) {
        Ok(r) => r,
        Err(text) => {
            eprintln!(
                "bench:   wrk gave no report ({:?}); running it again",
                text.trim()
            );
            run_wrk_once(addr, gzip, p, dir)
                .unwrap_or_else(|text| fail(format!("cannot read wrk's output:\n{text}")))
        }
    }
}

fn run_wrk_once(
    addr: SocketAddr,
    gzip: bool,
    p: &Params,
    dir: &Path,
) -> Result<LoadResult, String> {
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
    parse_wrk(&text).ok_or(text)
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

// ---------------------------------------------------------------------------------------------
// Scrape latency

#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub samples: usize,
    pub polls_per_s: f64,
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

pub fn measure_latency(rt: &Runtime, exporter: &Exporter, duration: Duration) -> Latency {
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
        max_us: lat.last().map_or(f64::NAN, |&v| f64::from(v)),
        samples: lat.len(),
        polls_per_s: (polls1 - polls0).max(0.0) / elapsed,
    }
}

// ---------------------------------------------------------------------------------------------
// The exporter against the static server

#[derive(Default)]
pub struct LoadCell {
    pub exporter: Vec<LoadResult>,
    pub stat: Vec<LoadResult>,
}

/// The `/metrics` bodies the load runs fetch.
pub struct Bodies {
    pub plain: usize,
    pub gzip: usize,
    /// Whether the gzip request was answered with `Content-Encoding: gzip`.
    pub served_gzip: bool,
    /// The plain body gzipped at the default level (6), for comparison.
    pub gzip_reference: usize,
    pub series: usize,
}

/// Takes the exporter's plain and gzip answers, serves the very same bytes from the static
/// server, and runs the load generator `p.runs` times against both, plain and gzip,
/// alternating which goes first.
pub fn compare_with_static(exporter: &Exporter, p: &Params, ctx: &Ctx) -> (Bodies, [LoadCell; 2]) {
    let (plain_head, plain_body) = exporter.scrape(&ctx.client_rt, false);
    let (gzip_head, gzip_body) = exporter.scrape(&ctx.client_rt, true);
    let served_gzip = gzip_head
        .header("content-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let gzip_reference = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = enc.write_all(&plain_body);
        enc.finish().map_or(0, |v| v.len())
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
    let bodies = Bodies {
        plain: body_plain,
        gzip: body_gzip,
        served_gzip,
        gzip_reference,
        series,
    };
    (bodies, load)
}
