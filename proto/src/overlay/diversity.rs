//! IP diversity of the routing table: how many supernodes from one network may sit in
//! one k-bucket and in the whole table.
//!
//! Node ids cost nothing, so an attacker can start many supernodes; addresses are what
//! cost. Following S/Kademlia (Baumgart & Mies 2007, §4.1) and libp2p's routing-table
//! diversity filter (`go-libp2p-kbucket/peerdiversity`), the table groups addresses by
//! network and admits at most [`MAX_PER_GROUP_IN_BUCKET`] supernodes of one group into
//! a bucket (its entries and replacement cache together) and at most
//! [`MAX_PER_GROUP_IN_TABLE`] into the whole table. An attacker holding one network can
//! then fill at most two of the `k` places near a victim's key, whatever ids it mints.
//! Lookups apply the same limit to their candidates ([`MAX_PER_GROUP_IN_LOOKUP`]),
//! since Sybils name each other in replies whatever honest tables admit.
//!
//! Groups: an IPv4 address by its /16 (libp2p uses the /16 too; a /24 is cheap to
//! rent), an IPv6 address by its /32 (a typical allocation to one provider; libp2p asks
//! an ASN table, which we do not ship). Addresses that are not globally routable
//! (loopback, private, CGNAT, link-local, unique-local) belong to no group and are not
//! limited: such supernodes are a LAN or test deployment, and a supernode reachable from
//! the internet always advertises a public address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Supernodes of one group a k-bucket admits (entries and replacements together).
pub const MAX_PER_GROUP_IN_BUCKET: usize = 2;

/// Supernodes of one group the whole table admits.
pub const MAX_PER_GROUP_IN_TABLE: usize = 8;

/// Live candidates of one group a lookup holds (see
/// [`lookup`](super::lookup)): so the `k` closest a publication stores on and the
/// holders a value lookup asks are not all from one network.
pub const MAX_PER_GROUP_IN_LOOKUP: usize = 2;

/// The network an address belongs to, for the diversity limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpGroup {
    /// An IPv4 /16: its first two octets.
    V4([u8; 2]),
    /// An IPv6 /32: its first four bytes.
    V6([u8; 4]),
}

/// The group of `ip`, or `None` when it is not globally routable (and so not limited).
pub fn ip_group(ip: IpAddr) -> Option<IpGroup> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4_group(v4),
        IpAddr::V6(v6) => v6_group(v6),
    }
}

fn v4_group(ip: Ipv4Addr) -> Option<IpGroup> {
    let [a, b, ..] = ip.octets();
    let cgnat = a == 100 && (64..128).contains(&b); // RFC 6598
    let local = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || cgnat
        || a == 0
        || a >= 240;
    (!local).then_some(IpGroup::V4([a, b]))
}

