//! The web endpoints behind `--web.config.file`: TLS, client certificates, basic auth, and
//! web configs that are refused at start-up.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use hss_exporter::app::Options;
use hss_exporter::web::Security;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

fn config() -> String {
    Config::new()
        .account(account("prod").project(P1, &[]))
        .yaml()
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all as PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    stranger: (String, String),
}

fn ca() -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

fn leaf(ca: &(rcgen::Certificate, KeyPair), san: SanType) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![san];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.0, &ca.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let ca1 = ca();
    let ca2 = ca();
    Pki {
        ca: ca1.0.pem(),
        server: leaf(&ca1, SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))),
        client: leaf(&ca1, SanType::DnsName("scraper".try_into().unwrap())),
        stranger: leaf(&ca2, SanType::DnsName("scraper".try_into().unwrap())),
    }
}

/// Writes the server's certificate and key, the CA and `web.yml` (with `extra` in its
/// `tls_server_config`) next to each other; returns the path of `web.yml`.
fn write_web_config(files: &ConfigFile, pki: &Pki, extra: &str) -> PathBuf {
    files.write_file("server.crt", &pki.server.0);
    files.write_file("server.key", &pki.server.1);
    files.write_file("ca.crt", &pki.ca);
    // Relative paths are relative to the web config file, as in the exporter-toolkit.
    files.write_file(
        "web.yml",
        &format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}"),
    )
}

async fn start(web: &Path) -> (hss_exporter::Exporter, hss_exporter::sim::SimServer) {
    let (_sim, server) = sim().await;
    let security = Security::load(web).unwrap();
    let options = Options {
        web: Some(Arc::new(security)),
        ..Options::default()
    };
    (exporter_with(&config(), &server, options).await, server)
}

fn client(pki: &Pki, identity: Option<&(String, String)>) -> reqwest::Client {
    let mut b = http_builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap());
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn serves_https_with_a_certificate() {
    let files = ConfigFile::new(NO_API);
    let pki = pki();
    let (exporter, _server) =
        start(&write_web_config(&files, &pki, "  min_version: TLS13\n")).await;
    let url = format!("https://{}/metrics", exporter.addr);
    let r = client(&pki, None).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("hss_exporter_build_info"));
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = http()
        .get(format!("http://{}/metrics", exporter.addr))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    exporter.shutdown().await;
}

#[tokio::test]
async fn client_certificates_are_required_and_verified() {
    let files = ConfigFile::new(NO_API);
    let pki = pki();
    let web = write_web_config(
        &files,
        &pki,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let (exporter, _server) = start(&web).await;
    let url = format!("https://{}/metrics", exporter.addr);
    assert_eq!(
        client(&pki, Some(&pki.client))
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        client(&pki, None).get(&url).send().await.is_err(),
        "no client certificate: refused"
    );
    assert!(
        client(&pki, Some(&pki.stranger))
            .get(&url)
            .send()
            .await
            .is_err(),
        "certificate of another CA: refused"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn basic_auth_accepts_the_right_password_only() {
    let files = ConfigFile::new(NO_API);
    let pki = pki();
    let hash = bcrypt::hash("scrape-secret", 4).unwrap();
    let web = write_web_config(
        &files,
        &pki,
        &format!("basic_auth_users:\n  prometheus: \"{hash}\"\n"),
    );
    let (exporter, _server) = start(&web).await;
    let c = client(&pki, None);
    for path in ["/metrics", "/", "/-/healthy", "/nope"] {
        let url = format!("https://{}{path}", exporter.addr);
        let r = c.get(&url).send().await.unwrap();
        if path == "/nope" {
            assert_eq!(r.status(), 404);
            continue;
        }
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"hss-exporter\", charset=\"UTF-8\""
        );
        for (user, password) in [
            ("prometheus", "wrong"),
            ("nobody", "scrape-secret"),
            ("prometheus", ""),
        ] {
            let r = c
                .get(&url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path} {user}:{password}");
        }
        // Twice: the second answer comes from the cache and must be the same.
        for _ in 0..2 {
            let r = c
                .get(&url)
                .basic_auth("prometheus", Some("scrape-secret"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
        }
    }
    let body = c
        .get(format!("https://{}/metrics", exporter.addr))
        .basic_auth("prometheus", Some("scrape-secret"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains("scrape-secret") && !body.contains(&hash));
    exporter.shutdown().await;
}

#[tokio::test]
async fn bad_web_configs_are_refused_with_the_key_named() {
    let files = ConfigFile::new(NO_API);
    let pki = pki();
    let cases = [
        ("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "tls_server_config.cipher_suites: unknown field `cipher_suites`"),
        ("  client_auth_type: RequireAndVerifyClientCert\n", "tls_server_config.client_ca_file: required by client_auth_type \"RequireAndVerifyClientCert\""),
        ("  client_auth_type: RequireAnyClientCert\n", "tls_server_config.client_auth_type: RequireAnyClientCert (client certificates that are not verified) is not supported"),
        ("  client_auth_type: Sometimes\n", "tls_server_config.client_auth_type: unknown value \"Sometimes\""),
        ("  min_version: TLS10\n", "tls_server_config.min_version: TLS10 is not supported"),
        ("basic_auth_users:\n  prometheus: plaintext\n", "basic_auth_users.prometheus: not a bcrypt hash"),
    ];
    for (extra, wanted) in cases {
        let web = write_web_config(&files, &pki, extra);
        let err = Security::load(&web).unwrap_err().to_string();
        assert!(err.contains(wanted), "{err:?} lacks {wanted:?}");
    }
    let web = files.write_file(
        "web.yml",
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
    );
    let err = Security::load(&web).unwrap_err().to_string();
    assert!(
        err.contains("tls_server_config.cert_file: cannot read ") && err.contains("missing.crt"),
        "{err}"
    );
    files.write_file("server.key", &pki.client.1);
    let web = files.write_file(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let err = Security::load(&web).unwrap_err().to_string();
    assert!(err.contains("certificate and key do not fit"), "{err}");

    // The binary refuses to start with it, naming the flag and the key.
    let web = write_web_config(&files, &pki, "  min_version: TLS10\n");
    let out = run(&[
        "demo",
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.config.file",
        &web.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--web.config.file")
            && stderr.contains("min_version: TLS10 is not supported"),
        "{stderr}"
    );
}
