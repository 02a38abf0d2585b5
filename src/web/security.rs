//! What `--web.config.file` makes the server enforce: TLS (maybe with client certificates),
//! basic auth against bcrypt hashes, a rate limit and extra response headers.
//!
//! As in the exporter-toolkit, the file is read again when it changes: each new connection
//! and each request looks at the file and the certificate, key and CA files it names (their
//! size, time and inode, not their contents), and a change is loaded for what comes next.
//! A file that is broken on disk leaves the last good settings in force and is logged once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use tokio_rustls::rustls;

use super::basic_auth::BasicAuth;
use super::config::{Failure, Pem, Problem, WebConfig, WebConfigError};
use super::rate_limit::RateLimiter;
use super::tls;
use crate::server::TlsSource;

/// What the server enforces, kept current with the file on disk.
pub struct Security {
    path: PathBuf,
    /// Whether the listener speaks TLS; fixed at start (a change needs a restart).
    tls_mode: bool,
    active: RwLock<Arc<Active>>,
    /// What the files looked like when they were last read.
    watched: Mutex<Vec<(PathBuf, Option<Stamp>)>>,
}

/// The settings in force for new connections and requests.
pub(super) struct Active {
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) auth: Option<Arc<BasicAuth>>,
    pub(super) headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub(super) limiter: Option<Arc<RateLimiter>>,
    pub(super) http2: bool,
}

/// Enough of a file's metadata to notice that it was replaced or rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
    })
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = self.current();
        f.debug_struct("Security")
            .field("tls", &a.tls.is_some())
            .field("http2", &(a.tls.is_some() && a.http2))
            .field(
                "basic_auth_users",
                &a.auth.as_ref().map_or(0, |u| u.users().len()),
            )
            .field("rate_limit", &a.limiter.as_ref().map(|l| l.settings))
            .field("headers", &a.headers.len())
            .finish_non_exhaustive()
    }
}

impl Security {
    /// Reads and checks a web config file; every problem names its key. Nothing here
    /// hashes a password, whatever the bcrypt cost of the users.
    pub fn load(path: &Path) -> Result<Security, WebConfigError> {
        let before = stamp(path);
        let config = WebConfig::read(path)?;
        let files = stamped(named_files(&config));
        let active = build(&config, None).map_err(|e| e.in_file(path))?;
        let watched = std::iter::once((path.to_path_buf(), before))
            .chain(files)
            .collect();
        Ok(Security {
            path: path.to_path_buf(),
            tls_mode: active.tls.is_some(),
            active: RwLock::new(Arc::new(active)),
            watched: Mutex::new(watched),
        })
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls_mode
    }

    /// Where the accept loop takes each new connection's TLS settings from; `None` for
    /// plain HTTP.
    pub fn tls_source(self: &Arc<Self>) -> Option<TlsSource> {
        if !self.tls_mode {
            return None;
        }
        let me = self.clone();
        Some(Arc::new(move || me.active().tls.clone()))
    }

    /// Checks an `Authorization` header against the current users; `true` when no basic
    /// auth is configured.
    pub async fn authorized(&self, header: Option<&http::HeaderValue>) -> bool {
        match self.active().auth.clone() {
            None => true,
            Some(auth) => auth.check(header).await,
        }
    }

    fn current(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The settings in force, read again first if a file changed on disk.
    pub(super) fn active(&self) -> Arc<Active> {
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        if watched.iter().all(|(p, s)| stamp(p) == *s) {
            return self.current();
        }
        let before = stamp(&self.path);
        let current = self.current();
        let old_files: Vec<PathBuf> = watched.iter().skip(1).map(|(p, _)| p.clone()).collect();
        // The files are stamped before they are read, so a change while reading is seen
        // next time; a failed load watches the files the new text names, so that a
        // certificate that appears later is picked up.
        let (files, result) = match WebConfig::read(&self.path) {
            Err(e) => (stamped(old_files), Err(e)),
            Ok(config) => {
                let files = stamped(named_files(&config));
                let result = if config.tls.is_some() == self.tls_mode {
                    build(&config, Some(&current)).map_err(|e| e.in_file(&self.path))
                } else {
                    Err(Failure::invalid("tls_server_config", Problem::ModeChange)
                        .in_file(&self.path))
                };
                (files, result)
            }
        };
        match result {
            Ok(active) => {
                *self.active.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(active);
                tracing::info!(file = %self.path.display(), "web config reloaded; new connections use it");
            }
            Err(e) => tracing::error!("web config not reloaded, the last good one stays: {e}"),
        }
        *watched = std::iter::once((self.path.clone(), before))
            .chain(files)
            .collect();
        drop(watched);
        self.current()
    }
}

/// The certificate, key and CA files a config names.
fn named_files(config: &WebConfig) -> Vec<PathBuf> {
    let Some(t) = &config.tls else {
        return Vec::new();
    };
    [Some(&t.cert), Some(&t.key), t.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|p| match p {
            Pem::File(f) => Some(f.clone()),
            Pem::Inline(_) => None,
        })
        .collect()
}

fn stamped(files: Vec<PathBuf>) -> Vec<(PathBuf, Option<Stamp>)> {
    files
        .into_iter()
        .map(|f| {
            let s = stamp(&f);
            (f, s)
        })
        .collect()
}

/// The settings of a checked file, reusing what `previous` had where nothing changed (the
/// verified-password cache and the rate-limit bucket).
fn build(config: &WebConfig, previous: Option<&Active>) -> Result<Active, Failure> {
    let tls = match &config.tls {
        None => None,
        Some(t) => {
            let built = tls::build(t, config.http2)?;
            for warning in &built.warnings {
                tracing::warn!("{warning}");
            }
            Some(built.config)
        }
    };
    let auth = if config.users.is_empty() {
        None
    } else {
        match previous.and_then(|p| p.auth.clone()) {
            Some(a) if *a.users() == config.users => Some(a),
            _ => Some(Arc::new(BasicAuth::new(config.users.clone()))),
        }
    };
    let limiter = config
        .rate_limit
        .map(|r| match previous.and_then(|p| p.limiter.clone()) {
            Some(l) if l.settings == r => l,
            _ => Arc::new(RateLimiter::new(r)),
        });
    let mut headers = Vec::new();
    for (name, value) in &config.headers {
        let key = || format!("http_server_config.headers.{name}");
        let n = http::HeaderName::try_from(name.as_str())
            .map_err(|_| Failure::invalid(key(), Problem::HeaderNotAllowed(name.clone())))?;
        let v = http::HeaderValue::try_from(value.as_str()).map_err(|_| {
            Failure::invalid(
                key(),
                Problem::HeaderValue {
                    value: value.clone(),
                    expected: "a header value",
                },
            )
        })?;
        headers.push((n, v));
    }
    Ok(Active {
        tls,
        auth,
        headers,
        limiter,
        http2: config.http2,
    })
}
