//! A supernode's position in the key space: its key *and* the IP it is reached at
//! (BitTorrent's BEP 42, "DHT Security extension").
//!
//! Record keys are `SHA-256("parley-node-id-v1" ‖ key)` of a client's key
//! ([`PeerId::record_key`]) and never change. A supernode's position is the same hash
//! of its own key with the first [`PREFIX_BITS`] bits replaced by
//! `crc32c((ip & 0x030f3fff) | r << 29)` (IPv6: the top 64 bits masked with
//! `0x0103070f1f3f7fff`, `r << 61`), where `r` (0–7) is the low three bits of the
//! hash's last byte, as BEP 42 keeps its `r` in the id's last byte. So an attacker who
//! grinds keys still cannot choose the first 21 bits: those come from an address he
//! must hold and answer at (QUIC proves the key at the address dialed, and an incoming
//! request's sender is the connection's observed address). One address gives 8
//! prefixes.
//!
//! Nobody claims a position: everyone computes it from a [`Contact`] (key, address)
//! with [`Contact::node_id`] (routing table, lookups, diversity, hand-over,
//! republication rank, the overlay's own position). Addresses that are not globally
//! routable (loopback, RFC 1918, CGNAT, link-local, unique-local: the rule of
//! [`ip_group`]) are exempt, as in BEP 42: a supernode reached at one sits at the
//! key-only hash, so LAN and loopback deployments keep their positions.
//!
//! [`Contact`]: crate::presence::Contact
//! [`Contact::node_id`]: crate::presence::Contact::node_id

use super::diversity::ip_group;
use crate::identity::{NodeId, PeerId};
use crc::{Crc, CRC_32_ISCSI};
use std::net::IpAddr;

/// Bits of a position taken from the address (BEP 42: 21).
pub const PREFIX_BITS: u32 = 21;

/// CRC-32C (Castagnoli, the iSCSI polynomial), as BEP 42 uses.
const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// BEP 42's mask of an IPv4 address: the higher octets count less, so a /16 yields
/// 2^14 distinct values, not 2^16.
const V4_MASK: u32 = 0x030f_3fff;

/// BEP 42's mask of an IPv6 address's top 64 bits.
const V6_MASK: u64 = 0x0103_070f_1f3f_7fff;

/// The [`PREFIX_BITS`]-bit BEP 42 prefix of `ip` for `r` (only its low 3 bits
/// count), in the low bits of the result; `None` when `ip` is not globally routable
/// (exempt). IPv4-mapped IPv6 addresses count as IPv4.
pub fn bep42_prefix(ip: IpAddr, r: u8) -> Option<u32> {
    ip_group(ip)?;
    let r = r & 7;
    let crc = match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let masked = (u32::from(v4) & V4_MASK) | u32::from(r) << 29;
            CRC32C.checksum(&masked.to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let top = (u128::from(v6) >> 64) as u64;
            let masked = (top & V6_MASK) | u64::from(r) << 61;
            CRC32C.checksum(&masked.to_be_bytes())
        }
    };
    Some(crc >> (32 - PREFIX_BITS))
}

/// The `r` a key's hash selects (0–7): the low 3 bits of its last byte.
pub fn r_of(hash: &NodeId) -> u8 {
    hash.0[31] & 7
}

/// The first [`PREFIX_BITS`] bits of `id` (in the low bits): what a BEP 42 prefix
/// must match to put a position next to `id`.
pub fn prefix_of(id: &NodeId) -> u32 {
    u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]) >> (32 - PREFIX_BITS)
}

/// `hash` with its first [`PREFIX_BITS`] bits replaced by `prefix` (in the low bits).
pub fn with_prefix(hash: &NodeId, prefix: u32) -> NodeId {
    let [a, b, c, _] = (prefix << (32 - PREFIX_BITS)).to_be_bytes();
    let mut out = *hash;
    out.0[0] = a;
    out.0[1] = b;
    out.0[2] = (c & 0xf8) | (out.0[2] & 0x07);
    out
}

impl NodeId {
    /// The position of the supernode `peer` reached at `ip`: its key's hash with
    /// the BEP 42 prefix of `ip` (see the module docs); the key's hash alone when
    /// `ip` is not globally routable. One SHA-256 and, for a public address, one
    /// CRC-32C over 4 or 8 bytes.
    ///
    /// The key's hash is remembered per thread (see [`memo`]): a supernode meets the
    /// same few thousand contacts in every reply, and the hash was the hottest part of
    /// handling one.
    pub fn of_supernode(peer: &PeerId, ip: IpAddr) -> NodeId {
        let hash = memo::hash_of(peer);
        match bep42_prefix(ip, r_of(&hash)) {
            Some(prefix) => with_prefix(&hash, prefix),
            None => hash,
        }
    }
}

