//! What `--web.config.file` makes the server enforce: TLS (maybe with client certificates),
//! basic auth against bcrypt hashes, and extra response headers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::prelude::{Engine as _, BASE64_STANDARD};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use super::config::{resolve, TlsSection, WebConfigError, WebConfigFile};
use crate::secret::Secret;

/// Verified (user, password) pairs kept, so a scrape storm costs one bcrypt per pair.
const AUTH_CACHE_SIZE: usize = 1024;

/// What the server enforces: TLS (maybe with client certificates) and basic auth.
pub struct Security {
    /// Wraps every connection when `tls_server_config` is set.
    pub tls: Option<TlsAcceptor>,
    /// Checked on every request when `basic_auth_users` is set.
    auth: Option<BasicAuth>,
    /// Extra response headers (`http_server_config.headers`).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("basic_auth", &self.auth.is_some())
            .field("headers", &self.headers.len())
            .finish()
    }
}

impl Security {
    /// Reads and checks a web config file; every problem names its key.
    pub fn load(path: &Path) -> Result<Security, WebConfigError> {
        let err = |m: String| WebConfigError(format!("{}: {m}", path.display()));
        let file = WebConfigFile::read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .as_ref()
            .map(|t| tls_acceptor(t, base))
            .transpose()
            .map_err(err)?;
        let auth = if file.basic_auth_users.is_empty() {
            None
        } else {
            Some(BasicAuth::new(&file.basic_auth_users).map_err(err)?)
        };
        let mut headers = Vec::new();
        if let Some(h) = &file.http_server_config {
            for (name, value) in &h.headers {
                let n = http::HeaderName::try_from(name.as_str()).map_err(|_| {
                    err(format!(
                        "http_server_config.headers: invalid header name {name:?}"
                    ))
                })?;
                let v = http::HeaderValue::try_from(value.as_str()).map_err(|_| {
                    err(format!("http_server_config.headers.{name}: invalid value"))
                })?;
                headers.push((n, v));
            }
        }
        Ok(Security { tls, auth, headers })
    }

    /// Checks an `Authorization` header; `true` when no basic auth is configured.
    pub async fn authorized(&self, header: Option<&http::HeaderValue>) -> bool {
        match &self.auth {
            None => true,
            Some(auth) => auth.check(header).await,
        }
    }
}

