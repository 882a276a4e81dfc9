//! One machine against hand-written peers: every protocol violation drops and bans
//! the peer; limits hold. Whole transfers are in `proto/tests/transfer_swarm.rs`.

use super::*;
use crate::transfer::bitfield::BitfieldError;
use crate::transfer::choke::RECHOKE_INTERVAL;
use crate::transfer::superseed::{REVEAL_DEPTH, STARVE_AFTER};
use crate::Identity;

fn setup(have_all: bool) -> (Swarm, Manifest, Vec<u8>, PeerId) {
    let data: Vec<u8> = (0..3 * crate::transfer::CHUNK_SIZE as usize)
        .map(|i| (i % 253) as u8)
        .collect();
    let sender = Identity::from_seed(&[1; 32]);
    let m = Manifest::for_bytes(&sender, "f", &data).expect("manifest");
    let have = if have_all {
        Bitfield::full(3)
    } else {
        Bitfield::empty(3)
    };
    let me = Identity::from_seed(&[2; 32]).peer_id();
    let config = SwarmConfig {
        max_queued_requests: 2,
        max_peers: 2,
        ..SwarmConfig::default()
    };
    let mut s = Swarm::new(Mono(0), m.clone(), me, have, config, 1);
    let peer = Identity::from_seed(&[3; 32]).peer_id();
    s.add_peer(Mono(0), peer).expect("add");
    (s, m, data, peer)
}

fn events(s: &mut Swarm) -> Vec<SwarmEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn transmits(s: &mut Swarm) -> Vec<PeerMessage> {
    std::iter::from_fn(|| s.poll_transmit())
        .map(|t| t.msg)
        .collect()
}

fn assert_dropped(s: &mut Swarm, peer: PeerId, why: DropReason) {
    assert!(
        events(s).contains(&SwarmEvent::PeerDropped {
            peer,
            reason: why.clone()
        }),
        "not dropped for {why}"
    );
    assert_eq!(s.peers().count(), 0);
    assert_eq!(s.add_peer(Mono(1), peer), Err(AddPeerError::Banned));
}

#[test]
fn violations_drop_and_ban_the_peer() {
    let cases: Vec<(bool, Vec<PeerMessage>, DropReason)> = vec![
        (
            false,
            vec![PeerMessage::Interested, PeerMessage::Bitfield(vec![0])],
            DropReason::LateBitfield,
        ),
        (
            false,
            vec![PeerMessage::Bitfield(vec![0, 0])],
            DropReason::Bitfield(BitfieldError::WrongLength {
                chunks: 3,
                expected: 1,
                got: 2,
            }),
        ),
        (
            false,
            vec![PeerMessage::Bitfield(vec![0x10])],
            DropReason::Bitfield(BitfieldError::SpareBits(3)),
        ),
        (
            false,
            vec![PeerMessage::Have(3)],
            DropReason::IndexOutOfRange(3),
        ),
        (
            false,
            vec![PeerMessage::Request(0)],
            DropReason::RequestedMissing(0),
        ),
        (
            false,
            vec![PeerMessage::Piece {
                index: 9,
                data: vec![1],
            }],
            DropReason::IndexOutOfRange(9),
        ),
        (
            false,
            vec![PeerMessage::Piece {
                index: 1,
                data: vec![1; 10],
            }],
            DropReason::BadChunk(1),
        ),
        (
            true,
            vec![
                PeerMessage::Interested,
                PeerMessage::Request(0),
                PeerMessage::Request(1),
                PeerMessage::Request(2),
            ],
            DropReason::TooManyRequests(2),
        ),
    ];
    for (have_all, msgs, why) in cases {
        let (mut s, _, _, peer) = setup(have_all);
        for m in msgs {
            s.handle_message(Mono(1), peer, m);
        }
        assert_dropped(&mut s, peer, why);
    }
}

