//! The metadata service of a simulated ECS with an agency: session tokens
//! (`PUT /meta-data/latest/api/token`) and temporary keys
//! (`GET /openstack/latest/securitykey`) that expire, which the simulated gateway accepts
//! only with their security token, signed, until they expire.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use http::{Method, Response};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::body::{json, SimBody};
use super::{LogEntry, Service, Sim, State};

/// Who the gateway counts the agency's calls against, whichever temporary key they carry.
pub const AGENCY_CALLER: &str = "agency/hss-reader";

/// The simulated metadata service's settings and what it has handed out.
#[derive(Default)]
pub(super) struct Metadata {
    /// How long keys issued from now on live; `None`: the service is off (404).
    pub(super) lifetime: Option<Duration>,
    /// The status the session token route answers instead of a token (404, 405, 503: a
    /// service without session tokens); `None`: it issues them and requires one.
    pub(super) token_status: Option<u16>,
    /// Answer the security key route with this status (a failing service).
    pub(super) failing: Option<u16>,
    /// The server has no agency: 401 with the SDK's "configure an agency" message.
    pub(super) no_agency: bool,
    /// Session tokens handed out.
    pub(super) sessions: Vec<String>,
    /// Temporary keys handed out, by access key.
    pub(super) keys: HashMap<String, TempKey>,
}

/// One temporary key.
pub(super) struct TempKey {
    pub(super) secret: String,
    pub(super) security_token: String,
    pub(super) expires: Instant,
}

impl Sim {
    /// Turns the metadata service on: each key it hands out lives `lifetime`.
    pub fn enable_metadata(&self, lifetime: Duration) {
        self.state().metadata.lifetime = Some(lifetime);
    }

    /// Makes the session token route answer `status` (404, 405 or 503: a service without
    /// session tokens, asked without one); `None` issues and requires them again.
    pub fn set_metadata_token_status(&self, status: Option<u16>) {
        self.state().metadata.token_status = status;
    }

    /// Makes the security key route answer `status` (`None`: answer normally).
    pub fn set_metadata_failing(&self, status: Option<u16>) {
        self.state().metadata.failing = status;
    }

    /// Whether the server has an agency; without one the route answers 401.
    pub fn set_metadata_agency(&self, present: bool) {
        self.state().metadata.no_agency = !present;
    }

    /// A temporary key obtained elsewhere (`ak_sk` with a security token), valid for
    /// `lifetime` from now.
    pub fn add_temporary_key(&self, access: &str, secret: &str, token: &str, lifetime: Duration) {
        self.state().metadata.keys.insert(
            access.into(),
            TempKey {
                secret: secret.into(),
                security_token: token.into(),
                expires: Instant::now() + lifetime,
            },
        );
    }

    /// Every temporary key handed out or added so far, in no order: (access key, secret key,
    /// security token).
    pub fn issued_temporary_keys(&self) -> Vec<(String, String, String)> {
        self.state()
            .metadata
            .keys
            .iter()
            .map(|(ak, k)| (ak.clone(), k.secret.clone(), k.security_token.clone()))
            .collect()
    }

    /// The metadata routes; `None` when the request is for another route.
    pub(super) fn metadata_route(
        &self,
        method: &Method,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Option<Response<SimBody>> {
        let response = match (method, path) {
            (&Method::PUT, "/meta-data/latest/api/token") => self.session_token(headers),
            (&Method::GET, "/openstack/latest/securitykey") => self.security_key(headers),
            _ => return None,
        };
        self.state().record(LogEntry {
            at: Instant::now(),
            service: Service::Metadata,
            caller: String::new(),
            project_id: String::new(),
            path: path.to_string(),
            query: String::new(),
            status: response.status().as_u16(),
        });
        Some(response)
    }

    fn session_token(&self, headers: &http::HeaderMap) -> Response<SimBody> {
        let mut s = self.state();
        if s.metadata.lifetime.is_none() {
            return text(404, "Not Found");
        }
        if let Some(status) = s.metadata.token_status {
            return text(status, "session tokens are not supported");
        }
        if headers.get("X-Metadata-Token-Ttl-Seconds").is_none() {
            return text(400, "X-Metadata-Token-Ttl-Seconds is required");
        }
        s.counter += 1;
        let token = format!("mdtoken{:08x}{:016x}", s.counter, rand::random::<u64>());
        s.metadata.sessions.push(token.clone());
        text(200, &token)
    }

    fn security_key(&self, headers: &http::HeaderMap) -> Response<SimBody> {
        let mut s = self.state();
        let Some(lifetime) = s.metadata.lifetime else {
            return text(404, "Not Found");
        };
        if let Some(status) = s.metadata.failing {
            return text(status, "simulated metadata service failure");
        }
        if s.metadata.token_status.is_none() {
            let given = headers
                .get("X-Metadata-Token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !s.metadata.sessions.iter().any(|t| t == given) {
                return text(401, "Unauthorized: a valid X-Metadata-Token is required");
            }
        }
        if s.metadata.no_agency {
            return json(
                401,
                &serde_json::json!({"error": {"message": "Please configure Cloud Service Agency first"}}),
            );
        }
        s.counter += 1;
        let n = s.counter;
        let access = format!("TMPAK{n:015X}");
        let secret = format!("tmp-sk-{n:08x}-{:016x}", rand::random::<u64>());
        let security_token = format!("tmp-sectoken-{n:08x}-{:032x}", rand::random::<u128>());
        s.metadata.keys.insert(
            access.clone(),
            TempKey {
                secret: secret.clone(),
                security_token: security_token.clone(),
                expires: Instant::now() + lifetime,
            },
        );
        let expires_at = humantime::format_rfc3339_micros(SystemTime::now() + lifetime).to_string();
        json(
            200,
            &serde_json::json!({"credential": {
                "access": access,
                "secret": secret,
                "securitytoken": security_token,
                "expires_at": expires_at,
            }}),
        )
    }
}

impl State {
    /// The secret key of a temporary key, once its security token and expiry are checked;
    /// `Err` says why the gateway refuses it.
    pub(super) fn temporary_key(
        &self,
        access: &str,
        signed: &[&str],
        security_token: Option<&str>,
    ) -> Option<Result<String, String>> {
        let key = self.metadata.keys.get(access)?;
        if Instant::now() >= key.expires {
            return Some(Err("the temporary access key has expired".into()));
        }
        let Some(given) = security_token else {
            return Some(Err(
                "X-Security-Token is missing for a temporary access key".into(),
            ));
        };
        if !bool::from(given.as_bytes().ct_eq(key.security_token.as_bytes())) {
            return Some(Err("X-Security-Token does not match the access key".into()));
        }
        if !signed.contains(&"x-security-token") {
            return Some(Err("x-security-token must be signed".into()));
        }
        Some(Ok(key.secret.clone()))
    }
}

fn text(status: u16, body: &str) -> Response<SimBody> {
    let mut r = Response::new(SimBody::full(bytes::Bytes::from(body.to_string())));
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}
