//! The switch: the [`RelayCore`] behind a mutex, with the connection of every leg.
//!
//! Media normally bypasses it: channel datagrams go through the data plane
//! (`dataplane.rs`) and the lock-free [`ChannelTable`]. The switch handles joins, the
//! timers, and the slow leg kind: media sent as QUIC datagrams inside a leg's
//! connection (clients tunnelled over TCP). Every such datagram goes through
//! [`Switch::forward`], which holds the lock for one hash lookup, two token buckets
//! and an `Arc` clone, and sends after releasing it.
//!
//! A join's token is verified (ed25519) before the lock is taken, after a per-IP join
//! rate check, so join floods never stall forwarding.

use bytes::Bytes;
use parley_proto::relay::channel::{encode_relay, RelayDatagram};
use parley_proto::relay::pairing::LoadCounts;
use parley_proto::relay::{
    ChannelKey, ChannelTable, CloseReason, DropReason, JoinLimiter, LegId, RelayCore, RelayRefusal,
    RelayRefusalCode, RelayStats, SignedRelayToken, TokenVerifier, Verdict,
};
use parley_proto::PeerId;
use quinn::{Connection, SendDatagramError};
use std::collections::HashMap;
use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;
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
    /// The leg's media channel.
    pub channel: Option<parley_proto::relay::ChannelId>,
}

/// Shared by every connection task and the timer task.
pub(crate) struct Switch {
    inner: Mutex<Inner>,
    verifier: TokenVerifier,
    wall: fn() -> parley_proto::Timestamp,
    joins: Mutex<JoinLimiter>,
    channels: Arc<ChannelTable>,
    /// A data-port socket for QUIC legs' media to channel partners (set at start).
    pub(crate) data_sender: OnceLock<UdpSocket>,
    /// Wakes the timer task when a join or close moved the next deadline (deadlines
    /// only ever move earlier through these, so a change means "sooner").
    pub(crate) timers_changed: Notify,
    /// Joins refused, by [`RelayRefusalCode`] (counted without the lock: most are
    /// refused before it is taken).
    refused: [AtomicU64; RelayRefusalCode::ALL.len()],
}

impl Switch {
    pub(crate) fn new(
        core: RelayCore,
        joins: JoinLimiter,
        wall: fn() -> parley_proto::Timestamp,
    ) -> Switch {
        Switch {
            wall,
            verifier: core.verifier(),
            channels: core.channels(),
            joins: Mutex::new(joins),
            data_sender: OnceLock::new(),
            inner: Mutex::new(Inner {
                core,
                legs: HashMap::new(),
            }),
            timers_changed: Notify::new(),
            refused: Default::default(),
        }
    }

    /// Counts a join refused with `code`.
    pub(crate) fn count_refused(&self, code: RelayRefusalCode) {
        self.refused[code as usize].fetch_add(1, Ordering::Relaxed);
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

    /// The channel table the data plane forwards with.
    pub(crate) fn channels(&self) -> Arc<ChannelTable> {
        self.channels.clone()
    }

    /// `leg`'s connection (key `peer`, from `ip`) presents `token`; `key` is the leg's
    /// channel key, exported from its TLS session.
    pub(crate) fn join(
        &self,
        leg: LegId,
        peer: PeerId,
        ip: IpAddr,
        token: &SignedRelayToken,
        key: Option<ChannelKey>,
    ) -> Result<Admitted, RelayRefusal> {
        let result = self.try_join(leg, peer, ip, token, key);
        if let Err(refusal) = &result {
            self.count_refused(refusal.code);
        }
        result
    }

    fn try_join(
        &self,
        leg: LegId,
        peer: PeerId,
        ip: IpAddr,
        token: &SignedRelayToken,
        key: Option<ChannelKey>,
    ) -> Result<Admitted, RelayRefusal> {
        let admitted = self
            .joins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(Instant::now(), ip);
        if !admitted {
            return Err(RelayRefusal::new(
                RelayRefusalCode::RateLimited,
                format!("too many joins from {ip} lately; try again in a few seconds"),
            ));
        }
        // The signature check runs here, outside the lock every join and timer takes.
        let verified = self.verifier.verify((self.wall)(), token)?;
        let mut inner = self.lock();
        let before = inner.core.poll_timeout();
        let outcome = inner
            .core
            .handle_join(Instant::now(), leg, peer, ip, &verified, key)?;
        let channel = outcome.channel;
        let admitted = match outcome.paired_with {
            Some(partner) => {
                if let Some(tx) = inner.legs.get_mut(&partner).and_then(|h| h.paired.take()) {
                    let _ = tx.send(());
                }
                Admitted {
                    paired: true,
                    wait: None,
                    channel,
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
                    channel,
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
            match inner.core.handle_datagram(Instant::now(), leg, len) {
                Verdict::Forward { to } => match inner.legs.get(&to) {
                    Some(h) => {
                        // A partner with a proven channel address gets it there.
                        let channel = inner.core.channel_of(to);
                        if let Some((ch, addr)) =
                            channel.and_then(|ch| Some((ch, self.channels.addr_of(ch)?)))
                        {
                            drop(inner);
                            if let Err(reason) = self.send_on_channel(ch, addr, &datagram) {
                                self.lock().core.handle_undelivered(reason, len);
                            }
                            return;
                        }
                        h.conn.clone()
                    }
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

    fn send_on_channel(
        &self,
        channel: parley_proto::relay::ChannelId,
        to: std::net::SocketAddr,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        let socket = self.data_sender.get().ok_or(DropReason::Undeliverable)?;
        let mut out = Vec::with_capacity(payload.len() + 5);
        encode_relay(&mut out, &RelayDatagram::Data { channel, payload });
        socket
            .send_to(&out, to)
            .map(|_| ())
            .map_err(|_| DropReason::Congested)
    }

    /// The data plane's slow path: `payload` from a channel goes to `leg`, a partner
    /// without a channel address, as a QUIC datagram.
    pub(crate) fn send_to_leg(&self, leg: LegId, payload: &[u8]) -> Result<(), DropReason> {
        let conn = match self.lock().legs.get(&leg) {
            Some(h) => h.conn.clone(),
            None => return Err(DropReason::Undeliverable),
        };
        send(&conn, Bytes::copy_from_slice(payload))
    }

    /// `leg`'s connection ended.
    pub(crate) fn closed(&self, leg: LegId) {
        let mut inner = self.lock();
        let before = inner.core.poll_timeout();
        inner.core.handle_closed(Instant::now(), leg);
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
        let mut stats = self.lock().core.stats().clone();
        for code in RelayRefusalCode::ALL {
            stats.count_refused_joins(code, self.refused[code as usize].load(Ordering::Relaxed));
        }
        stats
    }

    /// Runs the core's timers at `now`; returns the connections to close, and when to
    /// come back.
    pub(crate) fn expire(&self) -> (Vec<(LegId, Connection, CloseReason)>, Option<Instant>) {
        let mut inner = self.lock();
        inner.core.handle_timeout(Instant::now());
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
