//! The configuration file: its serde shape, loading (file + `HSS_EXPORTER__` env overrides),
//! and the one validation pass that turns it into [`Settings`].

mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::hss::{self, RegistryType};
use crate::secret::Secret;

pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9943";
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hss-exporter/config.yaml";
pub const ENV_PREFIX: &str = "HSS_EXPORTER";
/// The documented per-user limit of the API: 5 calls a minute.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 5;
const MAX_ID_LEN: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(String),
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

// ---- the file's shape ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub web: WebSection,
    #[serde(default)]
    pub poll: PollSection,
    #[serde(default)]
    pub accounts: Vec<AccountSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    #[serde(default = "default_listen")]
    pub listen_address: String,
}

impl Default for WebSection {
    fn default() -> Self {
        WebSection {
            listen_address: default_listen(),
        }
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN_ADDRESS.to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSection {
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_stale_after", with = "humantime_serde")]
    pub stale_after: Duration,
    /// Optional cap across all accounts, for accounts sharing one egress IP.
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
}

impl Default for PollSection {
    fn default() -> Self {
        PollSection {
            interval: default_interval(),
            timeout: default_timeout(),
            stale_after: default_stale_after(),
            rate_limit_per_minute: None,
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_stale_after() -> Duration {
    Duration::from_secs(1800)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    pub name: String,
    pub region: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
    pub auth: AuthSection,
    #[serde(default)]
    pub projects: Vec<ProjectSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default)]
    pub ak_sk: Option<AkSkSection>,
    #[serde(default)]
    pub token: Option<TokenSection>,
    #[serde(default)]
    pub iam_password: Option<IamPasswordSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AkSkSection {
    pub access_key_env: Option<String>,
    pub access_key_file: Option<PathBuf>,
    pub secret_key_env: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    /// For temporary credentials: sent (and signed) as `X-Security-Token`.
    pub security_token_env: Option<String>,
    pub security_token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamPasswordSection {
    pub domain: String,
    pub user: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub iam_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    pub project_id: String,
    #[serde(default)]
    pub enterprise_project_id: Option<String>,
    #[serde(default)]
    pub registry_types: Option<Vec<String>>,
}

// ---- the validated model ----

/// The whole validated configuration: what the rest of the program runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen_address: SocketAddr,
    pub poll: PollSettings,
    pub accounts: Vec<Account>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub stale_after: Duration,
    pub global_rate_limit_per_minute: Option<u32>,
}

/// One credential with the targets polled through it; rate limits apply per account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub region: String,
    /// Base URL of the HSS API.
    pub endpoint: Url,
    pub rate_limit_per_minute: u32,
    pub credentials: Credentials,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    AkSk {
        access_key: Secret,
        secret_key: Secret,
        security_token: Option<Secret>,
    },
    Token(Secret),
    IamPassword {
        domain: String,
        user: String,
        password: Secret,
        iam_endpoint: Url,
    },
}

impl Credentials {
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::AkSk { .. } => "ak_sk",
            Credentials::Token(_) => "token",
            Credentials::IamPassword { .. } => "iam_password",
        }
    }
}

/// One API call polled on a schedule: (account, project, enterprise project, registry type).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub account: String,
    pub region: String,
    pub project_id: String,
    pub enterprise_project_id: Option<String>,
    /// `None`: unfiltered, all types summed.
    pub registry_type: Option<RegistryType>,
}

impl Target {
    /// Label values in the order of [`crate::metrics::TARGET_LABELS`].
    pub fn label_values(&self) -> [&str; 5] {
        [
            &self.account,
            &self.region,
            &self.project_id,
            self.enterprise_project_id.as_deref().unwrap_or(""),
            self.registry_type.map_or("all", RegistryType::as_str),
        ]
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [account, region, project, eps, rtype] = self.label_values();
        write!(f, "{account}/{region}/{project}")?;
        if !eps.is_empty() {
            write!(f, "/eps={eps}")?;
        }
        write!(f, "/{rtype}")
    }
}

