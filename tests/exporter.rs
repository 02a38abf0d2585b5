//! The exporter end to end against the simulated API: values and labels, every auth scheme,
//! rate limits, auth suspension, throttling, retries, bad answers and staleness.

mod common;

use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType::*;
use hss_exporter::sim::{Fault, FaultRule, Service};

/// Three accounts, one per auth scheme.
fn three_accounts() -> String {
    Config::new()
        .poll("2s", "2s", "1m")
        .account(
            account("prod")
                .rate(600)
                .project(P1, &["SwrPrivate", "Harbor"])
                .project_in(P2, Some("all_granted_eps"), &[]),
        )
        .account(
            account("shared")
                .region("ap-southeast-1")
                .rate(600)
                .auth(TOKEN)
                .project(P2, &["Jfrog"]),
        )
        .account(
            account("iam")
                .region("eu-west-101")
                .rate(600)
                .auth(IAM)
                .project_in(P3, Some("0"), &[]),
        )
        .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_exact_values_for_every_account_project_and_type_with_all_three_auth_schemes() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, SwrPrivate, 1, 9);
    sim.set_stats(P1, None, Harbor, 4, 2);
    sim.set_stats(P1, None, Jfrog, 7, 7); // not configured: must not leak into other series
    sim.set_stats(P2, None, Jfrog, 2, 3);
    sim.set_stats(P2, Some("ep-a"), Other, 1, 1);
    sim.set_stats(P3, None, SwrShared, 0, 5);
    sim.set_stats(P3, Some("ep-b"), SwrShared, 8, 8); // another enterprise project
    let exporter = exporter(&three_accounts(), &server).await;
    let body = wait_for(&exporter, Duration::from_secs(20), "five targets up", |b| {
        parse(b)
            .iter()
            .filter(|((n, _), v)| n == "hss_registry_statistics_up" && **v == 1.0)
            .count()
            == 5
    })
    .await;

    let expected = [
        (target("prod", "cn-north-4", P1, "", "SwrPrivate"), 1.0, 9.0),
        (target("prod", "cn-north-4", P1, "", "Harbor"), 4.0, 2.0),
        // all_granted_eps and no type: every enterprise project and type of P2 summed.
        (
            target("prod", "cn-north-4", P2, "all_granted_eps", "all"),
            3.0,
            4.0,
        ),
        (
            target("shared", "ap-southeast-1", P2, "", "Jfrog"),
            2.0,
            3.0,
        ),
        (target("iam", "eu-west-101", P3, "0", "all"), 0.0, 5.0),
    ];
    for (labels, fail, success) in &expected {
        assert_eq!(
            value(&body, "hss_registry_access_fail", labels),
            Some(*fail),
            "fail {labels:?}"
        );
        assert_eq!(
            value(&body, "hss_registry_access_success", labels),
            Some(*success),
            "success {labels:?}"
        );
        assert_eq!(
            value(&body, "hss_registry_statistics_up", labels),
            Some(1.0)
        );
        let ts = value(
            &body,
            "hss_registry_statistics_last_success_timestamp_seconds",
            labels,
        )
        .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - ts).abs() < 60.0, "timestamp {ts} is not recent");
    }
    let series = parse(&body);
    let fail_series = series
        .keys()
        .filter(|(n, _)| n == "hss_registry_access_fail")
        .count();
    assert_eq!(
        fail_series,
        expected.len(),
        "one series per target, no more"
    );

    // The simulator verified each scheme: every HSS request was accepted, from the right caller.
    let log = sim.log();
    for caller in [AK, "token-owner", "acme/ops"] {
        let reqs = hss_requests(&log, caller);
        assert!(!reqs.is_empty(), "no request from {caller}");
        assert!(reqs.iter().all(|e| e.status == 200), "{caller}: {reqs:?}");
    }
    assert!(
        log.iter().all(|e| e.status == 200 || e.status == 201),
        "{log:?}"
    );
    // Several polls later the IAM token is still the cached one.
    let sim_ref = &sim;
    eventually(
        Duration::from_secs(20),
        "three polls of the IAM account",
        move || async move {
            match hss_requests(&sim_ref.log(), "acme/ops").len() {
                n if n >= 3 => Ok(()),
                n => Err(format!("{n} polls")),
            }
        },
    )
    .await;
    let log = sim.log();
    assert!(hss_requests(&log, "acme/ops").len() >= 3);
    assert_eq!(
        log.iter().filter(|e| e.service == Service::Iam).count(),
        1,
        "token fetched once"
    );
    assert_eq!(
        value(
            &scrape(&exporter).await,
            "hss_exporter_api_requests_total",
            &[
                ("account", "iam"),
                ("region", "eu-west-101"),
                ("code", "200")
            ]
        ),
        Some(hss_requests(&sim.log(), "acme/ops").len() as f64)
    );

    // Values that move are followed.
    sim.set_stats(P1, None, Harbor, 0, 6);
    let harbor = target("prod", "cn-north-4", P1, "", "Harbor");
    wait_for(
        &exporter,
        Duration::from_secs(10),
        "Harbor's new value",
        |b| value(b, "hss_registry_access_fail", &harbor) == Some(0.0),
    )
    .await;
    exporter.shutdown().await;
}

