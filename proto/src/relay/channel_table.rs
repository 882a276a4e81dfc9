//! [`ChannelTable`]: the relay's data plane decisions, shared by every data-plane
//! thread. Sans-IO like the rest of proto: the shell hands in a received datagram, its
//! source and the monotonic time, and gets back where (if anywhere) to send which bytes.
//!
//! The table is a fixed array of slots, one per channel, each behind its own mutex: a
//! datagram locks its own leg's slot (MAC, replay window, rate cap, address) and then,
//! briefly, its partner's (to read the partner's proven address). Two legs' slots are
//! never held at once, and there is no table-wide lock on the hot path: threads only
//! meet when they handle the same leg at the same moment. Opening and closing channels
//! (the control plane, a few per call) takes the free list's lock as well.
//!
//! Rules (docs/relay.md):
//! - a datagram counts only if its tag verifies under its channel's key and its counter
//!   is new ([`ReplayWindow`]); anything else is dropped without an answer;
//! - media goes only to the partner's *proven* address: one from which a BIND carried
//!   the cookie the relay sent there (so the address answered, as in QUIC path
//!   validation); a party cannot point the relay at a third address;
//! - the relay's own addresses, port 0 and unspecified IPs are never a source or a
//!   destination (reflection);
//! - answers (BOUND, CHALLENGE) are smaller than the datagram that caused them.

use crate::relay::channel::{
    decode_client, rewrite_for_partner, write_answer, ChannelId, ChannelKey, ClientKind,
    CLIENT_HEADER, TAG_LEN,
};
use crate::relay::pairing::LegId;
use crate::relay::rate::{Limiter, RateLimit};
use crate::relay::stats::{DropReason, RelayStats};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Bits of a [`ChannelId`] that index the slot; the rest is the slot's generation, so a
/// reused slot does not accept datagrams meant for its previous channel.
const INDEX_BITS: u32 = 20;
/// The most channels a table can hold.
pub const MAX_CHANNELS: usize = 1 << INDEX_BITS;
/// Counters this far behind the newest one are still accepted once (reordering).
pub const REPLAY_WINDOW: u64 = 128;

/// Which counters of one channel have been seen: the newest, and a bitmap of the
/// [`REPLAY_WINDOW`] before it (RFC 4303 §3.4.3, RFC 6479).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayWindow {
    newest: u64,
    /// Bit i set: counter `newest - i` was seen.
    seen: u128,
}

impl ReplayWindow {
    /// Whether `counter` is new (and records it). Counter 0 is never valid.
    pub fn accept(&mut self, counter: u64) -> bool {
        if counter == 0 {
            return false;
        }
        if counter > self.newest {
            let shift = counter - self.newest;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.newest = counter;
            return true;
        }
        let back = self.newest - counter;
        if back >= REPLAY_WINDOW || self.seen & (1u128 << back) != 0 {
            return false;
        }
        self.seen |= 1u128 << back;
        true
    }
}

/// What the shell does with one datagram received on the data port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelVerdict {
    /// Send `packet[range]` (rewritten in place) to the partner's proven address.
    Send {
        /// The partner's proven address.
        to: SocketAddr,
        /// The bytes to send.
        range: Range<usize>,
    },
    /// The partner has no proven channel address (it carries media inside its QUIC
    /// connection, e.g. over the TCP fallback): send `packet[range]`, the bare payload,
    /// as a QUIC datagram on `leg`'s connection.
    ToLeg {
        /// The partner's leg.
        leg: LegId,
        /// The payload.
        range: Range<usize>,
    },
    /// Send `packet[..len]` (a BOUND or CHALLENGE written in place) back to `to`.
    Answer {
        /// The datagram's source.
        to: SocketAddr,
        /// Length of the answer.
        len: usize,
    },
    /// Drop it (counted).
    Drop(DropReason),
}

#[derive(Debug)]
struct Channel {
    leg: LegId,
    key: ChannelKey,
    window: ReplayWindow,
    limiter: Limiter,
    /// The proven address, once a BIND carried a valid cookie from it.
    addr: Option<SocketAddr>,
    partner: Option<(ChannelId, LegId)>,
    /// Monotonic ms of the last authentic datagram.
    last_active: u64,
    /// Monotonic ms at which the call reaches its maximum length.
    ends_at: u64,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    channel: Option<Channel>,
}

