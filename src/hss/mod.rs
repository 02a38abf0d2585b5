//! Everything about the HSS API: the request, its answer, its errors, signing and authentication.

pub mod auth;
pub mod client;
pub mod signer;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use client::HssClient;

/// The `registry_type` filter values the API knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegistryType {
    Harbor,
    Jfrog,
    SwrPrivate,
    SwrShared,
    SwrEnterprise,
    Other,
}

impl RegistryType {
    pub const ALL: [RegistryType; 6] = [
        RegistryType::Harbor,
        RegistryType::Jfrog,
        RegistryType::SwrPrivate,
        RegistryType::SwrShared,
        RegistryType::SwrEnterprise,
        RegistryType::Other,
    ];

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

/// Regions the official HSS SDK knows; other regions need an explicit endpoint.
pub const KNOWN_REGIONS: [&str; 32] = [
    "cn-north-9",
    "cn-north-1",
    "cn-north-4",
    "cn-southwest-2",
    "cn-east-2",
    "cn-east-3",
    "cn-east-4",
    "cn-south-1",
    "cn-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "na-mexico-1",
    "af-south-1",
    "sa-brazil-1",
    "la-south-2",
    "cn-south-4",
    "la-north-2",
    "tr-west-1",
    "cn-north-2",
    "ae-ad-1",
    "me-east-1",
    "cn-east-5",
    "my-kualalumpur-1",
    "eu-west-101",
    "ru-moscow-1",
    "cn-north-12",
    "cn-southwest-3",
    "cn-north-11",
    "af-north-1",
];

fn domain_for(region: &str) -> &'static str {
    if region == "eu-west-101" {
        "myhuaweicloud.eu"
    } else {
        "myhuaweicloud.com"
    }
}

/// The default HSS endpoint of a region.
pub fn default_endpoint(region: &str) -> String {
    format!("https://hss.{region}.{}", domain_for(region))
}

/// The default IAM endpoint of a region.
pub fn default_iam_endpoint(region: &str) -> String {
    format!("https://iam.{region}.{}", domain_for(region))
}

/// One answer of `GET /v5/{project_id}/image/registries/statistics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statistics {
    /// Registries whose access is abnormal.
    pub fail_num: u64,
    /// Registries whose access succeeded.
    pub success_num: u64,
}

/// Why a call failed. Each kind maps to one `reason` label and one scheduling decision.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("authentication refused: HTTP {status} {code}: {message} (request_id {request_id})")]
    Auth {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("throttled: HTTP {status} {code}: {message} (request_id {request_id})")]
    Throttled {
        status: u16,
        code: String,
        message: String,
        request_id: String,
        retry_after: Option<Duration>,
    },
    #[error("HTTP {status} {code}: {message} (request_id {request_id})")]
    Http {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("bad answer: {0}")]
    Decode(String),
}

impl ApiError {
    /// The `reason` label of `hss_exporter_poll_errors_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Timeout(_) => "timeout",
            ApiError::Connect(_) => "connect",
            ApiError::Auth { .. } => "auth",
            ApiError::Throttled { .. } => "throttled",
            ApiError::Http { status, .. } if *status >= 500 => "http_5xx",
            ApiError::Http { .. } => "http_4xx",
            ApiError::Decode(_) => "decode",
        }
    }

    /// Worth one more try after a short pause: the server or the network hiccuped.
    pub fn is_transient(&self) -> bool {
        matches!(self.reason(), "timeout" | "connect" | "http_5xx")
    }
}
