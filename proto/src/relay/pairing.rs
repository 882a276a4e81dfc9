//! [`RelayCore`]: the sans-IO relay. It admits legs, pairs the two legs of a call,
//! decides where each datagram goes, and enforces the limits.
//!
//! The shell gives each QUIC connection an opaque [`LegId`] and feeds the machine:
//! `handle_join` for a `Join` request, `handle_datagram` for every datagram received
//! (the answer is the one leg to forward it to, or a typed drop), `handle_closed` when
//! a connection ends, and `handle_timeout` no later than `poll_timeout` asks. Legs the
//! machine ends itself (idle, call too long, partner gone) come out of `poll_close`.
//!
//! A datagram is only ever forwarded to the paired leg of the sender's own call: the
//! partner is looked up from the sender's leg, never from anything in the datagram.
//!
//! When a leg goes away, its partner is not closed at once: it goes back to waiting
//! for `rejoin_grace`, so a party whose network changed (Wi-Fi to mobile) can dial
//! again with the same token and the call resumes. If nobody comes back in time, the
//! partner is closed with [`CloseReason::PartnerLeft`]. A hang-up is signalled between
//! the parties end to end, so the grace only delays cleanup after a crash.
//!
//! Every timer runs on the monotonic clock the shell passes in (`now: Instant`): a
//! wall-clock step neither freezes the rate caps nor closes legs. Wall time is used for
//! one thing only, the signed expiry of a token, checked by [`TokenVerifier`] with
//! [`MAX_CLOCK_SKEW`](crate::time::MAX_CLOCK_SKEW) of tolerance either way, before (and outside) this machine.
//!
//! A joined leg also gets a media channel in the shared [`ChannelTable`] (when the shell
//! passes the channel key): the data plane forwards channel datagrams through that table
//! without this machine; its timers read the channels' activity from it.

use crate::identity::PeerId;
use crate::relay::channel::{ChannelId, ChannelKey};
use crate::relay::channel_table::ChannelTable;
use crate::relay::messages::{RelayRefusal, RelayRefusalCode};
use crate::relay::rate::{Limiter, RateLimit};
use crate::relay::stats::{CloseReason, DropReason, RelayStats};
use crate::relay::token::{CallId, RelayToken, SignedRelayToken, TokenError};
use crate::time::Timestamp;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checks join tokens: signature, issuer, relay, expiry. Cheap to clone, needs no lock,
/// so the shell runs the ed25519 check before touching any shared state (a flood of
/// joins then costs CPU, not every call's forwarding).
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    me: PeerId,
    trusted: Vec<PeerId>,
}

/// A token whose signature, issuer and relay were checked by [`TokenVerifier`].
#[derive(Clone, Debug)]
pub struct VerifiedJoin {
    token: RelayToken,
    /// The expiry has passed (by more than [`MAX_CLOCK_SKEW`](crate::time::MAX_CLOCK_SKEW)): only a rejoin to a call
    /// still open on this relay is admitted with it.
    expired: Option<RelayRefusal>,
}

impl VerifiedJoin {
    /// The token.
    pub fn token(&self) -> &RelayToken {
        &self.token
    }
}

impl TokenVerifier {
    /// Verifies `token` at wall time `wall`. An expired token is returned marked
    /// expired (see [`VerifiedJoin`]); every other failure is a refusal.
    pub fn verify(
        &self,
        wall: Timestamp,
        token: &SignedRelayToken,
    ) -> Result<VerifiedJoin, RelayRefusal> {
        // The skew tolerance (MAX_CLOCK_SKEW either way) is applied by the token check
        // itself, the one rule for every signed expiry.
        match token.verify(wall, &self.me, &self.trusted) {
            Ok(t) => Ok(VerifiedJoin {
                token: t.clone(),
                expired: None,
            }),
            Err(e @ TokenError::Expired { .. }) => Ok(VerifiedJoin {
                token: token.token.clone(),
                expired: Some(RelayRefusal::from(&e)),
            }),
            Err(e) => Err(RelayRefusal::from(&e)),
        }
    }
}

