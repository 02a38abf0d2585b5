//! The one validation pass: meaning, not shape. It turns a [`FileConfig`] into [`Settings`],
//! resolving secrets on the way, and reports every problem at once, one line each, naming
//! the key path and the bad value.

use std::collections::{BTreeMap, HashMap};

use url::Url;

use super::file::{AccountSection, DiscoverSection, FileConfig};
use super::network::{validate_network, EnvProxies};
use super::{auth, Account, ConfigError, Discover, Env, PollSettings, Settings};
use super::{DEFAULT_LISTEN_ADDRESS, DEFAULT_RATE_LIMIT_PER_MINUTE, MAX_ID_LEN};
use crate::model::{
    default_endpoint, stack_endpoint, ListenAddress, Listing, RegistryType, Target, KNOWN_REGIONS,
};

/// Checks meaning (not shape) and resolves secrets; reports every problem, one line each.
pub fn validate(file: &FileConfig, env: &Env) -> Result<Settings, ConfigError> {
    let mut errors = Vec::new();

    let listen_address = file.web.listen_address.parse().unwrap_or_else(|()| {
        errors.push(format!(
            "web.listen_address: invalid address {:?} (expected host:port or :port, e.g. {DEFAULT_LISTEN_ADDRESS})",
            file.web.listen_address
        ));
        ListenAddress::All(0)
    });

    let poll = &file.poll;
    for (key, value) in [
        ("interval", poll.interval),
        ("timeout", poll.timeout),
        ("stale_after", poll.stale_after),
    ] {
        if value.is_zero() {
            errors.push(format!("poll.{key}: must be greater than zero"));
        }
    }
    if !poll.interval.is_zero() && poll.stale_after < poll.interval {
        errors.push(format!(
            "poll.stale_after: {} is shorter than poll.interval ({}); every value would vanish between polls",
            humantime::format_duration(poll.stale_after),
            humantime::format_duration(poll.interval)
        ));
    }
    if poll.registries_interval.is_some_and(|d| d.is_zero()) {
        errors.push("poll.registries_interval: must be greater than zero".into());
    }
    let registries_interval = poll.registries_interval.unwrap_or(poll.interval);
    if poll.registries_interval.is_some()
        && !registries_interval.is_zero()
        && poll.stale_after < registries_interval
    {
        errors.push(format!(
            "poll.stale_after: {} is shorter than poll.registries_interval ({}); every registry's series would vanish between listings",
            humantime::format_duration(poll.stale_after),
            humantime::format_duration(registries_interval)
        ));
    }
    if poll.max_registries_per_project == 0 {
        errors.push("poll.max_registries_per_project: must be greater than zero".into());
    }
    if poll.rate_limit_per_minute == Some(0) {
        errors.push("poll.rate_limit_per_minute: must be greater than zero".into());
    }
    if file.accounts.is_empty() {
        errors.push("accounts: at least one account is required".into());
    }

    // Read once, and only when an account goes by the environment: a bad variable is one
    // problem, not one per account.
    let env_proxies = if file.accounts.iter().any(uses_env_proxy) {
        EnvProxies::read(env, &mut errors)
    } else {
        EnvProxies::default()
    };
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut accounts = Vec::new();
    for (i, raw) in file.accounts.iter().enumerate() {
        let at = format!("accounts[{i}]");
        if raw.name.trim().is_empty() {
            errors.push(format!("{at}.name: must not be empty"));
        } else if let Some(first) = names.insert(&raw.name, i) {
            errors.push(format!(
                "{at}.name: duplicate account name {:?} (also accounts[{first}])",
                raw.name
            ));
        }
        if let Some(account) = validate_account(&at, raw, env, &env_proxies, &mut errors) {
            accounts.push(account);
        }
    }

    if !errors.is_empty() {
        return Err(ConfigError::Invalid(errors));
    }
    Ok(Settings {
        listen_addresses: vec![listen_address],
        poll: PollSettings {
            interval: poll.interval,
            timeout: poll.timeout,
            stale_after: poll.stale_after,
            global_rate_limit_per_minute: poll.rate_limit_per_minute,
            registries_interval,
            max_registries_per_project: poll.max_registries_per_project,
        },
        accounts,
    })
}

