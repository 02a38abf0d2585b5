//! What a configuration asks of the rate limits: the minimum interval of each account, the
//! warnings when a round cannot fit, and the plan `check-config` prints.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::Settings;

/// The shortest interval in which `targets` calls fit at `per_minute` calls a minute.
pub fn min_interval(targets: usize, per_minute: u32) -> Duration {
    if per_minute == 0 {
        return Duration::MAX;
    }
    Duration::from_secs(60 * targets as u64).div_f64(f64::from(per_minute))
}

/// Start-up warnings: rounds that cannot fit in the interval at the configured rates.
pub fn capacity_warnings(settings: &Settings) -> Vec<String> {
    let interval = settings.poll.interval;
    let mut out = Vec::new();
    for a in &settings.accounts {
        let need = min_interval(a.targets.len(), a.rate_limit_per_minute);
        if need > interval {
            out.push(format!(
                "account {:?}: {} targets at {} calls/min need a poll.interval of at least {}; polling will run slower than the configured {}",
                a.name, a.targets.len(), a.rate_limit_per_minute,
                humantime::format_duration(round_up(need)), humantime::format_duration(interval)
            ));
        }
    }
    if let Some(global) = settings.poll.global_rate_limit_per_minute {
        let total = settings.targets().count();
        let need = min_interval(total, global);
        if need > interval {
            out.push(format!(
                "poll.rate_limit_per_minute: {total} targets at {global} calls/min need a poll.interval of at least {}; polling will run slower than the configured {}",
                humantime::format_duration(round_up(need)), humantime::format_duration(interval)
            ));
        }
    }
    out
}

/// What `check-config` prints: the totals, each account with its targets and the minimum
/// interval its rate limit allows, and the capacity warnings.
pub fn describe(settings: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "configuration OK: {} accounts, {} targets, poll.interval {}",
        settings.accounts.len(),
        settings.targets().count(),
        humantime::format_duration(settings.poll.interval)
    );
    for a in &settings.accounts {
        let need = min_interval(a.targets.len(), a.rate_limit_per_minute);
        let _ = writeln!(
            out,
            "account {} (region {}, {} auth, {} calls/min, endpoint {}): {} targets, minimum interval {}",
            a.name,
            a.region,
            a.credentials.kind(),
            a.rate_limit_per_minute,
            a.endpoint,
            a.targets.len(),
            humantime::format_duration(round_up(need))
        );
        for t in &a.targets {
            let _ = writeln!(out, "  {t}");
        }
    }
    for w in capacity_warnings(settings) {
        let _ = writeln!(out, "warning: {w}");
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

    #[test]
    fn computes_the_minimum_interval() {
        assert_eq!(min_interval(12, 5), Duration::from_secs(144));
        assert_eq!(min_interval(1, 5), Duration::from_secs(12));
        assert_eq!(min_interval(1, 0), Duration::MAX);
    }

    #[test]
    fn describes_accounts_targets_and_warnings() {
        let yaml = r"
poll: { interval: 1m }
accounts:
  - name: prod
    region: cn-north-4
    auth: { token: { token_env: T } }
    projects:
      - project_id: p1
        registry_types: [Harbor, Jfrog, Other, SwrPrivate, SwrShared, SwrEnterprise]
";
        let env = [("T".to_string(), "x".to_string())].into();
        let settings = crate::config::load_str(yaml, &env).unwrap();
        let text = describe(&settings);
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
}
