//! Connecting to a host: TCP (so a refusal is told apart from other
//! failures), then, with `--hosts-ca`, TLS that verifies the host's
//! certificate against that CA and the name or address its line gives,
//! optionally presenting a client certificate (mutual TLS). The connected
//! stream is handed to tonic, which speaks HTTP/2 over it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;
use tonic::transport::{Channel, Endpoint};

use super::hosts_file::Host;

/// How hosts are reached.
#[derive(Clone)]
pub struct Connector {
    tls: Option<tokio_rustls::TlsConnector>,
}

/// A connection that did not happen; `refused`: nothing listened (or a
/// firewall reset it).
pub struct ConnectError {
    pub refused: bool,
    pub message: String,
}

fn failed(e: impl std::fmt::Display) -> ConnectError {
    ConnectError { refused: false, message: e.to_string() }
}

/// The TLS files of the fleet: the CA, and a client certificate and key.
pub struct TlsFiles<'a> {
    pub ca: &'a Path,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

impl Connector {
    pub fn plain() -> Self {
        Connector { tls: None }
    }

    pub fn tls(files: TlsFiles<'_>) -> anyhow::Result<Self> {
        use crate::query::files::{read_text_file, Read};
        let ca = read_text_file(files.ca, Read::Named, "--hosts-ca file")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            let cert = cert.map_err(|e| anyhow::anyhow!("--hosts-ca {}: {e}", files.ca.display()))?;
            roots.add(cert).map_err(|e| anyhow::anyhow!("--hosts-ca {}: {e}", files.ca.display()))?;
        }
        if roots.is_empty() {
            anyhow::bail!("--hosts-ca {}: no certificate in it", files.ca.display());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match (files.cert, files.key) {
            (Some(cert), Some(key)) => {
                let pem = read_text_file(cert, Read::Named, "--hosts-cert file")?;
                let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| anyhow::anyhow!("--hosts-cert {}: {e}", cert.display()))?;
                let key_pem = read_text_file(key, Read::Named, "--hosts-key file")?;
                let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|e| anyhow::anyhow!("--hosts-key {}: {e}", key.display()))?;
                builder.with_client_auth_cert(chain, key_der)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => anyhow::bail!("--hosts-cert and --hosts-key go together"),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Connector { tls: Some(tokio_rustls::TlsConnector::from(Arc::new(config))) })
    }

    /// A channel to `host`, connected now.
    pub async fn connect(&self, host: &Host) -> Result<Channel, ConnectError> {
        let tcp = tokio::net::TcpStream::connect(host.addr).await.map_err(|e| ConnectError {
            refused: e.kind() == std::io::ErrorKind::ConnectionRefused,
            message: e.to_string(),
        })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = ServerName::try_from(host.server_name.clone()).map_err(failed)?;
                Box::new(tls.connect(name, tcp).await.map_err(|e| failed(format!("TLS: {e}")))?)
            }
        };
        // The URI only names the HTTP/2 authority: the stream is already
        // connected where the hosts file said.
        let endpoint = Endpoint::from_shared(format!("http://{}", host.addr)).map_err(failed)?;
        endpoint.connect_with_connector(Once(Arc::new(Mutex::new(Some(io))))).await.map_err(failed)
    }
}

/// A connected stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Gives tonic the one stream connected above; a reconnect fails (a host
/// that drops its connection mid-answer has failed).
#[derive(Clone)]
struct Once(Arc<Mutex<Option<Box<dyn Io>>>>);

impl tonic::codegen::Service<tonic::transport::Uri> for Once {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: tonic::transport::Uri) -> Self::Future {
        let io = self.0.lock().ok().and_then(|mut slot| slot.take());
        std::future::ready(
            io.map(TokioIo::new).ok_or_else(|| std::io::Error::other("the connection to the host was lost")),
        )
    }
}
