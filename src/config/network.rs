//! An account's network settings: its proxy (from the file, or from `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` as curl and the official Python SDK read them)
//! and the certificates it trusts (`tls:`), resolved into [`Network`].

use std::path::Path;

use tokio_rustls::rustls;
use url::Url;

use super::auth::secret;
use super::file::AccountSection;
use super::Env;
use crate::model::{Network, Proxy, ProxySettings, TlsSettings};
use crate::secret::Secret;

/// The proxy variables of the environment, read once for every account that has no
/// `proxy_url`.
#[derive(Debug, Default)]
pub(super) struct EnvProxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    no_proxy: Option<String>,
}

/// The first non-empty variable of `names`, with its name.
fn first_set<'a>(env: &'a Env, names: &[&'static str]) -> Option<(&'static str, &'a str)> {
    names.iter().find_map(|&name| {
        env.get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(|v| (name, v))
    })
}

impl EnvProxies {
    /// Reads the variables: upper case before lower case, the scheme's own before
    /// `ALL_PROXY`, as the Go SDK's and curl's readers order them.
    pub(super) fn read(env: &Env, errors: &mut Vec<String>) -> EnvProxies {
        let mut proxy = |names: &[&'static str]| {
            let (name, value) = first_set(env, names)?;
            parse_proxy(name, value, name, errors)
        };
        let http = proxy(&["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]);
        let https = proxy(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]);
        let no_proxy = first_set(env, &["NO_PROXY", "no_proxy"]).map(|(_, v)| v.to_string());
        EnvProxies {
            http,
            https,
            no_proxy,
        }
    }
}

/// The network settings of the account at `at`; `None` with the problems pushed to `errors`.
pub(super) fn validate_network(
    at: &str,
    raw: &AccountSection,
    env: &Env,
    env_proxies: &EnvProxies,
    errors: &mut Vec<String>,
) -> Option<Network> {
    let before = errors.len();
    let proxy = account_proxy(at, raw, env, errors);
    let proxy = match proxy {
        Some(p) => ProxySettings {
            http: Some(p.clone()),
            https: Some(p),
            no_proxy: raw
                .no_proxy
                .clone()
                .or_else(|| env_proxies.no_proxy.clone()),
        },
        None => ProxySettings {
            http: env_proxies.http.clone(),
            https: env_proxies.https.clone(),
            no_proxy: raw
                .no_proxy
                .clone()
                .or_else(|| env_proxies.no_proxy.clone()),
        },
    };
    let tls = match &raw.tls {
        None => TlsSettings::default(),
        Some(t) => {
            let mut tls = TlsSettings {
                insecure_skip_verify: t.insecure_skip_verify,
                ..TlsSettings::default()
            };
            if let Some(path) = &t.ca_file {
                if t.insecure_skip_verify {
                    errors.push(format!(
                        "{at}.tls: set only one of ca_file, insecure_skip_verify (with insecure_skip_verify no certificate is checked)"
                    ));
                }
                tls.ca_certs = read_ca_file(&format!("{at}.tls.ca_file"), path, errors);
                tls.ca_file = Some(path.clone());
            }
            tls
        }
    };
    (errors.len() == before).then_some(Network { proxy, tls })
}

/// The account's own proxy (`proxy_url`, `proxy_url_env` or `proxy_url_file`, with the
/// password from `proxy_password_env` or `proxy_password_file`), if it has one.
fn account_proxy(
    at: &str,
    raw: &AccountSection,
    env: &Env,
    errors: &mut Vec<String>,
) -> Option<Proxy> {
    let given = [
        raw.proxy_url.is_some(),
        raw.proxy_url_env.is_some(),
        raw.proxy_url_file.is_some(),
    ]
    .into_iter()
    .filter(|&g| g)
    .count();
    let password_given = raw.proxy_password_env.is_some() || raw.proxy_password_file.is_some();
    if given == 0 {
        if password_given {
            errors.push(format!(
                "{at}: proxy_password_env or proxy_password_file needs a proxy_url"
            ));
        }
        return None;
    }
    if given > 1 {
        errors.push(format!(
            "{at}: set only one of proxy_url, proxy_url_env, proxy_url_file"
        ));
        return None;
    }
    let (key, text, inline) = if let Some(url) = &raw.proxy_url {
        ("proxy_url", Secret::new(url.clone()), true)
    } else {
        let value = secret(
            at,
            "proxy_url",
            raw.proxy_url_env.as_ref(),
            raw.proxy_url_file.as_ref(),
            env,
            errors,
        )?;
        let key = if raw.proxy_url_env.is_some() {
            "proxy_url_env"
        } else {
            "proxy_url_file"
        };
        (key, value, false)
    };
    let key_path = format!("{at}.{key}");
    let mut proxy = parse_proxy(&key_path, text.expose(), "proxy_url", errors)?;
    let mut url = Url::parse(proxy.url.expose()).ok()?;
    if inline && url.password().is_some() {
        errors.push(format!(
            "{key_path}: holds a password, which the configuration file must not; give it with proxy_password_env or proxy_password_file, or the whole URL with proxy_url_env or proxy_url_file"
        ));
        return None;
    }
    if password_given {
        if url.username().is_empty() {
            errors.push(format!(
                "{key_path}: a proxy password needs a user name in the URL (http://user@host:port)"
            ));
            return None;
        }
        if url.password().is_some() {
            errors.push(format!(
                "{key_path}: the URL already holds a password; remove proxy_password_env or proxy_password_file"
            ));
            return None;
        }
        let password = secret(
            at,
            "proxy_password",
            raw.proxy_password_env.as_ref(),
            raw.proxy_password_file.as_ref(),
            env,
            errors,
        )?;
        if url.set_password(Some(password.expose())).is_err() {
            errors.push(format!(
                "{key_path}: the proxy password cannot be added to this URL"
            ));
            return None;
        }
        proxy.url = Secret::new(url.as_str());
    }
    Some(proxy)
}

/// Parses a proxy URL given by `key` (a key path or a variable name): `http://`, a host and
/// a port, nothing else. `host:port` alone means `http://host:port`, as curl reads it. The
/// value is never repeated in an error, since it may hold a password.
fn parse_proxy(key: &str, value: &str, source: &str, errors: &mut Vec<String>) -> Option<Proxy> {
    let value = value.trim();
    let text = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let url = match Url::parse(&text) {
        Ok(url) => url,
        Err(e) => {
            errors.push(format!(
                "{key}: not a proxy URL ({e}; expected http://[user:password@]host:port)"
            ));
            return None;
        }
    };
    let mut problems = Vec::new();
    if url.scheme() != "http" {
        problems.push(format!(
            "scheme {:?} is not supported (only http:// proxies, which reach https:// endpoints with CONNECT)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        problems.push("it has no host".to_string());
    }
    if url.port().is_none() {
        problems.push("it has no port (write http://host:3128)".to_string());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        problems.push("it has a path, query or fragment".to_string());
    }
    if !problems.is_empty() {
        errors.push(format!(
            "{key}: not a usable proxy URL: {} (expected http://[user:password@]host:port)",
            problems.join("; ")
        ));
        return None;
    }
    Some(Proxy {
        shown: shown(&url),
        url: Secret::new(url.as_str().trim_end_matches('/')),
        source: source.to_string(),
    })
}

/// The URL without its password: `http://user@host:port`.
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    shown.as_str().trim_end_matches('/').to_string()
}

/// The DER certificates of a PEM file, each checked to be one rustls can trust.
fn read_ca_file(key: &str, path: &Path, errors: &mut Vec<String>) -> Vec<Vec<u8>> {
    let shown = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            errors.push(format!("{key}: cannot read {shown:?}: {e}"));
            return Vec::new();
        }
    };
    let mut certs = Vec::new();
    for (i, item) in rustls_pemfile::certs(&mut bytes.as_slice()).enumerate() {
        match item {
            Ok(der) => {
                let mut store = rustls::RootCertStore::empty();
                if let Err(e) = store.add(der.clone()) {
                    errors.push(format!(
                        "{key}: certificate {} of {shown:?} cannot be used as a CA: {e}",
                        i + 1
                    ));
                    return Vec::new();
                }
                certs.push(der.to_vec());
            }
            Err(e) => {
                errors.push(format!("{key}: {shown:?} is not valid PEM: {e}"));
                return Vec::new();
            }
        }
    }
    if certs.is_empty() {
        errors.push(format!(
            "{key}: {shown:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    certs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn reads_proxy_variables_upper_case_first_then_all_proxy() {
        let mut errors = Vec::new();
        let p = EnvProxies::read(
            &env(&[
                ("https_proxy", "http://lower:3128"),
                ("HTTPS_PROXY", "http://upper:3128"),
                ("ALL_PROXY", "all:8080"),
                ("no_proxy", ".internal,10.0.0.0/8"),
            ]),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            p.https.unwrap().to_string(),
            "http://upper:3128 (from HTTPS_PROXY)"
        );
        assert_eq!(
            p.http.unwrap().to_string(),
            "http://all:8080 (from ALL_PROXY)"
        );
        assert_eq!(p.no_proxy.as_deref(), Some(".internal,10.0.0.0/8"));
    }

    #[test]
    fn refuses_unusable_proxy_urls_without_repeating_them() {
        let mut errors = Vec::new();
        EnvProxies::read(
            &env(&[
                ("HTTPS_PROXY", "socks5://u:hunter2@proxy:1080"),
                ("HTTP_PROXY", "http://u:hunter2@proxy"),
            ]),
            &mut errors,
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("HTTP_PROXY: not a usable proxy URL: it has no port"));
        assert!(errors[1].starts_with("HTTPS_PROXY: not a usable proxy URL: scheme \"socks5\""));
        assert!(!errors.concat().contains("hunter2"), "{errors:?}");
    }

    #[test]
    fn shows_a_proxy_without_its_password() {
        let mut errors = Vec::new();
        let p = parse_proxy(
            "k",
            "http://user:pa%40ss@proxy:3128/",
            "HTTPS_PROXY",
            &mut errors,
        )
        .unwrap();
        assert_eq!(p.shown, "http://user@proxy:3128");
        assert_eq!(p.url.expose(), "http://user:pa%40ss@proxy:3128");
        assert_eq!(
            format!("{p:?}"),
            "http://user@proxy:3128 (from HTTPS_PROXY)"
        );
    }
}
