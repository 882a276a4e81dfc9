//! A client's attachment to supernodes, as a sans-IO state machine.
//!
//! The client keeps [`AttachConfig::target`] supernodes attached at once (two, for
//! redundancy), chosen from its host cache and the bootstrap list; a dead address is
//! retried with exponential backoff while others are tried. Each time the set of
//! attached supernodes changes, and every republish interval, it signs a new presence
//! record with a higher sequence number and publishes it through one attachment (the
//! first attached): that supernode stores it on the `k` closest supernodes to the
//! client's key, so a second publication through the other attachment would only
//! repeat the same lookup and the same stores (it doubled the overlay's publication
//! traffic). The record names every attachment, so the client is callable through
//! each; when the publishing one dies or refuses the record, the record is published
//! at once through another (see [`Attachment::handle_lost`]).
//!
//! An idle attachment costs little: the machine tells the shell to keep each one alive
//! every 13.5–15 s ([`AttachConfig::keep_alive`], jittered per attachment) and to
//! declare it dead when a keep-alive goes unanswered for 20 s
//! ([`AttachConfig::dead_after`]); a lost attachment is replaced after a random spread
//! ([`AttachConfig::reattach_spread`]) while the other one keeps the client callable.
//! Nothing a call in progress does depends on an attachment being alive.
//!
//! Driving: call [`Attachment::handle_timeout`] at [`Attachment::poll_timeout`], report
//! dial and publish outcomes with the `handle_*` methods, and drain
//! [`Attachment::poll_action`] after every call.
//!
//! Time comes in as [`Now`]: every retry and republish timer runs on its monotonic half
//! (a wall-clock step neither freezes a re-dial nor fires every republication at once);
//! the wall half is used only for what is signed, the record's expiry and sequence
//! number.

use crate::identity::{Identity, PeerId};
use crate::presence::{
    AddressKind, CandidateAddr, Contact, NatType, PresenceRecord, SignedPresence, MAX_ADDRESSES,
    MAX_SUPERNODES,
};
use crate::time::{Mono, Now, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

fn identity_prefix(identity: &Identity) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&identity.peer_id().as_bytes()[..8]);
    out
}

/// Most supernodes remembered in the host cache.
pub const HOST_CACHE_SIZE: usize = 64;

/// Tunables of the attachment machine.
#[derive(Clone, Debug)]
pub struct AttachConfig {
    /// How many supernodes to stay attached to.
    pub target: usize,
    /// First retry delay after a failed dial (or a refused record); doubles per
    /// failure, and each delay is drawn from its upper half, so clients that lost the
    /// same supernode do not come back in step.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How often the record is re-signed and republished, ±10 % at random. Changes
    /// (an attachment gained or lost) republish at once besides.
    pub republish_interval: Duration,
    /// How long a published record lives. Must exceed `republish_interval` with
    /// room for a lost publication, and stay below
    /// [`crate::presence::MAX_TTL`] with room for clock skew.
    pub record_ttl: Duration,
    /// How often an idle attachment is kept alive (one QUIC PING, one ACK back), before
    /// jitter: each attachment draws its own interval from 90–100 % of this, so
    /// clients that attached together drift apart. It must beat the NAT's UDP mapping
    /// timeout: RFC 4787 REQ-5 asks for at least 2 min, but many home routers use 30 s.
    pub keep_alive: Duration,
    /// An attachment whose keep-alive is not answered within this long is dead (the
    /// QUIC idle timeout). A dead supernode is noticed between `dead_after` and
    /// `keep_alive + dead_after` after it died.
    pub dead_after: Duration,
    /// A lost attachment is replaced after a random delay of up to this long while
    /// another attachment remains (the client stays callable through it), so the
    /// clients of a supernode that died do not all dial at once. With no attachment
    /// left, the delay is up to `retry_min`.
    pub reattach_spread: Duration,
}

/// How a dial must keep its attachment alive and when to declare it dead; the shell
/// configures its transport with it (QUIC keep-alive interval and idle timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// Send a keep-alive after this long without sending anything.
    pub interval: Duration,
    /// Dead after this long without hearing from the supernode.
    pub dead_after: Duration,
}

