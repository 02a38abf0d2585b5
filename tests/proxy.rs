//! The API through a forwarding proxy started by the test: by `proxy_url` (with a password
//! from a variable), by `HTTPS_PROXY` in the configuration's environment and in the process
//! environment of the binary, with `NO_PROXY` bypassing it. The endpoints are named
//! `hss.sim.test`, which only the proxy resolves: a call that did not pass it could not arrive.

mod common;

use std::time::Duration;

use common::*;
use hss_exporter::app::Options;
use hss_exporter::config;
use hss_exporter::model::RegistryType::Harbor;
use hss_exporter::sim::{Service, Sim, SimServer};

fn harbor(account: &str) -> Vec<(&str, &str)> {
    target(account, "cn-north-4", P1, "", "Harbor")
}

async fn https_sim(pki: &Pki, names: &[&str]) -> (Sim, SimServer) {
    let (sim, plain) = sim().await;
    drop(plain);
    let server = sim
        .start_tls(
            ([127, 0, 0, 1], 0).into(),
            pki.acceptor(names, Validity::Current),
        )
        .await
        .unwrap();
    sim.set_stats(P1, None, Harbor, 3, 7);
    (sim, server)
}

async fn start(yaml: &str, env: &config::Env) -> hss_exporter::Exporter {
    let settings = config::load_str(yaml, env).expect("valid config");
    start_exporter(&settings, Options::default()).await
}

#[tokio::test(start_paused = true)]
async fn proxy_url_with_a_password_carries_every_hss_and_iam_call() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    let proxy = TestProxy::start(&[("hss.sim.test", server.addr)], Some("probe:pr0xy-pa55")).await;
    let api = format!("http://hss.sim.test:{}", server.addr.port());
    let line = format!("proxy_url: \"http://probe@{}\"", proxy.addr);
    let yaml = Config::new()
        .poll("10s", "3s", "1h")
        .account(
            account("signed")
                .rate(60)
                .with(&line)
                .with("proxy_password_env: PROXY_PASSWORD")
                .project(P1, &["Harbor"]),
        )
        .account(
            account("iam")
                .rate(60)
                .auth(IAM)
                .with(&line)
                .with("proxy_password_env: PROXY_PASSWORD")
                .project(P1, &["Harbor"]),
        )
        .yaml()
        .replace("{API}", &api);
    let mut env = env();
    env.insert("PROXY_PASSWORD".into(), "pr0xy-pa55".into());
    // The environment's proxy is not the account's: proxy_url wins.
    env.insert("HTTP_PROXY".into(), "http://127.0.0.1:1".into());
    let exporter = start(&yaml, &env).await;
    let body = wait_for(&exporter, Duration::from_secs(10), "values", |b| {
        value(b, "hss_registry_statistics_up", &harbor("signed")) == Some(1.0)
            && value(b, "hss_registry_statistics_up", &harbor("iam")) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&body, "hss_registry_access_success", &harbor("iam")),
        Some(7.0)
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    exporter.shutdown().await;

    let passed = proxy.passed();
    let log = sim.log();
    let hss = log.iter().filter(|e| e.service == Service::Hss).count();
    let iam = log.iter().filter(|e| e.service == Service::Iam).count();
    assert!(hss >= 6 && iam >= 1, "{hss} HSS and {iam} IAM calls");
    let through = |method: &str, path: &str| {
        passed
            .iter()
            .filter(|p| p.method == method && p.status == 200 && p.target.contains(path))
            .count()
    };
    assert_eq!(
        through("GET", "/image/registries/statistics"),
        hss,
        "{passed:?}"
    );
    assert_eq!(through("POST", "/v3/auth/tokens"), iam, "{passed:?}");
    assert!(passed.iter().all(|p| p.status == 200), "{passed:?}");
    assert!(passed
        .iter()
        .all(|p| p.target.starts_with(&format!("{api}/"))));
}

