//! The HTTP server: `/metrics`, the status page, health, readiness and reload. It only
//! reads the metrics store; nothing here waits on the cloud.

pub mod security;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use security::Security;

use crate::app::ReloadRequest;
use crate::metrics::{Body, Store};

/// A client gets this long to send its request headers, and an idle keep-alive connection
/// this long before it is closed (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted; a scrape's is some hundred bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Connections served at once, and from one client address: a flood from one host cannot
/// take the slots of every scraper.
const MAX_CONNECTIONS: usize = 512;
const MAX_CONNECTIONS_PER_IP: usize = 64;
/// How long shutdown waits for in-flight scrapes to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers read.
pub struct WebState {
    pub store: Arc<Store>,
    /// Set once the configuration is loaded and the first poll round has started.
    pub ready: AtomicBool,
    /// Where `POST /-/reload` sends its request; `None` without `--web.enable-lifecycle`.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    pub security: Option<Arc<Security>>,
}

/// Serves the exporter's endpoints until `cancel` fires.
pub async fn serve(listener: TcpListener, state: Arc<WebState>, cancel: CancellationToken) {
    let tls = state.security.as_ref().and_then(|s| s.tls.clone());
    serve_with(listener, cancel, tls, move |req| {
        let state = state.clone();
        async move { handle(req, &state).await }
    })
    .await
}

/// Counts open connections, in all and per client address.
#[derive(Default)]
struct Slots {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Held by a connection's task; gives its slot back when the connection ends.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    ip: IpAddr,
}

impl Slot {
    fn take(slots: &Arc<Mutex<Slots>>, ip: IpAddr) -> Option<Slot> {
        let mut s = slots.lock().unwrap_or_else(|e| e.into_inner());
        let mine = s.per_ip.get(&ip).copied().unwrap_or(0);
        if s.total >= MAX_CONNECTIONS || mine >= MAX_CONNECTIONS_PER_IP {
            return None;
        }
        s.total += 1;
        *s.per_ip.entry(ip).or_default() += 1;
        Some(Slot {
            slots: slots.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        s.total -= 1;
        if let Some(n) = s.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

/// The accept loop shared by the exporter and the simulated API: one task per connection,
/// TLS when given, connection limits, a header-read timeout, and on `cancel` a bounded wait
/// for in-flight requests.
pub async fn serve_with<H, F, B>(
    listener: TcpListener,
    cancel: CancellationToken,
    tls: Option<TlsAcceptor>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    let slots = Arc::new(Mutex::new(Slots::default()));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A response ends in small frames; Nagle's algorithm would hold the last one back
        // until the client's delayed ACK (some 40 ms).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let Some(slot) = Slot::take(&slots, peer.ip()) else {
            tracing::debug!(%peer, "too many connections; closing this one");
            continue;
        };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let result = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(tls), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            return tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
}

async fn handle(req: Request<Incoming>, state: &WebState) -> Response<Body> {
    let mut response = route(req, state).await;
    if let Some(security) = &state.security {
        for (name, value) in &security.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

async fn route(req: Request<Incoming>, state: &WebState) -> Response<Body> {
    let path = req.uri().path();
    let allowed: &'static str = match path {
        "/" | "/metrics" | "/-/healthy" | "/-/ready" => "GET, HEAD",
        "/-/reload" => "POST, PUT",
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if let Some(security) = &state.security {
        if !security
            .authorized(req.headers().get(header::AUTHORIZATION))
            .await
        {
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
        "/metrics" => metrics(&req, &state.store).await,
        "/-/healthy" => text(StatusCode::OK, "OK\n"),
        "/-/ready" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
        "/-/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/-/reload" => reload(state).await,
        _ => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status_page(&state.store).into_bytes(),
        ),
    }
}

async fn reload(state: &WebState) -> Response<Body> {
    let Some(requests) = &state.reload else {
        return text(
            StatusCode::FORBIDDEN,
            "lifecycle API is not enabled (start with --web.enable-lifecycle)\n",
        );
    };
    let result = crate::app::request_reload(requests).await;
    match result {
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

fn status_page(store: &Store) -> String {
    let now = SystemTime::now();
    let mut html = String::from(concat!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>hss-exporter</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}",
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}",
        ".up{color:#070}.down{color:#b00}</style></head><body>",
        "<h1>hss-exporter</h1><p><a href=\"/metrics\">Metrics</a> · version ",
        env!("CARGO_PKG_VERSION"),
        "</p><table><tr><th>account</th><th>region</th><th>project_id</th>",
        "<th>enterprise_project_id</th><th>registry_type</th><th>up</th><th>fail</th>",
        "<th>success</th><th>last success</th><th>last error</th><th>next poll</th></tr>"
    ));
    for (target, s) in store.statuses() {
        html.push_str("<tr>");
        for label in target.label_values() {
            let _ = write!(html, "<td>{}</td>", escape(label));
        }
        let (class, up) = match s.up {
            Some(true) => ("up", "up"),
            Some(false) => ("down", "down"),
            None => ("", "pending"),
        };
        let (fail, success) = match (s.last, s.stale) {
            (Some(v), false) => (v.fail_num.to_string(), v.success_num.to_string()),
            (_, true) => ("stale".into(), "stale".into()),
            _ => (String::new(), String::new()),
        };
        let _ = write!(
            html,
            "<td class=\"{class}\">{up}</td><td>{fail}</td><td>{success}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.last_success.map(|t| ago(now, t)).unwrap_or_else(|| "never".into()),
            escape(s.last_error.as_deref().unwrap_or("")),
            s.next_poll.map(|t| until(now, t)).unwrap_or_default(),
        );
    }
    html.push_str("</table></body></html>\n");
    html
}

fn ago(now: SystemTime, t: SystemTime) -> String {
    let secs = now.duration_since(t).unwrap_or_default().as_secs();
    format!(
        "{} ({} ago)",
        humantime::format_rfc3339_seconds(t),
        humantime::format_duration(Duration::from_secs(secs))
    )
}

fn until(now: SystemTime, t: SystemTime) -> String {
    match t.duration_since(now) {
        Ok(d) => format!(
            "{} (in {})",
            humantime::format_rfc3339_seconds(t),
            humantime::format_duration(Duration::from_secs(d.as_secs()))
        ),
        Err(_) => "due now".into(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