/// Whether the account takes its proxy from the environment (it names none of its own).
fn uses_env_proxy(raw: &AccountSection) -> bool {
    raw.proxy_url.is_none() && raw.proxy_url_env.is_none() && raw.proxy_url_file.is_none()
}

fn validate_account(
    at: &str,
    raw: &AccountSection,
    env: &Env,
    env_proxies: &EnvProxies,
    errors: &mut Vec<String>,
) -> Option<Account> {
    let before = errors.len();
    let region = raw.region.trim().to_string();
    let cloud = raw.cloud.as_deref().map(str::trim);
    if let Some(c) = cloud {
        check_cloud(&format!("{at}.cloud"), c, errors);
    }
    if region.is_empty() {
        errors.push(format!("{at}.region: must not be empty"));
    } else if raw.endpoint.is_none() && cloud.is_none() && !KNOWN_REGIONS.contains(&region.as_str())
    {
        errors.push(format!(
            "{at}.region: unknown region {region:?} (set {at}.endpoint, or {at}.cloud for a Huawei Cloud Stack, to use a region the exporter does not know)"
        ));
    }
    let endpoint = match (&raw.endpoint, cloud) {
        (Some(e), _) => parse_endpoint(&format!("{at}.endpoint"), e, errors),
        (None, Some(cloud)) => parse_endpoint(
            &format!("{at}.cloud"),
            &stack_endpoint(&region, cloud),
            errors,
        ),
        (None, None) => Url::parse(&default_endpoint(&region)).ok(),
    };
    let network = validate_network(at, raw, env, env_proxies, errors);
    let rate_limit_per_minute = raw
        .rate_limit_per_minute
        .unwrap_or(DEFAULT_RATE_LIMIT_PER_MINUTE);
    if rate_limit_per_minute == 0 {
        errors.push(format!(
            "{at}.rate_limit_per_minute: must be greater than zero"
        ));
    }
    let credentials = auth::validate_auth(
        &format!("{at}.auth"),
        &raw.auth,
        &region,
        cloud,
        env,
        errors,
    );

    let discover = raw
        .discover
        .as_ref()
        .and_then(|d| validate_discover(at, d, raw.iam_endpoint.as_deref(), cloud, errors));
    if raw.discover.is_none() {
        if raw.projects.is_empty() {
            errors.push(format!(
                "{at}.projects: at least one project is required (or discover)"
            ));
        }
        if raw.iam_endpoint.is_some() {
            errors.push(format!(
                "{at}.iam_endpoint: only used by discover, which is not set"
            ));
        }
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut seen: HashMap<Target, String> = HashMap::new();
    let mut listings: Vec<Listing> = Vec::new();
    let mut listed: HashMap<Listing, String> = HashMap::new();
    for (j, project) in raw.projects.iter().enumerate() {
        let pat = format!("{at}.projects[{j}]");
        let before = errors.len();
        check_id(&format!("{pat}.project_id"), &project.project_id, errors);
        // It travels in the URL path and the X-Project-Id header: keep it to what both carry
        // unchanged (real IDs are 32 hex digits).
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if errors.len() == before && !project.project_id.chars().all(plain) {
            errors.push(format!(
                "{pat}.project_id: {:?} may hold only letters, digits, '-' and '_'",
                project.project_id
            ));
        }
        if let Some(eps) = &project.enterprise_project_id {
            check_id(&format!("{pat}.enterprise_project_id"), eps, errors);
        }
        let types = registry_types(&pat, project.registry_types.as_deref(), errors);
        if project.registries {
            let listing = Listing {
                account: raw.name.clone(),
                region: region.clone(),
                project_id: project.project_id.clone(),
                enterprise_project_id: project.enterprise_project_id.clone(),
            };
            if let Some(first) = listed.get(&listing) {
                errors.push(format!(
                    "{pat}.registries: the registries of {:?} are already listed (at {first})",
                    listing.to_string()
                ));
            } else {
                listed.insert(listing.clone(), pat.clone());
                listings.push(listing);
            }
        }
        for registry_type in types {
            let target = Target {
                account: raw.name.clone(),
                region: region.clone(),
                project_id: project.project_id.clone(),
                enterprise_project_id: project.enterprise_project_id.clone(),
                registry_type,
            };
            if let Some(first) = seen.get(&target) {
                errors.push(format!(
                    "{pat}: duplicate target {:?} (already at {first})",
                    target.to_string()
                ));
                continue;
            }
            seen.insert(target.clone(), pat.clone());
            targets.push(target);
        }
    }

    if errors.len() != before {
        return None;
    }
    Some(Account {
        name: raw.name.clone(),
        region,
        endpoint: endpoint?,
        rate_limit_per_minute,
        credentials: credentials?,
        network: network?,
        targets,
        listings,
        explicit_endpoint: raw.endpoint.is_some(),
        discover,
    })
}

/// The targets of one project: one per listed type, or `[None]` (all summed) without a list.
fn registry_types(
    at: &str,
    list: Option<&[String]>,
    errors: &mut Vec<String>,
) -> Vec<Option<RegistryType>> {
    match list {
        None => vec![None],
        Some([]) => {
            errors.push(format!(
                "{at}.registry_types: empty list (omit the key to poll all types summed)"
            ));
            vec![]
        }
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(k, name)| {
                if let Ok(t) = name.parse::<RegistryType>() {
                    Some(Some(t))
                } else {
                    errors.push(format!(
                        "{at}.registry_types[{k}]: unknown value {name:?} (expected one of {})",
                        RegistryType::expected()
                    ));
                    None
                }
            })
            .collect(),
    }
}

