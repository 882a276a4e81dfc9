//! Sybil supernodes minted next to target clients' keys (issue 10): the eclipse of a
//! record that free node ids allow.
//!
//! A node id is the hash of a key, and keys cost nothing, so an attacker grinds keys
//! until their ids fall closer to a victim's record key than any honest supernode:
//! then the `k` closest supernodes to the key, where the record is stored and where
//! lookups look, can all be his. `--sybil PCT` makes that share of the supernodes
//! such Sybils: the run picks one target client per [`per_target`] Sybils (`k + 4`:
//! enough that the `k` closest to each target's key are Sybils even where a few
//! honest ids come close), and mints each target's Sybils closer to its key than
//! every honest supernode's id. The simulator checks no supernode's signature, so
//! a Sybil's id only has to be a valid key (a curve point), not one whose secret is
//! known, and grinding costs a SHA-256 and a point decompression per try; about as
//! many tries per Sybil as there are honest supernodes.
//!
//! Sybils live in `--attacker-networks` /16s ([`DEFAULT_NETWORKS`] unless given: an
//! attacker renting from a hosting provider or two) and collude with each other and
//! with `--malicious` liars: they never drop a request (an answer holds a lookup up
//! longer than a timeout); asked for nodes or a value they name only the fellow
//! Sybils closest to the key, whoever they are (every Sybil knows them all); asked to
//! store, they answer `Stored` and drop the record, so the publisher believes the
//! replicas exist. They run the real overlay underneath, so they join, stay in
//! routing tables and answer pings like any supernode.

use crate::world::Sim;
use parley_proto::messages::{SupernodeReply, SupernodeToSupernode};
use parley_proto::overlay::Overlay;
use parley_proto::presence::Contact;
use parley_proto::{Identity, NodeId, PeerId, Timestamp};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Mutex;

/// The /16 networks Sybils live in when `--attacker-networks` is not given.
pub const DEFAULT_NETWORKS: u8 = 2;

/// Lookups of each target client in a run: once in the sweep of all clients, and
/// the rest at random times over the same window, so the targeted found rate rests
/// on more than one lookup per target.
pub const TARGET_LOOKUPS: u32 = 10;

/// Sybils per target: `k + 4`.
pub fn per_target(k: usize) -> usize {
    k + 4
}

/// Every Sybil's contact, sorted by node id, so that each can name the Sybils
/// closest to any key.
pub struct Directory {
    k: usize,
    members: Mutex<Vec<(NodeId, Contact)>>,
}

impl Directory {
    /// An empty directory; replies name up to `k` Sybils.
    pub fn new(k: usize) -> Directory {
        Directory {
            k: k.max(1),
            members: Mutex::new(Vec::new()),
        }
    }

    /// Adds a Sybil once it has an address.
    pub fn add(&self, contact: Contact) {
        let id = contact.node_id();
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let at = members.partition_point(|(m, _)| m.0 < id.0);
        members.insert(at, (id, contact));
    }

    /// Up to `n` Sybils closest to `key`, closest first, `except` left out.
    ///
    /// Ids that share a prefix with `key` form one run of the sorted list, and every
    /// id outside the run of the longest prefix still shared by at least `n + 1`
    /// ids is farther than every id inside it: so only that run is sorted.
    pub fn closest(&self, key: &NodeId, n: usize, except: &PeerId) -> Vec<Contact> {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let mut run = 0..members.len();
        for bits in 1..=256 {
            let next = sharing(&members, key, bits);
            if next.len() <= n {
                break;
            }
            run = next;
        }
        let mut near: Vec<&(NodeId, Contact)> = members[run]
            .iter()
            .filter(|(_, c)| c.id != *except)
            .collect();
        near.sort_unstable_by_key(|(id, _)| id.distance(key));
        near.into_iter().take(n).map(|(_, c)| *c).collect()
    }
}

/// The run of `members` (sorted by id) whose ids share the first `bits` bits of `key`.
fn sharing(members: &[(NodeId, Contact)], key: &NodeId, bits: usize) -> Range<usize> {
    let (mut low, mut high) = (key.0, key.0);
    for (i, (l, h)) in low.iter_mut().zip(high.iter_mut()).enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        let mask = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        *l &= mask;
        *h |= !mask;
    }
    let from = members.partition_point(|(id, _)| id.0 < low);
    let to = members.partition_point(|(id, _)| id.0 <= high);
    from..to.max(from)
}

