//! [`ChannelTable`]: authentication, address proof, forwarding and every drop reason.

use super::*;
use crate::relay::channel::{decode_relay, encode_bind, encode_data, RelayDatagram, KEY_LEN};

const KA: ChannelKey = ChannelKey([1; KEY_LEN]);
const KB: ChannelKey = ChannelKey([2; KEY_LEN]);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct World {
    t: ChannelTable,
    now: Instant,
    stats: RelayStats,
    a: ChannelId,
    b: ChannelId,
    ctr_a: u64,
    ctr_b: u64,
}

impl World {
    /// Two paired channels, A (leg 1) and B (leg 2), no address proven yet.
    fn new() -> World {
        let now = Instant::now();
        let t = ChannelTable::new(8, RateLimit::default(), now);
        t.set_own_addrs(vec![addr("192.0.2.1:3479")]);
        let end = now + Duration::from_secs(3600);
        let a = t.open(now, LegId(1), KA, end).unwrap();
        let b = t.open(now, LegId(2), KB, end).unwrap();
        t.set_partner(a, Some((b, LegId(2))));
        t.set_partner(b, Some((a, LegId(1))));
        World {
            t,
            now,
            stats: RelayStats::default(),
            a,
            b,
            ctr_a: 0,
            ctr_b: 0,
        }
    }

    fn feed(&mut self, from: &str, mut packet: Vec<u8>) -> (ChannelVerdict, Vec<u8>) {
        let v = self
            .t
            .handle_datagram(self.now, addr(from), &mut packet, &mut self.stats);
        (v, packet)
    }

    fn next(&mut self, a: bool) -> (ChannelKey, ChannelId, u64) {
        if a {
            self.ctr_a += 1;
            (KA, self.a, self.ctr_a)
        } else {
            self.ctr_b += 1;
            (KB, self.b, self.ctr_b)
        }
    }

    fn bind(&mut self, a: bool, from: &str, cookie: Option<u64>) -> ChannelVerdict {
        let (key, ch, ctr) = self.next(a);
        let mut p = Vec::new();
        encode_bind(&mut p, &key, ch, ctr, cookie);
        self.feed(from, p).0
    }

    /// BIND, answer the challenge: `from` is proven for A (or B).
    fn prove(&mut self, a: bool, from: &str) {
        let (key, ch, ctr) = self.next(a);
        let mut p = Vec::new();
        encode_bind(&mut p, &key, ch, ctr, None);
        let (v, p) = self.feed(from, p);
        let ChannelVerdict::Answer { len, .. } = v else {
            panic!("{v:?}")
        };
        let Ok(RelayDatagram::Challenge { cookie, .. }) = decode_relay(&p[..len]) else {
            panic!("no challenge")
        };
        let v = self.bind(a, from, Some(cookie));
        assert!(matches!(v, ChannelVerdict::Answer { .. }));
        assert_eq!(
            self.t.addr_of(if a { self.a } else { self.b }),
            Some(addr(from))
        );
    }

    fn data(&mut self, a: bool, from: &str, payload: &[u8]) -> (ChannelVerdict, Vec<u8>) {
        let (key, ch, ctr) = self.next(a);
        let mut p = Vec::new();
        encode_data(&mut p, &key, ch, ctr, payload);
        self.feed(from, p)
    }
}

#[test]
fn proven_parties_exchange_media_rewritten_for_the_partner() {
    let mut w = World::new();
    w.prove(true, "198.51.100.1:1000");
    w.prove(false, "198.51.100.2:2000");
    let (v, p) = w.data(true, "198.51.100.1:1000", b"opus");
    let ChannelVerdict::Send { to, range } = v else {
        panic!("{v:?}")
    };
    assert_eq!(to, addr("198.51.100.2:2000"));
    assert_eq!(
        decode_relay(&p[range]).unwrap(),
        RelayDatagram::Data {
            channel: w.b,
            payload: b"opus"
        }
    );
    assert_eq!(w.stats.forwarded_packets, 1);
}

#[test]
fn a_spoofed_source_claiming_a_channel_is_not_forwarded() {
    let mut w = World::new();
    w.prove(true, "198.51.100.1:1000");
    w.prove(false, "198.51.100.2:2000");
    // An off-path attacker without A's key, from A's address: bad tag.
    let mut forged = Vec::new();
    encode_data(
        &mut forged,
        &ChannelKey([9; KEY_LEN]),
        w.a,
        1_000,
        b"inject",
    );
    assert_eq!(
        w.feed("198.51.100.1:1000", forged).0,
        ChannelVerdict::Drop(DropReason::BadMac)
    );
    // A captured authentic datagram replayed, from A's address or another: replayed.
    let (key, ch, ctr) = w.next(true);
    let mut real = Vec::new();
    encode_data(&mut real, &key, ch, ctr, b"voice");
    assert!(matches!(
        w.feed("198.51.100.1:1000", real.clone()).0,
        ChannelVerdict::Send { .. }
    ));
    assert_eq!(
        w.feed("198.51.100.1:1000", real.clone()).0,
        ChannelVerdict::Drop(DropReason::Replayed)
    );
    assert_eq!(
        w.feed("203.0.113.9:9", real).0,
        ChannelVerdict::Drop(DropReason::Replayed)
    );
    assert_eq!(w.stats.drops(DropReason::BadMac), 1);
    assert_eq!(w.stats.drops(DropReason::Replayed), 2);
    assert_eq!(w.stats.forwarded_packets, 1);
}

