//! Tests of the whole [`Overlay`] machine on a small network that delivers at once.

use super::*;
use crate::identity::{Identity, PeerId};
use crate::messages::{RefusalCode, SupernodeReply, MAX_CONTACTS};
use crate::presence::PresenceRecord;
use crate::Timestamp;
use std::collections::HashMap;

mod join;
mod leave;
mod sybil;

const T0: Timestamp = Timestamp(1_700_000_000_000);
const MINUTE: Duration = Duration::from_secs(60);

fn identity(n: u64) -> Identity {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed[8] = 0x5e;
    Identity::from_seed(&seed)
}

fn contact(n: u64) -> Contact {
    Contact {
        id: identity(n).peer_id(),
        addr: format!("10.1.0.1:{}", 2000 + n).parse().unwrap(),
    }
}

fn record(owner: &Identity, seq: u64, expires_at: Timestamp) -> SignedPresence {
    PresenceRecord {
        id: owner.peer_id(),
        display_name: "carol".into(),
        supernodes: vec![],
        addresses: vec![],
        nat: Default::default(),
        seq,
        expires_at,
    }
    .sign(owner)
}

/// Supernodes exchanging RPCs instantly; `dead` ones never answer, `sybil` ones
/// answer as `sybil::reply` says.
struct Net {
    nodes: Vec<Overlay>,
    index: HashMap<PeerId, usize>,
    dead: Vec<bool>,
    sybil: Vec<bool>,
    now: Timestamp,
    events: Vec<(usize, OverlayEvent)>,
}

impl Net {
    fn empty() -> Net {
        Net {
            nodes: Vec::new(),
            index: HashMap::new(),
            dead: Vec::new(),
            sybil: Vec::new(),
            now: T0,
            events: Vec::new(),
        }
    }

    fn new(n: u64) -> Net {
        let mut net = Net::empty();
        for i in 0..n {
            net.add(i);
        }
        net
    }

    fn add(&mut self, i: u64) -> usize {
        let at = self.add_unjoined(i);
        if at > 0 {
            let first = self.nodes[0].me();
            self.nodes[at].join(self.now, first);
            self.settle();
        }
        at
    }

    /// A supernode that knows nobody yet.
    fn add_unjoined(&mut self, i: u64) -> usize {
        self.add_node(contact(i), OverlayConfig::default(), i)
    }