/// Seven targets at 5 calls a minute, three at 5.
fn seven_targets() -> Config {
    Config::new()
        .poll("1m", "5s", "30m")
        .account(
            account("busy")
                .rate(5)
                .project(P1, ALL_TYPES)
                .project(P2, &[]),
        )
        .account(
            account("other")
                .rate(5)
                .auth(TOKEN)
                .project(P3, &["Harbor", "Jfrog", "SwrPrivate"]),
        )
}

#[tokio::test(start_paused = true)]
async fn no_sixty_second_window_holds_more_calls_than_the_account_rate_limit() {
    let (sim, server) = sim().await;
    sim.set_rate_limit(Some(5));
    let exporter = exporter(&seven_targets().yaml(), &server).await;
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    let log = sim.log();
    for caller in [AK, "token-owner"] {
        let reqs = hss_requests(&log, caller);
        assert_rate_within(&reqs, 5);
        assert!(
            reqs.iter().all(|e| e.status == 200),
            "the simulator never had to throttle"
        );
    }
    // Seven targets at 5/min cannot fit in 1m: the account runs at its limit, not slower.
    let busy = hss_requests(&log, AK).len();
    assert!((45..=50).contains(&busy), "{busy} requests in 10 minutes");
    // Three targets at 1m fit: the first round goes at once, then each target is polled
    // about once a minute, spread, never bunched.
    let other = hss_requests(&log, "token-owner");
    assert!((28..=32).contains(&other.len()), "{} requests", other.len());
    let at: Vec<_> = other.iter().take(6).map(|e| e.at).collect();
    assert_eq!(
        at[2] - at[0],
        Duration::ZERO,
        "the first round waits for nothing"
    );
    for pair in at[3..].windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_secs(19),
            "then targets are spread over the interval"
        );
    }
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_global_cap_holds_across_accounts() {
    let (sim, server) = sim().await;
    let yaml = seven_targets().global_rate_limit(4).yaml();
    let exporter = exporter(&yaml, &server).await;
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    let all: Vec<_> = sim
        .log()
        .into_iter()
        .filter(|e| e.service == Service::Hss)
        .collect();
    assert_rate_within(&all, 4);
    assert!(all.len() >= 18, "{} requests in 5 minutes", all.len());
    assert!(!hss_requests(&all, "token-owner").is_empty() && !hss_requests(&all, AK).is_empty());
    exporter.shutdown().await;
}

/// One account with a wrong secret key, one that is fine.
fn bad_and_good() -> String {
    Config::new()
        .poll("30s", "5s", "1h")
        .account(
            account("broken")
                .auth("{ ak_sk: { access_key_env: HSS_AK, secret_key_env: HSS_BAD_SK } }")
                .project(P1, &["Harbor", "Jfrog", "SwrPrivate"]),
        )
        .account(account("fine").auth(TOKEN).project(P2, &[]))
        .yaml()
}

