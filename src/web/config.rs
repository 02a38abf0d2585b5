//! `--web.config.file`: the Prometheus exporter-toolkit web configuration format, read
//! strictly (unknown keys and duplicate keys are refused with their path) and checked with
//! the toolkit's rules. What it means at run time is [`super::security`]'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

/// Why a web config file was refused. Every message names the file, and the key when one
/// is at fault.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The web config file itself could not be read.
    #[error("{}: cannot read the file: {source}", file.display())]
    Read {
        /// The web config file.
        file: PathBuf,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML, or not a mapping.
    #[error("{}: {message}", file.display())]
    Syntax {
        /// The web config file.
        file: PathBuf,
        /// What the YAML reader said.
        message: String,
    },
    /// A key holds a value the format does not allow, or that cannot be served.
    #[error("{}: {key}: {problem}", file.display())]
    Invalid {
        /// The web config file.
        file: PathBuf,
        /// The key path, such as `tls_server_config.cipher_suites[2]`.
        key: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

/// What is wrong with one key of a web config file.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A key the format does not have.
    #[error("unknown field")]
    UnknownKey,
    /// A value of the wrong YAML type (a list where a string belongs, say).
    #[error("expected {0}")]
    WrongType(&'static str),
    /// A value outside the format's enumeration (a cipher, curve, TLS version, auth type).
    #[error("unknown value {value:?} (expected {expected})")]
    UnknownValue {
        /// The value as written.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },
    /// A boolean, integer or duration that does not parse.
    #[error("invalid {expected} {value:?}")]
    BadScalar {
        /// The value as written.
        value: String,
        /// `boolean`, `integer` or `duration`.
        expected: &'static str,
    },
    /// TLS is configured without a certificate or a key.
    #[error("missing one of {0}")]
    Missing(&'static str),
    /// A file named by the config cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    CannotRead {
        /// The file, resolved against the web config's directory.
        path: PathBuf,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// PEM text (a file or inline) that holds no certificate.
    #[error("{0} holds no pem certificate")]
    NoCertificate(String),
    /// PEM text that holds no private key.
    #[error("{0} holds no pem private key")]
    NoKey(String),
    /// PEM text that does not parse.
    #[error("{what}: {reason}")]
    BadPem {
        /// The file or `inline key`.
        what: String,
        /// What the PEM reader said.
        reason: String,
    },
    /// The certificate and the key are not a pair, or rustls refused them.
    #[error("certificate and key do not fit: {0}")]
    KeyMismatch(String),
    /// `client_ca_file`/`client_ca` with `client_auth_type` left at `NoClientCert`.
    #[error("client ca set without a client auth policy (client_auth_type is NoClientCert)")]
    CaWithoutPolicy,
    /// `client_allowed_sans` with a policy that lets clients connect without a certificate.
    #[error(
        "requires client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert, not {0}"
    )]
    SansWithoutRequiredCert(String),
    /// A response header the format does not let one set.
    #[error("header {0:?} cannot be configured (allowed: Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)")]
    HeaderNotAllowed(String),
    /// A response header value outside the header's enumeration, or not a valid value.
    #[error("invalid value {value:?} (expected {expected})")]
    HeaderValue {
        /// The value as written.
        value: String,
        /// The values the header takes.
        expected: &'static str,
    },
    /// Every listed cipher suite is one rustls does not implement.
    #[error("none of the listed suites is implemented by rustls: {0}")]
    NoImplementedSuite(String),
    /// `max_version` below TLS 1.2, which rustls does not implement.
    #[error("{0} is below TLS12, the oldest version rustls implements")]
    VersionTooOld(String),
    /// `min_version` above `max_version`.
    #[error("min_version {min} is above max_version {max}")]
    VersionRange {
        /// `min_version` as written.
        min: String,
        /// `max_version` as written.
        max: String,
    },
    /// The TLS 1.2 suites left by `cipher_suites` and `max_version` leave nothing to serve.
    #[error("no tls 1.2 suite is left and max_version is TLS12")]
    NoSuiteForVersions,
    /// `http2: true` with TLS 1.2 suites that HTTP/2 forbids.
    #[error("cipher_suites lacks TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 and TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, which http/2 requires (add one, or set http_server_config.http2: false)")]
    Http2Cipher,
    /// A changed file that would switch between TLS and plain HTTP.
    #[error("switching between https and plain http needs a restart")]
    ModeChange,
    /// rustls refused the settings.
    #[error("{0}")]
    Tls(String),
}

/// Where PEM text comes from: a file (relative to the web config) or the YAML itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pem {
    File(PathBuf),
    Inline(String),
}

/// `client_auth_type`, with Go's `crypto/tls` meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientAuth {
    /// No certificate is asked for.
    None,
    /// Asked for, not required, not verified.
    Request,
    /// Required, not verified (`RequireAnyClientCert`, alias `RequireClientCert`).
    RequireAny,
    /// Verified when given.
    VerifyIfGiven,
    /// Required and verified.
    RequireAndVerify,
}

