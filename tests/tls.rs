//! The API over HTTPS with a private CA made in the test: trusted through `tls.ca_file`
//! (or `SSL_CERT_FILE`, the system store's override), refused without it with reason `tls`
//! and a message naming the host and the problem, and `insecure_skip_verify` flagged.

mod common;

use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType::Harbor;
use hss_exporter::sim::SimServer;

/// A simulator over HTTPS with a certificate for `names`, signed by `pki`.
async fn https_sim(
    pki: &Pki,
    names: &[&str],
    validity: Validity,
) -> (hss_exporter::sim::Sim, SimServer) {
    let (sim, plain) = sim().await;
    drop(plain);
    let server = sim
        .start_tls(([127, 0, 0, 1], 0).into(), pki.acceptor(names, validity))
        .await
        .unwrap();
    sim.set_stats(P1, None, Harbor, 3, 7);
    (sim, server)
}

fn config(extra: Option<&str>) -> String {
    let mut a = account("prod").rate(60).project(P1, &["Harbor"]);
    if let Some(line) = extra {
        a = a.with(line);
    }
    Config::new().poll("10s", "3s", "1h").account(a).yaml()
}

fn harbor() -> Vec<(&'static str, &'static str)> {
    target("prod", "cn-north-4", P1, "", "Harbor")
}

#[tokio::test(start_paused = true)]
async fn a_private_ca_in_ca_file_gives_exact_values() {
    let pki = Pki::new();
    let (_sim, server) = https_sim(&pki, &["127.0.0.1"], Validity::Current).await;
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let files = ConfigFile::new(&server.url());
    let ca = files.write_file("ca.pem", &pki.ca_pem());
    let yaml = config(Some(&format!(
        "tls: {{ ca_file: {:?} }}",
        ca.display().to_string()
    )));
    let exporter = exporter(&yaml, &server).await;
    let body = wait_for(
        &exporter,
        Duration::from_secs(10),
        "values over HTTPS",
        |b| value(b, "hss_registry_statistics_up", &harbor()) == Some(1.0),
    )
    .await;
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor()),
        Some(3.0)
    );
    assert_eq!(
        value(&body, "hss_registry_access_success", &harbor()),
        Some(7.0)
    );
    assert_eq!(
        poll_errors(&body, "prod", "cn-north-4", "tls"),
        Some(0.0),
        "the tls reason exists from the start"
    );
    assert!(exporter.store.insecure_tls().is_empty());
    exporter.shutdown().await;
}

/// A case: its name, the certificate's names and validity, whether `ca_file` is set, and
/// the words the error must hold.
type Case = (
    &'static str,
    &'static [&'static str],
    Validity,
    bool,
    &'static [&'static str],
);

/// The certificate problems a user meets, each with the words that must name it.
#[tokio::test(start_paused = true)]
async fn an_untrusted_expired_or_misnamed_certificate_is_a_tls_error_naming_host_and_problem() {
    let pki = Pki::new();
    let cases: [Case; 3] = [
        (
            "no ca_file",
            &["127.0.0.1"],
            Validity::Current,
            false,
            &["unknown issuer", "tls.ca_file"],
        ),
        (
            "expired",
            &["127.0.0.1"],
            Validity::Expired,
            true,
            &["expired at 2021-01-01T00:00:00Z"],
        ),
        (
            "wrong name",
            &["hss.other.example"],
            Validity::Current,
            true,
            &["wrong name", "not valid for 127.0.0.1", "hss.other.example"],
        ),
    ];
    for (case, names, validity, with_ca, words) in cases {
        let (sim, server) = https_sim(&pki, names, validity).await;
        let files = ConfigFile::new(&server.url());
        let ca = files.write_file("ca.pem", &pki.ca_pem());
        let line = format!("tls: {{ ca_file: {:?} }}", ca.display().to_string());
        let yaml = config(with_ca.then_some(line.as_str()));
        let exporter = exporter(&yaml, &server).await;
        let body = wait_for(&exporter, Duration::from_secs(30), case, |b| {
            poll_errors(b, "prod", "cn-north-4", "tls").is_some_and(|n| n >= 1.0)
        })
        .await;
        assert_eq!(
            value(&body, "hss_registry_statistics_up", &harbor()),
            Some(0.0),
            "{case}"
        );
        for reason in ["connect", "timeout", "auth"] {
            assert_eq!(
                poll_errors(&body, "prod", "cn-north-4", reason),
                Some(0.0),
                "{case}: not a {reason} error"
            );
        }
        assert_eq!(
            value(
                &body,
                "hss_exporter_api_requests_total",
                &[
                    ("account", "prod"),
                    ("region", "cn-north-4"),
                    ("code", "tls")
                ]
            ),
            Some(1.0),
            "{case}: one request, not retried: a certificate does not heal in 2 s"
        );
        let statuses = exporter.store.statuses();
        let error = statuses[0].1.last_error.clone().unwrap_or_default();
        let host = format!("TLS handshake with 127.0.0.1:{} failed", server.addr.port());
        assert!(error.contains(&host), "{case}: {error}");
        for word in words {
            assert!(error.contains(word), "{case}: {word:?} not in {error}");
        }
        assert!(sim.log().is_empty(), "{case}: no request reached the API");
        exporter.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn insecure_skip_verify_accepts_any_certificate_and_is_flagged() {
    let pki = Pki::new();
    let (_sim, server) = https_sim(&pki, &["hss.other.example"], Validity::Expired).await;
    let exporter = exporter(
        &config(Some("tls: { insecure_skip_verify: true }")),
        &server,
    )
    .await;
    let body = wait_for(&exporter, Duration::from_secs(10), "values", |b| {
        value(b, "hss_registry_statistics_up", &harbor()) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&body, "hss_registry_access_success", &harbor()),
        Some(7.0)
    );
    let flagged = exporter.store.insecure_tls();
    assert_eq!(flagged.len(), 1);
    assert_eq!(
        (flagged[0].account.as_str(), flagged[0].region.as_str()),
        ("prod", "cn-north-4")
    );
    assert_eq!(
        flagged[0].endpoint,
        format!("127.0.0.1:{}", server.addr.port())
    );
    let page = status(&exporter).await;
    assert_eq!(
        page["insecure_tls"][0]["account"], "prod",
        "the status page says so"
    );
    exporter.shutdown().await;
}

/// The system trust store is the default: `SSL_CERT_FILE` (set for the child process only)
/// makes the private CA trusted without `ca_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_trust_store_honours_ssl_cert_file() {
    let pki = Pki::new();
    let (_sim, server) = https_sim(&pki, &["127.0.0.1"], Validity::Current).await;
    let files = ConfigFile::new(&server.url());
    let ca = files.write_file("ca.pem", &pki.ca_pem());
    files.write(&config(None));

    let out = run(&["once", "--config", &files.arg()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            r#"hss_exporter_poll_errors_total{account="prod",reason="tls",region="cn-north-4"} 1"#
        ),
        "{stdout}"
    );

    let ca = ca.display().to_string();
    let out = run_with_env(
        &["once", "--config", &files.arg()],
        &[("SSL_CERT_FILE", &ca)],
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
        value(&stdout, "hss_registry_access_success", &harbor()),
        Some(7.0)
    );
}
