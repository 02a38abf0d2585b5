//! What a configuration asks of the rate limits: the minimum interval of each account, the
//! warnings when a round cannot fit, and the plan `check-config` prints.

use std::fmt::Write as _;
use std::time::Duration;

use super::budget::groups;
use crate::config::Settings;

/// The shortest interval in which `targets` calls fit at `per_minute` calls a minute.
pub fn min_interval(targets: usize, per_minute: u32) -> Duration {
    if per_minute == 0 {
        return Duration::MAX;
    }
    Duration::from_secs(60 * targets as u64).div_f64(f64::from(per_minute))
}

/// Calls a minute that `targets` statistics polls and `listings` registry listings (one
/// page each, at least) need at the configured intervals.
fn calls_per_minute(settings: &Settings, targets: usize, listings: usize) -> f64 {
    let per = |n: usize, every: Duration| n as f64 * 60.0 / every.as_secs_f64().max(1e-9);
    per(targets, settings.poll.interval) + per(listings, settings.poll.registries_interval)
}

/// " and N registry listings" when there are any, for messages.
fn and_listings(listings: usize) -> String {
    if listings == 0 {
        String::new()
    } else {
        format!(" and {listings} registry listings (one call per 200 registries)")
    }
}

/// Start-up warnings: rounds that cannot fit in the interval at the configured rates, per
/// budget (accounts that share a credential share its calls) and for the global cap. A
/// registry listing counts as one call (at least; one per 200 registries).
pub fn capacity_warnings(settings: &Settings) -> Vec<String> {
    let interval = settings.poll.interval;
    let mut out = Vec::new();
    for g in groups(settings) {
        let (targets, listings, limit) = (g.targets(), g.listings(), g.limit());
        if listings > 0 {
            let need = calls_per_minute(settings, targets, listings);
            if need > f64::from(limit) {
                let who = match g.accounts.as_slice() {
                    [one] => format!("account {:?}", one.name),
                    _ => format!("budget shared by accounts {} ({})", g.names(), g.key),
                };
                out.push(format!(
                    "{who}: {targets} targets every {} and {listings} registry listings every {} need {need:.1} calls/min, more than its {limit}; polling will run slower than configured",
                    humantime::format_duration(interval),
                    humantime::format_duration(settings.poll.registries_interval),
                ));
            }
            continue;
        }
        let need = min_interval(targets, limit);
        if need > interval {
            let who = match g.accounts.as_slice() {
                [one] => format!("account {:?}", one.name),
                _ => format!("budget shared by accounts {} ({})", g.names(), g.key),
            };
            out.push(format!(
                "{who}: {targets} targets at {limit} calls/min need a poll.interval of at least {}; polling will run slower than the configured {}",
                humantime::format_duration(round_up(need)), humantime::format_duration(interval)
            ));
        }
    }
    if let Some(global) = settings.poll.global_rate_limit_per_minute {
        let total = settings.targets().count();
        let listings = settings.listings().count();
        let need = min_interval(total, global);
        if listings > 0 {
            let need = calls_per_minute(settings, total, listings);
            if need > f64::from(global) {
                out.push(format!(
                    "poll.rate_limit_per_minute: {total} targets and {listings} registry listings need {need:.1} calls/min, more than {global}; polling will run slower than configured"
                ));
            }
        } else if need > interval {
            out.push(format!(
                "poll.rate_limit_per_minute: {total} targets at {global} calls/min need a poll.interval of at least {}; polling will run slower than the configured {}",
                humantime::format_duration(round_up(need)), humantime::format_duration(interval)
            ));
        }
    }
    out
}