impl ClientAuth {
    pub(super) fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "NoClientCert",
            ClientAuth::Request => "RequestClientCert",
            ClientAuth::RequireAny => "RequireAnyClientCert",
            ClientAuth::VerifyIfGiven => "VerifyClientCertIfGiven",
            ClientAuth::RequireAndVerify => "RequireAndVerifyClientCert",
        }
    }
}

/// A TLS version the format names; rustls implements 1.2 and 1.3 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TlsVersion {
    V10,
    V11,
    V12,
    V13,
}

impl TlsVersion {
    pub(super) fn name(self) -> &'static str {
        match self {
            TlsVersion::V10 => "TLS10",
            TlsVersion::V11 => "TLS11",
            TlsVersion::V12 => "TLS12",
            TlsVersion::V13 => "TLS13",
        }
    }
}

/// `tls_server_config`, checked; files are read when the TLS settings are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsSettings {
    pub(super) cert: Pem,
    pub(super) key: Pem,
    pub(super) client_ca: Option<Pem>,
    pub(super) client_auth: ClientAuth,
    pub(super) allowed_sans: Option<Vec<String>>,
    pub(super) min_version: TlsVersion,
    pub(super) max_version: TlsVersion,
    /// Go cipher suite names, in the file's order; each is one Go knows.
    pub(super) cipher_suites: Vec<String>,
    pub(super) prefer_server_cipher_suites: bool,
    /// Go curve names, in preference order; each is one Go knows.
    pub(super) curves: Vec<String>,
}

/// `rate_limit`: `burst` requests at once, one more every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RateLimit {
    pub(super) interval: Duration,
    pub(super) burst: u64,
}

/// A whole web config file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WebConfig {
    /// `None`: plain HTTP.
    pub(super) tls: Option<TlsSettings>,
    pub(super) http2: bool,
    pub(super) headers: Vec<(String, String)>,
    /// user → bcrypt hash.
    pub(super) users: BTreeMap<String, String>,
    /// `None` when `interval` is 0 (the default).
    pub(super) rate_limit: Option<RateLimit>,
}

/// Go cipher suite names `crypto/tls` accepts (`tls.CipherSuites()`), with whether rustls
/// implements them. The TLS 1.3 ones are accepted and, as in Go, do not restrict TLS 1.3.
pub(super) const CIPHER_SUITES: &[(&str, bool)] = &[
    ("TLS_AES_128_GCM_SHA256", true),
    ("TLS_AES_256_GCM_SHA384", true),
    ("TLS_CHACHA20_POLY1305_SHA256", true),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", true),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", true),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", true),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", true),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", true),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", true),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", false),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", false),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", false),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", false),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", false),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", false),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", false),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", false),
];

/// Go curve names (`tls.CurveID`) the format accepts.
pub(super) const CURVES: &[&str] = &[
    "CurveP256",
    "CurveP384",
    "CurveP521",
    "X25519",
    "X25519MLKEM768",
];

