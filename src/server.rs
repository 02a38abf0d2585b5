//! The accept loop the exporter's endpoints and the simulated API share: one task per
//! connection, TLS when given (HTTP/2 when ALPN picks it), connection limits, a deadline for
//! request headers, and a bounded drain on shutdown. It knows nothing of what it serves.
//!
//! Connections are counted in all and per client address. When every slot is taken, a new
//! connection takes the slot of the connection that has waited longest for its request
//! headers (a half-sent request, a TLS handshake not finished, an idle keep-alive); only
//! when every connection is busy with a request is the new one refused. So clients that
//! open connections and send nothing cannot lock out a scraper, however many addresses they
//! come from.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::model::ListenAddress;

/// Where each new connection's TLS settings come from; called once per accepted connection,
/// so that settings changed on disk apply to the next one. `None` closes the connection.
pub type TlsSource = Arc<dyn Fn() -> Option<Arc<rustls::ServerConfig>> + Send + Sync>;

/// Largest request head accepted; a scrape's is some hundred bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// HTTP/2 streams served at once on one connection.
const MAX_STREAMS: u32 = 64;
/// The answer to a plain HTTP request on a TLS listener, as Go's server words it.
const PLAIN_ON_TLS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
/// How long shutdown waits for in-flight scrapes to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Binds `addr`. `:port` listens on every address of both families: one IPv6 socket that
/// also takes IPv4 connections, or IPv4 alone where the host has no IPv6.
pub fn bind(addr: ListenAddress) -> std::io::Result<TcpListener> {
    let dual_stack = |port: u16| -> std::io::Result<std::net::TcpListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_only_v6(false)?;
        socket.set_reuse_address(true)?;
        socket.bind(&std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)).into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    let std_listener = match addr {
        ListenAddress::Addr(a) => std::net::TcpListener::bind(a)?,
        ListenAddress::All(port) => match dual_stack(port) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "no IPv6 listener; listening on IPv4 only");
                std::net::TcpListener::bind(std::net::SocketAddr::from(([0, 0, 0, 0], port)))?
            }
        },
    };
    std_listener.set_nonblocking(true)?;
    TcpListener::from_std(std_listener)
}

/// An address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct BindError {
    /// The address asked for.
    pub addr: ListenAddress,
    /// Why not.
    #[source]
    pub source: std::io::Error,
}

/// Binds every one of `addrs`, in order.
pub fn bind_all(addrs: &[ListenAddress]) -> Result<Vec<TcpListener>, BindError> {
    addrs
        .iter()
        .map(|&addr| bind(addr).map_err(|source| BindError { addr, source }))
        .collect()
}

/// The connection cap never goes above this, whatever the file-descriptor limit.
const MAX_CONNECTIONS_CEILING: usize = 16_384;

/// How many connections the server holds, and how long it waits for a client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; past it the longest-waiting idle connection is closed.
    pub max_connections: usize,
    /// Connections open at once from one client address, so one host cannot take them all.
    pub max_per_ip: usize,
    /// A client has this long, from connecting or from its last response, to send its
    /// request headers (TLS handshake included); an idle keep-alive connection is closed
    /// after it too (slow-loris guard).
    pub header_timeout: Duration,
}

impl Default for Limits {
    /// 64 per address, 10 s for headers, and a total sized from the file-descriptor limit.
    fn default() -> Limits {
        Limits {
            max_connections: connection_cap(),
            max_per_ip: 64,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Three quarters of the file-descriptor limit less some for the poller and files, between
/// 64 and [`MAX_CONNECTIONS_CEILING`]. The soft limit is first raised to the hard limit, as
/// Go programs do at start.
fn connection_cap() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(max)) = (limit.current, limit.maximum) {
            if current < max {
                limit.current = Some(max);
                if let Err(e) = setrlimit(Resource::Nofile, limit) {
                    tracing::debug!(error = %e, "cannot raise the file-descriptor limit");
                    limit.current = Some(current);
                }
            }
        }
        let fds = limit.current.unwrap_or(1 << 20);
        let fds = usize::try_from(fds).unwrap_or(usize::MAX);
        let cap = (fds - fds / 4)
            .saturating_sub(64)
            .clamp(64, MAX_CONNECTIONS_CEILING);
        tracing::debug!(fds, cap, "connection cap");
        cap
    })
}

