//! Why a call failed, in the kinds the scheduler decides on.

use std::time::Duration;

use crate::model::Reason;

/// Why a call failed. Each kind maps to one `reason` label and one scheduling decision.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// No whole answer within the timeout.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// No answer: refused, reset, DNS, TLS; the message holds the cause chain.
    #[error("connection failed: {0}")]
    Connect(String),
    /// 401 or `APIGW.0301`: the signature, token or password was refused.
    #[error("authentication refused: HTTP {status} {code}: {message} (request_id {request_id})")]
    Auth {
        /// The HTTP status.
        status: u16,
        /// `error_code` of the body.
        code: String,
        /// `error_msg` of the body.
        message: String,
        /// For the operator's support ticket.
        request_id: String,
    },
    /// 429 or `APIGW.0308`: over the rate limit.
    #[error("throttled: HTTP {status} {code}: {message} (request_id {request_id})")]
    Throttled {
        /// The HTTP status.
        status: u16,
        /// `error_code` of the body.
        code: String,
        /// `error_msg` of the body.
        message: String,
        /// For the operator's support ticket.
        request_id: String,
        /// How long the API asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// Any other error status.
    #[error("HTTP {status} {code}: {message} (request_id {request_id})")]
    Http {
        /// The HTTP status.
        status: u16,
        /// `error_code` of the body.
        code: String,
        /// `error_msg` of the body.
        message: String,
        /// For the operator's support ticket.
        request_id: String,
    },
    /// A 200 whose body is not the expected JSON (or is too large).
    #[error("bad answer: {0}")]
    Decode(String),
    /// The TLS handshake failed: which host, and why (unknown issuer, expired, wrong name).
    #[error("TLS handshake with {host} failed: {problem}")]
    Tls {
        /// `host:port` of the server.
        host: String,
        /// What was wrong, in words.
        problem: String,
    },
    /// Temporary credentials could not be obtained (the metadata service failed or has no
    /// agency for this server). No key was tried, so this never counts towards a
    /// suspension.
    #[error("no credentials: {0}")]
    Credentials(String),
}

impl ApiError {
    /// The `reason` label of `hss_exporter_poll_errors_total`.
    pub fn reason(&self) -> Reason {
        match self {
            ApiError::Timeout(_) => Reason::Timeout,
            ApiError::Connect(_) => Reason::Connect,
            ApiError::Auth { .. } | ApiError::Credentials(_) => Reason::Auth,
            ApiError::Throttled { .. } => Reason::Throttled,
            ApiError::Http { status, .. } if *status >= 500 => Reason::Http5xx,
            ApiError::Http { .. } => Reason::Http4xx,
            ApiError::Decode(_) => Reason::Decode,
            ApiError::Tls { .. } => Reason::Tls,
        }
    }

    /// Worth one more try after a short pause: the server or the network hiccuped.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.reason(),
            Reason::Timeout | Reason::Connect | Reason::Http5xx
        )
    }
}

pub(crate) fn transport_error(e: reqwest::Error) -> ApiError {
    if let Some(problem) = super::transport::tls_problem(&e) {
        let host = e.url().map_or_else(String::new, |u| {
            let host = u.host_str().unwrap_or_default();
            u.port_or_known_default()
                .map_or_else(|| host.to_string(), |p| format!("{host}:{p}"))
        });
        return ApiError::Tls { host, problem };
    }
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

    #[test]
    fn classifies_error_answers() {
        let body = br#"{"error_code":"APIGW.0308","error_msg":"policy user over ratelimit,limit:5,time:1 minute","request_id":"r1"}"#;
        let e = ErrorBody::parse(body, String::new()).into_error(429, "HSS");
        assert_eq!(e.reason().as_str(), "throttled");
        assert!(e.to_string().contains("request_id r1"));
        let e = ErrorBody::parse(br#"{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information"}"#, "hdr".into()).into_error(401, "HSS");
        assert_eq!(e.reason().as_str(), "auth");
        assert!(e.to_string().contains("request_id hdr"));
        let e = ErrorBody::parse(b"<html>bad gateway</html>", String::new()).into_error(502, "HSS");
        assert_eq!(e.reason().as_str(), "http_5xx");
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
            crate::model::Reason::Http4xx
        );
    }
}
