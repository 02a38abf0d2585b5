//! The rate budget belongs to the credential: accounts that share a key share its calls,
//! through reloads, renames and re-adds; the first round goes as fast as the budget allows;
//! a shorter interval takes effect at once; removed accounts stay removed; readiness.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hss_exporter::app::{Loader, Options};
use hss_exporter::config;
use hss_exporter::sim::{Fault, FaultRule, LogEntry, Service, SimServer};
use hss_exporter::Exporter;
use tokio::time::Instant;

/// An exporter whose configuration can be replaced and reloaded.
struct Reloadable {
    exporter: Exporter,
    yaml: Arc<Mutex<String>>,
    api: String,
}

impl Reloadable {
    async fn start(config: &Config, server: &SimServer) -> Reloadable {
        let api = server.url();
        let yaml = Arc::new(Mutex::new(config.yaml().replace("{API}", &api)));
        let source = yaml.clone();
        let loader: Loader = Arc::new(move || config::load_str(&source.lock().unwrap(), &env()));
        let settings = loader().expect("test config is valid");
        let options = Options {
            loader: Some(loader),
            ..Options::default()
        };
        let exporter = start_exporter(&settings, options).await;
        Reloadable {
            exporter,
            yaml,
            api,
        }
    }

    async fn reload(&self, config: &Config) {
        *self.yaml.lock().unwrap() = config.yaml().replace("{API}", &self.api);
        self.exporter.reload().await.expect("reload succeeds");
    }
}

/// Two accounts on the key of `common::AK`, six targets each, allowed 6 calls a minute.
fn shared_key(names: [&str; 2]) -> Config {
    Config::new()
        .poll("1m", "5s", "30m")
        .account(account(names[0]).rate(6).project(P1, ALL_TYPES))
        .account(account(names[1]).rate(6).project(P2, ALL_TYPES))
}

