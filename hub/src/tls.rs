//! TLS to the Hub: rustls with a verifier that trusts exactly the pinned keys.
//!
//! The pin is the SHA-256 of the DER SubjectPublicKeyInfo of the leaf certificate the Hub
//! presents. No CA store is consulted, and neither the host name nor the certificate's validity
//! dates are checked: the key is the identity, and an appliance with a wrong clock must still be
//! able to reach the Hub (the heartbeat is how it learns its clock is wrong). The handshake
//! signature *is* checked, with rustls' own algorithms, so the server proves it holds the pinned
//! key's private half.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// The error a pin mismatch carries inside rustls' error, so the client can tell it apart.
#[derive(Debug, thiserror::Error)]
#[error("the server's TLS key matches no pinned SPKI hash")]
pub struct PinMismatch;

/// Checks the leaf certificate's SPKI hash against the pins, then the handshake signature.
#[derive(Debug)]
pub struct PinnedVerifier {
    pins: Vec<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    /// A verifier for `pins` (SHA-256 of DER SPKI), with `provider`'s signature algorithms.
    pub fn new(pins: Vec<[u8; 32]>, provider: &CryptoProvider) -> Self {
        Self {
            pins,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

/// SHA-256 of the DER SubjectPublicKeyInfo of `cert`, or `None` if it does not parse.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    Some(Sha256::digest(parsed.subject_public_key_info().as_ref()).into())
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let spki = spki_sha256(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        if self.pins.contains(&spki) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
            ))
        }
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

/// A rustls client configuration (ring, TLS 1.2 and 1.3) that trusts only `pins`.
pub fn client_config(pins: Vec<[u8; 32]>) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedVerifier::new(pins, &provider));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// True if `err` (or anything in its source chain) is a pin mismatch from [`PinnedVerifier`].
/// `std::io::Error` hides its payload from `source()`, so the walk looks inside it too.
pub fn is_pin_mismatch(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if rustls_pin_mismatch(e) {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && is_pin_mismatch(inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}

fn rustls_pin_mismatch(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<rustls::Error>(),
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)))
            if other.0.downcast_ref::<PinMismatch>().is_some()
    )
}

/// True if `err`'s chain holds any rustls error (a TLS failure other than a pin mismatch).
pub fn is_tls_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && is_tls_error(inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}
