//! The binary as an operator runs it: check-config, once, demo, signals and bad input.

mod common;

use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Account `prod` with project P1 and these registry types.
fn config(types: &[&str]) -> Config {
    Config::new().account(account("prod").project(P1, types))
}

#[tokio::test]
async fn check_config_prints_targets_and_the_minimum_interval() {
    let file = ConfigFile::new(NO_API);
    file.write(&config(ALL_TYPES).yaml());
    let out = run(&["check-config", "--config", &file.arg()]).await;
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
    let file = ConfigFile::new(NO_API);
    let good = config(ALL_TYPES).yaml();
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
        file.write(&yaml);
        for command in ["check-config", "once"] {
            let out = run(&[command, "--config", &file.arg()]).await;
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
    let file = ConfigFile::new(&server.url());
    file.write(&config(&["Harbor", "Jfrog"]).yaml());
    let out = run(&["once", "--config", &file.arg()]).await;
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
    let out = run(&["once", "--config", &file.arg()]).await;
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
    let mut demo = Running::reading_stdout(&["demo", "--web.listen-address", "127.0.0.1:0"]);
    let url = demo
        .find_line(
            Duration::from_secs(10),
            "the demo's metrics URL",
            metrics_url,
        )
        .await;

    let harbor = target(
        "prod",
        "cn-north-4",
        hss_exporter::demo::PROD_PROJECT,
        "",
        "Harbor",
    );
    let staging = target(
        "staging",
        "ap-southeast-1",
        hss_exporter::demo::STAGING_PROJECT,
        "",
        "all",
    );
    let body = wait_for_url(
        &url,
        Duration::from_secs(30),
        "staging up and a Harbor value",
        |body| {
            value(body, "hss_registry_statistics_up", &staging) == Some(1.0)
                && value(body, "hss_registry_access_fail", &harbor).is_some()
        },
    )
    .await;
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

    let started = std::time::Instant::now();
    let (status, _) = demo.stop(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_example_config_is_valid() {
    let file = ConfigFile::new(NO_API);
    file.write_file("password", "pw\n");
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"))
            .unwrap();
    file.write(&example.replace("/run/secrets/hss-password", "{DIR}/password"));
    let out = run(&["check-config", "--config", &file.arg()]).await;
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
    let yaml = |types: &[&str]| {
        Config::new()
            .poll("2s", "2s", "5m")
            .account(account("prod").rate(60).project(P1, types))
            .yaml()
    };
    let file = ConfigFile::new(&server.url());
    file.write(&yaml(&["Harbor", "Jfrog"]));
    let mut exporter = Running::reading_stderr(&[
        "--config",
        &file.arg(),
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.format",
        "json",
    ]);
    let addr = exporter
        .find_line(
            Duration::from_secs(10),
            "the address in the start-up log",
            |line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
                v["addr"].as_str().map(str::to_string)
            },
        )
        .await;
    let url = format!("http://{addr}/metrics");
    let jfrog = target("prod", "cn-north-4", P1, "", "Jfrog");
    let within = Duration::from_secs(15);
    wait_for_url(&url, within, "Jfrog up", |b| {
        value(b, "hss_registry_statistics_up", &jfrog) == Some(1.0)
    })
    .await;

    file.write(&yaml(&["Harbor"]));
    exporter.signal("HUP");
    let body = wait_for_url(&url, within, "Jfrog gone after SIGHUP", |b| {
        value(b, "hss_registry_statistics_up", &jfrog).is_none()
    })
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

    file.write("accounts: [");
    exporter.signal("HUP");
    wait_for_url(&url, within, "the failed reload reported", |b| {
        value(b, "hss_exporter_config_last_reload_successful", &[]) == Some(0.0)
    })
    .await;
    assert!(
        exporter.is_running(),
        "a bad reload does not stop the exporter"
    );

    let (status, logs) = exporter.stop(Duration::from_secs(10)).await;
    assert!(status.success());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_the_moment_the_server_answers_never_kills_it() {
    let (_sim, server) = sim().await;
    let file = one_target(&server);
    for round in 0..5 {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut exporter =
            Running::reading_stderr(&["--config", &file.arg(), "--web.listen-address", &addr]);
        let healthy = format!("http://{addr}/-/healthy");
        // As a deploy script would: reload the moment the exporter answers.
        eventually(Duration::from_secs(10), "the first answer", || async {
            fetch(reqwest::Method::GET, &healthy).await.map(|_| ())
        })
        .await;
        exporter.signal("HUP");
        wait_for_url(
            &format!("http://{addr}/metrics"),
            Duration::from_secs(10),
            "the reload counted",
            |b| value(b, "hss_exporter_config_last_reload_successful", &[]) == Some(1.0),
        )
        .await;
        assert!(exporter.is_running(), "round {round}: SIGHUP killed it");
        let (status, _) = exporter.stop(Duration::from_secs(10)).await;
        assert!(status.success(), "round {round}: {status}");
    }
}

/// `key=value` pairs of a logfmt line (quoted values unescaped).
fn logfmt(line: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut rest = line.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            value.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let (v, n) = after.split_once(' ').unwrap_or((after, ""));
            (v.to_string(), n)
        };
        out.insert(key.trim().to_string(), value);
        rest = next.trim_start();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_flag_two_listen_addresses_a_telemetry_path_and_logfmt_logs() {
    let (_sim, server) = sim().await;
    let file = one_target(&server);
    let (a, b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut exporter = Running::reading_stderr(&[
        "--config.file",
        &file.arg(),
        "--web.listen-address",
        &a,
        "--web.listen-address",
        &b,
        "--web.telemetry-path",
        "/prom",
    ]);
    // stderr is not a terminal: logfmt, with ts, level and msg first.
    let started = exporter
        .find_line(Duration::from_secs(10), "the start-up line", |line| {
            let fields = logfmt(line);
            (fields.get("msg").map(String::as_str) == Some("exporter started")).then_some(fields)
        })
        .await;
    assert!(
        humantime::parse_rfc3339(&started["ts"]).is_ok(),
        "ts is RFC 3339: {started:?}"
    );
    assert_eq!(started["level"], "info");
    assert_eq!(started["addrs"], format!("{a}, {b}"));
    for addr in [&a, &b] {
        wait_for_url(
            &format!("http://{addr}/prom"),
            Duration::from_secs(10),
            "metrics at the telemetry path",
            |body| body.contains("hss_exporter_build_info"),
        )
        .await;
        let (status, _) = fetch(reqwest::Method::GET, &format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert_eq!(status, 404, "/metrics moved to /prom");
    }
    let (status, lines) = exporter.stop(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    for line in lines.iter().filter(|l| !l.is_empty()) {
        let fields = logfmt(line);
        assert!(
            ["ts", "level", "msg"]
                .iter()
                .all(|k| fields.contains_key(*k)),
            "not a logfmt line with ts, level and msg: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_port_listens_on_ipv6_and_ipv4() {
    let (_sim, server) = sim().await;
    let file = one_target(&server);
    let port = free_port();
    let exporter = Running::reading_stderr(&[
        "--config.file",
        &file.arg(),
        "--web.listen-address",
        &format!(":{port}"),
    ]);
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let mut urls = vec![format!("http://127.0.0.1:{port}/-/healthy")];
    if ipv6 {
        urls.push(format!("http://[::1]:{port}/-/healthy"));
    } else {
        eprintln!("no IPv6 loopback here: checked IPv4 only");
    }
    for url in &urls {
        wait_for_url(url, Duration::from_secs(10), "an answer", |b| b == "OK\n").await;
    }
    let (status, _) = exporter.stop(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

/// A configuration file with one target on the simulator.
fn one_target(server: &hss_exporter::sim::SimServer) -> ConfigFile {
    let file = ConfigFile::new(&server.url());
    file.write(
        &Config::new()
            .account(account("prod").project(P1, &["Harbor"]))
            .yaml(),
    );
    file
}

#[tokio::test]
async fn check_config_shows_stack_endpoints_proxies_and_tls_trust() {
    let file = ConfigFile::new(NO_API);
    let pki = Pki::new();
    let ca = file.write_file("ca.pem", &pki.ca_pem());
    file.write(&format!(
        r#"
accounts:
  - name: onprem
    region: region-a
    cloud: stack.example.com
    proxy_url: "http://probe@proxy.example.com:3128"
    proxy_password_env: HSS_PASSWORD
    no_proxy: ".example.com"
    tls: {{ ca_file: {ca:?} }}
    auth: {{ iam_password: {{ domain: acme, user: ops, password_env: HSS_PASSWORD }} }}
    projects: [{{ project_id: {P1} }}]
  - name: agency
    region: cn-north-4
    tls: {{ insecure_skip_verify: true }}
    auth: {{ metadata: {{}} }}
    projects: [{{ project_id: {P2} }}]
"#
    ));
    let out = run(&["check-config", "--config", &file.arg()]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let onprem = format!(
        "account onprem (region region-a, iam_password auth, 5 calls/min, endpoint https://hss-api.region-a.stack.example.com/, iam https://iam-apigateway-proxy.stack.example.com/v3, proxy http://probe@proxy.example.com:3128 (from proxy_url) except \".example.com\", trusts the system CAs and 1 from {}): 1 targets",
        ca.display()
    );
    assert!(stdout.contains(&onprem), "{stdout}");
    assert!(
        stdout.contains("account agency (region cn-north-4, metadata auth, 5 calls/min, endpoint https://hss.cn-north-4.myhuaweicloud.com/, metadata http://169.254.169.254/, TLS VERIFICATION OFF (insecure_skip_verify)): 1 targets"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret-password"), "{stdout}");

    // What is wrong, one line each, with the key path; never the proxy password.
    file.write(&format!(
        r#"
accounts:
  - name: onprem
    region: region-a
    cloud: "stack example"
    proxy_url: "http://probe:inline-secret@proxy.example.com:3128"
    tls: {{ ca_file: "{{DIR}}/nope.pem" }}
    auth: {{ metadata: {{ endpoint: "ftp://x" }} }}
    projects: [{{ project_id: {P1} }}]
"#
    ));
    let out = run(&["check-config", "--config", &file.arg()]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for line in [
        r#"accounts[0].cloud: "stack example" is not a domain name"#,
        "accounts[0].proxy_url: holds a password, which the configuration file must not",
        "accounts[0].tls.ca_file: cannot read",
        r#"accounts[0].auth.metadata.endpoint: "ftp://x" is not an http(s) base URL"#,
    ] {
        assert!(stderr.contains(line), "{line:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains("inline-secret"), "{stderr}");
}
