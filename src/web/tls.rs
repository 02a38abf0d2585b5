//! `tls_server_config` as rustls settings: the certificate, the client-certificate policy
//! with Go's semantics, Go cipher and curve names mapped to what rustls implements, and
//! the ALPN protocols.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::aws_lc_rs::{self as provider, cipher_suite, kx_group};
use tokio_rustls::rustls::crypto::{
    ActiveKeyExchange, SharedSecret, SupportedKxGroup, WebPkiSupportedAlgorithms,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, NamedGroup, RootCertStore,
    SignatureScheme, SupportedCipherSuite,
};

use super::config::{ClientAuth, Failure, Pem, Problem, TlsSettings, TlsVersion, CIPHER_SUITES};

const AT: &str = "tls_server_config";

/// ECDH on P-521 (Go's `CurveP521`), which rustls's providers leave out; computed by
/// aws-lc. Public so that tests can offer it from a client.
pub static P521: &dyn SupportedKxGroup = &P521Group;

/// TLS settings built from a web config, and what loading them had to say.
pub(super) struct Built {
    pub(super) config: Arc<rustls::ServerConfig>,
    /// Settings that were skipped (names rustls does not implement); logged once a load.
    pub(super) warnings: Vec<String>,
}

/// Reads the certificate, key and client CA and builds the rustls server settings.
pub(super) fn build(t: &TlsSettings, http2: bool) -> Result<Built, Failure> {
    let mut warnings = Vec::new();
    let cert_text = read(&t.cert, "cert_file", "cert")?;
    let key_text = read(&t.key, "key_file", "key")?;
    let certs = rustls_pemfile::certs(&mut &cert_text.bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(&t.cert, "cert", &cert_text.what, &e))?;
    if certs.is_empty() {
        return Err(Failure::invalid(
            key_of(&t.cert, "cert_file", "cert"),
            Problem::NoCertificate(cert_text.what),
        ));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_text.bytes[..])
        .map_err(|e| bad_pem(&t.key, "key", &key_text.what, &e))?
        .ok_or_else(|| {
            Failure::invalid(
                key_of(&t.key, "key_file", "key"),
                Problem::NoKey(key_text.what.clone()),
            )
        })?;

    // Versions: rustls has no TLS 1.0 or 1.1, so a lower minimum serves from TLS 1.2.
    let min = if t.min_version < TlsVersion::V12 {
        warnings.push(format!(
            "{AT}.min_version: {} is below TLS12, the oldest version rustls implements; serving TLS12 and up",
            t.min_version.name()
        ));
        TlsVersion::V12
    } else {
        t.min_version
    };
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::V12, &rustls::version::TLS12),
        (TlsVersion::V13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=t.max_version).contains(v))
    .map(|(_, p)| p)
    .collect();

    let mut provider = provider::default_provider();
    let tls12_served = versions.contains(&&rustls::version::TLS12);
    provider.cipher_suites = cipher_suites(&t.cipher_suites, tls12_served, &mut warnings)?;
    provider.kx_groups = kx_groups(&t.curves, &mut warnings);
    let provider = Arc::new(provider);
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| Failure::invalid(AT, Problem::Tls(e.to_string())))?;
    let builder = if t.client_auth == ClientAuth::None {
        builder.with_no_client_auth()
    } else {
        let ca = match &t.client_ca {
            None => None,
            Some(pem) => {
                let text = read(pem, "client_ca_file", "client_ca")?;
                let certs: Vec<CertificateDer<'static>> =
                    rustls_pemfile::certs(&mut &text.bytes[..])
                        .collect::<Result<_, _>>()
                        .map_err(|e| bad_pem(pem, "client_ca", &text.what, &e))?;
                if certs.is_empty() {
                    warnings.push(format!(
                        "{}: {} holds no certificate; every client certificate will fail verification",
                        key_of(pem, "client_ca_file", "client_ca"),
                        text.what
                    ));
                }
                Some(certs)
            }
        };
        builder.with_client_cert_verifier(Arc::new(ClientVerifier::new(
            t.client_auth,
            ca,
            t.allowed_sans.clone(),
            provider.signature_verification_algorithms,
            &mut warnings,
        )))
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| Failure::invalid(AT, Problem::KeyMismatch(e.to_string())))?;
    // Go's server (with PreferServerCipherSuites) picks in its own order; rustls can.
    config.ignore_client_order = t.prefer_server_cipher_suites;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Built {
        config: Arc::new(config),
        warnings,
    })
}

