//! Keyless credentials: temporary keys from the metadata service of an ECS with an agency,
//! renewed before they expire, signed with their security token; a failing metadata service
//! is an `auth` error that suspends nothing. And temporary keys from any other source as
//! `ak_sk` with `security_token_file`, rotated by reload.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType::Harbor;
use hss_exporter::sim::{Service, AGENCY_CALLER};

const METADATA: &str = "{ metadata: { endpoint: \"{API}\" } }";

fn harbor(account: &str) -> Vec<(&str, &str)> {
    target(account, "cn-north-4", P1, "", "Harbor")
}

#[tokio::test(start_paused = true)]
async fn keys_that_live_20s_are_renewed_without_a_single_401_and_share_one_budget() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    sim.enable_metadata(Duration::from_secs(20));
    let yaml = Config::new()
        .poll("5s", "3s", "1h")
        .account(
            account("a")
                .rate(30)
                .auth(METADATA)
                .project(P1, &["Harbor"]),
        )
        .account(
            account("b")
                .rate(30)
                .auth(METADATA)
                .project(P1, &["Harbor"]),
        )
        .yaml();
    let exporter = exporter(&yaml, &server).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let body = scrape(&exporter).await;
    exporter.shutdown().await;

    for a in ["a", "b"] {
        assert_eq!(
            value(&body, "hss_registry_statistics_up", &harbor(a)),
            Some(1.0)
        );
        assert_eq!(
            value(&body, "hss_registry_access_success", &harbor(a)),
            Some(7.0)
        );
    }
    let log = sim.log();
    let hss: Vec<_> = log.iter().filter(|e| e.service == Service::Hss).collect();
    assert!(hss.len() >= 20, "{} polls in a minute", hss.len());
    assert!(
        hss.iter()
            .all(|e| e.status == 200 && e.caller == AGENCY_CALLER),
        "not a single refusal: {:?}",
        hss.iter().map(|e| e.status).collect::<Vec<_>>()
    );
    // One budget for the agency, whichever key: 30 calls a minute across both accounts.
    assert_rate_within(&hss_requests(&log, AGENCY_CALLER), 30);
    let fetched = log
        .iter()
        .filter(|e| e.service == Service::Metadata && e.path == "/openstack/latest/securitykey")
        .count();
    assert!(
        (6..=16).contains(&fetched),
        "{fetched} keys fetched: renewed every 10 s or so, per account, not per poll"
    );
    let sessions = log
        .iter()
        .filter(|e| e.service == Service::Metadata && e.path == "/meta-data/latest/api/token")
        .count();
    assert_eq!(sessions, 2, "one session token per account, kept");
    let keys: HashSet<String> = sim
        .issued_temporary_keys()
        .into_iter()
        .map(|(ak, _, _)| ak)
        .collect();
    assert_eq!(keys.len(), fetched);
}

