//! Sybil supernodes minted next to target clients' keys (issue 10): the eclipse of a
//! record that free node ids allow.
//!
//! Keys cost nothing, so an attacker tries to put supernodes closer to a victim's
//! record key than any honest supernode: then the `k` closest supernodes to the key,
//! where the record is stored and where lookups look, can all be his. `--sybil PCT`
//! makes that share of the supernodes such Sybils: the run picks one target client
//! per [`per_target`] Sybils (`k + 4`: enough that the `k` closest to each target's
//! key are Sybils even where a few honest ids come close).
//!
//! A supernode's position is its key's hash with a BEP 42 prefix from its IP
//! (`parley_proto::overlay::position`), so the attacker cannot grind keys alone: it
//! searches the addresses of its `--attacker-networks` /16s ([`DEFAULT_NETWORKS`]
//! unless given: an attacker renting from a hosting provider or two; 2^16 addresses
//! and 8 `r`s each) for the prefixes closest to the target's key, runs one Sybil per
//! address, and grinds each Sybil's key until its hash selects that address's `r`
//! and puts the rest of the position next to the key ([`plan`]). The simulator
//! checks no supernode's signature, so a key only has to be a valid curve point.
//! With whole /16s the search always succeeds (2^17 prefixes per /16 against ~11
//! bits to match at 2,000 supernodes); a Sybil whose best address is not close
//! enough is still run, where its address puts it.
//!
//! The Sybils collude with each other and
//! with `--malicious` liars: they never drop a request (an answer holds a lookup up
//! longer than a timeout); asked for nodes or a value they name only the fellow
//! Sybils closest to the key, whoever they are (every Sybil knows them all); asked to
//! store, they answer `Stored` and drop the record, so the publisher believes the
//! replicas exist. They run the real overlay underneath, so they join, stay in
//! routing tables and answer pings like any supernode.

use crate::world::{public_addr, Sim};
use parley_proto::messages::{SupernodeReply, SupernodeToSupernode};
use parley_proto::overlay::position::{self, bep42_prefix};
use parley_proto::overlay::Overlay;
use parley_proto::presence::Contact;
use parley_proto::{Identity, NodeId, PeerId, Timestamp};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

/// Keys tried per Sybil, at most, for one whose hash selects its address's `r` and
/// puts the rest of its position closer to the target than every honest supernode.
const MAX_TRIES: usize = 1 << 16;

/// One Sybil of [`plan`]: its key, the address it runs at, and whether its position
/// is closer to its target's key than every honest supernode's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Minted {
    /// Its key (a valid curve point; nothing in the simulator checks its signature).
    pub id: PeerId,
    /// Where it runs: an address of the attacker's /16s.
    pub addr: SocketAddr,
    /// Its position is closer to the target's key than every honest supernode's.
    pub placed: bool,
}

/// The attacker's `i`-th /16 (5.0/16, 5.1/16, ...: apart from every honest address,
/// as `world::attacker_addr`).
fn network(i: u8) -> [u8; 2] {
    [5, i]
}

/// Every BEP 42 prefix the attacker's `networks` /16s offer: each of their 2^16
/// addresses with each `r` (0-7), as (prefix, address, r).
fn offers(networks: u8) -> Vec<(u32, Ipv4Addr, u8)> {
    (0..networks.max(1))
        .flat_map(|n| (0..=u16::MAX).map(move |low| (n, low)))
        .collect::<Vec<_>>()
        .into_par_iter()
        .flat_map_iter(|(n, low)| {
            let [a, b] = network(n);
            let [c, d] = low.to_be_bytes();
            let ip = Ipv4Addr::new(a, b, c, d);
            (0..8u8).filter_map(move |r| Some((bep42_prefix(IpAddr::V4(ip), r)?, ip, r)))
        })
        .collect()
}

