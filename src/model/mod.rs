//! The shared vocabulary: what is polled ([`Target`]), with which credentials, what an
//! answer holds, and why a poll failed. Every other module speaks these types; this one
//! depends on none of them.

mod listen;
mod network;
mod regions;
mod registry;

use std::fmt;
use std::str::FromStr;

pub use listen::ListenAddress;
pub use network::{Network, Proxy, ProxySettings, TlsSettings};
pub use regions::{
    default_endpoint, default_iam_endpoint, is_region_name, region_of_project_name, stack_endpoint,
    stack_iam_endpoint, DEFAULT_METADATA_ENDPOINT, KNOWN_REGIONS,
};
pub use registry::{sanitize_label, Listing, Registry, RegistryStatus, MAX_LABEL_CHARS};

use crate::secret::Secret;

/// The `registry_type` filter values the API knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegistryType {
    /// A Harbor registry.
    Harbor,
    /// A `JFrog` Artifactory registry.
    Jfrog,
    /// SWR, private images.
    SwrPrivate,
    /// SWR, images shared with this account.
    SwrShared,
    /// SWR Enterprise Edition.
    SwrEnterprise,
    /// Any other registry.
    Other,
}

impl RegistryType {
    /// Every value, in the order the API documents them.
    pub const ALL: [RegistryType; 6] = [
        RegistryType::Harbor,
        RegistryType::Jfrog,
        RegistryType::SwrPrivate,
        RegistryType::SwrShared,
        RegistryType::SwrEnterprise,
        RegistryType::Other,
    ];

    /// The value as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryType::Harbor => "Harbor",
            RegistryType::Jfrog => "Jfrog",
            RegistryType::SwrPrivate => "SwrPrivate",
            RegistryType::SwrShared => "SwrShared",
            RegistryType::SwrEnterprise => "SwrEnterprise",
            RegistryType::Other => "Other",
        }
    }

    /// "Harbor, Jfrog, ..." for error messages.
    pub fn expected() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl FromStr for RegistryType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or(())
    }
}

impl fmt::Display for RegistryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How requests of one account prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Requests are signed with SDK-HMAC-SHA256.
    AkSk {
        /// Names the key in the `Authorization` header.
        access_key: Secret,
        /// Signs; never sent.
        secret_key: Secret,
        /// Temporary credentials come with a token, sent and signed as `X-Security-Token`.
        security_token: Option<Secret>,
    },
    /// A token obtained and renewed outside the exporter, sent as `X-Auth-Token`.
    Token(Secret),
    /// An IAM user whose password buys a token per project.
    IamPassword {
        /// The account (domain) name the user belongs to.
        domain: String,
        /// The IAM user name.
        user: String,
        /// Sent to IAM only.
        password: Secret,
        /// Where tokens are issued: `{iam_endpoint}/v3/auth/tokens`.
        iam_endpoint: url::Url,
    },
    /// Temporary AK/SK and security token of the agency of the ECS (or CCE node) the
    /// exporter runs on, fetched from its metadata service and renewed before they expire:
    /// no long-lived key on disk.
    Metadata {
        /// The metadata service, `http://169.254.169.254` unless configured.
        endpoint: url::Url,
    },
}

impl Credentials {
    /// The config key of this kind of credentials, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::AkSk { .. } => "ak_sk",
            Credentials::Token(_) => "token",
            Credentials::IamPassword { .. } => "iam_password",
            Credentials::Metadata { .. } => "metadata",
        }
    }
}

/// One API call polled on a schedule: (account, project, enterprise project, registry type).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The configured account name: the `account` label.
    pub account: String,
    /// The `region` label.
    pub region: String,
    /// In the request's path and `X-Project-Id`.
    pub project_id: String,
    /// Sent as the `enterprise_project_id` filter when set.
    pub enterprise_project_id: Option<String>,
    /// `None`: unfiltered, all types summed.
    pub registry_type: Option<RegistryType>,
}

impl Target {
    /// Label values: account, region, project, enterprise project (empty when not set) and
    /// registry type (`all` when unfiltered).
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

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [account, region, project, eps, rtype] = self.label_values();
        write!(f, "{account}/{region}/{project}")?;
        if !eps.is_empty() {
            write!(f, "/eps={eps}")?;
        }
        write!(f, "/{rtype}")
    }
}

/// One answer of `GET /v5/{project_id}/image/registries/statistics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statistics {
    /// Registries whose access is abnormal.
    pub fail_num: u64,
    /// Registries whose access succeeded.
    pub success_num: u64,
}

/// Why a poll failed: the `reason` label of `hss_exporter_poll_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No whole answer within `poll.timeout`.
    Timeout,
    /// No answer at all: refused, reset, DNS.
    Connect,
    /// Credentials refused (401, `APIGW.0301`, or IAM refusing the password).
    Auth,
    /// Over the rate limit (429, `APIGW.0308`).
    Throttled,
    /// Another client error.
    Http4xx,
    /// A server error.
    Http5xx,
    /// A 200 whose body is not the expected JSON.
    Decode,
    /// The TLS handshake failed: a certificate that is not trusted, expired or made out to
    /// another name, or a server that does not speak TLS.
    Tls,
}

impl Reason {
    /// Every reason, so that each counter exists from the start.
    pub const ALL: [Reason; 8] = [
        Reason::Timeout,
        Reason::Connect,
        Reason::Auth,
        Reason::Throttled,
        Reason::Http4xx,
        Reason::Http5xx,
        Reason::Decode,
        Reason::Tls,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Auth => "auth",
            Reason::Throttled => "throttled",
            Reason::Http4xx => "http_4xx",
            Reason::Http5xx => "http_5xx",
            Reason::Decode => "decode",
            Reason::Tls => "tls",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