impl Settings {
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.accounts.iter().flat_map(|a| a.targets.iter())
    }
}

/// The shortest interval in which `targets` calls fit at `per_minute` calls a minute.
pub fn min_interval(targets: usize, per_minute: u32) -> Duration {
    if per_minute == 0 {
        return Duration::MAX;
    }
    Duration::from_secs(60 * targets as u64).div_f64(f64::from(per_minute))
}

// ---- loading ----

/// Where secrets named by `*_env` keys come from; a map so tests never touch the process env.
pub type Env = HashMap<String, String>;

/// Loads and validates a file, with `HSS_EXPORTER__` overrides taken from `env`. Every
/// problem line starts with the file's path.
pub fn load_file(path: &Path, env: &Env) -> Result<Settings, ConfigError> {
    let at = |line: &str| format!("{}: {line}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Load(at(&format!("cannot read the file: {e}"))))?;
    load_str(&text, env).map_err(|e| match e {
        ConfigError::Load(line) => ConfigError::Load(at(&line)),
        ConfigError::Invalid(lines) => ConfigError::Invalid(lines.iter().map(|l| at(l)).collect()),
    })
}

/// Loads and validates YAML text, with `HSS_EXPORTER__` overrides taken from `env`.
pub fn load_str(yaml: &str, env: &Env) -> Result<Settings, ConfigError> {
    let file: FileConfig = deserialize(yaml, Some(env)).map_err(ConfigError::Load)?;
    validate(file, env)
}

/// YAML text (and, when given, `HSS_EXPORTER__` overrides) into `T`, through the config
/// crate. Errors name the key path.
pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(
    yaml: &str,
    env: Option<&Env>,
) -> Result<T, String> {
    let json = yaml::to_json(yaml)?;
    let Some(top) = json.as_object() else {
        return Err("the file must be a mapping of keys, not a single value or a list".into());
    };
    // The config crate reads top-level keys and override names as paths (`a.b[3]`); only
    // plain names may reach it.
    if let Some(key) = top.keys().find(|k| !is_plain_name(k)) {
        return Err(format!("{key:?}: unknown field"));
    }
    let mut overrides = config::Map::new();
    for (name, value) in env.into_iter().flatten() {
        let Some(path) = name.strip_prefix(&format!("{ENV_PREFIX}__")) else {
            continue;
        };
        let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if !segments.iter().all(|s| is_plain_name(s)) {
            return Err(format!(
                "{name}: not a valid override (expected {ENV_PREFIX}__SECTION__KEY, e.g. {ENV_PREFIX}__POLL__INTERVAL; the accounts list cannot be overridden)"
            ));
        }
        overrides.insert(name.clone(), value.clone());
    }
    let build = || {
        config::Config::builder()
            .add_source(config::File::from_str(
                &json.to_string(),
                config::FileFormat::Json,
            ))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(overrides.clone())),
            )
            .build()
    };
    // Belt and braces: the input was checked above, but a parser panic must never take the
    // exporter down with it (a reload runs inside the live process).
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
        .map_err(|_| "the configuration could not be parsed".to_string())?
        .map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(built).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// A key the config crate takes literally: lower-case letters, digits and `_`.
