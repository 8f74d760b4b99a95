//! `sockql serve --pg`: the PostgreSQL wire protocol (pgwire), so psql,
//! Grafana, DBeaver and psycopg query the live tables and saved reports.
//!
//! - `--pg /run/sockql`: a unix socket, `.s.PGSQL.<--pg-port>` in that
//!   directory (what `psql -h /run/sockql -p 5439` opens), admitted by
//!   peer credentials (`auth.rs`).
//! - `--pg 127.0.0.1:5439`: TCP with SCRAM (`--pg-password-file`); any
//!   address off loopback also needs TLS (`--pg-tls-cert/--pg-tls-key`).
//!
//! Each connection is a session of its own (`session.rs`) with the
//! command line's policy and limits; `--pg-max-connections` and
//! `--pg-max-queries` bound what clients together can hold.

pub mod auth;
pub mod catalog;
pub mod encode;
pub mod session;
pub mod socket_dir;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::sync::Semaphore;

use crate::query::engine::{Engine, Limits, Policy};
use crate::query::files;
use crate::tables::SourceOptions;
use auth::{Admission, PasswordSource, PeerRule, Trusted};
use session::{Handler, Session, Shared};

/// Where the PostgreSQL endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A directory for the `.s.PGSQL.PORT` socket.
    Unix { dir: PathBuf, port: u16 },
    Tcp(SocketAddr),
}

impl Endpoint {
    /// `--pg` and `--pg-port`: a path (starting with `/`) is a socket
    /// directory, anything else an address and port.
    pub fn parse(value: &str, port: u16) -> anyhow::Result<Self> {
        if value.starts_with('/') {
            return Ok(Endpoint::Unix { dir: PathBuf::from(value), port });
        }
        value
            .parse::<SocketAddr>()
            .map(Endpoint::Tcp)
            .map_err(|_| anyhow::anyhow!("--pg {value:?}: give a socket directory (/run/sockql) or ADDR:PORT (127.0.0.1:5439)"))
    }
}

/// What the PostgreSQL endpoint was asked to do.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub endpoint: Endpoint,
    pub group: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_connections: usize,
    pub max_queries: usize,
}

/// How connections are admitted, decided once at start.
enum Gate {
    Peer(PeerRule),
    Password { source: Arc<PasswordSource>, tls: Option<(tokio_rustls::TlsAcceptor, Vec<u8>)>, require_tls: bool },
}

/// The server's PostgreSQL side, ready to accept.
pub struct PgServer {
    gate: Gate,
    shared: Arc<Shared>,
    source: SourceOptions,
    limits: Limits,
    connections: Arc<ConnectionManager>,
    open: Arc<Semaphore>,
    max_connections: usize,
}

/// A connection's handlers: its session and how it is admitted.
struct Connection {
    handler: Handler,
    admission: Arc<Admission>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::new(self.handler.clone())
    }
    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::new(self.handler.clone())
    }
    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.admission.clone()
    }
    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<(tokio_rustls::TlsAcceptor, Vec<u8>)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    // PEM files the operator named, read as any named file is (a regular
    // file or a pipe, within sockql's bound on text).
    let cert_pem = files::read_text_file(cert, files::Read::Named, "--pg-tls-cert file")?.into_bytes();
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--pg-tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("--pg-tls-cert {}: no certificate in it", cert.display());
    }
    let key_pem = files::read_text_file(key, files::Read::Named, "--pg-tls-key file")?.into_bytes();
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| anyhow::anyhow!("--pg-tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not make a server identity")?;
    // Direct TLS (PostgreSQL 17 clients' sslnegotiation=direct) names the
    // protocol by ALPN.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert_pem))
}