/// The open connections: counts, and which ones wait for request headers, oldest first.
struct Registry {
    limits: Limits,
    conns: HashMap<u64, Conn>,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections with no request in flight, by when they started waiting.
    waiting: BTreeMap<u64, u64>,
    next: u64,
}

struct Conn {
    ip: IpAddr,
    in_flight: usize,
    /// Key in `waiting` while no request is in flight.
    waiting_key: Option<u64>,
    waiting_since: Instant,
    close: CancellationToken,
}

/// Where a connection stands, for its header deadline.
enum Standing {
    Gone,
    Busy,
    WaitingSince(Instant),
}

#[derive(Clone)]
struct Connections(Arc<Mutex<Registry>>);

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection from `ip`, maybe closing the longest-waiting idle one.
    fn admit(&self, ip: IpAddr) -> Option<(u64, CancellationToken)> {
        let mut r = self.lock();
        if r.per_ip.get(&ip).copied().unwrap_or(0) >= r.limits.max_per_ip {
            return None;
        }
        if r.conns.len() >= r.limits.max_connections {
            let victim = r.waiting.first_key_value().map(|(_, &id)| id)?;
            if let Some(c) = r.remove(victim) {
                tracing::debug!(peer = %c.ip, "connection cap reached: closing the connection that waited longest for its request");
                c.close.cancel();
            }
        }
        r.next += 1;
        let (id, key) = (r.next, r.next);
        let close = CancellationToken::new();
        r.conns.insert(
            id,
            Conn {
                ip,
                in_flight: 0,
                waiting_key: Some(key),
                waiting_since: Instant::now(),
                close: close.clone(),
            },
        );
        r.waiting.insert(key, id);
        *r.per_ip.entry(ip).or_default() += 1;
        Some((id, close))
    }

    fn request_started(&self, id: u64) {
        let mut r = self.lock();
        let key = r.conns.get_mut(&id).and_then(|c| {
            c.in_flight += 1;
            c.waiting_key.take()
        });
        if let Some(key) = key {
            r.waiting.remove(&key);
        }
    }

    fn request_ended(&self, id: u64) {
        let mut r = self.lock();
        r.next += 1;
        let key = r.next;
        let idle = r.conns.get_mut(&id).is_some_and(|c| {
            c.in_flight = c.in_flight.saturating_sub(1);
            if c.in_flight == 0 {
                c.waiting_key = Some(key);
                c.waiting_since = Instant::now();
                true
            } else {
                false
            }
        });
        if idle {
            r.waiting.insert(key, id);
        }
    }

    fn standing(&self, id: u64) -> Standing {
        match self.lock().conns.get(&id) {
            None => Standing::Gone,
            Some(c) if c.in_flight > 0 => Standing::Busy,
            Some(c) => Standing::WaitingSince(c.waiting_since),
        }
    }

    fn release(&self, id: u64) {
        self.lock().remove(id);
    }
}

impl Registry {
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let c = self.conns.remove(&id)?;
        if let Some(key) = c.waiting_key {
            self.waiting.remove(&key);
        }
        if let Some(n) = self.per_ip.get_mut(&c.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&c.ip);
            }
        }
        Some(c)
    }
}

/// Gives a connection's slot back when its task ends.
struct Slot {
    conns: Connections,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.release(self.id);
    }
}

/// Marks a request in flight until its response body is dropped (sent or abandoned).
struct InFlight {
    conns: Connections,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conns.request_ended(self.id);
    }
}

