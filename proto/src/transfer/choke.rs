//! Who gets unchoked, and when: BitTorrent's choking algorithm.
//!
//! From B. Cohen, "Incentives Build Robustness in BitTorrent" (2003), section 3, as
//! the seed's notes summarise it: every [`RECHOKE_INTERVAL`] a peer unchokes the
//! [`UNCHOKE_SLOTS`] interested peers it downloads from fastest (tit for tat), and one
//! more, chosen at random among the other interested peers, as an *optimistic*
//! unchoke that rotates every third round ([`OPTIMISTIC_EVERY`] × 10 s = 30 s), so new
//! peers get a first chunk to trade and better partners can be discovered. A peer
//! that has the whole file (a seeder) has nothing to download, so it ranks peers by
//! how fast it uploads to them instead, as BitTorrent's mainline client does: the
//! upload goes where it moves fastest.
//!
//! Rates are bytes per second over the last round, measured by the
//! [`Swarm`](super::Swarm); ties (every rate 0 at the start) are broken at random.

use crate::identity::PeerId;
use crate::time::Mono;
use rand::seq::SliceRandom;
use rand::Rng;
use std::time::Duration;

/// Regular unchoke slots (the optimistic unchoke is one more).
pub const UNCHOKE_SLOTS: usize = 4;
/// How often the regular slots are re-evaluated.
pub const RECHOKE_INTERVAL: Duration = Duration::from_secs(10);
/// The optimistic unchoke rotates every this many rounds (every 30 s).
pub const OPTIMISTIC_EVERY: u64 = 3;

/// One peer as the choker sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    /// The peer.
    pub peer: PeerId,
    /// Bytes per second: from them (while downloading) or to them (while seeding).
    pub rate: u64,
    /// Whether they want something from us; only interested peers are unchoked.
    pub interested: bool,
}

/// The choking schedule and the current optimistic unchoke.
#[derive(Debug)]
pub struct Choker {
    slots: usize,
    interval: Duration,
    optimistic_every: u64,
    round: u64,
    next: Mono,
    optimistic: Option<PeerId>,
}

impl Choker {
    /// A schedule whose first round is one `interval` after `now`.
    pub fn new(now: Mono, slots: usize, interval: Duration, optimistic_every: u64) -> Choker {
        Choker {
            slots,
            interval,
            optimistic_every: optimistic_every.max(1),
            round: 0,
            next: now + interval,
            optimistic: None,
        }
    }

    /// When the next round is due.
    pub fn next_round(&self) -> Mono {
        self.next
    }

    /// Regular slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The current optimistic unchoke, if any.
    pub fn optimistic(&self) -> Option<PeerId> {
        self.optimistic
    }

    /// Forgets a peer that left (it can no longer be the optimistic unchoke).
    pub fn remove(&mut self, peer: &PeerId) {
        if self.optimistic.as_ref() == Some(peer) {
            self.optimistic = None;
        }
    }

    /// Runs one round at `now`: the peers to have unchoked until the next one. The
    /// caller sends choke/unchoke to whoever changed.
    pub fn rechoke(
        &mut self,
        now: Mono,
        candidates: &[Candidate],
        rng: &mut impl Rng,
    ) -> Vec<PeerId> {
        self.next = now + self.interval;
        let rotate = self.round % self.optimistic_every == 0;
        self.round += 1;
        let mut interested: Vec<Candidate> = candidates
            .iter()
            .filter(|c| c.interested)
            .copied()
            .collect();
        interested.shuffle(rng);
        // Stable: equal rates stay in their random order.
        interested.sort_by_key(|c| std::cmp::Reverse(c.rate));
        let regular: Vec<PeerId> = interested.iter().take(self.slots).map(|c| c.peer).collect();
        let others: Vec<PeerId> = interested
            .iter()
            .map(|c| c.peer)
            .filter(|p| !regular.contains(p))
            .collect();
        let current = self.optimistic.filter(|p| others.contains(p));
        self.optimistic = match current {
            Some(p) if !rotate => Some(p),
            // Rotating: someone else if there is anyone else.
            _ => {
                let fresh: Vec<PeerId> = others
                    .iter()
                    .copied()
                    .filter(|p| Some(*p) != current)
                    .collect();
                fresh.choose(rng).or(current.as_ref()).copied()
            }
        };
        let mut unchoked = regular;
        unchoked.extend(self.optimistic);
        unchoked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn peers(n: u8) -> Vec<PeerId> {
        (0..n)
            .map(|i| Identity::from_seed(&[i; 32]).peer_id())
            .collect()
    }

    #[test]
    fn the_fastest_four_and_one_optimistic_are_unchoked() {
        let p = peers(8);
        let mut rng = StdRng::seed_from_u64(1);
        let mut c = Choker::new(Mono(0), UNCHOKE_SLOTS, RECHOKE_INTERVAL, OPTIMISTIC_EVERY);
        assert_eq!(c.next_round(), Mono(10_000));
        let cands: Vec<Candidate> = p
            .iter()
            .enumerate()
            .map(|(i, &peer)| Candidate {
                peer,
                rate: 1000 * i as u64,
                // The fastest is not interested: it is never unchoked.
                interested: i != 7,
            })
            .collect();
        let mut optimistics = Vec::new();
        let mut last_opt = None;
        for round in 0..12u64 {
            let now = Mono(10_000 * (round + 1));
            let u = c.rechoke(now, &cands, &mut rng);
            assert_eq!(c.next_round(), now + RECHOKE_INTERVAL);
            assert_eq!(u.len(), 5, "four regular + one optimistic");
            for fast in &p[3..7] {
                assert!(u.contains(fast), "round {round}: a fast peer is choked");
            }
            assert!(!u.contains(&p[7]));
            let opt = c.optimistic().expect("an optimistic unchoke");
            assert!(p[..3].contains(&opt));
            if round % OPTIMISTIC_EVERY != 0 {
                assert_eq!(Some(opt), last_opt, "round {round}: rotated early");
            } else {
                assert_ne!(Some(opt), last_opt, "round {round}: did not rotate");
            }
            last_opt = Some(opt);
            if !optimistics.contains(&opt) {
                optimistics.push(opt);
            }
        }
        assert!(
            optimistics.len() >= 2,
            "the optimistic unchoke moves around"
        );
    }

    #[test]
    fn with_few_interested_peers_all_are_unchoked() {
        let p = peers(3);
        let mut c = Choker::new(Mono(0), UNCHOKE_SLOTS, RECHOKE_INTERVAL, OPTIMISTIC_EVERY);
        let cands: Vec<Candidate> = p
            .iter()
            .map(|&peer| Candidate {
                peer,
                rate: 0,
                interested: true,
            })
            .collect();
        let u = c.rechoke(Mono(10_000), &cands, &mut StdRng::seed_from_u64(2));
        assert_eq!(u.len(), 3);
        assert_eq!(c.optimistic(), None);
        c.remove(&p[0]);
    }
}