    /// The supernode `c`, knowing nobody yet, its machine seeded with `seed`.
    fn add_node(&mut self, c: Contact, config: OverlayConfig, seed: u64) -> usize {
        let at = self.nodes.len();
        self.nodes.push(Overlay::new(c, config, self.now, seed));
        self.index.insert(c.id, at);
        self.dead.push(false);
        self.sybil.push(false);
        at
    }

    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(rpc) = self.nodes[i].poll_transmit() {
                    moved = true;
                    let j = self.index[&rpc.to.id];
                    // QUIC proves the key at the address dialed: a contact naming
                    // a key at an address it is not at cannot be reached.
                    if self.dead[j] || self.nodes[j].me().addr != rpc.to.addr {
                        continue;
                    }
                    let from = self.nodes[i].me();
                    let reply = if self.sybil[j] {
                        sybil::reply(self, j, from, rpc.request)
                    } else {
                        self.nodes[j].handle_request(self.now, from, rpc.request)
                    };
                    self.nodes[i].handle_reply(self.now, rpc.id, Ok(reply));
                }
                while let Some(e) = self.nodes[i].poll_event() {
                    self.events.push((i, e));
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves the clock to `until`, running every timer on the way.
    fn run_until(&mut self, until: Timestamp) {
        loop {
            self.settle();
            let next = (0..self.nodes.len())
                .filter(|&i| !self.dead[i])
                .filter_map(|i| self.nodes[i].poll_timeout().map(|t| (t, i)))
                .min();
            match next {
                Some((t, i)) if t <= until => {
                    self.now = self.now.max(t);
                    self.nodes[i].handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn lookup(&mut self, from: usize, id: PeerId) -> (Option<SignedPresence>, usize) {
        let op = self.nodes[from].lookup(self.now, id);
        let done = |events: &[(usize, OverlayEvent)]| {
            events.iter().position(|(i, e)| {
                *i == from && matches!(e, OverlayEvent::LookupDone { op: o, .. } if *o == op)
            })
        };
        self.settle();
        if done(&self.events).is_none() {
            // A query to a dead supernode ends at the RPC deadline.
            let until = self.now + OverlayConfig::default().rpc_timeout * 2;
            self.run_until(until);
        }
        let pos = done(&self.events).expect("lookup finished");
        match self.events.remove(pos).1 {
            OverlayEvent::LookupDone { record, hops, .. } => (record, hops),
            _ => unreachable!(),
        }
    }
}

#[test]
fn publish_replicates_and_every_node_finds_the_record() {
    let mut net = Net::new(30);
    assert!(net.nodes.iter().all(|n| n.routing_table_len() > 0));
    let carol = identity(1000);
    let r = record(&carol, 1, net.now + 10 * MINUTE);
    let op = net.nodes[3].publish(net.now, r.clone()).unwrap();
    net.settle();
    let replicas = net.events.iter().find_map(|(_, e)| match e {
        OverlayEvent::Published { op: o, replicas } if *o == op => Some(*replicas),
        _ => None,
    });
    assert_eq!(replicas, Some(21), "k others plus the local copy");
    assert_eq!(net.lookup(3, carol.peer_id()), (Some(r.clone()), 0));
    for i in 0..30 {
        let (found, hops) = net.lookup(i, carol.peer_id());
        assert_eq!(found.as_ref(), Some(&r), "from node {i}");
        assert!(hops <= 3);
    }
}

#[test]
fn a_missing_record_is_reported_not_found() {
    let mut net = Net::new(10);
    let (found, hops) = net.lookup(4, identity(999).peer_id());
    assert_eq!(found, None);
    assert!(hops >= 1);
}

#[test]
fn bad_stores_are_refused_with_a_reason_and_an_event() {
    let mut net = Net::new(1);
    let node = &mut net.nodes[0];
    let from = contact(77);
    let carol = identity(1000);
    let now = net.now;
    let two = record(&carol, 2, now + MINUTE);
    let store = |r: SignedPresence| SupernodeToSupernode::Store(r.into());
    assert_eq!(
        node.handle_request(now, from, store(two.clone())),
        SupernodeReply::Stored
    );
    let refusal_code = |reply| match reply {
        SupernodeReply::Refused(r) => Some(r.code),
        _ => None,
    };
    // A replay of an older record.
    let one = record(&carol, 1, now + MINUTE);
    let reply = node.handle_request(now, from, store(one));
    assert_eq!(
        reply,
        SupernodeReply::Superseded(two.clone().into()),
        "proved stale"
    );
    // A forgery.
    let mut forged = record(&identity(666), 3, now + MINUTE);
    forged.record.id = carol.peer_id();
    let reply = node.handle_request(now, from, store(forged));
    assert_eq!(refusal_code(reply), Some(RefusalCode::BadRecord));
    // An expired record.
    let old = record(
        &identity(5),
        1,
        Timestamp(now.0 - crate::time::MAX_CLOCK_SKEW.as_millis() as u64),
    );
    let reply = node.handle_request(now, from, store(old));
    assert_eq!(refusal_code(reply), Some(RefusalCode::Expired));
    let mut refused = 0;
    while let Some(e) = node.poll_event() {
        assert!(matches!(e, OverlayEvent::RecordRefused { from: Some(f), .. } if f == from));
        refused += 1;
    }
    assert_eq!(refused, 3);
    assert_eq!(node.stored_records(), 1);
    // The local publish path refuses at once, with no event.
    assert!(node.publish(now, record(&carol, 1, now + MINUTE)).is_err());
    assert!(node.poll_event().is_none());
}

#[test]
fn replies_are_capped_exclude_the_asker_and_never_name_me() {
    let mut node = Overlay::new(contact(0), OverlayConfig::default(), T0, 0);
    for i in 1..200 {
        node.handle_request(T0, contact(i), SupernodeToSupernode::Ping);
    }
    node.handle_request(T0, contact(0), SupernodeToSupernode::Ping);
    let asker = contact(5);
    let target = contact(6).id.record_key();
    let SupernodeReply::Nodes(list) =
        node.handle_request(T0, asker, SupernodeToSupernode::FindNode(target))
    else {
        panic!("expected nodes");
    };
    assert_eq!(list.len(), 20);
    assert!(list.len() <= MAX_CONTACTS);
    assert!(!list.contains(&asker));
    assert!(!list.contains(&contact(0)));
    assert_eq!(list[0], contact(6), "the target itself is closest");
    assert!(!node.known_supernodes(500).contains(&contact(0)));
}

#[test]
fn unanswered_rpcs_time_out_and_oversized_replies_are_ignored() {
    let mut node = Overlay::new(contact(0), OverlayConfig::default(), T0, 0);
    node.join(T0, contact(1));
    let first = node.poll_transmit().expect("a query to the join contact");
    assert_eq!(first.to, contact(1));
    // Too many contacts: ignored, and none of them is ever asked. (The join then
    // ends and refreshes its buckets through contact 1, the only node it has.)
    let flood: Vec<Contact> = (100..100 + MAX_CONTACTS as u64 + 1).map(contact).collect();
    node.handle_reply(T0, first.id, Ok(SupernodeReply::Nodes(flood)));
    while let Some(rpc) = node.poll_transmit() {
        assert_eq!(rpc.to, contact(1));
    }
    // A lookup whose only contact never answers ends at the RPC deadline.
    let op = node.lookup(T0, identity(9).peer_id());
    assert_eq!(node.poll_transmit().map(|rpc| rpc.to), Some(contact(1)));
    let deadline = node.poll_timeout().unwrap();
    assert_eq!(deadline, T0 + Duration::from_secs(2));
    node.handle_timeout(deadline);
    assert!(
        matches!(node.poll_event(), Some(OverlayEvent::LookupDone { op: o, record: None, .. }) if o == op)
    );
    assert_eq!(node.routing_table_len(), 0, "failed twice, so dropped");
    assert_eq!(node.operations_in_progress(), 0);
    // A late reply is ignored.
    node.handle_reply(deadline, first.id, Ok(SupernodeReply::Pong));
    assert_eq!(node.rpcs_in_flight(), 0);
}

#[test]
fn records_reach_newcomers_and_expire() {
    let mut net = Net::new(3);
    let carol = identity(1000);
    // Holders republish a record its publisher left alone for most of an interval
    // (30 min by default), if it still has half an interval to live.
    let r = record(&carol, 1, net.now + 59 * MINUTE);
    net.nodes[0].publish(net.now, r.clone()).unwrap();
    net.settle();
    assert!(net.nodes.iter().all(|n| n.stored_records() == 1));
    for i in 3..8 {
        net.add(i);
    }
    // Newcomers among the k closest got it handed over at once; the others (none
    // here, with k = 20) would get it when a holder republishes.
    let later = net.now + 30 * MINUTE;
    net.run_until(later);
    assert!(
        net.nodes.iter().all(|n| n.stored_records() == 1),
        "republished to the newcomers"
    );
    // Lapsed: past its expiry by more than the clock skew a reader allows.
    let end = net.now + 30 * MINUTE + crate::time::MAX_CLOCK_SKEW;
    net.run_until(end);
    assert!(
        net.nodes.iter().all(|n| n.stored_records() == 0),
        "expired everywhere"
    );
}

#[test]
fn dead_nodes_leave_the_routing_table() {
    let mut net = Net::new(12);
    let victim = net.nodes[5].me();
    net.dead[5] = true;
    let holders: Vec<usize> = (0..12)
        .filter(|&i| i != 5 && net.nodes[i].known_supernodes(100).contains(&victim))
        .collect();
    assert!(!holders.is_empty());
    for _ in 0..3 {
        for &i in &holders {
            let now = net.now;
            net.nodes[i].lookup(now, victim.id);
        }
        let end = net.now + Duration::from_secs(3);
        net.run_until(end);
    }
    for &i in &holders {
        assert!(
            !net.nodes[i].known_supernodes(100).contains(&victim),
            "node {i}"
        );
    }
}

/// A node with three peers in its table, and the record `carol` published through it
/// up to the point where its `Store`s are out: returns the node and those RPCs.
fn held_seq(node: &mut Overlay, owner: &Identity, now: Timestamp) -> Option<u64> {
    node.stored(now, &owner.peer_id().record_key())
        .map(|r| r.record.seq)
}

/// `node` (pinged by supernodes 1..=n, none of which knows anyone else) publishes
/// `r`; returns the `Store` RPCs it sends, one per supernode.
fn publishing_to(n: u64, r: &SignedPresence) -> (Overlay, Vec<OutgoingRpc>) {
    let mut node = Overlay::new(contact(0), OverlayConfig::default(), T0, 0);
    for i in 1..=n {
        node.handle_request(T0, contact(i), SupernodeToSupernode::Ping);
    }
    node.publish(T0, r.clone()).unwrap();
    let mut stores = Vec::new();
    loop {
        let out: Vec<OutgoingRpc> = std::iter::from_fn(|| node.poll_transmit()).collect();
        if out.is_empty() {
            break;
        }
        for rpc in out {
            match rpc.request {
                SupernodeToSupernode::Store(_) => stores.push(rpc),
                _ => node.handle_reply(T0, rpc.id, Ok(SupernodeReply::Nodes(vec![]))),
            }
        }
    }
    (node, stores)
}

#[test]
fn a_forged_stale_refusal_does_not_delete_a_valid_record() {
    let carol = identity(1000);
    let r1 = record(&carol, 5, T0 + 10 * MINUTE);
    let (mut node, stores) = publishing_to(6, &r1);
    assert_eq!(stores.len(), 6);
    let now = T0 + Duration::from_millis(100);
    let mallory = identity(666);
    let refusals = [
        // A bare claim of staleness, with no proof.
        SupernodeReply::Refused(crate::messages::Refusal {
            code: RefusalCode::Stale,
            message: "stale presence record: seq 5 but seq 9 is already held".into(),
        }),
        // A "newer" record of carol's that does not verify (signed by another key).
        SupernodeReply::Superseded({
            let mut forged = record(&mallory, 9, T0 + 10 * MINUTE);
            forged.record.id = carol.peer_id();
            forged.into()
        }),
        // A valid, newer record, but of someone else.
        SupernodeReply::Superseded(record(&mallory, 9, T0 + 10 * MINUTE).into()),
        // Carol's own, validly signed, but older: a replay.
        SupernodeReply::Superseded(record(&carol, 4, T0 + 10 * MINUTE).into()),
        // Carol's own, validly signed and newer, but long expired.
        SupernodeReply::Superseded(record(&carol, 9, Timestamp(T0.as_millis() - 3_600_000)).into()),
    ];
    for (store, reply) in stores.iter().zip(refusals) {
        node.handle_reply(now, store.id, Ok(reply.clone()));
        assert_eq!(held_seq(&mut node, &carol, now), Some(5), "after {reply:?}");
        assert_eq!(node.stored_records(), 1, "after {reply:?}");
    }
    // A real newer record replaces ours (it does not merely delete it).
    let r2 = record(&carol, 6, T0 + 10 * MINUTE);
    node.handle_reply(now, stores[5].id, Ok(SupernodeReply::Superseded(r2.into())));
    assert_eq!(held_seq(&mut node, &carol, now), Some(6));
}

#[test]
fn a_lookup_racing_a_forged_newer_record_returns_the_valid_newest() {
    let carol = identity(1000);
    let old = record(&carol, 1, T0 + 10 * MINUTE);
    let new = record(&carol, 2, T0 + 10 * MINUTE);
    let mut forged = record(&identity(666), 99, T0 + 10 * MINUTE);
    forged.record.id = carol.peer_id();
    let mut node = Overlay::new(contact(0), OverlayConfig::default(), T0, 0);
    for i in 1..=4 {
        node.handle_request(T0, contact(i), SupernodeToSupernode::Ping);
    }
    let op = node.lookup(T0, carol.peer_id());
    let mut answers = vec![forged, new.clone(), old.clone(), old].into_iter();
    let mut asked = Vec::new();
    let mut t = T0;
    let done = loop {
        if let Some(e) = std::iter::from_fn(|| node.poll_event())
            .find(|e| matches!(e, OverlayEvent::LookupDone { .. }))
        {
            break e;
        }
        let finds: Vec<OutgoingRpc> = std::iter::from_fn(|| node.poll_transmit()).collect();
        assert!(!finds.is_empty(), "the lookup stalled");
        for f in finds {
            t = t + Duration::from_millis(20);
            let r = answers.next().expect("asked more holders than there are");
            asked.push((f.to.id, r.record.seq));
            node.handle_reply(t, f.id, Ok(SupernodeReply::Value(r.into())));
        }
    };
    // The forgery (seq 99) neither wins nor counts towards the quorum: a fourth
    // holder is asked, and the valid newest record is the answer.
    assert_eq!(asked.len(), 4);
    assert!(
        matches!(&done, OverlayEvent::LookupDone { op: o, record: Some(r), .. } if *o == op && *r == new),
        "{done:?}"
    );
    // Repairs go to the holders of the old record, not to the forger.
    let repaired: Vec<PeerId> = std::iter::from_fn(|| node.poll_transmit())
        .filter(|r| r.request == SupernodeToSupernode::Store(new.clone().into()))
        .map(|r| r.to.id)
        .collect();
    let mut stale: Vec<PeerId> = asked
        .iter()
        .filter(|(_, seq)| *seq == 1)
        .map(|(id, _)| *id)
        .collect();
    stale.sort_by_key(|id| id.to_bytes());
    let mut repaired = repaired;
    repaired.sort_by_key(|id| id.to_bytes());
    assert_eq!(repaired, stale);
}

#[test]
fn a_lookup_racing_an_old_and_a_new_record_returns_the_new_one_and_repairs() {
    let carol = identity(1000);
    let old = record(&carol, 1, T0 + 10 * MINUTE);
    let new = record(&carol, 2, T0 + 10 * MINUTE);
    let mut node = Overlay::new(contact(0), OverlayConfig::default(), T0, 0);
    for i in 1..=3 {
        node.handle_request(T0, contact(i), SupernodeToSupernode::Ping);
    }
    let op = node.lookup(T0, carol.peer_id());
    let finds: Vec<OutgoingRpc> = std::iter::from_fn(|| node.poll_transmit()).collect();
    assert_eq!(finds.len(), 3);
    // The old record arrives first, from a holder that missed the latest store.
    let answers = [old.clone(), new.clone(), old];
    for (i, (f, r)) in finds.iter().zip(answers).enumerate() {
        let at = T0 + Duration::from_millis(20 * (i as u64 + 1));
        node.handle_reply(at, f.id, Ok(SupernodeReply::Value(r.into())));
    }
    let done = std::iter::from_fn(|| node.poll_event())
        .find(|e| matches!(e, OverlayEvent::LookupDone { .. }));
    assert!(
        matches!(done, Some(OverlayEvent::LookupDone { op: o, record: Some(r), .. }) if o == op && r == new)
    );
    // The two holders of the old record are sent the new one.
    let repairs: Vec<OutgoingRpc> = std::iter::from_fn(|| node.poll_transmit()).collect();
    let mut to: Vec<PeerId> = repairs.iter().map(|r| r.to.id).collect();
    to.sort_by_key(|id| id.to_bytes());
    let mut expect = vec![finds[0].to.id, finds[2].to.id];
    expect.sort_by_key(|id| id.to_bytes());
    assert_eq!(to, expect);
    assert!(repairs
        .iter()
        .all(|r| r.request == SupernodeToSupernode::Store(new.clone().into())));
}

/// Issue 9 (churn): a supernode that still holds an older copy (it was a holder or
/// an attachment before the client published again) does not answer from it alone:
/// its lookup asks the key's holders, returns the newest record and repairs its copy.
#[test]
fn a_lookup_from_a_holder_of_an_old_copy_returns_the_newest_record() {
    let mut net = Net::new(3);
    let now = net.now;
    let carol = identity(1000);
    net.nodes[0]
        .publish(now, record(&carol, 1, now + 10 * MINUTE))
        .unwrap();
    net.settle();
    // Only supernode 1 got carol's next record.
    let from = net.nodes[0].me();
    let newer = record(&carol, 2, now + 10 * MINUTE);
    net.nodes[1].handle_request(now, from, SupernodeToSupernode::Store(newer.into()));
    assert_eq!(held_seq(&mut net.nodes[0], &carol, now), Some(1));
    let (found, _) = net.lookup(0, carol.peer_id());
    assert_eq!(found.map(|r| r.record.seq), Some(2));
    assert_eq!(held_seq(&mut net.nodes[0], &carol, net.now), Some(2));
}