/// A Sybil's answer to `request` from `from` (see the module docs).
pub fn answer(
    sybils: &Directory,
    overlay: &mut Overlay,
    now: Timestamp,
    from: Contact,
    request: SupernodeToSupernode,
) -> SupernodeReply {
    // The real machine notes the sender, as it would for any request.
    let pong = overlay.handle_request(now, from, SupernodeToSupernode::Ping);
    match request {
        SupernodeToSupernode::Ping => pong,
        SupernodeToSupernode::Store(_) => SupernodeReply::Stored,
        SupernodeToSupernode::FindNode(key) | SupernodeToSupernode::FindValue(key) => {
            SupernodeReply::Nodes(sybils.closest(&key, sybils.k, &from.id))
        }
    }
}

/// Of `candidates` (client index and record key), the `n` cheapest to surround:
/// those whose closest honest supernode is farthest. An attacker with a list of
/// victims starts with those; and a target picked at random among thousands may
/// have an honest supernode so close that surrounding it costs a hundred times the
/// typical target (the closest of `h` honest ids is exponentially distributed), which
/// would make the simulator spend minutes grinding. Choosing the cheapest half of
/// twice as many random clients bounds that at about twice the typical cost.
pub fn choose_targets(
    candidates: Vec<(u32, NodeId)>,
    honest: &[NodeId],
    n: usize,
) -> Vec<(u32, NodeId)> {
    let mut scored: Vec<([u8; 32], (u32, NodeId))> = candidates
        .into_par_iter()
        .map(|(c, key)| (bound(&key, honest), (c, key)))
        .collect();
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1 .0.cmp(&b.1 .0)));
    scored.into_iter().take(n).map(|(_, t)| t).collect()
}

/// Random keys per batch of [`plan`].
const ROUND: usize = 1024;

/// Batches per round of [`plan`], ground in parallel (a constant, not the number of
/// cores, so equal seeds give equal runs on any machine).
const BATCHES: u64 = 8;

/// The Sybils of a run: for each of `targets` (a record key and how many Sybils it
/// gets), that many ids closer to the key than every id in `honest`; the targets'
/// ids in order. Ground on every core, from `seed`.
///
/// Every try is checked against every target at once, so the tries needed are
/// set by the target hardest to surround (the one whose closest honest supernode
/// is closest), not by the number of Sybils: about Sybils-per-target × honest
/// supernodes ÷ that target's bound (as a share of the typical distance). See
/// [`choose_targets`].
pub fn plan(targets: &[(NodeId, usize)], honest: &[NodeId], seed: u64) -> Vec<PeerId> {
    let bounds: Vec<(NodeId, [u8; 32])> = targets
        .par_iter()
        .map(|(key, _)| (*key, bound(key, honest)))
        .collect();
    let mut minted: Vec<Vec<PeerId>> = targets
        .iter()
        .map(|(_, n)| Vec::with_capacity(*n))
        .collect();
    for round in 0u64.. {
        let need: usize = targets
            .iter()
            .zip(&minted)
            .map(|((_, n), got)| n.saturating_sub(got.len()))
            .sum();
        if need == 0 {
            break;
        }
        let hits: Vec<(usize, PeerId)> = (0..BATCHES)
            .into_par_iter()
            .flat_map_iter(|batch| {
                let batch_seed = seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (batch << 56);
                tries(&mut StdRng::seed_from_u64(batch_seed), &bounds)
            })
            .collect();
        for (t, id) in hits {
            if minted[t].len() < targets[t].1 {
                minted[t].push(id);
            }
        }
    }
    minted.into_iter().flatten().collect()
}

fn prefix(id: &NodeId) -> u64 {
    prefix_of(&id.0)
}

fn prefix_of(bytes: &[u8; 32]) -> u64 {
    let mut top = [0u8; 8];
    top.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(top)
}

/// How far `key` is from the closest of `honest`: a Sybil must be closer.
pub fn bound(key: &NodeId, honest: &[NodeId]) -> [u8; 32] {
    honest
        .iter()
        .map(|h| h.distance(key))
        .min()
        .unwrap_or([0xff; 32])
}

/// One round of [`ROUND`] random keys: those closer to some target's key than its
/// bound, with the target's index.
fn tries(rng: &mut StdRng, bounds: &[(NodeId, [u8; 32])]) -> Vec<(usize, PeerId)> {
    let mut hits = Vec::new();
    for _ in 0..ROUND {
        let mut bytes: [u8; 32] = rng.gen();
        let Ok(id) = PeerId::from_bytes(&bytes) else {
            continue;
        };
        // The point's other sign is a valid key too: two tries per decompression.
        bytes[31] ^= 0x80;
        let twin = PeerId::from_bytes(&bytes).ok();
        for id in std::iter::once(id).chain(twin) {
            let node = id.node_id();
            let top = prefix(&node);
            // The first 8 bytes of the distance decide almost always.
            let near = bounds.iter().position(|(key, bound)| {
                let d = top ^ prefix(key);
                d < prefix_of(bound) || (d == prefix_of(bound) && node.distance(key) < *bound)
            });
            if let Some(t) = near {
                hits.push((t, id));
            }
        }
    }
    hits
}