#[tokio::test(start_paused = true)]
async fn a_service_without_session_tokens_is_asked_without() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    sim.enable_metadata(Duration::from_secs(3600));
    for status in [404, 405, 503] {
        sim.set_metadata_token_status(Some(status));
        let yaml = Config::new()
            .poll("10s", "3s", "1h")
            .account(
                account("a")
                    .rate(60)
                    .auth(METADATA)
                    .project(P1, &["Harbor"]),
            )
            .yaml();
        let exporter = exporter(&yaml, &server).await;
        let body = wait_for(&exporter, Duration::from_secs(10), "values", |b| {
            value(b, "hss_registry_statistics_up", &harbor("a")) == Some(1.0)
        })
        .await;
        assert_eq!(
            value(&body, "hss_registry_access_fail", &harbor("a")),
            Some(3.0),
            "{status}"
        );
        exporter.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_metadata_service_is_an_auth_error_that_suspends_nothing() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    sim.enable_metadata(Duration::from_secs(3600));
    sim.set_metadata_failing(Some(500));
    let yaml = Config::new()
        .poll("10s", "3s", "1h")
        .account(
            account("a")
                .rate(60)
                .auth(METADATA)
                .project(P1, &["Harbor"]),
        )
        .yaml();
    let exporter = exporter(&yaml, &server).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let body = scrape(&exporter).await;
    let account = [("account", "a"), ("region", "cn-north-4")];
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor("a")),
        Some(0.0)
    );
    let failures = poll_errors(&body, "a", "cn-north-4", "auth").unwrap_or(0.0);
    assert!(failures >= 5.0, "every poll failed: {failures}");
    assert_eq!(
        value(&body, "hss_exporter_account_suspended", &account),
        Some(0.0),
        "no key was tried, so nothing is suspended"
    );
    let error = exporter.store.statuses()[0]
        .1
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains(&format!("metadata service {}", server.url())) && error.contains("HTTP 500"),
        "{error}"
    );
    assert!(sim.log().iter().all(|e| e.service != Service::Hss));

    // No agency: said in so many words.
    sim.set_metadata_failing(None);
    sim.set_metadata_agency(false);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let error = exporter.store.statuses()[0]
        .1
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(error.contains("this server has no agency"), "{error}");

    sim.set_metadata_agency(true);
    let body = wait_for(&exporter, Duration::from_secs(15), "recovery", |b| {
        value(b, "hss_registry_statistics_up", &harbor("a")) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&body, "hss_registry_access_success", &harbor("a")),
        Some(7.0)
    );
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_gateway_refuses_a_temporary_key_without_its_security_token() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    sim.add_temporary_key(
        "TMPAKSTATIC0001",
        "tmp-secret-1",
        "tmp-token-1",
        Duration::from_secs(3600),
    );
    let files = ConfigFile::new(&server.url());
    files.write_file("ak", "TMPAKSTATIC0001\n");
    files.write_file("sk", "tmp-secret-1\n");
    let without_token = Config::new()
        .poll("10s", "3s", "1h")
        .account(
            account("a")
                .rate(60)
                .auth(r#"{ ak_sk: { access_key_file: "{DIR}/ak", secret_key_file: "{DIR}/sk" } }"#)
                .project(P1, &["Harbor"]),
        )
        .yaml();
    files.write(&without_token);
    let settings = hss_exporter::config::load_file(&files.path(), &env()).unwrap();
    let exporter = start_exporter(&settings, hss_exporter::app::Options::default()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let error = exporter.store.statuses()[0]
        .1
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(error.contains("X-Security-Token is missing"), "{error}");
    exporter.shutdown().await;
}

/// `ak_sk` with `security_token_file`, from any other source of temporary keys: signed with
/// the token, and rotated in place by a reload.
#[tokio::test(start_paused = true)]
async fn temporary_keys_in_files_are_signed_with_their_token_and_rotated_by_reload() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    sim.add_temporary_key(
        "TMPAKFILE000001",
        "tmp-secret-1",
        "tmp-token-1",
        Duration::from_secs(120),
    );
    let files = ConfigFile::new(&server.url());
    let write_keys = |n: u32| {
        files.write_file("ak", &format!("TMPAKFILE00000{n}\n"));
        files.write_file("sk", &format!("tmp-secret-{n}\n"));
        files.write_file("token", &format!("tmp-token-{n}\n"));
    };
    write_keys(1);
    files.write(
        &Config::new()
            .poll("10s", "3s", "1h")
            .account(
                account("a")
                    .rate(60)
                    .auth(r#"{ ak_sk: { access_key_file: "{DIR}/ak", secret_key_file: "{DIR}/sk", security_token_file: "{DIR}/token" } }"#)
                    .project(P1, &["Harbor"]),
            )
            .yaml(),
    );
    let path = files.path();
    let loader: hss_exporter::app::Loader =
        std::sync::Arc::new(move || hss_exporter::config::load_file(&path, &env()));
    let settings = loader().unwrap();
    let options = hss_exporter::app::Options {
        loader: Some(loader),
        ..hss_exporter::app::Options::default()
    };
    let exporter = start_exporter(&settings, options).await;
    tokio::time::sleep(Duration::from_secs(100)).await;

    // The source hands out the next key before the first expires; the file is rewritten.
    sim.add_temporary_key(
        "TMPAKFILE000002",
        "tmp-secret-2",
        "tmp-token-2",
        Duration::from_secs(3600),
    );
    write_keys(2);
    exporter.reload().await.unwrap();
    tokio::time::sleep(Duration::from_secs(100)).await;
    let body = scrape(&exporter).await;
    exporter.shutdown().await;
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor("a")),
        Some(1.0)
    );
    let statuses: Vec<u16> = sim
        .log()
        .iter()
        .filter(|e| e.service == Service::Hss)
        .map(|e| e.status)
        .collect();
    assert!(statuses.len() >= 18, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
}
