//! Promoted peers (issue 10): most supernodes are users' clients that were promoted,
//! and they come and go with their users; the rest are an operator tier that stays up.
//!
//! A user's whole session is heavy-tailed (Lomax, shape [`SHAPE`], as `churn`), with a
//! given median. A client is promoted only after [`PROMOTE_AFTER`] online (the
//! client's `--promote-after` default), so what matters is the rest of a session that
//! has already lasted that long. For a Lomax session `X` with scale `λ`, the remainder
//! `X − a` given `X > a` is again Lomax with the same shape and scale `λ + a`: a peer
//! promoted now serves for a draw of that. Every peer in the overlay at the start of
//! the measured interval, and every peer promoted during it, draws its remaining
//! session that way, as if it had just been promoted. That overstates churn: a
//! stationary population holds more old peers, which stay longer.
//!
//! A peer leaves in one of two ways:
//! - **demotion** (the user quits; most departures): the supernode hands its records
//!   to the supernodes that replace it ([`parley_proto::overlay::Overlay::leave`]),
//!   waits for the hand-over at most [`HAND_OVER_WAIT`] (the shell's bound), then closes
//!   its connections: attached clients are told and re-attach within
//!   [`MOVE_SPREAD`] (the real client's spread after a closed attachment);
//! - **crash** (power, network): it stops answering at once; its clients notice at
//!   their keep-alive timeout (`clients::DETECT`).
//!
//! Either way another client is promoted somewhere at once, so the number of
//! supernodes stays the same while their membership turns over.

use crate::churn::{Churn, SHAPE};
use crate::clients::ClientAction;
use crate::world::Sim;
use parley_proto::Identity;
use rand::Rng;
use std::time::Duration;

/// Online time before a client is promoted (`parley online --promote-after` default).
pub const PROMOTE_AFTER: Duration = Duration::from_secs(30 * 60);
/// The longest a demoted supernode waits for its hand-over before it closes its
/// connections (`parley_supernode::server::HAND_OVER_WAIT`).
pub const HAND_OVER_WAIT: Duration = Duration::from_secs(2);
/// A client told to move (its attachment closed) replaces it within this spread
/// (`parley_proto::attach`, the re-attach spread after a closed connection).
pub const MOVE_SPREAD: Duration = Duration::from_secs(10);

/// Settings of the peer population.
#[derive(Clone, Copy, Debug)]
pub struct PeerConfig {
    /// Share of supernodes that are promoted peers, 0..1.
    pub share: f64,
    /// Median of a user's whole session, promotion wait included.
    pub median_session: Duration,
    /// Share of departures that are crashes rather than demotions, 0..1.
    pub crash_share: f64,
    /// Share of newly promoted peers that are malicious, 0..1.
    pub malicious: f64,
}

impl PeerConfig {
    /// The Lomax draw of a newly promoted peer's remaining session.
    pub fn remaining(&self) -> Churn {
        // Median of Lomax(shape, scale) is scale × (2^(1/shape) − 1).
        let median_ms = self.median_session.as_millis() as f64;
        let scale_ms = median_ms / (2f64.powf(1.0 / SHAPE) - 1.0);
        Churn {
            scale_ms: scale_ms + PROMOTE_AFTER.as_millis() as f64,
            malicious: self.malicious,
        }
    }
}

/// What the peers did.
#[derive(Clone, Debug, Default)]
pub struct PeerStats {
    /// Peers demoted (graceful leaves) and crashed.
    pub demoted: u64,
    /// See `demoted`.
    pub crashed: u64,
    /// Records handed over by demoted peers, and `Stored` replies to them.
    pub handed_over: u64,
    /// See `handed_over`.
    pub handed_over_stored: u64,
    /// Peers promoted to replace those that left.
    pub promoted: u64,
    /// Clients told to move by a demotion.
    pub told_to_move: u64,
}

/// The peer population's state in a run.
#[derive(Clone, Debug)]
pub struct Peers {
    /// Settings.
    pub config: PeerConfig,
    /// Whether supernode `i` is a promoted peer (operators are not).
    pub is_peer: Vec<bool>,
    /// Whether supernode `i` is handing over before it stops.
    leaving: Vec<bool>,
    /// Counters.
    pub stats: PeerStats,
}

impl Peers {
    /// No peers yet.
    pub fn new(config: PeerConfig) -> Peers {
        Peers {
            config,
            is_peer: Vec::new(),
            leaving: Vec::new(),
            stats: PeerStats::default(),
        }
    }

    fn mark(&mut self, i: u32, peer: bool) {
        let i = i as usize;
        if self.is_peer.len() <= i {
            self.is_peer.resize(i + 1, false);
            self.leaving.resize(i + 1, false);
        }
        self.is_peer[i] = peer;
    }

    /// Whether supernode `i` is a promoted peer.
    pub fn peer(&self, i: u32) -> bool {
        self.is_peer.get(i as usize).copied().unwrap_or(false)
    }
}

impl Sim {
    /// Makes supernode `i` a promoted peer (or an operator's supernode).
    pub fn set_peer(&mut self, i: u32, peer: bool) {
        if let Some(p) = self.peers.as_mut() {
            p.mark(i, peer);
        }
    }

    /// Starts every live peer's session: each leaves after a remaining session drawn
    /// as for a peer promoted now.
    pub fn start_peer_sessions(&mut self) {
        let Some(config) = self.peers.as_ref().map(|p| p.config) else {
            return;
        };
        let remaining = config.remaining();
        let live = self.live.clone();
        for i in live {
            if self.peers.as_ref().is_some_and(|p| p.peer(i)) {
                let at = self.now + remaining.lifetime(&mut self.rng);
                self.set_lifetime(i, at);
            }
        }
    }