impl PgServer {
    /// Check the options and everything they name before listening.
    pub fn new(options: &PgOptions, source: SourceOptions, limits: Limits) -> anyhow::Result<Self> {
        let tls = match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            (None, None) => None,
            _ => anyhow::bail!("--pg-tls-cert and --pg-tls-key go together"),
        };
        let gate = match &options.endpoint {
            Endpoint::Unix { .. } => {
                if options.password_file.is_some() || tls.is_some() {
                    anyhow::bail!("the unix socket admits by peer credentials: --pg-password-file and TLS are for a TCP --pg");
                }
                Gate::Peer(PeerRule::new(options.group.as_deref())?)
            }
            Endpoint::Tcp(addr) => {
                if options.group.is_some() {
                    anyhow::bail!("--pg-group admits by peer credentials, which only a unix socket --pg has");
                }
                let file = options
                    .password_file
                    .as_ref()
                    .with_context(|| format!("refused: --pg {addr} is a TCP endpoint and needs --pg-password-file (SCRAM)"))?;
                let require_tls = !addr.ip().is_loopback();
                if require_tls && tls.is_none() {
                    anyhow::bail!(
                        "refused: --pg {addr} is not on loopback and needs TLS (--pg-tls-cert, --pg-tls-key): passwords and socket state would cross the network in clear"
                    );
                }
                let password = auth::read_password_file(file)?;
                Gate::Password { source: Arc::new(PasswordSource::new(&password)?), tls, require_tls }
            }
        };
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(options.max_queries.max(1))),
            max_queries: options.max_queries.max(1),
            slot_wait: limits.timeout.unwrap_or(Duration::from_secs(30)),
            parser: Arc::new(datafusion_pg_catalog::sql::PostgresCompatibilityParser::new()),
        });
        Ok(PgServer {
            gate,
            shared,
            source,
            limits,
            connections: Arc::new(ConnectionManager::new()),
            open: Arc::new(Semaphore::new(options.max_connections.max(1))),
            max_connections: options.max_connections.max(1),
        })
    }

    /// A session for a new connection: the live tables, pg_catalog, the
    /// command line's policy (never --allow-files) and limits.
    fn connection(&self, admission: Admission) -> Connection {
        let (source, limits) = (self.source.clone(), self.limits);
        let make = Box::new(move || {
            let engine = Engine::with(&source, Policy::default(), limits)?;
            catalog::setup(&engine)?;
            Ok(engine)
        });
        Connection {
            handler: Handler(Arc::new(Session::new(make, self.shared.clone()))),
            admission: Arc::new(admission),
            cancel: Arc::new(DefaultCancelHandler::new(self.connections.clone())),
        }
    }

    fn trusted(&self) -> Admission {
        Admission::Peer(Trusted { connections: self.connections.clone() })
    }

    /// A connection slot, or the reason there is none.
    fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, String> {
        self.open
            .clone()
            .try_acquire_owned()
            .map_err(|_| format!("too many connections: {} are open (--pg-max-connections)", self.max_connections))
    }

    /// Serve the unix socket until the task is dropped.
    pub async fn serve_unix(self: Arc<Self>, listener: &tokio::net::UnixListener) {
        loop {
            let Some(stream) = super::accepted(listener.accept().await.map(|(s, _)| s)).await else { continue };
            let server = self.clone();
            tokio::spawn(async move {
                let admission = match (&server.gate, server.slot()) {
                    (_, Err(why)) => (Admission::Refused(why), None),
                    (Gate::Peer(rule), Ok(slot)) => match peer(&stream).map(|(uid, gid)| rule.admit(uid, gid)) {
                        Ok(Ok(())) => (server.trusted(), Some(slot)),
                        Ok(Err(why)) => (Admission::Refused(why), None),
                        Err(e) => (Admission::Refused(format!("cannot read the peer's credentials: {e}")), None),
                    },
                    (Gate::Password { .. }, _) => return,
                };
                let (admission, _slot) = admission;
                let connection = server.connection(admission);
                // The session closes the connection when its client cannot
                // be told that its query timed out (see session.rs).
                let session = connection.handler.0.clone();
                tokio::select! {
                    _ = pgwire::tokio::process_socket_unix(stream, connection) => {}
                    () = session.hung_up() => {}
                }
            });
        }
    }

    /// Serve TCP until the task is dropped.
    pub async fn serve_tcp(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let Some(stream) = super::accepted(listener.accept().await.map(|(s, _)| s)).await else { continue };
            let server = self.clone();
            tokio::spawn(async move {
                let Gate::Password { source, tls, require_tls } = &server.gate else { return };
                let (admission, _slot) = match server.slot() {
                    Err(why) => (Admission::Refused(why), None),
                    Ok(slot) => {
                        let pem = tls.as_ref().map(|(_, pem)| pem.as_slice());
                        match Admission::password(source.clone(), pem, server.connections.clone(), *require_tls) {
                            Ok(a) => (a, Some(slot)),
                            Err(e) => (Admission::Refused(format!("cannot set up SCRAM: {e}")), None),
                        }
                    }
                };
                let acceptor = tls.as_ref().map(|(a, _)| a.clone());
                let connection = server.connection(admission);
                let session = connection.handler.0.clone();
                tokio::select! {
                    _ = pgwire::tokio::process_socket(stream, acceptor, connection) => {}
                    () = session.hung_up() => {}
                }
            });
        }
    }
}

/// The connecting process's uid and gid, from the kernel.
fn peer(stream: &tokio::net::UnixStream) -> std::io::Result<(u32, u32)> {
    let cred = stream.peer_cred()?;
    Ok((cred.uid(), cred.gid()))
}

/// Check the options, bind, and serve in a task of its own; says where on
/// stderr. The unix socket's file is removed when the task ends.
pub async fn start(options: &PgOptions, source: SourceOptions, limits: Limits) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let server = Arc::new(PgServer::new(options, source, limits)?);
    Ok(match &options.endpoint {
        Endpoint::Unix { dir, port } => {
            let bound = socket_dir::bind(dir, *port)?;
            crate::stderrln!(
                "sockql serve: PostgreSQL on {} (psql -h {} -p {port}; admits root{})",
                bound.path.display(),
                dir.display(),
                options.group.as_ref().map(|g| format!(" and group {g}")).unwrap_or_default()
            );
            tokio::spawn(async move {
                let socket_dir::BoundSocket { ref listener, .. } = bound;
                server.serve_unix(listener).await;
                drop(bound);
            })
        }
        Endpoint::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            crate::stderrln!(
                "sockql serve: PostgreSQL on {} (SCRAM{})",
                listener.local_addr()?,
                if options.tls_cert.is_some() { ", TLS" } else { "" }
            );
            tokio::spawn(async move {
                server.serve_tcp(listener).await;
            })
        }
    })
}
