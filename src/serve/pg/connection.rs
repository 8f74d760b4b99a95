//! One client connection, from the first byte read to the last: the
//! socket read through [`Guarded`], the login within
//! [`LOGIN_DEADLINE`], then pgwire's handlers for each message, with the
//! prepared statements and portals a client holds bounded.
//!
//! This is pgwire's own `process_socket` loop (its `process_message` and
//! `process_error` do the work), with what it lacks: a check of every
//! message before its decoder (framing.rs), a deadline for everything
//! before login rather than only some of it, an ErrorResponse for a
//! message it could not read, and the bounds below.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DefaultClient, ErrorHandler, NoopHandler, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::extendedquery::{TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message, MaybeTls, PgWireMessageServerCodec};
use tokio::time::Instant;
use tokio_util::codec::{Framed, FramedParts};

use super::admission::LOGIN_DEADLINE;
use super::auth::Admission;
use super::framing::{fault_of, Guarded};
use super::session::{Handler, Prepared, Session};

/// Prepared statements one connection may hold.
pub const MAX_STATEMENTS: usize = 1000;
/// Portals one connection may hold.
pub const MAX_PORTALS: usize = 1000;
/// What a connection's prepared statements and portals hold together, as
/// counted here: twice the statement's text (the text and its rewrite),
/// its parameter values, and 1 KiB for each (plan, schema); a portal
/// counts its statement too, which it keeps alive.
pub const MAX_PREPARED_BYTES: usize = 16 << 20;
const ENTRY_BYTES: usize = 1024;
/// Time to tell a client why it is closed; one that does not read is not
/// waited for longer.
const FAREWELL: Duration = Duration::from_secs(1);

pub type Socket = Framed<Guarded<MaybeTls>, PgWireMessageServerCodec<Prepared>>;

/// A unix socket connection, ready for its startup packet.
pub fn unix(stream: tokio::net::UnixStream) -> Socket {
    // pgwire names a unix peer by this address, as PostgreSQL does.
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut socket = Framed::new(
        Guarded::new(MaybeTls::Unix(stream), BytesMut::new()),
        PgWireMessageServerCodec::new(DefaultClient::new(addr, false)),
    );
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    socket
}

/// A TCP connection after SSLRequest (and TLS, if the client asked and
/// the server has it); `None` if the client is to be closed.
pub async fn tcp(stream: tokio::net::TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) -> Option<Socket> {
    let framed = negotiate_tls::<Prepared>(stream, tls).await.ok()??;
    let parts = framed.into_parts();
    // Bytes sent after SSLRequest but before the TLS handshake would be
    // read as if they came through TLS (CVE-2021-23214): refused.
    if matches!(parts.io, MaybeTls::Tls(_)) && !parts.read_buf.is_empty() {
        return None;
    }
    let mut guarded = FramedParts::new::<PgWireBackendMessage>(Guarded::new(parts.io, parts.read_buf), parts.codec);
    guarded.write_buf = parts.write_buf;
    Some(Framed::from_parts(guarded))
}

/// The login deadline for a connection accepted now.
pub fn login_deadline() -> Instant {
    Instant::now() + LOGIN_DEADLINE
}

fn logged_in(state: PgWireConnectionState) -> bool {
    !matches!(
        state,
        PgWireConnectionState::AwaitingSslRequest
            | PgWireConnectionState::AwaitingStartup
            | PgWireConnectionState::AuthenticationInProgress
    )
}

/// `f` within `deadline`, if there is one; `None` past it.
async fn within<F: std::future::Future>(deadline: Option<Instant>, f: F) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, f).await.ok(),
        None => Some(f.await),
    }
}

/// Tell the client why it is closed (FATAL), then close.
async fn farewell(socket: &mut Socket, code: &str, message: String) {
    let info = ErrorInfo::new("FATAL".into(), code.into(), message);
    let _ = tokio::time::timeout(FAREWELL, async {
        socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await?;
        socket.close().await
    })
    .await;
}

