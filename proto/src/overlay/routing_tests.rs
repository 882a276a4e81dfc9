//! Unit tests of the routing table.

use super::*;
use crate::Identity;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn contact(seed: u64) -> Contact {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    Contact {
        id: Identity::from_seed(&bytes).peer_id(),
        addr: format!("10.0.0.1:{}", 1000 + seed % 60000).parse().unwrap(),
    }
}

/// `count` contacts that all fall in bucket 255 of `me`.
fn same_bucket(me: &NodeId, count: usize) -> Vec<Contact> {
    (1..)
        .map(contact)
        .filter(|c| me.bucket_index(&c.node_id()) == Some(255))
        .take(count)
        .collect()
}

#[test]
fn never_holds_itself() {
    let me = contact(0);
    let mut table = RoutingTable::new(me.node_id(), 20, Timestamp(0));
    assert_eq!(table.seen(Timestamp(1), me), None);
    assert!(table.is_empty());
}

#[test]
fn a_full_bucket_keeps_old_nodes_and_caches_newcomers() {
    let me = contact(0).node_id();
    let mut table = RoutingTable::new(me, 4, Timestamp(0));
    let cs = same_bucket(&me, 6);
    for c in &cs[..4] {
        assert_eq!(table.seen(Timestamp(1), *c), None);
    }
    // The oldest entry is fresh: the newcomer waits in the replacement cache.
    assert_eq!(table.seen(Timestamp(2), cs[4]), None);
    assert_eq!(table.len(), 4);
    assert!(table.get(&cs[4]).is_none());
    // Seeing an entry again moves it to the back.
    table.seen(Timestamp(3), cs[0]);
    assert_eq!(table.buckets[255].entries[3].contact, cs[0]);
    // A failure with a replacement waiting evicts at once, newest replacement in.
    table.failed(&cs[1]);
    assert!(table.get(&cs[1]).is_none());
    assert!(table.get(&cs[4]).is_some());
    assert_eq!(table.len(), 4);
}

#[test]
fn a_quiet_oldest_entry_is_pinged_and_evicted_if_it_fails() {
    let me = contact(0).node_id();
    let mut table = RoutingTable::new(me, 2, Timestamp(0));
    let cs = same_bucket(&me, 4);
    table.seen(Timestamp(0), cs[0]);
    table.seen(Timestamp(10), cs[1]);
    let later = Timestamp(0) + STALE_AFTER;
    assert_eq!(table.seen(later, cs[2]), Some(cs[0]));
    // Only one ping at a time per bucket.
    assert_eq!(table.seen(later, cs[3]), None);
    table.failed(&cs[0]);
    assert!(table.get(&cs[0]).is_none());
    assert!(table.get(&cs[3]).is_some(), "newest replacement promoted");
}

#[test]
fn a_live_oldest_entry_that_answers_its_ping_stays() {
    let me = contact(0).node_id();
    let mut table = RoutingTable::new(me, 2, Timestamp(0));
    let cs = same_bucket(&me, 3);
    table.seen(Timestamp(0), cs[0]);
    table.seen(Timestamp(0), cs[1]);
    let later = Timestamp(0) + STALE_AFTER;
    assert_eq!(table.seen(later, cs[2]), Some(cs[0]));
    table.seen(later, cs[0]);
    assert!(table.get(&cs[0]).is_some());
    assert!(table.get(&cs[2]).is_none());
}

#[test]
fn repeated_failures_remove_a_node_without_replacement() {
    let me = contact(0).node_id();
    let mut table = RoutingTable::new(me, 20, Timestamp(0));
    let c = contact(7);
    table.seen(Timestamp(0), c);
    table.failed(&c);
    assert_eq!(table.get(&c).map(|e| e.failures), Some(1));
    table.seen(Timestamp(1), c);
    table.failed(&c);
    assert!(table.get(&c).is_some(), "an answer resets the count");
    table.failed(&c);
    assert!(table.get(&c).is_none());
}

