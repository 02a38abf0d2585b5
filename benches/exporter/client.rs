//! A minimal HTTP/1.1 client (keep-alive, Content-Length or chunked bodies) for `/metrics`,
//! and the few readings of the exposition text that the phases need.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub close: bool,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn request_bytes(path: &str, gzip: bool) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: hss-bench\r\n");
    if gzip {
        r.push_str("Accept-Encoding: gzip\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

pub struct Conn {
    r: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::with_capacity(256 * 1024, s),
            line: Vec::with_capacity(256),
        })
    }

    async fn read_line(&mut self) -> std::io::Result<&str> {
        self.line.clear();
        if self.r.read_until(b'\n', &mut self.line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        std::str::from_utf8(&self.line)
            .map(|s| s.trim_end_matches(['\r', '\n']))
            .map_err(|_| invalid("header is not UTF-8"))
    }

    /// Reads `n` body bytes into `keep`, or discards them.
    async fn body_part(&mut self, n: u64, keep: &mut Option<&mut Vec<u8>>) -> std::io::Result<u64> {
        let mut part = (&mut self.r).take(n);
        let got = match keep {
            Some(buf) => part.read_to_end(buf).await? as u64,
            None => tokio::io::copy_buf(&mut part, &mut tokio::io::sink()).await?,
        };
        if got != n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(got)
    }

    /// Sends `request` and reads the answer; returns its head and body length.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        mut keep: Option<&mut Vec<u8>>,
    ) -> std::io::Result<(Head, u64)> {
        self.r.get_mut().write_all(request).await?;
        let status_line = self.read_line().await?.to_string();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let mut headers = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut head = Head {
            status,
            headers,
            close: false,
        };
        head.close = head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || status_line.starts_with("HTTP/1.0");
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = head
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        let mut total = 0u64;
        if chunked {
            loop {
                let size_line = self.read_line().await?;
                let size =
                    u64::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| invalid("bad chunk size"))?;
                if size == 0 {
                    while !self.read_line().await?.is_empty() {}
                    break;
                }
                total += self.body_part(size, &mut keep).await?;
                self.read_line().await?;
            }
        } else if let Some(n) = length {
            total = self.body_part(n, &mut keep).await?;
        } else {
            let mut sink = Vec::new();
            let buf = keep.unwrap_or(&mut sink);
            total = self.r.read_to_end(buf).await? as u64;
            head.close = true;
        }
        Ok((head, total))
    }
}

/// One GET on a new connection, keeping the body.
pub fn fetch(
    rt: &Runtime,
    addr: SocketAddr,
    path: &str,
    gzip: bool,
) -> std::io::Result<(Head, Vec<u8>)> {
    rt.block_on(async {
        let work = async {
            let mut c = Conn::open(addr).await?;
            let mut body = Vec::new();
            let (head, _) = c
                .exchange(&request_bytes(path, gzip), Some(&mut body))
                .await?;
            Ok((head, body))
        };
        tokio::time::timeout(Duration::from_secs(30), work)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    })
}

/// Blocking probe for the start-up measurement: the status of `GET path`, or `None`.
pub fn probe(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.set_nodelay(true).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let head = std::str::from_utf8(&out[..out.len().min(64)]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Reading the exposition

pub fn lines_starting(body: &[u8], prefix: &str) -> usize {
    body.split(|&b| b == b'\n')
        .filter(|l| l.starts_with(prefix.as_bytes()))
        .count()
}

/// Sum of every sample of `name` (with labels).
pub fn sum_samples(body: &[u8], name: &str) -> f64 {
    let prefix = format!("{name}{{");
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many accounts have seen at least one answer with this code.
pub fn accounts_with_code(body: &[u8], code: &str) -> usize {
    let needle = format!("code=\"{code}\"");
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| l.starts_with("hss_exporter_api_requests_total{") && l.contains(&needle))
        .filter(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
        .count()
}