/// A leg: one client connection to the relay, numbered by the shell.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LegId(pub u64);

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg#{}", self.0)
    }
}

/// A relay's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Per-leg rate cap on datagrams received from the leg.
    pub rate: RateLimit,
    /// A call's legs are closed this long after the call's first leg joined.
    pub max_call_length: Duration,
    /// A paired leg that sends no datagram for this long is closed.
    pub idle_timeout: Duration,
    /// A leg whose partner has not joined this long after it joined is closed.
    pub pair_timeout: Duration,
    /// A leg whose partner left is closed if the partner does not rejoin within this.
    pub rejoin_grace: Duration,
    /// Most legs one key may hold at once, across all calls: 8, so the host of an
    /// eight-person conference (seven legs) fits, with one to spare for a rejoin.
    pub max_legs_per_key: u32,
    /// Most legs the relay holds at once.
    pub max_legs: u32,
    /// Most legs one source IP may hold at once. `u32::MAX` (the default): no limit,
    /// as for operator relays, where one NAT may hide many callers. A peer relay
    /// (issue 10) sets a small one, so that one host cannot take all of a volunteer's
    /// capacity with many keys.
    pub max_legs_per_ip: u32,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            rate: RateLimit::default(),
            max_call_length: Duration::from_secs(4 * 60 * 60),
            idle_timeout: Duration::from_secs(30),
            pair_timeout: Duration::from_secs(60),
            rejoin_grace: Duration::from_secs(10),
            max_legs_per_key: 8,
            max_legs: 10_000,
            max_legs_per_ip: u32::MAX,
        }
    }
}

/// A successful join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinOutcome {
    /// The other party's leg, when it was already there: the two are now paired, and
    /// the shell should tell that leg (`Paired`).
    pub paired_with: Option<LegId>,
    /// The leg's media channel, when the shell gave a key and the table had room.
    pub channel: Option<ChannelId>,
}

/// What to do with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it, unchanged, to this leg (the sender's partner, and no one else).
    Forward {
        /// The partner leg.
        to: LegId,
    },
    /// Drop it; counted under the reason.
    Drop(DropReason),
}

/// The relay's size, for load reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadCounts {
    /// Calls with at least one leg.
    pub calls: u32,
    /// Legs joined.
    pub legs: u32,
    /// The configured leg limit.
    pub max_legs: u32,
}

#[derive(Debug)]
struct Leg {
    call: CallId,
    peer: PeerId,
    /// The source IP it joined from (per-IP quota).
    ip: IpAddr,
    /// Index of `peer` in the call's `parties`.
    slot: usize,
    /// Cached from the call so the hot path needs one lookup.
    partner: Option<LegId>,
    /// The leg's media channel in the shared table.
    channel: Option<ChannelId>,
    ends_at: Instant,
    limiter: Limiter,
    last_active: Instant,
    /// While unpaired: when to give up on the partner, and with which reason.
    waiting: Option<(Instant, CloseReason)>,
}

impl Leg {
    /// The earliest moment this leg must be closed, and why. `channel_active`: the last
    /// datagram on its media channel.
    fn deadline(
        &self,
        idle_timeout: Duration,
        channel_active: Option<Instant>,
    ) -> (Instant, CloseReason) {
        let active = channel_active.map_or(self.last_active, |c| c.max(self.last_active));
        let (at, why) = match self.waiting {
            Some(wait) => wait,
            None => (active + idle_timeout, CloseReason::IdleTimeout),
        };
        if self.ends_at <= at {
            (self.ends_at, CloseReason::CallTooLong)
        } else {
            (at, why)
        }
    }
}

#[derive(Debug)]
struct Call {
    parties: [PeerId; 2],
    legs: [Option<LegId>; 2],
    /// Which parties have held a leg (an expired token only brings one back).
    joined: [bool; 2],
    ends_at: Instant,
}

