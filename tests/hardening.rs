//! Hostile clients on the metrics port: slow-loris, connection floods, oversized requests
//! and junk. `/metrics` must keep answering legitimate scrapers.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const LOCAL: [u8; 4] = [127, 0, 0, 1];

fn config() -> String {
    Config::new()
        .account(account("prod").project(P1, &[]))
        .yaml()
}

/// Connects to `to` from the loopback address `from` (any 127.x works on Linux).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    bounded(IO_TIMEOUT, "connecting", socket.connect(to))
        .await
        .unwrap()
}

/// Writes all of `bytes`.
async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    bounded(IO_TIMEOUT, "sending", stream.write_all(bytes))
        .await
        .unwrap();
}

/// True when the server closed the connection (or answered with an error and closed).
/// Callers bound it: it reads until the server closes.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = vec![0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {} // an error response before the close
        }
    }
}

/// The status of a scrape from the loopback address `from`, or why there was none.
async fn scrape_from(from: [u8; 4], to: SocketAddr) -> Result<u16, String> {
    let c = http_builder()
        .local_address(IpAddr::from(from))
        .build()
        .unwrap();
    c.get(format!("http://{to}/metrics"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

#[tokio::test(start_paused = true)]
async fn a_slow_client_is_cut_off_after_the_header_timeout() {
    let (_sim, server) = sim().await;
    let exporter = exporter(&config(), &server).await;
    let mut slow = connect_from(LOCAL, exporter.addr).await;
    send(&mut slow, b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_secs(9), slow.read(&mut buf)).await;
    assert!(early.is_err(), "still open after 9 s: {early:?}");
    let late = tokio::time::timeout(Duration::from_secs(2), closed(&mut slow)).await;
    assert_eq!(late, Ok(true), "closed after the 10 s header timeout");

    // An idle keep-alive connection is closed the same way.
    let mut idle = connect_from(LOCAL, exporter.addr).await;
    send(&mut idle, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut response = vec![0u8; 1024];
    let n = bounded(
        IO_TIMEOUT,
        "the answer to GET /-/healthy",
        idle.read(&mut response),
    )
    .await
    .unwrap();
    assert!(response[..n].starts_with(b"HTTP/1.1 200"));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(11), closed(&mut idle)).await,
        Ok(true)
    );
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_cannot_take_every_connection() {
    let (_sim, server) = sim().await;
    let exporter = exporter(&config(), &server).await;
    let addr = exporter.addr;
    let mut hogs = Vec::new();
    for _ in 0..64 {
        let mut s = connect_from(LOCAL, addr).await;
        send(&mut s, b"GET /metrics HTTP/1.1\r\n").await;
        hogs.push(s);
    }
    // Once the server has taken the 64 slots, the next connection is closed at once.
    eventually(
        Duration::from_secs(5),
        "the 65th connection from one address to be closed at once",
        move || async move {
            let mut one_more = connect_from(LOCAL, addr).await;
            match tokio::time::timeout(Duration::from_secs(2), closed(&mut one_more)).await {
                Ok(true) => Ok(()),
                _ => Err("still open after 2s"),
            }
        },
    )
    .await;
    assert_eq!(
        scrape_from([127, 0, 0, 2], addr).await,
        Ok(200),
        "another scraper is served"
    );
    drop(hogs);
    eventually(
        Duration::from_secs(5),
        "slots to come back: a scrape from the hogs' address served",
        move || async move {
            match scrape_from(LOCAL, addr).await {
                Ok(200) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    exporter.shutdown().await;
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let (_sim, server) = sim().await;
    let exporter = exporter(&config(), &server).await;
    let mut s = connect_from(LOCAL, exporter.addr).await;
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    // The server may close before all is sent.
    let _ = tokio::time::timeout(IO_TIMEOUT, s.write_all(big.as_bytes())).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut response)).await;
    let head = String::from_utf8_lossy(&response[..response.len().min(40)]).to_string();
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 431"),
        "{head:?}"
    );
    assert_eq!(scrape_from(LOCAL, exporter.addr).await, Ok(200));
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_keep_answering_through_a_flood_of_junk_and_scrapes() {
    let (_sim, server) = sim().await;
    let exporter = exporter(&config(), &server).await;
    let addr = exporter.addr;
    let flood: Vec<_> = (0..8u8)
        .map(|host| {
            tokio::spawn(async move {
                for i in 0..30u32 {
                    let mut s = connect_from([127, 0, 1, host], addr).await;
                    let junk: &[u8] = match i % 3 {
                        0 => b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage-that-is-not-http\r\n\r\n",
                        1 => b"BREW /pot HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
                        _ => b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    };
                    let _ = tokio::time::timeout(IO_TIMEOUT, s.write_all(junk)).await;
                    let mut sink = Vec::new();
                    let _ = tokio::time::timeout(Duration::from_millis(300), s.read_to_end(&mut sink)).await;
                }
            })
        })
        .collect();
    let mut ok = 0;
    for _ in 0..40 {
        if scrape_from([127, 0, 0, 9], addr).await == Ok(200) {
            ok += 1;
        }
    }
    for f in flood {
        bounded(IO_TIMEOUT, "the flood to end", f).await.unwrap();
    }
    assert_eq!(ok, 40, "every legitimate scrape answered during the flood");
    exporter.shutdown().await;
}

/// Opens `per_host` connections from each of `hosts` loopback addresses and sends half a
/// request on each.
async fn half_sent(hosts: std::ops::Range<u8>, per_host: usize, to: SocketAddr) -> Vec<TcpStream> {
    let mut conns = Vec::new();
    for host in hosts {
        for _ in 0..per_host {
            let mut s = connect_from([127, 0, 1, host], to).await;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            conns.push(s);
        }
    }
    conns
}

async fn timed_scrape(from: [u8; 4], to: SocketAddr) -> Duration {
    let start = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), scrape_from(from, to))
        .await
        .expect("scrape answered");
    assert_eq!(status, Ok(200));
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_half_sent_requests_from_many_addresses_do_not_block_a_scrape() {
    let (_sim, server) = sim().await;
    let exporter = exporter(&config(), &server).await;
    // 600 half-sent requests from 12 addresses, 50 each: under the per-address cap.
    let mut idle = half_sent(1..13, 50, exporter.addr).await;
    let mut worst = Duration::ZERO;
    for _ in 0..4 {
        worst = worst.max(timed_scrape([127, 0, 2, 1], exporter.addr).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!("slowest scrape with 600 idle connections open: {worst:?}");
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    // They are all closed once the header timeout (10 s from connecting) has passed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for s in &mut idle {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert_eq!(
            tokio::time::timeout(left, closed(s)).await,
            Ok(true),
            "closed after the header timeout"
        );
    }
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_makes_room_by_closing_the_connections_waiting_longest() {
    use hss_exporter::server::{serve_with, Limits};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let limits = Limits {
        max_connections: 100,
        max_per_ip: 64,
        header_timeout: Duration::from_secs(10),
    };
    tokio::spawn(serve_with(
        listener,
        cancel.clone(),
        None,
        limits,
        |req: http::Request<_>| async move {
            if req.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
                b"ok\n",
            )))
        },
    ));
    // 600 half-sent requests from 12 addresses against a cap of 100.
    let mut first = half_sent(1..13, 50, addr).await;
    // The oldest ones made room for the newer: all but the last 100 are closed.
    for s in &mut first[..500] {
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(2), closed(s)).await,
            Ok(true),
            "an old idle connection was closed"
        );
    }
    // The attackers keep reconnecting; a scraper from another address is served each time.
    let mut worst = Duration::ZERO;
    for round in 0..5u8 {
        let _more = half_sent(1..13, 10, addr).await;
        worst = worst.max(timed_scrape([127, 0, 2, round + 1], addr).await);
    }
    println!("slowest scrape against a full server: {worst:?}");
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    // A connection with a request in flight is never the one closed, however many idle
    // ones arrive after it.
    let slow = tokio::spawn(async move {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 2, 9]))
            .build()
            .unwrap()
            .get(format!("http://{addr}/slow"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _flood = half_sent(1..13, 20, addr).await;
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    drop(first);
    cancel.cancel();
}