/// Response headers the format lets one set, with the values allowed (empty: any).
const HEADERS: &[(&str, &[&str], &str)] = &[
    ("Strict-Transport-Security", &[], ""),
    ("X-Content-Type-Options", &["nosniff"], "nosniff"),
    (
        "X-Frame-Options",
        &["deny", "sameorigin"],
        "deny or sameorigin",
    ),
    ("X-XSS-Protection", &[], ""),
    ("Content-Security-Policy", &[], ""),
];

impl WebConfig {
    /// Reads and checks `path`. Relative file names in it are relative to its directory,
    /// as in the exporter-toolkit.
    pub(super) fn read(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, base).map_err(|e| e.in_file(path))
    }

    /// Checks the text of a web config; file names are resolved against `base`.
    pub(super) fn parse(text: &str, base: &Path) -> Result<WebConfig, Failure> {
        let json = crate::yaml::to_json(text).map_err(Failure::Syntax)?;
        let top = match &json {
            Value::Object(m) => m,
            Value::Null => &Map::new(),
            _ => {
                return Err(Failure::Syntax(
                    "the file must be a mapping of keys, not a single value or a list".into(),
                ))
            }
        };
        let top = Keys::new(
            top,
            "",
            &[
                "tls_server_config",
                "http_server_config",
                "basic_auth_users",
                "rate_limit",
            ],
        )?;
        let (http2, headers) = match top.map("http_server_config")? {
            None => (true, Vec::new()),
            Some(h) => {
                let h = Keys::new(h, "http_server_config.", &["http2", "headers"])?;
                let http2 = h.bool("http2")?.unwrap_or(true);
                let headers = match h.map("headers")? {
                    None => Vec::new(),
                    Some(m) => headers(m)?,
                };
                (http2, headers)
            }
        };
        let users = match top.map("basic_auth_users")? {
            None => BTreeMap::new(),
            Some(m) => users(m)?,
        };
        let rate_limit = match top.map("rate_limit")? {
            None => None,
            Some(r) => {
                let r = Keys::new(r, "rate_limit.", &["interval", "burst"])?;
                let interval = r.duration("interval")?.unwrap_or_default();
                let burst = r.int("burst")?.unwrap_or(0);
                (!interval.is_zero()).then_some(RateLimit {
                    interval,
                    // A negative burst lets nothing through, as a zero one does in Go.
                    burst: u64::try_from(burst).unwrap_or(0),
                })
            }
        };
        let tls = match top.map("tls_server_config")? {
            None => None,
            Some(t) => tls(t, base)?,
        };
        if let Some(t) = &tls {
            if http2 && !t.cipher_suites.is_empty() && t.min_version < TlsVersion::V13 {
                // Go's HTTP/2 server refuses a TLS 1.2 suite list without its required suite.
                let required = [
                    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                ];
                if !t
                    .cipher_suites
                    .iter()
                    .any(|c| required.contains(&c.as_str()))
                {
                    return Err(Failure::invalid(
                        "tls_server_config.cipher_suites",
                        Problem::Http2Cipher,
                    ));
                }
            }
        }
        Ok(WebConfig {
            tls,
            http2,
            headers,
            users,
            rate_limit,
        })
    }
}

/// A refusal before the file name is known.
#[derive(Debug)]
pub(super) enum Failure {
    Syntax(String),
    Invalid(String, Problem),
}

impl Failure {
    pub(super) fn invalid(key: impl Into<String>, problem: Problem) -> Failure {
        Failure::Invalid(key.into(), problem)
    }

    pub(super) fn in_file(self, file: &Path) -> WebConfigError {
        let file = file.to_path_buf();
        match self {
            Failure::Syntax(message) => WebConfigError::Syntax { file, message },
            Failure::Invalid(key, problem) => WebConfigError::Invalid { file, key, problem },
        }
    }
}

/// One mapping of the file, its keys checked against the ones the format has.
struct Keys<'a> {
    map: &'a Map<String, Value>,
    prefix: &'static str,
}

