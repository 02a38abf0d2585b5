//! Projects found by themselves: an account with `discover:` polls the enabled region and
//! sub-region projects IAM lists for its credential (AK/SK, token or IAM password), follows
//! additions and removals within `refresh`, survives an IAM error without losing series,
//! and `check-config --discover` prints what it found.

mod common;

use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType;
use hss_exporter::sim::{Fault, FaultRule, Service, Sim};

const P4: &str = "4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d";
const P5: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
const MOS: &str = "6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f";
const OLD: &str = "7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a";
const NAMELESS: &str = "8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b";

/// IAM's projects: two of cn-north-4 (the region and a sub-project), one of
/// ap-southeast-1, one of eu-west-101, OBS's MOS, a disabled sub-project and one without
/// a name. Every project has statistics.
fn iam_projects(sim: &Sim) {
    sim.put_iam_project(P1, "cn-north-4", true);
    sim.put_iam_project(P2, "cn-north-4_dev", true);
    sim.put_iam_project(P3, "ap-southeast-1", true);
    sim.put_iam_project(P4, "eu-west-101", true);
    sim.put_iam_project(MOS, "MOS", true);
    sim.put_iam_project(OLD, "cn-north-4_old", false);
    sim.put_iam_project(NAMELESS, "", true);
    for (i, p) in [P1, P2, P3, P4, P5, MOS, OLD, NAMELESS]
        .into_iter()
        .enumerate()
    {
        sim.set_stats(p, None, RegistryType::Harbor, i as u64, 10);
    }
}

/// (account, region, project) of every `hss_registry_statistics_up` series.
fn polled(body: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = parse(body)
        .into_keys()
        .filter(|(n, _)| n == "hss_registry_statistics_up")
        .map(|(_, l)| {
            (
                l["account"].clone(),
                l["region"].clone(),
                l["project_id"].clone(),
            )
        })
        .collect();
    out.sort();
    out
}

fn of(account: &str, list: &[(&str, &str)]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = list
        .iter()
        .map(|(r, p)| (account.to_string(), (*r).to_string(), (*p).to_string()))
        .collect();
    out.sort();
    out
}

