//! One HTTP call of `GET /v5/{project_id}/image/registries/statistics`: building, signing,
//! sending, and decoding its answer strictly. Retries and pacing are the scheduler's.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use url::Url;

use super::auth::{Authenticator, RequestAuth};
use super::{signer, ApiError, Statistics};
use crate::config::{Account, Target};

/// Answers larger than this are refused; a real answer is some 40 bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest `Retry-After` honoured; a larger value is treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
pub const USER_AGENT: &str = concat!("hss-exporter/", env!("CARGO_PKG_VERSION"));

/// What one request did, for the request counters and the histogram.
#[derive(Debug)]
pub struct Exchange {
    /// `code` label: the HTTP status, or `timeout` / `connect` when no answer came.
    pub code: String,
    pub elapsed: Duration,
    pub result: Result<Statistics, ApiError>,
}

/// The HTTP client every account shares: its connection pool is per host anyway, and
/// building one loads the TLS roots, which 10,000 targets' worth of accounts need only once.
pub fn http_client() -> Result<reqwest::Client, ApiError> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ApiError::Connect(format!("cannot build the HTTP client: {e}")))
}

/// The API client of one account.
pub struct HssClient {
    http: reqwest::Client,
    endpoint: Url,
    timeout: Duration,
    auth: Authenticator,
}

impl HssClient {
    /// The client of one account, on a shared HTTP client (see [`http_client`]).
    pub fn new(account: &Account, timeout: Duration, http: &reqwest::Client) -> Self {
        HssClient {
            auth: Authenticator::new(&account.credentials, http.clone(), timeout),
            http: http.clone(),
            endpoint: account.endpoint.clone(),
            timeout,
        }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// Sends one request for `target` with `auth` and decodes the answer.
    pub async fn fetch(&self, target: &Target, auth: &RequestAuth) -> Exchange {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.exchange(target, auth)).await;
        let elapsed = started.elapsed();
        let (code, result) = match outcome {
            Err(_) => ("timeout".to_string(), Err(ApiError::Timeout(self.timeout))),
            Ok(Err(e)) => {
                let code = match &e {
                    ApiError::Timeout(_) => "timeout".to_string(),
                    _ => "connect".to_string(),
                };
                (code, Err(e))
            }
            Ok(Ok((status, result))) => (status.to_string(), result),
        };
        Exchange {
            code,
            elapsed,
            result,
        }
    }

    /// The transport part: `Err` only when no HTTP answer arrived (or its body broke off).
    async fn exchange(
        &self,
        target: &Target,
        auth: &RequestAuth,
    ) -> Result<(u16, Result<Statistics, ApiError>), ApiError> {
        let request = build_request(&self.endpoint, target, auth, SystemTime::now());
        let mut builder = self.http.get(&request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let request_id = request_id(response.headers());
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = read_capped(response).await;
        let result = match (status, body) {
            (_, Err(e @ ApiError::Decode(_))) => Err(e),
            (_, Err(e)) => return Err(e),
            (200, Ok(bytes)) => decode_statistics(&bytes),
            (_, Ok(bytes)) => {
                let mut err = ErrorBody::parse(&bytes, request_id).into_error(status, "HSS");
                if let ApiError::Throttled { retry_after: r, .. } = &mut err {
                    *r = retry_after;
                }
                Err(err)
            }
        };
        Ok((status, result))
    }
}

/// A request ready to send: the URL and every header, `Authorization` included.
#[derive(Debug)]
pub struct SignedRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// Builds the request as the official SDK would, signing it when `auth` is an AK/SK.
pub fn build_request(
    endpoint: &Url,
    target: &Target,
    auth: &RequestAuth,
    now: SystemTime,
) -> SignedRequest {
    let base_path = endpoint.path().trim_end_matches('/');
    let path = format!(
        "{base_path}/v5/{}/image/registries/statistics",
        signer::encode(&target.project_id)
    );
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(eps) = &target.enterprise_project_id {
        pairs.push(("enterprise_project_id", eps));
    }
    if let Some(t) = target.registry_type {
        pairs.push(("registry_type", t.as_str()));
    }
    let query = signer::canonical_query(&pairs);
    let host = match endpoint.port() {
        Some(port) => format!("{}:{port}", endpoint.host_str().unwrap_or_default()),
        None => endpoint.host_str().unwrap_or_default().to_string(),
    };
    let mut url = format!("{}://{host}{path}", endpoint.scheme());
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Type".into(), "application/json".into()),
        ("Host".into(), host),
        ("User-Agent".into(), USER_AGENT.into()),
        ("X-Project-Id".into(), target.project_id.clone()),
    ];
    match auth {
        RequestAuth::Token(token) => {
            headers.push(("X-Auth-Token".into(), token.expose().to_string()));
        }
        RequestAuth::Sign {
            access_key,
            secret_key,
            security_token,
        } => {
            let date = signer::sdk_date(now);
            headers.push(("X-Sdk-Date".into(), date.clone()));
            if let Some(t) = security_token {
                headers.push(("X-Security-Token".into(), t.expose().to_string()));
            }
            let refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let sig = signer::sign("GET", &path, &query, &refs, b"", &date, secret_key.expose());
            headers.push((
                "Authorization".into(),
                sig.authorization(access_key.expose()),
            ));
        }
    }
    SignedRequest { url, headers }
}

