//! A long run on demand (not in CI): many targets, random faults, a simulated day on a
//! paused clock; the number of tasks and the memory must stay flat.
//!
//! cargo test --release --test soak -- --ignored --nocapture

mod common;

use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType;
use hss_exporter::sim::{Fault, FaultRule};

const ACCOUNTS: usize = 5;
const PROJECTS_PER_ACCOUNT: usize = 10;

fn config() -> String {
    let mut config = Config::new().poll("5m", "3s", "30m");
    for a in 0..ACCOUNTS {
        let mut acct = account(&format!("acct{a}")).rate(600);
        for p in 0..PROJECTS_PER_ACCOUNT {
            acct = acct.project(&format!("p{a}x{p}"), ALL_TYPES);
        }
        config = config.account(acct);
    }
    config.yaml()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
#[ignore = "a long run; start it on demand"]
async fn a_simulated_day_with_faults_keeps_tasks_and_memory_flat() {
    let (sim, server) = sim().await;
    sim.set_logging(false);
    for a in 0..ACCOUNTS {
        for p in 0..PROJECTS_PER_ACCOUNT {
            for (i, t) in RegistryType::ALL.into_iter().enumerate() {
                sim.set_stats(&format!("p{a}x{p}"), None, t, i as u64, 10 + i as u64);
            }
        }
    }
    for (fault, burst, period) in [
        (Fault::Status(503), 1, 7),
        (Fault::Delay(Duration::from_secs(10)), 1, 11),
        (Fault::Body("<html>".into()), 1, 13),
        (Fault::Reset, 1, 17),
        (
            Fault::Throttle {
                retry_after: Some(20),
            },
            1,
            97,
        ),
    ] {
        sim.add_fault(FaultRule::always(fault).pattern(burst, period));
    }
    let exporter = exporter(&config(), &server).await;
    let targets = ACCOUNTS * PROJECTS_PER_ACCOUNT * 6;
    let metrics = tokio::runtime::Handle::current().metrics();
    let mut samples = Vec::new();
    for hour in 1..=24 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let body = scrape(&exporter).await;
        let up = parse(&body)
            .iter()
            .filter(|((n, _), v)| n == "hss_registry_statistics_up" && **v == 1.0)
            .count();
        let sample = (hour, metrics.num_alive_tasks(), rss_kib(), up);
        eprintln!(
            "hour {:>2}: {} tasks, {} KiB resident, {up}/{targets} targets up",
            sample.0, sample.1, sample.2
        );
        samples.push(sample);
    }
    // Connections come and go, so compare the peaks of the first and the last six hours.
    let peak = |hours: &[(u32, usize, u64, usize)]| {
        (
            hours.iter().map(|s| s.1).max().unwrap(),
            hours.iter().map(|s| s.2).max().unwrap(),
        )
    };
    let (tasks_early, rss_early) = peak(&samples[..6]);
    let (tasks_late, rss_late) = peak(&samples[18..]);
    assert!(
        tasks_late <= tasks_early + 2,
        "tasks grew from {tasks_early} to {tasks_late}"
    );
    assert!(
        rss_late as f64 <= rss_early as f64 * 1.10,
        "memory grew from {rss_early} KiB to {rss_late} KiB"
    );
    let up_24 = samples[23].3;
    assert!(
        up_24 * 10 >= targets * 7,
        "most targets are up between faults: {up_24}/{targets}"
    );
    exporter.shutdown().await;
}
