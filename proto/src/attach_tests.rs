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
    assert!(
        matches!(actions[0], AttachAction::Dial { addr: at, expected: Some(id), .. } if at == addr(7) && id == known.id),
        "{actions:?}"
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
    // Still attached to the other: the replacement waits a random spread.
    let due = a.poll_timeout().unwrap();
    assert!(due.since(Mono(3_000)) <= AttachConfig::default().reattach_spread);
    a.handle_timeout(at(due.as_millis()));
    assert_eq!(dials(&drain(&mut a)), vec![addr(3)]);
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

/// The records `a` wants published now (draining its other actions).
fn published(a: &mut Attachment) -> Vec<SignedPresence> {
    drain(a)
        .into_iter()
        .filter_map(|x| match x {
            AttachAction::Publish { record, .. } => Some(record),
            _ => None,
        })
        .collect()
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
    // Signed again, on the same attachment, after 50-100 % of retry_max (not every
    // second, and not by every client of that supernode at once).
    let max = AttachConfig::default().retry_max;
    let retry = a.poll_timeout().unwrap().since(now.mono);
    assert!(retry >= max / 2 && retry <= max, "{retry:?}");
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

/// `n` clients with fixed identities (so runs repeat), each attached to the
/// supernodes at `ports` with `spare` also known.
fn clients(n: u8, ports: &[u16], spare: &[u16]) -> Vec<Attachment> {
    (0..n)
        .map(|i| {
            let known: Vec<SocketAddr> = ports.iter().chain(spare).map(|&p| addr(p)).collect();
            let mut a = Attachment::new(
                Identity::from_seed(&[i + 1; 32]),
                format!("client{i}"),
                AttachConfig::default(),
                &known,
                &[],
                vec![addr(9)],
                at(1_000),
            );
            drain(&mut a);
            for &p in ports {
                let sn = Identity::from_seed(&[200 + p as u8; 32]).peer_id();
                a.handle_dialed(at(1_000), addr(p), Some((sn, addr(50))));
            }
            drain(&mut a);
            a
        })
        .collect()
}

/// Runs every machine's timers up to `until`, answering each dial with `answer`;
/// returns (time, client, address) of every dial.
fn run_dials(
    machines: &mut [Attachment],
    from: u64,
    until: u64,
    answer: impl Fn(u64, SocketAddr) -> bool,
) -> Vec<(u64, usize, SocketAddr)> {
    let mut out = Vec::new();
    for (i, a) in machines.iter_mut().enumerate() {
        let mut now = from;
        while let Some(due) = a.poll_timeout().map(|t| t.as_millis()) {
            if due > until {
                break;
            }
            now = now.max(due);
            a.handle_timeout(at(now));
            for d in dials(&drain(a)) {
                out.push((now, i, d));
                let sn = Identity::from_seed(&[200 + d.port() as u8; 32]).peer_id();
                let outcome = answer(now, d).then_some((sn, addr(50)));
                a.handle_dialed(at(now), d, outcome);
                drain(a);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn idle_attachments_are_kept_alive_cheaply_and_each_at_its_own_pace() {
    let config = AttachConfig::default();
    let mut intervals = Vec::new();
    for i in 0..20u8 {
        let mut a = Attachment::new(
            Identity::from_seed(&[i + 1; 32]),
            String::new(),
            config.clone(),
            &[addr(1), addr(2)],
            &[],
            vec![],
            at(1_000),
        );
        for action in drain(&mut a) {
            if let AttachAction::Dial { keep_alive, .. } = action {
                assert_eq!(keep_alive.dead_after, config.dead_after);
                intervals.push(keep_alive.interval);
            }
        }
    }
    assert_eq!(intervals.len(), 40);
    for &k in &intervals {
        // Within 90-100 % of the configured interval, and a keep-alive (PING and its
        // ACK: two datagrams) at most 10 times a minute at the supernode.
        assert!(k >= config.keep_alive.mul_f64(0.9) && k <= config.keep_alive);
        assert!(2.0 * 60.0 / k.as_secs_f64() <= 10.0, "{k:?}");
        // Under the 30 s UDP mapping timeout of many home routers, with room for a
        // lost keep-alive's retransmission.
        assert!(k * 2 <= Duration::from_secs(30));
    }
    let mut distinct = intervals.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() > 30,
        "keep-alives are not spread: {distinct:?}"
    );
    // Noticed at most keep_alive + dead_after after the supernode died, replaced within
    // the spread, with time to dial: re-attached within 60 s.
    let worst = config.keep_alive + config.dead_after + config.reattach_spread;
    assert!(worst + Duration::from_secs(10) <= Duration::from_secs(60));
}

#[test]
fn clients_that_lose_the_same_supernode_replace_it_spread_out_and_stay_published() {
    let mut machines = clients(20, &[1, 2], &[3]);
    let lost_at = 10_000;
    for a in machines.iter_mut() {
        a.handle_lost(at(lost_at), addr(1));
        let actions = drain(a);
        // No dial at once; the record naming only the live supernode goes out at once
        // through it, so the client stays callable.
        assert!(dials(&actions).is_empty(), "{actions:?}");
        let published: Vec<&AttachAction> = actions
            .iter()
            .filter(|x| matches!(x, AttachAction::Publish { .. }))
            .collect();
        assert!(
            matches!(published[..], [AttachAction::Publish { to, record }]
                if to.addr == addr(2) && record.record.supernodes.len() == 1),
            "{published:?}"
        );
    }
    let spread = AttachConfig::default().reattach_spread.as_millis() as u64;
    let dials = run_dials(&mut machines, lost_at, lost_at + 60_000, |_, _| true);
    assert_eq!(dials.len(), 20, "{dials:?}");
    let first = dials.first().unwrap().0;
    let last = dials.last().unwrap().0;
    assert!(last - lost_at <= spread, "{dials:?}");
    // Spread over the window, not in a burst: at most 6 of 20 in any one second
    // (uniform over 10 s is 2 a second on average).
    assert!(last - first >= spread / 2, "{dials:?}");
    for &(t, _, _) in &dials {
        let in_second = dials.iter().filter(|d| d.0 >= t && d.0 < t + 1_000).count();
        assert!(in_second <= 6, "{t}: {dials:?}");
    }
    assert!(machines.iter().all(|a| a.attached().len() == 2));
}

#[test]
fn clients_of_a_restarted_supernode_do_not_come_back_in_one_burst() {
    // Twenty clients know only one supernode; it dies and is back 60 s later.
    let mut machines = clients(20, &[1], &[]);
    let (lost_at, back_at) = (10_000, 70_000);
    for a in machines.iter_mut() {
        a.handle_lost(at(lost_at), addr(1));
        drain(a);
    }
    let dials = run_dials(&mut machines, lost_at, lost_at + 200_000, |t, _| {
        t >= back_at
    });
    let mut back: Vec<u64> = (0..20)
        .filter_map(|i| {
            dials
                .iter()
                .find(|&&(t, c, _)| c == i && t >= back_at)
                .map(|d| d.0)
        })
        .collect();
    back.sort();
    assert_eq!(back.len(), 20, "{dials:?}");
    // The retries are jittered exponential backoff (capped at 30 s): the returns
    // spread over seconds, not the 0.52 s of a fixed schedule.
    assert!(back[19] - back[0] >= 5_000, "{back:?}");
    for &t in &back {
        let in_second = back.iter().filter(|&&b| b >= t && b < t + 1_000).count();
        assert!(in_second <= 6, "{t}: {back:?}");
    }
    // Nobody re-dialled more often than the backoff allows while it was down: 6 tries
    // reach the 30 s cap; 60 s takes at most ~8.
    for i in 0..20 {
        let tries = dials
            .iter()
            .filter(|&&(t, c, _)| c == i && t < back_at)
            .count();
        assert!(tries <= 9, "client {i}: {tries} dials in 60 s");
    }
}

/// A machine attached to supernodes at ports 1 and 2 (both seeing us at port 50), its
/// actions so far drained.
fn attached_to_two() -> Attachment {
    let mut a = machine(&[addr(1), addr(2)], &[]);
    drain(&mut a);
    let sn = || Identity::generate().peer_id();
    a.handle_dialed(at(2_000), addr(1), Some((sn(), addr(50))));
    a.handle_dialed(at(2_000), addr(2), Some((sn(), addr(50))));
    drain(&mut a);
    a
}

#[test]
fn a_nat_that_moves_us_while_attached_is_noticed_at_the_next_refresh() {
    let mut a = attached_to_two();
    // The NAT gives us port 51; the QUIC connections survive (they migrate), so
    // nothing is lost and no Welcome arrives by itself. The periodic refresh asks.
    let due = a.poll_timeout().unwrap();
    a.handle_timeout(at(due.as_millis()));
    let actions = drain(&mut a);
    let asked: Vec<SocketAddr> = actions
        .iter()
        .filter_map(|x| match x {
            AttachAction::Observe { to } => Some(to.addr),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![addr(1), addr(2)]);
    let now = at(due.as_millis() + 50);
    a.handle_observed(now, addr(1), addr(51));
    let records = published(&mut a);
    assert_eq!(
        records.len(),
        1,
        "republished at once (through one attachment)"
    );
    // Supernode 2 has not answered yet: both addresses are true as far as we know.
    assert_eq!(observed(&records[0]), vec![addr(51), addr(50)]);
    a.handle_observed(now, addr(2), addr(51));
    let records = published(&mut a);
    assert_eq!(observed(&records[0]), vec![addr(51)]);
    // An unchanged answer publishes nothing.
    a.handle_observed(now, addr(2), addr(51));
    assert!(drain(&mut a).is_empty());
}

/// Where each publication drained from `a` went, and how many supernodes its record names.
fn publications(a: &mut Attachment) -> Vec<(SocketAddr, usize)> {
    drain(a)
        .into_iter()
        .filter_map(|x| match x {
            AttachAction::Publish { to, record } => Some((to.addr, record.record.supernodes.len())),
            _ => None,
        })
        .collect()
}

/// Issue 9: the record goes out through one attachment (its supernode stores it on the
/// `k` closest; a second publication would repeat that), names both, and goes out
/// through the other at once when the publishing one is lost.
#[test]
fn one_attachment_publishes_and_the_other_takes_over_when_it_is_lost() {
    let mut a = attached_to_two();
    let due = a.poll_timeout().unwrap();
    a.handle_timeout(at(due.as_millis()));
    let sent = publications(&mut a);
    assert_eq!(sent, vec![(addr(1), 2)], "one publication, naming both");
    a.handle_lost(at(due.as_millis() + 1_000), addr(1));
    let sent = publications(&mut a);
    assert_eq!(sent, vec![(addr(2), 1)], "the other publishes at once");
}
