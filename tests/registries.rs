//! Per-registry detail against the simulated API: exact series for a project that needs
//! paging, changes followed within one interval, removed registries gone, failures keeping
//! the last good listing until stale, malformed pages refused whole, the cardinality bound,
//! and every 60-second window of a credential within its budget across both APIs.

mod common;

use std::time::Duration;

use common::*;
use hss_exporter::model::{Registry, RegistryStatus};
use hss_exporter::sim::{Fault, FaultRule};

/// Registry `i` of a project: every fifth fails (alternating reasons), every seventh is
/// being connected, the rest succeed.
fn registry(i: usize) -> Registry {
    let status = if i % 5 == 0 {
        RegistryStatus::Fail
    } else if i % 7 == 0 {
        RegistryStatus::Accessing
    } else {
        RegistryStatus::Success
    };
    Registry {
        id: format!("reg-{i:04}"),
        name: format!("registry-{i}"),
        registry_type: if i % 2 == 0 { "Harbor" } else { "SwrPrivate" }.into(),
        addr: format!("registry-{i}.example.com"),
        connect_cluster_id: format!("cluster-{}", i % 3),
        status: Some(status),
        fail_reason: if status == RegistryStatus::Fail {
            if i % 10 == 0 {
                "REQUEST_API_ERROR"
            } else {
                "CREATE_JOB_FAILED"
            }
            .into()
        } else {
            String::new()
        },
        images_num: Some(i as u64 * 3),
        latest_sync_time_ms: Some(1_764_000_000_000 + i as i64 * 1000 + 250),
    }
}

fn listing_labels(project: &str) -> Vec<(&'static str, String)> {
    vec![
        ("account", "prod".into()),
        ("region", "cn-north-4".into()),
        ("project_id", project.into()),
        ("enterprise_project_id", String::new()),
    ]
}

/// The labels of one registry's series, with `extra` ones.
fn labels(project: &str, id: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut l = listing_labels(project);
    l.push(("registry_id", id.into()));
    l.extend(extra.iter().map(|(k, v)| (*k, (*v).to_string())));
    l
}

type Series = std::collections::BTreeMap<(String, std::collections::BTreeMap<String, String>), f64>;

