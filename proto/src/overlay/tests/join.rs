//! Joining: records held before a supernode joins reach it, and requests made before
//! the join connected wait for it (issue 9, the store-on-join bug).

use super::*;

/// Issue 9: a record published to the only supernode must be found through a second
/// one that joins later (and the other way round), whichever is closer to its key.
#[test]
fn supernodes_joining_a_small_overlay_get_every_record_held_before() {
    let mut net = Net::new(1);
    let now = net.now;
    let owners: Vec<Identity> = (0..16).map(|i| identity(1000 + i)).collect();
    let (early, late) = owners.split_at(8);
    for owner in early {
        net.nodes[0]
            .publish(now, record(owner, 1, now + 10 * MINUTE))
            .unwrap();
    }
    net.settle();
    // The newcomer publishes before it knows anyone.
    let second = net.add_unjoined(1);
    for owner in late {
        net.nodes[second]
            .publish(now, record(owner, 1, now + 10 * MINUTE))
            .unwrap();
    }
    net.settle();
    let ids = [net.nodes[0].me().node_id(), contact(1).node_id()];
    let closer_to = |o: &Identity, n: usize| {
        let key = o.peer_id().record_key();
        ids[n].distance(&key) < ids[1 - n].distance(&key)
    };
    assert!(early.iter().any(|o| closer_to(o, 0)) && late.iter().any(|o| closer_to(o, 1)));
    let first = net.nodes[0].me();
    net.nodes[second].join(now, first);
    net.settle();
    // k = 20 and two supernodes: both hold all 16.
    assert_eq!(net.nodes[0].stored_records(), 16);
    assert_eq!(net.nodes[second].stored_records(), 16);
    // So each answers for every record with the other gone.
    for gone in [0, second] {
        net.dead = vec![false; 2];
        net.dead[gone] = true;
        for owner in &owners {
            let (found, _) = net.lookup(1 - gone, owner.peer_id());
            assert!(found.is_some(), "through {} with {gone} gone", 1 - gone);
        }
    }
}

/// Issue 9: a supernode accepts clients as soon as it listens; their lookups and
/// publications that arrive before its join wait for it (at most `rpc_timeout`).
#[test]
fn requests_before_the_join_wait_for_it_within_the_rpc_timeout() {
    let mut net = Net::new(1);
    let carol = identity(1000);
    let r = record(&carol, 1, net.now + 10 * MINUTE);
    net.nodes[0].publish(net.now, r.clone()).unwrap();
    net.settle();
    net.events.clear();
    let second = net.add_unjoined(1);
    net.nodes[second].expect_join();
    let dave = identity(1001);
    let now = net.now;
    let publish = net.nodes[second]
        .publish(now, record(&dave, 1, now + 10 * MINUTE))
        .unwrap();
    let lookup = net.nodes[second].lookup(now, carol.peer_id());
    net.settle();
    assert!(net.events.is_empty(), "both wait for the join");
    assert_eq!(net.nodes[second].operations_in_progress(), 2);
    let joined = now + Duration::from_millis(300);
    net.now = joined;
    let first = net.nodes[0].me();
    net.nodes[second].join(joined, first);
    net.settle();
    let found = net.events.iter().find_map(|(_, e)| match e {
        OverlayEvent::LookupDone { op, record, hops } if *op == lookup => Some((record, *hops)),
        _ => None,
    });
    assert_eq!(found, Some((&Some(r), 1)), "found on the first supernode");
    let replicas = net.events.iter().find_map(|(_, e)| match e {
        OverlayEvent::Published { op, replicas } if *op == publish => Some(*replicas),
        _ => None,
    });
    assert_eq!(replicas, Some(2), "stored on the first supernode too");
    // A join that never comes holds a lookup up for one RPC timeout, no longer.
    let third = net.add_unjoined(2);
    net.nodes[third].expect_join();
    let op = net.nodes[third].lookup(joined, carol.peer_id());
    let deadline = net.nodes[third].poll_timeout().unwrap();
    assert_eq!(deadline, joined + OverlayConfig::default().rpc_timeout);
    net.nodes[third].handle_timeout(deadline);
    assert!(matches!(
        net.nodes[third].poll_event(),
        Some(OverlayEvent::LookupDone { op: o, record: None, .. }) if o == op
    ));
    assert_eq!(net.nodes[third].operations_in_progress(), 0);
    // A supernode just started, told of no join, waits the same way for anyone to
    // talk to it: another may be joining through it.
    let fourth = net.add_unjoined(3);
    let op = net.nodes[fourth].lookup(joined, carol.peer_id());
    net.settle();
    assert!(!net.events.iter().any(|(i, _)| *i == fourth));
    net.nodes[0].join(joined, contact(3));
    net.settle();
    assert!(net.events.iter().any(|(i, e)| *i == fourth
        && matches!(e, OverlayEvent::LookupDone { op: o, record: Some(_), .. } if *o == op)));
}

/// Several `--join` addresses: one self-lookup, seeded with all of them.
#[test]
fn joins_while_a_join_runs_seed_it_instead_of_starting_another() {
    let mut node = Overlay::new(contact(0), OverlayConfig::default(), T0, 0);
    node.join(T0, contact(1));
    node.join(T0, contact(2));
    node.join(T0, contact(3));
    assert_eq!(node.operations_in_progress(), 1);
    let asked: Vec<Contact> = std::iter::from_fn(|| node.poll_transmit())
        .map(|rpc| {
            assert_eq!(
                rpc.request,
                SupernodeToSupernode::FindNode(contact(0).node_id())
            );
            rpc.to
        })
        .collect();
    assert_eq!(asked.len(), 3, "every bootstrap asked: {asked:?}");
}

/// A supernode at a public address sits where everyone else computes it: its
/// self-lookup looks for its BEP 42 position, not its key's hash.
#[test]
fn a_supernode_at_a_public_address_looks_itself_up_at_its_bep42_position() {
    let me = Contact {
        addr: "203.0.113.7:7000".parse().unwrap(),
        ..contact(0)
    };
    assert_ne!(me.node_id(), me.id.record_key());
    let mut node = Overlay::new(me, OverlayConfig::default(), T0, 0);
    node.join(T0, contact(1));
    let rpc = node.poll_transmit().unwrap();
    assert_eq!(rpc.request, SupernodeToSupernode::FindNode(me.node_id()));
}
