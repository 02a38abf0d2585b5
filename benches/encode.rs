//! The store's cost of bringing the `/metrics` body up to date after a few polls, measured
//! in-process: `cargo bench --bench encode`. At 1,000 polls a second every scrape finds a
//! changed body, so this cost, paid once per change batch, bounds how many scrapes a second
//! the exporter can answer beside its polling. Environment: `HSS_ENCODE_TARGETS` (10000),
//! `HSS_ENCODE_CHANGES` (changes per rebuild, 2), `HSS_ENCODE_ROUNDS` (3000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use hyper::body::Body as _;

use hss_exporter::metrics::Store;
use hss_exporter::model::{RegistryType, Statistics, Target};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env("HSS_ENCODE_TARGETS", 10_000);
    let changes = env("HSS_ENCODE_CHANGES", 2).max(1);
    let rounds = env("HSS_ENCODE_ROUNDS", 3000).max(1);
    let store = Store::new(Duration::from_secs(3600));
    let targets: Vec<Target> = (0..n)
        .map(|i| Target {
            account: format!("account-{:02}", i % 10),
            region: "cn-north-4".into(),
            project_id: format!("{:032x}", i / RegistryType::ALL.len()),
            enterprise_project_id: None,
            registry_type: Some(RegistryType::ALL[i % RegistryType::ALL.len()]),
        })
        .collect();
    store.add_targets(&targets);
    for (i, t) in targets.iter().enumerate() {
        store.record_success(
            t,
            Statistics {
                fail_num: (i % 3) as u64,
                success_num: 4,
            },
        );
    }
    let first = store.exposition();
    first.prepare_gzip();
    let (plain, gzip) = (first.plain(), first.gzip());
    drop(first);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rebuild = |gzip: bool| {
        for _ in 0..changes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = &targets[(x % n as u64) as usize];
            store.record_request(&t.account, &t.region, "200", Duration::from_millis(3));
            store.record_success(
                t,
                Statistics {
                    fail_num: x % 3,
                    success_num: 4,
                },
            );
        }
        let e = store.exposition();
        if gzip {
            e.prepare_gzip();
        }
        black_box(e);
    };
    for gzip in [false, true] {
        for _ in 0..rounds / 10 {
            rebuild(gzip);
        }
        let start = Instant::now();
        for _ in 0..rounds {
            rebuild(gzip);
        }
        let per = start.elapsed() / rounds as u32;
        println!(
            "{n} targets, {changes} polls between rebuilds, {}: {:.1} µs per rebuild",
            if gzip { "plain + gzip" } else { "plain" },
            per.as_secs_f64() * 1e6
        );
    }
    println!(
        "body: {} B plain, {} B gzip",
        plain.size_hint().exact().unwrap_or(0),
        gzip.size_hint().exact().unwrap_or(0)
    );
}
