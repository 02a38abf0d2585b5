//! Projects found by themselves: an account with `discover:` has the projects its credential
//! can access listed with IAM (`GET /v3/auth/projects`) every `refresh`, and each enabled
//! project of a region (or a sub-project of one) becomes targets like a configured project.
//! [`expand`] turns the configuration and the latest lists into what the scheduler runs;
//! [`run`] keeps the lists current.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{Account, Discover, Settings};
use crate::hss::iam::{list_projects, IamProject};
use crate::hss::{ApiError, HssClient, HttpClients};
use crate::model::{
    default_endpoint, region_of_project_name, Credentials, Listing, Network, Target,
};

/// A discovered project that is polled: its ID and the region its name says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Project {
    /// The project ID.
    pub id: String,
    /// The region part of its name: the `region` label, and where its HSS endpoint is.
    pub region: String,
    /// Its name in IAM, for `check-config`.
    pub name: String,
}

/// The projects of an IAM listing that `discover` polls: enabled, named after a region (or a
/// sub-project of one) of `discover.regions`, with an ID a request can carry. Sorted by
/// region, then name.
pub fn select(discover: &Discover, listed: &[IamProject]) -> Vec<Project> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out: Vec<Project> = listed
        .iter()
        .filter(|p| p.enabled && !p.id.is_empty() && p.id.len() <= 256 && p.id.chars().all(plain))
        .filter_map(|p| {
            let region = region_of_project_name(&p.name)?;
            let wanted = discover
                .regions
                .as_ref()
                .is_none_or(|rs| rs.iter().any(|r| r == region));
            wanted.then(|| Project {
                id: p.id.clone(),
                region: region.to_string(),
                name: p.name.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.region, &a.name, &a.id).cmp(&(&b.region, &b.name, &b.id)));
    out.dedup_by(|a, b| a.id == b.id);
    out
}

/// What the scheduler runs: `settings` with each discovering account's projects in `found`
/// added as targets (and listings). A project the account also names under `projects` is
/// polled as configured there: explicit entries win. Projects of the account's own region go
/// to the account; those of another region to an account of the same name in that region,
/// whose endpoint is derived from the region unless the account sets `endpoint`.
pub fn expand<S: std::hash::BuildHasher>(
    settings: &Settings,
    found: &HashMap<String, Vec<Project>, S>,
) -> Settings {
    let mut out = settings.clone();
    let mut extra: Vec<(usize, Account)> = Vec::new();
    for (i, account) in out.accounts.iter_mut().enumerate() {
        let (Some(discover), Some(projects)) = (&account.discover, found.get(&account.name)) else {
            continue;
        };
        let explicit: HashSet<&str> = settings.accounts[i]
            .targets
            .iter()
            .map(|t| t.project_id.as_str())
            .collect();
        let mut by_region: BTreeMap<&str, Vec<&Project>> = BTreeMap::new();
        for p in projects
            .iter()
            .filter(|p| !explicit.contains(p.id.as_str()))
        {
            by_region.entry(&p.region).or_default().push(p);
        }
        for (region, projects) in by_region {
            let targets = projects.iter().flat_map(|p| {
                discover.registry_types.iter().map(|t| Target {
                    account: account.name.clone(),
                    region: region.to_string(),
                    project_id: p.id.clone(),
                    enterprise_project_id: None,
                    registry_type: *t,
                })
            });
            let listings = projects
                .iter()
                .filter(|_| discover.registries)
                .map(|p| Listing {
                    account: account.name.clone(),
                    region: region.to_string(),
                    project_id: p.id.clone(),
                    enterprise_project_id: None,
                });
            if region == account.region {
                account.targets.extend(targets);
                account.listings.extend(listings);
                continue;
            }
            let endpoint = if account.explicit_endpoint {
                account.endpoint.clone()
            } else {
                match Url::parse(&default_endpoint(region)) {
                    Ok(url) => url,
                    Err(_) => continue,
                }
            };
            extra.push((
                i,
                Account {
                    name: account.name.clone(),
                    region: region.to_string(),
                    endpoint,
                    rate_limit_per_minute: account.rate_limit_per_minute,
                    credentials: account.credentials.clone(),
                    network: account.network.clone(),
                    targets: targets.collect(),
                    listings: listings.collect(),
                    explicit_endpoint: account.explicit_endpoint,
                    discover: None,
                },
            ));
        }
    }
    // Each region's account right after the account it was discovered for.
    for (i, account) in extra.into_iter().rev() {
        out.accounts.insert(i + 1, account);
    }
    out
}

/// One account's discovery: its projects, or why they could not be listed.
#[derive(Debug)]
pub struct Found {
    /// The account that discovered.
    pub account: String,
    /// Its region, for the error counter.
    pub region: String,
    /// The projects it polls now, or the error (the last list then stays).
    pub result: Result<Vec<Project>, ApiError>,
}

/// Lists `account`'s projects once, through the HTTP client of its network settings.
pub async fn discover_once(
    clients: &HttpClients,
    account: &Account,
    timeout: Duration,
) -> Option<Found> {
    let discover = account.discover.as_ref()?;
    let client = HssClient::for_account(
        &discover.iam_endpoint,
        &account.credentials,
        &account.network,
        timeout,
        clients,
    );
    let result = list_projects(&client)
        .await
        .map(|listed| select(discover, &listed));
    Some(Found {
        account: account.name.clone(),
        region: account.region.clone(),
        result,
    })
}

/// What makes a new discovery necessary at once when it changes.
type Key = (Discover, Credentials, Network);

fn key_of(account: &Account) -> Option<Key> {
    Some((
        account.discover.clone()?,
        account.credentials.clone(),
        account.network.clone(),
    ))
}

/// What a one-off discovery (`once`, `check-config --discover`) found.
#[derive(Debug)]
pub struct Discovered {
    /// The settings with the projects found.
    pub settings: Settings,
    /// One line per account and per project found, and one per failed discovery.
    pub report: String,
    /// How many discoveries failed.
    pub failed: usize,
}

/// Discovers the projects of every discovering account of `settings` once, one after the
/// other; `settings` as they are when none discovers.
pub async fn discover_all(settings: Settings) -> Discovered {
    if !settings.accounts.iter().any(|a| a.discover.is_some()) {
        return Discovered {
            settings,
            report: String::new(),
            failed: 0,
        };
    }
    let clients = HttpClients::new();
    let mut found = HashMap::new();
    let (mut report, mut failed) = (String::new(), 0);
    for account in &settings.accounts {
        let Some(done) = discover_once(&clients, account, settings.poll.timeout).await else {
            continue;
        };
        match done.result {
            Ok(projects) => {
                let _ = writeln!(
                    report,
                    "discovered for account {}: {} projects",
                    done.account,
                    projects.len()
                );
                for p in &projects {
                    let _ = writeln!(report, "  {} {} (region {})", p.id, p.name, p.region);
                }
                found.insert(done.account, projects);
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(report, "discovery for account {} failed: {e}", done.account);
            }
        }
    }
    Discovered {
        settings: expand(&settings, &found),
        report,
        failed,
    }
}

/// Discovers the projects of every discovering account of the latest `settings` every
/// `refresh`, sending what it finds to `found`. An account that starts discovering, or
/// whose discovery settings or credentials change, is listed at once.
pub async fn run(
    mut settings: watch::Receiver<Arc<Settings>>,
    found: mpsc::Sender<Found>,
    clients: Arc<HttpClients>,
    cancel: CancellationToken,
) {
    let mut due: HashMap<String, (Key, Instant)> = HashMap::new();
    loop {
        let current = settings.borrow_and_update().clone();
        let now = Instant::now();
        let mut next: HashMap<String, (Key, Instant)> = HashMap::new();
        for account in &current.accounts {
            let Some(key) = key_of(account) else {
                continue;
            };
            let at = match due.remove(&account.name) {
                Some((old, at)) if old == key => at,
                _ => now,
            };
            next.insert(account.name.clone(), (key, at));
        }
        due = next;
        // Every account that is due, one after the other.
        for account in &current.accounts {
            let Some((key, at)) = due.get(&account.name) else {
                continue;
            };
            if *at > Instant::now() {
                continue;
            }
            let refresh = key.0.refresh;
            let done = tokio::select! {
                () = cancel.cancelled() => return,
                done = discover_once(&clients, account, current.poll.timeout) => done,
            };
            if let Some(done) = done {
                if found.send(done).await.is_err() {
                    return;
                }
            }
            if let Some(entry) = due.get_mut(&account.name) {
                entry.1 = Instant::now() + refresh;
            }
        }
        let wake = due
            .values()
            .map(|(_, at)| *at)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = sleep_until(wake) => {}
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn settings(yaml: &str) -> Settings {
        let env: Env = [("AK", "AK1"), ("SK", "SK1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        crate::config::load_str(yaml, &env).unwrap()
    }

    fn iam(id: &str, name: &str, enabled: bool) -> IamProject {
        IamProject {
            id: id.into(),
            name: name.into(),
            enabled,
        }
    }

    #[test]
    fn keeps_enabled_region_projects_of_the_wanted_regions() {
        let s = settings(
            r"
accounts:
  - name: a
    region: cn-north-4
    auth: { ak_sk: { access_key_env: AK, secret_key_env: SK } }
    discover: { regions: [cn-north-4, ap-southeast-1] }
",
        );
        let d = s.accounts[0].discover.as_ref().unwrap();
        let listed = [
            iam("p1", "cn-north-4", true),
            iam("p2", "cn-north-4_dev", true),
            iam("p3", "cn-north-4_old", false),
            iam("p4", "MOS", true),
            iam("p5", "", true),
            iam("p6", "cn-east-3", true),
            iam("p7", "ap-southeast-1", true),
            iam("bad id!", "ap-southeast-1_x", true),
        ];
        let ids: Vec<(String, String)> = select(d, &listed)
            .into_iter()
            .map(|p| (p.id, p.region))
            .collect();
        assert_eq!(
            ids,
            [
                ("p7".to_string(), "ap-southeast-1".to_string()),
                ("p1".into(), "cn-north-4".into()),
                ("p2".into(), "cn-north-4".into()),
            ]
        );
    }

    #[test]
    fn expands_into_accounts_per_region_and_explicit_projects_win() {
        let s = settings(
            r"
accounts:
  - name: a
    region: cn-north-4
    auth: { ak_sk: { access_key_env: AK, secret_key_env: SK } }
    projects: [{ project_id: p1, registry_types: [Harbor] }]
    discover: { registry_types: [Harbor, Jfrog], registries: true }
",
        );
        let found = HashMap::from([(
            "a".to_string(),
            vec![
                Project {
                    id: "p1".into(),
                    region: "cn-north-4".into(),
                    name: "cn-north-4".into(),
                },
                Project {
                    id: "p2".into(),
                    region: "cn-north-4".into(),
                    name: "cn-north-4_dev".into(),
                },
                Project {
                    id: "p3".into(),
                    region: "eu-west-101".into(),
                    name: "eu-west-101".into(),
                },
            ],
        )]);
        let e = expand(&s, &found);
        let shown: Vec<(String, String, Vec<String>, Vec<String>)> = e
            .accounts
            .iter()
            .map(|a| {
                (
                    a.region.clone(),
                    a.endpoint.to_string(),
                    a.targets.iter().map(ToString::to_string).collect(),
                    a.listings.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "cn-north-4".to_string(),
                    "https://hss.cn-north-4.myhuaweicloud.com/".to_string(),
                    vec![
                        "a/cn-north-4/p1/Harbor".to_string(),
                        "a/cn-north-4/p2/Harbor".into(),
                        "a/cn-north-4/p2/Jfrog".into()
                    ],
                    vec!["a/cn-north-4/p2/registries".to_string()]
                ),
                (
                    "eu-west-101".to_string(),
                    "https://hss.eu-west-101.myhuaweicloud.eu/".to_string(),
                    vec![
                        "a/eu-west-101/p3/Harbor".to_string(),
                        "a/eu-west-101/p3/Jfrog".into()
                    ],
                    vec!["a/eu-west-101/p3/registries".to_string()]
                ),
            ]
        );
        assert_eq!(expand(&s, &HashMap::new()).accounts, s.accounts);
    }
}