/// The relay's state machine. See the module documentation.
#[derive(Debug)]
pub struct RelayCore {
    verifier: TokenVerifier,
    config: RelayConfig,
    channels: Arc<ChannelTable>,
    legs: HashMap<LegId, Leg>,
    calls: HashMap<CallId, Call>,
    legs_per_key: HashMap<PeerId, u32>,
    legs_per_ip: HashMap<IpAddr, u32>,
    closes: VecDeque<(LegId, CloseReason)>,
    /// A lower bound on the next deadline: activity only moves deadlines later, so a
    /// stale value just wakes the shell early, and `handle_timeout` recomputes it.
    next_wakeup: Option<Instant>,
    stats: RelayStats,
}

fn refuse(code: RelayRefusalCode, message: String) -> Result<JoinOutcome, RelayRefusal> {
    Err(RelayRefusal::new(code, message))
}

impl RelayCore {
    /// A relay with identity `me` that accepts tokens issued by `trusted` supernodes,
    /// started at monotonic time `now`. Its channel table holds `config.max_legs`.
    pub fn new(me: PeerId, trusted: Vec<PeerId>, config: RelayConfig, now: Instant) -> RelayCore {
        let channels = Arc::new(ChannelTable::new(
            config.max_legs as usize,
            config.rate,
            now,
        ));
        RelayCore {
            verifier: TokenVerifier { me, trusted },
            config,
            channels,
            legs: HashMap::new(),
            calls: HashMap::new(),
            legs_per_key: HashMap::new(),
            legs_per_ip: HashMap::new(),
            closes: VecDeque::new(),
            next_wakeup: None,
            stats: RelayStats::default(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The token check, to run outside whatever lock guards this machine.
    pub fn verifier(&self) -> TokenVerifier {
        self.verifier.clone()
    }

    /// The media channel table, for the data plane.
    pub fn channels(&self) -> Arc<ChannelTable> {
        self.channels.clone()
    }

    /// Connection `leg` from source IP `ip`, whose TLS handshake proved key `peer`, asks
    /// to join the call of `join` (a token checked by [`TokenVerifier`]). With `key`
    /// (exported from the leg's TLS session) the leg also gets a media channel.
    pub fn handle_join(
        &mut self,
        now: Instant,
        leg: LegId,
        peer: PeerId,
        ip: IpAddr,
        join: &VerifiedJoin,
        key: Option<ChannelKey>,
    ) -> Result<JoinOutcome, RelayRefusal> {
        if let Some(held) = self.legs.get(&leg) {
            return refuse(
                RelayRefusalCode::CallFull,
                format!(
                    "this connection is already a leg of call {}; open one connection per leg",
                    held.call
                ),
            );
        }
        let token = &join.token;
        if let Some(expired) = &join.expired {
            // An expired token still lets a party back into its own call while the call
            // is open here (a leg lost after the token's lifetime): it proves nothing
            // new, and the call was admitted with a valid one.
            let open = self.calls.get(&token.call_id).is_some_and(|c| {
                token.parties.iter().all(|p| c.parties.contains(p))
                    && c.parties.iter().zip(c.joined).any(|(p, j)| *p == peer && j)
            });
            if !open {
                return Err(expired.clone());
            }
        }
        if !token.is_party(&peer) {
            return refuse(
                RelayRefusalCode::NotAParty,
                format!(
                    "this connection's key {} is not one of the token's two parties",
                    peer.short()
                ),
            );
        }
        let call_id = token.call_id;
        if let Some(call) = self.calls.get(&call_id) {
            // Two tokens for one call id must name the same two parties, else a third
            // key could be slipped into a call under a second token.
            let same = token.parties.iter().all(|p| call.parties.contains(p));
            if !same {
                return refuse(
                    RelayRefusalCode::NotAParty,
                    format!("call {call_id} is already open on this relay for other parties"),
                );
            }
            if call
                .parties
                .iter()
                .zip(call.legs)
                .any(|(p, l)| *p == peer && l.is_some())
            {
                return refuse(
                    RelayRefusalCode::CallFull,
                    format!("{} already has a leg in call {call_id}", peer.short()),
                );
            }
        }
        let held = self.legs_per_key.get(&peer).copied().unwrap_or(0);
        if held >= self.config.max_legs_per_key {
            return refuse(
                RelayRefusalCode::TooManyLegs,
                format!(
                    "{} already holds {held} legs on this relay (the limit per key)",
                    peer.short()
                ),
            );
        }
        let ip = ip.to_canonical();
        let from_ip = self.legs_per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.config.max_legs_per_ip {
            return refuse(
                RelayRefusalCode::TooManyLegs,
                format!("{ip} already holds {from_ip} legs on this relay (the limit per IP)"),
            );
        }
        if self.legs.len() >= self.config.max_legs as usize {
            return refuse(
                RelayRefusalCode::Overloaded,
                format!(
                    "relay is at its limit of {} legs; try another relay",
                    self.config.max_legs
                ),
            );
        }

        let max_call_length = self.config.max_call_length;
        let call = self.calls.entry(call_id).or_insert_with(|| Call {
            parties: token.parties,
            legs: [None, None],
            joined: [false, false],
            ends_at: now + max_call_length,
        });
        let slot = usize::from(call.parties[1] == peer);
        call.legs[slot] = Some(leg);
        call.joined[slot] = true;
        let partner = call.legs[1 - slot];
        let ends_at = call.ends_at;
        let waiting = match partner {
            Some(_) => None,
            None => Some((now + self.config.pair_timeout, CloseReason::NotPaired)),
        };
        let channel = key.and_then(|k| self.channels.open(now, leg, k, ends_at));
        if let Some(p) = partner.and_then(|p| self.legs.get_mut(&p)) {
            p.partner = Some(leg);
            p.waiting = None;
            // Idle time counts from pairing: waiting for the partner was not idling.
            p.last_active = now;
            if let (Some(mine), Some(theirs)) = (channel, p.channel) {
                self.channels.set_partner(theirs, Some((mine, leg)));
            }
        }
        let partner_channel = partner.and_then(|p| {
            let c = self.legs.get(&p)?.channel?;
            Some((c, p))
        });
        if let Some(mine) = channel {
            self.channels.set_partner(mine, partner_channel);
        }
        let new = Leg {
            call: call_id,
            peer,
            ip,
            slot,
            partner,
            channel,
            ends_at,
            limiter: Limiter::new(&self.config.rate, self.channels.ms(now)),
            last_active: now,
            waiting,
        };
        let (deadline, _) = new.deadline(self.config.idle_timeout, None);
        self.wake_by(deadline);
        self.legs.insert(leg, new);
        *self.legs_per_key.entry(peer).or_insert(0) += 1;
        *self.legs_per_ip.entry(ip).or_insert(0) += 1;
        Ok(JoinOutcome {
            paired_with: partner,
            channel,
        })
    }

    /// The media channel of `leg`, if it has one.
    pub fn channel_of(&self, leg: LegId) -> Option<ChannelId> {
        self.legs.get(&leg).and_then(|l| l.channel)
    }

    /// Leg `leg` sent a datagram of `len` bytes: where does it go? This is the hot
    /// path: one hash lookup and two token buckets.
    pub fn handle_datagram(&mut self, now: Instant, leg: LegId, len: usize) -> Verdict {
        let now_ms = self.channels.ms(now);
        let verdict = match self.legs.get_mut(&leg) {
            None => Verdict::Drop(DropReason::NotJoined),
            Some(l) => {
                // Any datagram shows the leg is alive, even one that is dropped.
                l.last_active = l.last_active.max(now);
                if now >= l.ends_at {
                    Verdict::Drop(DropReason::CallTooLong)
                } else if let Some(to) = l.partner {
                    if l.limiter.admit(now_ms, len) {
                        Verdict::Forward { to }
                    } else {
                        Verdict::Drop(DropReason::RateLimited)
                    }
                } else {
                    Verdict::Drop(DropReason::NotPaired)
                }
            }
        };
        match verdict {
            Verdict::Forward { .. } => self.stats.count_forward(len),
            Verdict::Drop(reason) => self.stats.count_drop(reason),
        }
        verdict
    }

    /// The shell could not send a datagram of `len` bytes that `handle_datagram` told
    /// it to forward (the partner is congested, gone, or its path is too small).
    pub fn handle_undelivered(&mut self, reason: DropReason, len: usize) {
        self.stats.uncount_forward(len);
        self.stats.count_drop(reason);
    }

    /// Leg `leg`'s connection ended (for any reason, including a close this machine
    /// asked for). Unknown legs are ignored.
    pub fn handle_closed(&mut self, now: Instant, leg: LegId) {
        self.remove_leg(now, leg);
    }

    /// Closes every leg whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let idle = self.config.idle_timeout;
        let mut next: Option<Instant> = None;
        let mut expired = Vec::new();
        for (id, leg) in &self.legs {
            let active = leg.channel.and_then(|c| self.channels.last_active(c));
            let (at, why) = leg.deadline(idle, active);
            if at <= now {
                expired.push((*id, why));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.next_wakeup = next;
        // HashMap order is random; close in leg order so runs are reproducible.
        expired.sort_unstable_by_key(|(id, _)| *id);
        for (id, why) in expired {
            if self.remove_leg(now, id) {
                self.stats.count_close(why);
                self.closes.push_back((id, why));
            }
        }
    }

    /// When `handle_timeout` should be called next, if anything is pending. May be
    /// early (the shell then finds nothing to do), never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_wakeup
    }

    /// A leg the relay ended: the shell closes its connection with the reason.
    pub fn poll_close(&mut self) -> Option<(LegId, CloseReason)> {
        self.closes.pop_front()
    }

    /// Whether `leg` has joined a call.
    pub fn is_joined(&self, leg: LegId) -> bool {
        self.legs.contains_key(&leg)
    }

    /// The leg `leg` is paired with, if any.
    pub fn partner_of(&self, leg: LegId) -> Option<LegId> {
        self.legs.get(&leg).and_then(|l| l.partner)
    }

    /// Current calls and legs.
    pub fn load(&self) -> LoadCounts {
        LoadCounts {
            calls: self.calls.len().min(u32::MAX as usize) as u32,
            legs: self.legs.len().min(u32::MAX as usize) as u32,
            max_legs: self.config.max_legs,
        }
    }

    /// Totals since start.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    fn wake_by(&mut self, at: Instant) {
        self.next_wakeup = Some(self.next_wakeup.map_or(at, |n| n.min(at)));
    }

    /// Forgets `leg`; its partner, if any, goes back to waiting for `rejoin_grace`.
    fn remove_leg(&mut self, now: Instant, leg: LegId) -> bool {
        let Some(gone) = self.legs.remove(&leg) else {
            return false;
        };
        if let Some(c) = gone.channel {
            self.channels.close(c);
        }
        if let Some(n) = self.legs_per_key.get_mut(&gone.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.legs_per_key.remove(&gone.peer);
            }
        }
        if let Some(n) = self.legs_per_ip.get_mut(&gone.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.legs_per_ip.remove(&gone.ip);
            }
        }
        let Some(call) = self.calls.get_mut(&gone.call) else {
            return true;
        };
        call.legs[gone.slot] = None;
        match call.legs[1 - gone.slot] {
            None => {
                self.calls.remove(&gone.call);
            }
            Some(partner) => {
                let grace = now + self.config.rejoin_grace;
                if let Some(p) = self.legs.get_mut(&partner) {
                    p.partner = None;
                    if let Some(c) = p.channel {
                        self.channels.set_partner(c, None);
                    }
                    p.waiting = Some((grace, CloseReason::PartnerLeft));
                }
                self.wake_by(grace);
            }
        }
        true
    }
}