fn assert_no_throttling(log: &[LogEntry], caller: &str) {
    let reqs = hss_requests(log, caller);
    assert!(!reqs.is_empty(), "{caller} made no request");
    assert!(
        reqs.iter().all(|e| e.status == 200),
        "{caller} was refused: {:?}",
        reqs.iter().filter(|e| e.status != 200).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn two_accounts_on_one_key_share_its_budget() {
    let (sim, server) = sim().await;
    sim.set_rate_limit(Some(6));
    let exporter = exporter(&shared_key(["team-a", "team-b"]).yaml(), &server).await;
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    let log = sim.log();
    let reqs = hss_requests(&log, AK);
    assert_rate_within(&reqs, 6);
    assert_no_throttling(&log, AK);
    // 12 targets at 6 a minute: the budget is used, not wasted.
    assert!((55..=61).contains(&reqs.len()), "{} requests", reqs.len());
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn renaming_both_accounts_on_reload_keeps_their_window() {
    let (sim, server) = sim().await;
    sim.set_rate_limit(Some(6));
    let r = Reloadable::start(&shared_key(["team-a", "team-b"]), &server).await;
    tokio::time::sleep(Duration::from_secs(5 * 60 + 7)).await;
    r.reload(&shared_key(["alpha", "beta"])).await;
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    let log = sim.log();
    assert_rate_within(&hss_requests(&log, AK), 6);
    assert_no_throttling(&log, AK);
    let body = scrape(&r.exporter).await;
    assert!(!body.contains("account=\"team-a\""), "old names are gone");
    assert!(body.contains("account=\"alpha\""));
    r.exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn removing_and_re_adding_an_account_within_a_minute_keeps_its_window() {
    let (sim, server) = sim().await;
    sim.set_rate_limit(Some(6));
    let both = shared_key(["team-a", "team-b"]);
    let one = Config::new()
        .poll("1m", "5s", "30m")
        .account(account("team-a").rate(6).project(P1, ALL_TYPES));
    let r = Reloadable::start(&both, &server).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(100)).await;
        r.reload(&one).await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        r.reload(&both).await;
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    let log = sim.log();
    assert_rate_within(&hss_requests(&log, AK), 6);
    assert_no_throttling(&log, AK);
    r.exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn two_iam_password_accounts_of_one_user_share_its_budget() {
    let (sim, server) = sim().await;
    sim.set_rate_limit(Some(6));
    let config = Config::new()
        .poll("1m", "5s", "30m")
        .account(account("iam-a").auth(IAM).rate(6).project(P1, ALL_TYPES))
        .account(account("iam-b").auth(IAM).rate(6).project(P2, ALL_TYPES));
    let exporter = exporter(&config.yaml(), &server).await;
    tokio::time::sleep(Duration::from_secs(6 * 60)).await;
    let log = sim.log();
    assert_rate_within(&hss_requests(&log, "acme/ops"), 6);
    assert_no_throttling(&log, "acme/ops");
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn accounts_sharing_a_static_token_share_its_budget() {
    let (sim, server) = sim().await;
    sim.set_rate_limit(Some(6));
    let config = Config::new()
        .poll("1m", "5s", "30m")
        .account(account("tok-a").auth(TOKEN).rate(6).project(P1, ALL_TYPES))
        .account(account("tok-b").auth(TOKEN).rate(6).project(P2, ALL_TYPES));
    let exporter = exporter(&config.yaml(), &server).await;
    tokio::time::sleep(Duration::from_secs(6 * 60)).await;
    let log = sim.log();
    assert_rate_within(&hss_requests(&log, "token-owner"), 6);
    assert_no_throttling(&log, "token-owner");
    exporter.shutdown().await;
}

/// When each of the first `n` HSS requests came, in seconds after `start`.
fn first_requests(log: &[LogEntry], start: Instant, n: usize) -> Vec<u64> {
    log.iter()
        .filter(|e| e.service == Service::Hss)
        .take(n)
        .map(|e| (e.at - start).as_secs())
        .collect()
}

fn twelve_targets(per_minute: u32) -> Config {
    Config::new().poll("5m", "5s", "30m").account(
        account("prod")
            .rate(per_minute)
            .project(P1, ALL_TYPES)
            .project(P2, ALL_TYPES),
    )
}

#[tokio::test(start_paused = true)]
async fn the_first_round_goes_as_fast_as_the_budget_allows() {
    let (sim, server) = sim().await;
    let start = Instant::now();
    let fast = exporter(&twelve_targets(60).yaml(), &server).await;
    let body = wait_for(
        &fast,
        Duration::from_secs(3),
        "every target has a value",
        |b| {
            parse(b)
                .keys()
                .filter(|(name, _)| name == "hss_registry_statistics_up")
                .count()
                == 12
        },
    )
    .await;
    assert!(!body.is_empty());
    assert_eq!(first_requests(&sim.log(), start, 12), [0; 12]);
    fast.shutdown().await;

    // At 5 a minute: 5 at once, then one every 12 s once the window allows.
    let (sim, server) = common::sim().await;
    sim.set_rate_limit(Some(5));
    let start = Instant::now();
    let slow = exporter(&twelve_targets(5).yaml(), &server).await;
    tokio::time::sleep(Duration::from_secs(150)).await;
    let log = sim.log();
    let times = first_requests(&log, start, 12);
    assert_eq!(&times[..5], [0; 5]);
    assert!((60..=62).contains(&times[5]), "{times:?}");
    for pair in times[5..].windows(2) {
        assert!((11..=13).contains(&(pair[1] - pair[0])), "{times:?}");
    }
    assert_rate_within(&hss_requests(&log, AK), 5);
    assert_no_throttling(&log, AK);
    slow.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_shorter_interval_takes_effect_at_once() {
    let (sim, server) = sim().await;
    let long = Config::new()
        .poll("4m", "2s", "30m")
        .account(account("prod").rate(60).project(P1, ALL_TYPES));
    let short = Config::new()
        .poll("5s", "2s", "30m")
        .account(account("prod").rate(60).project(P1, ALL_TYPES));
    let r = Reloadable::start(&long, &server).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let reloaded = Instant::now();
    r.reload(&short).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let log = sim.log();
    for t in ALL_TYPES {
        let polled = hss_requests(&log, AK).iter().any(|e| {
            e.query.ends_with(t) && e.at >= reloaded && e.at <= reloaded + Duration::from_secs(5)
        });
        assert!(polled, "{t} was not polled within the new interval");
    }
    r.exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_removed_accounts_series_never_come_back() {
    let (sim, server) = sim().await;
    // Every answer takes a while, so removals land while requests of "old" are in flight.
    // Both accounts use one key, so the worker goes on after "old" is removed and gets the
    // answers that were under way.
    sim.add_fault(FaultRule::always(Fault::Delay(Duration::from_millis(300))));
    let stays = account("stays").rate(600).project(P3, &[]);
    let with_old = Config::new()
        .poll("1s", "5s", "30m")
        .account(stays.clone())
        .account(account("old").rate(600).project(P1, ALL_TYPES));
    let without = Config::new().poll("1s", "5s", "30m").account(stays);
    let r = Reloadable::start(&with_old, &server).await;
    for round in 0..25u64 {
        tokio::time::sleep(Duration::from_millis(300 + round * 37 % 500)).await;
        r.reload(&without).await;
        for _ in 0..3 {
            let body = scrape(&r.exporter).await;
            assert!(
                !body.contains("account=\"old\""),
                "round {round}: series of the removed account:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        r.reload(&with_old).await;
    }
    let old = hss_requests(&sim.log(), AK)
        .iter()
        .filter(|e| e.project_id == P1)
        .count();
    assert!(old >= 25, "only {old} answers for the removed account");
    r.exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn ready_once_every_credential_has_been_tried() {
    let (sim, server) = sim().await;
    sim.add_fault(FaultRule::always(Fault::Delay(Duration::from_secs(3))));
    let config = Config::new()
        .poll("1m", "10s", "30m")
        .account(account("signed").project(P1, &["Harbor"]))
        .account(account("token").auth(TOKEN).project(P2, &[]));
    let exporter = exporter(&config.yaml(), &server).await;
    let (status, body) = get(&exporter, "/-/ready").await;
    assert_eq!((status, body.as_str()), (503, "not ready\n"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(get(&exporter, "/-/ready").await.0, 200);
    exporter.shutdown().await;
}
