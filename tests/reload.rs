//! Reloading the configuration: targets added, removed and changed, a bad file that keeps
//! the running configuration, rotated secret files, and the reload endpoint.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hss_exporter::app::Options;
use hss_exporter::config;
use hss_exporter::model::RegistryType::*;
use hss_exporter::sim::SimServer;
use hss_exporter::Exporter;

/// Account `prod` with project P1 and these registry types, its secret key in the file
/// `sk`; then, if `old`, account `old`.
fn config_with(types: &[&str], old: bool) -> Config {
    let prod = account("prod")
        .rate(60)
        .auth(r#"{ ak_sk: { access_key_env: HSS_AK, secret_key_file: "{DIR}/sk" } }"#)
        .project(P1, types);
    let config = Config::new().poll("1m", "5s", "10m").account(prod);
    if old {
        config.account(account("old").auth(TOKEN).project(P2, &[]))
    } else {
        config
    }
}

/// The configuration the tests start with.
fn before() -> String {
    config_with(&["Harbor", "Jfrog"], true).yaml()
}

struct Setup {
    file: ConfigFile,
    _server: SimServer,
}

impl Setup {
    async fn start(&self, lifecycle: bool) -> Exporter {
        let path = self.file.path();
        let loader: hss_exporter::app::Loader = Arc::new(move || config::load_file(&path, &env()));
        let settings = loader().unwrap();
        let options = Options {
            loader: Some(loader),
            enable_lifecycle: lifecycle,
            ..Options::default()
        };
        start_exporter(&settings, options).await
    }
}

async fn setup(sk: &str) -> (hss_exporter::sim::Sim, Setup) {
    let (sim, server) = sim().await;
    let s = Setup {
        file: ConfigFile::new(&server.url()),
        _server: server,
    };
    s.file.write_file("sk", &format!("{sk}\n"));
    s.file.write(&before());
    (sim, s)
}

fn reload_ok(body: &str) -> Option<f64> {
    value(body, "hss_exporter_config_last_reload_successful", &[])
}

#[tokio::test(start_paused = true)]
async fn targets_added_removed_and_unchanged() {
    let (sim, s) = setup(SK).await;
    sim.set_stats(P1, None, Harbor, 1, 1);
    sim.set_stats(P1, None, Jfrog, 2, 2);
    sim.set_stats(P1, None, Other, 3, 3);
    let exporter = s.start(false).await;
    tokio::time::sleep(Duration::from_secs(45)).await;
    let body = scrape(&exporter).await;
    assert_eq!(reload_ok(&body), Some(1.0));
    let started_at = value(
        &body,
        "hss_exporter_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    let harbor = target("prod", "cn-north-4", P1, "", "Harbor");
    let jfrog = target("prod", "cn-north-4", P1, "", "Jfrog");
    let other = target("prod", "cn-north-4", P1, "", "Other");
    let old = target("old", "cn-north-4", P2, "", "all");
    assert_eq!(value(&body, "hss_registry_access_fail", &jfrog), Some(2.0));
    assert!(value(&body, "hss_registry_statistics_up", &old).is_some());
    let harbor_polls = |log: &[hss_exporter::sim::LogEntry]| {
        hss_requests(log, AK)
            .iter()
            .filter(|e| e.query.contains("Harbor"))
            .map(|e| e.at)
            .collect::<Vec<_>>()
    };
    let before = harbor_polls(&sim.log());
    assert_eq!(before.len(), 1);

    // Jfrog and the whole "old" account go; Other comes; Harbor stays as it was.
    s.file
        .write(&config_with(&["Harbor", "Other"], false).yaml());
    sim.set_stats(P1, None, Harbor, 5, 5); // not visible until Harbor's next regular poll
    exporter.reload().await.unwrap();
    let body = scrape(&exporter).await;
    assert_eq!(reload_ok(&body), Some(1.0));
    assert!(
        value(
            &body,
            "hss_exporter_config_last_reload_success_timestamp_seconds",
            &[]
        )
        .unwrap()
            >= started_at
    );
    for gone in [&jfrog, &old] {
        for metric in [
            "hss_registry_access_fail",
            "hss_registry_access_success",
            "hss_registry_statistics_up",
            "hss_registry_statistics_last_success_timestamp_seconds",
        ] {
            assert_eq!(
                value(&body, metric, gone),
                None,
                "{metric} {gone:?} removed at once"
            );
        }
    }
    assert!(
        !body.contains("account=\"old\""),
        "no series of the removed account remain:\n{body}"
    );
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor),
        Some(1.0),
        "unchanged target keeps its value"
    );

    tokio::time::sleep(Duration::from_secs(40)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_access_fail", &other),
        Some(3.0),
        "added target polled"
    );
    let after = harbor_polls(&sim.log());
    assert_eq!(after.len(), 2, "Harbor was not polled again by the reload");
    assert_eq!(
        after[1] - after[0],
        Duration::from_secs(60),
        "and kept its place in the schedule"
    );
    assert_eq!(value(&body, "hss_registry_access_fail", &harbor), Some(5.0));
    let old_polls = hss_requests(&sim.log(), "token-owner").len();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        hss_requests(&sim.log(), "token-owner").len(),
        old_polls,
        "removed account stopped polling"
    );
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_bad_file_keeps_the_running_configuration() {
    let (sim, s) = setup(SK).await;
    sim.set_stats(P1, None, Harbor, 1, 1);
    let exporter = s.start(false).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let first = value(
        &scrape(&exporter).await,
        "hss_exporter_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();

    for (broken, wanted) in [
        (
            config_with(&["Harbour"], true).yaml(),
            r#"accounts[0].projects[0].registry_types[0]: unknown value "Harbour""#,
        ),
        (
            before().replace("interval: 1m", "interval: 0s"),
            "poll.interval: must be greater than zero",
        ),
        ("accounts: [".to_string(), "config.yaml"),
    ] {
        s.file.write(&broken);
        let err = exporter.reload().await.unwrap_err();
        let err = err.to_string();
        assert!(err.contains(wanted), "{err}");
        let body = scrape(&exporter).await;
        assert_eq!(reload_ok(&body), Some(0.0));
        assert_eq!(
            value(
                &body,
                "hss_exporter_config_last_reload_success_timestamp_seconds",
                &[]
            ),
            Some(first)
        );
    }
    let polls = hss_requests(&sim.log(), AK).len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        hss_requests(&sim.log(), AK).len(),
        polls + 2,
        "the old configuration keeps polling"
    );
    assert_eq!(
        value(
            &scrape(&exporter).await,
            "hss_registry_statistics_up",
            &target("prod", "cn-north-4", P1, "", "Harbor")
        ),
        Some(1.0)
    );

    s.file.write(&before());
    exporter.reload().await.unwrap();
    assert_eq!(reload_ok(&scrape(&exporter).await), Some(1.0));
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_rotated_secret_file_ends_the_auth_suspension_on_reload() {
    let (sim, s) = setup("an-old-revoked-secret").await;
    let exporter = s.start(false).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let account = [("account", "prod"), ("region", "cn-north-4")];
    assert_eq!(
        value(
            &scrape(&exporter).await,
            "hss_exporter_account_suspended",
            &account
        ),
        Some(1.0)
    );
    assert_eq!(hss_requests(&sim.log(), AK).len(), 2);

    // The operator rotates the key in place and reloads: no restart, no 5-minute wait.
    s.file.write_file("sk", &format!("{SK}\n"));
    exporter.reload().await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_exporter_account_suspended", &account),
        Some(0.0)
    );
    assert_eq!(
        value(
            &body,
            "hss_registry_statistics_up",
            &target("prod", "cn-north-4", P1, "", "Harbor")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &body,
            "hss_registry_statistics_up",
            &target("prod", "cn-north-4", P1, "", "Jfrog")
        ),
        Some(1.0)
    );
    let reqs = hss_requests(&sim.log(), AK);
    assert_eq!(
        reqs.iter().map(|e| e.status).collect::<Vec<_>>(),
        vec![401, 401, 200, 200]
    );
    assert!(!body.contains("an-old-revoked-secret"));
    exporter.shutdown().await;
}