impl<'a> Keys<'a> {
    fn new(
        map: &'a Map<String, Value>,
        prefix: &'static str,
        known: &[&str],
    ) -> Result<Keys<'a>, Failure> {
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Failure::invalid(
                format!("{prefix}{k}"),
                Problem::UnknownKey,
            ));
        }
        Ok(Keys { map, prefix })
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.map.get(k).filter(|v| !v.is_null())
    }

    fn map(&self, k: &str) -> Result<Option<&'a Map<String, Value>>, Failure> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(Failure::invalid(
                self.key(k),
                Problem::WrongType("a mapping"),
            )),
        }
    }

    /// A string; an empty one counts as not set, as in Go.
    fn string(&self, k: &str) -> Result<Option<&'a str>, Failure> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok((!s.is_empty()).then_some(s.as_str())),
            Some(_) => Err(Failure::invalid(
                self.key(k),
                Problem::WrongType("a string"),
            )),
        }
    }

    fn list(&self, k: &str) -> Result<Option<Vec<&'a str>>, Failure> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.as_str()),
                    _ => Err(Failure::invalid(
                        format!("{}[{i}]", self.key(k)),
                        Problem::WrongType("a string"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(Failure::invalid(self.key(k), Problem::WrongType("a list"))),
        }
    }

    /// A YAML 1.1 boolean, as Go's YAML reader takes them.
    fn bool(&self, k: &str) -> Result<Option<bool>, Failure> {
        let Some(s) = self.scalar(k)? else {
            return Ok(None);
        };
        match s {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "y" | "Y" | "on" | "On" | "ON" => {
                Ok(Some(true))
            }
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "n" | "N" | "off" | "Off"
            | "OFF" => Ok(Some(false)),
            other => Err(Failure::invalid(
                self.key(k),
                Problem::BadScalar {
                    value: other.into(),
                    expected: "boolean",
                },
            )),
        }
    }

    fn int(&self, k: &str) -> Result<Option<i64>, Failure> {
        let Some(s) = self.scalar(k)? else {
            return Ok(None);
        };
        s.parse().map(Some).map_err(|_| {
            Failure::invalid(
                self.key(k),
                Problem::BadScalar {
                    value: s.into(),
                    expected: "integer",
                },
            )
        })
    }

    /// A Go duration (`1s`, `1m30s`, `250ms`) or an integer of nanoseconds, as Go's YAML
    /// reader takes a `time.Duration`.
    fn duration(&self, k: &str) -> Result<Option<Duration>, Failure> {
        let Some(s) = self.scalar(k)? else {
            return Ok(None);
        };
        parse_go_duration(s).map(Some).ok_or_else(|| {
            Failure::invalid(
                self.key(k),
                Problem::BadScalar {
                    value: s.into(),
                    expected: "duration",
                },
            )
        })
    }

    fn scalar(&self, k: &str) -> Result<Option<&'a str>, Failure> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Failure::invalid(
                self.key(k),
                Problem::WrongType("a single value"),
            )),
        }
    }
}

fn headers(m: &Map<String, Value>) -> Result<Vec<(String, String)>, Failure> {
    let mut out = Vec::new();
    for (name, value) in m {
        let key = format!("http_server_config.headers.{name}");
        // Go matches the names as written, case included.
        let Some((_, allowed, expected)) = HEADERS.iter().find(|(n, _, _)| n == name) else {
            return Err(Failure::invalid(
                key,
                Problem::HeaderNotAllowed(name.clone()),
            ));
        };
        let value = match value {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            _ => return Err(Failure::invalid(key, Problem::WrongType("a string"))),
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(Failure::invalid(
                key,
                Problem::HeaderValue { value, expected },
            ));
        }
        if http::HeaderValue::try_from(value.as_str()).is_err() {
            return Err(Failure::invalid(
                key,
                Problem::HeaderValue {
                    value,
                    expected: "a value without control characters",
                },
            ));
        }
        // An empty value leaves the header unset.
        if !value.is_empty() {
            out.push((name.clone(), value));
        }
    }
    Ok(out)
}

