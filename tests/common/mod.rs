//! Helpers for the integration tests: a simulator, an exporter pointed at it, a builder for
//! their configuration, and a reader for the text exposition.
#![allow(dead_code)]

mod builder;

#[allow(unused_imports)]
pub use builder::{account, Account, Config, AK_SK, ALL_TYPES, IAM, TOKEN};

use std::collections::BTreeMap;
use std::time::Duration;

use hss_exporter::app::Options;
use hss_exporter::config::{self, Env};
use hss_exporter::sim::{LogEntry, Service, Sim, SimServer};
use hss_exporter::Exporter;
use tokio::net::TcpListener;

pub const AK: &str = "TESTAK0000000000001";
pub const SK: &str = "test-secret-key-000000000000000000000001";
pub const P1: &str = "1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a";
pub const P2: &str = "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b";
pub const P3: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

/// The environment the configs' `*_env` keys read from.
pub fn env() -> Env {
    [
        ("HSS_AK", AK),
        ("HSS_SK", SK),
        ("HSS_TOKEN", "static-token-1"),
        ("HSS_PASSWORD", "s3cret-password"),
        ("HSS_BAD_SK", "not-the-secret-key"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A simulator that knows the credentials of [`env`].
pub async fn sim() -> (Sim, SimServer) {
    let sim = Sim::new();
    sim.add_access_key(AK, SK);
    sim.add_token("static-token-1", "token-owner");
    sim.add_user("acme", "ops", "s3cret-password");
    let server = sim.start(([127, 0, 0, 1], 0).into()).await.unwrap();
    (sim, server)
}

/// Starts an exporter on `127.0.0.1:0` from YAML in which `{API}` stands for the simulator.
pub async fn exporter(yaml: &str, server: &SimServer) -> Exporter {
    exporter_with(yaml, server, Options::default()).await
}

pub async fn exporter_with(yaml: &str, server: &SimServer, options: Options) -> Exporter {
    let yaml = yaml.replace("{API}", &server.url());
    let settings = config::load_str(&yaml, &env()).expect("test config is valid");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Exporter::start(&settings, listener, options).unwrap()
}

pub async fn get(exporter: &Exporter, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{}{path}", exporter.addr))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub async fn scrape(exporter: &Exporter) -> String {
    let (status, body) = get(exporter, "/metrics").await;
    assert_eq!(status, 200);
    body
}

/// Series of the exposition: (name, labels) → value.
pub fn parse(body: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut out = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once("=\"").expect("label");
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .collect();
        out.insert((name.to_string(), labels), value.parse().expect("number"));
    }
    out
}

/// The value of the series `name` with exactly `labels`.
pub fn value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse(body).get(&(name.to_string(), labels)).copied()
}

/// `hss_exporter_poll_errors_total` of one account and reason.
pub fn poll_errors(body: &str, account: &str, region: &str, reason: &str) -> Option<f64> {
    value(
        body,
        "hss_exporter_poll_errors_total",
        &[("account", account), ("region", region), ("reason", reason)],
    )
}

/// The target is down, and its last values are still exported: kept, not zeroed.
pub fn assert_down_keeping(
    body: &str,
    target: &[(&str, &str)],
    fail: f64,
    success: f64,
    context: &str,
) {
    assert_eq!(
        value(body, "hss_registry_statistics_up", target),
        Some(0.0),
        "{context}: down"
    );
    assert_eq!(
        value(body, "hss_registry_access_fail", target),
        Some(fail),
        "{context}: fail kept"
    );
    assert_eq!(
        value(body, "hss_registry_access_success", target),
        Some(success),
        "{context}: success kept"
    );
}

/// The five target labels.
pub fn target<'a>(
    account: &'a str,
    region: &'a str,
    project: &'a str,
    eps: &'a str,
    rtype: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("account", account),
        ("region", region),
        ("project_id", project),
        ("enterprise_project_id", eps),
        ("registry_type", rtype),
    ]
}

/// Scrapes until `ready` holds for the body, or panics after `within` (of tokio time).
pub async fn wait_for(
    exporter: &Exporter,
    within: Duration,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let body = scrape(exporter).await;
        if ready(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() <= deadline,
            "condition not met within {within:?}; last scrape:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// HSS requests of one caller.
pub fn hss_requests(log: &[LogEntry], caller: &str) -> Vec<LogEntry> {
    log.iter()
        .filter(|e| e.service == Service::Hss && e.caller == caller)
        .cloned()
        .collect()
}

/// Panics if any 60-second window holds more than `limit` of `entries` (in time order).
pub fn assert_rate_within(entries: &[LogEntry], limit: usize) {
    for (i, first) in entries.iter().enumerate() {
        if let Some(over) = entries.get(i + limit) {
            let span = over.at.duration_since(first.at);
            assert!(
                span >= Duration::from_secs(60),
                "{} requests within {span:?} (requests {i}..={})",
                limit + 1,
                i + limit
            );
        }
    }
}
