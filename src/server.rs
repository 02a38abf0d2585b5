//! The accept loop the exporter's endpoints and the simulated API share: one task per
//! connection, TLS when given, connection limits, a header-read timeout, and a bounded
//! drain on shutdown. It knows nothing of what it serves.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::model::ListenAddress;

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
        let mut s = slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let mut s = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.total -= 1;
        if let Some(n) = s.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Serves `handler` on `listener` until `cancel` fires, then waits a bounded time for
/// in-flight requests.
pub async fn serve<H, F, B>(
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
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
}
