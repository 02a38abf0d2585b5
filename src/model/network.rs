//! How an account's calls reach the cloud: through which proxy, and trusting which
//! certificates. Resolved from the file and the environment by the configuration, used by the
//! client; nothing here reads a file or a variable.

use std::fmt;
use std::path::PathBuf;

use crate::secret::Secret;

/// The network settings of one account: its proxy and its TLS trust. Accounts with equal
/// settings share one HTTP client and its connection pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// Which proxy each call goes through, if any.
    pub proxy: ProxySettings,
    /// Which server certificates are trusted.
    pub tls: TlsSettings,
}

/// The proxies of an account, as `curl` and the official SDKs read them: one for `http://`
/// targets, one for `https://` targets (reached with `CONNECT`), and hosts reached directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// For `http://` endpoints (`HTTP_PROXY`, or `proxy_url`).
    pub http: Option<Proxy>,
    /// For `https://` endpoints (`HTTPS_PROXY`, or `proxy_url`).
    pub https: Option<Proxy>,
    /// Hosts reached without a proxy, in `NO_PROXY` syntax (comma-separated names, domain
    /// suffixes, IP addresses, CIDR blocks, or `*`).
    pub no_proxy: Option<String>,
}

impl ProxySettings {
    /// True when no call goes through a proxy.
    pub fn is_direct(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }
}

/// One proxy: its URL, which may hold a user and password, and where it was configured.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `http://[user:pass@]host:port`, the user and password included: a secret.
    pub url: Secret,
    /// The same URL without user or password, for messages and `check-config`.
    pub shown: String,
    /// Where it came from (`proxy_url`, `HTTPS_PROXY`, ...), for messages.
    pub source: String,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.shown, self.source)
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.shown, self.source)
    }
}

/// Which server certificates an account trusts, beyond the system's trust store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `tls.ca_file`: where `ca_certs` were read from, for messages.
    pub ca_file: Option<PathBuf>,
    /// The DER certificates of `ca_file`, added to the trusted roots (a private CA).
    pub ca_certs: Vec<Vec<u8>>,
    /// `tls.insecure_skip_verify`: accept any certificate. Logged at every start and shown on
    /// the status page, since it lets anyone on the path read and change the answers.
    pub insecure_skip_verify: bool,
}