#[tokio::test(start_paused = true)]
async fn discovers_region_projects_follows_changes_and_survives_iam_errors() {
    let (sim, server) = sim().await;
    iam_projects(&sim);
    let yaml = Config::new()
        .poll("1m", "5s", "30m")
        .account(
            account("disc")
                .rate(60)
                .discover("{ regions: [cn-north-4, ap-southeast-1], refresh: 5m }"),
        )
        .yaml();
    let exporter = exporter(&yaml, &server).await;
    let want = of(
        "disc",
        &[
            ("cn-north-4", P1),
            ("cn-north-4", P2),
            ("ap-southeast-1", P3),
        ],
    );
    let body = wait_for(
        &exporter,
        Duration::from_secs(30),
        "three projects up",
        |b| {
            polled(b) == want
                && parse(b)
                    .iter()
                    .filter(|((n, _), v)| n == "hss_registry_statistics_up" && **v == 1.0)
                    .count()
                    == 3
        },
    )
    .await;
    assert_eq!(
        value(
            &body,
            "hss_exporter_discovered_projects",
            &[("account", "disc")]
        ),
        Some(3.0)
    );
    let p3 = target("disc", "ap-southeast-1", P3, "", "all");
    assert_eq!(value(&body, "hss_registry_access_fail", &p3), Some(2.0));
    // The project list was read with the AK/SK signature, once.
    let iam: Vec<_> = sim
        .log()
        .into_iter()
        .filter(|e| e.service == Service::Iam && e.path == "/v3/auth/projects")
        .collect();
    assert_eq!(iam.len(), 1, "{iam:?}");
    assert_eq!((iam[0].caller.as_str(), iam[0].status), (AK, 200));

    // A project appears and another goes: followed within one refresh.
    sim.put_iam_project(P5, "ap-southeast-1_team", true);
    sim.remove_iam_project(P2);
    let want = of(
        "disc",
        &[
            ("cn-north-4", P1),
            ("ap-southeast-1", P3),
            ("ap-southeast-1", P5),
        ],
    );
    let body = wait_for(
        &exporter,
        Duration::from_secs(5 * 60 + 30),
        "P5 in, P2 out",
        |b| {
            polled(b) == want
                && value(
                    b,
                    "hss_registry_statistics_up",
                    &target("disc", "ap-southeast-1", P5, "", "all"),
                ) == Some(1.0)
        },
    )
    .await;
    assert!(
        !body.contains(P2),
        "a project that left IAM's list loses every series"
    );

    // IAM fails: the last list stays, the error is counted, and the next refresh retries.
    sim.add_fault(FaultRule::always(Fault::Status(500)).iam());
    let body = wait_for(
        &exporter,
        Duration::from_secs(5 * 60 + 30),
        "an IAM error",
        |b| poll_errors(b, "disc", "cn-north-4", "http_5xx").is_some_and(|n| n >= 1.0),
    )
    .await;
    assert_eq!(polled(&body), want, "no series lost");
    assert_eq!(
        value(
            &body,
            "hss_exporter_discovered_projects",
            &[("account", "disc")]
        ),
        Some(3.0)
    );
    sim.clear_faults();
    sim.remove_iam_project(P5);
    wait_for(
        &exporter,
        Duration::from_secs(5 * 60 + 30),
        "P5 out after recovery",
        |b| !b.contains(P5),
    )
    .await;
    exporter.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn token_and_iam_password_accounts_discover_too_and_explicit_projects_win() {
    let (sim, server) = sim().await;
    iam_projects(&sim);
    let yaml = Config::new()
        .poll("1m", "5s", "30m")
        .account(
            account("tok")
                .rate(60)
                .auth(TOKEN)
                .discover("{ regions: [eu-west-101] }"),
        )
        .account(
            account("pw")
                .rate(60)
                .auth(IAM)
                .discover("{ registry_types: [Harbor], refresh: 10m }")
                .project(P1, &["Jfrog"]),
        )
        .yaml();
    let exporter = exporter(&yaml, &server).await;
    let body = wait_for(
        &exporter,
        Duration::from_secs(60),
        "both accounts' projects up",
        |b| {
            let up = parse(b)
                .iter()
                .filter(|((n, _), v)| n == "hss_registry_statistics_up" && **v == 1.0)
                .count();
            up == 5
        },
    )
    .await;
    let mut want = of("tok", &[("eu-west-101", P4)]);
    want.extend(of(
        "pw",
        &[
            ("cn-north-4", P1),
            ("cn-north-4", P2),
            ("ap-southeast-1", P3),
            ("eu-west-101", P4),
        ],
    ));
    want.sort();
    assert_eq!(polled(&body), want);
    // P1 is configured with Jfrog: that wins over the discovered Harbor.
    assert!(body.contains(&format!(
        r#"project_id="{P1}",region="cn-north-4",registry_type="Jfrog""#
    )));
    assert!(!body.contains(&format!(
        r#"project_id="{P1}",region="cn-north-4",registry_type="Harbor""#
    )));
    let log = sim.log();
    let listing_callers: Vec<&str> = log
        .iter()
        .filter(|e| e.path == "/v3/auth/projects")
        .map(|e| e.caller.as_str())
        .collect();
    assert!(
        listing_callers.contains(&"token-owner") && listing_callers.contains(&"acme/ops"),
        "{listing_callers:?}"
    );
    assert!(log.iter().all(|e| e.status < 400), "{log:?}");
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_discover_prints_what_it_found() {
    let (sim, server) = sim().await;
    iam_projects(&sim);
    let file = ConfigFile::new(&server.url());
    file.write(
        &Config::new()
            .account(account("disc").discover("{ regions: [cn-north-4] }"))
            .yaml(),
    );
    let out = run(&["check-config", "--discover", "--config", &file.arg()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("discovered for account disc: 2 projects\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  {P1} cn-north-4 (region cn-north-4)\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  {P2} cn-north-4_dev (region cn-north-4)\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  disc/cn-north-4/{P2}/all\n")),
        "{stdout}"
    );
    // Without --discover: no IAM call, the account has no project yet.
    let before = sim.log().len();
    let out = run(&["check-config", "--config", &file.arg()]).await;
    assert!(out.status.success());
    assert_eq!(sim.log().len(), before);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 targets"));
}
