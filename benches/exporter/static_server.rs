//! The static server: the exporter's very bytes, served with no work per request; the
//! reference the exporter is compared with under load.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::client::Head;
use crate::fail;

#[derive(Clone)]
pub struct Variant {
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Variant {
    pub fn from_answer(head: &Head, body: Vec<u8>) -> Variant {
        let headers = head
            .headers
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "content-type" | "content-encoding" | "vary"))
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        Variant {
            headers,
            body: Bytes::from(body),
        }
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(self.body.clone()));
        for (k, v) in &self.headers {
            r.headers_mut().insert(k.clone(), v.clone());
        }
        r
    }
}

pub struct StaticServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StaticServer {
    /// Serves `gzip` to requests that accept gzip and `plain` to the others, on its own
    /// runtime with `threads` workers (one per core: at least as many as the exporter's).
    pub fn start(plain: Variant, gzip: Variant, threads: usize) -> StaticServer {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("static-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("static")
                    .enable_all()
                    .build()
                    .expect("static server runtime");
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = addr_tx.send(listener.local_addr());
                    let (plain, gzip) = (Arc::new(plain), Arc::new(gzip));
                    tokio::pin!(stopped);
                    loop {
                        let stream = tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => match accepted {
                                Ok((s, _)) => s,
                                Err(_) => continue,
                            },
                        };
                        let (plain, gzip) = (plain.clone(), gzip.clone());
                        let service = service_fn(move |req: Request<Incoming>| {
                            let accepts_gzip = req
                                .headers()
                                .get(http::header::ACCEPT_ENCODING)
                                .and_then(|v| v.to_str().ok())
                                .is_some_and(|v| v.contains("gzip"));
                            let r = if accepts_gzip {
                                gzip.response()
                            } else {
                                plain.response()
                            };
                            async move { Ok::<_, Infallible>(r) }
                        });
                        tokio::spawn(async move {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .unwrap_or_else(|e| fail(format!("cannot start the static server thread: {e}")));
        let addr = addr_rx
            .recv()
            .unwrap_or_else(|_| fail("the static server thread died"))
            .unwrap_or_else(|e| fail(format!("static server cannot listen: {e}")));
        StaticServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
