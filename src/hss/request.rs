//! The request as the official SDK builds it: URL, headers, and for AK/SK the signature.

use std::time::SystemTime;

use http::header::{HeaderName, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use url::Url;

use super::auth::RequestAuth;
use super::signer;
use crate::model::Target;

const X_PROJECT_ID: HeaderName = HeaderName::from_static("x-project-id");
const X_AUTH_TOKEN: HeaderName = HeaderName::from_static("x-auth-token");
const X_SDK_DATE: HeaderName = HeaderName::from_static("x-sdk-date");
const X_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-security-token");

/// A request ready to send: the URL and every header, `Authorization` included.
#[derive(Debug)]
pub struct SignedRequest {
    /// The URL as sent: its query is the canonical query. Built from the parsed endpoint,
    /// not formatted and parsed again: every poll builds one.
    pub url: Url,
    /// Every header in the order the SDK adds them, `Authorization` last. Names are the
    /// lowercase form HTTP/1 sends; the signature does not depend on their case.
    pub headers: Vec<(HeaderName, String)>,
}

/// Builds the statistics request of `target` as the official SDK would, signing it when
/// `auth` is an AK/SK.
pub fn build_request(
    endpoint: &Url,
    target: &Target,
    auth: &RequestAuth,
    now: SystemTime,
) -> SignedRequest {
    let path = format!(
        "/v5/{}/image/registries/statistics",
        signer::encode(&target.project_id)
    );
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(eps) = &target.enterprise_project_id {
        pairs.push(("enterprise_project_id", eps));
    }
    if let Some(t) = target.registry_type {
        pairs.push(("registry_type", t.as_str()));
    }
    build_get(endpoint, &path, &pairs, Some(&target.project_id), auth, now)
}

/// A GET of `path` (below the endpoint's own path) with the query `pairs`, with the
/// headers the SDK sends (`X-Project-Id` when `project_id` is given), signed when `auth`
/// is an AK/SK.
pub fn build_get(
    endpoint: &Url,
    path: &str,
    pairs: &[(&str, &str)],
    project_id: Option<&str>,
    auth: &RequestAuth,
    now: SystemTime,
) -> SignedRequest {
    let base_path = endpoint.path().trim_end_matches('/');
    let path = format!("{base_path}{path}");
    let query = signer::canonical_query(pairs);
    let host = match endpoint.port() {
        Some(port) => format!("{}:{port}", endpoint.host_str().unwrap_or_default()),
        None => endpoint.host_str().unwrap_or_default().to_string(),
    };
    // Scheme, host and port of the endpoint; no user information or fragment.
    let mut url = endpoint.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    url.set_path(&path);
    url.set_query((!query.is_empty()).then_some(query.as_str()));
    let mut headers: Vec<(HeaderName, String)> = Vec::with_capacity(7);
    headers.push((CONTENT_TYPE, "application/json".into()));
    headers.push((HOST, host));
    headers.push((USER_AGENT, super::client::USER_AGENT.into()));
    if let Some(project_id) = project_id {
        headers.push((X_PROJECT_ID, project_id.to_string()));
    }
    match auth {
        RequestAuth::Token(token) => {
            headers.push((X_AUTH_TOKEN, token.expose().to_string()));
        }
        RequestAuth::Sign {
            access_key,
            secret_key,
            security_token,
        } => {
            let date = signer::sdk_date(now);
            headers.push((X_SDK_DATE, date.clone()));
            if let Some(t) = security_token {
                headers.push((X_SECURITY_TOKEN, t.expose().to_string()));
            }
            let refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let sig = signer::sign("GET", &path, &query, &refs, b"", &date, secret_key.expose());
            headers.push((AUTHORIZATION, sig.authorization(access_key.expose())));
        }
    }
    SignedRequest { url, headers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RegistryType;
    use crate::secret::Secret;

    fn target(eps: Option<&str>, t: Option<RegistryType>) -> Target {
        Target {
            account: "a".into(),
            region: "cn-north-4".into(),
            project_id: "0123456789abcdef0123456789abcdef".into(),
            enterprise_project_id: eps.map(str::to_string),
            registry_type: t,
        }
    }

    #[test]
    fn builds_the_sdk_request() {
        let endpoint = Url::parse("https://hss.cn-north-4.myhuaweicloud.com").unwrap();
        let auth = RequestAuth::Sign {
            access_key: Secret::new("HSSTESTAK0000000000"),
            secret_key: Secret::new("hss-test-secret-key-0000000000000000000000"),
            security_token: None,
        };
        let now = humantime::parse_rfc3339("2026-11-27T12:00:00Z").unwrap();
        let req = build_request(
            &endpoint,
            &target(Some("0"), Some(RegistryType::Harbor)),
            &auth,
            now,
        );
        assert_eq!(req.url.as_str(), "https://hss.cn-north-4.myhuaweicloud.com/v5/0123456789abcdef0123456789abcdef/image/registries/statistics?enterprise_project_id=0&registry_type=Harbor");
        let get = |n: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("X-Sdk-Date").as_deref(), Some("20261127T120000Z"));
        assert_eq!(
            get("Host").as_deref(),
            Some("hss.cn-north-4.myhuaweicloud.com")
        );
        let authz = get("Authorization").unwrap();
        assert!(authz.starts_with("SDK-HMAC-SHA256 Access=HSSTESTAK0000000000, SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, Signature="), "{authz}");

        let local = Url::parse("http://127.0.0.1:8080/prefix/").unwrap();
        let token = RequestAuth::Token(Secret::new("tok"));
        let req = build_request(&local, &target(None, None), &token, now);
        assert_eq!(req.url.as_str(), "http://127.0.0.1:8080/prefix/v5/0123456789abcdef0123456789abcdef/image/registries/statistics");
        assert!(req
            .headers
            .iter()
            .any(|(k, v)| k == "X-Auth-Token" && v == "tok"));
        assert!(!req.headers.iter().any(|(k, _)| k == "Authorization"));

        // What the endpoint carries besides scheme, host, port and path is not sent.
        let odd = Url::parse("https://user:pw@hss.example.com:8443/base#frag").unwrap();
        let req = build_request(&odd, &target(None, Some(RegistryType::Jfrog)), &token, now);
        assert_eq!(req.url.as_str(), "https://hss.example.com:8443/base/v5/0123456789abcdef0123456789abcdef/image/registries/statistics?registry_type=Jfrog");
        let host = req.headers.iter().find(|(k, _)| k == "Host").unwrap();
        assert_eq!(host.1, "hss.example.com:8443");
    }
}