#[test]
fn closest_matches_a_full_sort() {
    let me = contact(0).node_id();
    let mut table = RoutingTable::new(me, 20, Timestamp(0));
    let mut all = Vec::new();
    for seed in 1..400 {
        let c = contact(seed);
        table.seen(Timestamp(0), c);
        all.push(c);
    }
    let held: Vec<Contact> = table.entries().map(|e| e.contact).collect();
    // Random targets (mostly in the far buckets), and targets next to us: our own id
    // with one bit flipped at every depth, so every bucket order is walked.
    let near_me = (0..256).step_by(7).map(|bit| {
        let mut id = me;
        id.0[31 - bit / 8] ^= 1 << (bit % 8);
        id
    });
    let targets: Vec<NodeId> = (1000..1020)
        .map(|seed| contact(seed).id.record_key())
        .chain(near_me)
        .collect();
    for target in targets {
        let mut expect = held.clone();
        expect.sort_by_key(|c| c.node_id().distance(&target));
        expect.truncate(20);
        assert_eq!(table.closest(&target, 20, |_| true), expect);
    }
    // Entries leaving (and replacements taking their place) keep the walk right.
    for c in held.iter().step_by(2) {
        table.remove(c);
    }
    let held: Vec<Contact> = table.entries().map(|e| e.contact).collect();
    for seed in 2000..2010 {
        let target = contact(seed).id.record_key();
        let mut expect = held.clone();
        expect.sort_by_key(|c| c.node_id().distance(&target));
        expect.truncate(20);
        assert_eq!(table.closest(&target, 20, |_| true), expect);
    }
    let mut expect = held.clone();
    expect.sort_by_key(|c| c.node_id().distance(&me));
    let excluded = expect.remove(0);
    expect.truncate(5);
    assert_eq!(table.closest(&me, 5, |e| e.contact != excluded), expect);
    // Entries that failed their last RPC can be left out.
    let failing = expect[0];
    table.failed(&failing);
    assert!(!table
        .closest(&me, 5, |e| e.failures == 0)
        .contains(&failing));
}

#[test]
fn rank_counts_entries_closer_to_a_key() {
    let me = contact(0).node_id();
    let mut table = RoutingTable::new(me, 20, Timestamp(0));
    for seed in 1..300 {
        table.seen(Timestamp(0), contact(seed));
    }
    for target_seed in 1000..1040 {
        let key = contact(target_seed).id.record_key();
        let mine = me.distance(&key);
        let closer = table
            .entries()
            .filter(|e| e.node_id().distance(&key) < mine)
            .count();
        assert_eq!(table.closer_than_me(&key, 500), closer);
        assert_eq!(table.closer_than_me(&key, 3), closer.min(3));
    }
    assert_eq!(table.closer_than_me(&me, 20), 0);
}

#[test]
fn random_ids_land_in_the_asked_bucket() {
    let me = contact(0).node_id();
    let table = RoutingTable::new(me, 20, Timestamp(0));
    let mut rng = StdRng::seed_from_u64(1);
    for index in [0, 1, 7, 8, 100, 254, 255] {
        let id = table.random_id_in_bucket(index, &mut rng);
        assert_eq!(me.bucket_index(&id), Some(index));
    }
}

#[test]
fn refresh_covers_buckets_from_the_closest_neighbour_up() {
    let me = contact(0).node_id();
    let mut table = RoutingTable::new(me, 20, Timestamp(0));
    assert!(table.stale_buckets(Timestamp(0), Duration::ZERO).is_empty());
    let cs = same_bucket(&me, 1);
    table.seen(Timestamp(0), cs[0]);
    assert_eq!(table.stale_buckets(Timestamp(0), Duration::ZERO), vec![255]);
    let hour = Duration::from_secs(3600);
    assert!(table.stale_buckets(Timestamp(1), hour).is_empty());
    assert_eq!(table.next_refresh(hour), Some(Timestamp(0) + hour));
    table.touch(&cs[0].node_id(), Timestamp(5));
    assert_eq!(table.next_refresh(hour), Some(Timestamp(5) + hour));
}
