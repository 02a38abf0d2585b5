//! One test per fault of the API or the network. Each checks the same promise: the exporter
//! stays up, `/metrics` keeps answering, the fault is counted under the right reason, the
//! target goes down without its values being zeroed, and all recovers once the fault clears.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType::Harbor;
use hss_exporter::sim::{Fault, FaultRule, Service, Sim, SimServer};

fn config() -> String {
    Config::new()
        .poll("10s", "3s", "1h")
        .account(account("prod").rate(60).project(P1, &["Harbor"]))
        .yaml()
}

fn harbor() -> Vec<(&'static str, &'static str)> {
    target("prod", "cn-north-4", P1, "", "Harbor")
}

fn errors(body: &str, reason: &str) -> f64 {
    poll_errors(body, "prod", "cn-north-4", reason).unwrap_or(0.0)
}

/// Runs the common story around a fault: `start` applies it, `stop` clears it, and
/// `recovery` is how long the exporter may take to come back afterwards.
async fn survives(
    reason: &str,
    recovery: Duration,
    start: impl FnOnce(&Sim),
    stop: impl FnOnce(&Sim),
) {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    let exporter = exporter(&config(), &server).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor()),
        Some(1.0)
    );

    start(&sim);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let body = scrape(&exporter).await;
    assert_down_keeping(&body, &harbor(), 3.0, 7.0, reason);
    assert!(errors(&body, reason) >= 1.0, "{reason} counted:\n{body}");
    assert_eq!(
        status_of(&status(&exporter).await, "prod", P1, "Harbor")["state"],
        "down",
        "the status page shows it down"
    );

    stop(&sim);
    sim.set_stats(P1, None, Harbor, 4, 8);
    tokio::time::sleep(recovery).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor()),
        Some(1.0),
        "recovered by itself"
    );
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor()),
        Some(4.0)
    );
    exporter.shutdown().await;
}

