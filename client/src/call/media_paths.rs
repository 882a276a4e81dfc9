//! The media paths of a call as connections to send on: a direct QUIC connection between
//! the two clients and/or legs through relays (a primary and a standby). All carry the
//! same sealed datagrams. Which one carries the call is the media engine's decision
//! (`parley_proto::media::paths`); this only holds the connections and moves bytes.

use super::paths::PathConn;
pub use parley_proto::media::PathKind;
use std::time::Duration;
use tokio::sync::mpsc;

/// The connections of the paths that came up, by kind.
#[derive(Default)]
pub struct MediaPaths {
    up: Vec<(PathKind, PathConn)>,
}

impl MediaPaths {
    /// A path came up (or came back: it replaces the old connection).
    pub fn add(&mut self, kind: PathKind, conn: PathConn) {
        self.up.retain(|(k, _)| *k != kind);
        self.up.push((kind, conn));
    }

    /// The open connection of `kind`.
    pub fn get(&self, kind: PathKind) -> Option<&PathConn> {
        self.up
            .iter()
            .find(|(k, c)| *k == kind && c.close_reason().is_none())
            .map(|(_, c)| c)
    }

    /// Round-trip time of a path's QUIC connection (to the peer, or to the relay).
    pub fn transport_rtt(&self, kind: PathKind) -> Option<Duration> {
        self.get(kind).map(PathConn::rtt)
    }

    /// Closes every path.
    pub fn close_all(&self, reason: &[u8]) {
        for (_, c) in &self.up {
            c.close(0u32.into(), reason);
        }
    }
}

/// Forwards every datagram received on `conn` into `tx`, tagged with its path; `None`
/// once the connection has closed.
pub fn read_datagrams(
    kind: PathKind,
    conn: PathConn,
    tx: mpsc::Sender<(PathKind, Option<bytes::Bytes>)>,
) {
    tokio::spawn(async move {
        while let Ok(d) = conn.read_datagram().await {
            if tx.send((kind, Some(d))).await.is_err() {
                return;
            }
        }
        let _ = tx.send((kind, None)).await;
    });
}
