//! The binary as an operator runs it: check-config, once, demo, signals and bad input.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType;

const BIN: &str = env!("CARGO_BIN_EXE_hss-exporter");

fn config_file(dir: &tempfile::TempDir, yaml: &str) -> String {
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(std::string::ToString::to_string).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_clear()
            .envs(env())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Account `prod` with project P1 and these registry types.
fn config(types: &[&str]) -> Config {
    Config::new().account(account("prod").project(P1, types))
}

#[tokio::test]
async fn check_config_prints_targets_and_the_minimum_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        &dir,
        &config(ALL_TYPES)
            .yaml()
            .replace("{API}", "http://127.0.0.1:1"),
    );
    let out = run(&["check-config", "--config", &path]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("configuration OK: 1 accounts, 6 targets, poll.interval 1m"),
        "{stdout}"
    );
    assert!(stdout.contains("account prod (region cn-north-4, ak_sk auth, 5 calls/min, endpoint http://127.0.0.1:1/): 6 targets, minimum interval 1m 12s"), "{stdout}");
    assert!(stdout.contains(&format!("  prod/cn-north-4/{P1}/SwrEnterprise")));
    assert!(stdout.contains("warning: account \"prod\": 6 targets at 5 calls/min need a poll.interval of at least 1m 12s"), "{stdout}");
    assert!(
        !stdout.contains(SK) && !stdout.contains(AK),
        "no secret printed"
    );
}

#[tokio::test]
async fn bad_configs_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = config(ALL_TYPES)
        .yaml()
        .replace("{API}", "http://127.0.0.1:1");
    let cases = [
        (
            good.replace("Harbor,", "Harbour,"),
            r#"accounts[0].projects[0].registry_types[0]: unknown value "Harbour""#,
        ),
        (
            good.replace("timeout: 2s,", "timeout: 2s, retries: 3,"),
            "poll.retries: unknown field `retries`",
        ),
        (
            good.replace("HSS_SK", "NO_SUCH_VAR"),
            r#"accounts[0].auth.ak_sk.secret_key_env: environment variable "NO_SUCH_VAR" is not set"#,
        ),
        (
            good.replace("interval: 1m", "interval: 0s"),
            "poll.interval: must be greater than zero",
        ),
        ("accounts: [".to_string(), "config.yaml"),
    ];
    for (yaml, wanted) in cases {
        let path = config_file(&dir, &yaml);
        for command in ["check-config", "once"] {
            let out = run(&[command, "--config", &path]).await;
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
            assert!(
                stderr.contains(wanted),
                "{command}: {stderr:?} lacks {wanted:?}"
            );
            assert_eq!(stderr.lines().count(), 1, "one problem, one line: {stderr}");
        }
    }
    let out = run(&["--config", "/nonexistent/config.yaml"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/config.yaml"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--log.level", "loud", "check-config"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--log.level"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_polls_every_target_prints_the_exposition_and_reports_failures() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, RegistryType::Harbor, 1, 4);
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(&["Harbor", "Jfrog"])
        .yaml()
        .replace("{API}", &server.url());
    let path = config_file(&dir, &yaml);
    let out = run(&["once", "--config", &path]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        value(
            &stdout,
            "hss_registry_access_fail",
            &target("prod", "cn-north-4", P1, "", "Harbor")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &stdout,
            "hss_registry_access_success",
            &target("prod", "cn-north-4", P1, "", "Jfrog")
        ),
        Some(0.0)
    );
    assert_eq!(hss_requests(&sim.log(), AK).len(), 2);

    sim.add_fault(
        hss_exporter::sim::FaultRule::always(hss_exporter::sim::Fault::Status(400))
            .registry_type("Jfrog"),
    );
    let out = run(&["once", "--config", &path]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("1 of 2 targets failed"),
        "{}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        value(
            &stdout,
            "hss_registry_statistics_up",
            &target("prod", "cn-north-4", P1, "", "Jfrog")
        ),
        Some(0.0)
    );
    assert_eq!(
        poll_errors(&stdout, "prod", "cn-north-4", "http_4xx"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_scenario_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["demo", "--web.listen-address", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/metrics"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();

    let harbor = target(
        "prod",
        "cn-north-4",
        hss_exporter::demo::PROD_PROJECT,
        "",
        "Harbor",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let ready = value(
            &body,
            "hss_registry_statistics_up",
            &target(
                "staging",
                "ap-southeast-1",
                hss_exporter::demo::STAGING_PROJECT,
                "",
                "all",
            ),
        ) == Some(1.0)
            && value(&body, "hss_registry_access_fail", &harbor).is_some();
        if ready || std::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        value(&body, "hss_registry_access_fail", &harbor).unwrap() >= 2.0,
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "hss_registry_access_fail",
            &target(
                "prod",
                "cn-north-4",
                hss_exporter::demo::PROD_PROJECT,
                "",
                "SwrPrivate"
            )
        ),
        Some(0.0)
    );

    let pid = child.id().to_string();
    let started = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_example_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "pw\n").unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"))
            .unwrap();
    let path = config_file(
        &dir,
        &example.replace("/run/secrets/hss-password", &password.display().to_string()),
    );
    let out = run(&["check-config", "--config", &path]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("configuration OK: 2 accounts, 4 targets, poll.interval 5m"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  prod/cn-north-4/0123456789abcdef0123456789abcdef/eps=all_granted_eps/Harbor"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("account staging (region ap-southeast-1, iam_password auth"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_configuration() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, RegistryType::Harbor, 1, 4);
    let dir = tempfile::tempdir().unwrap();
    let yaml = |types: &[&str]| {
        Config::new()
            .poll("2s", "2s", "5m")
            .account(account("prod").rate(60).project(P1, types))
            .yaml()
            .replace("{API}", &server.url())
    };
    let path = config_file(&dir, &yaml(&["Harbor", "Jfrog"]));
    let mut child = Command::new(BIN)
        .args([
            "--config",
            &path,
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.format",
            "json",
        ])
        .env_clear()
        .envs(env())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("start-up log line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(addr) = v["fields"]["addr"].as_str() {
            break addr.to_string();
        }
    };
    let url = format!("http://{addr}/metrics");
    let jfrog = target("prod", "cn-north-4", P1, "", "Jfrog");
    let scrape_until = |ready: Box<dyn Fn(&str) -> bool + Send>| {
        let url = url.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
                if ready(&body) {
                    return body;
                }
                assert!(std::time::Instant::now() < deadline, "not reached:\n{body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let j = jfrog.clone();
    scrape_until(Box::new(move |b| {
        value(b, "hss_registry_statistics_up", &j) == Some(1.0)
    }))
    .await;

    std::fs::write(&path, yaml(&["Harbor"])).unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let j = jfrog.clone();
    let body = scrape_until(Box::new(move |b| {
        value(b, "hss_registry_statistics_up", &j).is_none()
    }))
    .await;
    assert_eq!(
        value(&body, "hss_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &body,
            "hss_registry_access_fail",
            &target("prod", "cn-north-4", P1, "", "Harbor")
        ),
        Some(1.0)
    );

    std::fs::write(&path, "accounts: [").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    scrape_until(Box::new(|b| {
        value(b, "hss_exporter_config_last_reload_successful", &[]) == Some(0.0)
    }))
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "a bad reload does not stop the exporter"
    );

    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let logs: Vec<String> = rx.try_iter().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("reload failed, the running configuration stays")),
        "{logs:?}"
    );
    assert!(
        !logs.iter().any(|l| l.contains(SK)),
        "no secret in the logs"
    );
}