/// What a message the codec could not give means for the client.
async fn unreadable(socket: &mut Socket, e: PgWireError) {
    match &e {
        PgWireError::IoError(io) => {
            // Else the connection itself failed (reset, closed): no one to tell.
            if let Some(fault) = fault_of(io) {
                farewell(socket, fault.code, fault.message.clone()).await;
            }
        }
        // pgwire's decoder refused it (an unsupported protocol version, say).
        other => farewell(socket, "08P01", other.to_string()).await,
    }
}

/// A connection's handlers: its session and how it is admitted.
pub struct Handlers {
    pub session: Arc<Handler>,
    pub admission: Arc<Admission>,
    /// A CancelRequest arriving on this connection (cancel.rs).
    pub cancel: Arc<super::cancel::Handler>,
}

/// Serve one connection to its end.
pub async fn run(mut socket: Socket, handlers: Handlers, deadline: Instant) {
    let Handlers { session, admission, cancel } = handlers;
    let (copy, errors) = (Arc::new(NoopHandler), NoopHandler);
    let parser = session.query_parser();
    let mut book = Book::default();
    loop {
        let ready = logged_in(socket.state());
        if ready {
            socket.get_mut().logged_in();
        }
        // Until login, everything (reading, answering) is within the deadline.
        let limit = (!ready).then_some(deadline);
        let Some(next) = within(limit, socket.next()).await else {
            return farewell(
                &mut socket,
                "08P01",
                format!("not logged in within {}s: closed", LOGIN_DEADLINE.as_secs()),
            )
            .await;
        };
        let message = match next {
            None => return,
            Some(Ok(message)) => message,
            Some(Err(e)) => return unreadable(&mut socket, e).await,
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return;
        }
        let state = socket.state();
        let is_extended = match state {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let mut tracked = None;
        if ready && !matches!(state, PgWireConnectionState::AwaitingSync) {
            match book.check(&message, &socket, parser.as_ref()) {
                Ok(t) => tracked = t,
                Err(e) => {
                    if process_error(&mut socket, e, is_extended).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let done = within(
            limit,
            process_message(
                message,
                &mut socket,
                admission.clone(),
                session.clone(),
                session.clone(),
                copy.clone(),
                cancel.clone(),
            ),
        )
        .await;
        let Some(result) = done else { return };
        match result {
            Ok(()) => {
                if let Some(t) = tracked {
                    book.commit(t);
                }
            }
            Err(mut e) => {
                errors.on_error(&socket, &mut e);
                let info = ErrorInfo::from(e);
                let fatal = info.is_fatal();
                let sent =
                    within(limit, process_error(&mut socket, PgWireError::UserError(Box::new(info)), is_extended))
                        .await;
                if fatal || !matches!(sent, Some(Ok(()))) {
                    return;
                }
            }
        }
    }
}

/// A change to the book, made once pgwire has done it.
enum Track {
    Statement(String, usize),
    Portal(String, usize),
    CloseStatement(String),
    ClosePortal(String),
    /// Sync drops the unnamed portal.
    Sync,
}

fn limit_error(message: String) -> PgWireError {
    // 54000: program_limit_exceeded.
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), "54000".into(), message)))
}

/// The prepared statements and portals a connection holds, by name.
#[derive(Default)]
struct Book {
    statements: HashMap<String, usize>,
    portals: HashMap<String, usize>,
    bytes: usize,
}

