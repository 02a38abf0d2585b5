//! Helpers for the integration tests: a simulator, an exporter pointed at it, a builder for
//! their configuration and a file to write it to, the binary run as an operator runs it,
//! bounded HTTP requests, waiting for conditions, and a reader for the text exposition.
#![allow(dead_code)]

mod bin;
mod builder;
mod file;
mod proxy;
mod tls;

#[allow(unused_imports)]
pub use bin::{free_port, metrics_url, run, run_with_env, Running};
#[allow(unused_imports)]
pub use builder::{account, Account, Config, AK_SK, ALL_TYPES, IAM, TOKEN};
#[allow(unused_imports)]
pub use file::{ConfigFile, NO_API};
#[allow(unused_imports)]
pub use proxy::{Passed, TestProxy};
#[allow(unused_imports)]
pub use tls::{Pki, Validity};

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hss_exporter::app::Options;
use hss_exporter::config::{self, Env, Settings};
use hss_exporter::sim::{LogEntry, Service, Sim, SimServer};
use hss_exporter::Exporter;
use tokio::net::TcpListener;

pub const AK: &str = "TESTAK0000000000001";
/// A second key the simulator knows, with the same secret key.
pub const AK2: &str = "TESTAK0000000000002";
pub const SK: &str = "test-secret-key-000000000000000000000001";
pub const P1: &str = "1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a";
pub const P2: &str = "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b";
pub const P3: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

/// The environment the configs' `*_env` keys read from.
pub fn env() -> Env {
    [
        ("HSS_AK", AK),
        ("HSS_AK2", AK2),
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
    sim.add_access_key(AK2, SK);
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
    start_exporter(&settings, options).await
}

/// Starts an exporter with `settings` on `127.0.0.1:0`.
pub async fn start_exporter(settings: &Settings, options: Options) -> Exporter {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Exporter::start(settings, listener, options).unwrap()
}

/// The longest any one connect, request or read of the tests may take: a server that never
/// answers or never closes fails the test after this instead of blocking it. Tokio time, so
/// it also ends a wait under a paused clock, which keeps advancing through the exporter's
/// timers while a read is stuck.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`eventually`] checks again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A reqwest client builder with [`IO_TIMEOUT`] on connecting and on each whole request.
pub fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(IO_TIMEOUT)
        .timeout(IO_TIMEOUT)
}

/// A reqwest client with [`IO_TIMEOUT`]; a new one for each test runtime.
pub fn http() -> reqwest::Client {
    http_builder().build().expect("HTTP client")
}

/// A reqwest error with its causes ("operation timed out", "connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// `method path` to the server at `addr`; panics if it gets no answer.
pub async fn request(addr: SocketAddr, method: reqwest::Method, path: &str) -> reqwest::Response {
    let url = format!("http://{addr}{path}");
    http()
        .request(method.clone(), &url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {}", describe(&e)))
}

/// `method url`: the status and body, or what went wrong as text.
pub async fn fetch(method: reqwest::Method, url: &str) -> Result<(u16, String), String> {
    let failed = |e: reqwest::Error| format!("{method} {url}: {}", describe(&e));
    let r = http()
        .request(method.clone(), url)
        .send()
        .await
        .map_err(failed)?;
    let status = r.status().as_u16();
    let body = r.text().await.map_err(failed)?;
    Ok((status, body))
}

/// GET `path` from the exporter: status and body.
pub async fn get(exporter: &Exporter, path: &str) -> (u16, String) {
    fetch(
        reqwest::Method::GET,
        &format!("http://{}{path}", exporter.addr),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The exporter's `/metrics`, which must answer 200.
pub async fn scrape(exporter: &Exporter) -> String {
    let (status, body) = get(exporter, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The output of `fut`, or a panic naming `what` once `limit` (of tokio time) has passed.
pub async fn bounded<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {limit:?}"))
}

/// Runs `check` every 50 ms of tokio time (so also under a paused clock) until it gives
/// `Ok`, and returns that. `Err` describes where things stand; the last one is in the panic
/// that ends the wait once `within` has passed. Each check must bound its own waits (the
/// HTTP helpers here do).
pub async fn eventually<T, S, Fut>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Fut,
) -> T
where
    Fut: Future<Output = Result<T, S>>,
    S: Display,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(done) => return done,
            Err(state) => assert!(
                tokio::time::Instant::now() < deadline,
                "still waiting for {what} after {within:?}; last:\n{state}"
            ),
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// What the status page shows: `/status.json`.
pub async fn status(exporter: &Exporter) -> serde_json::Value {
    let (code, body) = get(exporter, "/status.json").await;
    assert_eq!(code, 200, "/status.json: {body}");
    serde_json::from_str(&body).expect("/status.json is JSON")
}

/// The status page's entry of one target, by account, project and registry type (`all`
/// when unfiltered).
pub fn status_of<'a>(
    status: &'a serde_json::Value,
    account: &str,
    project: &str,
    registry_type: &str,
) -> &'a serde_json::Value {
    status["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["account"] == account)
        .flat_map(|a| a["targets"].as_array().into_iter().flatten())
        .find(|t| t["project_id"] == project && t["registry_type"] == registry_type)
        .unwrap_or_else(|| {
            panic!("no {account}/{project}/{registry_type} on the status page: {status}")
        })
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

/// Scrapes until `ready` holds for the body and returns it, or panics naming `what` after
/// `within` (of tokio time).
pub async fn wait_for(
    exporter: &Exporter,
    within: Duration,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> String {
    let url = format!("http://{}/metrics", exporter.addr);
    wait_for_url(&url, within, what, ready).await
}

/// GETs `url` until it answers 200 with a body for which `ready` holds, and returns that
/// body; refused connections and other answers are waited through.
pub async fn wait_for_url(
    url: &str,
    within: Duration,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> String {
    let ready = &ready;
    eventually(within, what, move || async move {
        match fetch(reqwest::Method::GET, url).await {
            Ok((200, body)) if ready(&body) => Ok(body),
            Ok((status, body)) => Err(format!("{status}\n{body}")),
            Err(e) => Err(e),
        }
    })
    .await
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
