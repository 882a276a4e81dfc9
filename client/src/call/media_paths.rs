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
    /// A path came up (or came back: it replaces the old connection).
    pub fn add(&mut self, kind: PathKind, conn: PathConn) {
        self.up.retain(|(k, _)| *k != kind);
        self.up.push((kind, conn));
        self.up.sort_by_key(|(k, _)| *k);
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

/// Forwards every datagram received on `conn` into `tx`, tagged with its path.
pub fn read_datagrams(kind: PathKind, conn: PathConn, tx: mpsc::Sender<(PathKind, bytes::Bytes)>) {
    tokio::spawn(async move {
        while let Ok(d) = conn.read_datagram().await {
            if tx.send((kind, d)).await.is_err() {
                return;
            }
        }
    });
}
