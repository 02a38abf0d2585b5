//! Rate budgets belong to a credential at a gateway, not to an account: the API counts calls
//! per user, and a gateway locks an access key after repeated authentication failures. Every
//! account that uses one credential against one API gateway shares one [`Budget`]: its
//! window of calls, its pauses and its suspensions. Budgets outlive the accounts that use
//! them, so renaming or re-adding an account on reload starts no fresh window.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::limiter::RateLimiter;
use crate::config::{Account, Settings};
use crate::model::Credentials;

/// Who the API counts calls against: the user behind a credential, never its secret.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// An access key (its ID; the secret key is never part of the key).
    AccessKey(String),
    /// An IAM user, by account (domain) and user name.
    IamUser {
        /// The account (domain) name.
        domain: String,
        /// The user name.
        user: String,
    },
    /// A static token, by its SHA-256: tokens are secrets, so only their hash is kept.
    Token([u8; 32]),
    /// The agency behind a metadata service, by the service's URL. Its temporary keys rotate
    /// and its answer carries no other stable ID, but one server has one agency: every key it
    /// hands out spends one budget.
    Agency(String),
}

impl Identity {
    /// The identity of `credentials`.
    pub fn of(credentials: &Credentials) -> Identity {
        match credentials {
            Credentials::AkSk { access_key, .. } => {
                Identity::AccessKey(access_key.expose().to_string())
            }
            Credentials::IamPassword { domain, user, .. } => Identity::IamUser {
                domain: domain.clone(),
                user: user.clone(),
            },
            Credentials::Token(token) => {
                Identity::Token(Sha256::digest(token.expose().as_bytes()).into())
            }
            Credentials::Metadata { endpoint } => {
                Identity::Agency(endpoint.as_str().trim_end_matches('/').to_string())
            }
        }
    }

    /// What to call it in messages: the kind and a short fingerprint, never the key itself
    /// (access keys are kept out of logs like the secrets that go with them).
    pub fn describe(&self) -> String {
        let (kind, bytes): (&str, Vec<u8>) = match self {
            Identity::AccessKey(ak) => ("access key", ak.as_bytes().to_vec()),
            Identity::IamUser { domain, user } => {
                return format!("IAM user {domain}/{user}");
            }
            Identity::Agency(endpoint) => {
                return format!("agency of metadata service {endpoint}");
            }
            Identity::Token(hash) => ("token", hash.to_vec()),
        };
        let digest = Sha256::digest(&bytes);
        format!("{kind} #{}", hex::encode(&digest[..4]))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// One budget: a credential at an API gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BudgetKey {
    /// Whose calls.
    pub identity: Identity,
    /// Where they are counted: the endpoint's host and port. Each region's gateway counts
    /// its own calls, so one key in two regions has two budgets.
    pub gateway: String,
}

impl BudgetKey {
    /// The budget `account` spends.
    pub fn of(account: &Account) -> BudgetKey {
        let host = account.endpoint.host_str().unwrap_or_default();
        let gateway = match account.endpoint.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        BudgetKey {
            identity: Identity::of(&account.credentials),
            gateway,
        }
    }
}

impl fmt::Display for BudgetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.identity.describe(), self.gateway)
    }
}

/// The accounts of a configuration that share one budget, and the limit they share.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Their credential and gateway.
    pub key: BudgetKey,
    /// In the order of the file.
    pub accounts: Vec<Arc<Account>>,
}

impl Group {
    /// The lowest `rate_limit_per_minute` of the accounts: the one that holds for all.
    pub fn limit(&self) -> u32 {
        self.accounts
            .iter()
            .map(|a| a.rate_limit_per_minute)
            .min()
            .unwrap_or(1)
    }

    /// Every target of every account of the group.
    pub fn targets(&self) -> usize {
        self.accounts.iter().map(|a| a.targets.len()).sum()
    }

    /// Every registry listing of every account of the group.
    pub fn listings(&self) -> usize {
        self.accounts.iter().map(|a| a.listings.len()).sum()
    }

    /// The accounts' names, comma-separated.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
        names.join(", ")
    }
}

