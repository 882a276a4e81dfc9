//! How the sender announces its chunks: a little at a time, to spread them.
//!
//! A sender that announces the whole file to every recipient gets asked for the same
//! chunk by several of them before they hear (through `have`) that another recipient
//! already has it; on a fast network this made it upload about 1.5× the file to four
//! recipients. BitTorrent's answer is *super-seeding* (BEP 16): the initial seeder
//! pretends to have nothing and reveals chunks one by one, each to one peer, so every
//! chunk leaves the seeder about once and the peers spread it.
//!
//! Parley's variant: each recipient always has up to [`REVEAL_DEPTH`] revealed chunks
//! it does not hold yet (enough to keep the sender's pipeline to it full). A chunk is
//! revealed to a recipient only if no connected recipient holds it and none that can
//! fetch it (unchoked, or not yet asking) has it revealed and pending, so a chunk is revealed
//! again only when the copy in the swarm left with its holder. Recipients fetch
//! everything else from each other.
//!
//! A holder may not pass a chunk on (it was dropped by the others for serving bad
//! chunks, or chokes them). So a recipient whose chunk count has not grown for
//! [`STARVE_AFTER`] gets reveals regardless of who holds what, and keeps getting them
//! so (still [`REVEAL_DEPTH`] at a time) for the rest of the transfer: a recipient
//! cut off from the holders then downloads from the sender at the sender's pace
//! instead of three chunks per stall. A stall costs the sender extra uploads for that
//! recipient, never the transfer.

use super::bitfield::Bitfield;
use rand::Rng;
use std::time::Duration;

/// Revealed-but-not-yet-held chunks each recipient is kept supplied with.
pub const REVEAL_DEPTH: u32 = 3;

/// A recipient that made no progress this long is revealed chunks others hold.
pub const STARVE_AFTER: Duration = Duration::from_secs(5);

/// One recipient as the revealer sees it.
pub struct RevealView<'a> {
    /// What it holds.
    pub has: &'a Bitfield,
    /// What the sender revealed to it.
    pub revealed: &'a Bitfield,
    /// Whether it can fetch its reveals: the sender serves it, or it has not asked yet
    /// (it is unchoked when it does while slots are free). A recipient that asked and
    /// waits for a slot is not active, so its reveals do not hold chunks back.
    pub active: bool,
}

/// The chunks that must not be revealed to anyone else: held by a recipient, or
/// revealed to an active one and not yet held.
pub fn blocked<'a>(chunks: u32, peers: impl Iterator<Item = RevealView<'a>>) -> Bitfield {
    let mut b = Bitfield::empty(chunks);
    for p in peers {
        for i in 0..chunks {
            if p.has.get(i) || (p.active && p.revealed.get(i)) {
                b.set(i);
            }
        }
    }
    b
}

/// Revealed chunks the recipient still lacks.
pub fn pending(has: &Bitfield, revealed: &Bitfield) -> u32 {
    revealed.iter_ones().filter(|&i| !has.get(i)).count() as u32
}

/// A chunk to reveal next to a recipient holding `has` that was shown `revealed`:
/// random among those it lacks, not shown, and not `blocked`.
pub fn choose(
    has: &Bitfield,
    revealed: &Bitfield,
    blocked: &Bitfield,
    rng: &mut impl Rng,
) -> Option<u32> {
    let candidates: Vec<u32> = (0..has.len())
        .filter(|&i| !has.get(i) && !revealed.get(i) && !blocked.get(i))
        .collect();
    if candidates.is_empty() {
        None
    } else {
        Some(candidates[rng.gen_range(0..candidates.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn a_chunk_is_revealed_to_one_recipient_at_a_time() {
        let n = 4;
        let mut rng = StdRng::seed_from_u64(5);
        let a_has = Bitfield::empty(n);
        let mut a_rev = Bitfield::empty(n);
        let mut b_has = Bitfield::empty(n);
        let b_rev = Bitfield::empty(n);
        b_has.set(0);
        a_rev.set(1);
        let views = [
            RevealView {
                has: &a_has,
                revealed: &a_rev,
                active: true,
            },
            RevealView {
                has: &b_has,
                revealed: &b_rev,
                active: true,
            },
        ];
        let blocked = blocked(n, views.into_iter());
        assert_eq!(blocked.iter_ones().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(pending(&a_has, &a_rev), 1);
        for _ in 0..20 {
            let c = choose(&b_has, &b_rev, &blocked, &mut rng).expect("a chunk");
            assert!(c == 2 || c == 3);
        }
        // A recipient waiting for an unchoke does not hold its reveals back from others.
        let views = [RevealView {
            has: &a_has,
            revealed: &a_rev,
            active: false,
        }];
        assert!(!super::blocked(n, views.into_iter()).get(1));
        let mut full = Bitfield::full(n);
        full.clear(3);
        assert_eq!(choose(&b_has, &b_rev, &full, &mut rng), Some(3));
        assert_eq!(
            choose(&Bitfield::full(n), &b_rev, &Bitfield::empty(n), &mut rng),
            None
        );
    }
}