/// The key hashes ([`NodeId::of`]) computed lately on this thread, in a
/// direct-mapped table of one cache line per key: the hash is a pure function of the
/// key, so a remembered one is the computed one, and a slot two keys share only costs
/// the loser a new SHA-256. The table is made on a thread's first use (a client that
/// computes no positions pays nothing) and is [`SLOTS`](memo::SLOTS) × 64 bytes.
mod memo {
    use crate::identity::{NodeId, PeerId};
    use std::cell::RefCell;

    /// Slots of the table (a power of two): more than the supernodes a routing table
    /// and its lookups meet at 10,000 supernodes.
    pub(super) const SLOTS: usize = 1 << 14;

    /// A key and its hash, in one cache line.
    #[derive(Clone, Copy)]
    #[repr(align(64))]
    struct Slot {
        key: [u8; 32],
        hash: NodeId,
    }

    thread_local! {
        static TABLE: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
    }

    /// [`NodeId::of`] `peer`: remembered, or computed and remembered.
    pub(super) fn hash_of(peer: &PeerId) -> NodeId {
        let key = peer.as_bytes();
        TABLE.with(|table| {
            let mut table = table.borrow_mut();
            let slot = slot_of(key);
            if let Some(held) = table.get(slot).filter(|held| held.key == *key) {
                return held.hash;
            }
            let fresh = Slot {
                key: *key,
                hash: NodeId::of(peer),
            };
            if table.is_empty() {
                // Every slot starts as a true pair, so none needs a "used" flag.
                table.resize(SLOTS, fresh);
            }
            table[slot] = fresh;
            fresh.hash
        })
    }

    /// A key's bytes are a curve point's encoding, spread enough to index by.
    fn slot_of(key: &[u8; 32]) -> usize {
        let mut word = [0u8; 8];
        word.copy_from_slice(&key[..8]);
        let mixed = u64::from_le_bytes(word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> 32) as usize & (SLOTS - 1)
    }
}

#[cfg(test)]
pub(crate) mod mint {
    use super::*;
    use crate::presence::Contact;
    use std::net::SocketAddr;

    /// The `n` addresses of the /16 `net` (distinct IPs, each with the `r` that suits
    /// it best) whose BEP 42 prefix is closest to `key`'s first bits, closest first.
    pub(crate) fn addresses_next_to(net: [u8; 2], key: &NodeId, n: usize) -> Vec<(IpAddr, u8)> {
        let want = prefix_of(key);
        let mut all: Vec<(u32, IpAddr, u8)> = (0..=u16::MAX)
            .filter_map(|low| {
                let [c, d] = low.to_be_bytes();
                let ip = IpAddr::from([net[0], net[1], c, d]);
                (0..8u8)
                    .filter_map(|r| Some((bep42_prefix(ip, r)? ^ want, r)))
                    .min()
                    .map(|(d, r)| (d, ip, r))
            })
            .collect();
        all.sort_unstable();
        all.into_iter().take(n).map(|(_, ip, r)| (ip, r)).collect()
    }

    /// Sybils of the /16 `net` next to `key`: `n` contacts at the addresses of
    /// [`addresses_next_to`] (port 7000), each with the first key of `keys` whose
    /// hash selects its address's `r` and whose position is closer to `key` than
    /// `bound`. Closest first.
    pub(crate) fn sybils_next_to(
        net: [u8; 2],
        key: &NodeId,
        n: usize,
        bound: [u8; 32],
        mut keys: impl Iterator<Item = PeerId>,
    ) -> Vec<Contact> {
        let mut out: Vec<Contact> = addresses_next_to(net, key, n)
            .into_iter()
            .map(|(ip, r)| {
                let addr = SocketAddr::new(ip, 7000);
                keys.by_ref()
                    .map(|id| Contact { id, addr })
                    .find(|c| r_of(&c.id.record_key()) == r && c.node_id().distance(key) < bound)
                    .expect("keys are endless")
            })
            .collect();
        out.sort_by_key(|c| c.node_id().distance(key));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::Contact;
    use crate::Identity;

    /// BEP 42's table: IP, `rand` (its low 3 bits are `r`), and the first three
    /// bytes of the example id, whose first 21 bits are the prefix.
    const VECTORS: [(&str, u8, u32); 5] = [
        ("124.31.75.21", 1, 0x005f_bfbf),
        ("21.75.31.124", 86, 0x005a_3ce9),
        ("65.23.51.170", 22, 0x00a5_d432),
        ("84.124.73.14", 65, 0x001b_0321),
        ("43.213.53.83", 90, 0x00e5_6f6c),
    ];

    /// The position computed afresh, past the memo.
    fn computed(peer: &PeerId, ip: IpAddr) -> NodeId {
        let hash = NodeId::of(peer);
        bep42_prefix(ip, r_of(&hash)).map_or(hash, |prefix| with_prefix(&hash, prefix))
    }

    #[test]
    fn remembered_positions_are_the_computed_ones_even_when_slots_are_shared() {
        // More contacts than slots, each key at two addresses: slots are shared
        // and overwritten, and every answer is still the computed position.
        let contacts: Vec<(PeerId, IpAddr)> = (0..2 * memo::SLOTS as u32)
            .flat_map(|i| {
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&(i / 2).to_le_bytes());
                let ip = IpAddr::from([81, (i % 2) as u8, (i >> 8) as u8, i as u8]);
                [(Identity::from_seed(&seed).peer_id(), ip)]
            })
            .collect();
        for _ in 0..2 {
            for (peer, ip) in &contacts {
                assert_eq!(NodeId::of_supernode(peer, *ip), computed(peer, *ip));
            }
        }
    }