/// How long a published record lives by default ([`AttachConfig::record_ttl`]).
pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(50 * 60);

impl Default for AttachConfig {
    fn default() -> Self {
        AttachConfig {
            target: 2,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            // Publisher-driven refresh (as Mainline DHT's announces): each refresh
            // costs one publication per attachment, so it is rare; the overlay's
            // holders only republish what is not refreshed (see `overlay`).
            republish_interval: Duration::from_secs(20 * 60),
            record_ttl: DEFAULT_RECORD_TTL,
            // 15 s beats a 30 s NAT mapping timeout even with one keep-alive lost,
            // and costs the supernode 2 datagrams per 13.5-15 s: at most 8.9 a
            // minute per client (the target is 10).
            keep_alive: Duration::from_secs(15),
            // Time for a keep-alive to be answered, retransmissions included (QUIC's
            // probe timeout doubles from ~1 s on a 300 ms path). A dead supernode is
            // noticed 20-35 s after it died; replaced within a further 10 s.
            dead_after: Duration::from_secs(20),
            reattach_spread: Duration::from_secs(10),
        }
    }
}

impl AttachConfig {
    /// The keep-alive of an attachment, before its per-attachment jitter (for
    /// short-lived connections made outside the machine, e.g. a one-off lookup).
    pub fn liveness(&self) -> KeepAlive {
        KeepAlive {
            interval: self.keep_alive,
            dead_after: self.dead_after,
        }
    }
}

/// What the shell must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachAction {
    /// Dial this supernode, say `Hello`, and report with `handle_dialed`.
    Dial {
        /// Where.
        addr: SocketAddr,
        /// The key it should hold, when known (pin it).
        expected: Option<PeerId>,
        /// How the connection is kept alive and when it counts as dead.
        keep_alive: KeepAlive,
    },
    /// Send this record on the attachment to `to`, and report with `handle_published`.
    Publish {
        /// The attached supernode.
        to: Contact,
        /// The freshly signed record.
        record: SignedPresence,
    },
    /// Ask the attached supernode `to` how it sees our address now (`Hello` again) and
    /// report with `handle_observed`: a NAT that moved us to a new port keeps a QUIC
    /// connection going (the supernode follows the migration), so only asking tells.
    /// Sent with every periodic refresh.
    Observe {
        /// The attached supernode.
        to: Contact,
    },
    /// Tell the user: attached to a supernode.
    Attached(Contact),
    /// Tell the user: an attachment was lost.
    Detached(Contact),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Dialing,
    Attached,
}

#[derive(Clone, Debug)]
struct Candidate {
    addr: SocketAddr,
    id: Option<PeerId>,
    state: State,
    failures: u32,
    next_try: Mono,
    /// When it last answered; never-seen bootstrap entries sort after known-good ones.
    last_ok: Option<Mono>,
    /// Our address as this supernode saw it while attached.
    observed: Option<SocketAddr>,
    /// The QUIC address the supernode advertises, when we dial it elsewhere (its TCP
    /// fallback): presence records name this one, which other supernodes can reach.
    quic: Option<SocketAddr>,
}

/// The attachment state of one client.
pub struct Attachment {
    identity: Identity,
    display_name: String,
    config: AttachConfig,
    candidates: Vec<Candidate>,
    local_addrs: Vec<SocketAddr>,
    seq: u64,
    rng: StdRng,
    nat: NatType,
    next_republish: Option<Mono>,
    /// No new dial to fill an empty slot before this (the spread after a loss).
    hold_until: Option<Mono>,
    actions: VecDeque<AttachAction>,
}