fn v6_group(ip: Ipv6Addr) -> Option<IpGroup> {
    let s = ip.segments();
    let unique_local = s[0] & 0xfe00 == 0xfc00; // RFC 4193
    let link_local = s[0] & 0xffc0 == 0xfe80;
    let local = ip.is_unspecified() || ip.is_loopback() || ip.is_multicast();
    if local || unique_local || link_local {
        return None;
    }
    let o = ip.octets();
    Some(IpGroup::V6([o[0], o[1], o[2], o[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::routing::RoutingTable;
    use crate::presence::Contact;
    use crate::{Identity, NodeId, Timestamp};

    /// Supernode `i` at `ip`.
    fn at(i: u64, ip: &str) -> Contact {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&i.to_le_bytes());
        Contact {
            id: Identity::from_seed(&seed).peer_id(),
            addr: format!("{ip}:7000").parse().unwrap(),
        }
    }

    fn in_bucket(me: &NodeId, bucket: usize, ip: impl Fn(u64) -> String) -> Vec<Contact> {
        (1..)
            .map(|i| at(i, &ip(i)))
            .filter(|c| me.bucket_index(&c.node_id()) == Some(bucket))
            .take(10)
            .collect()
    }

    #[test]
    fn a_bucket_admits_two_supernodes_of_one_network() {
        let me = NodeId([0; 32]);
        let mut table = RoutingTable::new(me, 8, Timestamp(0));
        for c in in_bucket(&me, 255, |i| format!("203.0.{}.{}", i / 200, i % 200 + 1)) {
            table.seen(Timestamp(1), c);
        }
        assert_eq!(table.len(), 2, "one /16, whatever the ids");
        let others = in_bucket(&me, 255, |i| format!("198.{}.0.1", i % 200 + 1));
        for c in &others {
            table.seen(Timestamp(1), *c);
        }
        assert_eq!(table.len(), 8, "other networks fill the bucket");
        // Seeing an admitted entry again is not a newcomer.
        let first = table.entries().next().unwrap().contact;
        table.seen(Timestamp(2), first);
        assert!(table.get(&first).is_some());
    }

    #[test]
    fn the_table_admits_eight_supernodes_of_one_network() {
        let me = NodeId([0; 32]);
        let mut table = RoutingTable::new(me, 8, Timestamp(0));
        for i in 1..400 {
            table.seen(
                Timestamp(1),
                at(i, &format!("203.0.{}.{}", i / 200, i % 200 + 1)),
            );
        }
        assert_eq!(table.len(), MAX_PER_GROUP_IN_TABLE);
    }

    /// The table keeps its size and per-network counts as entries come, move to
    /// another network, fail and leave: a network whose entries left is admitted again.
    #[test]
    fn a_network_whose_entries_left_is_admitted_again() {
        let me = NodeId([0; 32]);
        let mut table = RoutingTable::new(me, 8, Timestamp(0));
        let net = |i: u64| at(i, &format!("203.0.{}.{}", i / 200, i % 200 + 1));
        let full: Vec<Contact> = (1..400).map(net).collect();
        for c in &full {
            table.seen(Timestamp(1), *c);
        }
        let admitted: Vec<Contact> = table.entries().map(|e| e.contact).collect();
        assert_eq!(admitted.len(), MAX_PER_GROUP_IN_TABLE);
        // Two move to other networks (a new address: a new position, BEP 42) and
        // their old addresses fail twice, two fail twice, one is removed.
        for (n, c) in admitted[..2].iter().enumerate() {
            let moved = Contact {
                addr: format!("198.{}.0.1:7000", n + 1).parse().unwrap(),
                ..*c
            };
            table.seen(Timestamp(2), moved);
            assert!(table.get(&moved).is_some(), "admitted at its new position");
            table.failed(c);
            table.failed(c);
            assert!(table.get(c).is_none());
        }
        for c in &admitted[2..4] {
            table.failed(c);
            table.failed(c);
        }
        table.remove(&admitted[4]);
        assert_eq!(table.len(), MAX_PER_GROUP_IN_TABLE - 3);
        assert_eq!(table.len(), table.entries().count());
        // Five places of 203.0/16 are free again, and only five.
        for i in 400..800 {
            table.seen(Timestamp(3), net(i));
        }
        let of_net = table
            .entries()
            .filter(|e| e.contact.addr.ip().to_string().starts_with("203.0."))
            .count();
        assert_eq!(of_net, MAX_PER_GROUP_IN_TABLE);
        assert_eq!(table.len(), MAX_PER_GROUP_IN_TABLE + 2);
        assert_eq!(table.len(), table.entries().count());
    }

    #[test]
    fn local_networks_are_not_limited() {
        let me = NodeId([0; 32]);
        let mut table = RoutingTable::new(me, 8, Timestamp(0));
        for c in in_bucket(&me, 255, |_| "127.0.0.1".to_string()) {
            table.seen(Timestamp(1), c);
        }
        assert_eq!(table.len(), 8);
    }

    fn group(s: &str) -> Option<IpGroup> {
        ip_group(s.parse().unwrap())
    }

    #[test]
    fn public_addresses_group_by_their_network() {
        assert_eq!(group("203.0.113.7"), Some(IpGroup::V4([203, 0])));
        assert_eq!(group("203.0.200.1"), group("203.0.113.7"));
        assert_ne!(group("203.1.113.7"), group("203.0.113.7"));
        assert_eq!(group("::ffff:203.0.113.7"), group("203.0.113.7"));
        assert_eq!(
            group("2001:db8:1::1"),
            Some(IpGroup::V6([0x20, 0x01, 0x0d, 0xb8]))
        );
        assert_eq!(group("2001:db8:ffff::2"), group("2001:db8:1::1"));
        assert_ne!(group("2001:db9::1"), group("2001:db8:1::1"));
    }

    #[test]
    fn local_addresses_belong_to_no_group() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(group(local), None, "{local}");
        }
    }
}
