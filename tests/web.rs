//! The HTTP side: endpoints, methods, the status page, and `promtool check metrics`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType;

fn config() -> String {
    Config::new()
        .account(
            account("prod")
                .rate(60)
                .project_in(P1, Some("<b>eps</b>"), &["Harbor", "Jfrog"]),
        )
        .yaml()
}

#[tokio::test]
async fn serves_metrics_health_readiness_and_a_status_page() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, Some("<b>eps</b>"), RegistryType::Harbor, 2, 3);
    let exporter = exporter(&config(), &server).await;
    let addr = exporter.addr;
    let labels = target("prod", "cn-north-4", P1, "<b>eps</b>", "Harbor");
    wait_for(&exporter, Duration::from_secs(10), "Harbor's value", |b| {
        value(b, "hss_registry_access_fail", &labels) == Some(2.0)
    })
    .await;

    let r = request(addr, reqwest::Method::GET, "/metrics").await;
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("# HELP hss_registry_access_fail Image registries connected to HSS whose access is abnormal (fail_num), as of the last successful poll."));
    assert!(body.contains("# TYPE hss_exporter_api_request_duration_seconds histogram"));
    assert!(body.contains("hss_exporter_build_info{revision="));
    // Built from a checkout: the revision is its commit (unless the environment named one).
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let (Some(head), Err(_)) = (head, std::env::var("HSS_EXPORTER_REVISION")) {
        assert!(
            body.contains(&format!("hss_exporter_build_info{{revision=\"{head}\",")),
            "build_info carries the commit {head}"
        );
    }
    assert!(
        body.contains("process_resident_memory_bytes "),
        "process metrics"
    );

    assert_eq!(get(&exporter, "/-/healthy").await, (200, "OK\n".into()));
    assert_eq!(get(&exporter, "/-/ready").await, (200, "ready\n".into()));
    assert_eq!(get(&exporter, "/nope").await.0, 404);
    assert_eq!(get(&exporter, "/metrics/extra").await.0, 404);
    let r = request(addr, reqwest::Method::POST, "/metrics").await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    assert_eq!(
        request(addr, reqwest::Method::DELETE, "/").await.status(),
        405
    );
    let r = request(addr, reqwest::Method::HEAD, "/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().is_empty());

    let (status, page) = get(&exporter, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>hss-exporter</title>") && page.contains("status.json"));
    assert!(
        !page.contains("eps"),
        "the page is a shell; its data comes as JSON"
    );

    let (status, json) = get(&exporter, "/status.json").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["telemetry_path"], "/metrics");
    let accounts = v["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1);
    let prod = &accounts[0];
    assert_eq!(
        (&prod["account"], &prod["region"]),
        (&"prod".into(), &"cn-north-4".into())
    );
    assert_eq!(prod["counts"]["targets"], 2);
    assert_eq!(prod["budget"]["limit"], 60);
    assert!(prod["budget"]["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("access key #") && !n.contains(AK)));
    let harbor = prod["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["registry_type"] == "Harbor")
        .expect("Harbor is listed");
    assert_eq!(
        harbor["enterprise_project_id"], "<b>eps</b>",
        "JSON carries labels as they are"
    );
    assert_eq!(
        (&harbor["state"], &harbor["fail"], &harbor["success"]),
        (&"up".into(), &2.into(), &3.into())
    );
    assert!(
        harbor["next_poll_in_s"].as_i64().is_some_and(|s| s > 0),
        "{harbor}"
    );
    assert!(harbor["last_error"].is_null());
    assert_eq!(
        request(addr, reqwest::Method::POST, "/status.json")
            .await
            .status(),
        405
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn shuts_down_promptly_and_stops_listening() {
    let (_sim, server) = sim().await;
    let exporter = exporter(&config(), &server).await;
    let addr = exporter.addr;
    let started = std::time::Instant::now();
    exporter.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .is_err());
}

/// `promtool check metrics` lints names, HELP texts, units and label use.
#[tokio::test]
async fn promtool_finds_nothing_to_complain_about() {
    let required = std::env::var("HSS_EXPORTER_REQUIRE_PROMETHEUS").as_deref() == Ok("1");
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            !required,
            "promtool is required (HSS_EXPORTER_REQUIRE_PROMETHEUS=1) but not installed"
        );
        eprintln!("skipped: promtool not installed (Debian package prometheus)");
        return;
    }
    let (sim, server) = sim().await;
    sim.set_stats(P1, Some("<b>eps</b>"), RegistryType::Harbor, 2, 3);
    let exporter = exporter(&config(), &server).await;
    let labels = target("prod", "cn-north-4", P1, "<b>eps</b>", "Harbor");
    let body = wait_for(&exporter, Duration::from_secs(10), "Harbor polled", |b| {
        value(b, "hss_registry_statistics_up", &labels).is_some()
    })
    .await;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn the_cached_body_follows_every_change_and_gzip_matches_plain() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, Some("<b>eps</b>"), RegistryType::Harbor, 2, 3);
    let exporter = exporter(&config(), &server).await;
    let labels = target("prod", "cn-north-4", P1, "<b>eps</b>", "Harbor");
    wait_for(&exporter, Duration::from_secs(10), "Harbor's value", |b| {
        value(b, "hss_registry_access_fail", &labels) == Some(2.0)
    })
    .await;
    let first = scrape(&exporter).await;
    // A result recorded right now is in the very next scrape.
    let harbor = exporter
        .store
        .statuses()
        .into_iter()
        .map(|(t, _)| t)
        .find(|t| t.registry_type == Some(RegistryType::Harbor))
        .unwrap();
    exporter.store.record_success(
        &harbor,
        hss_exporter::model::Statistics {
            fail_num: 9,
            success_num: 1,
        },
    );
    let second = scrape(&exporter).await;
    assert_eq!(
        value(&second, "hss_registry_access_fail", &labels),
        Some(9.0)
    );
    assert_ne!(first, second);

    let r = http()
        .get(format!("http://{}/metrics", exporter.addr))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "Accept-Encoding");
    let compressed = r.bytes().await.unwrap();
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut plain,
    )
    .unwrap();
    assert_eq!(
        plain,
        scrape(&exporter).await,
        "the gzip form holds the same exposition"
    );
    assert!(
        compressed.len() * 2 < plain.len(),
        "{} vs {}",
        compressed.len(),
        plain.len()
    );
    let r = http()
        .get(format!("http://{}/metrics", exporter.addr))
        .header("Accept-Encoding", "gzip;q=0, identity")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    exporter.shutdown().await;
}
