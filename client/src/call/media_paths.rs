//! The media paths of a call as connections to send on: a direct QUIC connection between
//! the two clients and/or legs through relays (a primary and a standby). All carry the
//! same sealed datagrams. Which path carries the call is the media engine's decision
//! (`parley_proto::media::paths`); this only holds the connections and moves bytes.
//!
//! A path may have more than one connection: both ends dial each other at once (the hole
//! punch), so a direct path often comes up twice, and a relay leg that was lost comes
//! back as a new connection. The two ends of a connection do not finish its handshake at
//! the same moment (under loss, one end may wait seconds for a retransmitted handshake
//! packet), so the newest connection is not necessarily one the peer can read yet. Sends
//! go on the connection of the path that last brought something from the peer (proof
//! that the peer holds it), else the newest; every connection is read until it closes.

use super::paths::PathConn;
pub use parley_proto::media::PathKind;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One connection of a path.
struct Conn {
    kind: PathKind,
    /// Unique within the call, rising: which connection a datagram came on.
    serial: u64,
    conn: PathConn,
    /// When a datagram last arrived on it.
    heard: Option<Instant>,
}

/// The connections of the paths that came up.
#[derive(Default)]
pub struct MediaPaths {
    up: Vec<Conn>,
    next_serial: u64,
}

/// What [`read_datagrams`] forwards: the path, the connection's serial, and a datagram
/// (`None` once that connection has closed).
pub type Arrival = (PathKind, u64, Option<bytes::Bytes>);

impl MediaPaths {
    /// A connection of `kind` came up; returns its serial (for [`read_datagrams`]).
    /// Closed connections of the path (and an earlier copy of this one) are forgotten;
    /// open ones stay usable.
    pub fn add(&mut self, kind: PathKind, conn: PathConn) -> u64 {
        let id = conn.id();
        self.up
            .retain(|c| c.kind != kind || (c.conn.close_reason().is_none() && c.conn.id() != id));
        self.next_serial += 1;
        self.up.push(Conn {
            kind,
            serial: self.next_serial,
            conn,
            heard: None,
        });
        self.next_serial
    }

    /// A datagram arrived on connection `serial`: the peer holds it.
    pub fn heard(&mut self, serial: u64) {
        if let Some(c) = self.up.iter_mut().find(|c| c.serial == serial) {
            c.heard = Some(Instant::now());
        }
    }

    /// Whether `kind` still has an open connection.
    pub fn is_open(&self, kind: PathKind) -> bool {
        self.get(kind).is_some()
    }

    /// The connection sends on `kind` use: the open one heard from last, else the
    /// newest open one.
    pub fn get(&self, kind: PathKind) -> Option<&PathConn> {
        self.up
            .iter()
            .filter(|c| c.kind == kind && c.conn.close_reason().is_none())
            .max_by_key(|c| (c.heard, c.serial))
            .map(|c| &c.conn)
    }

    /// Round-trip time of a path's QUIC connection (to the peer, or to the relay).
    pub fn transport_rtt(&self, kind: PathKind) -> Option<Duration> {
        self.get(kind).map(PathConn::rtt)
    }

    /// Closes every connection.
    pub fn close_all(&self, reason: &[u8]) {
        for c in &self.up {
            c.conn.close(0u32.into(), reason);
        }
    }
}

/// Forwards every datagram received on connection `serial` of `kind` into `tx`; `None`
/// once the connection has closed.
pub fn read_datagrams(kind: PathKind, serial: u64, conn: PathConn, tx: mpsc::Sender<Arrival>) {
    tokio::spawn(async move {
        while let Ok(d) = conn.read_datagram().await {
            if tx.send((kind, serial, Some(d))).await.is_err() {
                return;
            }
        }
        let _ = tx.send((kind, serial, None)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::call::ALPN_CALL;
    use parley_proto::Identity;

    /// Two direct connections from alice to bob, as bob holds them.
    async fn two_connections() -> (Vec<quinn::Connection>, Vec<quinn::Connection>) {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let local = "127.0.0.1:0".parse().unwrap();
        let a = parley_net::make_endpoint(local, &alice, &[ALPN_CALL]).unwrap();
        let b = parley_net::make_endpoint(local, &bob, &[ALPN_CALL]).unwrap();
        let to = b.local_addr().unwrap();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let wait = Duration::from_secs(5);
            let dial = parley_net::dial(&a, &alice, to, ALPN_CALL, Some(bob.peer_id()), wait);
            let (dialed, accepted) =
                tokio::join!(dial, async { b.accept().await.unwrap().await.unwrap() });
            theirs.push(dialed.unwrap().0);
            ours.push(accepted);
        }
        (ours, theirs)
    }

    #[tokio::test]
    async fn a_second_connection_of_a_kind_does_not_cost_the_one_the_peer_uses() {
        let (ours, theirs) = two_connections().await;
        let ids: Vec<usize> = ours.iter().map(|c| c.stable_id()).collect();
        let mut paths = MediaPaths::default();
        let first = paths.add(PathKind::Direct, PathConn::Direct(ours[0].clone()));
        paths.add(PathKind::Direct, PathConn::Direct(ours[1].clone()));
        let sending_on = |p: &MediaPaths| p.get(PathKind::Direct).map(PathConn::id);
        // Neither heard from yet: the newest.
        assert_eq!(sending_on(&paths), Some(ids[1]));
        // The peer sends on the first one: ours follows it there.
        paths.heard(first);
        assert_eq!(sending_on(&paths), Some(ids[0]));
        let conn = paths.get(PathKind::Direct).expect("a connection");
        assert!(conn
            .send_datagram(bytes::Bytes::from_static(b"hello"))
            .is_ok());
        let got = tokio::time::timeout(Duration::from_secs(5), theirs[0].read_datagram())
            .await
            .expect("the datagram went on the connection the peer uses")
            .unwrap();
        assert_eq!(&got[..], b"hello");
        // The peer closes the other one: the path is still open on the first.
        theirs[1].close(0u32.into(), b"not this one");
        let closed = tokio::time::timeout(Duration::from_secs(5), ours[1].closed()).await;
        assert!(closed.is_ok());
        assert!(paths.is_open(PathKind::Direct));
        assert_eq!(sending_on(&paths), Some(ids[0]));
        // Once both are closed, the path is down.
        theirs[0].close(0u32.into(), b"bye");
        let closed = tokio::time::timeout(Duration::from_secs(5), ours[0].closed()).await;
        assert!(closed.is_ok());
        assert!(!paths.is_open(PathKind::Direct));
    }
}
