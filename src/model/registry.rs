//! The per-registry detail of a project: what `GET /v5/{project_id}/image/registries`
//! lists, and the [`Listing`] polled to get it.

use std::fmt;

/// One registry listing polled on a schedule: (account, project, enterprise project). One
/// listing covers every registry type of the project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listing {
    /// The configured account name: the `account` label.
    pub account: String,
    /// The `region` label.
    pub region: String,
    /// In the request's path and `X-Project-Id`.
    pub project_id: String,
    /// Sent as the `enterprise_project_id` filter when set.
    pub enterprise_project_id: Option<String>,
}

impl Listing {
    /// Label values: account, region, project, enterprise project (empty when not set).
    pub fn label_values(&self) -> [&str; 4] {
        [
            &self.account,
            &self.region,
            &self.project_id,
            self.enterprise_project_id.as_deref().unwrap_or(""),
        ]
    }
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [account, region, project, eps] = self.label_values();
        write!(f, "{account}/{region}/{project}")?;
        if !eps.is_empty() {
            write!(f, "/eps={eps}")?;
        }
        f.write_str("/registries")
    }
}

/// A registry's connection status as HSS reports it (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegistryStatus {
    /// HSS reaches the registry.
    Success,
    /// HSS cannot reach it; `fail_reason` says why.
    Fail,
    /// HSS is connecting it; counted neither as success nor as fail by the statistics.
    Accessing,
}

impl RegistryStatus {
    /// Every state, in the order the state-set series are written.
    pub const ALL: [RegistryStatus; 3] = [
        RegistryStatus::Success,
        RegistryStatus::Fail,
        RegistryStatus::Accessing,
    ];

    /// The value as the API spells it, and the `status` label.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryStatus::Success => "success",
            RegistryStatus::Fail => "fail",
            RegistryStatus::Accessing => "accessing",
        }
    }

    /// The state the API's `status` names, if it is one of the documented ones.
    pub fn parse(s: &str) -> Option<RegistryStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One registry of a listing. Text fields the API left out are empty; they become empty
/// label values, never a failed poll.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Registry {
    /// `id`: the `registry_id` label, what every per-registry series is keyed by.
    pub id: String,
    /// `registry_name`.
    pub name: String,
    /// `registry_type` as the API spells it (`Harbor`, `SwrPrivate`, ...).
    pub registry_type: String,
    /// `registry_addr`.
    pub addr: String,
    /// `connect_cluster_id`: the cluster that runs the sync and scan jobs.
    pub connect_cluster_id: String,
    /// `status`; `None` when absent or a value the exporter does not know (every state
    /// series is then 0).
    pub status: Option<RegistryStatus>,
    /// `fail_reason`, passed through (sanitised) whatever its value; empty when absent.
    pub fail_reason: String,
    /// `images_num`.
    pub images_num: Option<u64>,
    /// `latest_sync_time`, in milliseconds since the epoch as the API sends it.
    pub latest_sync_time_ms: Option<i64>,
}

/// The most characters a text field of a registry keeps as a label value.
pub const MAX_LABEL_CHARS: usize = 256;

/// A label value from a text field of the API: control characters dropped, at most
/// [`MAX_LABEL_CHARS`] characters kept.
pub fn sanitize_label(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_LABEL_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitises_label_values() {
        assert_eq!(sanitize_label("a\nb\u{7}c"), "abc");
        assert_eq!(sanitize_label(&"é".repeat(300)).chars().count(), 256);
        assert_eq!(sanitize_label("NEW_REASON"), "NEW_REASON");
    }

    #[test]
    fn names_a_listing_and_its_states() {
        let l = Listing {
            account: "a".into(),
            region: "r".into(),
            project_id: "p".into(),
            enterprise_project_id: Some("0".into()),
        };
        assert_eq!(l.to_string(), "a/r/p/eps=0/registries");
        assert_eq!(
            RegistryStatus::parse("accessing"),
            Some(RegistryStatus::Accessing)
        );
        assert_eq!(RegistryStatus::parse("Success"), None);
    }
}
