//! Sybils minted next to a record's key (issue 10): supernodes from one /16 whose ids
//! are closer to the key than every honest supernode's, that name only each other,
//! and that answer `Stored` to every store and drop the record. The lookups' limit
//! per network keeps them to two of the `k` places, so the record is still stored on
//! honest holders and found from everywhere; without it, it is not.

use super::*;
use crate::identity::NodeId;
use crate::overlay::position;

const K: usize = 8;
const HONEST: u64 = 40;
const SYBILS: usize = K + 4;

/// How the Sybils come by their positions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mint {
    /// Honest to BEP 42: addresses of one /16 (203.0/16) whose prefix lands next to
    /// the key, each with a key whose hash selects that address's `r` and puts the
    /// rest of the position next to the key.
    Bep42,
    /// Keys ground until their hash alone lands next to the key (free before BEP 42),
    /// used from addresses of 203.0/16 taken in order, whose prefixes land elsewhere.
    KeyOnly,
}

/// Honest supernodes each in its own public /16, then Sybils of one /16 minted
/// next to `key` as `mint` says, each joining through the first honest one.
fn world(key: &NodeId, lookup_diversity: bool, mint: Mint) -> Net {
    let config = OverlayConfig {
        k: K,
        lookup_diversity,
        ..OverlayConfig::default()
    };
    let honest: Vec<Contact> = (0..HONEST)
        .map(|i| Contact {
            id: identity(2000 + i).peer_id(),
            addr: format!("11.{}.0.1:7000", i + 1).parse().unwrap(),
        })
        .collect();
    let nearest = nearest_honest(&honest, key);
    let sybils: Vec<Contact> = match mint {
        Mint::Bep42 => {
            let keys = (10_000..).map(|n| identity(n).peer_id());
            position::mint::sybils_next_to([203, 0], key, SYBILS, nearest, keys)
        }
        Mint::KeyOnly => (10_000..)
            .map(|n| identity(n).peer_id())
            .filter(|id| id.record_key().distance(key) < nearest)
            .take(SYBILS)
            .enumerate()
            .map(|(j, id)| Contact {
                id,
                addr: format!("203.0.0.{}:7000", j + 1).parse().unwrap(),
            })
            .collect(),
    };
    let mut net = Net::empty();
    for (n, contact) in honest.iter().chain(&sybils).enumerate() {
        let at = net.add_node(*contact, config.clone(), n as u64);
        net.sybil[at] = n >= honest.len();
        if at > 0 {
            net.nodes[at].join(net.now, honest[0]);
            net.settle();
        }
    }
    net
}

fn nearest_honest(honest: &[Contact], key: &NodeId) -> [u8; 32] {
    honest
        .iter()
        .map(|c| c.node_id().distance(key))
        .min()
        .unwrap()
}

/// A Sybil's answer: it stores nothing and names only the Sybils closest to the key
/// asked. Its machine still notes the sender, as for any request.
pub(super) fn reply(
    net: &mut Net,
    n: usize,
    from: Contact,
    request: SupernodeToSupernode,
) -> SupernodeReply {
    let now = net.now;
    net.nodes[n].handle_request(now, from, SupernodeToSupernode::Ping);
    match request {
        SupernodeToSupernode::Ping => SupernodeReply::Pong,
        SupernodeToSupernode::Store(_) => SupernodeReply::Stored,
        SupernodeToSupernode::FindNode(key) | SupernodeToSupernode::FindValue(key) => {
            let mut named: Vec<Contact> = (0..net.nodes.len())
                .filter(|&m| net.sybil[m])
                .map(|m| net.nodes[m].me())
                .filter(|c| c.id != from.id)
                .collect();
            named.sort_by_key(|c| c.node_id().distance(&key));
            named.truncate(K);
            SupernodeReply::Nodes(named)
        }
    }
}

/// Publishes a record next to which Sybils were minted, from the honest supernode
/// farthest from its key; returns how many honest supernodes hold it and from how
/// many of the other honest ones a lookup finds it.
fn eclipse(lookup_diversity: bool, mint: Mint) -> (usize, usize) {
    let carol = identity(1000);
    let key = carol.peer_id().record_key();
    let mut net = world(&key, lookup_diversity, mint);
    let honest: Vec<usize> = (0..net.nodes.len()).filter(|&n| !net.sybil[n]).collect();
    let distance = |n: usize| net.nodes[n].me().node_id().distance(&key);
    let publisher = honest.iter().copied().max_by_key(|&n| distance(n)).unwrap();
    let r = record(&carol, 1, net.now + 10 * MINUTE);
    net.nodes[publisher].publish(net.now, r.clone()).unwrap();
    net.settle();
    let now = net.now;
    let holders = honest
        .iter()
        .filter(|&&n| net.nodes[n].stored(now, &key).is_some())
        .count();
    let found = honest
        .iter()
        .filter(|&&n| n != publisher)
        .filter(|&&n| net.lookup(n, carol.peer_id()).0.as_ref() == Some(&r))
        .count();
    (holders, found)
}

#[test]
fn sybils_from_one_network_next_to_a_key_cannot_hide_its_record() {
    let (holders, found) = eclipse(true, Mint::Bep42);
    // Two of the k places go to Sybils; the publisher keeps its own copy.
    assert!(holders > K - 2, "{holders} honest holders");
    assert_eq!(
        found,
        HONEST as usize - 1,
        "found from every other honest supernode"
    );
}

/// The same attack without the lookups' limit: the test above can fail.
#[test]
fn without_the_lookup_limit_the_sybils_hide_the_record() {
    let (holders, found) = eclipse(false, Mint::Bep42);
    assert_eq!(holders, 1, "only the publisher holds it");
    assert!(found < HONEST as usize / 2, "found from {found}");
}

/// Keys ground to sit next to the key (free before BEP 42), used from addresses
/// whose prefixes land elsewhere: their positions are not next to the key, so even
/// without the lookups' limit a publication stores on honest supernodes and every
/// honest supernode finds the record.
#[test]
fn keys_ground_next_to_a_key_do_not_get_that_position_from_elsewhere() {
    let carol = identity(1000);
    let key = carol.peer_id().record_key();
    let net = world(&key, false, Mint::KeyOnly);
    let honest: Vec<Contact> = (0..net.nodes.len())
        .filter(|&n| !net.sybil[n])
        .map(|n| net.nodes[n].me())
        .collect();
    let nearest = nearest_honest(&honest, &key);
    let sybils: Vec<Contact> = (0..net.nodes.len())
        .filter(|&n| net.sybil[n])
        .map(|n| net.nodes[n].me())
        .collect();
    assert_eq!(sybils.len(), SYBILS);
    assert!(sybils
        .iter()
        .all(|s| s.id.record_key().distance(&key) < nearest));
    // Their positions are where their addresses put them: about as likely as any
    // honest supernode's to be the closest (1 in 40 each).
    let placed = sybils
        .iter()
        .filter(|s| s.node_id().distance(&key) < nearest)
        .count();
    assert!(placed <= 2, "{placed} of {SYBILS} next to the key");
    let (holders, found) = eclipse(false, Mint::KeyOnly);
    // Sybils sit at random positions, a quarter of the supernodes: a few of the k
    // closest by chance, not all (as in the test above).
    assert!(holders >= K / 2, "{holders} honest holders");
    assert_eq!(
        found,
        HONEST as usize - 1,
        "found from every other honest one"
    );
}