/// What `check-config` prints: the totals, each account with its targets and the minimum
/// interval its rate limit allows, the budgets that accounts share with the minimum
/// interval of each whole group, and the capacity warnings.
pub fn describe(settings: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "configuration OK: {} accounts, {} targets, poll.interval {}",
        settings.accounts.len(),
        settings.targets().count(),
        humantime::format_duration(settings.poll.interval)
    );
    let groups = groups(settings);
    for a in &settings.accounts {
        let need = min_interval(a.targets.len() + a.listings.len(), a.rate_limit_per_minute);
        let _ = write!(
            out,
            "account {} (region {}, {} auth, {} calls/min, endpoint {}{}): {} targets{}, minimum interval {}",
            a.name,
            a.region,
            a.credentials.kind(),
            a.rate_limit_per_minute,
            a.endpoint,
            network_details(a),
            a.targets.len(),
            and_listings(a.listings.len()),
            humantime::format_duration(round_up(need))
        );
        let others: Vec<&str> = groups
            .iter()
            .find(|g| g.accounts.iter().any(|m| m.name == a.name))
            .map(|g| {
                g.accounts
                    .iter()
                    .filter(|m| m.name != a.name)
                    .map(|m| m.name.as_str())
                    .collect()
            })
            .unwrap_or_default();
        if !others.is_empty() {
            let _ = write!(out, "; shares its budget with {}", others.join(", "));
        }
        out.push('\n');
        for t in &a.targets {
            let _ = writeln!(out, "  {t}");
        }
        for l in &a.listings {
            let _ = writeln!(out, "  {l}");
        }
    }
    for g in groups.iter().filter(|g| g.accounts.len() > 1) {
        let (targets, listings, limit) = (g.targets(), g.listings(), g.limit());
        let _ = writeln!(
            out,
            "budget {}: shared by accounts {}: {targets} targets{} at {limit} calls/min, minimum interval {}",
            g.key,
            g.names(),
            and_listings(listings),
            humantime::format_duration(round_up(min_interval(targets + listings, limit)))
        );
    }
    for w in capacity_warnings(settings) {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

/// What `check-config` adds after an account's endpoint when it is not the plain default:
/// the IAM or metadata endpoint, the proxy and the TLS trust. Never a password.
fn network_details(a: &crate::config::Account) -> String {
    use crate::model::Credentials;
    let mut out = String::new();
    match &a.credentials {
        Credentials::IamPassword { iam_endpoint, .. } => {
            let _ = write!(out, ", iam {iam_endpoint}");
        }
        Credentials::Metadata { endpoint } => {
            let _ = write!(out, ", metadata {endpoint}");
        }
        Credentials::AkSk { .. } | Credentials::Token(_) => {}
    }
    let proxy = &a.network.proxy;
    let https = a.endpoint.scheme() == "https";
    if let Some(p) = if https { &proxy.https } else { &proxy.http } {
        let _ = write!(out, ", proxy {p}");
        if let Some(no_proxy) = &proxy.no_proxy {
            let _ = write!(out, " except {no_proxy:?}");
        }
    }
    let tls = &a.network.tls;
    if tls.insecure_skip_verify {
        out.push_str(", TLS VERIFICATION OFF (insecure_skip_verify)");
    } else if let Some(path) = &tls.ca_file {
        let _ = write!(
            out,
            ", trusts the system CAs and {} from {}",
            tls.ca_certs.len(),
            path.display()
        );
    }
    out
}

/// Whole seconds, rounded up: a minimum never printed shorter than it is.
fn round_up(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Settings {
        let env = [
            ("T".to_string(), "x".to_string()),
            ("AK".to_string(), "AK0000000000000000001".to_string()),
            ("SK".to_string(), "sk".to_string()),
        ]
        .into();
        crate::config::load_str(yaml, &env).unwrap()
    }

    #[test]
    fn computes_the_minimum_interval() {
        assert_eq!(min_interval(12, 5), Duration::from_secs(144));
        assert_eq!(min_interval(1, 5), Duration::from_secs(12));
        assert_eq!(min_interval(1, 0), Duration::MAX);
    }

    #[test]
    fn describes_accounts_targets_and_warnings() {
        let text = describe(&settings(
            r"
poll: { interval: 1m }
accounts:
  - name: prod
    region: cn-north-4
    auth: { token: { token_env: T } }
    projects:
      - project_id: p1
        registry_types: [Harbor, Jfrog, Other, SwrPrivate, SwrShared, SwrEnterprise]
",
        ));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "configuration OK: 1 accounts, 6 targets, poll.interval 1m"
        );
        assert_eq!(lines[1], "account prod (region cn-north-4, token auth, 5 calls/min, endpoint https://hss.cn-north-4.myhuaweicloud.com/): 6 targets, minimum interval 1m 12s");
        assert_eq!(lines[2], "  prod/cn-north-4/p1/Harbor");
        assert_eq!(lines.len(), 9, "{text}");
        assert!(
            lines[8].starts_with("warning: account \"prod\": 6 targets at 5 calls/min need a poll.interval of at least 1m 12s"),
            "{text}"
        );
    }

    #[test]
    fn registry_listings_count_in_the_minimum_interval_and_the_warnings() {
        let text = describe(&settings(
            r"
poll: { interval: 1m, registries_interval: 2m }
accounts:
  - name: prod
    region: cn-north-4
    auth: { token: { token_env: T } }
    projects:
      - { project_id: p1, registry_types: [Harbor, Jfrog], registries: true }
      - { project_id: p2, registries: true }
",
        ));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].ends_with("3 targets and 2 registry listings (one call per 200 registries), minimum interval 1m"),
            "{text}"
        );
        assert_eq!(lines[5], "  prod/cn-north-4/p1/registries", "{text}");
        assert_eq!(lines[6], "  prod/cn-north-4/p2/registries", "{text}");
        assert!(!text.contains("warning"), "3/min + 1/min fit in 5: {text}");
        let tight = describe(&settings(
            r"
poll: { interval: 1m }
accounts:
  - name: prod
    region: cn-north-4
    auth: { token: { token_env: T } }
    projects:
      - { project_id: p1, registry_types: [Harbor, Jfrog, Other], registries: true }
      - { project_id: p2, registries: true }
",
        ));
        assert!(
            tight.contains("warning: account \"prod\": 4 targets every 1m and 2 registry listings every 1m need 6.0 calls/min, more than its 5"),
            "{tight}"
        );
    }

    #[test]
    fn a_shared_key_is_one_budget_with_the_minimum_interval_of_the_group() {
        let text = describe(&settings(
            r"
poll: { interval: 3m }
accounts:
  - name: team-a
    region: cn-north-4
    rate_limit_per_minute: 6
    auth: { ak_sk: { access_key_env: AK, secret_key_env: SK } }
    projects: [{ project_id: p1, registry_types: [Harbor, Jfrog, Other] }]
  - name: team-b
    region: cn-north-4
    auth: { ak_sk: { access_key_env: AK, secret_key_env: SK } }
    projects: [{ project_id: p2, registry_types: [Harbor, Jfrog, Other, SwrPrivate, SwrShared, SwrEnterprise] }]
",
        ));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].ends_with("3 targets, minimum interval 30s; shares its budget with team-b"),
            "{text}"
        );
        let budget = lines
            .iter()
            .find(|l| l.starts_with("budget "))
            .expect(&text);
        assert!(
            budget.starts_with("budget access key #")
                && budget.ends_with(" at hss.cn-north-4.myhuaweicloud.com:443: shared by accounts team-a, team-b: 9 targets at 5 calls/min, minimum interval 1m 48s"),
            "{budget}"
        );
        assert!(
            !text.contains("AK0000000000000000001"),
            "the access key is not printed"
        );
        assert!(
            !text.contains("warning"),
            "9 targets at 5/min fit in 3m: {text}"
        );
        let tight = describe(&settings(&text_config_with_interval("1m")));
        assert!(
            tight.contains("warning: budget shared by accounts team-a, team-b (access key #"),
            "{tight}"
        );
    }

    fn text_config_with_interval(interval: &str) -> String {
        format!(
            r"
poll: {{ interval: {interval} }}
accounts:
  - name: team-a
    region: cn-north-4
    auth: {{ ak_sk: {{ access_key_env: AK, secret_key_env: SK }} }}
    projects: [{{ project_id: p1, registry_types: [Harbor, Jfrog, Other] }}]
  - name: team-b
    region: cn-north-4
    auth: {{ ak_sk: {{ access_key_env: AK, secret_key_env: SK }} }}
    projects: [{{ project_id: p2, registry_types: [Harbor, Jfrog, Other] }}]
"
        )
    }
}