fn tls_acceptor(t: &TlsSection, base: &Path) -> Result<TlsAcceptor, String> {
    let at = "tls_server_config";
    let cert_path = resolve(base, &t.cert_file);
    let key_path = resolve(base, &t.key_file);
    let read = |key: &str, p: &Path| {
        std::fs::read(p).map_err(|e| format!("{at}.{key}: cannot read {}: {e}", p.display()))
    };
    let certs = rustls_pemfile::certs(&mut &read("cert_file", &cert_path)?[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{at}.cert_file: {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{at}.cert_file: {} holds no PEM certificate",
            cert_path.display()
        ));
    }
    let key = rustls_pemfile::private_key(&mut &read("key_file", &key_path)?[..])
        .map_err(|e| format!("{at}.key_file: {}: {e}", key_path.display()))?
        .ok_or_else(|| {
            format!(
                "{at}.key_file: {} holds no PEM private key",
                key_path.display()
            )
        })?;

    let version = |key: &str, v: &Option<String>, default: u8| -> Result<u8, String> {
        match v.as_deref() {
            None => Ok(default),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some(other @ ("TLS10" | "TLS11")) => Err(format!(
                "{at}.{key}: {other} is not supported (TLS12 or TLS13)"
            )),
            Some(other) => Err(format!(
                "{at}.{key}: unknown version {other:?} (expected TLS12 or TLS13)"
            )),
        }
    };
    let (min, max) = (
        version("min_version", &t.min_version, 12)?,
        version("max_version", &t.max_version, 13)?,
    );
    if min > max {
        return Err(format!("{at}: min_version is above max_version"));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{at}: {e}"))?;
    let client_roots = || -> Result<Arc<rustls::RootCertStore>, String> {
        let ca = t.client_ca_file.as_ref().ok_or_else(|| {
            format!(
                "{at}.client_ca_file: required by client_auth_type {:?}",
                t.client_auth_type.as_deref().unwrap_or("")
            )
        })?;
        let ca = resolve(base, ca);
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &read("client_ca_file", &ca)?[..]) {
            let c = c.map_err(|e| format!("{at}.client_ca_file: {}: {e}", ca.display()))?;
            roots
                .add(c)
                .map_err(|e| format!("{at}.client_ca_file: {}: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "{at}.client_ca_file: {} holds no PEM certificate",
                ca.display()
            ));
        }
        Ok(Arc::new(roots))
    };
    let verifier =
        |optional: bool| -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
            let b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                client_roots()?,
                provider.clone(),
            );
            let b = if optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build().map_err(|e| format!("{at}.client_ca_file: {e}"))
        };
    let builder = match t.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "NoClientCert" => {
            if t.client_ca_file.is_some() {
                tracing::warn!("{at}.client_ca_file is set but client_auth_type is NoClientCert: client certificates are not checked");
            }
            builder.with_no_client_auth()
        }
        "RequireAndVerifyClientCert" => builder.with_client_cert_verifier(verifier(false)?),
        "VerifyClientCertIfGiven" => builder.with_client_cert_verifier(verifier(true)?),
        other @ ("RequestClientCert" | "RequireAnyClientCert") => {
            return Err(format!("{at}.client_auth_type: {other} (client certificates that are not verified) is not supported; use RequireAndVerifyClientCert or VerifyClientCertIfGiven"))
        }
        other => {
            return Err(format!("{at}.client_auth_type: unknown value {other:?} (expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"))
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{at}: certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Basic auth against bcrypt hashes. Unknown users are checked against a dummy hash, so
/// the answer takes as long whether the user exists or not.
struct BasicAuth {
    users: HashMap<String, String>,
    dummy: String,
    /// sha256(user, password, hash) → verdict, so repeated scrapes skip bcrypt.
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// One bcrypt at a time: a flood of wrong passwords cannot take every core.
    gate: tokio::sync::Semaphore,
}

impl BasicAuth {
    fn new(users: &HashMap<String, String>) -> Result<BasicAuth, String> {
        let mut cost = None;
        for (user, hash) in users {
            let parts: bcrypt::HashParts = hash
                .parse()
                .map_err(|_| format!("basic_auth_users.{user}: not a bcrypt hash (generate one with htpasswd -nBC 10 {user})"))?;
            cost = cost.max(Some(parts.get_cost()));
        }
        let dummy = bcrypt::hash(
            "hss-exporter dummy password",
            cost.unwrap_or(bcrypt::DEFAULT_COST),
        )
        .map_err(|e| format!("basic_auth_users: {e}"))?;
        Ok(BasicAuth {
            users: users.clone(),
            dummy,
            cache: Mutex::new(HashMap::new()),
            gate: tokio::sync::Semaphore::new(1),
        })
    }

    async fn check(&self, header: Option<&http::HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.expose().as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if let Some(&ok) = self.cache().get(&key) {
            return ok && known;
        }
        let Ok(_permit) = self.gate.acquire().await else {
            return false;
        };
        let verified = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.expose(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = verified && known;
        let mut cache = self.cache();
        if cache.len() >= AUTH_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(key, ok);
        ok
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], bool>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(value: &http::HeaderValue) -> Option<(String, Secret)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64_STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), Secret::new(password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_credentials() {
        let h = http::HeaderValue::from_static("Basic dXNlcjpwYTpzcw==");
        let (user, password) = parse_basic(&h).unwrap();
        assert_eq!((user.as_str(), password.expose()), ("user", "pa:ss"));
        assert!(parse_basic(&http::HeaderValue::from_static("Bearer x")).is_none());
        assert!(parse_basic(&http::HeaderValue::from_static("Basic !!!")).is_none());
        assert!(parse_basic(&http::HeaderValue::from_static("Basic dXNlcjpwYXNz=")).is_none());
        assert!(parse_basic(&http::HeaderValue::from_static("Basic dXNlcg==")).is_none());
    }
}
