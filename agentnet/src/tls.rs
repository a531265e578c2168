//! TLS material: PEM parsing, client configurations for rustls (ring
//! backend), the system trust store for plain https downloads, and a
//! verifier that only records the chain a server presents (used to find the
//! certificate that matches a CA pin, never to trust a server).

use std::sync::{Arc, Mutex};

use anyhow::{bail, ensure, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The crypto provider every configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM bundle (at least one).
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("not a valid PEM certificate: {e}"))?;
    ensure!(
        !certs.is_empty(),
        "no PEM certificate (-----BEGIN CERTIFICATE-----) found"
    );
    for c in &certs {
        crate::x509::spki_der(c).context("a PEM block is not an X.509 certificate")?;
    }
    Ok(certs)
}

/// The first private key in a PEM document (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(k) => Ok(k),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            bail!("no PEM private key (-----BEGIN ... PRIVATE KEY-----) found")
        }
        // The error text never contains key material.
        Err(e) => bail!("not a valid PEM private key: {e}"),
    }
}

/// Check that the private key in `key_pem` belongs to the first certificate
/// in `cert_pem`.
pub fn check_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<()> {
    let certs = parse_certs(cert_pem)?;
    let key = parse_key(key_pem)?;
    rustls::sign::CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| anyhow::anyhow!("the key does not belong to the certificate ({e})"))?;
    Ok(())
}

fn roots(ca_pem: &[u8]) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for c in parse_certs(ca_pem)? {
        roots
            .add(c)
            .context("the CA certificate cannot be used as a trust anchor")?;
    }
    Ok(Arc::new(roots))
}

/// Check that the first certificate in `cert_pem` (followed by its
/// intermediates) is valid under `ca_pem` as a TLS server for `host` (an IP
/// address or DNS name), the way a client will check it.
pub fn verify_server_cert(ca_pem: &[u8], cert_pem: &[u8], host: &str) -> Result<()> {
    let chain = parse_certs(cert_pem)?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca_pem)?, provider())
            .build()
            .context("cannot build a verifier from the CA")?;
    let name = ServerName::try_from(host.to_string()).context("invalid host name")?;
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map_err(|e| anyhow::anyhow!("not valid as a TLS server for {host} under the CA: {e}"))?;
    Ok(())
}

/// Check that the first certificate in `cert_pem` is valid under `ca_pem`
/// as a TLS client certificate.
pub fn verify_client_cert(ca_pem: &[u8], cert_pem: &[u8]) -> Result<()> {
    let chain = parse_certs(cert_pem)?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
            .build()
            .context("cannot build a verifier from the CA")?;
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map_err(|e| anyhow::anyhow!("not valid as a TLS client certificate under the CA: {e}"))?;
    Ok(())
}

/// A client configuration that trusts exactly `ca` and, given an identity,
/// authenticates with that certificate chain and key.
pub fn client_config(
    ca: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots
            .add(c.clone())
            .context("the CA certificate cannot be used as a trust anchor")?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let cfg = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .context("the client certificate does not match its key")?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// Where Debian and Fedora keep the system's trusted CA bundle.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// A client configuration trusting the system's CA bundle (https downloads).
pub fn system_config() -> Result<Arc<ClientConfig>> {
    for path in SYSTEM_BUNDLES {
        if let Ok(pem) = std::fs::read(path) {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(certs);
            if !roots.is_empty() {
                let cfg = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                return Ok(Arc::new(cfg));
            }
        }
    }
    bail!(
        "no system CA bundle found (looked at {})",
        SYSTEM_BUNDLES.join(", ")
    )
}

/// Records the chain a server presents and accepts it. Only for looking at
/// the chain: nothing may be sent over a connection verified this way.
#[derive(Debug)]
pub struct ChainRecorder {
    provider: Arc<CryptoProvider>,
    seen: Mutex<Vec<CertificateDer<'static>>>,
}

impl ChainRecorder {
    /// A client configuration using a fresh recorder, and the recorder.
    pub fn config() -> Result<(Arc<ClientConfig>, Arc<ChainRecorder>)> {
        let rec = Arc::new(ChainRecorder {
            provider: provider(),
            seen: Mutex::new(Vec::new()),
        });
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(rec.clone())
            .with_no_client_auth();
        Ok((Arc::new(cfg), rec))
    }

    /// The chain seen in the last handshake, end entity first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_errors_are_clear() {
        let e = parse_certs(b"hello").unwrap_err();
        assert!(format!("{e}").contains("no PEM certificate"), "{e}");
        let e = parse_key(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(format!("{e}").contains("no PEM private key"), "{e}");
        let bogus = b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        let e = parse_certs(bogus).unwrap_err();
        assert!(
            format!("{e:#}").contains("not an X.509 certificate"),
            "{e:#}"
        );
    }
}