fn validate_discover(
    at: &str,
    raw: &DiscoverSection,
    iam_endpoint: Option<&str>,
    cloud: Option<&str>,
    errors: &mut Vec<String>,
) -> Option<Discover> {
    let before = errors.len();
    let at = format!("{at}.discover");
    if let Some(regions) = &raw.regions {
        if regions.is_empty() {
            errors.push(format!(
                "{at}.regions: empty list (omit the key to discover every region)"
            ));
        }
        for (k, r) in regions.iter().enumerate() {
            if !crate::model::is_region_name(r) {
                errors.push(format!(
                    "{at}.regions[{k}]: {r:?} is not a region name (such as cn-north-4)"
                ));
            }
        }
    }
    let registry_types = registry_types(&at, raw.registry_types.as_deref(), errors);
    if raw.refresh.is_zero() {
        errors.push(format!("{at}.refresh: must be greater than zero"));
    }
    let iam_endpoint = match iam_endpoint {
        Some(e) => parse_endpoint(&at.replace(".discover", ".iam_endpoint"), e, errors),
        None => match cloud {
            Some(cloud) => Url::parse(&crate::model::stack_iam_endpoint(cloud)).ok(),
            None => Url::parse(super::DEFAULT_DISCOVERY_IAM_ENDPOINT).ok(),
        },
    };
    if errors.len() != before {
        return None;
    }
    Some(Discover {
        regions: raw.regions.clone(),
        registry_types,
        registries: raw.registries,
        refresh: raw.refresh,
        iam_endpoint: iam_endpoint?,
    })
}

/// A stack's domain: a DNS name (`stack.example.com`), which the endpoints are built on.
fn check_cloud(key: &str, cloud: &str, errors: &mut Vec<String>) {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if cloud.is_empty() || cloud.len() > 253 || !cloud.split('.').all(label_ok) {
        errors.push(format!(
            "{key}: {cloud:?} is not a domain name (expected the stack's domain, e.g. stack.example.com)"
        ));
    }
}

pub(super) fn check_id(key: &str, value: &str, errors: &mut Vec<String>) {
    if value.trim().is_empty() {
        errors.push(format!("{key}: must not be empty"));
    } else if value.chars().count() > MAX_ID_LEN {
        errors.push(format!("{key}: longer than {MAX_ID_LEN} characters"));
    } else if value.chars().any(char::is_control) {
        errors.push(format!("{key}: {value:?} holds control characters"));
    }
}

pub(super) fn parse_endpoint(key: &str, value: &str, errors: &mut Vec<String>) -> Option<Url> {
    match Url::parse(value) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && url.query().is_none() =>
        {
            Some(url)
        }
        Ok(_) => {
            errors.push(format!(
                "{key}: {value:?} is not an http(s) base URL without a query"
            ));
            None
        }
        Err(e) => {
            errors.push(format!("{key}: invalid URL {value:?}: {e}"));
            None
        }
    }
}