    /// Supernode `i`'s session has ended (its `Leave` timer fired). A peer is demoted
    /// (hand-over, then its clients move) or crashes; anyone else crashes and, under
    /// `--churn`, is replaced.
    pub(crate) fn supernode_leaves(&mut self, i: u32) {
        let Some(peers) = self.peers.as_ref() else {
            self.kill(i);
            self.on_supernode_left(i);
            return;
        };
        if !peers.peer(i) {
            self.kill(i);
            self.on_supernode_left(i);
            return;
        }
        if peers.leaving[i as usize] {
            // The hand-over's time is up.
            self.stop_demoted(i);
            return;
        }
        let crash = self.rng.gen_bool(peers.config.crash_share.clamp(0.0, 1.0));
        if crash {
            if let Some(p) = self.peers.as_mut() {
                p.stats.crashed += 1;
            }
            self.kill(i);
            self.promote_replacement();
            return;
        }
        if let Some(p) = self.peers.as_mut() {
            p.leaving[i as usize] = true;
            p.stats.demoted += 1;
        }
        // No new clients or lookups start at a supernode that is stopping.
        self.unlist(i);
        // A backstop: the overlay's own RPC deadline (`rpc_timeout`, the same 2 s)
        // ends the hand-over first, so its `HandedOver` is counted.
        let at = self.now + HAND_OVER_WAIT + Duration::from_millis(1);
        self.set_lifetime(i, at);
        // Reports `HandedOver` through `touch`, at once when there is nothing to hand.
        self.with_overlay(i, |o, now| o.leave(now));
    }

    /// Supernode `i`'s overlay reported its hand-over done.
    pub(crate) fn handed_over(&mut self, i: u32, records: usize, stored: usize) {
        if let Some(p) = self.peers.as_mut() {
            p.stats.handed_over += records as u64;
            p.stats.handed_over_stored += stored as u64;
        }
        self.stop_demoted(i);
    }

    /// A demoted peer closes its connections: its clients are told and move within
    /// [`MOVE_SPREAD`]; another client is promoted in its place.
    fn stop_demoted(&mut self, i: u32) {
        if !self.nodes[i as usize].alive() {
            return;
        }
        let attached = std::mem::take(&mut self.attached_to[i as usize]);
        let mut told = 0;
        for c in attached {
            let Some(slot) = self.clients[c as usize].slot_of(i) else {
                continue;
            };
            told += 1;
            let at = self.now + MOVE_SPREAD.mul_f64(self.rng.gen_range(0.0..1.0));
            self.schedule(at, c, ClientAction::Reattach(slot as u8));
        }
        if let Some(p) = self.peers.as_mut() {
            p.stats.told_to_move += told;
        }
        self.kill(i);
        self.promote_replacement();
    }

    /// A client somewhere has been online long enough and passed its dial-back: a new
    /// peer joins the overlay, with a fresh remaining session.
    fn promote_replacement(&mut self) {
        let Some(config) = self.peers.as_ref().map(|p| p.config) else {
            return;
        };
        let identity = Identity::from_seed(&self.rng.gen());
        let malicious = self.rng.gen_bool(config.malicious.clamp(0.0, 1.0));
        let new = self.add_joining(&identity, malicious);
        self.set_peer(new, true);
        let at = self.now + config.remaining().lifetime(&mut self.rng);
        self.set_lifetime(new, at);
        self.stats.replaced += 1;
        if let Some(p) = self.peers.as_mut() {
            p.stats.promoted += 1;
        }
    }

    /// The live promoted peers.
    pub fn live_peers(&self) -> Vec<u32> {
        let Some(p) = self.peers.as_ref() else {
            return Vec::new();
        };
        self.live.iter().copied().filter(|&i| p.peer(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn config() -> PeerConfig {
        PeerConfig {
            share: 0.8,
            median_session: Duration::from_secs(3600),
            crash_share: 0.2,
            malicious: 0.0,
        }
    }

    /// The remaining session of a peer promoted after 30 min is the rest of a user
    /// session with a 1 h median: drawn directly, it matches whole sessions that
    /// lasted 30 min, less those 30 min.
    #[test]
    fn a_promoted_peers_remaining_session_is_the_rest_of_a_long_enough_session() {
        let c = config();
        let mut rng = StdRng::seed_from_u64(4);
        let whole = Churn {
            scale_ms: c.remaining().scale_ms - PROMOTE_AFTER.as_millis() as f64,
            malicious: 0.0,
        };
        let n = 40_000;
        let mut sessions: Vec<f64> = (0..n)
            .map(|_| whole.lifetime(&mut rng).as_secs_f64())
            .collect();
        sessions.sort_by(f64::total_cmp);
        let median = sessions[n / 2];
        assert!((3300.0..3900.0).contains(&median), "{median}");
        let promote = PROMOTE_AFTER.as_secs_f64();
        let mut rest: Vec<f64> = sessions
            .iter()
            .filter(|&&s| s > promote)
            .map(|s| s - promote)
            .collect();
        let mut drawn: Vec<f64> = (0..rest.len())
            .map(|_| c.remaining().lifetime(&mut rng).as_secs_f64())
            .collect();
        rest.sort_by(f64::total_cmp);
        drawn.sort_by(f64::total_cmp);
        for q in [0.25, 0.5, 0.75] {
            let (a, b) = (
                rest[(rest.len() as f64 * q) as usize],
                drawn[(drawn.len() as f64 * q) as usize],
            );
            assert!((a / b - 1.0).abs() < 0.08, "quantile {q}: {a} vs {b}");
        }
    }
}