async fn rule(reason: &str, fault: Fault) {
    survives(
        reason,
        Duration::from_secs(15),
        |sim| sim.add_fault(FaultRule::always(fault)),
        Sim::clear_faults,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn http_500() {
    rule("http_5xx", Fault::Status(500)).await;
}

#[tokio::test(start_paused = true)]
async fn http_502() {
    rule("http_5xx", Fault::Status(502)).await;
}

#[tokio::test(start_paused = true)]
async fn http_503() {
    rule("http_5xx", Fault::Status(503)).await;
}

#[tokio::test(start_paused = true)]
async fn throttled_with_retry_after() {
    let fault = FaultRule::always(Fault::Throttle {
        retry_after: Some(30),
    });
    survives(
        "throttled",
        Duration::from_secs(45),
        |sim| sim.add_fault(fault),
        Sim::clear_faults,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn throttled_without_retry_after() {
    let fault = FaultRule::always(Fault::Throttle { retry_after: None });
    // Back-off: a minute, then two while it goes on.
    survives(
        "throttled",
        Duration::from_secs(200),
        |sim| sim.add_fault(fault),
        Sim::clear_faults,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn slow_api_beyond_the_timeout() {
    rule("timeout", Fault::Delay(Duration::from_secs(30))).await;
}

#[tokio::test(start_paused = true)]
async fn connection_reset_mid_response() {
    rule("connect", Fault::Reset).await;
}

#[tokio::test(start_paused = true)]
async fn non_json_body() {
    rule(
        "decode",
        Fault::Body("<html><body>502 Bad Gateway</body></html>".into()),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn missing_count() {
    rule("decode", Fault::Body(r#"{"success_num": 7}"#.into())).await;
}

#[tokio::test(start_paused = true)]
async fn negative_count() {
    rule(
        "decode",
        Fault::Body(r#"{"fail_num": -3, "success_num": 7}"#.into()),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn non_integer_count() {
    rule(
        "decode",
        Fault::Body(r#"{"fail_num": 2.5, "success_num": 7}"#.into()),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn fifty_mib_body() {
    let huge = format!(
        r#"{{"fail_num": 1, "success_num": 1, "x": "{}"}}"#,
        "y".repeat(50 << 20)
    );
    rule("decode", Fault::Body(huge)).await;
}

/// Restarts a simulator on the address it had, as when an endpoint comes back.
async fn restart(sim: &Sim, addr: SocketAddr) -> SimServer {
    sim.start(addr).await.expect("the port is free again")
}

#[tokio::test(start_paused = true)]
async fn connection_refused() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    let exporter = exporter(&config(), &server).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let addr = server.addr;
    server.shutdown().await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor()),
        Some(0.0)
    );
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor()),
        Some(3.0)
    );
    assert!(errors(&body, "connect") >= 1.0);
    assert!(
        value(
            &body,
            "hss_exporter_api_requests_total",
            &[
                ("account", "prod"),
                ("region", "cn-north-4"),
                ("code", "connect")
            ]
        )
        .unwrap()
            >= 2.0,
        "tried twice"
    );
    let _back = restart(&sim, addr).await;
    sim.set_stats(P1, None, Harbor, 4, 8);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor()),
        Some(1.0)
    );
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor()),
        Some(4.0)
    );
    exporter.shutdown().await;
}

/// One IAM account whose tokens come from `iam` (`{API}`: the simulator).
fn iam_config(iam: &str) -> String {
    Config::new()
        .poll("10s", "3s", "1h")
        .account(
            account("iam")
                .rate(60)
                .auth(&IAM.replace("{API}", iam))
                .project(P1, &["Harbor"]),
        )
        .yaml()
}

#[tokio::test(start_paused = true)]
async fn iam_token_expiring_mid_run() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    // Tokens that live 2 minutes are renewed after one; one revoked early is replaced.
    sim.set_token_lifetime(Duration::from_secs(120));
    let exporter = exporter(&iam_config("{API}"), &server).await;
    // Revoked between two renewals (about a minute apart), 15 to 40 s after the last one,
    // so that a poll (every 10 s) meets a refusal before the next renewal.
    tokio::time::sleep(Duration::from_secs(300)).await;
    // Renewals a minute apart open that window within any 2 minutes; without them the
    // test fails here rather than waiting forever on the paused clock.
    let mut waited = 0;
    loop {
        let renewed = sim
            .log()
            .iter()
            .filter(|e| e.service == Service::Iam && e.status == 201)
            .map(|e| e.at)
            .max()
            .expect("the token was issued");
        if (Duration::from_secs(15)..Duration::from_secs(40)).contains(&renewed.elapsed()) {
            break;
        }
        waited += 1;
        assert!(
            waited < 120,
            "no token renewal 15-40 s ago within 2 minutes; the last was {:?} ago",
            renewed.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sim.revoke_issued_tokens();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let log = sim.log();
    let refused: Vec<_> = log
        .iter()
        .filter(|e| e.service == Service::Hss && e.status == 401)
        .collect();
    assert_eq!(refused.len(), 1, "only the revoked token was ever refused");
    assert!(
        log.iter()
            .filter(|e| e.service == Service::Iam && e.status == 201)
            .count()
            >= 5
    );
    let body = scrape(&exporter).await;
    let t = target("iam", "cn-north-4", P1, "", "Harbor");
    assert_eq!(value(&body, "hss_registry_statistics_up", &t), Some(1.0));
    assert_eq!(poll_errors(&body, "iam", "cn-north-4", "auth"), Some(0.0));
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn iam_endpoint_down() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    // IAM answers on its own address, sharing the simulator's state.
    let iam = sim.start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let iam_addr = iam.addr;
    let exporter = exporter(&iam_config(&iam.url()), &server).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t = target("iam", "cn-north-4", P1, "", "Harbor");
    assert_eq!(
        value(&scrape(&exporter).await, "hss_registry_statistics_up", &t),
        Some(1.0)
    );

    // The token is revoked while IAM is down: no new token can be had.
    iam.shutdown().await;
    sim.revoke_issued_tokens();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let body = scrape(&exporter).await;
    assert_eq!(value(&body, "hss_registry_statistics_up", &t), Some(0.0));
    assert_eq!(
        value(&body, "hss_registry_access_fail", &t),
        Some(3.0),
        "value kept"
    );
    let connect = poll_errors(&body, "iam", "cn-north-4", "connect");
    assert!(connect >= Some(1.0), "{body}");
    assert_eq!(
        value(
            &body,
            "hss_exporter_account_suspended",
            &[("account", "iam"), ("region", "cn-north-4")]
        ),
        Some(0.0),
        "an unreachable IAM is no reason to suspend"
    );

    let _back = restart(&sim, iam_addr).await;
    sim.set_stats(P1, None, Harbor, 4, 8);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let body = scrape(&exporter).await;
    assert_eq!(value(&body, "hss_registry_statistics_up", &t), Some(1.0));
    assert_eq!(value(&body, "hss_registry_access_fail", &t), Some(4.0));
    exporter.shutdown().await;
}