/// Strict decoding: both counts present, integers, not negative. Anything else is an error,
/// never a zero.
pub fn decode_statistics(body: &[u8]) -> Result<Statistics, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::Decode(format!("body is not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::Decode("body is not a JSON object".into()))?;
    let count = |field: &str| -> Result<u64, ApiError> {
        match object.get(field) {
            None => Err(ApiError::Decode(format!("field {field} is missing"))),
            Some(v) => v.as_u64().ok_or_else(|| {
                ApiError::Decode(format!("field {field} is {v}, not a non-negative integer"))
            }),
        }
    };
    Ok(Statistics {
        fail_num: count("fail_num")?,
        success_num: count("success_num")?,
    })
}

/// Reads at most [`MAX_BODY_BYTES`]; a longer body is a decode error, read no further.
pub(crate) async fn read_capped(mut response: reqwest::Response) -> Result<Bytes, ApiError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if buf.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn too_large() -> ApiError {
    ApiError::Decode(format!("response body larger than {MAX_BODY_BYTES} bytes"))
}

pub(crate) fn transport_error(e: reqwest::Error) -> ApiError {
    // The source chain says what actually broke (refused, reset, DNS); keep it short.
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    ApiError::Connect(msg)
}

pub(crate) fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get("X-Request-Id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = httpdate_to_system_time(value)?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER),
    )
}

/// `Retry-After` as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate_to_system_time(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[2])? + 1;
    let rfc = format!("{}-{month:02}-{:0>2}T{}Z", parts[3], parts[1], parts[4]);
    humantime::parse_rfc3339(&rfc).ok()
}

/// The error body of the API gateway, HSS and IAM, in their several shapes.
pub(crate) struct ErrorBody {
    code: String,
    message: String,
    request_id: String,
}

impl ErrorBody {
    pub(crate) fn parse(bytes: &[u8], header_request_id: String) -> Self {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let code = text(&v["error_code"])
            .or_else(|| text(&v["error"]["code"]))
            .unwrap_or_default();
        let message = text(&v["error_msg"])
            .or_else(|| text(&v["error"]["message"]))
            .unwrap_or_else(|| {
                // Not our JSON: keep a short, printable excerpt for the operator.
                let s = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
                s.chars().filter(|c| !c.is_control()).collect()
            });
        let request_id = text(&v["request_id"])
            .filter(|s| !s.is_empty())
            .unwrap_or(header_request_id);
        ErrorBody {
            code,
            message,
            request_id,
        }
    }

    pub(crate) fn into_error(self, status: u16, service: &str) -> ApiError {
        let ErrorBody {
            code,
            message,
            request_id,
        } = self;
        let code = if code.is_empty() {
            format!("{service} error")
        } else {
            code
        };
        if status == 429 || code == "APIGW.0308" {
            ApiError::Throttled {
                status,
                code,
                message,
                request_id,
                retry_after: None,
            }
        } else if status == 401 || code == "APIGW.0301" {
            ApiError::Auth {
                status,
                code,
                message,
                request_id,
            }
        } else {
            ApiError::Http {
                status,
                code,
                message,
                request_id,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hss::RegistryType;
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
    fn decodes_only_well_formed_counts() {
        assert_eq!(
            decode_statistics(br#"{"fail_num": 1, "success_num": 2}"#).unwrap(),
            Statistics {
                fail_num: 1,
                success_num: 2
            }
        );
        for (body, wanted) in [
            (&b"<html>oops</html>"[..], "not JSON"),
            (b"[1,2]", "not a JSON object"),
            (br#"{"success_num": 2}"#, "fail_num is missing"),
            (br#"{"fail_num": -1, "success_num": 2}"#, "fail_num is -1"),
            (br#"{"fail_num": 1.5, "success_num": 2}"#, "fail_num is 1.5"),
            (
                br#"{"fail_num": 1, "success_num": "2"}"#,
                r#"success_num is "2""#,
            ),
            (
                br#"{"fail_num": 1, "success_num": null}"#,
                "success_num is null",
            ),
        ] {
            let err = decode_statistics(body).unwrap_err();
            assert_eq!(err.reason(), "decode");
            assert!(err.to_string().contains(wanted), "{err} lacks {wanted}");
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
        assert_eq!(req.url, "https://hss.cn-north-4.myhuaweicloud.com/v5/0123456789abcdef0123456789abcdef/image/registries/statistics?enterprise_project_id=0&registry_type=Harbor");
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
        assert_eq!(req.url, "http://127.0.0.1:8080/prefix/v5/0123456789abcdef0123456789abcdef/image/registries/statistics");
        assert!(req
            .headers
            .iter()
            .any(|(k, v)| k == "X-Auth-Token" && v == "tok"));
        assert!(!req.headers.iter().any(|(k, _)| k == "Authorization"));
    }

    #[test]
    fn classifies_error_answers() {
        let body = br#"{"error_code":"APIGW.0308","error_msg":"policy user over ratelimit,limit:5,time:1 minute","request_id":"r1"}"#;
        let e = ErrorBody::parse(body, String::new()).into_error(429, "HSS");
        assert_eq!(e.reason(), "throttled");
        assert!(e.to_string().contains("request_id r1"));
        let e = ErrorBody::parse(br#"{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information"}"#, "hdr".into()).into_error(401, "HSS");
        assert_eq!(e.reason(), "auth");
        assert!(e.to_string().contains("request_id hdr"));
        let e = ErrorBody::parse(b"<html>bad gateway</html>", String::new()).into_error(502, "HSS");
        assert_eq!(e.reason(), "http_5xx");
        assert!(e.to_string().contains("bad gateway"));
        let e = ErrorBody::parse(
            br#"{"error":{"code":"401","message":"The username or password is wrong."}}"#,
            String::new(),
        )
        .into_error(401, "IAM");
        assert!(e.to_string().contains("password is wrong"));
        assert_eq!(
            ErrorBody::parse(b"{}", String::new())
                .into_error(400, "HSS")
                .reason(),
            "http_4xx"
        );
    }

    #[test]
    fn parses_retry_after() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
