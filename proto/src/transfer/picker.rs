//! Which chunk to ask a peer for: rarest first, random among equally rare, and an end
//! game for the last chunks.
//!
//! Rarest first (Cohen 2003, section 2.3; the seed's "peers request missing chunks,
//! starting with the rarest first"): the chunk held by the fewest connected peers is
//! the one most likely to disappear with a leaving peer, and fetching it first makes
//! us a source others need. Ties are broken at random so recipients starting together
//! fetch different chunks from the sender. Each chunk is requested from one peer at a
//! time until every missing chunk has been requested; then the *end game* asks other
//! peers for chunks still in flight (fewest duplicates first) so one slow peer cannot
//! hold up the end, and the [`Swarm`](super::Swarm) cancels the duplicates as soon as
//! a copy verifies.

use super::bitfield::Bitfield;
use rand::Rng;

/// Availability and outstanding requests for every chunk of one file.
#[derive(Debug, Clone)]
pub struct Picker {
    /// How many connected peers hold each chunk.
    availability: Vec<u32>,
    /// How many requests for each chunk are in flight, over all peers.
    requested: Vec<u32>,
}

impl Picker {
    /// A picker for `chunks` chunks, no peers yet.
    pub fn new(chunks: u32) -> Picker {
        Picker {
            availability: vec![0; chunks as usize],
            requested: vec![0; chunks as usize],
        }
    }

    /// A peer with these chunks joined.
    pub fn add_peer(&mut self, has: &Bitfield) {
        for i in has.iter_ones() {
            self.availability[i as usize] += 1;
        }
    }

    /// A peer with these chunks left.
    pub fn remove_peer(&mut self, has: &Bitfield) {
        for i in has.iter_ones() {
            self.availability[i as usize] -= 1;
        }
    }

    /// A peer announced chunk `i`.
    pub fn add_have(&mut self, i: u32) {
        self.availability[i as usize] += 1;
    }

    /// How many peers hold chunk `i`.
    pub fn availability(&self, i: u32) -> u32 {
        self.availability[i as usize]
    }

    /// A request for chunk `i` was sent.
    pub fn requested(&mut self, i: u32) {
        self.requested[i as usize] += 1;
    }

    /// A request for chunk `i` was answered, cancelled or lost.
    pub fn released(&mut self, i: u32) {
        let r = &mut self.requested[i as usize];
        *r = r.saturating_sub(1);
    }

    /// Requests for chunk `i` in flight, over all peers.
    pub fn outstanding(&self, i: u32) -> u32 {
        self.requested[i as usize]
    }

    /// Whether every chunk `mine` lacks is requested from someone (the end game).
    pub fn endgame(&self, mine: &Bitfield) -> bool {
        (0..mine.len()).all(|i| mine.get(i) || self.requested[i as usize] > 0)
    }

    /// The next chunk to request from a peer holding `theirs`: one we lack, not
    /// `excluded` (already asked of this peer, or better asked of another), rarest
    /// first with random ties; outside the end game only chunks nobody was asked for.
    pub fn pick(
        &self,
        mine: &Bitfield,
        theirs: &Bitfield,
        excluded: impl Fn(u32) -> bool,
        rng: &mut impl Rng,
    ) -> Option<u32> {
        let endgame = self.endgame(mine);
        let mut best: Option<(u32, u32, u32)> = None; // (duplicates, availability, index)
        let mut ties = 0u32;
        for i in 0..mine.len() {
            if mine.get(i) || !theirs.get(i) || excluded(i) {
                continue;
            }
            let dup = self.requested[i as usize];
            if dup > 0 && !endgame {
                continue;
            }
            let key = (dup, self.availability[i as usize]);
            match best {
                Some((d, a, _)) if (d, a) < key => {}
                Some((d, a, _)) if (d, a) == key => {
                    // Reservoir sampling: each of the equally good is kept with
                    // probability 1 / (number seen so far).
                    ties += 1;
                    if rng.gen_range(0..ties) == 0 {
                        best = Some((key.0, key.1, i));
                    }
                }
                _ => {
                    best = Some((key.0, key.1, i));
                    ties = 1;
                }
            }
        }
        best.map(|(_, _, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn bits(len: u32, ones: &[u32]) -> Bitfield {
        let mut b = Bitfield::empty(len);
        for &i in ones {
            b.set(i);
        }
        b
    }

    #[test]
    fn the_rarest_chunk_goes_first_with_random_ties() {
        let mut p = Picker::new(4);
        let seeder = Bitfield::full(4);
        p.add_peer(&seeder);
        p.add_peer(&bits(4, &[0, 1]));
        p.add_peer(&bits(4, &[0]));
        let mine = Bitfield::empty(4);
        let mut rng = StdRng::seed_from_u64(3);
        let mut seen = [0u32; 4];
        for _ in 0..200 {
            let i = p
                .pick(&mine, &seeder, |_| false, &mut rng)
                .expect("a chunk");
            seen[i as usize] += 1;
        }
        assert_eq!(seen[0] + seen[1], 0, "held by more peers: picked later");
        assert!(seen[2] > 60 && seen[3] > 60, "ties are random: {seen:?}");
    }

    #[test]
    fn requested_chunks_wait_for_the_end_game() {
        let mut p = Picker::new(3);
        let seeder = Bitfield::full(3);
        p.add_peer(&seeder);
        let mine = bits(3, &[0]);
        let mut rng = StdRng::seed_from_u64(4);
        p.requested(1);
        assert_eq!(p.pick(&mine, &seeder, |_| false, &mut rng), Some(2));
        assert!(!p.endgame(&mine));
        p.requested(2);
        assert!(p.endgame(&mine));
        // In the end game: a chunk already asked of another peer, but not one this
        // peer was asked for (excluded).
        assert_eq!(p.pick(&mine, &seeder, |i| i == 1, &mut rng), Some(2));
        p.requested(2);
        assert_eq!(
            p.pick(&mine, &seeder, |_| false, &mut rng),
            Some(1),
            "fewest duplicates"
        );
        p.released(1);
        assert!(!p.endgame(&mine));
        assert_eq!(
            p.pick(&mine, &bits(3, &[0]), |_| false, &mut rng),
            None,
            "nothing to get"
        );
    }
}
