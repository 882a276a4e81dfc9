//! Tests of the attachment machine (`attach.rs`).

use super::*;

/// Both clocks at `ms`.
fn at(ms: u64) -> Now {
    Now {
        mono: Mono(ms),
        wall: Timestamp(ms),
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn drain(a: &mut Attachment) -> Vec<AttachAction> {
    std::iter::from_fn(|| a.poll_action()).collect()
}

fn dials(actions: &[AttachAction]) -> Vec<SocketAddr> {
    actions
        .iter()
        .filter_map(|a| match a {
            AttachAction::Dial { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect()
}

fn machine(bootstrap: &[SocketAddr], cache: &[Contact]) -> Attachment {
    Attachment::new(
        Identity::generate(),
        "alice".into(),
        AttachConfig::default(),
        bootstrap,
        cache,
        vec![addr(9)],
        at(1_000),
    )
}

#[test]
fn dials_two_and_publishes_on_attach() {
    let mut a = machine(&[addr(1), addr(2), addr(3)], &[]);
    assert_eq!(dials(&drain(&mut a)), vec![addr(1), addr(2)]);
    let sn = Identity::generate().peer_id();
    a.handle_dialed(at(1_100), addr(1), Some((sn, addr(50))));
    let actions = drain(&mut a);
    assert!(actions.contains(&AttachAction::Attached(Contact {
        id: sn,
        addr: addr(1)
    })));
    let published: Vec<&SignedPresence> = actions
        .iter()
        .filter_map(|a| match a {
            AttachAction::Publish { record, .. } => Some(record),
            _ => None,
        })
        .collect();
    assert_eq!(published.len(), 1);
    let record = published[0].verify(Timestamp(1_100)).unwrap();
    assert_eq!(record.supernodes.len(), 1);
    assert!(record
        .addresses
        .iter()
        .any(|c| c.kind == AddressKind::Observed && c.addr == addr(50)));
}

#[test]
fn a_dead_bootstrap_address_is_skipped_and_retried_later() {
    let mut a = machine(&[addr(1), addr(2), addr(3)], &[]);
    drain(&mut a);
    a.handle_dialed(at(1_100), addr(1), None);
    assert_eq!(dials(&drain(&mut a)), vec![addr(3)]);
    // With every address tried and two failed, a retry is scheduled after a backoff.
    a.handle_dialed(at(1_200), addr(3), None);
    // The backoff is randomised (so clients that lost the same supernode do not all
    // come back at once): whichever dead address is due first is dialled, alone.
    let retry_at = a.poll_timeout().unwrap();
    assert!(retry_at > Mono(1_200));
    a.handle_timeout(at(retry_at.as_millis()));
    let retried = dials(&drain(&mut a));
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert!([addr(1), addr(3)].contains(&retried[0]), "{retried:?}");
}

#[test]
fn the_host_cache_is_tried_first_and_pinned() {
    let known = Contact {
        id: Identity::generate().peer_id(),
        addr: addr(7),
    };
    let mut a = machine(&[addr(1)], &[known]);
    let actions = drain(&mut a);
    assert_eq!(
        actions[0],
        AttachAction::Dial {
            addr: addr(7),
            expected: Some(known.id)
        }
    );
}

#[test]
fn resumed_sequence_numbers_rise_even_when_the_clock_went_back() {
    let mut a = machine(&[addr(1)], &[]);
    // A previous run's clock was 30 minutes ahead.
    let ahead = 1_000_000 + 30 * 60 * 1000;
    a.resume_seq(ahead);
    let record = a.current_record(Timestamp(1_000_000));
    assert_eq!(record.record.seq, ahead + 1);
    assert_eq!(a.seq(), ahead + 1);
}

#[test]
fn losing_an_attachment_reattaches_and_republishes_with_a_higher_seq() {
    let mut a = machine(&[addr(1), addr(2), addr(3)], &[]);
    drain(&mut a);
    let (s1, s2) = (
        Identity::generate().peer_id(),
        Identity::generate().peer_id(),
    );
    a.handle_dialed(at(2_000), addr(1), Some((s1, addr(50))));
    a.handle_dialed(at(2_000), addr(2), Some((s2, addr(50))));
    let before = a.current_record(Timestamp(2_000)).record.seq;
    drain(&mut a);
    a.handle_lost(at(3_000), addr(1));
    let actions = drain(&mut a);
    assert!(actions.contains(&AttachAction::Detached(Contact {
        id: s1,
        addr: addr(1)
    })));
    assert_eq!(dials(&actions), vec![addr(3)]);
    let seqs: Vec<u64> = actions
        .iter()
        .filter_map(|a| match a {
            AttachAction::Publish { record, .. } => Some(record.record.seq),
            _ => None,
        })
        .collect();
    assert!(!seqs.is_empty() && seqs.iter().all(|&s| s > before));
}

#[test]
fn republishes_every_interval() {
    let mut a = machine(&[addr(1)], &[]);
    drain(&mut a);
    a.handle_dialed(
        at(1_000),
        addr(1),
        Some((Identity::generate().peer_id(), addr(50))),
    );
    drain(&mut a);
    let due = a.poll_timeout().unwrap();
    let interval = AttachConfig::default().republish_interval.as_millis() as u64;
    let (lo, hi) = (interval * 9 / 10, interval * 11 / 10);
    assert!(
        (1_000 + lo..=1_000 + hi).contains(&due.as_millis()),
        "{due:?}"
    );
    a.handle_timeout(at(due.as_millis()));
    assert!(drain(&mut a)
        .iter()
        .any(|x| matches!(x, AttachAction::Publish { .. })));
}

fn observed(record: &SignedPresence) -> Vec<SocketAddr> {
    record
        .record
        .addresses
        .iter()
        .filter(|a| a.kind == AddressKind::Observed)
        .map(|a| a.addr)
        .collect()
}

#[test]
fn the_record_carries_the_addresses_true_now() {
    let mut a = machine(&[addr(1), addr(2), addr(3)], &[]);
    drain(&mut a);
    let sn = || Identity::generate().peer_id();
    a.handle_dialed(at(2_000), addr(1), Some((sn(), addr(50))));
    a.handle_dialed(at(2_000), addr(2), Some((sn(), addr(50))));
    assert_eq!(
        observed(&a.current_record(Timestamp(2_000))),
        vec![addr(50)]
    );
    // The NAT moves us to a new port nine times; each time both attachments
    // break and come back.
    for (n, port) in (51..60).enumerate() {
        let now = at(3_000 + 100_000 * n as u64);
        a.handle_lost(now, addr(1));
        a.handle_lost(now, addr(2));
        drain(&mut a);
        a.handle_dialed(now, addr(1), Some((sn(), addr(port))));
        a.handle_dialed(now, addr(2), Some((sn(), addr(port))));
        assert_eq!(observed(&a.current_record(now.wall)), vec![addr(port)]);
        drain(&mut a);
    }
}

#[test]
fn a_refused_record_backs_off_with_jitter() {
    let mut a = machine(&[addr(1)], &[]);
    drain(&mut a);
    let sn = Identity::generate().peer_id();
    let mut now = at(1_000);
    let mut gaps = Vec::new();
    for _ in 0..6 {
        a.handle_dialed(now, addr(1), Some((sn, addr(50))));
        drain(&mut a);
        a.handle_published(
            now,
            Contact {
                id: sn,
                addr: addr(1),
            },
            false,
        );
        drain(&mut a);
        let next = a.poll_timeout().unwrap();
        gaps.push(next.since(now.mono));
        now = now + next.since(now.mono);
        a.handle_timeout(now);
        assert_eq!(dials(&drain(&mut a)), vec![addr(1)]);
    }
    // Each delay at least doubles the lower bound of the one before, up to the cap.
    let (min, max) = (
        AttachConfig::default().retry_min,
        AttachConfig::default().retry_max,
    );
    for (i, gap) in gaps.iter().enumerate() {
        // (The sixth, 32 s, is over the 30 s cap: drawn from 15..=30 s.)
        let full = (min * (1 << (i + 1))).min(max);
        assert!(*gap >= full / 2 && *gap <= full, "{i}: {gap:?}");
    }
}

#[test]
fn a_record_refused_for_the_clock_keeps_the_attachment_and_is_retried_later() {
    let mut a = machine(&[addr(1)], &[]);
    drain(&mut a);
    let sn = Identity::generate().peer_id();
    let now = at(1_000);
    a.handle_dialed(now, addr(1), Some((sn, addr(50))));
    drain(&mut a);
    a.handle_refused_for_clock(
        now,
        Contact {
            id: sn,
            addr: addr(1),
        },
    );
    // Still attached: no detach, no re-dial.
    assert!(drain(&mut a).is_empty());
    assert_eq!(a.attached().len(), 1);
    // Signed again, on the same attachment, after retry_max (not every second).
    let retry = AttachConfig::default().retry_max;
    assert_eq!(a.poll_timeout(), Some(now.mono + retry));
    a.handle_timeout(now + retry);
    let actions = drain(&mut a);
    assert!(dials(&actions).is_empty());
    assert!(actions
        .iter()
        .any(|x| matches!(x, AttachAction::Publish { to, .. } if to.addr == addr(1))));
}

#[test]
fn a_wall_clock_step_back_does_not_hold_back_a_redial_or_the_republish() {
    let mut a = machine(&[addr(1)], &[]);
    drain(&mut a);
    let sn = Identity::generate().peer_id();
    let t0 = Now {
        mono: Mono(1_000),
        wall: Timestamp(10_000_000_000),
    };
    a.handle_dialed(t0, addr(1), Some((sn, addr(50))));
    a.handle_lost(t0, addr(1));
    drain(&mut a);
    // The wall clock is stepped back an hour; the monotonic one runs on.
    let retry = a.poll_timeout().unwrap();
    let stepped = Now {
        mono: retry,
        wall: Timestamp(t0.wall.as_millis() - 60 * 60 * 1000),
    };
    a.handle_timeout(stepped);
    assert_eq!(dials(&drain(&mut a)), vec![addr(1)], "re-dialled on time");
    // Attached again: the republication is due one interval later on the monotonic
    // clock, and what it signs carries the (stepped) wall time.
    a.handle_dialed(stepped, addr(1), Some((sn, addr(50))));
    let published = drain(&mut a);
    let record = published
        .iter()
        .find_map(|x| match x {
            AttachAction::Publish { record, .. } => Some(record.clone()),
            _ => None,
        })
        .expect("published on attaching");
    let ttl = AttachConfig::default().record_ttl;
    assert_eq!(record.record.expires_at, stepped.wall + ttl);
    let due = a.poll_timeout().unwrap();
    let interval = AttachConfig::default().republish_interval;
    assert!(due.since(stepped.mono) <= interval.mul_f64(1.1));
}

#[test]
fn a_supernode_reached_over_tcp_is_published_at_its_quic_address() {
    // Dialed at its TCP fallback (port 443); it advertises QUIC at port 4433.
    let tcp = addr(443);
    let mut a = machine(&[tcp], &[]);
    drain(&mut a);
    let sn = Identity::generate().peer_id();
    a.set_quic_address(at(1_050), tcp, addr(4433));
    a.handle_dialed(at(1_100), tcp, Some((sn, addr(50))));
    let records: Vec<PresenceRecord> = drain(&mut a)
        .into_iter()
        .filter_map(|a| match a {
            AttachAction::Publish { to, record } => {
                assert_eq!(to.addr, tcp, "published through the tunnel");
                record.verify(Timestamp(1_100)).ok().cloned()
            }
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].supernodes,
        vec![Contact {
            id: sn,
            addr: addr(4433)
        }]
    );
}