#[test]
fn requests_are_served_only_unchoked_and_verified() {
    let (mut s, m, data, peer) = setup(true);
    assert_eq!(transmits(&mut s), vec![PeerMessage::Bitfield(vec![0xe0])]);
    // Choked: the request is ignored (it crossed our choke).
    s.handle_message(Mono(1), peer, PeerMessage::Request(0));
    assert!(events(&mut s).is_empty());
    s.handle_message(Mono(1), peer, PeerMessage::Interested);
    assert_eq!(transmits(&mut s), vec![PeerMessage::Unchoke]);
    s.handle_message(Mono(1), peer, PeerMessage::Request(0));
    s.handle_message(Mono(1), peer, PeerMessage::Request(1));
    assert_eq!(
        events(&mut s),
        vec![
            SwarmEvent::ReadChunk { peer, index: 0 },
            SwarmEvent::ReadChunk { peer, index: 1 }
        ]
    );
    // Chunk 0 damaged on disk: not served, no longer held.
    let mut bad = data[..m.chunk_len(0)].to_vec();
    bad[7] ^= 1;
    s.serve_chunk(Mono(2), peer, 0, bad);
    assert_eq!(events(&mut s), vec![SwarmEvent::LocalChunkBad { index: 0 }]);
    assert!(!s.have().get(0));
    let one = data[m.chunk_offset(1) as usize..][..m.chunk_len(1)].to_vec();
    s.serve_chunk(Mono(2), peer, 1, one.clone());
    assert_eq!(
        transmits(&mut s),
        vec![PeerMessage::Piece {
            index: 1,
            data: one.clone()
        }]
    );
    assert_eq!(s.stats().uploaded, one.len() as u64);
    // Cancelled before it was read: nothing goes out.
    s.handle_message(Mono(3), peer, PeerMessage::Request(2));
    s.handle_message(Mono(3), peer, PeerMessage::Cancel(2));
    s.serve_chunk(Mono(3), peer, 2, one);
    assert!(transmits(&mut s).is_empty());
}

#[test]
fn a_recipient_requests_verifies_and_announces() {
    let (mut s, m, data, peer) = setup(false);
    let chunk = |i: u32| data[m.chunk_offset(i) as usize..][..m.chunk_len(i)].to_vec();
    transmits(&mut s);
    s.handle_message(Mono(1), peer, PeerMessage::Bitfield(vec![0xe0]));
    assert_eq!(transmits(&mut s), vec![PeerMessage::Interested]);
    s.handle_message(Mono(1), peer, PeerMessage::Unchoke);
    let asked: Vec<PeerMessage> = transmits(&mut s);
    assert_eq!(asked.len(), 3, "pipelined: {asked:?}");
    for i in 0..3 {
        s.handle_message(
            Mono(2),
            peer,
            PeerMessage::Piece {
                index: i,
                data: chunk(i),
            },
        );
    }
    let ev = events(&mut s);
    assert!(ev.contains(&SwarmEvent::ChunkVerified {
        index: 2,
        data: chunk(2)
    }));
    assert_eq!(ev.last(), Some(&SwarmEvent::Complete));
    let sent = transmits(&mut s);
    assert!(sent.contains(&PeerMessage::Have(2)));
    assert!(sent.contains(&PeerMessage::NotInterested));
    assert_eq!(s.stats().verified, m.size());
}

#[test]
fn unanswered_requests_time_out_and_are_cancelled() {
    let (mut s, _, _, peer) = setup(false);
    s.handle_message(Mono(0), peer, PeerMessage::Bitfield(vec![0xe0]));
    s.handle_message(Mono(0), peer, PeerMessage::Unchoke);
    transmits(&mut s);
    let timeout = SwarmConfig::default().request_timeout;
    assert_eq!(s.poll_timeout(), Some(Mono(0) + RECHOKE_INTERVAL));
    let t = Mono(0) + timeout;
    s.handle_timeout(t);
    let sent = transmits(&mut s);
    let cancels = sent
        .iter()
        .filter(|m| matches!(m, PeerMessage::Cancel(_)))
        .count();
    let requests = sent
        .iter()
        .filter(|m| matches!(m, PeerMessage::Request(_)))
        .count();
    assert_eq!((cancels, requests), (3, 3), "{sent:?}");
}

#[test]
fn peer_limits_hold() {
    let (mut s, _, _, peer) = setup(false);
    let me = Identity::from_seed(&[2; 32]).peer_id();
    assert_eq!(s.add_peer(Mono(0), me), Err(AddPeerError::Myself));
    assert_eq!(s.add_peer(Mono(0), peer), Err(AddPeerError::Duplicate));
    s.add_peer(Mono(0), Identity::from_seed(&[4; 32]).peer_id())
        .expect("second");
    assert_eq!(
        s.add_peer(Mono(0), Identity::from_seed(&[5; 32]).peer_id()),
        Err(AddPeerError::TooMany(2))
    );
}

/// A file of `chunks` full chunks, its manifest and its sender.
fn file_of(chunks: usize) -> (Manifest, Vec<u8>, Identity) {
    let data: Vec<u8> = (0..chunks * crate::transfer::CHUNK_SIZE as usize)
        .map(|i| (i % 241) as u8)
        .collect();
    let sender = Identity::from_seed(&[1; 32]);
    let m = Manifest::for_bytes(&sender, "f", &data).expect("manifest");
    (m, data, sender)
}