fn users(m: &Map<String, Value>) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for (user, hash) in m {
        let key = format!("basic_auth_users.{user}");
        let hash = match hash {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            _ => return Err(Failure::invalid(key, Problem::WrongType("a bcrypt hash"))),
        };
        let cost_ok = hash
            .parse::<bcrypt::HashParts>()
            .is_ok_and(|p| (4..=31).contains(&p.get_cost()));
        if !cost_ok {
            return Err(Failure::invalid(
                key,
                Problem::BadScalar {
                    value: "(hidden)".into(),
                    expected: "bcrypt hash (generate one with htpasswd -nBC 10 \"\")",
                },
            ));
        }
        out.insert(user.clone(), hash);
    }
    Ok(out)
}

fn tls(m: &Map<String, Value>, base: &Path) -> Result<Option<TlsSettings>, Failure> {
    const P: &str = "tls_server_config.";
    let t = Keys::new(
        m,
        P,
        &[
            "cert",
            "key",
            "client_ca",
            "cert_file",
            "key_file",
            "client_auth_type",
            "client_ca_file",
            "client_allowed_sans",
            "min_version",
            "max_version",
            "cipher_suites",
            "prefer_server_cipher_suites",
            "curve_preferences",
        ],
    )?;
    // Values are checked whether TLS ends up on or not, as Go's YAML reader does; the
    // policy name only once TLS is on, as Go does.
    let version = |k: &str, default: TlsVersion| -> Result<TlsVersion, Failure> {
        Ok(match t.string(k)? {
            None => default,
            Some("TLS10") => TlsVersion::V10,
            Some("TLS11") => TlsVersion::V11,
            Some("TLS12") => TlsVersion::V12,
            Some("TLS13") => TlsVersion::V13,
            Some(other) => {
                return Err(Failure::invalid(
                    t.key(k),
                    Problem::UnknownValue {
                        value: other.into(),
                        expected: "TLS10, TLS11, TLS12 or TLS13",
                    },
                ))
            }
        })
    };
    let min_version = version("min_version", TlsVersion::V12)?;
    let max_version = version("max_version", TlsVersion::V13)?;
    let names = |k: &str,
                 known: &mut dyn Iterator<Item = &'static str>,
                 expected: &'static str|
     -> Result<Vec<String>, Failure> {
        let known: Vec<&str> = known.collect();
        let mut out = Vec::new();
        for (i, name) in t.list(k)?.unwrap_or_default().into_iter().enumerate() {
            if !known.contains(&name) {
                return Err(Failure::invalid(
                    format!("{}[{i}]", t.key(k)),
                    Problem::UnknownValue {
                        value: name.into(),
                        expected,
                    },
                ));
            }
            out.push(name.to_string());
        }
        Ok(out)
    };
    let cipher_suites = names(
        "cipher_suites",
        &mut CIPHER_SUITES.iter().map(|(n, _)| *n),
        "a cipher suite name of Go's tls.CipherSuites()",
    )?;
    let curves = names(
        "curve_preferences",
        &mut CURVES.iter().copied(),
        "CurveP256, CurveP384, CurveP521, X25519 or X25519MLKEM768",
    )?;
    let prefer_server_cipher_suites = t.bool("prefer_server_cipher_suites")?.unwrap_or(true);
    let allowed_sans = t
        .list("client_allowed_sans")?
        .map(|l| l.into_iter().map(str::to_string).collect::<Vec<_>>());

    let file = |k: &str| -> Result<Option<Pem>, Failure> {
        Ok(t.string(k)?.map(|p| Pem::File(resolve(base, Path::new(p)))))
    };
    let inline = |k: &str| -> Result<Option<Pem>, Failure> {
        Ok(t.string(k)?.map(|s| Pem::Inline(s.to_string())))
    };
    // A file name wins over inline text, as in the toolkit.
    let cert = file("cert_file")?.or(inline("cert")?);
    let key = file("key_file")?.or(inline("key")?);
    let client_ca = file("client_ca_file")?.or(inline("client_ca")?);
    let enabled = cert.is_some()
        || key.is_some()
        || client_ca.is_some()
        || t.string("client_auth_type")?.is_some();
    if !enabled {
        // No certificate, key, client CA or policy: plain HTTP, as in the toolkit.
        return Ok(None);
    }
    let cert = cert.ok_or_else(|| {
        Failure::invalid(t.key("cert_file"), Problem::Missing("cert or cert_file"))
    })?;
    let key = key
        .ok_or_else(|| Failure::invalid(t.key("key_file"), Problem::Missing("key or key_file")))?;
    let client_auth = match t.string("client_auth_type")? {
        None | Some("NoClientCert") => ClientAuth::None,
        Some("RequestClientCert") => ClientAuth::Request,
        Some("RequireAnyClientCert" | "RequireClientCert") => ClientAuth::RequireAny,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerify,
        Some(other) => {
            return Err(Failure::invalid(
                t.key("client_auth_type"),
                Problem::UnknownValue {
                    value: other.into(),
                    expected: "NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                },
            ))
        }
    };
    if client_ca.is_some() && client_auth == ClientAuth::None {
        let k = if t.string("client_ca_file")?.is_some() {
            "client_ca_file"
        } else {
            "client_ca"
        };
        return Err(Failure::invalid(t.key(k), Problem::CaWithoutPolicy));
    }
    if allowed_sans.is_some()
        && !matches!(
            client_auth,
            ClientAuth::RequireAny | ClientAuth::RequireAndVerify
        )
    {
        return Err(Failure::invalid(
            t.key("client_allowed_sans"),
            Problem::SansWithoutRequiredCert(client_auth.name().into()),
        ));
    }
    if max_version < TlsVersion::V12 {
        return Err(Failure::invalid(
            t.key("max_version"),
            Problem::VersionTooOld(max_version.name().into()),
        ));
    }
    if min_version > max_version {
        return Err(Failure::invalid(
            t.key("min_version"),
            Problem::VersionRange {
                min: min_version.name().into(),
                max: max_version.name().into(),
            },
        ));
    }
    Ok(Some(TlsSettings {
        cert,
        key,
        client_ca,
        client_auth,
        allowed_sans,
        min_version,
        max_version,
        cipher_suites,
        prefer_server_cipher_suites,
        curves,
    }))
}

/// Resolves a path in the web config relative to the file, as the exporter-toolkit does.
pub(super) fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Go's `time.ParseDuration` (without a sign), or a bare integer of nanoseconds.
fn parse_go_duration(s: &str) -> Option<Duration> {
    if let Ok(ns) = s.parse::<u64>() {
        return Some(Duration::from_nanos(ns));
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&e| e > 0)?;
        let number: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, String> {
        WebConfig::parse(text, Path::new("/etc/web"))
            .map_err(|e| e.in_file(Path::new("web.yml")).to_string())
    }

    #[test]
    fn reads_go_durations() {
        for (s, ms) in [
            ("0", 0),
            ("1s", 1000),
            ("250ms", 250),
            ("1m30s", 90_000),
            ("1.5h", 5_400_000),
            ("1000000", 1),
        ] {
            assert_eq!(parse_go_duration(s), Some(Duration::from_millis(ms)), "{s}");
        }
        for s in ["", "s", "1x", "-1s", "1 s", "1.2.3s"] {
            assert_eq!(parse_go_duration(s), None, "{s}");
        }
    }

    #[test]
    fn defaults_and_plain_http() {
        let c = parse("").unwrap();
        assert!(
            c.tls.is_none()
                && c.http2
                && c.headers.is_empty()
                && c.users.is_empty()
                && c.rate_limit.is_none()
        );
        // Settings without a certificate, key, CA or policy leave TLS off, as in Go.
        let c = parse("tls_server_config:\n  min_version: TLS13\n").unwrap();
        assert!(c.tls.is_none());
        let c = parse("rate_limit: {interval: 0, burst: 0}\n").unwrap();
        assert!(c.rate_limit.is_none());
        let c = parse("rate_limit: {interval: 1s, burst: 3}\n").unwrap();
        assert_eq!(
            c.rate_limit,
            Some(RateLimit {
                interval: Duration::from_secs(1),
                burst: 3
            })
        );
    }

    #[test]
    fn refuses_with_the_key_named() {
        for (yaml, wanted) in [
            ("nope: 1\n", "web.yml: nope: unknown field"),
            ("tls_server_config:\n  cert_file: a\n", "tls_server_config.key_file: missing one of key or key_file"),
            ("tls_server_config:\n  key: a\n", "tls_server_config.cert_file: missing one of cert or cert_file"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n", "tls_server_config.client_ca_file: client ca set without a client auth policy"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n", "tls_server_config.client_auth_type: unknown value \"Maybe\""),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: VerifyClientCertIfGiven\n  client_allowed_sans: [x]\n", "tls_server_config.client_allowed_sans: requires client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert, not VerifyClientCertIfGiven"),
            ("tls_server_config:\n  cipher_suites: [TLS_FAKE]\n", "tls_server_config.cipher_suites[0]: unknown value \"TLS_FAKE\""),
            ("tls_server_config:\n  curve_preferences: [CurveP256, P-1]\n", "tls_server_config.curve_preferences[1]: unknown value \"P-1\""),
            ("tls_server_config:\n  min_version: TLS111\n", "tls_server_config.min_version: unknown value \"TLS111\""),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  max_version: TLS11\n", "tls_server_config.max_version: TLS11 is below TLS12"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n", "min_version TLS13 is above max_version TLS12"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n", "tls_server_config.cipher_suites: cipher_suites lacks TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "http_server_config.headers.X-Frame-Options: invalid value \"allow\" (expected deny or sameorigin)"),
            ("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n", "invalid value \"sniff\" (expected nosniff)"),
            ("http_server_config:\n  headers:\n    Authorization: x\n", "header \"Authorization\" cannot be configured"),
            ("http_server_config:\n  http2: maybe\n", "http_server_config.http2: invalid boolean \"maybe\""),
            ("basic_auth_users:\n  alice: plain\n", "basic_auth_users.alice: invalid bcrypt hash"),
            ("rate_limit:\n  interval: soon\n", "rate_limit.interval: invalid duration \"soon\""),
            ("rate_limit:\n  burst: 1.5\n", "rate_limit.burst: invalid integer \"1.5\""),
            ("- a\n", "must be a mapping"),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.contains(wanted), "{yaml:?}: {e}");
        }
        // A bcrypt hash never shows up in a message.
        let e = parse("basic_auth_users:\n  alice: $2y$99$abc\n").unwrap_err();
        assert!(!e.contains("$2y$"), "{e}");
    }

    #[test]
    fn tls_settings_follow_the_toolkit() {
        let c = parse("tls_server_config:\n  cert_file: s.crt\n  key: inline\n  client_auth_type: RequireClientCert\n  client_ca: ca\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  prefer_server_cipher_suites: false\n  curve_preferences: [CurveP521]\n  min_version: TLS10\nhttp_server_config:\n  http2: false\n  headers:\n    X-XSS-Protection: \"\"\n").unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.cert, Pem::File(PathBuf::from("/etc/web/s.crt")));
        assert_eq!(t.key, Pem::Inline("inline".into()));
        assert_eq!(t.client_ca, Some(Pem::Inline("ca".into())));
        assert_eq!(t.client_auth, ClientAuth::RequireAny);
        assert_eq!(t.min_version, TlsVersion::V10);
        assert!(!t.prefer_server_cipher_suites && !c.http2);
        assert_eq!(t.curves, ["CurveP521"]);
        assert!(
            c.headers.is_empty(),
            "an empty header value leaves it unset"
        );
    }
}