/// The Sybils of a run, honest to BEP 42: for each of `targets` (a record key and
/// how many Sybils it gets), the attacker searches the addresses of its `networks`
/// /16s for the prefixes closest to the key (one Sybil per address, every address
/// used once), then grinds a key whose hash selects that address's `r` and puts the
/// rest of the position closer to the key than every id in `honest`. A Sybil whose
/// address's prefix is not closer than the closest honest supernode cannot be
/// placed there whatever its key, and sits where its address puts it
/// ([`Minted::placed`] false). The targets' Sybils in order; from `seed`, on every
/// core.
///
/// Cost: `networks × 2^16 × 8` CRC-32Cs once, a pass over them per target, and
/// about 8 keys per Sybil (a SHA-256 and a point decompression each).
pub fn plan(
    targets: &[(NodeId, usize)],
    honest: &[NodeId],
    networks: u8,
    seed: u64,
) -> Vec<Minted> {
    let offers = offers(networks);
    // Per target, its offers closest first (enough to skip addresses taken).
    let total: usize = targets.iter().map(|(_, n)| n).sum();
    let ranked: Vec<Vec<u32>> = targets
        .par_iter()
        .map(|(key, n)| {
            let want = position::prefix_of(key);
            let mut scored: Vec<(u32, u32)> = offers
                .iter()
                .enumerate()
                .map(|(j, (prefix, _, _))| (prefix ^ want, j as u32))
                .collect();
            let m = (n * 8 + total).min(scored.len());
            if m < scored.len() {
                scored.select_nth_unstable(m);
                scored.truncate(m);
            }
            scored.sort_unstable();
            scored.into_iter().map(|(_, j)| j).collect()
        })
        .collect();
    let mut used = std::collections::HashSet::new();
    let mut jobs: Vec<(usize, Ipv4Addr, u8)> = Vec::with_capacity(total);
    for (t, ((_, n), ranked)) in targets.iter().zip(&ranked).enumerate() {
        let mut got = 0;
        for &j in ranked {
            if got == *n {
                break;
            }
            let (_, ip, r) = offers[j as usize];
            if used.insert(ip) {
                jobs.push((t, ip, r));
                got += 1;
            }
        }
    }
    let bounds: Vec<[u8; 32]> = targets
        .par_iter()
        .map(|(key, _)| bound(key, honest))
        .collect();
    jobs.par_iter()
        .enumerate()
        .map(|(j, &(t, ip, r))| {
            let mut rng =
                StdRng::seed_from_u64(seed ^ (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let addr = SocketAddr::from((ip, 7000));
            grind(&mut rng, addr, r, &targets[t].0, &bounds[t])
        })
        .collect()
}

/// A key for a Sybil at `addr` whose hash selects `r`, placed closer to `key` than
/// `bound` if [`MAX_TRIES`] keys find one (else the first that selects `r`).
fn grind(rng: &mut StdRng, addr: SocketAddr, r: u8, key: &NodeId, bound: &[u8; 32]) -> Minted {
    let mut fallback = None;
    for _ in 0..MAX_TRIES {
        let mut bytes: [u8; 32] = rng.gen();
        let Ok(id) = PeerId::from_bytes(&bytes) else {
            continue;
        };
        // The point's other sign is a valid key too: two tries per decompression.
        bytes[31] ^= 0x80;
        let twin = PeerId::from_bytes(&bytes).ok();
        for id in std::iter::once(id).chain(twin) {
            if position::r_of(&id.record_key()) != r {
                continue;
            }
            let contact = Contact { id, addr };
            if contact.node_id().distance(key) < *bound {
                return Minted {
                    id,
                    addr,
                    placed: true,
                };
            }
            fallback.get_or_insert(id);
        }
    }
    Minted {
        id: fallback.expect("one key in eight selects each r"),
        addr,
        placed: false,
    }
}

/// How far `key` is from the closest of `honest`: a Sybil must be closer.
pub fn bound(key: &NodeId, honest: &[NodeId]) -> [u8; 32] {
    honest
        .iter()
        .map(|h| h.distance(key))
        .min()
        .unwrap_or([0xff; 32])
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
) -> (Vec<Option<PeerId>>, Vec<usize>) {
    let free: Vec<usize> = (0..supernodes.len()).filter(|&i| !liars[i]).collect();
    let n = ((pct / 100.0) * supernodes.len() as f64).round() as usize;
    let n = n.min(free.len());
    if n == 0 || clients.is_empty() {
        return (Vec::new(), Vec::new());
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
    // Honest supernode `i` joins as the `i`-th and runs at `public_addr(i)`: its
    // position follows (BEP 42).
    let honest: Vec<NodeId> = supernodes
        .par_iter()
        .zip(liars.par_iter().zip(sybil.par_iter()))
        .enumerate()
        .filter(|(_, (_, (liar, sybil)))| !**liar && !**sybil)
        .map(|(i, (id, _))| {
            let addr = public_addr(u32::try_from(i).unwrap_or(u32::MAX));
            NodeId::of_supernode(&id.peer_id(), addr.ip())
        })
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
    let networks = sim.attacker_networks.unwrap_or(DEFAULT_NETWORKS);
    let minted = plan(&chosen, &honest, networks, sim.rng.gen());
    let mut placed = vec![0; chosen.len()];
    let mut t = 0;
    for (j, m) in minted.iter().enumerate() {
        // `plan` gives each target's Sybils in turn.
        while j >= chosen[..=t].iter().map(|(_, n)| n).sum::<usize>() {
            t += 1;
        }
        placed[t] += usize::from(m.placed);
    }
    let mut out = vec![None; supernodes.len()];
    for (p, m) in places.into_iter().zip(minted) {
        sim.addresses.insert(m.id, m.addr);
        out[p] = Some(m.id);
    }
    (out, placed)
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
            let key = contact(10_000 + probe).id.record_key();
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
    fn minted_sybils_are_placed_next_to_their_targets_from_their_networks() {
        let honest: Vec<NodeId> = (0..500)
            .map(|i| {
                let c = contact(i);
                NodeId::of_supernode(&c.id, public_addr(i as u32).ip())
            })
            .collect();
        let targets: Vec<(NodeId, usize)> = (0..3)
            .map(|t| (contact(900 + t).id.record_key(), 12))
            .collect();
        let minted = plan(&targets, &honest, 2, 7);
        assert_eq!(minted.len(), 36);
        let ips: std::collections::HashSet<IpAddr> = minted.iter().map(|m| m.addr.ip()).collect();
        assert_eq!(ips.len(), 36, "one Sybil per address");
        for (chunk, (key, _)) in minted.chunks(12).zip(&targets) {
            let nearest = bound(key, &honest);
            for m in chunk {
                let octets = match m.addr.ip() {
                    IpAddr::V4(v4) => v4.octets(),
                    IpAddr::V6(_) => panic!("IPv4 networks"),
                };
                assert!(octets[0] == 5 && octets[1] < 2, "{}", m.addr);
                // Its position is computed from its contact, as everyone computes it.
                let position = Contact {
                    id: m.id,
                    addr: m.addr,
                }
                .node_id();
                assert!(m.placed);
                assert!(position.distance(key) < nearest);
            }
        }
    }

    /// A key ground next to the target is of no use at an address whose prefix lands
    /// elsewhere: the position is the address's.
    #[test]
    fn a_key_alone_does_not_place_a_sybil() {
        let key = contact(900).id.record_key();
        let honest: Vec<NodeId> = (0..50).map(|i| contact(i).node_id()).collect();
        let nearest = bound(&key, &honest);
        let ground = (1000..)
            .map(|i| contact(i).id)
            .find(|id| id.record_key().distance(&key) < nearest)
            .unwrap();
        let far = (0..=255u8)
            .map(|d| Contact {
                id: ground,
                addr: SocketAddr::from(([5, 0, 0, d], 7000)),
            })
            .filter(|c| c.node_id().distance(&key) >= nearest)
            .count();
        assert!(far > 240, "{far} of 256 addresses put it elsewhere");
    }
}