/// PEM text and how to name it in a message.
struct Text {
    bytes: Vec<u8>,
    what: String,
}

fn read(pem: &Pem, file_key: &str, inline_key: &str) -> Result<Text, Failure> {
    match pem {
        Pem::Inline(s) => Ok(Text {
            bytes: s.as_bytes().to_vec(),
            what: format!("inline {inline_key}"),
        }),
        Pem::File(p) => {
            let bytes = std::fs::read(p).map_err(|source| {
                Failure::invalid(
                    format!("{AT}.{file_key}"),
                    Problem::CannotRead {
                        path: p.clone(),
                        source,
                    },
                )
            })?;
            Ok(Text {
                bytes,
                what: p.display().to_string(),
            })
        }
    }
}

fn key_of(pem: &Pem, file_key: &str, inline_key: &str) -> String {
    match pem {
        Pem::File(_) => format!("{AT}.{file_key}"),
        Pem::Inline(_) => format!("{AT}.{inline_key}"),
    }
}

fn bad_pem(pem: &Pem, inline_key: &str, what: &str, e: &dyn std::fmt::Display) -> Failure {
    let file_key = format!("{inline_key}_file");
    Failure::invalid(
        key_of(pem, &file_key, inline_key),
        Problem::BadPem {
            what: what.into(),
            reason: e.to_string().to_lowercase(),
        },
    )
}

/// The rustls suite for a Go name, or `None` for one rustls does not implement.
fn suite(name: &str) -> Option<SupportedCipherSuite> {
    Some(match name {
        "TLS_AES_128_GCM_SHA256" => cipher_suite::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cipher_suite::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// The suites to serve: every TLS 1.3 suite (Go does not let `cipher_suites` restrict TLS
/// 1.3), then the listed TLS 1.2 suites in order, or rustls's defaults when none is listed.
/// A list that names only suites rustls lacks is refused when TLS 1.2 is served.
fn cipher_suites(
    names: &[String],
    tls12_served: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<SupportedCipherSuite>, Failure> {
    let defaults = provider::DEFAULT_CIPHER_SUITES;
    let mut suites: Vec<SupportedCipherSuite> = defaults
        .iter()
        .copied()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .collect();
    if names.is_empty() {
        suites.extend(
            defaults
                .iter()
                .copied()
                .filter(|s| s.version() == &rustls::version::TLS12),
        );
        return Ok(suites);
    }
    let mut skipped = Vec::new();
    let mut tls12 = 0;
    for name in names {
        debug_assert!(CIPHER_SUITES.iter().any(|(n, _)| n == name));
        match suite(name) {
            None => skipped.push(name.as_str()),
            Some(s) if s.version() == &rustls::version::TLS12 => {
                if !suites.contains(&s) {
                    suites.push(s);
                }
                tls12 += 1;
            }
            Some(_) => {}
        }
    }
    if !skipped.is_empty() {
        if tls12 == 0 && tls12_served {
            return Err(Failure::invalid(
                format!("{AT}.cipher_suites"),
                Problem::NoImplementedSuite(skipped.join(", ")),
            ));
        }
        warnings.push(format!(
            "{AT}.cipher_suites: skipping {}, which rustls does not implement",
            skipped.join(", ")
        ));
    }
    Ok(suites)
}

/// The key-exchange groups for Go curve names, in preference order; Go's default set when
/// none is listed.
fn kx_groups(names: &[String], warnings: &mut Vec<String>) -> Vec<&'static dyn SupportedKxGroup> {
    let group = |name: &str| -> &'static dyn SupportedKxGroup {
        match name {
            "CurveP256" => kx_group::SECP256R1,
            "CurveP384" => kx_group::SECP384R1,
            "CurveP521" => P521,
            "X25519MLKEM768" => kx_group::X25519MLKEM768,
            _ => kx_group::X25519,
        }
    };
    if names.is_empty() {
        return [
            "X25519MLKEM768",
            "X25519",
            "CurveP256",
            "CurveP384",
            "CurveP521",
        ]
        .into_iter()
        .map(group)
        .collect();
    }
    let mut out: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in names {
        let g = group(name);
        if out.iter().any(|o| o.name() == g.name()) {
            warnings.push(format!("{AT}.curve_preferences: {name} is listed twice"));
        } else {
            out.push(g);
        }
    }
    out
}

/// Client certificates as Go's `crypto/tls` treats them for each `client_auth_type`, with
/// `client_allowed_sans` checked on top.
#[derive(Debug)]
struct ClientVerifier {
    mode: ClientAuth,
    /// The configured client CAs, DER; `None`: none configured (the system's roots verify).
    ca: Option<Vec<CertificateDer<'static>>>,
    /// Verifies chains against `ca`; `None` when it holds no usable anchor.
    chains: Option<Arc<dyn ClientCertVerifier>>,
    hints: Vec<DistinguishedName>,
    allowed_sans: Option<Vec<String>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientVerifier {
    fn new(
        mode: ClientAuth,
        ca: Option<Vec<CertificateDer<'static>>>,
        allowed_sans: Option<Vec<String>>,
        algorithms: WebPkiSupportedAlgorithms,
        warnings: &mut Vec<String>,
    ) -> ClientVerifier {
        let (chains, hints) = if let Some(certs) = &ca {
            let mut roots = RootCertStore::empty();
            let (_, ignored) = roots.add_parsable_certificates(certs.iter().cloned());
            if ignored > 0 {
                warnings.push(format!(
                        "{AT}.client_ca_file: {ignored} certificate(s) cannot be trust anchors and are ignored"
                    ));
            }
            let hints = roots.subjects();
            (chain_verifier(roots), hints)
        } else {
            if matches!(
                mode,
                ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify
            ) {
                warnings.push(format!(
                        "{AT}: {} without a client CA: client certificates are verified against the system's roots",
                        mode.name()
                    ));
            }
            (None, Vec::new())
        };
        ClientVerifier {
            mode,
            ca,
            chains,
            hints,
            allowed_sans,
            algorithms,
        }
    }

    /// Go accepts a client certificate that is itself in the client CA pool (a self-signed
    /// client certificate used as its own CA), if it is within its validity and may be used
    /// for client authentication.
    fn trusted_as_is(&self, end_entity: &CertificateDer<'_>, now: UnixTime) -> bool {
        let Some(ca) = &self.ca else {
            return false;
        };
        if !ca.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return false;
        }
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
            return false;
        };
        let now = now.as_secs() as i64;
        let validity = cert.validity();
        if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
            return false;
        }
        match cert.extended_key_usage() {
            Ok(None) => true,
            Ok(Some(eku)) => eku.value.any || eku.value.client_auth,
            Err(_) => false,
        }
    }

    fn check_sans(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let Some(allowed) = &self.allowed_sans else {
            return Ok(());
        };
        let refused = || rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        let (_, cert) =
            x509_parser::parse_x509_certificate(end_entity.as_ref()).map_err(|_| refused())?;
        let sans = certificate_sans(&cert);
        if sans.iter().any(|s| allowed.contains(s)) {
            Ok(())
        } else {
            tracing::debug!(
                ?sans,
                "client certificate has no SAN of client_allowed_sans"
            );
            Err(refused())
        }
    }
}

