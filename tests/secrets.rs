//! No AK, SK, password or token ever shows in the logs (at trace level, HTTP libraries
//! included), the metrics or the status page, through successes, refusals and reloads.

mod common;

use std::cell::RefCell;
use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType;
use hss_exporter::sim::Service;
use reqwest::Method;

fn config(proxy: &TestProxy) -> String {
    // The refused key and the refused user are not those of the accounts that work: a
    // credential's failures suspend every account that shares it.
    let iam_wrong_password = IAM
        .replace("HSS_PASSWORD", "HSS_BAD_SK")
        .replace("user: ops", "user: stranger");
    Config::new()
        .poll("2s", "2s", "1m")
        .account(
            account("signed")
                .rate(120)
                .project(P1, &["Harbor", "Jfrog"]),
        )
        .account(
            account("refused")
                .auth(r#"{ ak_sk: { access_key_env: HSS_AK2, secret_key_file: "{DIR}/bad-sk" } }"#)
                .project(P2, &[]),
        )
        .account(account("token").auth(TOKEN).project(P2, &[]))
        .account(account("iam").rate(120).auth(IAM).project(P3, &[]))
        .account(
            account("wrong-password")
                .auth(&iam_wrong_password)
                .project(P3, &[]),
        )
        .account(
            account("via-proxy")
                .rate(120)
                .with(&format!("proxy_url: \"http://probe@{}\"", proxy.addr))
                .with(r#"proxy_password_file: "{DIR}/proxy-password""#)
                .project(P1, &[]),
        )
        .account(
            account("agency")
                .rate(120)
                .auth(r#"{ metadata: { endpoint: "{API}" } }"#)
                .project(P3, &[]),
        )
        .yaml()
}

/// `Ok` when every named condition holds, else which do not.
fn all_done(state: &[(&str, bool)]) -> Result<(), String> {
    if state.iter().all(|(_, done)| *done) {
        Ok(())
    } else {
        Err(format!("{state:?}"))
    }
}

fn suspended(body: &str, account: &str) -> bool {
    value(
        body,
        "hss_exporter_account_suspended",
        &[("account", account), ("region", "cn-north-4")],
    ) == Some(1.0)
}

fn up(body: &str, account: &str, project: &str) -> bool {
    value(
        body,
        "hss_registry_statistics_up",
        &target(account, "cn-north-4", project, "", "all"),
    ) == Some(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_logs_metrics_or_the_status_page() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, RegistryType::Harbor, 1, 2);
    // Temporary keys that rotate during the run.
    sim.enable_metadata(Duration::from_secs(4));
    let proxy = TestProxy::start(&[], Some("probe:pr0xy-secret")).await;
    let file = ConfigFile::new(&server.url());
    file.write_file("bad-sk", "file-secret-that-is-wrong\n");
    file.write_file("proxy-password", "pr0xy-secret\n");
    file.write(&config(&proxy));
    let addr = format!("127.0.0.1:{}", free_port());
    let exporter = Running::reading_stderr(&[
        "--config",
        &file.arg(),
        "--web.listen-address",
        &addr,
        "--log.level",
        "trace",
        "--web.enable-lifecycle",
    ]);

    // Every page fetched, to be searched for secrets at the end.
    let seen = RefCell::new(Vec::new());
    let url = format!("http://{addr}");
    let metrics = format!("{url}/metrics");
    let (seen_ref, sim_ref, metrics_ref) = (&seen, &sim, metrics.as_str());
    // Wait for every path to have been taken: success, refusal, IAM token, IAM refusal.
    eventually(
        Duration::from_secs(20),
        "every path taken: success, refusal, IAM token, IAM refusal",
        move || async move {
            let (_, body) = fetch(Method::GET, metrics_ref).await?;
            let log = sim_ref.log();
            let state = [
                ("refused suspended", suspended(&body, "refused")),
                (
                    "wrong-password suspended",
                    suspended(&body, "wrong-password"),
                ),
                (
                    "IAM token issued",
                    log.iter()
                        .any(|e| e.service == Service::Iam && e.status == 201),
                ),
                ("token up", up(&body, "token", P2)),
                ("via-proxy up", up(&body, "via-proxy", P1)),
                ("agency up", up(&body, "agency", P3)),
                (
                    "temporary keys rotated",
                    sim_ref.issued_temporary_keys().len() >= 2,
                ),
            ];
            seen_ref.borrow_mut().push(body);
            all_done(&state)
        },
    )
    .await;
    // A revoked IAM token (401, then a fresh one) and a reload that re-reads the secret file.
    let revoked_at = sim.log().len();
    sim.revoke_issued_tokens();
    file.write_file("bad-sk", &format!("{SK}\n"));
    let reload = fetch(Method::POST, &format!("{url}/-/reload")).await;
    assert_eq!(reload.map(|(status, _)| status), Ok(200));
    eventually(
        Duration::from_secs(20),
        "the refused account polled with the new key and the revoked IAM token replaced",
        move || async move {
            let (_, body) = fetch(Method::GET, metrics_ref).await?;
            let log = sim_ref.log();
            let after = &log[revoked_at.min(log.len())..];
            let refused = after
                .iter()
                .position(|e| e.service == Service::Hss && e.status == 401 && e.caller.is_empty());
            let renewed = refused.and_then(|i| {
                after[i..]
                    .iter()
                    .position(|e| e.service == Service::Iam && e.status == 201)
                    .map(|j| i + j)
            });
            let used = renewed.is_some_and(|i| {
                after[i..]
                    .iter()
                    .any(|e| e.service == Service::Hss && e.status == 200 && e.caller == "acme/ops")
            });
            let state = [
                ("refused up", up(&body, "refused", P2)),
                ("revoked token refused", refused.is_some()),
                ("new token issued", renewed.is_some()),
                ("new token used", used),
            ];
            seen_ref.borrow_mut().push(body);
            all_done(&state)
        },
    )
    .await;
    for path in ["/metrics", "/", "/status.json", "/-/ready"] {
        let (_, page) = fetch(Method::GET, &format!("{url}{path}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        seen.borrow_mut().push(page);
    }
    let (_, logs) = exporter.stop(Duration::from_secs(10)).await;
    let logs = logs.join("\n");
    let seen = seen.into_inner();

    // The logs are really at trace level, HTTP client and server included.
    assert!(logs.contains("level=trace"), "trace logging was on");
    assert!(
        logs.contains("target=hyper"),
        "HTTP library traces are included"
    );
    assert!(logs.contains("authentication refused") && logs.contains("obtained IAM token"));
    assert!(logs.contains("obtained temporary keys from the metadata service"));
    let log = sim.log();
    assert!(
        log.iter()
            .any(|e| e.service == Service::Hss && e.status == 401 && e.caller.is_empty()),
        "a revoked token was refused"
    );

    assert!(
        proxy.passed().iter().any(|p| p.status == 200),
        "calls went through the proxy with its password"
    );
    let temporary = sim.issued_temporary_keys();
    assert!(
        temporary.len() >= 2,
        "the temporary keys rotated: {}",
        temporary.len()
    );

    // "MIIsim" starts every IAM token the simulator issues, "mdtoken" every metadata
    // session token, "tmp-" every temporary secret key and security token.
    let mut secrets: Vec<String> = [
        AK,
        AK2,
        SK,
        "static-token-1",
        "s3cret-password",
        "not-the-secret-key",
        "file-secret-that-is-wrong",
        "MIIsim",
        "pr0xy-secret",
        "mdtoken",
        "tmp-sk-",
        "tmp-sectoken-",
    ]
    .map(str::to_string)
    .to_vec();
    for (ak, sk, token) in temporary {
        secrets.extend([ak, sk, token]);
    }
    for secret in &secrets {
        let secret = secret.as_str();
        assert!(!logs.contains(secret), "{secret:?} is in the logs");
        for page in &seen {
            assert!(!page.contains(secret), "{secret:?} is in a page");
        }
    }
}