impl Book {
    /// Refuse what would pass a bound; else what to record if it succeeds.
    fn check(
        &self,
        message: &PgWireFrontendMessage,
        socket: &Socket,
        parser: &Session,
    ) -> Result<Option<Track>, PgWireError> {
        Ok(Some(match message {
            PgWireFrontendMessage::Parse(parse) => {
                let name = parse.name.clone().unwrap_or_default();
                let size = 2 * parse.query.len() + 4 * parse.type_oids.len() + ENTRY_BYTES;
                self.fits(&self.statements, &name, size, MAX_STATEMENTS, "prepared statements")?;
                Track::Statement(name, size)
            }
            PgWireFrontendMessage::Bind(bind) => {
                let statement = bind.statement_name.as_deref().unwrap_or_default();
                // pgwire picks a column's format by its index among the
                // codes: there must be one for each, or one for all.
                if let Some(Entry::Value(stored)) = socket.portal_store().get_statement(statement) {
                    let columns = parser.get_result_schema(&stored.statement, None).map(|f| f.len()).unwrap_or(0);
                    let formats = bind.result_column_format_codes.len();
                    if formats > 1 && formats != columns {
                        return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                            "ERROR".into(),
                            "08P01".into(),
                            format!("bind message has {formats} result formats but query has {columns} columns"),
                        ))));
                    }
                }
                let name = bind.portal_name.clone().unwrap_or_default();
                let values: usize = bind.parameters.iter().map(|p| p.as_ref().map_or(0, |v| v.len())).sum();
                let size = values + self.statements.get(statement).copied().unwrap_or(0) + ENTRY_BYTES;
                self.fits(&self.portals, &name, size, MAX_PORTALS, "portals")?;
                Track::Portal(name, size)
            }
            PgWireFrontendMessage::Close(close) if close.target_type == TARGET_TYPE_BYTE_STATEMENT => {
                Track::CloseStatement(close.name.clone().unwrap_or_default())
            }
            PgWireFrontendMessage::Close(close) if close.target_type == TARGET_TYPE_BYTE_PORTAL => {
                Track::ClosePortal(close.name.clone().unwrap_or_default())
            }
            PgWireFrontendMessage::Sync(_) => Track::Sync,
            _ => return Ok(None),
        }))
    }

    fn fits(
        &self,
        map: &HashMap<String, usize>,
        name: &str,
        size: usize,
        max: usize,
        what: &str,
    ) -> Result<(), PgWireError> {
        let replaced = map.get(name).copied();
        if replaced.is_none() && map.len() >= max {
            return Err(limit_error(format!("too many {what}: at most {max} per connection (Close some first)")));
        }
        if self.bytes.saturating_sub(replaced.unwrap_or(0)) + size > MAX_PREPARED_BYTES {
            return Err(limit_error(format!(
                "prepared statements and portals of this connection would hold more than {} MiB (Close some first)",
                MAX_PREPARED_BYTES >> 20
            )));
        }
        Ok(())
    }

    fn commit(&mut self, track: Track) {
        let (map, name, size) = match track {
            Track::Statement(name, size) => (&mut self.statements, name, Some(size)),
            Track::Portal(name, size) => (&mut self.portals, name, Some(size)),
            Track::CloseStatement(name) => (&mut self.statements, name, None),
            Track::ClosePortal(name) => (&mut self.portals, name, None),
            Track::Sync => (&mut self.portals, String::new(), None),
        };
        let old = match size {
            Some(size) => {
                self.bytes += size;
                map.insert(name, size)
            }
            None => map.remove(&name),
        };
        self.bytes -= old.unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_book_counts_replacements_and_closes() {
        let mut book = Book::default();
        book.commit(Track::Statement("a".into(), 100));
        book.commit(Track::Statement("a".into(), 300));
        book.commit(Track::Portal(String::new(), 50));
        assert_eq!(book.bytes, 350);
        book.commit(Track::Sync);
        book.commit(Track::CloseStatement("a".into()));
        assert_eq!((book.bytes, book.statements.len(), book.portals.len()), (0, 0, 0));
        let full: HashMap<String, usize> = (0..MAX_STATEMENTS).map(|i| (i.to_string(), 1)).collect();
        assert!(book.fits(&full, "new", 1, MAX_STATEMENTS, "prepared statements").is_err());
        assert!(book.fits(&full, "7", 1, MAX_STATEMENTS, "prepared statements").is_ok(), "replacing one");
        assert!(book
            .fits(&HashMap::new(), "x", MAX_PREPARED_BYTES + 1, MAX_STATEMENTS, "prepared statements")
            .is_err());
    }
}