    #[test]
    fn the_prefix_matches_bep42s_table() {
        for (ip, rand, example) in VECTORS {
            let prefix = bep42_prefix(ip.parse().unwrap(), rand).unwrap();
            assert_eq!(prefix, example >> 3, "{ip} rand {rand}");
        }
    }

    #[test]
    fn a_position_takes_the_prefix_and_keeps_the_rest_of_the_hash() {
        for (ip, rand, example) in VECTORS {
            let mut hash = NodeId([0xa5; 32]);
            hash.0[31] = rand;
            let id = with_prefix(
                &hash,
                bep42_prefix(ip.parse().unwrap(), r_of(&hash)).unwrap(),
            );
            assert_eq!(
                u32::from_be_bytes([0, id.0[0], id.0[1], id.0[2]]) >> 3,
                example >> 3
            );
            assert_eq!(id.0[2] & 7, 0xa5 & 7, "the low 3 bits stay the hash's");
            assert_eq!(id.0[3..], hash.0[3..]);
        }
    }

    fn peer(i: u64) -> PeerId {
        let mut seed = [9u8; 32];
        seed[..8].copy_from_slice(&i.to_le_bytes());
        Identity::from_seed(&seed).peer_id()
    }

    fn at(id: PeerId, addr: &str) -> Contact {
        Contact {
            id,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn a_contacts_position_changes_with_its_ip_and_not_its_port() {
        let id = peer(1);
        let a = at(id, "203.0.113.7:7000").node_id();
        assert_eq!(a, at(id, "203.0.113.7:9000").node_id());
        assert_eq!(a, at(id, "[::ffff:203.0.113.7]:7000").node_id());
        let moved: Vec<NodeId> = [
            "198.51.100.1:7000",
            "203.1.113.7:7000",
            "[2001:db8::1]:7000",
        ]
        .iter()
        .map(|s| at(id, s).node_id())
        .collect();
        for m in &moved {
            assert_ne!(*m, a);
            // Only the prefix moves: the rest is the key's.
            assert_eq!(m.0[3..], id.record_key().0[3..]);
        }
        // The last two bits of the first octet and the top two of the third are
        // masked off (BEP 42): such neighbours share a prefix.
        assert_eq!(a, at(id, "207.0.113.7:7000").node_id());
        assert_eq!(a, at(id, "203.0.49.7:7000").node_id());
    }

    #[test]
    fn non_routable_addresses_keep_the_key_only_position() {
        for i in 0..20 {
            let id = peer(i);
            for local in [
                "127.0.0.1:1",
                "10.1.2.3:1",
                "172.16.0.1:1",
                "192.168.1.1:1",
                "169.254.1.1:1",
                "100.64.0.1:1",
                "0.0.0.0:1",
                "[::1]:1",
                "[::]:1",
                "[fd00::1]:1",
                "[fe80::1]:1",
                "[::ffff:10.0.0.1]:1",
            ] {
                assert_eq!(at(id, local).node_id(), id.record_key(), "{local}");
            }
        }
    }

    /// Eight `r`s, eight prefixes: which one a key gets is the key's hash's.
    #[test]
    fn the_keys_hash_selects_one_of_eight_prefixes() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let prefixes: std::collections::HashSet<u32> =
            (0..8).map(|r| bep42_prefix(ip, r).unwrap()).collect();
        assert_eq!(prefixes.len(), 8);
        for i in 0..50 {
            let id = peer(i);
            let pos = NodeId::of_supernode(&id, ip);
            let r = r_of(&id.record_key());
            assert_eq!(
                pos,
                with_prefix(&id.record_key(), bep42_prefix(ip, r).unwrap())
            );
        }
    }
}
