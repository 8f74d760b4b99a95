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
//!
//! A connection is served by `connection.rs`: every message it sends is
//! checked before pgwire decodes it (`framing.rs`), it must log in within
//! 5 s, and until then it holds a pre-auth place rather than a session
//! (`admission.rs`, which also keeps root's reserved sessions).

pub mod admission;
pub mod auth;
pub mod cancel;
pub mod catalog;
pub mod catalog_types;
pub mod column_names;
pub mod connection;
/// Rows and types as PostgreSQL clients receive them (in sockql-output:
/// every row a client reads is encoded there, at its opt-level).
pub use crate::output::pg_encode as encode;
pub mod framing;
pub mod information_schema;
pub mod notices;
pub mod parameters;
pub mod pg_overlay;
pub mod psql_fns;
pub mod psql_rewrite;
pub mod session;
pub mod socket_dir;
/// What PostgreSQL says of each type sockql sends (in sockql-output, with
/// the encoder).
pub use crate::output::pg_type_catalog as type_catalog;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pgwire::error::ErrorInfo;
use pgwire::messages::PgWireBackendMessage;
use tokio::sync::Semaphore;

use crate::query::engine::{Engine, Limits, Policy};
use crate::query::files;
use crate::tables::SourceOptions;
use admission::{Gate, Peer, Waiting};
use auth::{Admission, PasswordSource, PeerRule, Places, Trusted};
use connection::Handlers;
use session::{Handler, Session, Shared};

/// Where the PostgreSQL endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A directory for the `.s.PGSQL.PORT` socket.
    Unix {
        dir: PathBuf,
        port: u16,
    },
    Tcp(SocketAddr),
}