async fn post(exporter: &Exporter, method: reqwest::Method) -> (u16, String) {
    let url = format!("http://{}/-/reload", exporter.addr);
    fetch(method, &url).await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_reload_endpoint_needs_the_lifecycle_flag() {
    let (_sim, s) = setup(SK).await;
    let exporter = s.start(false).await;
    let (status, body) = post(&exporter, reqwest::Method::POST).await;
    assert_eq!(
        (status, body.as_str()),
        (
            403,
            "lifecycle API is not enabled (start with --web.enable-lifecycle)\n"
        )
    );
    exporter.shutdown().await;

    let exporter = s.start(true).await;
    assert_eq!(
        post(&exporter, reqwest::Method::POST).await,
        (200, "configuration reloaded\n".into())
    );
    assert_eq!(post(&exporter, reqwest::Method::PUT).await.0, 200);
    assert_eq!(post(&exporter, reqwest::Method::GET).await.0, 405);
    s.file
        .write(&config_with(&["Harbor", "Nexus"], true).yaml());
    let (status, body) = post(&exporter, reqwest::Method::POST).await;
    assert_eq!(status, 500);
    assert!(
        body.contains(r#"registry_types[1]: unknown value "Nexus""#),
        "{body}"
    );
    assert_eq!(reload_ok(&scrape(&exporter).await), Some(0.0));
    exporter.shutdown().await;
}