fn is_plain_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks meaning (not shape) and resolves secrets; reports every problem, one line each.
pub fn validate(file: FileConfig, env: &Env) -> Result<Settings, ConfigError> {
    let mut errors = Vec::new();

    let listen_address = parse_listen_address(&file.web.listen_address).unwrap_or_else(|| {
        errors.push(format!(
            "web.listen_address: invalid address {:?} (expected host:port, e.g. {DEFAULT_LISTEN_ADDRESS})",
            file.web.listen_address
        ));
        SocketAddr::from(([0, 0, 0, 0], 0))
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
    if poll.rate_limit_per_minute == Some(0) {
        errors.push("poll.rate_limit_per_minute: must be greater than zero".into());
    }
    if file.accounts.is_empty() {
        errors.push("accounts: at least one account is required".into());
    }

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
        if let Some(account) = validate_account(&at, raw, env, &mut errors) {
            accounts.push(account);
        }
    }

    if !errors.is_empty() {
        return Err(ConfigError::Invalid(errors));
    }
    Ok(Settings {
        listen_address,
        poll: PollSettings {
            interval: poll.interval,
            timeout: poll.timeout,
            stale_after: poll.stale_after,
            global_rate_limit_per_minute: poll.rate_limit_per_minute,
        },
        accounts,
    })
}

/// Accepts `host:port`, `[v6]:port` and Prometheus-style `:port` (all interfaces).
pub fn parse_listen_address(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    if let Ok(addr) = full.parse() {
        return Some(addr);
    }
    let (host, port) = full.rsplit_once(':')?;
    if host == "localhost" {
        return Some(SocketAddr::from(([127, 0, 0, 1], port.parse().ok()?)));
    }
    None
}

fn validate_account(
    at: &str,
    raw: &AccountSection,
    env: &Env,
    errors: &mut Vec<String>,
) -> Option<Account> {
    let before = errors.len();
    let region = raw.region.trim().to_string();
    if region.is_empty() {
        errors.push(format!("{at}.region: must not be empty"));
    } else if raw.endpoint.is_none() && !hss::KNOWN_REGIONS.contains(&region.as_str()) {
        errors.push(format!(
            "{at}.region: unknown region {region:?} (set {at}.endpoint to use a region the exporter does not know)"
        ));
    }
    let endpoint = match &raw.endpoint {
        Some(e) => parse_endpoint(&format!("{at}.endpoint"), e, errors),
        None => Url::parse(&hss::default_endpoint(&region)).ok(),
    };
    let rate_limit_per_minute = raw
        .rate_limit_per_minute
        .unwrap_or(DEFAULT_RATE_LIMIT_PER_MINUTE);
    if rate_limit_per_minute == 0 {
        errors.push(format!(
            "{at}.rate_limit_per_minute: must be greater than zero"
        ));
    }
    let credentials = validate_auth(&format!("{at}.auth"), &raw.auth, &region, env, errors);

    if raw.projects.is_empty() {
        errors.push(format!("{at}.projects: at least one project is required"));
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut seen: HashMap<Target, String> = HashMap::new();
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
        let types: Vec<Option<RegistryType>> = match &project.registry_types {
            None => vec![None],
            Some(list) if list.is_empty() => {
                errors.push(format!(
                    "{pat}.registry_types: empty list (omit the key to poll all types summed)"
                ));
                vec![]
            }
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(k, name)| match name.parse::<RegistryType>() {
                    Ok(t) => Some(Some(t)),
                    Err(()) => {
                        errors.push(format!(
                            "{pat}.registry_types[{k}]: unknown value {name:?} (expected one of {})",
                            RegistryType::expected()
                        ));
                        None
                    }
                })
                .collect(),
        };
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
        targets,
    })
}

fn check_id(key: &str, value: &str, errors: &mut Vec<String>) {
    if value.trim().is_empty() {
        errors.push(format!("{key}: must not be empty"));
    } else if value.chars().count() > MAX_ID_LEN {
        errors.push(format!("{key}: longer than {MAX_ID_LEN} characters"));
    } else if value.chars().any(char::is_control) {
        errors.push(format!("{key}: {value:?} holds control characters"));
    }
}

