//! The exporter's own process metrics, under the names and help texts the Prometheus client
//! libraries use: CPU time, memory, file descriptors, threads and start time (Linux only).
//!
//! Read here rather than through the prometheus crate's collector: that one reports CPU time
//! in whole seconds (a `rate()` over it jumps between 0 and 1/interval for an exporter that
//! spends milliseconds a second), parses `/proc/self/limits` on every scrape, and goes
//! through the crate's gather and text encoder. Here the CPU time is the process's CPU
//! clock, to the nanosecond, the descriptor limit is one `getrlimit`, and the lines are
//! written directly.

use std::fmt::Write as _;
use std::sync::Arc;

use super::exposition::{Run, Segment};

/// The families: name, type, help.
const FAMILIES: [(&str, &str, &str); 7] = [
    (
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    ),
    (
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    ),
    (
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
    ),
    (
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    ),
    (
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    ),
    (
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    ),
    (
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
    ),
];

/// One reading of the process; `None` where it could not be read (that family is left out).
#[derive(Debug, Default, Clone, PartialEq)]
struct Reading {
    cpu_seconds: Option<f64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    virtual_bytes: Option<u64>,
    resident_bytes: Option<u64>,
    start_time_seconds: Option<f64>,
    threads: Option<u64>,
}

impl Reading {
    fn values(&self) -> [Option<String>; 7] {
        let int = |v: Option<u64>| v.map(|v| v.to_string());
        let float = |v: Option<f64>| v.map(|v| v.to_string());
        [
            float(self.cpu_seconds),
            int(self.open_fds),
            int(self.max_fds),
            int(self.virtual_bytes),
            int(self.resident_bytes),
            float(self.start_time_seconds),
            int(self.threads),
        ]
    }

    /// The text lines: HELP, TYPE and the sample of each family that has a value.
    fn lines(&self) -> Vec<u8> {
        let mut out = String::with_capacity(1024);
        for ((name, kind, help), value) in FAMILIES.iter().zip(self.values()) {
            if let Some(value) = value {
                let _ = write!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
                );
            }
        }
        out.into_bytes()
    }
}

/// The process metrics as of now, as one run of the body.
pub(super) fn render() -> Arc<Run> {
    Run::new(vec![Segment::new(read().lines())])
}

#[cfg(target_os = "linux")]
fn read() -> Reading {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| Stat::parse(&s));
    let ticks = rustix::param::clock_ticks_per_second();
    let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Reading {
        cpu_seconds: Some(cpu.tv_sec as f64 + cpu.tv_nsec as f64 * 1e-9),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64),
        max_fds: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
        virtual_bytes: stat.as_ref().map(|s| s.vsize),
        resident_bytes: stat
            .as_ref()
            .map(|s| s.rss_pages * rustix::param::page_size() as u64),
        start_time_seconds: stat.as_ref().zip(boot_time()).and_then(|(s, boot)| {
            (ticks > 0).then(|| boot as f64 + s.start_ticks as f64 / ticks as f64)
        }),
        threads: stat.as_ref().map(|s| s.threads),
    }
}

#[cfg(not(target_os = "linux"))]
fn read() -> Reading {
    Reading::default()
}

/// The fields of `/proc/self/stat` used here.
#[derive(Debug, PartialEq)]
struct Stat {
    threads: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

impl Stat {
    /// Parses the line; the command name (field 2) is in parentheses and may hold spaces
    /// and parentheses itself, so fields are counted from the last `)`.
    fn parse(line: &str) -> Option<Stat> {
        let rest = line.get(line.rfind(')')? + 1..)?;
        // Field 3 (state) is the first after the name.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            threads: field(20)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// When the system booted (`btime` of `/proc/stat`), read once.
#[cfg(target_os = "linux")]
fn boot_time() -> Option<u64> {
    static BOOT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = "4242 (hss (exp) 1) S 1 4242 4242 0 -1 4194560 3000 0 0 0 150 37 0 0 20 0 \
                    5 0 987654 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                threads: 5,
                start_ticks: 987_654,
                vsize: 123_456_789,
                rss_pages: 2048,
            })
        );
        assert_eq!(Stat::parse("4242 (cut short) S 1 2"), None);
        assert_eq!(Stat::parse("no parenthesis"), None);
    }

    #[test]
    fn lines_name_every_family_with_a_value_and_leave_the_others_out() {
        let reading = Reading {
            cpu_seconds: Some(1.25),
            open_fds: Some(9),
            max_fds: Some(1_048_576),
            virtual_bytes: None,
            resident_bytes: Some(12_345_678),
            start_time_seconds: Some(1_764_567_890.5),
            threads: Some(6),
        };
        let text = String::from_utf8(reading.lines()).unwrap();
        assert_eq!(
            text,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total 1.25\n\
             # HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\n\
             process_open_fds 9\n\
             # HELP process_max_fds Maximum number of open file descriptors.\n\
             # TYPE process_max_fds gauge\n\
             process_max_fds 1048576\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes 12345678\n\
             # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds 1764567890.5\n\
             # HELP process_threads Number of OS threads in the process.\n\
             # TYPE process_threads gauge\n\
             process_threads 6\n"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read_with_plausible_values() {
        let before = read();
        // Some CPU time between two readings.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let after = read();
        let cpu = (before.cpu_seconds.unwrap(), after.cpu_seconds.unwrap());
        assert!(cpu.0 > 0.0 && cpu.1 > cpu.0, "CPU seconds {cpu:?}");
        assert!(after.open_fds.unwrap() >= 3);
        assert!(after.max_fds.unwrap() >= after.open_fds.unwrap());
        let resident = after.resident_bytes.unwrap();
        assert!((1 << 20..1 << 40).contains(&resident), "{resident} bytes");
        assert!(after.virtual_bytes.unwrap() >= resident);
        assert!(after.threads.unwrap() >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = after.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "started at {start}, now {now}"
        );
    }
}
