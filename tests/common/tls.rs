//! A private CA made in the test, and server certificates it signs: good ones, expired ones
//! and ones made out to another name, for the simulator served over HTTPS.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and its key.
pub struct Pki {
    ca: rcgen::Certificate,
    key: KeyPair,
}

/// Which validity a server certificate gets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From 2020 to 2100.
    Current,
    /// 2020 only: expired.
    Expired,
}

impl Pki {
    /// A fresh CA.
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hss-exporter test CA");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Pki { ca, key }
    }

    /// The CA certificate, PEM, for `tls.ca_file` or `SSL_CERT_FILE`.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A server configuration with a certificate for `names` (host names or IP addresses).
    pub fn acceptor(&self, names: &[&str], validity: Validity) -> Arc<rustls::ServerConfig> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = match validity {
            Validity::Current => rcgen::date_time_ymd(2100, 1, 1),
            Validity::Expired => rcgen::date_time_ymd(2021, 1, 1),
        };
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Arc::new(config)
    }
}