impl Endpoint {
    /// `--pg` and `--pg-port`: a path (starting with `/`) is a socket
    /// directory, anything else an address and port.
    pub fn parse(value: &str, port: u16) -> anyhow::Result<Self> {
        if value.starts_with('/') {
            return Ok(Endpoint::Unix { dir: PathBuf::from(value), port });
        }
        value.parse::<SocketAddr>().map(Endpoint::Tcp).map_err(|_| {
            anyhow::anyhow!("--pg {value:?}: give a socket directory (/run/sockql) or ADDR:PORT (127.0.0.1:5439)")
        })
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
    /// Query slots shared with another endpoint (--flight); None: its own.
    pub slots: Option<Arc<Semaphore>>,
}

/// How connections are admitted, decided once at start.
enum Rule {
    Peer(PeerRule),
    Password { source: Arc<PasswordSource>, tls: Option<(tokio_rustls::TlsAcceptor, Vec<u8>)>, require_tls: bool },
}

/// The server's PostgreSQL side, ready to accept.
pub struct PgServer {
    rule: Rule,
    shared: Arc<Shared>,
    source: SourceOptions,
    limits: Limits,
    /// Live connections' cancel keys.
    cancels: Arc<cancel::Registry>,
    gate: Arc<Gate>,
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
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| anyhow::anyhow!("--pg-tls-key {}: {e}", key.display()))?;
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
        admission::descriptors(options.max_connections.max(1))?;
        let rule = match &options.endpoint {
            Endpoint::Unix { .. } => {
                if options.password_file.is_some() || tls.is_some() {
                    anyhow::bail!(
                        "the unix socket admits by peer credentials: --pg-password-file and TLS are for a TCP --pg"
                    );
                }
                Rule::Peer(PeerRule::new(options.group.as_deref())?)
            }
            Endpoint::Tcp(addr) => {
                if options.group.is_some() {
                    anyhow::bail!("--pg-group admits by peer credentials, which only a unix socket --pg has");
                }
                let file = options.password_file.as_ref().with_context(|| {
                    format!("refused: --pg {addr} is a TCP endpoint and needs --pg-password-file (SCRAM)")
                })?;
                let require_tls = !addr.ip().is_loopback();
                if require_tls && tls.is_none() {
                    anyhow::bail!(
                        "refused: --pg {addr} is not on loopback and needs TLS (--pg-tls-cert, --pg-tls-key): passwords and socket state would cross the network in clear"
                    );
                }
                let password = auth::read_password_file(file)?;
                Rule::Password { source: Arc::new(PasswordSource::new(&password)?), tls, require_tls }
            }
        };
        let shared = Arc::new(Shared {
            slots: options.slots.clone().unwrap_or_else(|| Arc::new(Semaphore::new(options.max_queries.max(1)))),
            root_slot: Arc::new(Semaphore::new(1)),
            max_queries: options.max_queries.max(1),
            slot_wait: limits.timeout.unwrap_or(Duration::from_secs(30)),
            parser: Arc::new(catalog::client_sql::ClientSql::new()),
        });
        Ok(PgServer {
            rule,
            shared,
            source,
            limits,
            cancels: Arc::new(cancel::Registry::default()),
            gate: Gate::new(options.max_connections),
        })
    }

    /// A session for a new connection: the live tables, pg_catalog, the
    /// command line's policy (never --allow-files) and limits.
    fn handlers(&self, admission: Admission, root: bool, key: &cancel::Key) -> Handlers {
        let (source, limits) = (self.source.clone(), self.limits);
        let make = Box::new(move || {
            // Other users' queries yield the CPU to root's (query/priority.rs);
            // its statements' warnings and notes go to this client only.
            let nice = if root { 0 } else { crate::query::priority::OTHER_USERS };
            let engine = Engine::with(&source, Policy::default(), limits)?
                .isolated(nice)
                .with_notices(crate::notice::Mode::Keep(Default::default()));
            catalog::setup(&engine)?;
            Ok(engine)
        });
        Handlers {
            session: Arc::new(Handler(Arc::new(
                Session::new(make, self.shared.clone(), root).with_cancel(key.target()),
            ))),
            admission: Arc::new(admission),
            cancel: Arc::new(cancel::Handler { registry: self.cancels.clone(), root }),
        }
    }

    /// Serve one accepted connection in a task of its own, which is
    /// closed should the connection be evicted before it logs in.
    fn spawn<F>(&self, waiting: Waiting, serve: impl FnOnce(Waiting) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let ticket = waiting.ticket();
        let task = tokio::spawn(serve(waiting));
        self.gate.arm(ticket, task.abort_handle());
    }

    /// Serve the unix socket until the task is dropped.
    pub async fn serve_unix(self: Arc<Self>, listener: &tokio::net::UnixListener) {
        let Rule::Peer(rule) = &self.rule else { return };
        loop {
            let Some(stream) = super::accepted(listener.accept().await.map(|(s, _)| s)).await else { continue };
            // Who it is, at once: a peer that is not admitted is told why
            // and closed before it holds anything.
            let uid = match peer(&stream).map(|(uid, gid)| (uid, rule.admit(uid, gid))) {
                Ok((uid, Ok(()))) => uid,
                Ok((_, Err(why))) => {
                    refuse(&stream, "28000", why);
                    continue;
                }
                Err(e) => {
                    refuse(&stream, "28000", format!("cannot read the peer's credentials: {e}"));
                    continue;
                }
            };
            let waiting = self.gate.enter(Peer::Uid(uid));
            let server = self.clone();
            self.spawn(waiting, move |waiting| async move {
                let deadline = connection::login_deadline();
                let places = Places::new(server.gate.clone(), waiting);
                let key = server.cancels.key();
                let trusted = Trusted { key: key.clone() };
                let handlers = server.handlers(Admission::Peer { trusted, places }, uid == 0, &key);
                // The session closes the connection when its client cannot
                // be told that its query timed out (see session.rs).
                let session = handlers.session.0.clone();
                tokio::select! {
                    () = connection::run(connection::unix(stream), handlers, deadline) => {}
                    () = session.hung_up() => {}
                }
            });
        }
    }

    /// Serve TCP until the task is dropped.
    pub async fn serve_tcp(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let mut identify = super::peer::Identify::default();
        loop {
            let Some((stream, addr)) = super::accepted(listener.accept().await).await else { continue };
            // Every local user connects from loopback: a connection of this
            // host is keyed by the uid owning its socket (as /metrics does),
            // so one user's flood of logins evicts only that user's own.
            let who = match stream.local_addr().map(|local| identify.peer(local, addr)) {
                Ok(super::peer::Peer::User(uid)) => Peer::Uid(uid),
                Ok(super::peer::Peer::Address(ip)) => Peer::Addr(ip),
                Err(_) => Peer::Addr(addr.ip()),
            };
            let waiting = self.gate.enter(who);
            let server = self.clone();
            self.spawn(waiting, move |waiting| async move {
                let Rule::Password { source, tls, require_tls } = &server.rule else { return };
                let deadline = connection::login_deadline();
                let acceptor = tls.as_ref().map(|(a, _)| a.clone());
                let Ok(Some(socket)) = tokio::time::timeout_at(deadline, connection::tcp(stream, acceptor)).await
                else {
                    return;
                };
                let pem = tls.as_ref().map(|(_, pem)| pem.as_slice());
                let places = Places::new(server.gate.clone(), waiting);
                let key = server.cancels.key();
                let admission = match Admission::password(source.clone(), pem, key.clone(), *require_tls, places) {
                    Ok(a) => a,
                    Err(e) => Admission::Refused(format!("cannot set up SCRAM: {e}")),
                };
                let handlers = server.handlers(admission, false, &key);
                let session = handlers.session.0.clone();
                tokio::select! {
                    () = connection::run(socket, handlers, deadline) => {}
                    () = session.hung_up() => {}
                }
            });
        }
    }
}

/// Tell a refused peer why, without waiting for it, and close.
fn refuse(stream: &tokio::net::UnixStream, code: &str, why: String) {
    let mut bytes = bytes::BytesMut::new();
    let message = PgWireBackendMessage::ErrorResponse(ErrorInfo::new("FATAL".into(), code.into(), why).into());
    if message.encode(&mut bytes).is_ok() {
        let _ = stream.try_write(&bytes);
    }
}

/// The connecting process's uid and gid, from the kernel.
fn peer(stream: &tokio::net::UnixStream) -> std::io::Result<(u32, u32)> {
    let cred = stream.peer_cred()?;
    Ok((cred.uid(), cred.gid()))
}

/// Check the options, bind, and serve in a task of its own; says where on
/// stderr. The unix socket's file is removed when the task ends.
pub async fn start(
    options: &PgOptions,
    source: SourceOptions,
    limits: Limits,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
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
            let listener =
                tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
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
