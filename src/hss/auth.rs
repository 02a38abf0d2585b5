//! How a request proves who it is: an AK/SK signature, a static token, or an IAM token
//! obtained with a password, cached per project and refreshed before it expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use url::Url;

use super::client::read_capped;
use super::error::{request_id, transport_error, ErrorBody};
use super::metadata::MetadataKeys;
use super::ApiError;
use crate::model::Credentials;
use crate::secret::Secret;

/// The cache key of the domain-scoped token; project IDs are never empty.
const DOMAIN_SCOPE: &str = "";
/// Refresh an IAM token this long before it expires (tokens live 24 h).
const REFRESH_MARGIN: Duration = Duration::from_secs(3600);
/// Assumed lifetime when IAM's answer has no readable `expires_at`.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is used for at least this long, whatever its `expires_at` says: when the host's
/// clock runs ahead of IAM's, a fresh token can look expired, and without a floor a new one
/// would be fetched before every poll.
const MIN_TOKEN_USE: Duration = Duration::from_secs(60);

/// What a single request carries; for a token, the one the request was made with, so that
/// a 401 can invalidate exactly it.
#[derive(Debug, Clone)]
pub enum RequestAuth {
    /// Sign the request (AK/SK).
    Sign {
        /// Named in `Authorization`.
        access_key: Secret,
        /// The HMAC key.
        secret_key: Secret,
        /// Sent and signed as `X-Security-Token` with temporary credentials.
        security_token: Option<Secret>,
    },
    /// Send `X-Auth-Token`.
    Token(Secret),
}

/// Hands out [`RequestAuth`] for a project; owns the IAM token cache.
pub struct Authenticator {
    kind: Kind,
}

enum Kind {
    Static(RequestAuth),
    Iam(IamTokens),
    Metadata(MetadataKeys),
}

impl Authenticator {
    /// The authenticator of `credentials`; IAM tokens and metadata keys are fetched over
    /// `http` within `timeout`.
    pub fn new(credentials: &Credentials, http: reqwest::Client, timeout: Duration) -> Self {
        Authenticator::with_metadata_client(credentials, http.clone(), http, timeout)
    }

    /// Like [`Authenticator::new`], with the metadata service reached over `metadata_http`
    /// (a client without the account's proxy: the service is link-local).
    pub fn with_metadata_client(
        credentials: &Credentials,
        http: reqwest::Client,
        metadata_http: reqwest::Client,
        timeout: Duration,
    ) -> Self {
        let kind = match credentials.clone() {
            Credentials::AkSk {
                access_key,
                secret_key,
                security_token,
            } => Kind::Static(RequestAuth::Sign {
                access_key,
                secret_key,
                security_token,
            }),
            Credentials::Token(token) => Kind::Static(RequestAuth::Token(token)),
            Credentials::IamPassword {
                domain,
                user,
                password,
                iam_endpoint,
            } => Kind::Iam(IamTokens {
                http,
                endpoint: iam_endpoint,
                domain,
                user,
                password,
                timeout,
                scopes: Mutex::new(HashMap::new()),
                skew_warned: AtomicBool::new(false),
            }),
            Credentials::Metadata { endpoint } => {
                Kind::Metadata(MetadataKeys::new(metadata_http, endpoint, timeout))
            }
        };
        Authenticator { kind }
    }

    /// True when a 401 may be cured by fetching a new token or new temporary keys.
    pub fn can_refresh(&self) -> bool {
        matches!(self.kind, Kind::Iam(_) | Kind::Metadata(_))
    }

    /// What a request for `project_id` carries (an IAM token is fetched when needed).
    pub async fn for_project(&self, project_id: &str) -> Result<RequestAuth, ApiError> {
        match &self.kind {
            Kind::Static(auth) => Ok(auth.clone()),
            Kind::Iam(iam) => iam.token(project_id).await.map(RequestAuth::Token),
            Kind::Metadata(keys) => keys.current().await,
        }
    }

    /// What a request outside any project carries (IAM's project list): for an IAM user, a
    /// token scoped to its account (domain).
    pub async fn for_domain(&self) -> Result<RequestAuth, ApiError> {
        match &self.kind {
            Kind::Static(auth) => Ok(auth.clone()),
            Kind::Iam(iam) => iam.token(DOMAIN_SCOPE).await.map(RequestAuth::Token),
            Kind::Metadata(keys) => keys.current().await,
        }
    }

    /// Forgets `used` after the API refused it, so that the next request fetches a new one.
    pub async fn refused(&self, project_id: &str, used: &RequestAuth) {
        match (&self.kind, used) {
            (Kind::Iam(iam), RequestAuth::Token(token)) => {
                iam.invalidate(project_id, token).await;
            }
            (Kind::Metadata(keys), _) => keys.refused(used).await,
            _ => {}
        }
    }
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// One token per project scope; the async mutex per scope makes sure only one refresh is in
/// flight for a scope while callers for other scopes go on.
struct IamTokens {
    http: reqwest::Client,
    endpoint: Url,
    domain: String,
    user: String,
    password: Secret,
    timeout: Duration,
    scopes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
    /// The clock-skew warning is logged once, not at every token.
    skew_warned: AtomicBool,
}

impl IamTokens {
    fn slot(&self, project_id: &str) -> Arc<tokio::sync::Mutex<Option<Cached>>> {
        let mut scopes = self
            .scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        scopes.entry(project_id.to_string()).or_default().clone()
    }