/// Chooses the Sybils' places in the join order (among the supernodes that are not
/// liars) and their target clients, and mints their ids next to the targets' keys
/// (see the module docs): `pct` % of the supernodes, `k` the overlay's replication;
/// one entry per supernode, `Some(id)` for a Sybil. Sets
/// `sim.targets`.
pub fn place(
    pct: f64,
    k: usize,
    sim: &mut Sim,
    liars: &[bool],
    supernodes: &[Identity],
    clients: &[Identity],
) -> Vec<Option<PeerId>> {
    let free: Vec<usize> = (0..supernodes.len()).filter(|&i| !liars[i]).collect();
    let n = ((pct / 100.0) * supernodes.len() as f64).round() as usize;
    let n = n.min(free.len());
    if n == 0 || clients.is_empty() {
        return Vec::new();
    }
    let mut places: Vec<usize> = sample(&mut sim.rng, free.len(), n)
        .into_iter()
        .map(|j| free[j])
        .collect();
    places.sort_unstable();
    let mut sybil = vec![false; supernodes.len()];
    for &p in &places {
        sybil[p] = true;
    }
    let honest: Vec<NodeId> = supernodes
        .par_iter()
        .zip(liars.par_iter().zip(sybil.par_iter()))
        .filter(|(_, (liar, sybil))| !**liar && !**sybil)
        .map(|(id, _)| id.peer_id().node_id())
        .collect();
    let targets = (n / per_target(k)).clamp(1, clients.len());
    let candidates = sample(
        &mut sim.rng,
        clients.len(),
        (2 * targets).min(clients.len()),
    )
    .into_iter()
    .map(|c| (c as u32, clients[c].peer_id().record_key()))
    .collect();
    let chosen: Vec<(NodeId, usize)> = choose_targets(candidates, &honest, targets)
        .into_iter()
        .enumerate()
        .map(|(t, (c, key))| {
            sim.targets.insert(c);
            // The remainder goes one each to the first targets.
            (key, n / targets + usize::from(t < n % targets))
        })
        .collect();
    let minted = plan(&chosen, &honest, sim.rng.gen());
    let mut out = vec![None; supernodes.len()];
    for (p, id) in places.into_iter().zip(minted) {
        out[p] = Some(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::Identity;

    fn contact(i: u64) -> Contact {
        let mut seed = [3u8; 32];
        seed[..8].copy_from_slice(&i.to_le_bytes());
        Contact {
            id: Identity::from_seed(&seed).peer_id(),
            addr: format!("5.0.0.{}:7000", i % 250).parse().unwrap(),
        }
    }

    #[test]
    fn the_directory_names_the_closest_sybils() {
        let dir = Directory::new(8);
        let all: Vec<Contact> = (0..300).map(contact).collect();
        for c in &all {
            dir.add(*c);
        }
        for probe in 0..50u64 {
            let key = contact(10_000 + probe).id.node_id();
            let except = all[probe as usize].id;
            let mut expect: Vec<Contact> = all.iter().filter(|c| c.id != except).copied().collect();
            expect.sort_by_key(|c| c.node_id().distance(&key));
            expect.truncate(8);
            assert_eq!(dir.closest(&key, 8, &except), expect);
        }
        assert_eq!(
            Directory::new(8).closest(&NodeId([0; 32]), 8, &all[0].id),
            vec![]
        );
    }

    #[test]
    fn minted_ids_are_closer_than_every_honest_one() {
        let honest: Vec<NodeId> = (0..500).map(|i| contact(i).id.node_id()).collect();
        let targets: Vec<(NodeId, usize)> = (0..3)
            .map(|t| (contact(900 + t).id.node_id(), 12))
            .collect();
        let ids = plan(&targets, &honest, 7);
        assert_eq!(ids.len(), 36);
        for (chunk, (key, _)) in ids.chunks(12).zip(&targets) {
            let nearest = honest.iter().map(|h| h.distance(key)).min().unwrap();
            assert!(chunk.iter().all(|s| s.node_id().distance(key) < nearest));
        }
    }
}