/// The channel table. See the module documentation.
#[derive(Debug)]
pub struct ChannelTable {
    slots: Box<[Mutex<Slot>]>,
    free: Mutex<Vec<u32>>,
    epoch: Instant,
    rate: RateLimit,
    /// Keys the cookies of address challenges.
    secret: ChannelKey,
    own: OnceLock<Vec<SocketAddr>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under a slot lock is a bug; the slot's state is still the best there is.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn index_of(id: ChannelId) -> usize {
    (id & ((1 << INDEX_BITS) - 1)) as usize
}

fn generation_of(id: ChannelId) -> u32 {
    id >> INDEX_BITS
}

impl ChannelTable {
    /// A table of `capacity` channels (at most [`MAX_CHANNELS`]), each capped at
    /// `rate`, on a monotonic clock that starts at `epoch`.
    pub fn new(capacity: usize, rate: RateLimit, epoch: Instant) -> ChannelTable {
        let capacity = capacity.min(MAX_CHANNELS);
        ChannelTable {
            slots: (0..capacity).map(|_| Mutex::new(Slot::default())).collect(),
            // Popped from the end: low indices first.
            free: Mutex::new((0..capacity as u32).rev().collect()),
            epoch,
            rate,
            secret: ChannelKey(rand::random()),
            own: OnceLock::new(),
        }
    }

    /// The relay's own addresses (its data and QUIC sockets): never a source or a
    /// destination. Set once, after binding; later calls are ignored.
    pub fn set_own_addrs(&self, addrs: Vec<SocketAddr>) {
        let _ = self.own.set(addrs);
    }

    /// Monotonic milliseconds since the table's epoch.
    pub(crate) fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Opens a channel for `leg` with `key`, whose call ends at `ends_at`; `None` when
    /// the table is full.
    pub fn open(
        &self,
        now: Instant,
        leg: LegId,
        key: ChannelKey,
        ends_at: Instant,
    ) -> Option<ChannelId> {
        let index = lock(&self.free).pop()?;
        let mut slot = lock(&self.slots[index as usize]);
        slot.generation = (slot.generation + 1) & ((1 << (32 - INDEX_BITS)) - 1);
        let now_ms = self.ms(now);
        slot.channel = Some(Channel {
            leg,
            key,
            window: ReplayWindow::default(),
            limiter: Limiter::new(&self.rate, now_ms),
            addr: None,
            partner: None,
            last_active: now_ms,
            ends_at: self.ms(ends_at),
        });
        Some(slot.generation << INDEX_BITS | index)
    }

    fn with<R>(&self, id: ChannelId, f: impl FnOnce(&mut Channel) -> R) -> Option<R> {
        let mut slot = lock(self.slots.get(index_of(id))?);
        if slot.generation != generation_of(id) {
            return None;
        }
        slot.channel.as_mut().map(f)
    }

    /// Sets `id`'s partner (or clears it with `None`).
    pub fn set_partner(&self, id: ChannelId, partner: Option<(ChannelId, LegId)>) {
        self.with(id, |c| c.partner = partner);
    }

    /// Closes `id`; its slot can be reused (under a new generation).
    pub fn close(&self, id: ChannelId) {
        let Some(slot) = self.slots.get(index_of(id)) else {
            return;
        };
        let mut slot = lock(slot);
        if slot.generation == generation_of(id) && slot.channel.take().is_some() {
            drop(slot);
            lock(&self.free).push(index_of(id) as u32);
        }
    }

    /// When `id` last carried an authentic datagram.
    pub fn last_active(&self, id: ChannelId) -> Option<Instant> {
        self.with(id, |c| c.last_active)
            .map(|ms| self.epoch + Duration::from_millis(ms))
    }

    /// `id`'s proven address, if any.
    pub fn addr_of(&self, id: ChannelId) -> Option<SocketAddr> {
        self.with(id, |c| c.addr).flatten()
    }

    /// Channels open now.
    pub fn len(&self) -> usize {
        self.slots.len() - lock(&self.free).len()
    }

