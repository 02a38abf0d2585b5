//! The exporter binary: building it in release mode, starting it against a configuration,
//! talking to it, and timing its start-up and `check-config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::client::{fetch, probe, request_bytes, sum_samples, Conn, Head};
use crate::fail;
use crate::processes::{cpu_seconds, Proc};
use crate::{Ctx, Params};

pub const STARTUP_SAMPLES: usize = 5;
pub const CHECK_CONFIG_SAMPLES: usize = 5;

pub fn build_exporter(p: &Params) -> PathBuf {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or_else(
            |e| fail(format!("cannot find a free port: {e}")),
            |a| a.port(),
        )
}

pub struct Exporter {
    proc: Proc,
    pub addr: SocketAddr,
    pub spawned: Instant,
    log: PathBuf,
}

impl Exporter {
    pub fn spawn(
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

    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn check_alive(&self) {
        if let Some(status) = self.proc.try_wait() {
            fail(format!(
                "the exporter exited ({status}); its log ends with:\n{}",
                self.log_tail()
            ));
        }
    }

    /// Times from spawn to the first 200 from `/-/healthy`, then from `/metrics`.
    pub fn wait_serving(&self) -> (Duration, Duration) {
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

    pub fn scrape(&self, rt: &Runtime, gzip: bool) -> (Head, Vec<u8>) {
        self.answered(fetch(rt, self.addr, "/metrics", gzip))
    }

    /// The answer of a scrape, which must be a 200; anything else ends the benchmark.
    fn answered<T>(&self, result: std::io::Result<(Head, T)>) -> (Head, T) {
        match result {
            Ok((head, body)) if head.status == 200 => (head, body),
            Ok((head, _)) => fail(format!("/metrics answered {}", head.status)),
            Err(e) => {
                self.check_alive();
                fail(format!("/metrics: {e}"))
            }
        }
    }

    /// API requests made so far (polls, retries included).
    pub fn polls(&self, rt: &Runtime) -> f64 {
        sum_samples(&self.scrape(rt, false).1, "hss_exporter_api_requests_total")
    }

    /// A scraper that keeps its connection to this exporter between scrapes.
    pub fn keep_alive(&self) -> KeepAlive {
        KeepAlive {
            addr: self.addr,
            conn: None,
        }
    }

    pub fn cpu(&self) -> f64 {
        cpu_seconds(&self.pid().to_string()).unwrap_or(f64::NAN)
    }
}

// ---------------------------------------------------------------------------------------------
// Start-up and configuration load

pub fn median_duration(mut v: Vec<Duration>) -> Duration {
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

pub fn time_check_config(exe: &Path, config: &Path, env: &[(String, String)]) -> Duration {
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

/// Spawn → first 200 from `/-/healthy`, and from `/metrics`, over `STARTUP_SAMPLES` separate
/// starts of the exporter on `config`.
pub fn startup_times(
    ctx: &Ctx,
    config: &Path,
    env: &[(String, String)],
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut healthy = Vec::new();
    let mut metrics = Vec::new();
    for i in 0..STARTUP_SAMPLES {
        let e = Exporter::spawn(&ctx.exe, config, env, &ctx.dir, &format!("{n}-startup{i}"));
        let (h, m) = e.wait_serving();
        healthy.push(h);
        metrics.push(m);
    }
    (healthy, metrics)
}

/// Scrapes over one connection kept open between scrapes, as Prometheus does (its HTTP
/// client keeps idle connections for five minutes); a new one is opened when the exporter
/// closed the last.
pub struct KeepAlive {
    addr: SocketAddr,
    conn: Option<Conn>,
}

impl KeepAlive {
    pub fn scrape(&mut self, rt: &Runtime, exporter: &Exporter, gzip: bool) {
        let request = request_bytes("/metrics", gzip);
        let result = rt.block_on(async {
            // A kept connection the exporter has closed meanwhile fails at once; the
            // second try is on a new one.
            for _ in 0..2 {
                let mut conn = match self.conn.take() {
                    Some(conn) => conn,
                    None => Conn::open(self.addr).await?,
                };
                let work = conn.exchange(&request, None);
                match tokio::time::timeout(Duration::from_secs(30), work).await {
                    Ok(Ok((head, _))) => {
                        if !head.close {
                            self.conn = Some(conn);
                        }
                        return Ok((head, ()));
                    }
                    Ok(Err(_)) => {}
                    Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
                }
            }
            Err(std::io::Error::other("the connection closed twice"))
        });
        exporter.answered(result);
    }
}
