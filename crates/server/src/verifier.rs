//! The authorization server's client certificate policy. RFC 8705 §2.2
//! (`self_signed_tls_client_auth`) needs the handshake to accept a certificate no CA issued, so
//! this verifier accepts any well-formed, currently valid certificate — the handshake still
//! proves possession of its key — and the accept loop records whether the chain also verified
//! against the directory CA ([`certbound_http::PeerCertificate::issued_by_directory`]).
//! Endpoints that need a directory certificate check that flag.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

/// Accepts directory certificates and self-signed ones; see the module docs.
#[derive(Debug)]
pub(crate) struct DirectoryOrSelfSigned {
    directory: Arc<dyn ClientCertVerifier>,
}

impl DirectoryOrSelfSigned {
    pub(crate) fn new(directory: Arc<dyn ClientCertVerifier>) -> Self {
        Self { directory }
    }

    /// Whether the chain verifies against the directory CA.
    pub(crate) fn issued_by_directory(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        self.directory
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_ok()
    }
}

impl ClientCertVerifier for DirectoryOrSelfSigned {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client with a self-signed certificate must still offer it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if self
            .directory
            .verify_client_cert(end_entity, intermediates, now)
            .is_ok()
        {
            return Ok(ClientCertVerified::assertion());
        }
        let (_, certificate) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = certificate.validity();
        if now < validity.not_before.timestamp() {
            return Err(Error::InvalidCertificate(
                rustls::CertificateError::NotValidYet,
            ));
        }
        if now > validity.not_after.timestamp() {
            return Err(Error::InvalidCertificate(rustls::CertificateError::Expired));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.directory.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.directory.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.directory.supported_verify_schemes()
    }
}

/// A directory client-certificate verifier that also enforces key roles: the leaf must name
/// `clientAuth` in its extended key usage ([`certbound_pki::names_client_auth`]), so a signing
/// or encryption certificate never passes as a transport certificate. Every listener that takes
/// directory client certificates, and the trusted-proxy path, verify through it.
#[derive(Debug)]
pub(crate) struct TransportOnly {
    inner: Arc<dyn ClientCertVerifier>,
}

impl TransportOnly {
    pub(crate) fn new(inner: Arc<dyn ClientCertVerifier>) -> Self {
        Self { inner }
    }
}

impl ClientCertVerifier for TransportOnly {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if !certbound_pki::names_client_auth(end_entity.as_ref()) {
            return Err(Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