    /// Whether no channel is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_reflection(&self, addr: SocketAddr) -> bool {
        addr.port() == 0
            || addr.ip().is_unspecified()
            || self.own.get().is_some_and(|own| own.contains(&addr))
    }

    fn cookie(&self, id: ChannelId, addr: SocketAddr) -> u64 {
        let mut buf = [0u8; 4 + 16 + 2];
        buf[..4].copy_from_slice(&id.to_be_bytes());
        match addr.ip() {
            std::net::IpAddr::V4(ip) => buf[4..8].copy_from_slice(&ip.octets()),
            std::net::IpAddr::V6(ip) => buf[4..20].copy_from_slice(&ip.octets()),
        }
        buf[20..].copy_from_slice(&addr.port().to_be_bytes());
        self.secret.tag(&buf)
    }

    /// Decides what to do with `packet` (the received bytes, which may be rewritten in
    /// place) from `from` at `now`, counting it in `stats`.
    pub fn handle_datagram(
        &self,
        now: Instant,
        from: SocketAddr,
        packet: &mut [u8],
        stats: &mut RelayStats,
    ) -> ChannelVerdict {
        let verdict = self.decide(now, from, packet);
        match &verdict {
            ChannelVerdict::Send { range, .. } | ChannelVerdict::ToLeg { range, .. } => {
                stats.count_forward(range.len())
            }
            ChannelVerdict::Answer { .. } => {}
            ChannelVerdict::Drop(reason) => stats.count_drop(*reason),
        }
        verdict
    }

    fn decide(&self, now: Instant, from: SocketAddr, packet: &mut [u8]) -> ChannelVerdict {
        use ChannelVerdict::Drop;
        if self.is_reflection(from) {
            return Drop(DropReason::Reflection);
        }
        let len = packet.len();
        let Ok(d) = decode_client(packet) else {
            return Drop(DropReason::Malformed);
        };
        let (id, counter, kind) = (d.channel, d.counter, d.kind);
        let Some(slot) = self.slots.get(index_of(id)) else {
            return Drop(DropReason::UnknownChannel);
        };
        let now_ms = self.ms(now);
        let partner = {
            let mut slot = lock(slot);
            if slot.generation != generation_of(id) {
                return Drop(DropReason::UnknownChannel);
            }
            let Some(c) = slot.channel.as_mut() else {
                return Drop(DropReason::UnknownChannel);
            };
            if c.key.tag(d.signed) != d.tag {
                return Drop(DropReason::BadMac);
            }
            if !c.window.accept(counter) {
                return Drop(DropReason::Replayed);
            }
            c.last_active = c.last_active.max(now_ms);
            if now_ms >= c.ends_at {
                return Drop(DropReason::CallTooLong);
            }
            if !c.limiter.admit(now_ms, len) {
                return Drop(DropReason::RateLimited);
            }
            match kind {
                ClientKind::Bind { cookie } => {
                    let proven =
                        c.addr == Some(from) || cookie.is_some_and(|k| k == self.cookie(id, from));
                    let len = if proven {
                        c.addr = Some(from);
                        write_answer(packet, true, id, counter)
                    } else {
                        write_answer(packet, false, id, self.cookie(id, from))
                    };
                    return ChannelVerdict::Answer { to: from, len };
                }
                ClientKind::Data if c.addr != Some(from) => {
                    return Drop(DropReason::UnprovenAddress)
                }
                ClientKind::Data => match c.partner {
                    Some(p) => p,
                    None => return Drop(DropReason::NotPaired),
                },
            }
        };
        let (partner_id, partner_leg) = partner;
        let to = match self.with(partner_id, |p| p.addr) {
            None => return Drop(DropReason::NotPaired),
            Some(to) => to,
        };
        match to {
            Some(to) if self.is_reflection(to) => Drop(DropReason::Reflection),
            Some(to) => ChannelVerdict::Send {
                to,
                range: rewrite_for_partner(packet, len, partner_id),
            },
            None => ChannelVerdict::ToLeg {
                leg: partner_leg,
                range: CLIENT_HEADER..len - TAG_LEN,
            },
        }
    }

    /// The leg of channel `id`, if open.
    pub fn leg_of(&self, id: ChannelId) -> Option<LegId> {
        self.with(id, |c| c.leg)
    }
}

#[cfg(test)]
#[path = "channel_table_tests.rs"]
mod tests;
