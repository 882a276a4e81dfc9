//! The switch: the [`RelayCore`] behind a mutex, with the connection of every leg.
//!
//! Every leg's forwarding task calls [`Switch::forward`] for each datagram it reads.
//! The lock is held for one hash lookup, two token buckets and an `Arc` clone, then
//! released before the datagram is handed to quinn, so the hot path never waits on
//! I/O under the lock. An actor would add a channel hop (and a queue that can grow)
//! per datagram; a plain mutex held for well under a microsecond does not.

use bytes::Bytes;
use parley_net::clock;
use parley_proto::relay::pairing::LoadCounts;
use parley_proto::relay::{
    CloseReason, DropReason, LegId, RelayCore, RelayRefusal, RelayStats, SignedRelayToken, Verdict,
};
use parley_proto::PeerId;
use quinn::{Connection, SendDatagramError};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::{oneshot, Notify};

/// A connection the relay holds, joined or not.
struct LegHandle {
    conn: Connection,
    /// Fires when the other party's leg arrives (set while waiting for it).
    paired: Option<oneshot::Sender<()>>,
}

struct Inner {
    core: RelayCore,
    legs: HashMap<LegId, LegHandle>,
}

/// An admitted leg, as the join stream needs to answer it.
pub(crate) struct Admitted {
    /// The other party was already there.
    pub paired: bool,
    /// When not: fires once it arrives (dropped if this leg ends first).
    pub wait: Option<oneshot::Receiver<()>>,
}

/// Shared by every connection task and the timer task.
pub(crate) struct Switch {
    inner: Mutex<Inner>,
    /// Wakes the timer task when a join or close moved the next deadline (deadlines
    /// only ever move earlier through these, so a change means "sooner").
    pub(crate) timers_changed: Notify,
}

impl Switch {
    pub(crate) fn new(core: RelayCore) -> Switch {
        Switch {
            inner: Mutex::new(Inner {
                core,
                legs: HashMap::new(),
            }),
            timers_changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic under the lock is a bug in the core; its state is still the best
        // there is, and a relay that stops forwarding every call is worse.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection, not yet joined.
    pub(crate) fn register(&self, leg: LegId, conn: Connection) {
        self.lock()
            .legs
            .insert(leg, LegHandle { conn, paired: None });
    }

    /// `leg`'s connection (key `peer`) presents `token`.
    pub(crate) fn join(
        &self,
        leg: LegId,
        peer: PeerId,
        token: &SignedRelayToken,
    ) -> Result<Admitted, RelayRefusal> {
        let mut inner = self.lock();
        let before = inner.core.poll_timeout();
        let outcome = inner.core.handle_join(clock::now(), leg, peer, token)?;
        let admitted = match outcome.paired_with {
            Some(partner) => {
                if let Some(tx) = inner.legs.get_mut(&partner).and_then(|h| h.paired.take()) {
                    let _ = tx.send(());
                }
                Admitted {
                    paired: true,
                    wait: None,
                }
            }
            None => {
                let (tx, rx) = oneshot::channel();
                if let Some(h) = inner.legs.get_mut(&leg) {
                    h.paired = Some(tx);
                }
                Admitted {
                    paired: false,
                    wait: Some(rx),
                }
            }
        };
        let moved = inner.core.poll_timeout() != before;
        drop(inner);
        if moved {
            self.timers_changed.notify_one();
        }
        Ok(admitted)
    }

    /// The hot path: forwards one datagram from `leg` to its partner, or drops it.
    pub(crate) fn forward(&self, leg: LegId, datagram: Bytes) {
        let len = datagram.len();
        let target = {
            let mut inner = self.lock();
            match inner.core.handle_datagram(clock::now(), leg, len) {
                Verdict::Forward { to } => match inner.legs.get(&to) {
                    Some(h) => h.conn.clone(),
                    None => {
                        inner
                            .core
                            .handle_undelivered(DropReason::Undeliverable, len);
                        return;
                    }
                },
                Verdict::Drop(reason) => {
                    tracing::trace!(%leg, %reason, len, "datagram dropped");
                    return;
                }
            }
        };
        if let Err(reason) = send(&target, datagram) {
            tracing::trace!(%leg, %reason, len, "datagram undeliverable");
            self.lock().core.handle_undelivered(reason, len);
        }
    }

    /// `leg`'s connection ended.
    pub(crate) fn closed(&self, leg: LegId) {
        let mut inner = self.lock();
        let before = inner.core.poll_timeout();
        inner.core.handle_closed(clock::now(), leg);
        inner.legs.remove(&leg);
        let moved = inner.core.poll_timeout() != before;
        drop(inner);
        if moved {
            self.timers_changed.notify_one();
        }
    }

    pub(crate) fn is_joined(&self, leg: LegId) -> bool {
        self.lock().core.is_joined(leg)
    }

    pub(crate) fn load(&self) -> LoadCounts {
        self.lock().core.load()
    }

    pub(crate) fn stats(&self) -> RelayStats {
        self.lock().core.stats().clone()
    }

    /// Runs the core's timers at `now`; returns the connections to close, and when to
    /// come back.
    pub(crate) fn expire(
        &self,
    ) -> (
        Vec<(LegId, Connection, CloseReason)>,
        Option<parley_proto::Timestamp>,
    ) {
        let mut inner = self.lock();
        inner.core.handle_timeout(clock::now());
        let mut closing = Vec::new();
        while let Some((leg, why)) = inner.core.poll_close() {
            // The handle stays until the connection task sees the close and calls
            // `closed`; the core has already forgotten the leg.
            if let Some(h) = inner.legs.get_mut(&leg) {
                h.paired = None;
                closing.push((leg, h.conn.clone(), why));
            }
        }
        (closing, inner.core.poll_timeout())
    }
}

/// Hands a datagram to quinn without ever blocking or evicting older datagrams.
fn send(conn: &Connection, datagram: Bytes) -> Result<(), DropReason> {
    let len = datagram.len();
    match conn.max_datagram_size() {
        None => return Err(DropReason::Undeliverable),
        Some(max) if len > max => return Err(DropReason::TooLarge),
        Some(_) => {}
    }
    // quinn would make room by discarding the oldest queued datagram; checking first
    // makes the loss visible as a counted drop of this one instead.
    if conn.datagram_send_buffer_space() < len {
        return Err(DropReason::Congested);
    }
    conn.send_datagram(datagram).map_err(|e| match e {
        SendDatagramError::TooLarge => DropReason::TooLarge,
        _ => DropReason::Undeliverable,
    })
}
