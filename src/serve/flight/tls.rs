//! TLS for the Flight endpoint: sockql's own rustls acceptor (ring, as
//! --pg's), HTTP/2 by ALPN, and with `--flight-tls-client-ca` mutual TLS:
//! a client without a certificate signed by that CA is refused in the
//! handshake, before it can send a call.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use crate::query::files;

fn certificates(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = files::read_text_file(path, files::Read::Named, &format!("{flag} file"))?.into_bytes();
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{flag} {}: no certificate in it", path.display());
    }
    Ok(certs)
}

/// The acceptor for `cert`/`key`, verifying clients against `client_ca`
/// when given.
pub fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs = certificates(cert, "--flight-tls-cert")?;
    let key_pem = files::read_text_file(key, files::Read::Named, "--flight-tls-key file")?.into_bytes();
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow::anyhow!("--flight-tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca, "--flight-tls-client-ca")? {
                roots.add(c).with_context(|| format!("--flight-tls-client-ca {}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("--flight-tls-client-ca {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder.with_single_cert(certs, key).context("the TLS certificate and key do not make a server identity")?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
