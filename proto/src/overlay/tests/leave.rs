//! A graceful leave hands each record to the supernode that takes the leaver's place
//! among its `k` closest (issue 10, demotion).

use super::*;
use crate::NodeId;

/// The `k` live supernodes closest to `key`, by index.
fn closest(net: &Net, key: &NodeId, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..net.nodes.len()).filter(|&i| !net.dead[i]).collect();
    all.sort_by_key(|&i| net.nodes[i].me().node_id().distance(key));
    all.truncate(k);
    all
}

fn handed_over(net: &Net, node: usize) -> Option<(usize, usize)> {
    net.events.iter().find_map(|(i, e)| match e {
        OverlayEvent::HandedOver { records, stored } if *i == node => Some((*records, *stored)),
        _ => None,
    })
}

/// Stores `r` on exactly the `k` supernodes closest to its key, as a publication
/// from outside the overlay would.
fn place_on_closest(net: &mut Net, r: &SignedPresence, k: usize) -> Vec<usize> {
    let holders = closest(net, &r.record.id.record_key(), k);
    // Sent by a supernode of the overlay that is not a holder (a publisher).
    let from = (0..net.nodes.len())
        .find(|i| !holders.contains(i))
        .map(|i| net.nodes[i].me())
        .expect("more supernodes than k");
    for &h in &holders {
        let now = net.now;
        let reply =
            net.nodes[h].handle_request(now, from, SupernodeToSupernode::Store(r.clone().into()));
        assert_eq!(reply, SupernodeReply::Stored);
    }
    net.settle();
    holders
}

/// 40 supernodes, and the record of owner `n` on the k closest to its key.
fn one_record_on_the_k_closest(n: u64) -> (Net, SignedPresence, Vec<usize>) {
    let mut net = Net::new(40);
    let r = record(&identity(n), 1, net.now + 20 * MINUTE);
    let holders = place_on_closest(&mut net, &r, OverlayConfig::default().k);
    (net, r, holders)
}

fn holding(net: &Net, key: &NodeId) -> Vec<usize> {
    (0..net.nodes.len())
        .filter(|&i| net.nodes[i].stored(net.now, key).is_some())
        .collect()
}

/// The record of `owner` as a lookup from `from` finds it, given time for queries to
/// dead supernodes to time out. Up to three tries: with all k closest supernodes dead
/// a lookup seeded with them ends empty, and the failures drop them from the asker's
/// table (`routing::MAX_FAILURES`), as a retrying client's supernode would.
fn find(net: &mut Net, from: usize, owner: &Identity) -> Option<SignedPresence> {
    for _ in 0..3 {
        let now = net.now;
        let op = net.nodes[from].lookup(now, owner.peer_id());
        let until = net.now + Duration::from_secs(60);
        net.run_until(until);
        let found = net.events.iter().find_map(|(i, e)| match e {
            OverlayEvent::LookupDone { op: o, record, .. } if *i == from && *o == op => {
                record.clone()
            }
            _ => None,
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

#[test]
fn a_leaving_holders_records_stay_findable_with_the_other_holders_down() {
    let k = OverlayConfig::default().k;
    let mut net = Net::new(40);
    // Six records that supernode 7 holds among their k closest.
    let leaver = 7;
    let owners: Vec<Identity> = (2000..)
        .map(identity)
        .filter(|o| closest(&net, &o.peer_id().record_key(), k).contains(&leaver))
        .take(6)
        .collect();
    let records: Vec<SignedPresence> = owners
        .iter()
        .map(|o| record(o, 1, net.now + 20 * MINUTE))
        .collect();
    let mut holders = Vec::new();
    for r in &records {
        holders.push(place_on_closest(&mut net, r, k));
    }
    net.events.clear();
    let sent = net.nodes[leaver].leave(net.now);
    assert_eq!(sent, records.len(), "one Store per record, no lookup");
    net.settle();
    assert_eq!(
        handed_over(&net, leaver),
        Some((records.len(), records.len()))
    );
    net.dead[leaver] = true;
    for (r, before) in records.iter().zip(&holders) {
        let key = r.record.id.record_key();
        let now_held = holding(&net, &key);
        let fresh: Vec<usize> = now_held
            .iter()
            .copied()
            .filter(|i| !before.contains(i))
            .collect();
        // The one that takes the leaver's place among the k closest.
        assert_eq!(fresh, closest(&net, &key, k)[k - 1..].to_vec());
    }
    // Every former holder of a record down, the leaver and its k - 1 fellows: the
    // record is still found.
    for ((owner, r), before) in owners.iter().zip(&records).zip(&holders) {
        for i in 0..net.nodes.len() {
            net.dead[i] = before.contains(&i);
        }
        let asker = (0..40).find(|&i| !net.dead[i]).expect("someone is left");
        assert_eq!(find(&mut net, asker, owner).as_ref(), Some(r));
    }
}

#[test]
fn a_leave_sends_nothing_for_records_held_far_from_their_key_and_ends_at_once() {
    let (mut net, r, holders) = one_record_on_the_k_closest(3000);
    let key = r.record.id.record_key();
    // A supernode outside the k closest holds a copy too (its client published it).
    let far = (0..40).find(|i| !holders.contains(i)).expect("40 > k");
    let now = net.now;
    net.nodes[far].publish(now, r.clone()).unwrap();
    net.settle();
    assert!(net.nodes[far].stored(net.now, &key).is_some());
    net.events.clear();
    assert_eq!(net.nodes[far].leave(net.now), 0);
    assert_eq!(handed_over(&net, far), None, "reported through poll_event");
    net.settle();
    assert_eq!(handed_over(&net, far), Some((0, 0)));
    assert!(net.nodes[far].is_leaving());
    assert_eq!(net.nodes[far].leave(net.now), 0, "once");
}

#[test]
fn a_leave_reports_within_the_rpc_timeout_when_its_targets_are_dead() {
    let k = OverlayConfig::default().k;
    let (mut net, r, holders) = one_record_on_the_k_closest(3001);
    let key = r.record.id.record_key();
    let leaver = holders[0];
    assert_eq!(holders, closest(&net, &key, k));
    // Everyone but the holders is down and nobody noticed yet: the one that would
    // take the leaver's place never answers.
    for i in 0..net.nodes.len() {
        net.dead[i] = !holders.contains(&i);
    }
    net.events.clear();
    let start = net.now;
    assert_eq!(net.nodes[leaver].leave(start), 1);
    net.settle();
    assert_eq!(handed_over(&net, leaver), None, "waiting for the reply");
    // It starts nothing new meanwhile: its next timer is the Store's deadline.
    let deadline = start + OverlayConfig::default().rpc_timeout;
    assert_eq!(net.nodes[leaver].poll_timeout(), Some(deadline));
    net.run_until(deadline);
    assert_eq!(handed_over(&net, leaver), Some((1, 0)));
}
