//! The HTTP clients the API calls go through: one per distinct [`Network`] (proxy and TLS
//! trust), all on one rustls configuration whose roots are the operating system's trust store
//! (loaded once per process; `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured), plus an
//! account's own CA file. And what a failed TLS handshake means, in words.

use std::sync::{Arc, Mutex, OnceLock};

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::client::USER_AGENT;
use crate::model::{Network, TlsSettings};

/// The roots every client trusts: the system's trust store, or Mozilla's compiled-in roots
/// when the system has none (a scratch container). Loaded once, whatever the number of
/// accounts, exporters in the process, or reloads.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for e in &loaded.errors {
                tracing::warn!(error = %e, "cannot read part of the system trust store");
            }
            let mut store = rustls::RootCertStore::empty();
            let (added, ignored) = store.add_parsable_certificates(loaded.certs);
            if added == 0 {
                tracing::warn!(
                    "the system trust store holds no certificate; trusting the compiled-in Mozilla roots (install ca-certificates, or set SSL_CERT_FILE)"
                );
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            } else {
                tracing::debug!(added, ignored, "loaded the system trust store");
            }
            Arc::new(store)
        })
        .clone()
}

/// The HTTP clients of every account, one per distinct network settings, so that accounts
/// that reach the API the same way share a connection pool.
pub struct HttpClients {
    /// Built so far, by settings. A handful at most: a linear search is all it needs.
    built: Mutex<Vec<(Network, reqwest::Client)>>,
    /// For metadata services, built on first use.
    metadata: Mutex<Option<reqwest::Client>>,
}

impl HttpClients {
    /// No client yet; each is built when an account first asks for it.
    pub fn new() -> HttpClients {
        HttpClients {
            built: Mutex::new(Vec::new()),
            metadata: Mutex::new(None),
        }
    }

    /// The client for metadata services: direct (the service is link-local, and a proxy
    /// would reach another server's), and without keep-alive, since it is asked a few times
    /// a day and may close an idle connection just as it is reused.
    pub fn metadata_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let mut client = self
            .metadata
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = client.as_ref() {
            return Ok(c.clone());
        }
        let built = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .use_preconfigured_tls(tls_config(&TlsSettings::default()))
            .build()?;
        *client = Some(built.clone());
        Ok(built)
    }

    /// The client of `network`, built on first use.
    pub fn client(&self, network: &Network) -> Result<reqwest::Client, reqwest::Error> {
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, client)) = built.iter().find(|(n, _)| n == network) {
            return Ok(client.clone());
        }
        let client = build(network)?;
        built.push((network.clone(), client.clone()));
        Ok(client)
    }
}

impl Default for HttpClients {
    fn default() -> Self {
        HttpClients::new()
    }
}

/// A client for `network`: its proxies (with the proxy environment of the process ignored:
/// the configuration has already read it) and its TLS trust.
pub fn build(network: &Network) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .use_preconfigured_tls(tls_config(&network.tls));
    let no_proxy = network
        .proxy
        .no_proxy
        .as_deref()
        .and_then(reqwest::NoProxy::from_string);
    if let Some(p) = &network.proxy.http {
        builder = builder.proxy(reqwest::Proxy::http(p.url.expose())?.no_proxy(no_proxy.clone()));
    }
    if let Some(p) = &network.proxy.https {
        builder = builder.proxy(reqwest::Proxy::https(p.url.expose())?.no_proxy(no_proxy));
    }
    builder.build()
}

/// The rustls configuration of `tls`: the system roots plus its CA file, or no verification
/// at all when it says so.
fn tls_config(tls: &TlsSettings) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    if tls.insecure_skip_verify {
        return builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth();
    }
    let roots = if tls.ca_certs.is_empty() {
        system_roots()
    } else {
        let mut roots = (*system_roots()).clone();
        // Checked when the configuration was read.
        let (_added, _ignored) = roots.add_parsable_certificates(
            tls.ca_certs
                .iter()
                .map(|der| CertificateDer::from(der.clone())),
        );
        Arc::new(roots)
    };
    builder.with_root_certificates(roots).with_no_client_auth()
}

/// `insecure_skip_verify`: any certificate is accepted. The handshake's signatures are still
/// checked, so the connection is at least with the holder of the certificate shown.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What went wrong in a TLS handshake, in words, if `error`'s chain holds a TLS error.
pub(crate) fn tls_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(describe(t));
        }
        // An I/O error's `source` skips the error it wraps (itself often an I/O error
        // around the TLS error): look inside.
        let mut inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        while let Some(i) = inner {
            if let Some(t) = i.downcast_ref::<rustls::Error>() {
                return Some(describe(t));
            }
            inner = i
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref);
        }
        next = e.source();
    }
    None
}

fn when(t: UnixTime) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs()),
    )
    .to_string()
}

fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                CertificateError::UnknownIssuer => "unknown issuer: no trusted CA signed it (add the CA to the system trust store or to the account's tls.ca_file)".to_string(),
                CertificateError::Expired => "it has expired".to_string(),
                CertificateError::ExpiredContext { time, not_after } => format!(
                    "it expired at {} (now {})",
                    when(*not_after),
                    when(*time)
                ),
                CertificateError::NotValidYet => "it is not valid yet".to_string(),
                CertificateError::NotValidYetContext { time, not_before } => format!(
                    "it is not valid before {} (now {}; check the clock)",
                    when(*not_before),
                    when(*time)
                ),
                CertificateError::NotValidForName => "wrong name: it is made out to another host name".to_string(),
                CertificateError::NotValidForNameContext { expected, presented } => format!(
                    "wrong name: it is not valid for {} (it names {})",
                    expected.to_str(),
                    if presented.is_empty() {
                        "no host".to_string()
                    } else {
                        presented.join(", ")
                    }
                ),
                CertificateError::Revoked => "it has been revoked".to_string(),
                CertificateError::BadSignature => "its signature is invalid".to_string(),
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                    "it is not a server certificate".to_string()
                }
                other => format!("{other:?}"),
            };
            format!("the server's certificate is not accepted: {why}")
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "the server does not speak TLS as expected ({e}); is the endpoint's scheme right?"
        ),
        rustls::Error::AlertReceived(alert) => {
            format!("the server refused the handshake (alert {alert:?})")
        }
        other => other.to_string(),
    }
}
