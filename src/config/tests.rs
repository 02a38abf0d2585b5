//! Unit tests of loading and validation.

use super::*;
use crate::model::Target;
use crate::model::{Credentials, ListenAddress};
use std::time::Duration;

const GOOD: &str = r#"
web:
  listen_address: "127.0.0.1:9943"
poll:
  interval: 5m
  timeout: 10s
  stale_after: 30m
accounts:
  - name: prod
    region: cn-north-4
    auth:
      ak_sk: { access_key_env: HSS_AK, secret_key_env: HSS_SK }
    projects:
      - project_id: 0123456789abcdef0123456789abcdef
        enterprise_project_id: all_granted_eps
        registry_types: [SwrPrivate, Harbor]
      - project_id: fedcba9876543210fedcba9876543210
"#;

fn env() -> Env {
    [("HSS_AK", "AK1"), ("HSS_SK", "SK1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The error text of `yaml`, which must be refused.
fn refused(yaml: &str, env: &Env) -> String {
    match load_str(yaml, env) {
        Ok(_) => panic!("config was accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn assert_refused(yaml: &str, wanted: &str) {
    let msg = refused(yaml, &env());
    assert!(
        msg.contains(wanted),
        "error {msg:?} does not contain {wanted:?}"
    );
}

#[test]
fn loads_a_good_config_into_one_target_per_registry_type() {
    let s = load_str(GOOD, &env()).unwrap();
    assert_eq!(s.listen_addresses, ["127.0.0.1:9943".parse().unwrap()]);
    assert_eq!(s.poll.interval, Duration::from_secs(300));
    let a = &s.accounts[0];
    assert_eq!(
        a.endpoint.as_str(),
        "https://hss.cn-north-4.myhuaweicloud.com/"
    );
    assert_eq!(a.rate_limit_per_minute, 5);
    let labels: Vec<[&str; 5]> = a.targets.iter().map(Target::label_values).collect();
    assert_eq!(
        labels,
        vec![
            [
                "prod",
                "cn-north-4",
                "0123456789abcdef0123456789abcdef",
                "all_granted_eps",
                "SwrPrivate"
            ],
            [
                "prod",
                "cn-north-4",
                "0123456789abcdef0123456789abcdef",
                "all_granted_eps",
                "Harbor"
            ],
            [
                "prod",
                "cn-north-4",
                "fedcba9876543210fedcba9876543210",
                "",
                "all"
            ],
        ]
    );
    match &a.credentials {
        Credentials::AkSk {
            access_key,
            secret_key,
            security_token,
        } => {
            assert_eq!((access_key.expose(), secret_key.expose()), ("AK1", "SK1"));
            assert!(security_token.is_none());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!format!("{s:?}").contains("SK1"), "secrets must not print");
}

#[test]
fn eu_region_defaults_to_the_eu_domain() {
    let yaml = GOOD.replace("cn-north-4", "eu-west-101");
    let s = load_str(&yaml, &env()).unwrap();
    assert_eq!(
        s.accounts[0].endpoint.as_str(),
        "https://hss.eu-west-101.myhuaweicloud.eu/"
    );
}

#[test]
fn env_overrides_use_the_prefix_and_double_underscores() {
    let mut e = env();
    e.insert("HSS_EXPORTER__POLL__INTERVAL".into(), "10m".into());
    e.insert("HSS_EXPORTER__WEB__LISTEN_ADDRESS".into(), ":9100".into());
    e.insert(
        "HSS_EXPORTER__POLL__RATE_LIMIT_PER_MINUTE".into(),
        "7".into(),
    );
    let s = load_str(GOOD, &e).unwrap();
    assert_eq!(s.poll.interval, Duration::from_secs(600));
    assert_eq!(s.listen_addresses, [ListenAddress::All(9100)]);
    assert_eq!(s.poll.global_rate_limit_per_minute, Some(7));
}

#[test]
fn refuses_unknown_keys_naming_the_path() {
    assert_refused(
        &GOOD.replace("  timeout: 10s", "  timout: 10s"),
        "poll.timout: unknown field `timout`, expected one of `interval`, `timeout`",
    );
    assert_refused(
        &GOOD.replace(
            "        enterprise_project_id:",
            "        enterprise_project:",
        ),
        "accounts[0].projects[0].enterprise_project: unknown field `enterprise_project`",
    );
    assert_refused(&format!("{GOOD}\nextra: 1\n"), "unknown field `extra`");
}

#[test]
fn refuses_unknown_registry_types() {
    assert_refused(
        &GOOD.replace("[SwrPrivate, Harbor]", "[SwrPrivate, harbour]"),
        r#"accounts[0].projects[0].registry_types[1]: unknown value "harbour" (expected one of Harbor, Jfrog, SwrPrivate, SwrShared, SwrEnterprise, Other)"#,
    );
    assert_refused(
        &GOOD.replace("[SwrPrivate, Harbor]", "[]"),
        "accounts[0].projects[0].registry_types: empty list",
    );
}

#[test]
fn refuses_empty_ids() {
    assert_refused(
        &GOOD.replace(
            "project_id: fedcba9876543210fedcba9876543210",
            "project_id: \"\"",
        ),
        "accounts[0].projects[1].project_id: must not be empty",
    );
    assert_refused(
        &GOOD.replace(
            "enterprise_project_id: all_granted_eps",
            "enterprise_project_id: \" \"",
        ),
        "accounts[0].projects[0].enterprise_project_id: must not be empty",
    );
    assert_refused(
        &GOOD.replace("name: prod", "name: \"\""),
        "accounts[0].name: must not be empty",
    );
    let long = "x".repeat(257);
    assert_refused(
        &GOOD.replace("fedcba9876543210fedcba9876543210", &long),
        "accounts[0].projects[1].project_id: longer than 256 characters",
    );
}

#[test]
fn refuses_missing_secrets() {
    let mut e = env();
    e.remove("HSS_SK");
    let msg = refused(GOOD, &e);
    assert_eq!(
        msg,
        r#"accounts[0].auth.ak_sk.secret_key_env: environment variable "HSS_SK" is not set"#
    );
    e.insert("HSS_SK".into(), "  \n".into());
    assert_eq!(
        refused(GOOD, &e),
        r#"accounts[0].auth.ak_sk.secret_key_env: environment variable "HSS_SK" is empty"#
    );
    assert_refused(
        &GOOD.replace("secret_key_env: HSS_SK", ""),
        "accounts[0].auth.ak_sk: one of secret_key_env, secret_key_file is required",
    );
    assert_refused(
        &GOOD.replace(
            "ak_sk: { access_key_env: HSS_AK, secret_key_env: HSS_SK }",
            "{}",
        ),
        "accounts[0].auth: exactly one of ak_sk, token, iam_password, metadata is required (found none)",
    );
    assert_refused(
            &GOOD.replace("ak_sk: { access_key_env: HSS_AK, secret_key_env: HSS_SK }", "{ ak_sk: { access_key_env: HSS_AK, secret_key_env: HSS_SK }, token: { token_env: T } }"),
            "found ak_sk, token",
        );
}

#[test]
fn reads_secret_files_and_refuses_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sk = dir.path().join("sk");
    std::fs::write(&sk, "file-secret\n").unwrap();
    let yaml = GOOD.replace(
        "secret_key_env: HSS_SK",
        &format!("secret_key_file: {}", sk.display()),
    );
    let s = load_str(&yaml, &env()).unwrap();
    let Credentials::AkSk { secret_key, .. } = &s.accounts[0].credentials else {
        panic!()
    };
    assert_eq!(
        secret_key.expose(),
        "file-secret",
        "the trailing newline is not part of the secret"
    );

    let missing = dir.path().join("nope");
    let yaml = GOOD.replace(
        "secret_key_env: HSS_SK",
        &format!("secret_key_file: {}", missing.display()),
    );
    let msg = refused(&yaml, &env());
    assert!(
        msg.starts_with(&format!(
            "accounts[0].auth.ak_sk.secret_key_file: cannot read {:?}: ",
            missing.display().to_string()
        )),
        "{msg}"
    );
}

#[test]
fn refuses_project_ids_a_request_cannot_carry() {
    for id in ["..", "a b", "¡", "p/q"] {
        let yaml = GOOD.replace("fedcba9876543210fedcba9876543210", &format!("\"{id}\""));
        assert_eq!(
                refused(&yaml, &env()),
                format!("accounts[0].projects[1].project_id: {id:?} may hold only letters, digits, '-' and '_'")
            );
    }
}

#[test]
fn refuses_duplicate_targets_and_accounts() {
    assert_refused(
            &GOOD.replace("[SwrPrivate, Harbor]", "[SwrPrivate, Harbor, SwrPrivate]"),
            "accounts[0].projects[0]: duplicate target \"prod/cn-north-4/0123456789abcdef0123456789abcdef/eps=all_granted_eps/SwrPrivate\" (already at accounts[0].projects[0])",
        );
    assert_refused(
            &GOOD.replace("  - project_id: fedcba9876543210fedcba9876543210", "  - project_id: fedcba9876543210fedcba9876543210\n      - project_id: fedcba9876543210fedcba9876543210"),
            "accounts[0].projects[2]: duplicate target \"prod/cn-north-4/fedcba9876543210fedcba9876543210/all\" (already at accounts[0].projects[1])",
        );
    let accounts = GOOD.split_once("accounts:\n").unwrap().1;
    assert_refused(
        &format!("{GOOD}{accounts}"),
        r#"accounts[1].name: duplicate account name "prod" (also accounts[0])"#,
    );
}

#[test]
fn refuses_zero_and_inconsistent_durations() {
    assert_refused(
        &GOOD.replace("interval: 5m", "interval: 0s"),
        "poll.interval: must be greater than zero",
    );
    assert_refused(
        &GOOD.replace("timeout: 10s", "timeout: 0s"),
        "poll.timeout: must be greater than zero",
    );
    assert_refused(
        &GOOD.replace("interval: 5m", "interval: soon"),
        "poll.interval: ",
    );
    assert_refused(
        &GOOD.replace("stale_after: 30m", "stale_after: 1m"),
        "poll.stale_after: 1m is shorter than poll.interval (5m)",
    );
    assert_refused(
        &GOOD.replace(
            "    region: cn-north-4",
            "    region: cn-north-4\n    rate_limit_per_minute: 0",
        ),
        "accounts[0].rate_limit_per_minute: must be greater than zero",
    );
}

#[test]
fn refuses_unknown_regions_and_bad_endpoints() {
    assert_refused(
        &GOOD.replace("cn-north-4", "cn-nort-4"),
        r#"accounts[0].region: unknown region "cn-nort-4""#,
    );
    let yaml = GOOD.replace(
        "    region: cn-north-4",
        "    region: my-stack-1\n    endpoint: https://hss.example.internal/base",
    );
    assert_eq!(
        load_str(&yaml, &env()).unwrap().accounts[0]
            .endpoint
            .as_str(),
        "https://hss.example.internal/base"
    );
    assert_refused(
        &GOOD.replace(
            "    region: cn-north-4",
            "    region: cn-north-4\n    endpoint: ftp://x",
        ),
        r#"accounts[0].endpoint: "ftp://x" is not an http(s) base URL"#,
    );
    assert_refused(
        &GOOD.replace("127.0.0.1:9943", "nowhere"),
        r#"web.listen_address: invalid address "nowhere""#,
    );
}

#[test]
fn reports_every_problem_one_line_each() {
    let yaml = GOOD
        .replace("interval: 5m", "interval: 0s")
        .replace("[SwrPrivate, Harbor]", "[Nexus]");
    let msg = refused(&yaml, &env());
    assert_eq!(msg.lines().count(), 2, "{msg}");
}

#[test]
fn keeps_unquoted_ids_exactly_as_written() {
    let yaml = GOOD
        .replace(
            "fedcba9876543210fedcba9876543210",
            "11111111111111111111111111111111",
        )
        .replace(
            "enterprise_project_id: all_granted_eps",
            "enterprise_project_id: 0",
        );
    let s = load_str(&yaml, &env()).unwrap();
    let t: Vec<_> = s
        .targets()
        .map(|t| (t.project_id.as_str(), t.enterprise_project_id.as_deref()))
        .collect();
    assert_eq!(t[0].1, Some("0"));
    assert_eq!(
        t[2],
        ("11111111111111111111111111111111", None),
        "not rounded through a float"
    );
    let yaml = GOOD.replace("fedcba9876543210fedcba9876543210", "0123");
    assert_eq!(
        load_str(&yaml, &env()).unwrap().accounts[0].targets[2].project_id,
        "0123"
    );
}

#[test]
fn refuses_keys_the_config_crate_would_misread() {
    assert_refused("~: x\n", "line 1: a key is empty or null");
    assert_refused("accounts[-2]: x\n", r#""accounts[-2]": unknown field"#);
    assert_refused(
        &format!("{GOOD}poll: {{}}\n"),
        r#"key "poll" appears twice"#,
    );
    let mut e = env();
    e.insert(
        "HSS_EXPORTER__ACCOUNTS[9223372036854775807]__NAME".into(),
        "x".into(),
    );
    let msg = refused(GOOD, &e);
    assert!(
        msg.starts_with("HSS_EXPORTER__ACCOUNTS[9223372036854775807]__NAME: not a valid override"),
        "{msg}"
    );
    let mut e = env();
    e.insert("HSS_EXPORTER__ACCOUNTS__0__NAME".into(), "x".into());
    assert!(refused(GOOD, &e).contains("the accounts list cannot be overridden"));
}

#[test]
fn registries_true_lists_a_project_once_at_its_own_interval() {
    let yaml = GOOD
        .replace(
            "  stale_after: 30m\n",
            "  stale_after: 30m\n  registries_interval: 10m\n  max_registries_per_project: 50\n",
        )
        .replace(
            "registry_types: [SwrPrivate, Harbor]",
            "registry_types: [SwrPrivate, Harbor]\n        registries: true",
        );
    let s = load_str(&yaml, &env()).unwrap();
    assert_eq!(s.poll.registries_interval, Duration::from_secs(600));
    assert_eq!(s.poll.max_registries_per_project, 50);
    let listings: Vec<String> = s.listings().map(ToString::to_string).collect();
    assert_eq!(
        listings,
        ["prod/cn-north-4/0123456789abcdef0123456789abcdef/eps=all_granted_eps/registries"]
    );
    // Without the keys: the poll interval, 1000, nothing listed.
    let s = load_str(GOOD, &env()).unwrap();
    assert_eq!(s.poll.registries_interval, Duration::from_secs(300));
    assert_eq!(s.poll.max_registries_per_project, 1000);
    assert_eq!(s.listings().count(), 0);
}

#[test]
fn refuses_bad_registry_detail_settings() {
    let with = |poll: &str, project: &str| {
        GOOD.replace(
            "  stale_after: 30m\n",
            &format!("  stale_after: 30m\n{poll}"),
        )
        .replace(
            "registry_types: [SwrPrivate, Harbor]",
            &format!("registry_types: [SwrPrivate, Harbor]\n{project}"),
        )
    };
    assert_refused(
        &with("  registries_interval: 0s\n", ""),
        "poll.registries_interval: must be greater than zero",
    );
    assert_refused(
        &with("  registries_interval: 1h\n", ""),
        "poll.stale_after: 30m is shorter than poll.registries_interval (1h)",
    );
    assert_refused(
        &with("  max_registries_per_project: 0\n", ""),
        "poll.max_registries_per_project: must be greater than zero",
    );
    assert_refused(
        &with("", "        registries: maybe\n"),
        "accounts[0].projects[0].registries",
    );
    let twice = with("", "        registries: true\n").replace(
        "      - project_id: fedcba9876543210fedcba9876543210\n",
        "      - project_id: 0123456789abcdef0123456789abcdef\n        enterprise_project_id: all_granted_eps\n        registries: true\n",
    );
    assert_refused(
        &twice,
        "accounts[0].projects[1].registries: the registries of \"prod/cn-north-4/0123456789abcdef0123456789abcdef/eps=all_granted_eps/registries\" are already listed (at accounts[0].projects[0])",
    );
}

#[test]
fn discovery_reads_the_projects_from_global_iam_or_the_stacks_iam() {
    let with = |extra: &str| {
        let yaml = format!(
            "accounts:\n  - name: d\n    region: cn-north-4\n{extra}    auth:\n      ak_sk: {{ access_key_env: HSS_AK, secret_key_env: HSS_SK }}\n    discover: {{ regions: [cn-north-4] }}\n"
        );
        let settings = load_str(&yaml, &env()).unwrap();
        let discover = settings.accounts[0].discover.clone().unwrap();
        discover.iam_endpoint.to_string()
    };
    assert_eq!(with(""), "https://iam.myhuaweicloud.com/");
    assert_eq!(
        with("    cloud: stack.example.com\n"),
        "https://iam-apigateway-proxy.stack.example.com/v3"
    );
    assert_eq!(
        with("    cloud: stack.example.com\n    iam_endpoint: https://iam.internal/v3\n"),
        "https://iam.internal/v3"
    );
}