    async fn token(&self, project_id: &str) -> Result<Secret, ApiError> {
        let slot = self.slot(project_id);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch(project_id).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn invalidate(&self, project_id: &str, used: &Secret) {
        let slot = self.slot(project_id);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|c| &c.token == used) {
            *cached = None;
        }
    }

    async fn fetch(&self, project_id: &str) -> Result<Cached, ApiError> {
        // `https://iam.example/v3`, as the stack's own tools write it, is the same base.
        let base = self.endpoint.as_str().trim_end_matches('/');
        let url = format!(
            "{}/v3/auth/tokens",
            base.strip_suffix("/v3").unwrap_or(base)
        );
        let scope = if project_id == DOMAIN_SCOPE {
            serde_json::json!({"domain": {"name": self.domain}})
        } else {
            serde_json::json!({"project": {"id": project_id}})
        };
        let body = serde_json::json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {
                        "domain": {"name": self.domain},
                        "name": self.user,
                        "password": self.password.expose(),
                    }}
                },
                "scope": scope
            }
        });
        let exchange = async {
            let response = self
                .http
                .post(&url)
                .header("Content-Type", "application/json;charset=UTF-8")
                .body(body.to_string())
                .send()
                .await
                .map_err(transport_error)?;
            let status = response.status().as_u16();
            let request_id = request_id(response.headers());
            let token = response
                .headers()
                .get("X-Subject-Token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = read_capped(response, super::client::MAX_BODY_BYTES).await?;
            Ok::<_, ApiError>((status, request_id, token, bytes))
        };
        let (status, request_id, token, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ApiError::Timeout(self.timeout))??;
        if !(200..300).contains(&status) {
            let err = ErrorBody::parse(&bytes, request_id);
            return Err(err.into_error(status, "IAM"));
        }
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Decode("IAM answer has no X-Subject-Token header".into()))?;
        let expires_at = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["token"]["expires_at"].as_str().map(str::to_string))
            .and_then(|s| humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok());
        let lifetime = if let Some(at) = expires_at {
            at.duration_since(SystemTime::now()).unwrap_or_default()
        } else {
            tracing::warn!(
                project_id,
                "IAM token answer has no readable token.expires_at; refreshing it within the hour"
            );
            FALLBACK_LIFETIME
        };
        let use_for = self.use_for(lifetime, expires_at);
        tracing::info!(project_id, lifetime = %humantime::format_duration(Duration::from_secs(lifetime.as_secs())), "obtained IAM token");
        Ok(Cached {
            token: Secret::new(token),
            refresh_at: Instant::now() + use_for,
        })
    }

    /// How long a token of `lifetime` is used before a new one is fetched: until an hour
    /// (or half its life) before it expires, and never less than [`MIN_TOKEN_USE`]. A token
    /// that looks nearly expired on arrival means the host clock is off: said once.
    fn use_for(&self, lifetime: Duration, expires_at: Option<SystemTime>) -> Duration {
        let use_for = lifetime
            .checked_sub(REFRESH_MARGIN.min(lifetime / 2))
            .unwrap();
        if use_for >= MIN_TOKEN_USE {
            return use_for;
        }
        if !self.skew_warned.swap(true, Ordering::Relaxed) {
            let expires_at = expires_at.map_or_else(String::new, |t| {
                humantime::format_rfc3339_seconds(t).to_string()
            });
            tracing::warn!(
                %expires_at,
                "a new IAM token expires within a minute by this host's clock, so the clock is probably off (check NTP); each token is used for a minute before a new one is fetched"
            );
        }
        MIN_TOKEN_USE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> IamTokens {
        IamTokens {
            http: reqwest::Client::new(),
            endpoint: Url::parse("http://127.0.0.1:1").unwrap(),
            domain: "acme".into(),
            user: "ops".into(),
            password: Secret::new("pw"),
            timeout: Duration::from_secs(5),
            scopes: Mutex::new(HashMap::new()),
            skew_warned: AtomicBool::new(false),
        }
    }

    #[test]
    fn a_token_is_used_until_an_hour_before_it_expires_and_at_least_a_minute() {
        let t = tokens();
        let hour = Duration::from_secs(3600);
        assert_eq!(t.use_for(24 * hour, None), 23 * hour);
        assert_eq!(
            t.use_for(hour, None),
            hour / 2,
            "half the life of a short one"
        );
        assert!(!t.skew_warned.load(Ordering::Relaxed));
        assert_eq!(t.use_for(Duration::ZERO, None), MIN_TOKEN_USE);
        assert_eq!(t.use_for(Duration::from_secs(90), None), MIN_TOKEN_USE);
        assert!(
            t.skew_warned.load(Ordering::Relaxed),
            "the clock warning, once"
        );
    }
}
