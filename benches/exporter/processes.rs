//! Child processes and the machine: every child is registered so that any exit path (a panic,
//! a signal) can end it; CPU time and memory of a process from /proc; the machine description.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Child processes: every one is registered so that any exit path can end it.

static CHILDREN: Mutex<Vec<(u32, Child)>> = Mutex::new(Vec::new());
pub static TEMP_DIR: OnceLock<PathBuf> = OnceLock::new();

fn children() -> MutexGuard<'static, Vec<(u32, Child)>> {
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A child process that is killed when this guard goes away.
pub struct Proc {
    pub pid: u32,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Proc> {
        // Held while spawning, so that a signal arriving now still finds the child.
        let mut list = children();
        let child = cmd.spawn()?;
        let pid = child.id();
        list.push((pid, child));
        Ok(Proc { pid })
    }

    pub fn try_wait(&self) -> Option<ExitStatus> {
        children()
            .iter_mut()
            .find(|(p, _)| *p == self.pid)
            .and_then(|(_, c)| c.try_wait().ok().flatten())
    }

    pub fn wait_timeout(&self, limit: Duration) -> Option<ExitStatus> {
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

pub fn kill_all_children() {
    let all: Vec<(u32, Child)> = children().drain(..).collect();
    for (_, mut child) in all {
        let _ = child.kill();
        let _ = child.wait();
    }
}

pub fn remove_temp_dir() {
    if let Some(dir) = TEMP_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: end every child, remove the scratch directory, exit.
pub fn install_signal_cleanup() {
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

// ---------------------------------------------------------------------------------------------
// The machine and /proc

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

pub fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Hardware"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".into(), |(_, v)| v.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
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

/// User + system CPU seconds of a process (`self` for this one), its exited threads
/// included. Read from the process's CPU-time clock, to the nanosecond: `/proc/{pid}/stat`
/// counts in clock ticks (10 ms), which is a fifth of what 200 polls at 0.2 ms cost, the
/// whole of a realistic-rate window at 1,000 targets. `/proc` is the fallback.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    precise_cpu_seconds(pid).or_else(|| ticks_cpu_seconds(pid))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn precise_cpu_seconds(pid: &str) -> Option<f64> {
    let pid: libc::pid_t = if pid == "self" { 0 } else { pid.parse().ok()? };
    let mut clock: libc::clockid_t = 0;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls only write the plain values they are given pointers to, which
    // live on this stack frame; pid 0 is this process.
    let ok = unsafe {
        libc::clock_getcpuclockid(pid, &raw mut clock) == 0
            && libc::clock_gettime(clock, &raw mut now) == 0
    };
    ok.then_some(now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn precise_cpu_seconds(_: &str) -> Option<f64> {
    None
}

/// From `/proc/{pid}/stat`, in whole clock ticks.
fn ticks_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// (`VmRSS`, `VmHWM`) in bytes.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
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

pub fn rss(pid: u32) -> u64 {
    memory(pid).map_or(0, |m| m.0)
}