#[tokio::test(start_paused = true)]
async fn two_auth_failures_suspend_only_that_account_for_five_minutes() {
    let (sim, server) = sim().await;
    let exporter = exporter(&bad_and_good(), &server).await;
    let start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(4 * 60 + 50)).await;

    let bad = hss_requests(&sim.log(), AK);
    assert_eq!(bad.len(), 2, "at most two requests with a bad key: {bad:?}");
    assert!(bad.iter().all(|e| e.status == 401));
    let body = scrape(&exporter).await;
    let account = [("account", "broken"), ("region", "cn-north-4")];
    assert_eq!(
        value(&body, "hss_exporter_account_suspended", &account),
        Some(1.0)
    );
    assert_eq!(
        poll_errors(&body, "broken", "cn-north-4", "auth"),
        Some(2.0)
    );
    for t in ["Harbor", "Jfrog", "SwrPrivate"] {
        assert_eq!(
            value(
                &body,
                "hss_registry_statistics_up",
                &target("broken", "cn-north-4", P1, "", t)
            ),
            Some(0.0),
            "{t}"
        );
    }
    let page = status(&exporter).await;
    let suspended = ["Harbor", "Jfrog", "SwrPrivate"]
        .iter()
        .filter(|t| {
            status_of(&page, "broken", P1, t)["last_error"]
                .as_str()
                .is_some_and(|e| {
                    e.starts_with(
                        "account suspended for 5m after 2 consecutive authentication failures",
                    )
                })
        })
        .count();
    assert_eq!(
        suspended, 2,
        "the targets besides the last refused one say why: {page}"
    );
    let broken = page["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == "broken")
        .unwrap();
    assert_eq!(broken["budget"]["suspended"], true, "{broken}");
    let page = page.to_string();
    assert!(!page.contains("not-the-secret-key") && !body.contains("not-the-secret-key"));
    // The other account kept going, once per interval.
    let fine = hss_requests(&sim.log(), "token-owner");
    assert!(fine.len() >= 9, "{} requests", fine.len());
    assert_eq!(
        value(
            &body,
            "hss_registry_statistics_up",
            &target("fine", "cn-north-4", P2, "", "all")
        ),
        Some(1.0)
    );

    // The key is fixed on the cloud side: the next try after the suspension succeeds.
    sim.add_access_key(AK, "not-the-secret-key");
    tokio::time::sleep(Duration::from_secs(90)).await;
    let bad = hss_requests(&sim.log(), AK);
    assert!(bad.len() >= 3);
    assert!(
        bad[2].at.duration_since(bad[1].at) >= Duration::from_secs(300),
        "suspension lasted {:?}",
        bad[2].at - bad[1].at
    );
    assert!(bad[1].at.duration_since(start) < Duration::from_secs(30));
    assert_eq!(bad[2].status, 200);
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_exporter_account_suspended", &account),
        Some(0.0)
    );
    assert_eq!(
        value(
            &body,
            "hss_registry_statistics_up",
            &target("broken", "cn-north-4", P1, "", "Harbor")
        ),
        Some(1.0)
    );
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_key_that_stays_wrong_is_tried_once_per_ever_longer_suspension() {
    let (sim, server) = sim().await;
    let exporter = exporter(&bad_and_good(), &server).await;
    tokio::time::sleep(Duration::from_secs(60 * 60)).await;
    let bad = hss_requests(&sim.log(), AK);
    // 2 at the start, then one probe after 5m, 10m, 20m (at 35m): 5 in the first hour.
    assert_eq!(bad.len(), 5, "{bad:?}");
    let gaps: Vec<u64> = bad
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs())
        .collect();
    assert!(
        gaps[1] >= 300 && gaps[2] >= 600 && gaps[3] >= 1200,
        "{gaps:?}"
    );
    exporter.shutdown().await;
}

fn one_target() -> String {
    Config::new()
        .poll("10s", "3s", "2m")
        .account(account("prod").rate(60).project(P1, &["Harbor"]))
        .yaml()
}

fn harbor() -> Vec<(&'static str, &'static str)> {
    target("prod", "cn-north-4", P1, "", "Harbor")
}

fn errors(body: &str, reason: &str) -> Option<f64> {
    poll_errors(body, "prod", "cn-north-4", reason)
}

