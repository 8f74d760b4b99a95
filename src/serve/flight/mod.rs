//! `sockql serve --flight ADDR`: Arrow Flight SQL, the same live tables,
//! policy and limits as --pg, over gRPC (arrow-flight's `FlightSqlService`
//! over sockql's engine, `service.rs`), for the ADBC and JDBC Flight SQL
//! drivers and for a fleet of sockqls asking each other.
//!
//! - Every call is authenticated (`auth.rs`): the password of
//!   `--flight-password-file` (basic auth) or the bearer token the
//!   Handshake gave for it.
//! - Off loopback TLS is required (`tls.rs`); `--flight-tls-client-ca`
//!   makes it mutual.
//! - Query slots are shared with --pg's clients (`--pg-max-queries`), so
//!   Flight clients and PostgreSQL clients together hold no more than
//!   that and root's reserved PostgreSQL slot stays root's; connections
//!   are capped per peer and in all (`conns.rs`); HTTP/2 is bounded
//!   (streams per connection, header size, decoded message size, keepalive).

pub mod auth;
pub mod cancel;
pub mod conns;
pub mod prepared;
pub mod service;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use tonic::service::interceptor::InterceptedService;

use crate::query::engine::Limits;
use crate::tables::SourceOptions;
use conns::{ConnInfo, Conns, FlightIo, Socket, LOGIN_DEADLINE};
pub use service::{FlightSql, Slots};

/// What the Flight endpoint was asked to do.
#[derive(Debug, Clone)]
pub struct FlightOptions {
    pub listen: SocketAddr,
    pub password_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    /// Queries at once, shared with --pg (`--pg-max-queries`).
    pub max_queries: usize,
}

/// Calls one HTTP/2 connection may have open at once.
pub const MAX_STREAMS: u32 = 8;
/// The largest message a client may send (a command, a ticket): a
/// statement of [`service::MAX_SQL`] and its wrapping.
pub const MAX_MESSAGE: usize = service::MAX_SQL + 4096;
/// Request headers (the authorization header among them).
const MAX_HEADERS: u32 = 16 << 10;
/// A connection is pinged this often, and closed when a ping is not
/// answered in [`KEEPALIVE_TIMEOUT`]: a peer that vanished (or stopped
/// reading its socket) lets go of its connection.
const KEEPALIVE: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint, checked and ready to serve.
pub struct FlightServer {
    service: FlightSql,
    auth: Arc<auth::Auth>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    conns: Arc<Conns>,
}

impl FlightServer {
    /// Check the options and everything they name: a password always
    /// (any local user can reach loopback), TLS off loopback.
    pub fn new(options: &FlightOptions, source: SourceOptions, limits: Limits, slots: Slots) -> anyhow::Result<Self> {
        let addr = options.listen;
        let tls = match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key, options.tls_client_ca.as_deref())?),
            (None, None) if options.tls_client_ca.is_some() => {
                anyhow::bail!("--flight-tls-client-ca needs --flight-tls-cert and --flight-tls-key")
            }
            (None, None) => None,
            _ => anyhow::bail!("--flight-tls-cert and --flight-tls-key go together"),
        };
        let file = options
            .password_file
            .as_ref()
            .with_context(|| format!("refused: --flight {addr} needs --flight-password-file"))?;
        if !addr.ip().is_loopback() && tls.is_none() {
            anyhow::bail!(
                "refused: --flight {addr} is not on loopback and needs TLS (--flight-tls-cert, --flight-tls-key): passwords and socket state would cross the network in clear"
            );
        }
        let password = super::pg::auth::read_password_file_for(file, "--flight-password-file")?;
        let auth = Arc::new(auth::Auth::new(&password)?);
        Ok(FlightServer {
            service: FlightSql::new(source, limits, slots, Some(auth.clone())),
            auth,
            tls,
            conns: Arc::default(),
        })
    }
}

/// Serve Flight SQL on `listener` until the returned future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, server: FlightServer) -> anyhow::Result<()> {
    let FlightServer { service, auth, tls, conns } = server;
    // Accepted connections (TLS done) to tonic, which serves each.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<FlightIo>>(16);
    let accepting = tokio::spawn(async move {
        let mut identify = super::peer::Identify::default();
        loop {
            let Some((stream, from)) = super::accepted(listener.accept().await).await else { continue };
            let peer = match stream.local_addr() {
                Ok(local) => identify.peer(local, from),
                Err(_) => super::peer::Peer::Address(from.ip()),
            };
            let _ = stream.set_nodelay(true);
            // Always admitted: at a cap another connection of the peer
            // holding most is closed instead.
            let place = conns.admit(peer);
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                let socket: Box<dyn Socket> = match tls {
                    None => Box::new(stream),
                    Some(acceptor) => match tokio::time::timeout(LOGIN_DEADLINE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => Box::new(tls),
                        _ => return,
                    },
                };
                let _ = tx.send(Ok(FlightIo::new(socket, place))).await;
            });
        }
    });
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _accepting = Abort(accepting);
    let incoming = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    // Every call, the Handshake included, carries the password or a token.
    let check = move |request: tonic::Request<()>| -> Result<tonic::Request<()>, tonic::Status> {
        auth.check(request.metadata())?;
        if let Some(ConnInfo(conn)) = request.extensions().get::<ConnInfo>() {
            conn.authenticated();
        }
        Ok(request)
    };
    let flight = FlightServiceServer::new(service).max_decoding_message_size(MAX_MESSAGE);
    tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS)
        .http2_max_header_list_size(MAX_HEADERS)
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .http2_max_pending_accept_reset_streams(Some(16))
        .http2_max_local_error_reset_streams(Some(64))
        .add_service(InterceptedService::new(flight, check))
        .serve_with_incoming(incoming)
        .await
        .context("the Flight SQL endpoint stopped")
}

/// Check the options, bind, say where on stderr, and serve in a task of
/// its own.
pub async fn start(
    options: &FlightOptions,
    source: SourceOptions,
    limits: Limits,
    slots: Slots,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let server = FlightServer::new(options, source, limits, slots)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    crate::stderrln!(
        "sockql serve: Arrow Flight SQL on grpc{}://{} (password{})",
        if server.tls.is_some() { "+tls" } else { "" },
        listener.local_addr()?,
        match (&server.tls, &options.tls_client_ca) {
            (Some(_), Some(_)) => ", mutual TLS",
            (Some(_), None) => ", TLS",
            _ => "",
        }
    );
    Ok(tokio::spawn(async move {
        if let Err(e) = serve(listener, server).await {
            crate::stderrln!("sockql serve: {e:#}");
        }
    }))
}
