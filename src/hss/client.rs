//! One HTTP call of `GET /v5/{project_id}/image/registries/statistics`: sending the built
//! request, reading a bounded answer and decoding it strictly.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use url::Url;

use super::auth::{Authenticator, RequestAuth};
use super::error::{request_id, transport_error, ErrorBody};
use super::request::{build_request, SignedRequest};
use super::transport::HttpClients;
use super::ApiError;
use crate::model::{Credentials, Network, Statistics, Target};

/// Answers larger than this are refused; a real answer is some 40 bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest `Retry-After` honoured; a larger value is treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Sent with every request, as the SDK sends its own.
pub const USER_AGENT: &str = concat!("hss-exporter/", env!("CARGO_PKG_VERSION"));

/// What one request did, for the request counters and the histogram.
#[derive(Debug)]
pub struct Exchange<T = Statistics> {
    /// `code` label: the HTTP status, or `timeout` / `connect` when no answer came.
    pub code: String,
    /// For the duration histogram.
    pub elapsed: Duration,
    /// The decoded answer, or why there is none.
    pub result: Result<T, ApiError>,
}

/// The HTTP client every account shares: its connection pool is per host anyway, and
/// building one loads the TLS roots, which 10,000 targets' worth of accounts need only once.
/// It goes direct, whatever the proxy variables of the process say, and trusts the system's
/// roots; accounts with their own network settings get theirs from [`HttpClients`].
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    super::transport::build(&Network::default())
}

/// The API client of one account; clones share the connection pool and the token cache.
#[derive(Clone)]
pub struct HssClient {
    http: reqwest::Client,
    endpoint: Url,
    timeout: Duration,
    auth: Arc<Authenticator>,
    /// Why no client could be built for the account's network settings, if so: every call
    /// fails with it instead of going out some other way.
    broken: Option<String>,
}

impl HssClient {
    /// The client of one account's `endpoint` and `credentials`, on a shared HTTP client
    /// (see [`http_client`]); `timeout` bounds each call.
    pub fn new(
        endpoint: &Url,
        credentials: &Credentials,
        timeout: Duration,
        http: &reqwest::Client,
    ) -> Self {
        HssClient {
            auth: Arc::new(Authenticator::new(credentials, http.clone(), timeout)),
            http: http.clone(),
            endpoint: endpoint.clone(),
            timeout,
            broken: None,
        }
    }

    /// The client of one account with its own network settings: its calls to HSS and IAM go
    /// through the client of `network` from `clients`, and calls to a metadata service
    /// through a direct one (the service is link-local; a proxy would reach another
    /// server's).
    pub fn for_account(
        endpoint: &Url,
        credentials: &Credentials,
        network: &Network,
        timeout: Duration,
        clients: &HttpClients,
    ) -> Self {
        match (clients.client(network), clients.metadata_client()) {
            (Ok(http), Ok(metadata_http)) => HssClient {
                auth: Arc::new(Authenticator::with_metadata_client(
                    credentials,
                    http.clone(),
                    metadata_http,
                    timeout,
                )),
                http,
                endpoint: endpoint.clone(),
                timeout,
                broken: None,
            },
            (Err(e), _) | (_, Err(e)) => {
                let why = format!("cannot build the HTTP client for this account: {e}");
                tracing::error!(%endpoint, "{why}");
                let unused = reqwest::Client::new();
                HssClient {
                    auth: Arc::new(Authenticator::new(credentials, unused.clone(), timeout)),
                    http: unused,
                    endpoint: endpoint.clone(),
                    timeout,
                    broken: Some(why),
                }
            }
        }
    }

    /// Why this client cannot make any call, if so; checked before a poll asks for
    /// credentials.
    pub fn broken(&self) -> Option<ApiError> {
        self.broken.clone().map(ApiError::Connect)
    }

    /// Hands out what each request carries.
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// Sends one request for `target` with `auth` and decodes the answer.
    pub async fn fetch(&self, target: &Target, auth: &RequestAuth) -> Exchange {
        let request = build_request(&self.endpoint, target, auth, SystemTime::now());
        self.send(request, MAX_BODY_BYTES, decode_statistics).await
    }

    /// The base URL requests go to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Sends `request`, reads at most `max_body` bytes of the answer within the timeout, and
    /// decodes a 200 with `decode`.
    pub(crate) async fn send<T>(
        &self,
        request: SignedRequest,
        max_body: usize,
        decode: impl FnOnce(&[u8]) -> Result<T, ApiError>,
    ) -> Exchange<T> {
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(self.timeout, self.exchange(request, max_body, decode)).await;
        let elapsed = started.elapsed();
        let (code, result) = match outcome {
            Err(_) => ("timeout".to_string(), Err(ApiError::Timeout(self.timeout))),
            Ok(Err(e)) => {
                let code = match &e {
                    ApiError::Timeout(_) => "timeout".to_string(),
                    ApiError::Tls { .. } => "tls".to_string(),
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
    async fn exchange<T>(
        &self,
        request: SignedRequest,
        max_body: usize,
        decode: impl FnOnce(&[u8]) -> Result<T, ApiError>,
    ) -> Result<(u16, Result<T, ApiError>), ApiError> {
        // Built as it is sent, without the request builder's parsing of URL and names.
        let mut headers = http::HeaderMap::with_capacity(request.headers.len());
        for (name, value) in request.headers {
            let Ok(value) = http::HeaderValue::try_from(value) else {
                return Err(ApiError::Connect(format!(
                    "the {name} header holds characters HTTP does not allow"
                )));
            };
            headers.append(name, value);
        }
        let mut outgoing = reqwest::Request::new(reqwest::Method::GET, request.url);
        *outgoing.headers_mut() = headers;
        let response = self.http.execute(outgoing).await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let request_id = request_id(response.headers());
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = read_capped(response, max_body).await;
        let result = match (status, body) {
            (_, Err(e @ ApiError::Decode(_))) => Err(e),
            (_, Err(e)) => return Err(e),
            (200, Ok(bytes)) => decode(&bytes),
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

/// Reads at most `max` bytes; a longer body is a decode error, read no further.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Bytes, ApiError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if buf.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn too_large(max: usize) -> ApiError {
    ApiError::Decode(format!("response body larger than {max} bytes"))
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(err.reason().as_str(), "decode");
            assert!(err.to_string().contains(wanted), "{err} lacks {wanted}");
        }
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
