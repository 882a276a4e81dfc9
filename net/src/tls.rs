//! TLS 1.3 for QUIC with raw ed25519 public keys (RFC 7250) instead of certificates.
//!
//! Each side presents its identity key as a SubjectPublicKeyInfo and proves possession
//! in the handshake's CertificateVerify, so after the handshake each side knows the
//! other's [`PeerId`] for certain. There is no CA: trust in a key is the
//! application's decision (a dialer may pin the key it expects).

use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use parley_proto::{Identity, PeerId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::sync::Arc;

/// The TLS server name every Parley dial uses; identities, not names, are checked.
pub const SERVER_NAME: &str = "parley";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The identity key as rustls wants it: SPKI "certificate" plus a signing key.
fn certified_key(identity: &Identity) -> Result<Arc<CertifiedKey>, Error> {
    let key = identity.signing_key();
    let spki = key
        .verifying_key()
        .to_public_key_der()
        .map_err(|e| Error::General(format!("encoding public key: {e}")))?;
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| Error::General(format!("encoding private key: {e}")))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()));
    let signer = provider().key_provider.load_private_key(der)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(spki.as_bytes().to_vec())],
        signer,
    )))
}

/// Reads a peer's presented SPKI as an identity.
pub fn peer_id_from_spki(der: &[u8]) -> Option<PeerId> {
    let key = ed25519_dalek::VerifyingKey::from_public_key_der(der).ok()?;
    PeerId::from_bytes(key.as_bytes()).ok()
}

fn verify_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(cert.as_ref()),
        dss,
        &provider().signature_verification_algorithms,
    )
}

fn check_key(cert: &CertificateDer<'_>, expected: Option<PeerId>) -> Result<(), Error> {
    let presented = peer_id_from_spki(cert.as_ref())
        .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
    match expected {
        Some(want) if want != presented => Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        )),
        _ => Ok(()),
    }
}

/// Accepts any well-formed ed25519 key from a server, or only `expected` when pinned.
#[derive(Debug)]
struct ServerKeyVerifier {
    expected: Option<PeerId>,
}

impl ServerCertVerifier for ServerKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        check_key(end_entity, self.expected)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Requires every client to present an ed25519 key and prove it.
#[derive(Debug)]
struct ClientKeyVerifier;

impl ClientCertVerifier for ClientKeyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        check_key(end_entity, None)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// rustls server configuration: presents `identity`, requires a client key, offers `alpns`.
pub fn server_tls(identity: &Identity, alpns: &[&[u8]]) -> Result<rustls::ServerConfig, Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(ClientKeyVerifier))
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified_key(identity)?),
        ));
    config.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    Ok(config)
}

/// rustls client configuration: presents `identity`, speaks `alpn`, and accepts the
/// server only if it holds `expected` (any key when `None`).
pub fn client_tls(
    identity: &Identity,
    alpn: &[u8],
    expected: Option<PeerId>,
) -> Result<rustls::ClientConfig, Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerKeyVerifier { expected }))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified_key(identity)?),
        ));
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}
