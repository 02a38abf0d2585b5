//! The web endpoints behind `--web.config.file`, held against the exporter-toolkit's own
//! web-config test table: the same kinds of files (written here, with certificates made
//! here), the same clients (client certificates, restricted suites and curves, an old TLS
//! version), and the same outcomes: a file refused, a handshake failing, or a request
//! answered 200, 401 or 429. Then what the toolkit does beyond its table: HTTP/2, headers,
//! every client-certificate policy, SANs, reloading files that change on disk, and start-up
//! with an expensive bcrypt hash.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use hss_exporter::app::Options;
use hss_exporter::metrics::Store;
use hss_exporter::web::{self, Security, WebState};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::{self, pki_types, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

fn config() -> String {
    Config::new()
        .account(account("prod").project(P1, &[]))
        .yaml()
}

// ---------------------------------------------------------------------------------------
// Certificates

/// A certificate and its key, PEM.
#[derive(Clone)]
struct Pair {
    cert: String,
    key: String,
}

/// Everything the cases need, made once per test binary.
struct Pki {
    /// The CA of the server certificate and of `client`.
    ca: String,
    /// RSA, for 127.0.0.1 and localhost, so that the `TLS_ECDHE_RSA` suites apply.
    server: Pair,
    /// ECDSA, from `ca2`: what the server rotates to.
    rotated: Pair,
    ca2: String,
    /// Signed by `ca`, SAN DNS `scraper`.
    client: Pair,
    /// Signed by `ca2`.
    stranger: Pair,
    /// Self-signed, a CA certificate as `openssl req -x509` makes them.
    selfsigned: Pair,
    /// Self-signed, with DNS, IP, e-mail and URI SANs.
    selfsigned2: Pair,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

fn leaf(issuer: &(rcgen::Certificate, KeyPair), sans: Vec<SanType>, key: &KeyPair) -> Pair {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    let cert = params.signed_by(key, &issuer.0, &issuer.1).unwrap();
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn self_signed(name: &str, sans: Vec<SanType>) -> Pair {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans;
    let key = KeyPair::generate().unwrap();
    Pair {
        cert: params.self_signed(&key).unwrap().pem(),
        key: key.serialize_pem(),
    }
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca1 = ca("test ca");
        let ca2 = ca("other ca");
        let localhost = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            dns("localhost"),
        ];
        let rsa =
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
        Pki {
            ca: ca1.0.pem(),
            server: leaf(&ca1, localhost.clone(), &rsa),
            rotated: leaf(&ca2, localhost, &KeyPair::generate().unwrap()),
            ca2: ca2.0.pem(),
            client: leaf(&ca1, vec![dns("scraper")], &KeyPair::generate().unwrap()),
            stranger: leaf(&ca2, vec![dns("scraper")], &KeyPair::generate().unwrap()),
            selfsigned: self_signed("client", vec![dns("client1")]),
            selfsigned2: self_signed(
                "client2",
                vec![
                    dns("test3"),
                    SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
                    SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
                    SanType::URI("spiffe://example.org/scraper".try_into().unwrap()),
                ],
            ),
        }
    })
}

