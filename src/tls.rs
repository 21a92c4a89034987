//! TLS for the node's listeners (rustls with the ring provider): the server
//! configuration from PEM files (`--tls-cert`, `--tls-key`, optionally
//! `--tls-client-ca`, which makes a client certificate required), and the
//! principal a verified client certificate stands for (Kafka's default SSL
//! principal builder: `User:` and the subject's distinguished name).
//!
//! Must never: accept a client certificate that did not verify against
//! `--tls-client-ca`. Locks: none.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn pem_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Pem {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(pem_error(what, path, "no certificate in the file"));
    }
    Ok(certs)
}

/// A TLS acceptor for `cert` and `key`; with `client_ca`, clients must
/// present a certificate signed by one of its CAs.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let chain = certificates("certificate", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error("private key", key, e))?;
    // ring rather than aws-lc-rs: no C build beyond ring's own. Its provider
    // offers no post-quantum key exchange (hence the deprecation).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certificates("client CA", ca)? {
                roots.add(c).map_err(|e| pem_error("client CA", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// An acceptor without ALPN, for the Kafka listeners (Kafka clients send none).
pub fn kafka_acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let acceptor = acceptor(cert, key, client_ca)?;
    let mut config = ServerConfig::clone(acceptor.config());
    config.alpn_protocols.clear();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The distinguished name of a verified client certificate, as Kafka's
/// default SSL principal builder writes it (RFC 2253, most specific RDN
/// first: `CN=alice,OU=eng,O=acme,C=US`).
pub fn client_subject(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    Some(cert.tbs_certificate().subject().to_string())
}
