//! The configuration: the file's shape ([`file`]), loading it with environment overrides
//! ([`load`]), and the one validation pass ([`validate`]) that turns it into [`Settings`],
//! what the rest of the program runs on.

mod auth;
pub mod file;
mod load;
mod network;
mod validate;

use std::collections::HashMap;
use std::time::Duration;

use url::Url;

pub use load::{load_file, load_str, Source};
pub use validate::validate;

use crate::model::{Credentials, ListenAddress, Listing, Network, Target};

/// Where the HTTP server listens unless configured otherwise: every address, IPv6 and IPv4.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9943";
/// The configuration file read unless `--config` names another.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hss-exporter/config.yaml";
/// Environment overrides are named `HSS_EXPORTER__SECTION__KEY`.
pub const ENV_PREFIX: &str = "HSS_EXPORTER";
/// The documented per-user limit of the API: 5 calls a minute.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 5;
/// The most registries of one project exported in detail unless configured otherwise.
pub const DEFAULT_MAX_REGISTRIES_PER_PROJECT: usize = 1000;
/// The longest project or enterprise project ID the API accepts.
const MAX_ID_LEN: usize = 256;

/// Where secrets named by `*_env` keys come from; a map so tests never touch the process env.
pub type Env = HashMap<String, String>;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed; one line.
    #[error("{0}")]
    Load(String),
    /// The file was read but its content is wrong: one line per problem.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// The whole validated configuration: what the rest of the program runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the HTTP server listens (`web.listen_address`, or every
    /// `--web.listen-address`); read at start-up only.
    pub listen_addresses: Vec<ListenAddress>,
    /// How every account is polled.
    pub poll: PollSettings,
    /// The credentials and what each polls.
    pub accounts: Vec<Account>,
}

/// `poll:`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSettings {
    /// How often each target is polled.
    pub interval: Duration,
    /// Bound on one API call.
    pub timeout: Duration,
    /// Without a success for this long, a target's values are no longer exported.
    pub stale_after: Duration,
    /// A cap across all accounts, for accounts sharing one egress IP.
    pub global_rate_limit_per_minute: Option<u32>,
    /// How often each registry listing is polled (`poll.registries_interval`, by default
    /// `interval`).
    pub registries_interval: Duration,
    /// The most registries of one project exported in detail.
    pub max_registries_per_project: usize,
}

/// One credential with the targets polled through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The `account` label; unique.
    pub name: String,
    /// The `region` label.
    pub region: String,
    /// Base URL of the HSS API.
    pub endpoint: Url,
    /// Calls a minute this account may make.
    pub rate_limit_per_minute: u32,
    /// How its requests authenticate.
    pub credentials: Credentials,
    /// Its proxy and the certificates it trusts.
    pub network: Network,
    /// What it polls, in the order of the file.
    pub targets: Vec<Target>,
    /// The projects whose registries it lists one by one (`registries: true`).
    pub listings: Vec<Listing>,
    /// `endpoint` was set: discovered projects of every region use it too.
    pub explicit_endpoint: bool,
    /// Projects found with IAM, polled besides `targets`.
    pub discover: Option<Discover>,
}

/// `discover:` of an account, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discover {
    /// Only projects of these regions (and their sub-projects); `None`: every region.
    pub regions: Option<Vec<String>>,
    /// The targets of each discovered project: one per type, or `[None]` for all summed.
    pub registry_types: Vec<Option<crate::model::RegistryType>>,
    /// Also list each discovered project's registries.
    pub registries: bool,
    /// How often the project list is read again.
    pub refresh: Duration,
    /// Where the project list is read: `{iam_endpoint}/v3/auth/projects`.
    pub iam_endpoint: Url,
}

/// IAM's global endpoint, where projects are discovered unless `iam_endpoint` says otherwise.
pub const DEFAULT_DISCOVERY_IAM_ENDPOINT: &str = "https://iam.myhuaweicloud.com";

impl Settings {
    /// Every target of every account.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.accounts.iter().flat_map(|a| a.targets.iter())
    }

    /// Every registry listing of every account.
    pub fn listings(&self) -> impl Iterator<Item = &Listing> {
        self.accounts.iter().flat_map(|a| a.listings.iter())
    }
}

#[cfg(test)]
mod tests;
