//! The media paths of a call, as one thing to send on: a direct QUIC connection between
//! the two clients and/or legs through relays (a primary and a standby). All are QUIC
//! connections carrying the same sealed datagrams, so the media loop never knows which
//! path a byte took.
//!
//! Which path sends go on is decided by probing: every path is pinged a few times a
//! second (the peer answers on the path the ping came in on), and the preferred path —
//! direct first, then the relays in the order granted — that answered within
//! [`PATH_DEAD_AFTER`] carries the call. A new path takes over only once it has answered
//! (make before break); a path that stops answering (a relay killed, a NAT mapping gone)
//! is left within [`PATH_DEAD_AFTER`] for the next one that still answers.

use super::paths::PathConn;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A path that has not answered a probe for this long is not sent on.
pub const PATH_DEAD_AFTER: Duration = Duration::from_millis(500);
/// How often every path is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(160);

/// Which path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    /// Straight to the peer.
    Direct,
    /// Through the n-th granted relay (0: primary).
    Relay(u8),
}

impl PathKind {
    /// The path's kind for people and JSON: "direct" or "relay".
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Relay(_) => "relay",
        }
    }
}

/// The live paths, and when each last proved it works.
#[derive(Default)]
pub struct MediaPaths {
    up: Vec<(PathKind, PathConn)>,
    answered: HashMap<PathKind, Instant>,
}

impl MediaPaths {
    /// A path came up (or came back). It goes first among the connections of its kind;
    /// closed ones of that kind (and an earlier copy of it) are dropped, a live one stays behind it: a second
    /// direct connection (both sides' punches got through) may be one the peer never
    /// uses, and must not cost the one that works (see [`MediaPaths::heard_on`]).
    pub fn add(&mut self, kind: PathKind, conn: PathConn) {
        let id = conn.id();
        self.up
            .retain(|(k, c)| *k != kind || (c.close_reason().is_none() && c.id() != id));
        self.up.insert(0, (kind, conn));
        // Stable: within a kind, the newest stays first.
        self.up.sort_by_key(|(k, _)| *k);
    }

    /// An authenticated datagram came in on connection `id` of `kind`: the peer uses
    /// that connection, so ours of that kind goes on it too.
    pub fn heard_on(&mut self, kind: PathKind, id: usize) {
        let Some(i) = self.up.iter().position(|(k, c)| *k == kind && c.id() == id) else {
            return;
        };
        let first = self.up.iter().position(|(k, _)| *k == kind).unwrap_or(i);
        if i != first {
            let entry = self.up.remove(i);
            self.up.insert(first, entry);
        }
    }

    /// A probe came back on `kind`: the path works both ways.
    pub fn answered(&mut self, kind: PathKind) {
        self.answered.insert(kind, Instant::now());
    }

    /// The paths whose connection is still open, preferred first.
    pub fn open(&self) -> impl Iterator<Item = (PathKind, &PathConn)> {
        self.up
            .iter()
            .filter(|(_, c)| c.close_reason().is_none())
            .map(|(k, c)| (*k, c))
    }

    /// The path sends use now: the preferred one that answered lately; before any has
    /// answered, the preferred open one.
    pub fn current(&self) -> Option<(PathKind, &PathConn)> {
        let fresh = |k: &PathKind| {
            self.answered
                .get(k)
                .is_some_and(|t| t.elapsed() < PATH_DEAD_AFTER)
        };
        let any_answered = self
            .answered
            .values()
            .any(|t| t.elapsed() < PATH_DEAD_AFTER);
        self.open().find(|(k, _)| fresh(k)).or_else(|| {
            if any_answered {
                None
            } else {
                self.open().next()
            }
        })
    }

    /// Sends one datagram on the current path; false when there is none or it is full.
    pub fn send(&self, datagram: Vec<u8>) -> bool {
        match self.current() {
            Some((_, conn)) => conn.send_datagram(datagram.into()).is_ok(),
            None => false,
        }
    }

    /// Sends one datagram on a given path (probes and their answers).
    pub fn send_on(&self, kind: PathKind, datagram: Vec<u8>) -> bool {
        self.open()
            .find(|(k, _)| *k == kind)
            .is_some_and(|(_, c)| c.send_datagram(datagram.into()).is_ok())
    }

    /// Round-trip time of the current path's QUIC connection (to the peer, or to the relay).
    pub fn transport_rtt(&self) -> Option<Duration> {
        self.current().map(|(_, c)| c.rtt())
    }

    /// Closes every path.
    pub fn close_all(&self, reason: &[u8]) {
        for (_, c) in &self.up {
            c.close(0u32.into(), reason);
        }
    }
}

/// A received datagram: its path, the id of the connection it came on, the bytes.
pub type Received = (PathKind, usize, bytes::Bytes);

/// Forwards every datagram received on `conn` into `tx`, tagged with its path and
/// connection.
pub fn read_datagrams(kind: PathKind, conn: PathConn, tx: mpsc::Sender<Received>) {
    tokio::spawn(async move {
        let id = conn.id();
        while let Ok(d) = conn.read_datagram().await {
            if tx.send((kind, id, d)).await.is_err() {
                return;
            }
        }
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
        paths.add(PathKind::Direct, PathConn::Direct(ours[0].clone()));
        paths.add(PathKind::Direct, PathConn::Direct(ours[1].clone()));
        let sending_on = |p: &MediaPaths| p.current().map(|(_, c)| c.id());
        // The newest goes first, the older one stays.
        assert_eq!(paths.open().count(), 2);
        assert_eq!(sending_on(&paths), Some(ids[1]));
        // The peer sends on the first one: ours follows it there.
        paths.heard_on(PathKind::Direct, ids[0]);
        assert_eq!(sending_on(&paths), Some(ids[0]));
        assert!(paths.send(b"hello".to_vec()));
        let got = tokio::time::timeout(Duration::from_secs(5), theirs[0].read_datagram())
            .await
            .expect("the datagram went on the connection the peer uses")
            .unwrap();
        assert_eq!(&got[..], b"hello");
        // A connection the peer closes is dropped at the next path event of its kind.
        theirs[1].close(0u32.into(), b"not this one");
        let closed = tokio::time::timeout(Duration::from_secs(5), ours[1].closed()).await;
        assert!(closed.is_ok());
        paths.add(PathKind::Direct, PathConn::Direct(ours[0].clone()));
        let left: Vec<usize> = paths.open().map(|(_, c)| c.id()).collect();
        assert_eq!(left, vec![ids[0]]);
    }
}
