//! Temporary credentials from the metadata service of an ECS (or CCE node) with an agency,
//! fetched as the official SDK fetches them: a session token first
//! (`PUT /meta-data/latest/api/token`, sent back as `X-Metadata-Token`; a service that answers
//! 404, 405 or 503 has none, and is asked without), then
//! `GET /openstack/latest/securitykey` for `credential.access`, `.secret`, `.securitytoken`
//! and `.expires_at`. The keys are kept until well before they expire.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use url::Url;

use super::auth::RequestAuth;
use super::client::{read_capped, MAX_BODY_BYTES};
use super::error::transport_error;
use super::ApiError;
use crate::secret::Secret;

/// Lifetime asked for a session token, as the SDK asks.
const SESSION_TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);
/// A session token is renewed this long before its lifetime ends.
const SESSION_TOKEN_MARGIN: Duration = Duration::from_secs(600);
/// When the service has no session tokens, ask again after this long (as the SDK does).
const SESSION_TOKEN_RECHECK: Duration = Duration::from_secs(24 * 3600);
/// Keys are renewed this long before they expire (the SDK's threshold), or at half their
/// life when they live shorter than twice this.
const REFRESH_MARGIN: Duration = Duration::from_secs(2 * 3600);
/// Keys are used at least this long, whatever their expiry says, so that a host clock that
/// is off does not make every request fetch new ones.
const MIN_KEY_USE: Duration = Duration::from_secs(1);
/// The metadata service's answer when the server has no agency.
const NO_AGENCY: &str = "Please configure Cloud Service Agency first";

struct Keys {
    auth: RequestAuth,
    refresh_at: Instant,
}

/// Whether a session token is in use.
enum Session {
    /// Not asked yet, or due to be asked again.
    Unknown,
    /// The service has none; ask again after this moment.
    Unsupported { recheck_at: Instant },
    /// This token, until this moment.
    Token { token: Secret, renew_at: Instant },
}

struct State {
    keys: Option<Keys>,
    session: Session,
}

/// The keys of one metadata service, cached until well before they expire.
pub(super) struct MetadataKeys {
    http: reqwest::Client,
    endpoint: Url,
    timeout: Duration,
    state: tokio::sync::Mutex<State>,
    /// The clock warning is logged once.
    skew_warned: AtomicBool,
}

impl MetadataKeys {
    /// Keys of the service at `endpoint`, fetched over `http` (a client without proxy: the
    /// service answers on a link-local address) within `timeout`.
    pub(super) fn new(http: reqwest::Client, endpoint: Url, timeout: Duration) -> Self {
        MetadataKeys {
            http,
            endpoint,
            timeout,
            state: tokio::sync::Mutex::new(State {
                keys: None,
                session: Session::Unknown,
            }),
            skew_warned: AtomicBool::new(false),
        }
    }