impl Attachment {
    /// A new machine. `cache` (known-good supernodes from disk) is tried before `bootstrap`.
    pub fn new(
        identity: Identity,
        display_name: String,
        config: AttachConfig,
        bootstrap: &[SocketAddr],
        cache: &[Contact],
        local_addrs: Vec<SocketAddr>,
        now: Now,
    ) -> Attachment {
        let seed = u64::from_le_bytes(identity_prefix(&identity)) ^ now.wall.as_millis();
        let mut a = Attachment {
            identity,
            display_name,
            config,
            candidates: Vec::new(),
            local_addrs,
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            nat: NatType::Unknown,
            next_republish: None,
            hold_until: None,
            actions: VecDeque::new(),
        };
        for contact in cache {
            a.learn(contact.addr, Some(contact.id), Some(now.mono));
        }
        for addr in bootstrap {
            a.learn(*addr, None, None);
        }
        a.fill(now.mono);
        a
    }

    fn learn(&mut self, addr: SocketAddr, id: Option<PeerId>, last_ok: Option<Mono>) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == addr) {
            if c.id.is_none() {
                c.id = id;
            }
            return;
        }
        if self.candidates.len() >= HOST_CACHE_SIZE * 2 {
            return;
        }
        self.candidates.push(Candidate {
            addr,
            id,
            state: State::Idle,
            failures: 0,
            next_try: Mono(0),
            last_ok,
            observed: None,
            quic: None,
        });
    }

    /// The NAT behaviour discovered for our socket, carried in the records from now on.
    pub fn set_nat(&mut self, nat: NatType) {
        self.nat = nat;
    }

    /// Supernodes learned from the overlay (e.g. a `Supernodes` reply).
    pub fn learn_supernodes(&mut self, now: Now, contacts: &[Contact]) {
        for c in contacts {
            self.learn(c.addr, Some(c.id), None);
        }
        self.fill(now.mono);
    }

    fn attached_count(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| c.state != State::Idle)
            .count()
    }

    /// Starts dials until `target` attachments are attached or under way.
    fn fill(&mut self, now: Mono) {
        if self.hold_until.is_some_and(|t| now < t) {
            return;
        }
        self.hold_until = None;
        while self.attached_count() < self.config.target {
            let attached_ids: Vec<PeerId> = self
                .candidates
                .iter()
                .filter(|c| c.state != State::Idle)
                .filter_map(|c| c.id)
                .collect();
            let pick = self
                .candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| c.state == State::Idle && c.next_try <= now)
                .filter(|(_, c)| c.id.is_none_or(|id| !attached_ids.contains(&id)))
                // Fewest failures first, then the most recently good, then list order.
                .min_by_key(|(i, c)| (c.failures, std::cmp::Reverse(c.last_ok), *i))
                .map(|(i, _)| i);
            let Some(i) = pick else { break };
            let keep_alive = KeepAlive {
                interval: self
                    .config
                    .keep_alive
                    .mul_f64(self.rng.gen_range(0.9..=1.0)),
                dead_after: self.config.dead_after,
            };
            let c = &mut self.candidates[i];
            c.state = State::Dialing;
            self.actions.push_back(AttachAction::Dial {
                addr: c.addr,
                expected: c.id,
                keep_alive,
            });
        }
    }

    /// The outcome of a `Dial`: the supernode's proven key and the address it saw us at,
    /// or `None` if the dial or the hello failed.
    pub fn handle_dialed(
        &mut self,
        now: Now,
        addr: SocketAddr,
        outcome: Option<(PeerId, SocketAddr)>,
    ) {
        let Some(i) = self.candidates.iter().position(|c| c.addr == addr) else {
            return;
        };
        match outcome {
            Some((id, observed)) => {
                let c = &mut self.candidates[i];
                c.state = State::Attached;
                c.id = Some(id);
                // Failures are forgiven when a publication succeeds, not on connect:
                // a supernode that accepts us but refuses our record must not be
                // re-dialled in a tight loop.
                c.last_ok = Some(now.mono);
                c.observed = Some(observed);
                self.actions
                    .push_back(AttachAction::Attached(Contact { id, addr }));
                self.republish(now);
            }
            None => self.fail(now.mono, i),
        }
        self.fill(now.mono);
    }

    fn fail(&mut self, now: Mono, i: usize) {
        let (min, max) = (self.config.retry_min, self.config.retry_max);
        let c = &mut self.candidates[i];
        c.state = State::Idle;
        c.observed = None;
        c.failures = c.failures.saturating_add(1);
        let backoff = min.saturating_mul(1 << c.failures.min(16)).min(max);
        c.next_try = now + backoff.mul_f64(self.rng.gen_range(0.5..=1.0));
    }

    /// The supernode dialed at `addr` (e.g. its TCP fallback, from a network that
    /// drops UDP) advertises QUIC at `quic`: presence records name it there, since
    /// the supernodes that route calls to us reach it over UDP. Call after
    /// [`Attachment::handle_dialed`]; the next publication carries it.
    pub fn set_quic_address(&mut self, now: Now, addr: SocketAddr, quic: SocketAddr) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == addr) {
            if c.quic != Some(quic) && quic != addr {
                c.quic = Some(quic);
                if c.state == State::Attached {
                    self.republish(now);
                }
            }
        }
    }

    /// An attachment's connection was lost.
    pub fn handle_lost(&mut self, now: Now, addr: SocketAddr) {
        let Some(i) = self
            .candidates
            .iter()
            .position(|c| c.addr == addr && c.state == State::Attached)
        else {
            return;
        };
        if let Some(id) = self.candidates[i].id {
            self.actions
                .push_back(AttachAction::Detached(Contact { id, addr }));
        }
        self.fail(now.mono, i);
        // Every client of a supernode that died notices within the same few seconds:
        // spread the replacements. While another attachment is up, we are callable
        // through it and can wait longer.
        let spread = if self.attached().is_empty() {
            self.config.retry_min
        } else {
            self.config.reattach_spread
        };
        let hold = now.mono + spread.mul_f64(self.rng.gen_range(0.0..=1.0));
        self.hold_until = Some(self.hold_until.map_or(hold, |t| t.max(hold)));
        self.fill(now.mono);
        self.republish(now);
    }

    /// A supernode refused our record because of the time in it (`RefusalCode::Expired`
    /// for a record we had just signed: our clock and the supernode's disagree by more
    /// than [`crate::time::MAX_CLOCK_SKEW`]). The attachment works, so it is kept (no
    /// re-dial loop); the record is signed again after `retry_max`, in case the clock
    /// was put right (after 50-100 % of `retry_max`, at random). The shell tells the user the refusal's text, which says which
    /// clock is off and by how much.
    pub fn handle_refused_for_clock(&mut self, now: Now, to: Contact) {
        let attached = self
            .candidates
            .iter()
            .any(|c| c.addr == to.addr && c.state == State::Attached);
        if !attached {
            return;
        }
        // Jittered like the other retries: a supernode whose clock is off refuses
        // all its clients at once.
        let retry = now.mono + self.config.retry_max.mul_f64(self.rng.gen_range(0.5..=1.0));
        self.next_republish = Some(self.next_republish.map_or(retry, |t| t.min(retry)));
    }

    /// The outcome of a `Publish`; a refusal is treated like a lost attachment.
    pub fn handle_published(&mut self, now: Now, to: Contact, ok: bool) {
        if ok {
            if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == to.addr) {
                c.failures = 0;
            }
        } else {
            self.handle_lost(now, to.addr);
        }
    }

    /// The supernode at `addr` now sees us at `observed` (the answer to an `Observe`):
    /// if that changed, the record is signed again with the address that is true now.
    pub fn handle_observed(&mut self, now: Now, addr: SocketAddr, observed: SocketAddr) {
        let Some(c) = self
            .candidates
            .iter_mut()
            .find(|c| c.addr == addr && c.state == State::Attached)
        else {
            return;
        };
        if c.observed != Some(observed) {
            c.observed = Some(observed);
            self.republish(now);
        }
    }

    /// Timers: retries that came due, and the periodic republish (with a fresh look
    /// at our observed addresses).
    pub fn handle_timeout(&mut self, now: Now) {
        self.fill(now.mono);
        if self.next_republish.is_some_and(|t| t <= now.mono) {
            for to in self.attached() {
                self.actions.push_back(AttachAction::Observe { to });
            }
            self.republish(now);
        }
    }

    /// When `handle_timeout` must next be called, on the monotonic clock.
    pub fn poll_timeout(&self) -> Option<Mono> {
        let retry = if self.attached_count() < self.config.target {
            self.candidates
                .iter()
                .filter(|c| c.state == State::Idle)
                .map(|c| c.next_try)
                .min()
                .map(|t| self.hold_until.map_or(t, |h| t.max(h)))
        } else {
            None
        };
        [retry, self.next_republish].into_iter().flatten().min()
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<AttachAction> {
        self.actions.pop_front()
    }

    /// The supernodes attached right now.
    pub fn attached(&self) -> Vec<Contact> {
        self.candidates
            .iter()
            .filter(|c| c.state == State::Attached)
            .filter_map(|c| c.id.map(|id| Contact { id, addr: c.addr }))
            .collect()
    }

    /// Supernodes worth remembering on disk: those that answered, most recent first.
    pub fn host_cache(&self) -> Vec<Contact> {
        let mut good: Vec<&Candidate> = self
            .candidates
            .iter()
            .filter(|c| c.last_ok.is_some() || c.state == State::Attached)
            .collect();
        good.sort_by_key(|c| std::cmp::Reverse(c.last_ok));
        let mut out: Vec<Contact> = good
            .into_iter()
            .filter_map(|c| c.id.map(|id| Contact { id, addr: c.addr }))
            .collect();
        // Learned-but-untried supernodes still beat nothing if every known one dies.
        out.extend(
            self.candidates
                .iter()
                .filter(|c| c.last_ok.is_none() && c.state != State::Attached)
                .filter_map(|c| c.id.map(|id| Contact { id, addr: c.addr })),
        );
        out.truncate(HOST_CACHE_SIZE);
        out
    }

    /// Continues sequence numbers after `seq` (the last one used, kept on disk by the
    /// shell): a record signed after a run with a clock that was ahead still supersedes
    /// the ones left behind.
    pub fn resume_seq(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }

    /// The last sequence number used (for the shell to keep on disk).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record as it would be signed now (what `Publish` actions carry).
    pub fn current_record(&mut self, now: Timestamp) -> SignedPresence {
        // Milliseconds since the epoch keep sequence numbers rising across restarts.
        self.seq = self.seq.saturating_add(1).max(now.as_millis());
        let mut supernodes: Vec<Contact> = self
            .candidates
            .iter()
            .filter(|c| c.state == State::Attached)
            .filter_map(|c| {
                c.id.map(|id| Contact {
                    id,
                    addr: c.quic.unwrap_or(c.addr),
                })
            })
            .collect();
        supernodes.truncate(MAX_SUPERNODES);
        let mut addresses: Vec<CandidateAddr> = self
            .local_addrs
            .iter()
            .map(|&addr| CandidateAddr {
                kind: AddressKind::Local,
                addr,
            })
            .chain(self.observed_now().into_iter().map(|addr| CandidateAddr {
                kind: AddressKind::Observed,
                addr,
            }))
            .collect();
        addresses.truncate(MAX_ADDRESSES);
        PresenceRecord {
            id: self.identity.peer_id(),
            display_name: self.display_name.clone(),
            supernodes,
            addresses,
            nat: self.nat,
            seq: self.seq,
            expires_at: now + self.config.record_ttl,
        }
        .sign(&self.identity)
    }

    fn republish(&mut self, now: Now) {
        let attached = self.attached();
        if attached.is_empty() {
            self.next_republish = None;
            return;
        }
        let record = self.current_record(now.wall);
        // One publication suffices (see the module docs); the others' supernodes are
        // named in the record.
        if let Some(&to) = attached.first() {
            self.actions.push_back(AttachAction::Publish { to, record });
        }
        let interval = self.config.republish_interval;
        self.next_republish = Some(now.mono + interval.mul_f64(self.rng.gen_range(0.9..=1.1)));
    }

    /// Our addresses as the supernodes attached right now see them: the ones that
    /// are true now, never an accumulation of past ones.
    fn observed_now(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        for c in self
            .candidates
            .iter()
            .filter(|c| c.state == State::Attached)
        {
            if let Some(addr) = c.observed {
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "attach_tests.rs"]
mod tests;