/// A response body that keeps its request counted in flight until it is dropped; size and
/// end are the inner body's, so `Content-Length` is kept.
struct Tracked<B> {
    body: std::pin::Pin<Box<B>>,
    _in_flight: InFlight,
}

impl<B: hyper::body::Body> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        self.get_mut().body.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves `handler` on `listener` with the default [`Limits`] until `cancel` fires, then
/// waits a bounded time for in-flight requests.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    cancel: CancellationToken,
    tls: Option<TlsSource>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(listener, cancel, tls, Limits::default(), handler).await;
}

/// [`serve`] with explicit limits.
pub async fn serve_with<H, F, B>(
    listener: TcpListener,
    cancel: CancellationToken,
    tls: Option<TlsSource>,
    limits: Limits,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(MAX_STREAMS);
    let conns = Connections(Arc::new(Mutex::new(Registry {
        limits,
        conns: HashMap::new(),
        per_ip: HashMap::new(),
        waiting: BTreeMap::new(),
        next: 0,
    })));
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
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
        let Some((id, close)) = conns.admit(peer.ip()) else {
            tracing::debug!(%peer, "too many connections; closing this one");
            continue;
        };
        let slot = Slot {
            conns: conns.clone(),
            id,
        };
        let tls_config = match &tls {
            None => None,
            Some(source) => match source() {
                Some(c) => Some(c),
                None => continue,
            },
        };
        let service = {
            let (handler, conns) = (handler.clone(), conns.clone());
            service_fn(move |req| {
                conns.request_started(id);
                let in_flight = InFlight {
                    conns: conns.clone(),
                    id,
                };
                let response = handler(req);
                async move {
                    let response = response.await;
                    // The request stays in flight until its body is sent or dropped.
                    Ok::<_, Infallible>(response.map(move |body| Tracked {
                        body: Box::pin(body),
                        _in_flight: in_flight,
                    }))
                }
            })
        };
        let (h1, h2, watcher) = (h1.clone(), h2.clone(), graceful.watcher());
        let work = async move {
            let Some(config) = tls_config else {
                return watcher
                    .watch(h1.serve_connection(TokioIo::new(stream), service))
                    .await
                    .map_err(|e| e.to_string());
            };
            // Plain HTTP on the TLS port gets the answer Go's server gives, instead of a
            // TLS alert that a browser or curl shows as gibberish.
            let mut first = [0u8; 1];
            if stream.peek(&mut first).await.is_ok_and(|n| n == 1) && first[0].is_ascii_uppercase()
            {
                // Read the request before answering and let the client close first: closing
                // with unread bytes would reset the connection and lose the answer.
                let mut stream = stream;
                let mut sink = [0u8; 4096];
                let _ = stream.read(&mut sink).await;
                let _ = stream.write_all(PLAIN_ON_TLS).await;
                let _ = stream.shutdown().await;
                let drain =
                    async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
                let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                return Err("plain HTTP request on the TLS port".into());
            }
            let tls = TlsAcceptor::from(config)
                .accept(stream)
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                watcher
                    .watch(h2.serve_connection(TokioIo::new(tls), service))
                    .await
                    .map_err(|e| e.to_string())
            } else {
                watcher
                    .watch(h1.serve_connection(TokioIo::new(tls), service))
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        let deadlines = conns.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(work);
            loop {
                let wake = match deadlines.standing(id) {
                    Standing::Gone => return,
                    Standing::Busy => Instant::now() + limits.header_timeout,
                    Standing::WaitingSince(t) => t + limits.header_timeout,
                };
                tokio::select! {
                    result = &mut work => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    () = close.cancelled() => return,
                    () = tokio::time::sleep_until(wake) => {
                        if let Standing::WaitingSince(t) = deadlines.standing(id) {
                            if t + limits.header_timeout <= Instant::now() {
                                return tracing::debug!(%peer, "no request headers in time; closing");
                            }
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
}
