//! A small forwarding proxy for the tests, as an egress proxy works: `CONNECT` tunnels for
//! `https://` targets, absolute-form requests forwarded for `http://` ones, optional Basic
//! authentication, and host names only it can resolve (so that a call that bypassed it
//! could not reach its target). It logs what passed through it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// `CONNECT`, `GET`, `POST`, ...
    pub method: String,
    /// `host:port` of a tunnel, or the absolute URL of a forwarded request.
    pub target: String,
    /// What the proxy answered: 200, 407 (no or wrong credentials), 502 (target unreachable).
    pub status: u16,
}

/// The running proxy; it stops when dropped.
pub struct TestProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Passed>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    /// A proxy on 127.0.0.1 that resolves the names of `hosts` itself and, with `auth`
    /// (`user:password`), requires Basic credentials.
    pub async fn start(hosts: &[(&str, SocketAddr)], auth: Option<&str>) -> TestProxy {
        use base64::Engine as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let hosts: Arc<HashMap<String, SocketAddr>> = Arc::new(
            hosts
                .iter()
                .map(|(name, addr)| ((*name).to_string(), *addr))
                .collect(),
        );
        let expected = auth.map(|a| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(a)
            )
        });
        let (log2, hosts2) = (log.clone(), hosts.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, hosts, expected) = (log2.clone(), hosts2.clone(), expected.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &log, &hosts, expected.as_deref()).await;
                });
            }
        });
        TestProxy { addr, log, task }
    }

    /// `http://127.0.0.1:port`, or with `user:password@` when given.
    pub fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(c) => format!("http://{c}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// Everything that passed so far.
    pub fn passed(&self) -> Vec<Passed> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: TcpStream,
    log: &Mutex<Vec<Passed>>,
    hosts: &HashMap<String, SocketAddr>,
    expected: Option<&str>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        head.push(line);
        if end {
            break;
        }
    }
    let mut first = head[0].split_whitespace();
    let (method, target) = (
        first.next().unwrap_or("").to_string(),
        first.next().unwrap_or("").to_string(),
    );
    let header = |name: &str| {
        head[1..].iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let record = |status: u16| {
        log.lock().unwrap().push(Passed {
            method: method.clone(),
            target: target.clone(),
            status,
        });
    };
    if expected.is_some() && header("Proxy-Authorization").as_deref() != expected {
        record(407);
        let mut stream = reader.into_inner();
        stream.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await?;
        return Ok(());
    }
    let authority = if method == "CONNECT" {
        target.clone()
    } else {
        let rest = target.strip_prefix("http://").unwrap_or(&target);
        rest.split('/').next().unwrap_or("").to_string()
    };
    let upstream_addr = hosts.get(&authority).copied().or_else(|| {
        let (host, port) = authority.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        hosts
            .get(host)
            .map(|a| SocketAddr::new(a.ip(), port))
            .or_else(|| authority.parse().ok())
    });
    let Some(upstream_addr) = upstream_addr else {
        record(502);
        let mut stream = reader.into_inner();
        stream
            .write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        return Ok(());
    };
    let mut upstream = TcpStream::connect(upstream_addr).await?;
    record(200);
    if method == "CONNECT" {
        let pending = reader.buffer().to_vec();
        let mut stream = reader.into_inner();
        stream
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        upstream.write_all(&pending).await?;
        tokio::io::copy_bidirectional(&mut stream, &mut upstream).await?;
        return Ok(());
    }
    // Forward one request in origin form, then the answer, then close.
    let path = target
        .strip_prefix("http://")
        .and_then(|r| r.find('/').map(|i| r[i..].to_string()))
        .unwrap_or_else(|| "/".into());
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for line in &head[1..head.len() - 1] {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            name.as_str(),
            "proxy-authorization" | "proxy-connection" | "connection"
        ) {
            out.push_str(line);
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    let length: usize = header("Content-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    upstream.write_all(out.as_bytes()).await?;
    upstream.write_all(&body).await?;
    let mut stream = reader.into_inner();
    tokio::io::copy(&mut upstream, &mut stream).await?;
    stream.shutdown().await?;
    Ok(())
}