#[tokio::test(start_paused = true)]
async fn bad_answers_fail_the_poll_and_never_become_zeros() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 3, 7);
    let exporter = exporter(&one_target(), &server).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor()),
        Some(3.0)
    );

    let bodies = [
        "<html>maintenance</html>",
        r#"{"success_num": 7}"#,
        r#"{"fail_num": -1, "success_num": 7}"#,
        r#"{"fail_num": 0.5, "success_num": 7}"#,
        r#"{"fail_num": "0", "success_num": 0}"#,
    ];
    for (i, text) in bodies.iter().enumerate() {
        sim.clear_faults();
        sim.add_fault(FaultRule::always(Fault::Body(text.to_string())));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let body = scrape(&exporter).await;
        assert_down_keeping(&body, &harbor(), 3.0, 7.0, text);
        assert_eq!(errors(&body, "decode"), Some((i + 1) as f64), "{text}");
    }
    let page = status(&exporter).await;
    assert_eq!(
        status_of(&page, "prod", P1, "Harbor")["last_error"],
        r#"bad answer: field fail_num is "0", not a non-negative integer"#
    );
    // One request per poll: a bad answer is not retried.
    assert_eq!(hss_requests(&sim.log(), AK).len(), 6);

    sim.clear_faults();
    sim.set_stats(P1, None, Harbor, 0, 8);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor()),
        Some(1.0)
    );
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor()),
        Some(0.0)
    );
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn values_vanish_after_stale_after_while_up_and_timestamp_stay() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 1, 2);
    let exporter = exporter(&one_target(), &server).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ts = value(
        &scrape(&exporter).await,
        "hss_registry_statistics_last_success_timestamp_seconds",
        &harbor(),
    )
    .unwrap();
    sim.add_fault(FaultRule::always(Fault::Status(500)));
    tokio::time::sleep(Duration::from_secs(110)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor()),
        Some(1.0),
        "kept until stale_after"
    );
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor()),
        Some(0.0)
    );
    assert!(errors(&body, "http_5xx").unwrap() >= 10.0);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor()),
        None,
        "gone after stale_after:\n{body}"
    );
    assert_eq!(value(&body, "hss_registry_access_success", &harbor()), None);
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor()),
        Some(0.0)
    );
    assert_eq!(
        value(
            &body,
            "hss_registry_statistics_last_success_timestamp_seconds",
            &harbor()
        ),
        Some(ts)
    );
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn throttling_pauses_the_account_for_retry_after() {
    let (sim, server) = sim().await;
    sim.add_fault(
        FaultRule::always(Fault::Throttle {
            retry_after: Some(95),
        })
        .times(1),
    );
    let exporter = exporter(&one_target(), &server).await;
    tokio::time::sleep(Duration::from_secs(150)).await;
    let reqs = hss_requests(&sim.log(), AK);
    assert_eq!(reqs[0].status, 429);
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_secs(95),
        "{:?}",
        reqs[1].at - reqs[0].at
    );
    assert_eq!(reqs[1].status, 200);
    let body = scrape(&exporter).await;
    assert_eq!(errors(&body, "throttled"), Some(1.0));
    assert_eq!(
        value(
            &body,
            "hss_exporter_api_requests_total",
            &[
                ("account", "prod"),
                ("region", "cn-north-4"),
                ("code", "429")
            ]
        ),
        Some(1.0)
    );
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn throttling_without_retry_after_backs_off_a_minute_then_longer() {
    let (sim, server) = sim().await;
    sim.add_fault(FaultRule::always(Fault::Throttle { retry_after: None }).times(2));
    let exporter = exporter(&one_target(), &server).await;
    tokio::time::sleep(Duration::from_secs(240)).await;
    let reqs = hss_requests(&sim.log(), AK);
    assert_eq!(
        (reqs[0].status, reqs[1].status, reqs[2].status),
        (429, 429, 200)
    );
    assert!(reqs[1].at - reqs[0].at >= Duration::from_secs(60));
    assert!(reqs[2].at - reqs[1].at >= Duration::from_secs(120));
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_once_within_the_rate_budget() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 0, 4);
    sim.add_fault(FaultRule::always(Fault::Status(503)).times(1));
    let exporter = exporter(&one_target(), &server).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor()),
        Some(1.0),
        "the retry succeeded"
    );
    assert_eq!(errors(&body, "http_5xx"), Some(0.0));
    let reqs = hss_requests(&sim.log(), AK);
    assert_eq!(
        reqs.iter().map(|e| e.status).collect::<Vec<_>>(),
        vec![503, 200]
    );
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_secs(1),
        "jittered pause before the retry"
    );

    sim.add_fault(FaultRule::always(Fault::Reset).times(2));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor()),
        Some(0.0)
    );
    assert_eq!(
        errors(&body, "connect"),
        Some(1.0),
        "a reset twice fails the poll"
    );
    assert_eq!(
        value(&body, "hss_registry_access_success", &harbor()),
        Some(4.0)
    );

    sim.add_fault(FaultRule::always(Fault::Delay(Duration::from_secs(30))).times(2));
    tokio::time::sleep(Duration::from_secs(20)).await;
    let body = scrape(&exporter).await;
    assert_eq!(errors(&body, "timeout"), Some(1.0), "{body}");
    assert_eq!(
        value(
            &body,
            "hss_exporter_api_requests_total",
            &[
                ("account", "prod"),
                ("region", "cn-north-4"),
                ("code", "timeout")
            ]
        ),
        Some(2.0)
    );
    exporter.shutdown().await;
}

/// One IAM account, as `user`.
fn iam_only(user: &str, types: &[&str]) -> String {
    let auth = IAM.replace("user: ops", &format!("user: {user}"));
    Config::new()
        .poll("10m", "5s", "1h")
        .account(account("iam").auth(&auth).project(P1, types))
        .yaml()
}

