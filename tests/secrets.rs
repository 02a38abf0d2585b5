//! No AK, SK, password or token ever shows in the logs (at trace level, HTTP libraries
//! included), the metrics or the status page, through successes, refusals and reloads.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType;
use hss_exporter::sim::Service;

fn config() -> String {
    let iam_wrong_password = IAM.replace("HSS_PASSWORD", "HSS_BAD_SK");
    Config::new()
        .poll("2s", "2s", "1m")
        .account(
            account("signed")
                .rate(120)
                .project(P1, &["Harbor", "Jfrog"]),
        )
        .account(
            account("refused")
                .auth(r#"{ ak_sk: { access_key_env: HSS_AK, secret_key_file: "{BAD_SK_FILE}" } }"#)
                .project(P2, &[]),
        )
        .account(account("token").auth(TOKEN).project(P2, &[]))
        .account(account("iam").rate(120).auth(IAM).project(P3, &[]))
        .account(
            account("wrong-password")
                .auth(&iam_wrong_password)
                .project(P3, &[]),
        )
        .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_logs_metrics_or_the_status_page() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, RegistryType::Harbor, 1, 2);
    let dir = tempfile::tempdir().unwrap();
    let bad_sk = dir.path().join("bad-sk");
    std::fs::write(&bad_sk, "file-secret-that-is-wrong\n").unwrap();
    let yaml = config()
        .replace("{API}", &server.url())
        .replace("{BAD_SK_FILE}", &bad_sk.display().to_string());
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hss-exporter"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--web.listen-address",
            &addr,
            "--log.level",
            "trace",
            "--web.enable-lifecycle",
        ])
        .env_clear()
        .envs(env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        all
    });

    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let url = format!("http://{addr}");
    let client = reqwest::Client::new();
    // Wait for every path to have been taken: success, refusal, IAM token, IAM refusal.
    loop {
        if let Ok(r) = client.get(format!("{url}/metrics")).send().await {
            let body = r.text().await.unwrap();
            let log = sim.log();
            let done = value(
                &body,
                "hss_exporter_account_suspended",
                &[("account", "refused"), ("region", "cn-north-4")],
            ) == Some(1.0)
                && value(
                    &body,
                    "hss_exporter_account_suspended",
                    &[("account", "wrong-password"), ("region", "cn-north-4")],
                ) == Some(1.0)
                && log
                    .iter()
                    .any(|e| e.service == Service::Iam && e.status == 201)
                && value(
                    &body,
                    "hss_registry_statistics_up",
                    &target("token", "cn-north-4", P2, "", "all"),
                ) == Some(1.0);
            seen.push(body);
            if done {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "scenario did not complete"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A revoked IAM token (401, then a fresh one) and a reload that re-reads the secret file.
    sim.revoke_issued_tokens();
    std::fs::write(&bad_sk, format!("{SK}\n")).unwrap();
    assert_eq!(
        client
            .post(format!("{url}/-/reload"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    for path in ["/metrics", "/", "/-/ready"] {
        seen.push(
            client
                .get(format!("{url}{path}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    child.wait().unwrap();
    let logs = String::from_utf8_lossy(&logs.join().unwrap()).into_owned();

    // The logs are really at trace level, HTTP client and server included.
    assert!(logs.contains("TRACE"), "trace logging was on");
    assert!(logs.contains("hyper"), "HTTP library traces are included");
    assert!(logs.contains("authentication refused") && logs.contains("obtained IAM token"));
    let log = sim.log();
    assert!(
        log.iter()
            .any(|e| e.service == Service::Hss && e.status == 401 && e.caller.is_empty()),
        "a revoked token was refused"
    );

    // "MIIsim" starts every IAM token the simulator issues.
    let secrets = [
        AK,
        SK,
        "static-token-1",
        "s3cret-password",
        "not-the-secret-key",
        "file-secret-that-is-wrong",
        "MIIsim",
    ];
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret:?} is in the logs");
        for page in &seen {
            assert!(!page.contains(secret), "{secret:?} is in a page");
        }
    }
}
