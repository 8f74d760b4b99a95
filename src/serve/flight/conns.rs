//! The Flight endpoint's connections: how many one peer (a local user by
//! the uid owning its socket, a remote address) and all peers may hold,
//! and which one is closed to make room. As for /metrics, a newcomer is
//! always admitted and the peer holding the most gives way (the
//! newcomer's own peer once it holds [`PER_PEER`]), a connection that
//! has not yet made an authenticated call first, then the oldest; so one
//! user's flood only ever closes that user's own connections.
//!
//! A connection that makes no authenticated call within
//! [`LOGIN_DEADLINE`] is closed; so is one evicted. Closing is done by the
//! connection's socket ([`FlightIo`]) failing its next read, which hyper
//! always has pending: tonic owns the connection tasks.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::serve::peer::Peer;

/// Flight connections open at once.
pub const TOTAL: usize = 64;
/// Connections one peer may hold.
pub const PER_PEER: usize = 16;
/// From accept to the first authenticated call (TLS included).
pub const LOGIN_DEADLINE: Duration = Duration::from_secs(5);

/// One connection as the endpoint sees it; the calls on it reach it
/// through their request's extensions ([`Connected`](tonic::transport::server::Connected)).
pub struct ConnState {
    pub peer: Peer,
    id: u64,
    authenticated: AtomicBool,
    closed: AtomicBool,
    waker: AtomicWaker,
    /// Its prepared statements and running DoGets: the connection's own,
    /// gone with it.
    pub prepared: super::prepared::Handles,
    pub running: Arc<super::cancel::Running>,
}

impl ConnState {
    /// A call on it passed authentication.
    pub fn authenticated(&self) {
        self.authenticated.store(true, Ordering::Release);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// Every open connection.
#[derive(Default)]
pub struct Conns {
    open: Mutex<(u64, HashMap<u64, Arc<ConnState>>)>,
}

/// A connection's place; dropping it (the socket closed) frees it.
pub struct Place {
    conns: Arc<Conns>,
    pub state: Arc<ConnState>,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Ok(mut open) = self.conns.open.lock() {
            open.1.remove(&self.state.id);
        }
    }
}

/// Which connection makes room for a newcomer: not-yet-authenticated
/// ones first, then the oldest.
fn victim(open: &HashMap<u64, Arc<ConnState>>, peer: Peer) -> Option<u64> {
    let ranked = open.values().map(|c| (c.id, c.peer, (c.authenticated.load(Ordering::Acquire), c.id)));
    crate::serve::peer::victim(ranked, peer, PER_PEER, TOTAL)
}

impl Conns {
    pub fn admit(self: &Arc<Self>, peer: Peer) -> Place {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(id) = victim(&open.1, peer) {
            if let Some(gone) = open.1.remove(&id) {
                gone.close();
            }
        }
        open.0 += 1;
        let id = open.0;
        let state = Arc::new(ConnState {
            peer,
            id,
            authenticated: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            prepared: Default::default(),
            running: Default::default(),
        });
        open.1.insert(id, state.clone());
        drop(open);
        // Not logged in by the deadline: closed.
        let weak = Arc::downgrade(&state);
        tokio::spawn(async move {
            tokio::time::sleep(LOGIN_DEADLINE).await;
            if let Some(state) = weak.upgrade() {
                if !state.authenticated.load(Ordering::Acquire) {
                    state.close();
                }
            }
        });
        Place { conns: self.clone(), state }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().map(|o| o.1.len()).unwrap_or(0)
    }
}

/// The socket (plain or TLS) of a connection.
pub trait Socket: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Socket for T {}

/// A connection's socket as tonic reads it: a read fails once the
/// connection is closed to make room or for not logging in.
pub struct FlightIo {
    socket: Box<dyn Socket>,
    place: Place,
}

impl FlightIo {
    pub fn new(socket: Box<dyn Socket>, place: Place) -> Self {
        FlightIo { socket, place }
    }

    fn closed(&self, cx: &mut Context<'_>) -> bool {
        let state = &self.place.state;
        state.waker.register(cx.waker());
        state.closed.load(Ordering::Acquire)
    }
}

/// What a call knows of its connection.
#[derive(Clone)]
pub struct ConnInfo(pub Arc<ConnState>);

impl tonic::transport::server::Connected for FlightIo {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        ConnInfo(self.place.state.clone())
    }
}

fn gone() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "closed by sockql (a cap or the login deadline)")
}

impl AsyncRead for FlightIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.closed(cx) {
            return Poll::Ready(Err(gone()));
        }
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlightIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.closed(cx) {
            return Poll::Ready(Err(gone()));
        }
        Pin::new(&mut self.socket).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flood_of_one_user_closes_only_its_own_not_yet_authenticated_first() {
        let all = Arc::new(Conns::default());
        let root = all.admit(Peer::User(0));
        root.state.authenticated();
        let mut flood = Vec::new();
        for _ in 0..500 {
            flood.push(all.admit(Peer::User(65534)));
            assert!(all.len() <= TOTAL);
        }
        assert!(!root.state.closed.load(Ordering::Acquire), "root's connection stayed");
        let open = flood.iter().filter(|p| !p.state.closed.load(Ordering::Acquire)).count();
        assert_eq!(open, PER_PEER);
        assert_eq!(all.len(), PER_PEER + 1);
    }
}