#[tokio::test(start_paused = true)]
async fn iam_tokens_are_refreshed_before_expiry_and_once_after_a_401() {
    let (sim, server) = sim().await;
    sim.set_token_lifetime(Duration::from_secs(2 * 3600));
    let exporter = exporter(&iam_only("ops", &["Harbor"]), &server).await;
    tokio::time::sleep(Duration::from_secs(3 * 3600 + 5 * 60)).await;
    let log = sim.log();
    let issued: Vec<_> = log
        .iter()
        .filter(|e| e.service == Service::Iam && e.status == 201)
        .map(|e| e.at)
        .collect();
    assert_eq!(
        issued.len(),
        4,
        "a 2h token is renewed an hour before it expires"
    );
    assert!(
        issued
            .windows(2)
            .all(|w| w[1] - w[0] >= Duration::from_secs(3600)),
        "and not sooner"
    );
    assert!(
        hss_requests(&log, "acme/ops")
            .iter()
            .all(|e| e.status == 200),
        "never used an expired token"
    );

    sim.revoke_issued_tokens();
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    let log = sim.log();
    // A revoked token is unknown to the gateway, so its request has no caller: look at all.
    let hss: Vec<_> = log.iter().filter(|e| e.service == Service::Hss).collect();
    let statuses: Vec<u16> = hss.iter().rev().take(2).map(|e| e.status).collect();
    assert_eq!(statuses, vec![200, 401], "refused once, then a fresh token");
    assert_eq!(hss.iter().filter(|e| e.status == 401).count(), 1);
    assert_eq!(
        log.iter().filter(|e| e.service == Service::Iam).count(),
        5,
        "one new token after the 401"
    );
    let body = scrape(&exporter).await;
    let t = target("iam", "cn-north-4", P1, "", "Harbor");
    assert_eq!(value(&body, "hss_registry_statistics_up", &t), Some(1.0));
    assert_eq!(poll_errors(&body, "iam", "cn-north-4", "auth"), Some(0.0));
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_wrong_iam_password_is_tried_twice_then_suspended() {
    let (sim, server) = sim().await;
    let yaml = iam_only("nobody", &["Harbor", "Jfrog", "SwrPrivate"]);
    let exporter = exporter(&yaml, &server).await;
    // The first round tries two targets, both refused; then nothing for 5 minutes.
    tokio::time::sleep(Duration::from_secs(4 * 60 + 50)).await;
    let iam: Vec<_> = sim
        .log()
        .into_iter()
        .filter(|e| e.service == Service::Iam)
        .collect();
    assert_eq!(iam.len(), 2, "{iam:?}");
    // One more try after the suspension, refused again: suspended for 10 minutes.
    tokio::time::sleep(Duration::from_secs(8 * 60 + 10)).await;
    let log = sim.log();
    let iam: Vec<_> = log.iter().filter(|e| e.service == Service::Iam).collect();
    assert_eq!(iam.len(), 3, "{iam:?}");
    assert!(iam[2].at - iam[1].at >= Duration::from_secs(300), "{iam:?}");
    assert!(iam.iter().all(|e| e.status == 401));
    assert!(hss_requests(&log, "acme/nobody").is_empty());
    let body = scrape(&exporter).await;
    assert_eq!(
        value(
            &body,
            "hss_exporter_account_suspended",
            &[("account", "iam"), ("region", "cn-north-4")]
        ),
        Some(1.0)
    );
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_target_that_never_succeeded_exports_no_values_and_oversized_bodies_are_refused() {
    let (sim, server) = sim().await;
    sim.add_fault(FaultRule::always(Fault::Body(format!(
        r#"{{"fail_num": 0, "success_num": 1, "padding": "{}"}}"#,
        "x".repeat(100 * 1024)
    ))));
    let exporter = exporter(&one_target(), &server).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let body = scrape(&exporter).await;
    assert_eq!(
        value(&body, "hss_registry_statistics_up", &harbor()),
        Some(0.0)
    );
    assert_eq!(
        value(&body, "hss_registry_access_fail", &harbor()),
        None,
        "no value rather than a zero"
    );
    assert_eq!(value(&body, "hss_registry_access_success", &harbor()), None);
    assert_eq!(
        value(
            &body,
            "hss_registry_statistics_last_success_timestamp_seconds",
            &harbor()
        ),
        None
    );
    assert_eq!(errors(&body, "decode"), Some(1.0));
    let page = status(&exporter).await;
    let harbor = status_of(&page, "prod", P1, "Harbor");
    assert_eq!(
        harbor["last_error"],
        "bad answer: response body larger than 65536 bytes"
    );
    assert!(harbor["last_success"].is_null(), "last success: never");
    assert_eq!(harbor["state"], "down");
    exporter.shutdown().await;
}