/// Writes the certificate files the cases name, and `web.yml`; returns its path.
fn write_files(dir: &Path, yaml: &str) -> PathBuf {
    let p = pki();
    for (name, text) in [
        ("server.crt", &p.server.cert),
        ("server.key", &p.server.key),
        ("ca.crt", &p.ca),
        ("client_selfsigned.pem", &p.selfsigned.cert),
        ("client2_selfsigned.pem", &p.selfsigned2.cert),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let path = dir.join("web.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// PEM text as a YAML block scalar, indented for a key at two spaces.
fn block(pem: &str) -> String {
    let mut out = String::from("|\n");
    for line in pem.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Servers and clients

struct Running {
    addr: SocketAddr,
    cancel: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The exporter's endpoints on `127.0.0.1:0`, without polling.
async fn serve(security: Option<Security>) -> Running {
    let state = Arc::new(WebState {
        store: Arc::new(Store::new(Duration::from_secs(300))),
        ready: AtomicBool::new(true),
        reload: None,
        security: security.map(Arc::new),
        telemetry_path: "/metrics".into(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(web::serve(listener, state, cancel.clone()));
    Running { addr, cancel }
}

/// A TLS client as the toolkit's tests configure Go's: trusting the test CA, maybe with a
/// client certificate, its TLS 1.2 suites and its curves restricted.
#[derive(Clone, Default)]
struct Tls {
    identity: Option<fn(&Pki) -> &Pair>,
    suites: Option<&'static [&'static str]>,
    curves: Option<&'static [&'static str]>,
    roots: Option<fn(&Pki) -> &String>,
    alpn_h2: bool,
}

fn client_config(tls: &Tls) -> Arc<ClientConfig> {
    use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider, kx_group};
    let mut provider = default_provider();
    if let Some(names) = tls.suites {
        let mut suites = vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        for name in names {
            suites.push(match *name {
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
                    cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                }
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
                    cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
                }
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
                    cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
                }
                other => panic!("no client suite {other}"),
            });
        }
        provider.cipher_suites = suites;
    }
    if let Some(names) = tls.curves {
        provider.kx_groups = names
            .iter()
            .map(|n| match *n {
                "CurveP256" => kx_group::SECP256R1,
                "CurveP384" => kx_group::SECP384R1,
                "CurveP521" => web::tls::P521,
                "X25519" => kx_group::X25519,
                other => panic!("no client curve {other}"),
            })
            .collect();
    }
    let mut roots = RootCertStore::empty();
    let ca = tls.roots.map_or(&pki().ca, |f| f(pki()));
    for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match tls.identity {
        None => builder.with_no_client_auth(),
        Some(pick) => {
            let pair = pick(pki());
            let certs = rustls_pemfile::certs(&mut pair.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pemfile::private_key(&mut pair.key.as_bytes())
                .unwrap()
                .unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    };
    if tls.alpn_h2 {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Arc::new(config)
}

/// What one request got: its status and, over TLS, the suite and ALPN protocol agreed.
#[derive(Debug)]
struct Answer {
    status: u16,
    suite: Option<String>,
    head: String,
}

async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    auth: Option<(&str, &str)>,
) -> Result<(u16, String), String> {
    use base64::Engine as _;
    let mut req =
        String::from("GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some((u, p)) = auth {
        let token = base64::prelude::BASE64_STANDARD.encode(format!("{u}:{p}"));
        req = req + "Authorization: Basic " + &token + "\r\n";
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", &text[..text.len().min(40)]))?;
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    Ok((status, head))
}

/// One request to `/-/healthy` on a new connection, like `curl` with the client's settings.
async fn request(
    addr: SocketAddr,
    client: &Client,
    auth: Option<(&str, &str)>,
) -> Result<Answer, String> {
    let work = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        match client {
            Client::Plain => {
                let (status, head) = exchange(tcp, auth).await?;
                Ok(Answer {
                    status,
                    suite: None,
                    head,
                })
            }
            Client::Tls(tls) => {
                let name = pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let conn = TlsConnector::from(client_config(tls))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
                let suite = conn
                    .get_ref()
                    .1
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()));
                let (status, head) = exchange(conn, auth).await?;
                Ok(Answer {
                    status,
                    suite,
                    head,
                })
            }
            Client::Hello { version, suites } => {
                let mut tcp = tcp;
                tcp.write_all(&client_hello(*version, suites))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut first = [0u8; 6];
                match tcp.read_exact(&mut first).await {
                    // A handshake record holding a ServerHello: the server agreed.
                    Ok(_) if first[0] == 0x16 && first[5] == 2 => Ok(Answer {
                        status: 0,
                        suite: None,
                        head: "server hello".into(),
                    }),
                    Ok(_) => Err(format!("refused: record {first:02x?}")),
                    Err(e) => Err(format!("closed: {e}")),
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// A TLS `ClientHello` that offers only `suites` at `version`, as an old or CBC-only client
/// sends it (rustls cannot be made to offer them).
fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend([7u8; 32]);
    body.push(0);
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]);
    // supported_groups (x25519, secp256r1), ec_point_formats, signature_algorithms.
    let ext: &[u8] = &[
        0, 10, 0, 6, 0, 4, 0, 29, 0, 23, 0, 11, 0, 2, 1, 0, 0, 13, 0, 6, 0, 4, 8, 4, 4, 1,
    ];
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut handshake = vec![1];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 3, 1];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

#[derive(Clone)]
enum Client {
    Plain,
    Tls(Tls),
    Hello {
        version: u16,
        suites: &'static [u16],
    },
}

fn tls() -> Client {
    Client::Tls(Tls::default())
}

fn with_identity(pick: fn(&Pki) -> &Pair) -> Client {
    Client::Tls(Tls {
        identity: Some(pick),
        ..Tls::default()
    })
}

fn with_suites(suites: &'static [&'static str]) -> Client {
    Client::Tls(Tls {
        suites: Some(suites),
        ..Tls::default()
    })
}

fn with_curves(curves: &'static [&'static str]) -> Client {
    Client::Tls(Tls {
        curves: Some(curves),
        ..Tls::default()
    })
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// The file is refused at start; the message holds this.
    Refused(&'static str),
    /// Every request is answered with this status.
    Status(u16),
    /// Answered 200 over this TLS 1.2 suite.
    Suite(&'static str),
    /// The handshake (or the first request after it) fails.
    Fails,
    /// Some request of the run is answered 429.
    Throttled,
}

struct Case {
    /// The toolkit's name for the case.
    name: &'static str,
    /// The toolkit's test file the YAML stands for; `None`: no `--web.config.file`.
    file: Option<&'static str>,
    yaml: String,
    client: Client,
    auth: Option<(&'static str, &'static str)>,
    requests: usize,
    outcome: Outcome,
}

fn case(
    name: &'static str,
    file: Option<&'static str>,
    yaml: &str,
    client: Client,
    outcome: Outcome,
) -> Case {
    Case {
        name,
        file,
        yaml: yaml.to_string(),
        client,
        auth: None,
        requests: 1,
        outcome,
    }
}

const SERVER: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

fn tls_with(extra: &str) -> String {
    format!("{SERVER}{extra}")
}

/// A bcrypt hash of the given cost with an arbitrary salt and digest: what a file written
/// with `htpasswd -nBC 18` looks like, without spending a minute making one.
fn synthetic_hash(cost: u32) -> String {
    format!("$2y${cost:02}$4VeFDzXIoPHKnKTU3O3GH.N.vZu06CVqczYZ8WvfzrddFU6tGqjR.")
}

fn users_yaml() -> String {
    static USERS: OnceLock<String> = OnceLock::new();
    USERS
        .get_or_init(|| {
            format!(
                "basic_auth_users:\n  alice: \"{}\"\n  bob: \"{}\"\n  carol: \"{}\"\n  dave: \"{}\"\n",
                synthetic_hash(12),
                synthetic_hash(18),
                bcrypt::hash("carol123", 4).unwrap(),
                bcrypt::hash("dave123", 4).unwrap(),
            )
        })
        .clone()
}

/// The toolkit's web-config test table (`TestYAMLFiles`, `TestServerBehaviour`,
/// `TestUsers`), case by case.
fn reference_cases() -> Vec<Case> {
    const AES128: &str = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256";
    const AES256: &str = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384";
    let p = pki();
    let inline_cert = format!(
        "tls_server_config:\n  cert: {}  key: {}",
        block(&p.server.cert),
        block(&p.server.key)
    );
    let all_ciphers = tls_with("  client_auth_type: VerifyClientCertIfGiven\n  cipher_suites:\n  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n  - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\n  - TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256\n  - TLS_AES_128_GCM_SHA256\n  - TLS_AES_256_GCM_SHA384\n  - TLS_CHACHA20_POLY1305_SHA256\n  - TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA\n  - TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA\n  - TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\n  - TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA\n  - TLS_RSA_WITH_AES_128_CBC_SHA\n  - TLS_RSA_WITH_AES_256_CBC_SHA\n  - TLS_RSA_WITH_AES_128_GCM_SHA256\n  - TLS_RSA_WITH_AES_256_GCM_SHA384\n");
    let some_ciphers = tls_with("  client_auth_type: VerifyClientCertIfGiven\n  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  min_version: TLS12\n  max_version: TLS12\n");
    let some_ciphers_no_order = tls_with("  client_auth_type: VerifyClientCertIfGiven\n  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  prefer_server_cipher_suites: false\n  min_version: TLS12\n  max_version: TLS12\n");
    let some_curves = tls_with("  client_auth_type: VerifyClientCertIfGiven\n  min_version: TLS13\n  curve_preferences:\n  - CurveP521\n");
    let no_auth_good = tls_with("  client_auth_type: VerifyClientCertIfGiven\n");
    let users_tls = format!("{SERVER}{}", users_yaml());
    let mut cases = vec![
        // TestYAMLFiles
        case("path to config yml invalid", Some("somefile"), "", Client::Plain, Outcome::Refused("cannot read the file")),
        case("empty config yml", Some("web_config_empty.yml"), "", Client::Plain, Outcome::Status(200)),
        case("invalid config yml (invalid structure)", Some("web_config_junk.yml"), "hello world\n", Client::Plain, Outcome::Refused("must be a mapping")),
        case("invalid config yml (invalid key)", Some("web_config_junk_key.yml"), &tls_with("  junk_key: x\n"), Client::Plain, Outcome::Refused("tls_server_config.junk_key: unknown field")),
        case("invalid config yml (cert path empty)", Some("web_config_noAuth_certPath_empty.bad.yml"), "tls_server_config:\n  cert_file: \"\"\n  key_file: server.key\n", Client::Plain, Outcome::Refused("missing one of cert or cert_file")),
        case("invalid config yml (cert empty)", Some("web_config_noAuth_cert_empty.bad.yml"), &format!("tls_server_config:\n  cert: \"\"\n  key: {}", block(&p.server.key)), Client::Plain, Outcome::Refused("missing one of cert or cert_file")),
        case("invalid config yml (key path empty)", Some("web_config_noAuth_keyPath_empty.bad.yml"), "tls_server_config:\n  cert_file: server.crt\n  key_file: \"\"\n", Client::Plain, Outcome::Refused("missing one of key or key_file")),
        case("invalid config yml (key empty)", Some("web_config_noAuth_key_empty.bad.yml"), &format!("tls_server_config:\n  cert: {}  key: \"\"\n", block(&p.server.cert)), Client::Plain, Outcome::Refused("missing one of key or key_file")),
        case("invalid config yml (cert path and key path empty)", Some("web_config_noAuth_certPath_keyPath_empty.bad.yml"), "tls_server_config:\n  cert_file: \"\"\n  key_file: \"\"\n  client_auth_type: x\n", Client::Plain, Outcome::Refused("missing one of cert or cert_file")),
        case("invalid config yml (cert path invalid)", Some("web_config_noAuth_certPath_invalid.bad.yml"), "tls_server_config:\n  cert_file: somefile\n  key_file: server.key\n", Client::Plain, Outcome::Refused("tls_server_config.cert_file: cannot read")),
        case("invalid config yml (key path invalid)", Some("web_config_noAuth_keyPath_invalid.bad.yml"), "tls_server_config:\n  cert_file: server.crt\n  key_file: somefile\n", Client::Plain, Outcome::Refused("tls_server_config.key_file: cannot read")),
        case("invalid config yml (cert path and key path invalid)", Some("web_config_noAuth_certPath_keyPath_invalid.bad.yml"), "tls_server_config:\n  cert_file: somefile\n  key_file: somefile\n", Client::Plain, Outcome::Refused("cannot read")),
        case("invalid config yml (invalid ClientAuth)", Some("web_config_noAuth.bad.yml"), &tls_with("  client_ca_file: /dev/null\n"), Client::Plain, Outcome::Refused("client ca set without a client auth policy")),
        case("invalid config yml (invalid ClientCAs filepath)", Some("web_config_auth_clientCAs_invalid.bad.yml"), &tls_with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: somefile\n"), Client::Plain, Outcome::Refused("tls_server_config.client_ca_file: cannot read")),
        case("invalid config yml (invalid user list)", Some("web_config_auth_user_list_invalid.bad.yml"), &tls_with("basic_auth_users:\n  john: doe\n"), Client::Plain, Outcome::Refused("basic_auth_users.john: invalid bcrypt hash")),
        case("invalid config yml (bad cipher)", Some("web_config_noAuth_inventedCiphers.bad.yml"), &tls_with("  cipher_suites:\n  - TLS_RSA_WITH_AES_128_CBC_SHA\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  - TLS_INVENTED_CIPHER\n"), Client::Plain, Outcome::Refused("unknown value \"TLS_INVENTED_CIPHER\"")),
        case("invalid config yml (bad curves)", Some("web_config_noAuth_inventedCurves.bad.yml"), &tls_with("  curve_preferences:\n  - CurveP257\n"), Client::Plain, Outcome::Refused("unknown value \"CurveP257\"")),
        case("invalid config yml (bad TLS version)", Some("web_config_noAuth_wrongTLSVersion.bad.yml"), &tls_with("  min_version: TLS111\n"), Client::Plain, Outcome::Refused("unknown value \"TLS111\"")),
        // TestServerBehaviour
        case("empty string YAMLConfigPath and default client", None, "", Client::Plain, Outcome::Status(200)),
        case("empty string YAMLConfigPath and TLS client", None, "", tls(), Outcome::Fails),
        // Go's server answers 400 "Client sent an HTTP request to an HTTPS server."; so does this one.
        case("valid tls config yml and default client", Some("web_config_noAuth.good.yml"), &no_auth_good, Client::Plain, Outcome::Status(400)),
        case("valid tls config yml and tls client", Some("web_config_noAuth.good.yml"), &no_auth_good, tls(), Outcome::Status(200)),
        case("valid tls config yml (cert and key inline) and tls client", Some("web_config_noAuth_tlsInline.good.yml"), &inline_cert, tls(), Outcome::Status(200)),
        case("valid tls config yml with TLS 1.1 client", Some("web_config_noAuth.good.yml"), &no_auth_good, Client::Hello { version: 0x0302, suites: &[0xc013, 0x002f] }, Outcome::Fails),
        case("valid tls config yml with all ciphers", Some("web_config_noAuth_allCiphers.good.yml"), &all_ciphers, tls(), Outcome::Status(200)),
        case("valid tls config yml with some ciphers", Some("web_config_noAuth_someCiphers.good.yml"), &some_ciphers, with_suites(&[AES128]), Outcome::Suite(AES128)),
        case("valid tls config yml with no common cipher", Some("web_config_noAuth_someCiphers.good.yml"), &some_ciphers, Client::Hello { version: 0x0303, suites: &[0xc014] }, Outcome::Fails),
        case("valid tls config yml with multiple client ciphers", Some("web_config_noAuth_someCiphers.good.yml"), &some_ciphers, with_suites(&[AES128, AES256]), Outcome::Suite(AES128)),
        case("valid tls config yml with multiple client ciphers, client chooses cipher", Some("web_config_noAuth_someCiphers_noOrder.good.yml"), &some_ciphers_no_order, with_suites(&[AES128, AES256]), Outcome::Suite(AES128)),
        case("valid tls config yml with all curves", Some("web_config_noAuth_allCurves.good.yml"), &tls_with("  client_auth_type: VerifyClientCertIfGiven\n  curve_preferences:\n    - CurveP256\n    - CurveP384\n    - CurveP521\n    - X25519\n    - X25519MLKEM768\n"), tls(), Outcome::Status(200)),
        case("valid tls config yml with some curves", Some("web_config_noAuth_someCurves.good.yml"), &some_curves, with_curves(&["CurveP521"]), Outcome::Status(200)),
        case("valid tls config yml with no common curves", Some("web_config_noAuth_someCurves.good.yml"), &some_curves, with_curves(&["CurveP384"]), Outcome::Fails),
        case("valid tls config yml with non-http2 ciphers", Some("web_config_noAuth_noHTTP2.good.yml"), &tls_with("  client_auth_type: VerifyClientCertIfGiven\n  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  max_version: TLS12\nhttp_server_config:\n  http2: false\n"), tls(), Outcome::Status(200)),
        case("valid tls config yml with non-http2 ciphers but http2 enabled", Some("web_config_noAuth_noHTTP2Cipher.bad.yml"), &tls_with("  client_auth_type: VerifyClientCertIfGiven\n  cipher_suites:\n    - TLS_RSA_WITH_AES_128_CBC_SHA\n  max_version: TLS12\n"), tls(), Outcome::Refused("which http/2 requires")),
        case("valid headers config", Some("web_config_headers.good.yml"), "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000; includeSubDomains\n    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1\n    Content-Security-Policy: \"default-src 'self' *.test.example.net\"\n", Client::Plain, Outcome::Status(200)),
        case("invalid X-Content-Type-Options headers config", Some("web_config_headers_content_type_options.bad.yml"), "http_server_config:\n  headers:\n    X-Content-Type-Options: foo\n", Client::Plain, Outcome::Refused("X-Content-Type-Options: invalid value \"foo\"")),
        case("invalid X-Frame-Options headers config", Some("web_config_headers_frame_options.bad.yml"), "http_server_config:\n  headers:\n    X-Frame-Options: allow\n", Client::Plain, Outcome::Refused("X-Frame-Options: invalid value \"allow\"")),
        case("HTTP header that can not be overridden", Some("web_config_headers_extra_header.bad.yml"), "http_server_config:\n  headers:\n    Content-Type: application/json\n", Client::Plain, Outcome::Refused("header \"Content-Type\" cannot be configured")),
        case("valid tls config yml and tls client with RequireAnyClientCert (present certificate)", Some("tls_config_noAuth.requireanyclientcert.good.yml"), &tls_with("  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n"), with_identity(|p| &p.selfsigned), Outcome::Status(200)),
        case("valid tls config yml (cert from file, key inline) and tls client with RequireAnyClientCert (present certificate)", Some("tls_config_noAuth.requireanyclientcertkeyinline.good.yml"), &format!("tls_server_config:\n  cert_file: server.crt\n  key: {}  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n", block(&p.server.key)), with_identity(|p| &p.selfsigned), Outcome::Status(200)),
        case("valid tls config yml and tls client with RequireAndVerifyClientCert (present certificate)", Some("tls_config_noAuth.requireandverifyclientcert.good.yml"), &tls_with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client_selfsigned.pem\n"), with_identity(|p| &p.selfsigned), Outcome::Status(200)),
        case("valid tls config yml and tls client with VerifyPeerCertificate (present good SAN DNS entry)", Some("web_config_auth_client_san.good.yaml"), &tls_with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client2_selfsigned.pem\n  client_allowed_sans:\n    - one\n    - test3\n    - two\n"), with_identity(|p| &p.selfsigned2), Outcome::Status(200)),
        case("valid tls config yml and tls client with VerifyPeerCertificate (present invalid SAN DNS entries)", Some("web_config_auth_client_san.bad.yaml"), &tls_with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client2_selfsigned.pem\n  client_allowed_sans:\n    - bad\n"), with_identity(|p| &p.selfsigned2), Outcome::Fails),
        Case { requests: 11, ..case("valid rate limiter (no rate limiter set up) that doesn't block", Some("web_config_rate_limiter_nonblocking.yaml"), "rate_limit:\n  interval: 0\n  burst: 0\n", Client::Plain, Outcome::Status(200)) },
        Case { requests: 11, ..case("valid rate limiter with an interval of one second", Some("web_config_rate_limiter_one_second.yaml"), "rate_limit:\n  interval: \"1s\"\n  burst: 0\n", Client::Plain, Outcome::Throttled) },
    ];
    // TestUsers
    for (name, file, yaml, client, auth, status) in [
        (
            "without basic auth",
            "web_config_users_noTLS.good.yml",
            users_yaml(),
            Client::Plain,
            None,
            401,
        ),
        (
            "with correct basic auth",
            "web_config_users_noTLS.good.yml",
            users_yaml(),
            Client::Plain,
            Some(("dave", "dave123")),
            200,
        ),
        (
            "without basic auth and TLS",
            "web_config_users.good.yml",
            users_tls.clone(),
            tls(),
            None,
            401,
        ),
        (
            "with correct basic auth and TLS",
            "web_config_users.good.yml",
            users_tls.clone(),
            tls(),
            Some(("dave", "dave123")),
            200,
        ),
        (
            "with another correct basic auth and TLS",
            "web_config_users.good.yml",
            users_tls.clone(),
            tls(),
            Some(("carol", "carol123")),
            200,
        ),
        (
            "with bad password and TLS",
            "web_config_users.good.yml",
            users_tls.clone(),
            tls(),
            Some(("dave", "bad")),
            401,
        ),
        (
            "with bad username and TLS",
            "web_config_users.good.yml",
            users_tls.clone(),
            tls(),
            Some(("nonexistent", "nonexistent")),
            401,
        ),
    ] {
        cases.push(Case {
            auth,
            ..case(name, Some(file), &yaml, client, Outcome::Status(status))
        });
    }
    cases
}

/// Runs one case: loads the file as `--web.config.file` does, then sends the requests.
async fn run(case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let security = match case.file {
        None => None,
        Some(name) => {
            let path = write_files(dir.path(), &case.yaml);
            let path = if name == "somefile" {
                dir.path().join(name)
            } else {
                path
            };
            match (Security::load(&path), case.outcome) {
                (Err(e), Outcome::Refused(wanted)) if e.to_string().contains(wanted) => {
                    return Ok(())
                }
                (Err(e), _) => return Err(format!("refused: {e}")),
                (Ok(_), Outcome::Refused(wanted)) => {
                    return Err(format!("accepted; expected a refusal with {wanted:?}"))
                }
                (Ok(s), _) => Some(s),
            }
        }
    };
    let server = serve(security).await;
    let mut statuses = Vec::new();
    for _ in 0..case.requests {
        match (
            request(server.addr, &case.client, case.auth).await,
            case.outcome,
        ) {
            (Err(_), Outcome::Fails) => return Ok(()),
            (Err(e), _) => return Err(format!("request failed: {e}")),
            (Ok(a), Outcome::Fails) => return Err(format!("answered, expected a failure: {a:?}")),
            (Ok(a), Outcome::Suite(wanted)) => {
                if a.status != 200 || a.suite.as_deref() != Some(wanted) {
                    return Err(format!("{a:?}, expected 200 over {wanted}"));
                }
            }
            (Ok(a), _) => statuses.push(a.status),
        }
    }
    match case.outcome {
        Outcome::Status(s) if statuses.iter().all(|&x| x == s) => Ok(()),
        Outcome::Throttled if statuses.contains(&429) => Ok(()),
        Outcome::Suite(_) => Ok(()),
        other => Err(format!("statuses {statuses:?}, expected {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_toolkit_test_table_gives_the_same_outcomes() {
    let mut failures = Vec::new();
    let cases = reference_cases();
    for case in &cases {
        let result = run(case).await;
        println!(
            "{:<4} {} [{}]",
            if result.is_ok() { "ok" } else { "FAIL" },
            case.name,
            case.file.unwrap_or("no web config")
        );
        if let Err(e) = result {
            failures.push(format!("{} ({}): {e}", case.name, case.file.unwrap_or("-")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Beyond the table

async fn serve_yaml(dir: &Path, yaml: &str) -> Running {
    let path = write_files(dir, yaml);
    serve(Some(Security::load(&path).unwrap())).await
}

async fn status(addr: SocketAddr, client: &Client) -> Result<u16, String> {
    request(addr, client, None).await.map(|a| a.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_auth_type_behaves_as_in_go() {
    let dir = tempfile::tempdir().unwrap();
    let none = tls();
    let good = with_identity(|p| &p.client);
    let stranger = with_identity(|p| &p.stranger);
    // (policy lines, no certificate, a certificate from the CA, one from another CA)
    for (policy, bare, from_ca, foreign) in [
        ("  client_auth_type: NoClientCert\n", true, true, true),
        ("  client_auth_type: RequestClientCert\n", true, true, true),
        (
            "  client_auth_type: RequestClientCert\n  client_ca_file: ca.crt\n",
            true,
            true,
            true,
        ),
        (
            "  client_auth_type: RequireAnyClientCert\n",
            false,
            true,
            true,
        ),
        (
            "  client_auth_type: RequireClientCert\n  client_ca_file: ca.crt\n",
            false,
            true,
            true,
        ),
        (
            "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n",
            true,
            true,
            false,
        ),
        (
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
            false,
            true,
            false,
        ),
    ] {
        let server = serve_yaml(dir.path(), &tls_with(policy)).await;
        for (client, wanted, what) in [
            (&none, bare, "no certificate"),
            (&good, from_ca, "the CA's"),
            (&stranger, foreign, "another CA's"),
        ] {
            let got = status(server.addr, client).await;
            assert_eq!(got.is_ok(), wanted, "{policy:?} with {what}: {got:?}");
        }
    }
    // The client CA inline.
    let server = serve_yaml(
        dir.path(),
        &tls_with(&format!(
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca: {}",
            block(&pki().ca)
        )),
    )
    .await;
    assert_eq!(status(server.addr, &good).await, Ok(200));
    assert!(status(server.addr, &stranger).await.is_err());
    // A self-signed client certificate that is not the CA is refused.
    let server = serve_yaml(dir.path(), &tls_with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client_selfsigned.pem\n")).await;
    assert_eq!(
        status(server.addr, &with_identity(|p| &p.selfsigned)).await,
        Ok(200)
    );
    assert!(status(server.addr, &with_identity(|p| &p.selfsigned2))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_sans_match_dns_ip_email_and_uri() {
    let dir = tempfile::tempdir().unwrap();
    let client = with_identity(|p| &p.selfsigned2);
    for (san, ok) in [
        ("test3", true),
        ("192.0.2.7", true),
        ("ops@example.com", true),
        ("spiffe://example.org/scraper", true),
        ("client1", false),
        ("192.0.2.8", false),
    ] {
        let server = serve_yaml(
            dir.path(),
            &tls_with(&format!(
                "  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [\"{san}\"]\n"
            )),
        )
        .await;
        assert_eq!(status(server.addr, &client).await.is_ok(), ok, "{san}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let client = || {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(pki().ca.as_bytes()).unwrap())
            .build()
            .unwrap()
    };
    let server = serve_yaml(dir.path(), SERVER).await;
    let r = client()
        .get(format!("https://127.0.0.1:{}/metrics", server.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, http::Version::HTTP_2)
    );
    assert!(r.text().await.unwrap().contains("hss_exporter_build_info"));
    let server = serve_yaml(
        dir.path(),
        &format!("{SERVER}http_server_config:\n  http2: false\n"),
    )
    .await;
    let r = client()
        .get(format!("https://127.0.0.1:{}/metrics", server.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, http::Version::HTTP_11)
    );
    // Plain HTTP stays HTTP/1.1, as Go's server without h2c.
    let server = serve(None).await;
    let r = reqwest::get(format!("http://{}/-/healthy", server.addr))
        .await
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_go_on_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("pw", 4).unwrap();
    let server = serve_yaml(
        dir.path(),
        &format!("http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n    Strict-Transport-Security: max-age=60\n    X-XSS-Protection: \"\"\nbasic_auth_users:\n  u: \"{hash}\"\n"),
    )
    .await;
    for auth in [None, Some(("u", "pw"))] {
        let a = request(server.addr, &Client::Plain, auth).await.unwrap();
        assert!(
            a.head.contains("x-frame-options: sameorigin")
                && a.head.contains("strict-transport-security: max-age=60"),
            "{}",
            a.head
        );
        assert!(
            !a.head.contains("x-xss-protection"),
            "an empty value leaves it unset"
        );
        if auth.is_some() {
            // Bodies keep their length (no chunked encoding).
            assert!(a.head.contains("content-length: 3"), "{}", a.head);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_below_tls12_serves_from_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_yaml(dir.path(), &tls_with("  min_version: TLS10\n")).await;
    assert_eq!(status(server.addr, &tls()).await, Ok(200));
    assert!(status(
        server.addr,
        &Client::Hello {
            version: 0x0302,
            suites: &[0xc013]
        }
    )
    .await
    .is_err());
    // The same hello at TLS 1.2 with a suite rustls has gets a ServerHello: the probe works.
    assert!(status(
        server.addr,
        &Client::Hello {
            version: 0x0303,
            suites: &[0xc02f]
        }
    )
    .await
    .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_apply_to_new_connections_and_broken_ones_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    // The toolkit's reload test: a policy that refuses a client without a certificate, then
    // the file swapped for one that lets it in.
    let path = write_files(
        dir.path(),
        &tls_with("  client_auth_type: RequireAndVerifyClientCert\n"),
    );
    let server = serve(Some(Security::load(&path).unwrap())).await;
    assert!(
        status(server.addr, &tls()).await.is_err(),
        "blocking config"
    );
    std::fs::write(
        &path,
        tls_with("  client_auth_type: VerifyClientCertIfGiven\n"),
    )
    .unwrap();
    assert_eq!(status(server.addr, &tls()).await, Ok(200), "swapped config");

    // A renewed certificate, written as cert-manager and certbot do (a new file moved in
    // place), is used by the next connection.
    let p = pki();
    let old_ca = tls();
    let new_ca = Client::Tls(Tls {
        roots: Some(|p| &p.ca2),
        ..Tls::default()
    });
    assert!(status(server.addr, &new_ca).await.is_err());
    std::fs::write(dir.path().join("server.key.new"), &p.rotated.key).unwrap();
    std::fs::write(dir.path().join("server.crt.new"), &p.rotated.cert).unwrap();
    std::fs::rename(
        dir.path().join("server.key.new"),
        dir.path().join("server.key"),
    )
    .unwrap();
    std::fs::rename(
        dir.path().join("server.crt.new"),
        dir.path().join("server.crt"),
    )
    .unwrap();
    assert_eq!(
        status(server.addr, &new_ca).await,
        Ok(200),
        "rotated certificate"
    );
    assert!(status(server.addr, &old_ca).await.is_err());

    // A broken file leaves the last good settings in force; fixing it applies the fix.
    std::fs::write(&path, "tls_server_config: [broken\n").unwrap();
    assert_eq!(
        status(server.addr, &new_ca).await,
        Ok(200),
        "last good config"
    );
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(
        &path,
        format!("{SERVER}basic_auth_users:\n  u: \"{hash}\"\n"),
    )
    .unwrap();
    assert_eq!(status(server.addr, &new_ca).await, Ok(401), "users added");
    // A key that does not fit the certificate (half-way through a renewal) is skipped too.
    std::fs::write(dir.path().join("server.key"), &p.client.key).unwrap();
    assert_eq!(
        status(server.addr, &new_ca).await,
        Ok(401),
        "last good certificate"
    );
    std::fs::write(dir.path().join("server.key"), &p.rotated.key).unwrap();
    // Switching to plain HTTP needs a restart: refused, the last good settings stay.
    std::fs::write(&path, "basic_auth_users: {}\n").unwrap();
    assert_eq!(status(server.addr, &new_ca).await, Ok(401));
    let addr = server.addr;
    let e = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut s, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 12];
        let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
        buf[..n].to_vec()
    })
    .await
    .unwrap();
    assert!(e.starts_with(b"HTTP/1.0 400"), "still TLS: {e:?}");

    // A file naming certificate files that are not there yet is skipped until they appear.
    std::fs::write(
        &path,
        "tls_server_config:\n  cert_file: later.crt\n  key_file: later.key\n",
    )
    .unwrap();
    assert_eq!(status(addr, &new_ca).await, Ok(401), "last good config");
    std::fs::write(dir.path().join("later.key"), &p.server.key).unwrap();
    std::fs::write(dir.path().join("later.crt"), &p.server.cert).unwrap();
    assert_eq!(status(addr, &old_ca).await, Ok(200), "the files appeared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cost_18_user_does_not_delay_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_files(dir.path(), &format!("{SERVER}{}", users_yaml()));
    let start = Instant::now();
    let security = Security::load(&path).unwrap();
    let server = serve(Some(security)).await;
    let first = request(server.addr, &tls(), None).await.unwrap();
    let elapsed = start.elapsed();
    println!("load + listen + first answer with a cost-18 user: {elapsed:?}");
    assert_eq!(first.status, 401);
    // Generous: a debug build on a busy 2-core machine. The release build takes ~ms.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

// ---------------------------------------------------------------------------------------
// Through the whole exporter

async fn start(web: &Path) -> (hss_exporter::Exporter, hss_exporter::sim::SimServer) {
    let (_sim, server) = sim().await;
    let security = Security::load(web).unwrap();
    let options = Options {
        web: Some(Arc::new(security)),
        ..Options::default()
    };
    (exporter_with(&config(), &server, options).await, server)
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki().ca.as_bytes()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn basic_auth_guards_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("scrape-secret", 4).unwrap();
    let web = write_files(
        dir.path(),
        &format!("{SERVER}basic_auth_users:\n  prometheus: \"{hash}\"\n"),
    );
    let (exporter, _server) = start(&web).await;
    let c = reqwest_client();
    for path in ["/metrics", "/", "/-/healthy", "/nope"] {
        let url = format!("https://127.0.0.1:{}{path}", exporter.addr.port());
        let r = c.get(&url).send().await.unwrap();
        if path == "/nope" {
            assert_eq!(r.status(), 404);
            continue;
        }
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"hss-exporter\", charset=\"UTF-8\""
        );
        for (user, password) in [
            ("prometheus", "wrong"),
            ("nobody", "scrape-secret"),
            ("prometheus", ""),
        ] {
            let r = c
                .get(&url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path} {user}:{password}");
        }
        // Twice: the second answer comes from the cache and must be the same.
        for _ in 0..2 {
            let r = c
                .get(&url)
                .basic_auth("prometheus", Some("scrape-secret"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
        }
    }
    let body = c
        .get(format!(
            "https://127.0.0.1:{}/metrics",
            exporter.addr.port()
        ))
        .basic_auth("prometheus", Some("scrape-secret"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains("scrape-secret") && !body.contains(&hash));
    exporter.shutdown().await;
}

#[tokio::test]
async fn the_binary_refuses_a_bad_file_naming_the_flag_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hss-exporter"))
        .args([
            "demo",
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.config.file",
        ])
        .arg(write_files(dir.path(), &tls_with("  min_version: TLS14\n")))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--web.config.file")
            && stderr.contains("tls_server_config.min_version: unknown value \"TLS14\""),
        "{stderr}"
    );
    // A key that is not the certificate's.
    std::fs::write(dir.path().join("server.key"), &pki().client.key).unwrap();
    std::fs::write(dir.path().join("web.yml"), SERVER).unwrap();
    let e = Security::load(&dir.path().join("web.yml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tls_server_config: certificate and key do not fit"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// Measurement (run on purpose: `cargo test --release --test security -- --ignored --nocapture`)

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// A flood of wrong passwords, 64 at a time from 8 loopback addresses, bounded in count and time, while
/// the right scraper scrapes `/metrics` over a keep-alive connection: its p99 must stay
/// within twice its quiet p99 (plus a millisecond for timer noise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --release --ignored"]
async fn wrong_password_flood_leaves_the_scraper_fast() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("right", 10).unwrap();
    let web = write_files(
        dir.path(),
        &format!("basic_auth_users:\n  prometheus: \"{hash}\"\n"),
    );
    let server = serve(Some(Security::load(&web).unwrap())).await;
    let addr = server.addr;
    let scraper = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let scrape = |n: usize| {
        let scraper = scraper.clone();
        async move {
            let mut times = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                let r = scraper
                    .get(format!("http://{addr}/metrics"))
                    .basic_auth("prometheus", Some("right"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                times.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            times
        }
    };
    scrape(5).await; // verified once, then cached
    let quiet = p99(scrape(400).await);
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..64u8)
        .map(|task| {
            let host = task % 8;
            let stop = stop.clone();
            tokio::spawn(async move {
                let c = reqwest::Client::builder()
                    .local_address(IpAddr::from([127, 0, 3, host + 1]))
                    .build()
                    .unwrap();
                let mut sent = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 5000 {
                    let user = if sent % 2 == 0 {
                        "prometheus"
                    } else {
                        "mallory"
                    };
                    let _ = c
                        .get(format!("http://{addr}/metrics"))
                        .basic_auth(user, Some(format!("wrong-{task}-{sent}")))
                        .send()
                        .await;
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flooded = p99(scrape(400).await);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for f in flood {
        sent += f.await.unwrap();
    }
    println!("scraper p99: quiet {quiet:?}, during a flood of {sent} wrong passwords {flooded:?}");
    assert!(
        flooded <= quiet * 2 + Duration::from_millis(1),
        "quiet {quiet:?}, flooded {flooded:?}"
    );
}