#[tokio::test(start_paused = true)]
async fn https_proxy_from_the_environment_tunnels_and_no_proxy_bypasses_it() {
    let pki = Pki::new();
    let (sim, server) = https_sim(&pki, &["hss.sim.test", "127.0.0.1"]).await;
    let proxy = TestProxy::start(&[("hss.sim.test", server.addr)], None).await;
    let files = ConfigFile::new(&server.url());
    let ca = files.write_file("ca.pem", &pki.ca_pem());
    let tls = format!("tls: {{ ca_file: {:?} }}", ca.display().to_string());
    let config = |api: &str| {
        Config::new()
            .poll("10s", "3s", "1h")
            .account(account("prod").rate(60).with(&tls).project(P1, &["Harbor"]))
            .yaml()
            .replace("{API}", api)
    };
    let mut env = env();
    env.insert("https_proxy".into(), proxy.url(None));

    // Through the tunnel, to a name only the proxy knows.
    let exporter = start(
        &config(&format!("https://hss.sim.test:{}", server.addr.port())),
        &env,
    )
    .await;
    let body = wait_for(&exporter, Duration::from_secs(10), "values", |b| {
        value(b, "hss_registry_statistics_up", &harbor("prod")) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor("prod")),
        Some(3.0)
    );
    exporter.shutdown().await;
    let tunnels = proxy.passed();
    assert!(!tunnels.is_empty());
    assert!(
        tunnels.iter().all(|p| p.method == "CONNECT"
            && p.target == format!("hss.sim.test:{}", server.addr.port())
            && p.status == 200),
        "{tunnels:?}"
    );
    let calls = sim.log().len();
    assert!(calls >= 1);

    // NO_PROXY: the same proxy, bypassed for 127.0.0.1.
    env.insert("NO_PROXY".into(), "localhost,127.0.0.1".into());
    let exporter = start(&config(&server.url()), &env).await;
    wait_for(&exporter, Duration::from_secs(10), "values", |b| {
        value(b, "hss_registry_statistics_up", &harbor("prod")) == Some(1.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    exporter.shutdown().await;
    assert!(sim.log().len() > calls, "polled directly");
    assert_eq!(
        proxy.passed(),
        tunnels,
        "nothing more went through the proxy"
    );
}

/// The binary reads `HTTPS_PROXY` from its own environment (set for the child only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_honours_https_proxy_from_its_environment() {
    let pki = Pki::new();
    let (_sim, server) = https_sim(&pki, &["hss.sim.test"]).await;
    let proxy = TestProxy::start(&[("hss.sim.test", server.addr)], None).await;
    let api = format!("https://hss.sim.test:{}", server.addr.port());
    let files = ConfigFile::new(&api);
    let ca = files.write_file("ca.pem", &pki.ca_pem());
    files.write(
        &Config::new()
            .poll("10s", "3s", "1h")
            .account(
                account("prod")
                    .with(&format!(
                        "tls: {{ ca_file: {:?} }}",
                        ca.display().to_string()
                    ))
                    .project(P1, &["Harbor"]),
            )
            .yaml(),
    );
    let check = run_with_env(
        &["check-config", "--config", &files.arg()],
        &[("HTTPS_PROXY", &proxy.url(None))],
    )
    .await;
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.contains(&format!("proxy {} (from HTTPS_PROXY)", proxy.url(None))),
        "{stdout}"
    );
    let out = run_with_env(
        &["once", "--config", &files.arg()],
        &[("HTTPS_PROXY", &proxy.url(None))],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        value(&stdout, "hss_registry_access_success", &harbor("prod")),
        Some(7.0)
    );
    assert_eq!(proxy.passed().len(), 1, "{:?}", proxy.passed());
}

#[tokio::test]
async fn a_wrong_proxy_password_is_a_connect_error_that_does_not_show_the_password() {
    let (sim, server) = sim().await;
    let proxy = TestProxy::start(&[("hss.sim.test", server.addr)], Some("probe:right")).await;
    let yaml = Config::new()
        .poll("10s", "3s", "1h")
        .account(
            account("prod")
                .with("proxy_url_env: PROXY_URL")
                .project(P1, &["Harbor"]),
        )
        .yaml()
        .replace(
            "{API}",
            &format!("http://hss.sim.test:{}", server.addr.port()),
        );
    let mut env = env();
    env.insert("PROXY_URL".into(), proxy.url(Some("probe:wr0ng-secret")));
    let exporter = start(&yaml, &env).await;
    let body = wait_for(&exporter, Duration::from_secs(20), "a failed poll", |b| {
        value(b, "hss_registry_statistics_up", &harbor("prod")) == Some(0.0)
    })
    .await;
    let (_, page) = get(&exporter, "/").await;
    let error = exporter.store.statuses()[0]
        .1
        .last_error
        .clone()
        .unwrap_or_default();
    exporter.shutdown().await;
    assert!(sim.log().is_empty());
    assert!(proxy.passed().iter().all(|p| p.status == 407));
    assert!(error.contains("407"), "{error}");
    for text in [&body, &page, &error] {
        assert!(!text.contains("wr0ng-secret"));
    }
}

#[tokio::test(start_paused = true)]
async fn project_discovery_goes_through_the_accounts_proxy_too() {
    let (sim, server) = sim().await;
    sim.put_iam_project(P1, "cn-north-4", true);
    sim.set_stats(P1, None, Harbor, 3, 7);
    let proxy = TestProxy::start(&[("hss.sim.test", server.addr)], None).await;
    let api = format!("http://hss.sim.test:{}", server.addr.port());
    let line = format!("proxy_url: \"http://{}\"", proxy.addr);
    let yaml = Config::new()
        .poll("10s", "3s", "1h")
        .account(
            account("disc")
                .rate(60)
                .with(&line)
                .discover("{ regions: [cn-north-4], registry_types: [Harbor] }"),
        )
        .yaml()
        .replace("{API}", &api);
    // Without the proxy, hss.sim.test does not resolve: discovery could not list anything.
    let exporter = start(&yaml, &env()).await;
    let body = wait_for(&exporter, Duration::from_secs(10), "discovered", |b| {
        value(b, "hss_registry_statistics_up", &harbor("disc")) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&body, "hss_registry_access_success", &harbor("disc")),
        Some(7.0)
    );
    exporter.shutdown().await;
    let passed = proxy.passed();
    let listed = passed
        .iter()
        .filter(|p| p.method == "GET" && p.target == format!("{api}/v3/auth/projects"))
        .count();
    assert_eq!(listed, 1, "{passed:?}");
    assert!(passed.iter().all(|p| p.status == 200), "{passed:?}");
}
