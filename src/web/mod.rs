//! The exporter's endpoints: `/metrics`, the status page, health, readiness and reload. It
//! only reads the metrics store; nothing here waits on the cloud.

mod basic_auth;
pub mod config;
mod rate_limit;
pub mod security;
mod status;
pub mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use security::Security;

use crate::metrics::{Body, Store};
use crate::reload::ReloadHandle;

/// Why `--web.telemetry-path` cannot be `path`, if it cannot.
pub fn check_telemetry_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with /"));
    }
    if ["/", STATUS_JSON, "/-/healthy", "/-/ready", "/-/reload"].contains(&path) {
        return Err(format!("{path:?} is taken by another endpoint"));
    }
    Ok(())
}

/// What the status page reads.
const STATUS_JSON: &str = "/status.json";
/// The metrics path's name inside the router, whatever `--web.telemetry-path` says.
const METRICS: &str = "/metrics";
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers read.
pub struct WebState {
    /// The results of polling; only read here.
    pub store: Arc<Store>,
    /// Set once every budget's first poll has ended; cleared on shutdown.
    pub ready: AtomicBool,
    /// Where `POST /-/reload` sends its request; `None` without `--web.enable-lifecycle`.
    pub reload: Option<ReloadHandle>,
    /// TLS, basic auth, rate limit and extra headers (`--web.config.file`), kept current
    /// with the file on disk; `None`: plain and open.
    pub security: Option<Arc<Security>>,
    /// Where `/metrics` is served (`--web.telemetry-path`).
    pub telemetry_path: String,
}

/// Serves the exporter's endpoints until `cancel` fires.
pub async fn serve(listener: TcpListener, state: Arc<WebState>, cancel: CancellationToken) {
    let tls = state.security.as_ref().and_then(Security::tls_source);
    crate::server::serve(listener, cancel, tls, move |req| {
        let state = state.clone();
        async move { handle(req, &state).await }
    })
    .await;
}

async fn handle(req: Request<Incoming>, state: &WebState) -> Response<Body> {
    // The web config as it is now: a file changed on disk applies from this request on.
    let active = state.security.as_ref().map(|s| s.active());
    if let Some(limiter) = active.as_ref().and_then(|a| a.limiter.as_ref()) {
        if !limiter.allow() {
            return text(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
        }
    }
    let auth = active.as_ref().and_then(|a| a.auth.clone());
    let mut response = route(req, state, auth.as_deref()).await;
    if let Some(active) = &active {
        for (name, value) in &active.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

async fn route(
    req: Request<Incoming>,
    state: &WebState,
    auth: Option<&basic_auth::BasicAuth>,
) -> Response<Body> {
    let path = req.uri().path();
    let path = if path == state.telemetry_path {
        METRICS
    } else if path == METRICS {
        // `/metrics` is not served under another name.
        ""
    } else {
        path
    };
    let allowed: &'static str = match path {
        "/" | METRICS | STATUS_JSON | "/-/healthy" | "/-/ready" => "GET, HEAD",
        "/-/reload" => "POST, PUT",
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if let Some(auth) = auth {
        if !auth.check(req.headers().get(header::AUTHORIZATION)).await {
            let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"hss-exporter\", charset=\"UTF-8\""),
            );
            return r;
        }
    }
    if !allowed.split(", ").any(|m| m == req.method().as_str()) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allowed));
        return r;
    }
    match path {
        METRICS => metrics(&req, &state.store).await,
        "/-/healthy" => text(StatusCode::OK, "OK\n"),
        "/-/ready" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
        "/-/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/-/reload" => reload(state).await,
        STATUS_JSON => respond(
            StatusCode::OK,
            "application/json",
            status::json(&state.store, &state.telemetry_path).into_bytes(),
        ),
        _ => with_type(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Body::from_static(status::PAGE),
        ),
    }
}

async fn reload(state: &WebState) -> Response<Body> {
    let Some(handle) = &state.reload else {
        return text(
            StatusCode::FORBIDDEN,
            "lifecycle API is not enabled (start with --web.enable-lifecycle)\n",
        );
    };
    match handle.reload().await {
        Ok(()) => text(StatusCode::OK, "configuration reloaded\n"),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("reload failed, the running configuration stays:\n{e}\n").into_bytes(),
        ),
    }
}

/// The cached exposition, gzip-encoded when the client asks for it.
async fn metrics(req: &Request<Incoming>, store: &Arc<Store>) -> Response<Body> {
    let gzip = accepts_gzip(req.headers());
    let exposition = store.scrape(gzip).await;
    let body = if gzip {
        exposition.gzip()
    } else {
        exposition.plain()
    };
    let mut r = Response::new(body);
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(TEXT_FORMAT),
    );
    headers.insert(
        header::VARY,
        header::HeaderValue::from_static("Accept-Encoding"),
    );
    if gzip {
        headers.insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
    }
    r
}

/// True when `Accept-Encoding` lists `gzip` (or `*`) with a non-zero quality.
fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q = parts
                .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
        })
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", Body::from_static(body))
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    with_type(status, content_type, Body::from_vec(body))
}

fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(value: &str) -> bool {
        let mut h = http::HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
        accepts_gzip(&h)
    }

    #[test]
    fn reads_accept_encoding() {
        assert!(accepts("gzip"));
        assert!(accepts("deflate, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("identity"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts_gzip(&http::HeaderMap::new()));
    }
}