#[test]
fn requests_in_flight_are_bounded_per_peer_and_shallower_to_the_sender() {
    let (m, _, sender) = file_of(10);
    let me = Identity::from_seed(&[2; 32]).peer_id();
    let other = Identity::from_seed(&[3; 32]).peer_id();
    let config = SwarmConfig::default();
    let mut s = Swarm::new(Mono(0), m, me, Bitfield::empty(10), config.clone(), 1);
    for p in [other, sender.peer_id()] {
        s.add_peer(Mono(0), p).expect("add");
        s.handle_message(
            Mono(0),
            p,
            PeerMessage::Bitfield(Bitfield::full(10).as_bytes().to_vec()),
        );
        s.handle_message(Mono(0), p, PeerMessage::Unchoke);
    }
    let mut per_peer = std::collections::BTreeMap::new();
    while let Some(t) = s.poll_transmit() {
        if let PeerMessage::Request(_) = t.msg {
            *per_peer.entry(t.peer.to_bytes()).or_insert(0) += 1;
        }
    }
    assert_eq!(per_peer[&other.to_bytes()], config.max_in_flight);
    // The sender holds everything the other peer has: spared entirely.
    assert_eq!(per_peer.get(&sender.peer_id().to_bytes()), None);

    // With only the sender to ask: at most `max_in_flight_origin`.
    let (m, _, sender) = file_of(10);
    let mut s = Swarm::new(Mono(0), m, me, Bitfield::empty(10), config.clone(), 1);
    s.add_peer(Mono(0), sender.peer_id()).expect("add");
    s.handle_message(
        Mono(0),
        sender.peer_id(),
        PeerMessage::Bitfield(vec![0xff, 0xc0]),
    );
    s.handle_message(Mono(0), sender.peer_id(), PeerMessage::Unchoke);
    let requests = transmits(&mut s)
        .into_iter()
        .filter(|m| matches!(m, PeerMessage::Request(_)))
        .count();
    assert_eq!(requests, config.max_in_flight_origin);
}

#[test]
fn a_super_seeding_sender_reveals_a_few_chunks_each_and_more_when_starved() {
    let (m, _, sender) = file_of(12);
    let (a, b) = (
        Identity::from_seed(&[3; 32]).peer_id(),
        Identity::from_seed(&[4; 32]).peer_id(),
    );
    let mut s = Swarm::new(
        Mono(0),
        m,
        sender.peer_id(),
        Bitfield::full(12),
        SwarmConfig::default(),
        1,
    );
    let mut revealed = std::collections::BTreeMap::<[u8; 32], Vec<u32>>::new();
    fn collect(s: &mut Swarm, revealed: &mut std::collections::BTreeMap<[u8; 32], Vec<u32>>) {
        while let Some(t) = s.poll_transmit() {
            match t.msg {
                PeerMessage::Bitfield(bits) => {
                    assert_eq!(bits, vec![0, 0], "shows nothing at first")
                }
                PeerMessage::Have(i) => revealed.entry(t.peer.to_bytes()).or_default().push(i),
                _ => {}
            }
        }
    }
    for p in [a, b] {
        s.add_peer(Mono(0), p).expect("add");
        s.handle_message(Mono(0), p, PeerMessage::Bitfield(vec![0, 0]));
    }
    collect(&mut s, &mut revealed);
    let ra = revealed[&a.to_bytes()].clone();
    let rb = revealed[&b.to_bytes()].clone();
    assert_eq!(
        (ra.len(), rb.len()),
        (REVEAL_DEPTH as usize, REVEAL_DEPTH as usize)
    );
    assert!(
        ra.iter().all(|i| !rb.contains(i)),
        "each chunk revealed to one recipient"
    );
    // `a` got one of its chunks (from anyone): one more is revealed to it.
    s.handle_message(Mono(1), a, PeerMessage::Have(ra[0]));
    collect(&mut s, &mut revealed);
    assert_eq!(revealed[&a.to_bytes()].len(), REVEAL_DEPTH as usize + 1);
    // `b` holds chunks that `a` lacks but passes nothing on: after STARVE_AFTER
    // without progress `a` is revealed chunks regardless.
    for i in 0..12 {
        if !revealed[&a.to_bytes()].contains(&i) {
            s.handle_message(Mono(1), b, PeerMessage::Have(i));
        }
    }
    for &i in &revealed[&a.to_bytes()].clone() {
        s.handle_message(Mono(1), a, PeerMessage::Have(i));
    }
    collect(&mut s, &mut revealed);
    let before = revealed[&a.to_bytes()].len();
    assert_eq!(s.poll_timeout(), Some(Mono(1) + STARVE_AFTER));
    s.handle_timeout(Mono(1) + STARVE_AFTER);
    collect(&mut s, &mut revealed);
    assert_eq!(
        revealed[&a.to_bytes()].len(),
        before + REVEAL_DEPTH as usize
    );
}