/// The DNS, e-mail, IP and URI SANs of a certificate, written as Go writes them.
fn certificate_sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some((*s).to_string())
            }
            GeneralName::IPAddress(b) => ip_text(b),
            _ => None,
        })
        .collect()
}

/// An IP SAN as Go's `net.IP.String()` writes it (an IPv4-mapped IPv6 address as IPv4).
fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => {
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            Some(
                v6.to_ipv4_mapped()
                    .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
            )
        }
        _ => None,
    }
}

fn chain_verifier(roots: RootCertStore) -> Option<Arc<dyn ClientCertVerifier>> {
    if roots.is_empty() {
        return None;
    }
    let provider = Arc::new(provider::default_provider());
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .ok()
}

/// The system's roots, read once, for `VerifyClientCertIfGiven`/`RequireAndVerifyClientCert`
/// without a client CA (Go verifies against the system pool then). Where Go looks on Linux.
fn system_verifier() -> Option<Arc<dyn ClientCertVerifier>> {
    static SYSTEM: OnceLock<Option<Arc<dyn ClientCertVerifier>>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
            let files = env.into_iter().chain(
                [
                    "/etc/ssl/certs/ca-certificates.crt",
                    "/etc/pki/tls/certs/ca-bundle.crt",
                    "/etc/ssl/ca-bundle.pem",
                    "/etc/pki/tls/cacert.pem",
                    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
                    "/etc/ssl/cert.pem",
                ]
                .into_iter()
                .map(PathBuf::from),
            );
            for file in files {
                if let Ok(bytes) = std::fs::read(Path::new(&file)) {
                    let mut reader = &bytes[..];
                    let certs: Vec<_> = rustls_pemfile::certs(&mut reader)
                        .filter_map(Result::ok)
                        .collect();
                    roots.add_parsable_certificates(certs);
                    break;
                }
            }
            chain_verifier(roots)
        })
        .clone()
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.mode != ClientAuth::None
    }

    fn client_auth_mandatory(&self) -> bool {
        matches!(
            self.mode,
            ClientAuth::RequireAny | ClientAuth::RequireAndVerify
        )
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.mode {
            ClientAuth::None | ClientAuth::Request | ClientAuth::RequireAny => {
                // Not verified, but it must be a certificate.
                if x509_parser::parse_x509_certificate(end_entity.as_ref()).is_err() {
                    return Err(rustls::Error::InvalidCertificate(
                        CertificateError::BadEncoding,
                    ));
                }
            }
            ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify => {
                let verifier = if self.ca.is_some() {
                    self.chains.clone()
                } else {
                    system_verifier()
                };
                let verified = match verifier {
                    Some(v) => v
                        .verify_client_cert(end_entity, intermediates, now)
                        .map(|_| ()),
                    None => Err(rustls::Error::InvalidCertificate(
                        CertificateError::UnknownIssuer,
                    )),
                };
                if let Err(e) = verified {
                    if !self.trusted_as_is(end_entity, now) {
                        return Err(e);
                    }
                }
            }
        }
        self.check_sans(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct P521Group;

/// Bytes of an uncompressed P-521 point: 0x04, then x and y of 66 bytes each.
const P521_POINT_LEN: usize = 133;

impl SupportedKxGroup for P521Group {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        use aws_lc_rs::agreement;
        let private = agreement::PrivateKey::generate(&agreement::ECDH_P521)
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        let public = private
            .compute_public_key()
            .map_err(|_| rustls::Error::General("p-521 public key".into()))?
            .as_ref()
            .to_vec();
        Ok(Box::new(P521Exchange { private, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

struct P521Exchange {
    private: aws_lc_rs::agreement::PrivateKey,
    public: Vec<u8>,
}

impl ActiveKeyExchange for P521Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        use aws_lc_rs::agreement;
        let invalid = rustls::Error::from(rustls::PeerMisbehaved::InvalidKeyShare);
        if peer.len() != P521_POINT_LEN || peer[0] != 0x04 {
            return Err(invalid);
        }
        let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P521, peer);
        agreement::agree(&self.private, peer, invalid, |secret| {
            Ok(SharedSecret::from(secret))
        })
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp521r1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_go_name_maps_or_is_known_unimplemented() {
        for (name, implemented) in CIPHER_SUITES {
            assert_eq!(suite(name).is_some(), *implemented, "{name}");
        }
        let mut warnings = Vec::new();
        let only_cbc = ["TLS_RSA_WITH_AES_128_CBC_SHA".to_string()];
        assert!(matches!(
            cipher_suites(&only_cbc, true, &mut warnings),
            Err(Failure::Invalid(_, Problem::NoImplementedSuite(_)))
        ));
        let mixed = [
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".to_string(),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string(),
        ];
        let suites = cipher_suites(&mixed, true, &mut warnings).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
            "{warnings:?}"
        );
        assert_eq!(
            suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS12)
                .count(),
            1
        );
        assert_eq!(
            suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .count(),
            3
        );
        // Only TLS 1.3 served: the TLS 1.2 list does not matter, as in Go.
        assert!(cipher_suites(&only_cbc, false, &mut warnings).is_ok());
    }

    #[test]
    fn p521_agrees_with_itself() {
        let a = P521.start().unwrap();
        let b = P521.start().unwrap();
        let b_pub = b.pub_key().to_vec();
        let s1 = a.complete(&b_pub[..]);
        assert!(s1.is_ok());
        assert!(P521.start().unwrap().complete(&[4u8; 10]).is_err());
        assert_eq!(ip_text(&[127, 0, 0, 1]).as_deref(), Some("127.0.0.1"));
        let mapped = std::net::Ipv4Addr::new(10, 0, 0, 1)
            .to_ipv6_mapped()
            .octets();
        assert_eq!(ip_text(&mapped).as_deref(), Some("10.0.0.1"));
    }
}