#[test]
fn a_party_cannot_point_the_relay_at_a_third_address() {
    let mut w = World::new();
    w.prove(true, "198.51.100.1:1000");
    w.prove(false, "198.51.100.2:2000");
    // A, with its key, sends from a victim's address (spoofed): media from there is
    // refused, and the BIND only earns a challenge sent to the victim, which never
    // answers; a guessed cookie does not count.
    assert_eq!(
        w.data(true, "203.0.113.7:53", b"x").0,
        ChannelVerdict::Drop(DropReason::UnprovenAddress)
    );
    let v = w.bind(true, "203.0.113.7:53", None);
    assert!(matches!(v, ChannelVerdict::Answer { to, len: 13 } if to == addr("203.0.113.7:53")));
    let v = w.bind(true, "203.0.113.7:53", Some(12345));
    assert!(matches!(v, ChannelVerdict::Answer { .. }));
    assert_eq!(w.t.addr_of(w.a), Some(addr("198.51.100.1:1000")));
    // B's media still goes to A's proven address, and nowhere else.
    let (v, _) = w.data(false, "198.51.100.2:2000", b"y");
    assert!(matches!(v, ChannelVerdict::Send { to, .. } if to == addr("198.51.100.1:1000")));
    assert_eq!(w.stats.drops(DropReason::UnprovenAddress), 1);
}

#[test]
fn a_party_that_moves_proves_its_new_address_and_media_follows() {
    let mut w = World::new();
    w.prove(true, "198.51.100.1:1000");
    w.prove(false, "198.51.100.2:2000");
    w.prove(true, "198.51.100.1:1555");
    let (v, _) = w.data(false, "198.51.100.2:2000", b"y");
    assert!(matches!(v, ChannelVerdict::Send { to, .. } if to == addr("198.51.100.1:1555")));
}

#[test]
fn reflection_and_garbage_are_dropped_without_an_answer() {
    let mut w = World::new();
    let (key, ch, ctr) = w.next(true);
    let mut p = Vec::new();
    encode_bind(&mut p, &key, ch, ctr, None);
    for from in ["192.0.2.1:3479", "0.0.0.0:5", "198.51.100.1:0"] {
        assert_eq!(
            w.feed(from, p.clone()).0,
            ChannelVerdict::Drop(DropReason::Reflection)
        );
    }
    assert_eq!(
        w.feed("198.51.100.1:1", vec![0xff; 40]).0,
        ChannelVerdict::Drop(DropReason::Malformed)
    );
    assert_eq!(w.stats.drops(DropReason::Reflection), 3);
    assert_eq!(w.stats.drops(DropReason::Malformed), 1);
}

#[test]
fn media_needs_a_partner_and_an_open_channel() {
    let mut w = World::new();
    w.prove(true, "198.51.100.1:1000");
    // B never proved an address: B carries media inside QUIC (TCP fallback).
    let (v, p) = w.data(true, "198.51.100.1:1000", b"pcm");
    let ChannelVerdict::ToLeg { leg, range } = v else {
        panic!("{v:?}")
    };
    assert_eq!((leg, &p[range]), (LegId(2), &b"pcm"[..]));
    w.t.set_partner(w.a, None);
    assert_eq!(
        w.data(true, "198.51.100.1:1000", b"z").0,
        ChannelVerdict::Drop(DropReason::NotPaired)
    );
    // A closed channel's id stays dead even once its slot is reused.
    let old = w.a;
    w.t.close(old);
    let reused =
        w.t.open(w.now, LegId(3), KA, w.now + Duration::from_secs(60))
            .unwrap();
    assert_eq!(index_of(reused), index_of(old));
    assert_ne!(reused, old);
    assert_eq!(
        w.data(true, "198.51.100.1:1000", b"z").0,
        ChannelVerdict::Drop(DropReason::UnknownChannel)
    );
    assert_eq!(w.t.len(), 2);
}

#[test]
fn the_rate_cap_holds_per_channel() {
    let mut w = World::new();
    w.prove(true, "198.51.100.1:1000");
    w.prove(false, "198.51.100.2:2000");
    let sent = 300;
    let ok = (0..sent)
        .filter(|_| {
            matches!(
                w.data(true, "198.51.100.1:1000", b"x").0,
                ChannelVerdict::Send { .. }
            )
        })
        .count();
    // The default bucket holds one second at 100 packets/s; two went on BINDs.
    assert_eq!(ok, 98);
    assert_eq!(w.stats.drops(DropReason::RateLimited), sent - 98);
}

#[test]
fn the_call_length_cap_holds() {
    let mut w = World::new();
    w.prove(true, "198.51.100.1:1000");
    w.prove(false, "198.51.100.2:2000");
    w.now += Duration::from_secs(3601);
    assert_eq!(
        w.data(true, "198.51.100.1:1000", b"x").0,
        ChannelVerdict::Drop(DropReason::CallTooLong)
    );
    // Activity is still seen.
    assert_eq!(
        w.t.last_active(w.a)
            .map(|t| t >= w.now - Duration::from_millis(1)),
        Some(true)
    );
}

#[test]
fn the_replay_window_takes_reordering_once_and_nothing_too_old() {
    let mut r = ReplayWindow::default();
    assert!(!r.accept(0));
    assert!(r.accept(5));
    assert!(r.accept(3));
    assert!(!r.accept(3));
    assert!(r.accept(200));
    assert!(!r.accept(200 - REPLAY_WINDOW));
    assert!(r.accept(200 - REPLAY_WINDOW + 1));
    assert!(!r.accept(5));
    assert!(r.accept(200 + 1_000));
    assert!(!r.accept(201));
}
