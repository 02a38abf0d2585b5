//! Where the HTTP server listens, as written in Prometheus style.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A listen address: `host:port`, `[v6]:port`, `localhost:port`, or `:port` for every
/// address of the host, IPv6 and IPv4 alike, as Go exporters read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenAddress {
    /// `:port`: every address, both families (dual stack where the host has IPv6).
    All(u16),
    /// One address (`0.0.0.0:port` stays IPv4 only, `[::]:port` IPv6 only).
    Addr(SocketAddr),
}

impl ListenAddress {
    /// The port.
    pub fn port(self) -> u16 {
        match self {
            ListenAddress::All(port) => port,
            ListenAddress::Addr(addr) => addr.port(),
        }
    }
}

impl FromStr for ListenAddress {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let s = s.trim();
        if let Some(port) = s.strip_prefix(':') {
            return port.parse().map(ListenAddress::All).map_err(|_| ());
        }
        if let Ok(addr) = s.parse() {
            return Ok(ListenAddress::Addr(addr));
        }
        match s.rsplit_once(':') {
            Some(("localhost", port)) => port
                .parse()
                .map(|p| ListenAddress::Addr(SocketAddr::from(([127, 0, 0, 1], p))))
                .map_err(|_| ()),
            _ => Err(()),
        }
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::All(port) => write!(f, ":{port}"),
            ListenAddress::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_style_addresses() {
        let parsed = |s: &str| s.parse::<ListenAddress>().map(|a| a.to_string());
        assert_eq!(parsed(":9943"), Ok(":9943".into()));
        assert_eq!(parsed("0.0.0.0:9943"), Ok("0.0.0.0:9943".into()));
        assert_eq!(parsed("[::1]:80"), Ok("[::1]:80".into()));
        assert_eq!(parsed("localhost:9100"), Ok("127.0.0.1:9100".into()));
        for bad in ["", "9943", ":", ":x", "host:9943", "127.0.0.1:99999"] {
            assert_eq!(parsed(bad), Err(()), "{bad:?}");
        }
    }
}