fn parse_endpoint(key: &str, value: &str, errors: &mut Vec<String>) -> Option<Url> {
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

fn validate_auth(
    at: &str,
    auth: &AuthSection,
    region: &str,
    env: &Env,
    errors: &mut Vec<String>,
) -> Option<Credentials> {
    let given: Vec<&str> = [
        auth.ak_sk.as_ref().map(|_| "ak_sk"),
        auth.token.as_ref().map(|_| "token"),
        auth.iam_password.as_ref().map(|_| "iam_password"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() != 1 {
        errors.push(format!(
            "{at}: exactly one of ak_sk, token, iam_password is required (found {})",
            if given.is_empty() {
                "none".to_string()
            } else {
                given.join(", ")
            }
        ));
        return None;
    }
    if let Some(s) = &auth.ak_sk {
        let at = format!("{at}.ak_sk");
        let access_key = secret(
            &at,
            "access_key",
            &s.access_key_env,
            &s.access_key_file,
            env,
            errors,
        );
        let secret_key = secret(
            &at,
            "secret_key",
            &s.secret_key_env,
            &s.secret_key_file,
            env,
            errors,
        );
        let security_token = if s.security_token_env.is_some() || s.security_token_file.is_some() {
            Some(secret(
                &at,
                "security_token",
                &s.security_token_env,
                &s.security_token_file,
                env,
                errors,
            )?)
        } else {
            None
        };
        return Some(Credentials::AkSk {
            access_key: access_key?,
            secret_key: secret_key?,
            security_token,
        });
    }
    if let Some(t) = &auth.token {
        let token = secret(
            &format!("{at}.token"),
            "token",
            &t.token_env,
            &t.token_file,
            env,
            errors,
        )?;
        return Some(Credentials::Token(token));
    }
    let p = auth.iam_password.as_ref()?;
    let at = format!("{at}.iam_password");
    for (key, value) in [("domain", &p.domain), ("user", &p.user)] {
        if value.trim().is_empty() {
            errors.push(format!("{at}.{key}: must not be empty"));
        }
    }
    let password = secret(
        &at,
        "password",
        &p.password_env,
        &p.password_file,
        env,
        errors,
    );
    let iam_endpoint = match &p.iam_endpoint {
        Some(e) => parse_endpoint(&format!("{at}.iam_endpoint"), e, errors),
        None => Url::parse(&hss::default_iam_endpoint(region)).ok(),
    };
    Some(Credentials::IamPassword {
        domain: p.domain.clone(),
        user: p.user.clone(),
        password: password?,
        iam_endpoint: iam_endpoint?,
    })
}

/// Resolves a secret named by exactly one of `{name}_env` / `{name}_file`.
fn secret(
    at: &str,
    name: &str,
    from_env: &Option<String>,
    from_file: &Option<PathBuf>,
    env: &Env,
    errors: &mut Vec<String>,
) -> Option<Secret> {
    let value = match (from_env, from_file) {
        (Some(var), None) => match env.get(var) {
            Some(v) => v.clone(),
            None => {
                errors.push(format!(
                    "{at}.{name}_env: environment variable {var:?} is not set"
                ));
                return None;
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!(
                    "{at}.{name}_file: cannot read {:?}: {e}",
                    path.display().to_string()
                ));
                return None;
            }
        },
        (Some(_), Some(_)) => {
            errors.push(format!("{at}: set only one of {name}_env, {name}_file"));
            return None;
        }
        (None, None) => {
            errors.push(format!("{at}: one of {name}_env, {name}_file is required"));
            return None;
        }
    };
    // Files written by editors and `echo` end in a newline that is not part of the secret.
    let value = value.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        errors.push(match (from_env, from_file) {
            (Some(var), _) => format!("{at}.{name}_env: environment variable {var:?} is empty"),
            (_, path) => format!(
                "{at}.{name}_file: {:?} is empty",
                path.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        });
        return None;
    }
    Some(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(s.listen_address, "127.0.0.1:9943".parse().unwrap());
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
        assert_eq!(s.listen_address, "0.0.0.0:9100".parse().unwrap());
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
            "accounts[0].auth: exactly one of ak_sk, token, iam_password is required (found none)",
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
            msg.starts_with(
                "HSS_EXPORTER__ACCOUNTS[9223372036854775807]__NAME: not a valid override"
            ),
            "{msg}"
        );
        let mut e = env();
        e.insert("HSS_EXPORTER__ACCOUNTS__0__NAME".into(), "x".into());
        assert!(refused(GOOD, &e).contains("the accounts list cannot be overridden"));
    }

    #[test]
    fn computes_the_minimum_interval() {
        assert_eq!(min_interval(12, 5), Duration::from_secs(144));
        assert_eq!(min_interval(1, 5), Duration::from_secs(12));
    }
}
