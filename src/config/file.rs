//! The configuration file's shape: serde structs that mirror the YAML, key for key. Meaning
//! is checked apart, in [`super::validate`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::DEFAULT_LISTEN_ADDRESS;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `web:`, the HTTP server.
    #[serde(default)]
    pub web: WebSection,
    /// `poll:`, how often and how carefully the API is called.
    #[serde(default)]
    pub poll: PollSection,
    /// `accounts:`, one credential each, with the projects it polls.
    #[serde(default)]
    pub accounts: Vec<AccountSection>,
}

/// `web:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// Where `/metrics` is served, `host:port` or `:port`.
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

/// `poll:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSection {
    /// How often each target is polled.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Bound on one API call, connecting and reading included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Without a success for this long, a target's values are no longer exported.
    #[serde(default = "default_stale_after", with = "humantime_serde")]
    pub stale_after: Duration,
    /// Optional cap across all accounts, for accounts sharing one egress IP.
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
    /// How often the registries of projects with `registries: true` are listed; `interval`
    /// when not set.
    #[serde(default, with = "humantime_serde")]
    pub registries_interval: Option<Duration>,
    /// The most registries of one project exported in detail: bounds the series count.
    #[serde(default = "default_max_registries")]
    pub max_registries_per_project: usize,
}

impl Default for PollSection {
    fn default() -> Self {
        PollSection {
            interval: default_interval(),
            timeout: default_timeout(),
            stale_after: default_stale_after(),
            rate_limit_per_minute: None,
            registries_interval: None,
            max_registries_per_project: default_max_registries(),
        }
    }
}

fn default_max_registries() -> usize {
    super::DEFAULT_MAX_REGISTRIES_PER_PROJECT
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

/// One entry of `accounts:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    /// The `account` label; unique.
    pub name: String,
    /// The `region` label, and what the default endpoint is derived from.
    pub region: String,
    /// Overrides the endpoint derived from the region.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The domain of a Huawei Cloud Stack: derives `https://hss-api.{region}.{cloud}` and
    /// IAM at `https://iam-apigateway-proxy.{cloud}/v3` instead of the public cloud's.
    #[serde(default)]
    pub cloud: Option<String>,
    /// The proxy for this account's calls, `http://[user@]host:port`; wins over
    /// `HTTPS_PROXY` and the other environment variables.
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Like `proxy_url`, from an environment variable (the URL may hold a password).
    #[serde(default)]
    pub proxy_url_env: Option<String>,
    /// Like `proxy_url`, from a file (the URL may hold a password).
    #[serde(default)]
    pub proxy_url_file: Option<PathBuf>,
    /// The proxy's password for the user of the proxy URL, from a variable.
    #[serde(default)]
    pub proxy_password_env: Option<String>,
    /// The proxy's password for the user of the proxy URL, from a file.
    #[serde(default)]
    pub proxy_password_file: Option<PathBuf>,
    /// Hosts this account reaches without a proxy, in `NO_PROXY` syntax; wins over `NO_PROXY`.
    #[serde(default)]
    pub no_proxy: Option<String>,
    /// Which server certificates to trust beyond the system's.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Calls per minute this credential may make; the API's documented limit by default.
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
    /// Exactly one way of authenticating.
    pub auth: AuthSection,
    /// What to poll.
    #[serde(default)]
    pub projects: Vec<ProjectSection>,
    /// Also poll the projects the credential can see, found with IAM.
    #[serde(default)]
    pub discover: Option<DiscoverSection>,
    /// Where projects are discovered: IAM's `GET /v3/auth/projects`; the global IAM
    /// endpoint by default.
    #[serde(default)]
    pub iam_endpoint: Option<String>,
}

/// `discover:` of an account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverSection {
    /// Only projects of these regions (and their sub-projects); all by default.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// One target per type for each discovered project; omitted: all types summed.
    #[serde(default)]
    pub registry_types: Option<Vec<String>>,
    /// Also list each discovered project's registries one by one.
    #[serde(default)]
    pub registries: bool,
    /// How often the project list is read again.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh: Duration,
}

fn default_refresh() -> Duration {
    Duration::from_secs(3600)
}

/// `auth:` of an account: exactly one of its keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Request signing with an access key.
    #[serde(default)]
    pub ak_sk: Option<AkSkSection>,
    /// A static token.
    #[serde(default)]
    pub token: Option<TokenSection>,
    /// An IAM user's password, exchanged for tokens.
    #[serde(default)]
    pub iam_password: Option<IamPasswordSection>,
    /// The temporary keys of the ECS's agency, from its metadata service.
    #[serde(default)]
    pub metadata: Option<MetadataSection>,
}

/// `auth.metadata:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataSection {
    /// The metadata service, `http://169.254.169.254` by default.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// An account's `tls:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificates added to the trusted roots: the CA of a private stack or of a
    /// TLS-inspecting gateway.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accepts any server certificate; for tests only, and loudly.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `auth.ak_sk:`; each secret from exactly one of `*_env` / `*_file`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AkSkSection {
    /// The variable holding the access key.
    pub access_key_env: Option<String>,
    /// The file holding the access key.
    pub access_key_file: Option<PathBuf>,
    /// The variable holding the secret key.
    pub secret_key_env: Option<String>,
    /// The file holding the secret key.
    pub secret_key_file: Option<PathBuf>,
    /// For temporary credentials: sent (and signed) as `X-Security-Token`.
    pub security_token_env: Option<String>,
    /// Like `security_token_env`, from a file.
    pub security_token_file: Option<PathBuf>,
}

/// `auth.token:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// The variable holding the token.
    pub token_env: Option<String>,
    /// The file holding the token.
    pub token_file: Option<PathBuf>,
}

/// `auth.iam_password:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamPasswordSection {
    /// The account (domain) name of the user.
    pub domain: String,
    /// The IAM user name.
    pub user: String,
    /// The variable holding the password.
    pub password_env: Option<String>,
    /// The file holding the password.
    pub password_file: Option<PathBuf>,
    /// Overrides the IAM endpoint derived from the region.
    pub iam_endpoint: Option<String>,
}

/// One entry of an account's `projects:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    /// The project polled.
    pub project_id: String,
    /// Sent as the `enterprise_project_id` filter.
    #[serde(default)]
    pub enterprise_project_id: Option<String>,
    /// One target per type; omitted: one target for all types summed.
    #[serde(default)]
    pub registry_types: Option<Vec<String>>,
    /// Also list the project's registries one by one (which fails and why).
    #[serde(default)]
    pub registries: bool,
}