/// The budget groups of `settings`, ordered by the first account of each in the file.
pub fn groups(settings: &Settings) -> Vec<Group> {
    let mut by_key: BTreeMap<BudgetKey, (usize, Vec<Arc<Account>>)> = BTreeMap::new();
    for (i, account) in settings.accounts.iter().enumerate() {
        by_key
            .entry(BudgetKey::of(account))
            .or_insert_with(|| (i, Vec::new()))
            .1
            .push(Arc::new(account.clone()));
    }
    let mut groups: Vec<(usize, Group)> = by_key
        .into_iter()
        .map(|(key, (first, accounts))| (first, Group { key, accounts }))
        .collect();
    groups.sort_by_key(|(first, _)| *first);
    groups.into_iter().map(|(_, g)| g).collect()
}

/// What one budget remembers: its calls of the last minute and its pauses.
#[derive(Debug)]
pub struct Budget {
    /// Calls in the current window, against the group's limit.
    pub limiter: RateLimiter,
    /// Throttling pauses and authentication suspensions of the credential.
    pub backoff: Backoff,
}

impl Budget {
    /// A fresh budget of `limit` calls a minute.
    pub fn new(limit: u32) -> Budget {
        Budget {
            limiter: RateLimiter::per_minute(limit),
            backoff: Backoff::default(),
        }
    }

    /// Nothing to remember any more: no call in the window, no pause ahead.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.limiter.is_idle(now) && self.backoff.hold_until().is_none_or(|h| h <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn settings(yaml: &str) -> Settings {
        let env: Env = [
            ("AK", "AKAKAKAKAKAK"),
            ("SK", "sk"),
            ("SK2", "sk2"),
            ("T", "s3cr3t-tok"),
            ("P", "pw"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        crate::config::load_str(yaml, &env).unwrap()
    }

    #[test]
    fn accounts_of_one_credential_and_gateway_share_a_group_with_the_lowest_limit() {
        let s = settings(
            r"
accounts:
  - name: a
    region: cn-north-4
    rate_limit_per_minute: 6
    auth: { ak_sk: { access_key_env: AK, secret_key_env: SK } }
    projects: [{ project_id: p1 }]
  - name: other-region
    region: cn-east-3
    auth: { ak_sk: { access_key_env: AK, secret_key_env: SK } }
    projects: [{ project_id: p1 }]
  - name: b
    region: cn-north-4
    rate_limit_per_minute: 4
    auth: { ak_sk: { access_key_env: AK, secret_key_env: SK2 } }
    projects: [{ project_id: p2, registry_types: [Harbor, Jfrog] }]
  - name: iam1
    region: cn-north-4
    auth: { iam_password: { domain: acme, user: ops, password_env: P } }
    projects: [{ project_id: p1 }]
  - name: iam2
    region: cn-north-4
    endpoint: https://hss.cn-north-4.myhuaweicloud.com:443/
    auth: { iam_password: { domain: acme, user: ops, password_env: P } }
    projects: [{ project_id: p2 }]
  - name: tok
    region: cn-north-4
    auth: { token: { token_env: T } }
    projects: [{ project_id: p1 }]
",
        );
        let groups = groups(&s);
        let summary: Vec<(String, u32, usize)> = groups
            .iter()
            .map(|g| (g.names(), g.limit(), g.targets()))
            .collect();
        assert_eq!(
            summary,
            [
                ("a, b".to_string(), 4, 3),
                ("other-region".to_string(), 5, 1),
                ("iam1, iam2".to_string(), 5, 2),
                ("tok".to_string(), 5, 1),
            ]
        );
        assert_eq!(
            groups[0].key.gateway,
            "hss.cn-north-4.myhuaweicloud.com:443"
        );
        let shown = format!("{} {:?}", groups[0].key, groups[3].key);
        assert!(shown.starts_with("access key #"), "{shown}");
        assert!(shown.contains(" token #"), "{shown}");
        assert!(
            !shown.contains("AKAKAKAKAKAK") && !shown.contains("s3cr3t-tok"),
            "no key or token in {shown}"
        );
        assert_eq!(
            groups[2].key.to_string(),
            "IAM user acme/ops at hss.cn-north-4.myhuaweicloud.com:443"
        );
    }
}
