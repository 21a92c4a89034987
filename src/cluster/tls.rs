//! Mutual TLS on the cluster listener (`--cluster-tls-cert`,
//! `--cluster-tls-key`, `--cluster-tls-ca`, PEM files). The listener asks
//! every connection for a client certificate and accepts only one that the
//! cluster's CA signed; a node connecting to a peer checks the peer's
//! certificate against the same CA and the peer's host (as written in
//! `--peers`: its certificate must name that IP address or DNS name).
//!
//! Owns the rustls configurations and the listener's accept loop over TLS.
//! Must never: accept a connection without a verified client certificate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{client, TlsAcceptor, TlsConnector};

/// How long a peer may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a peer may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS configuration could not be built (a file, a certificate, a key).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsSetupError(pub String);

/// This node's TLS identity and the cluster's CA, as server and client configurations.
pub struct ClusterTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls")
    }
}

fn tls_error(what: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError(what.to_string())
}

impl ClusterTls {
    /// Read the node's certificate chain and key and the CA's certificates.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Self, TlsSetupError> {
        // ring rather than aws-lc (which builds with cmake): no post-quantum
        // key exchange, which rustls 0.23.48 flags as deprecated.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let read_certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(tls_error(format!("{}: no certificate", path.display())));
            }
            Ok(certs)
        };
        let chain = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| tls_error(format!("{}: {e}", key.display())))?;
        let mut roots = RootCertStore::empty();
        for ca_cert in read_certs(ca)? {
            roots
                .add(ca_cert)
                .map_err(|e| tls_error(format!("{}: {e}", ca.display())))?;
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(tls_error)?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(tls_error)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(tls_error)?;
        Ok(ClusterTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// Open TLS over `stream` to the peer at `addr` (`host:port`).
    pub async fn connect(
        &self,
        addr: &str,
        stream: TcpStream,
    ) -> std::io::Result<client::TlsStream<TcpStream>> {
        let host = addr
            .rsplit_once(':')
            .map(|(host, _)| host)
            .unwrap_or(addr)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.connector.connect(name, stream).await
    }
}

/// Serve `router` over TLS on `listener` until `shutdown` turns true: one
/// task per connection, which ends at a failed handshake.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ClusterTls>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or the like: back off, then go on.
                tracing::warn!(error = %e, "cluster listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = tls.acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    // At debug: anyone who can connect could flood a louder log.
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "cluster TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "cluster TLS handshake timed out");
                        return;
                    }
                };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "cluster connection ended");
            }
        });
    }
}