    /// The current keys, fetched when there are none or they are due for renewal.
    pub(super) async fn current(&self) -> Result<RequestAuth, ApiError> {
        let mut state = self.state.lock().await;
        if let Some(k) = &state.keys {
            if Instant::now() < k.refresh_at {
                return Ok(k.auth.clone());
            }
        }
        let fetched = tokio::time::timeout(self.timeout, self.fetch(&mut state))
            .await
            .map_err(|_| {
                self.error(&format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ))
            })??;
        let auth = fetched.auth.clone();
        state.keys = Some(fetched);
        Ok(auth)
    }

    /// Forgets `used` after the API refused it, so that the next request fetches new keys.
    pub(super) async fn refused(&self, used: &RequestAuth) {
        let mut state = self.state.lock().await;
        let same = match (&state.keys, used) {
            (
                Some(Keys {
                    auth: RequestAuth::Sign { access_key: a, .. },
                    ..
                }),
                RequestAuth::Sign { access_key: b, .. },
            ) => a == b,
            _ => false,
        };
        if same {
            state.keys = None;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.as_str().trim_end_matches('/'))
    }

    fn error(&self, why: &str) -> ApiError {
        ApiError::Credentials(format!(
            "metadata service {}: {why}",
            self.endpoint.as_str().trim_end_matches('/')
        ))
    }

    /// A transport failure, said without the URL (which the message names already).
    fn unreachable(&self, e: reqwest::Error) -> ApiError {
        self.error(&format!("unreachable: {}", transport_error(e)))
    }

    async fn fetch(&self, state: &mut State) -> Result<Keys, ApiError> {
        let now = Instant::now();
        let due = match &state.session {
            Session::Unknown => true,
            Session::Unsupported { recheck_at } => now >= *recheck_at,
            Session::Token { renew_at, .. } => now >= *renew_at,
        };
        if due {
            state.session = self.session_token(false).await?;
        }
        let (status, body) = self.security_key(&state.session).await?;
        let (status, body) = if status == 401 && !String::from_utf8_lossy(&body).contains(NO_AGENCY)
        {
            // The session token may have been revoked or expired early: one new one.
            state.session = self.session_token(true).await?;
            self.security_key(&state.session).await?
        } else {
            (status, body)
        };
        if status >= 400 {
            let text = excerpt(&body);
            if text.contains(NO_AGENCY) {
                return Err(self.error(&format!(
                    "HTTP {status}: this server has no agency ({text}); give the ECS an agency with HSS read permissions"
                )));
            }
            return Err(self.error(&format!("HTTP {status} for the security key: {text}")));
        }
        self.keys(&body)
    }

    /// Asks for a session token. A service without them answers 404, 405 or 503: then the
    /// keys are asked for without one, unless `required` (a 401 said one is needed).
    async fn session_token(&self, required: bool) -> Result<Session, ApiError> {
        let response = self
            .http
            .put(self.url("/meta-data/latest/api/token"))
            .header(
                "X-Metadata-Token-Ttl-Seconds",
                SESSION_TOKEN_TTL.as_secs().to_string(),
            )
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let body = read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| self.error(&format!("reading the session token: {e}")))?;
        match status {
            200 => {
                let token = String::from_utf8_lossy(&body).trim().to_string();
                if token.is_empty() {
                    return Err(self.error("the session token answer is empty"));
                }
                Ok(Session::Token {
                    token: Secret::new(token),
                    renew_at: Instant::now()
                        + SESSION_TOKEN_TTL.saturating_sub(SESSION_TOKEN_MARGIN),
                })
            }
            404 | 405 | 503 if !required => {
                tracing::debug!(
                    status,
                    "the metadata service has no session tokens; asking without"
                );
                Ok(Session::Unsupported {
                    recheck_at: Instant::now() + SESSION_TOKEN_RECHECK,
                })
            }
            _ => Err(self.error(&format!(
                "HTTP {status} for a session token: {}",
                excerpt(&body)
            ))),
        }
    }

    async fn security_key(&self, session: &Session) -> Result<(u16, bytes::Bytes), ApiError> {
        let mut request = self.http.get(self.url("/openstack/latest/securitykey"));
        if let Session::Token { token, .. } = session {
            request = request.header("X-Metadata-Token", token.expose());
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let body = read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| self.error(&format!("reading the security key: {e}")))?;
        Ok((status, body))
    }

    /// The keys of an answer, and when to renew them.
    fn keys(&self, body: &[u8]) -> Result<Keys, ApiError> {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| self.error(&format!("the security key answer is not JSON: {e}")))?;
        let c = if v.get("credential").is_some() {
            &v["credential"]
        } else {
            &v["credentials"]
        };
        let field = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| c[*n].as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    self.error(&format!(
                        "the security key answer has no credential.{}",
                        names[0]
                    ))
                })
        };
        let access = field(["access", "accessKeyId"])?;
        let secret = field(["secret", "secretAccessKey"])?;
        let token = field(["securitytoken", "securityToken"])?;
        let expires_at = field(["expires_at", "expiration"])?;
        let expires = humantime::parse_rfc3339_weak(expires_at.trim_end_matches('Z'))
            .map_err(|e| self.error(&format!("credential.expires_at {expires_at:?}: {e}")))?;
        let lifetime = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let use_for = lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 2));
        let use_for = if use_for < MIN_KEY_USE {
            if !self.skew_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    %expires_at,
                    "temporary keys from the metadata service expire within seconds by this host's clock, so the clock is probably off (check NTP)"
                );
            }
            MIN_KEY_USE
        } else {
            use_for
        };
        tracing::info!(
            lifetime = %humantime::format_duration(Duration::from_secs(lifetime.as_secs())),
            renew_in = %humantime::format_duration(Duration::from_secs(use_for.as_secs())),
            "obtained temporary keys from the metadata service"
        );
        Ok(Keys {
            auth: RequestAuth::Sign {
                access_key: Secret::new(access),
                secret_key: Secret::new(secret),
                security_token: Some(Secret::new(token)),
            },
            refresh_at: Instant::now() + use_for,
        })
    }
}

/// A short, printable excerpt of an error body.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    text.chars().filter(|c| !c.is_control()).collect()
}