/// The value of `name` with exactly `labels` in a parsed body.
fn at(series: &Series, name: &str, labels: &[(&'static str, String)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    series.get(&(name.to_string(), labels)).copied()
}

fn get(body: &str, name: &str, labels: &[(&'static str, String)]) -> Option<f64> {
    at(&parse(body), name, labels)
}

/// Series of `name` in a body (cheap enough to check every 50 ms).
fn count(body: &str, name: &str) -> usize {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .count()
}

/// Like `wait_for`, checking once a second of (paused) time: bodies of hundreds of
/// registries are too large to fetch every 50 ms.
async fn slow_wait(
    exporter: &hss_exporter::Exporter,
    within: Duration,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let body = scrape(exporter).await;
        if ready(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still waiting for {what} after {within:?}; last:\n{body}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn config(rate: u32) -> Config {
    Config::new()
        .poll("1m", "5s", "10m")
        .account(account("prod").rate(rate).project_with(P1, &[], true))
}

#[tokio::test(start_paused = true)]
async fn two_hundred_and_fifty_registries_are_paged_and_exported_exactly() {
    let (sim, server) = sim().await;
    sim.set_rate_limit(Some(5));
    sim.set_registries(P1, None, (0..250).map(registry).collect());
    sim.set_stats(P1, None, hss_exporter::model::RegistryType::Harbor, 50, 164);
    let exporter = exporter(&config(5).yaml(), &server).await;
    let body = slow_wait(&exporter, Duration::from_secs(120), "250 registries", |b| {
        count(b, "hss_registry_info") == 250
    })
    .await;

    // Every registry, every family, exact.
    let series = parse(&body);
    for i in 0..250 {
        let get =
            |_: &str, name: &str, labels: &[(&'static str, String)]| at(&series, name, labels);
        let r = registry(i);
        let info = labels(
            P1,
            &r.id,
            &[
                ("registry_name", &r.name),
                ("registry_type", &r.registry_type),
                ("registry_addr", &r.addr),
                ("connect_cluster_id", &r.connect_cluster_id),
            ],
        );
        assert_eq!(get(&body, "hss_registry_info", &info), Some(1.0), "{i}");
        for state in RegistryStatus::ALL {
            let want = if r.status == Some(state) { 1.0 } else { 0.0 };
            assert_eq!(
                get(
                    &body,
                    "hss_registry_status",
                    &labels(P1, &r.id, &[("status", state.as_str())])
                ),
                Some(want),
                "{i} {state:?}"
            );
        }
        let reason = get(
            &body,
            "hss_registry_fail_reason",
            &labels(P1, &r.id, &[("reason", &r.fail_reason)]),
        );
        assert_eq!(
            reason,
            (r.status == Some(RegistryStatus::Fail)).then_some(1.0),
            "{i}"
        );
        assert_eq!(
            get(&body, "hss_registry_images", &labels(P1, &r.id, &[])),
            Some(i as f64 * 3.0)
        );
        assert_eq!(
            get(
                &body,
                "hss_registry_last_sync_timestamp_seconds",
                &labels(P1, &r.id, &[])
            ),
            Some(1_764_000_000.25 + i as f64)
        );
    }
    assert_eq!(
        count(&body, "hss_registry_status"),
        750,
        "three states each"
    );
    assert_eq!(
        count(&body, "hss_registry_fail_reason"),
        50,
        "only the failing ones"
    );
    assert!(body.contains(r#"hss_registry_last_sync_timestamp_seconds{account="prod",enterprise_project_id="",project_id="1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a",region="cn-north-4",registry_id="reg-0001"} 1764000001.250"#), "milliseconds become seconds");
    assert_eq!(
        get(&body, "hss_registry_detail_up", &listing_labels(P1)),
        Some(1.0)
    );
    assert!(get(
        &body,
        "hss_registry_detail_last_success_timestamp_seconds",
        &listing_labels(P1)
    )
    .is_some());
    // One listing covers every type: two pages of 200, never filtered by type.
    let pages: Vec<String> = sim
        .log()
        .iter()
        .filter(|e| e.path.ends_with("/image/registries"))
        .map(|e| e.query.clone())
        .collect();
    assert_eq!(
        pages[..2],
        ["limit=200&offset=0", "limit=200&offset=200"],
        "{pages:?}"
    );

    // A failing registry recovers, another is removed: both within one interval.
    let mut fixed = registry(10);
    fixed.status = Some(RegistryStatus::Success);
    fixed.fail_reason.clear();
    sim.put_registry(P1, None, fixed);
    sim.remove_registry(P1, "reg-0011");
    let body = slow_wait(
        &exporter,
        Duration::from_secs(61),
        "reg-0010 fixed, reg-0011 gone",
        |b| count(b, "hss_registry_info") == 249,
    )
    .await;
    assert_eq!(
        get(
            &body,
            "hss_registry_status",
            &labels(P1, "reg-0010", &[("status", "success")])
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            &body,
            "hss_registry_status",
            &labels(P1, "reg-0010", &[("status", "fail")])
        ),
        Some(0.0)
    );
    assert!(
        !body.contains(r#"registry_id="reg-0010",reason="#)
            && !body.contains(
                r#"reason="REQUEST_API_ERROR",region="cn-north-4",registry_id="reg-0010""#
            )
    );
    assert_eq!(count(&body, "hss_registry_fail_reason"), 49);
    assert!(
        !body.contains("reg-0011"),
        "a removed registry loses every series"
    );

    // The status page lists the listing with its registry count.
    let (status, json) = common::get(&exporter, "/status.json").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listings = v["accounts"][0]["listings"].as_array().unwrap();
    assert_eq!(listings.len(), 1, "{listings:?}");
    assert_eq!(listings[0]["project_id"], P1);
    assert_eq!(listings[0]["state"], "up");
    assert_eq!(
        listings[0]["registries"].as_u64(),
        Some(count(&body, "hss_registry_info") as u64)
    );
    assert!(listings[0]["last_error"].is_null());

    // Ten minutes on: statistics and listings together never exceed the budget.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let log = sim.log();
    let calls = hss_requests(&log, AK);
    assert_rate_within(&calls, 5);
    assert!(calls.iter().all(|e| e.status == 200), "never throttled");
    let listings = calls
        .iter()
        .filter(|e| e.path.ends_with("/registries"))
        .count();
    let stats = calls.len() - listings;
    assert!(
        listings >= 20 && stats >= 10,
        "{listings} pages, {stats} statistics calls"
    );
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_listing_keeps_the_last_good_registries_until_stale() {
    let (sim, server) = sim().await;
    sim.set_registries(P1, None, (0..3).map(registry).collect());
    let exporter = exporter(&config(60).yaml(), &server).await;
    slow_wait(
        &exporter,
        Duration::from_secs(30),
        "three registries",
        |b| count(b, "hss_registry_info") == 3,
    )
    .await;
    sim.add_fault(FaultRule::always(Fault::Status(500)).listing(true));
    let body = slow_wait(&exporter, Duration::from_secs(70), "detail down", |b| {
        get(b, "hss_registry_detail_up", &listing_labels(P1)) == Some(0.0)
    })
    .await;
    assert_eq!(count(&body, "hss_registry_info"), 3, "kept while down");
    assert_eq!(
        poll_errors(&body, "prod", "cn-north-4", "http_5xx"),
        Some(1.0)
    );
    assert!(
        parse(&body)
            .iter()
            .any(|((n, l), v)| n == "hss_registry_statistics_up"
                && l["project_id"] == P1
                && *v == 1.0),
        "the statistics go on"
    );
    let body = slow_wait(&exporter, Duration::from_secs(600), "stale detail", |b| {
        count(b, "hss_registry_info") == 0
    })
    .await;
    for family in [
        "hss_registry_status",
        "hss_registry_images",
        "hss_registry_fail_reason",
    ] {
        assert_eq!(count(&body, family), 0, "{family}");
    }
    assert_eq!(
        get(&body, "hss_registry_detail_up", &listing_labels(P1)),
        Some(0.0)
    );
    assert!(get(
        &body,
        "hss_registry_detail_last_success_timestamp_seconds",
        &listing_labels(P1)
    )
    .is_some());
    // It recovers by itself.
    sim.clear_faults();
    slow_wait(&exporter, Duration::from_secs(70), "detail back", |b| {
        count(b, "hss_registry_info") == 3
    })
    .await;
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_malformed_page_fails_the_whole_listing() {
    let (sim, server) = sim().await;
    sim.set_registries(P1, None, (0..250).map(registry).collect());
    let exporter = exporter(&config(60).yaml(), &server).await;
    slow_wait(&exporter, Duration::from_secs(30), "250 registries", |b| {
        count(b, "hss_registry_info") == 250
    })
    .await;
    // The registries change, but the second page of every listing from now on is
    // malformed: no partial truth, the last good listing stays whole.
    sim.remove_registry(P1, "reg-0001");
    sim.add_fault(
        FaultRule::always(Fault::Body(
            r#"{"total_num": 249, "data_list": [{"id": 5}]}"#.into(),
        ))
        .listing(true)
        .query_contains("offset=200"),
    );
    let body = slow_wait(
        &exporter,
        Duration::from_secs(200),
        "three decode errors",
        |b| poll_errors(b, "prod", "cn-north-4", "decode").is_some_and(|n| n >= 3.0),
    )
    .await;
    assert_eq!(
        get(&body, "hss_registry_detail_up", &listing_labels(P1)),
        Some(0.0)
    );
    assert_eq!(
        count(&body, "hss_registry_info"),
        250,
        "the last good listing, whole"
    );
    assert!(body.contains(r#"registry_id="reg-0001""#));
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_registries_of_a_project_are_bounded() {
    let (sim, server) = sim().await;
    sim.set_registries(P1, None, (0..30).map(registry).collect());
    let yaml = config(60)
        .yaml()
        .replace("poll: {", "poll: { max_registries_per_project: 25,");
    let exporter = exporter(&yaml, &server).await;
    let body = slow_wait(&exporter, Duration::from_secs(30), "detail", |b| {
        count(b, "hss_registry_info") > 0
    })
    .await;
    assert_eq!(count(&body, "hss_registry_info"), 25);
    assert_eq!(
        value(
            &body,
            "hss_exporter_registry_listings_truncated_total",
            &[("account", "prod"), ("region", "cn-north-4")]
        ),
        Some(1.0)
    );
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn turning_detail_off_on_reload_removes_its_series_and_on_again_brings_them_back() {
    use hss_exporter::app::{Loader, Options};
    use std::sync::{Arc, Mutex};
    let (sim, server) = sim().await;
    sim.set_registries(P1, None, (0..3).map(registry).collect());
    let on = config(60).yaml().replace("{API}", &server.url());
    let off = on.replace("        registries: true\n", "");
    assert_ne!(on, off);
    let yaml = Arc::new(Mutex::new(on.clone()));
    let source = yaml.clone();
    let loader: Loader =
        Arc::new(move || hss_exporter::config::load_str(&source.lock().unwrap(), &env()));
    let settings = loader().unwrap();
    let exporter = start_exporter(
        &settings,
        Options {
            loader: Some(loader),
            ..Options::default()
        },
    )
    .await;
    slow_wait(&exporter, Duration::from_secs(30), "detail", |b| {
        count(b, "hss_registry_info") == 3
    })
    .await;
    *yaml.lock().unwrap() = off;
    exporter.reload().await.expect("reload");
    let body = scrape(&exporter).await;
    for family in [
        "hss_registry_info",
        "hss_registry_status",
        "hss_registry_detail_up",
    ] {
        assert_eq!(count(&body, family), 0, "{family} gone at once");
    }
    assert!(
        !body.contains("# TYPE hss_registry_info"),
        "no empty family either"
    );
    assert_eq!(
        get(&body, "hss_registry_statistics_up", &{
            let mut l = listing_labels(P1);
            l.push(("registry_type", "all".into()));
            l
        }),
        Some(1.0),
        "the statistics stay"
    );
    *yaml.lock().unwrap() = on;
    exporter.reload().await.expect("reload");
    slow_wait(&exporter, Duration::from_secs(30), "detail back", |b| {
        count(b, "hss_registry_info") == 3
    })
    .await;
    exporter.shutdown().await;
}
