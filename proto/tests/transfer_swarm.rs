//! Whole transfers on a virtual clock, in one process: a sender and recipients
//! running [`Swarm`] machines over an in-memory network whose links have a rate
//! (bytes per second, one message at a time) and a latency. Every message goes
//! through the wire codec.

use parley_proto::transfer::resume;
use parley_proto::transfer::swarm::{DropReason, Swarm, SwarmConfig, SwarmEvent, Transmit};
use parley_proto::transfer::wire::{peer_frame_len, PeerMessage};
use parley_proto::transfer::{Bitfield, Manifest, CHUNK_SIZE};
use parley_proto::{Identity, Mono, PeerId};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// `len` pseudo-random bytes (xorshift), different for each `seed`.
fn file(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Node {
    id: PeerId,
    swarm: Option<Swarm>,
    /// What the node's "disk" holds, chunk by chunk.
    store: Vec<Option<Vec<u8>>>,
    /// Flips a byte of every chunk it sends (after its own machine checked it: a
    /// hostile or broken peer on the wire).
    corrupt: bool,
    completed_at: Option<Mono>,
    dropped: Vec<(PeerId, DropReason)>,
    /// Piece bytes delivered to this node, per chunk.
    received: Vec<u64>,
}

struct Link {
    /// Bytes per second.
    rate: u64,
    latency: Duration,
    /// When the link finishes sending what is queued, in microseconds.
    free_at_us: u64,
    up: bool,
    /// Bumped on every (re)connection: frames of an earlier connection are dropped.
    epoch: u64,
}

/// (deliver at µs, sequence number (the key of its frame), from, to, link epoch).
type Delivery = (u64, u64, usize, usize, u64);

struct Net {
    now: Mono,
    manifest: Manifest,
    nodes: Vec<Node>,
    links: BTreeMap<(usize, usize), Link>,
    in_flight: BinaryHeap<Reverse<Delivery>>,
    frames: BTreeMap<u64, Vec<u8>>,
    seq: u64,
}

impl Net {
    /// A network whose node 0 is the sender holding `data`, and `recipients` others.
    fn new(data: &[u8], recipients: usize) -> Net {
        let sender = Identity::from_seed(&[1; 32]);
        let manifest = Manifest::for_bytes(&sender, "payload.bin", data).expect("manifest");
        let n = manifest.chunk_count() as usize;
        let mut net = Net {
            now: Mono(0),
            manifest: manifest.clone(),
            nodes: Vec::new(),
            links: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            frames: BTreeMap::new(),
            seq: 0,
        };
        let chunks: Vec<Option<Vec<u8>>> = data
            .chunks(CHUNK_SIZE as usize)
            .map(|c| Some(c.to_vec()))
            .collect();
        net.nodes.push(Node::new(sender.peer_id(), chunks, n));
        for r in 0..recipients {
            let id = Identity::from_seed(&[10 + r as u8; 32]).peer_id();
            net.nodes.push(Node::new(id, vec![None; n], n));
        }
        for i in 0..net.nodes.len() {
            net.start(i, i as u64);
        }
        net
    }

    /// (Re)starts node `i`'s machine from what its store verifiably holds.
    fn start(&mut self, i: usize, seed: u64) {
        let store = &self.nodes[i].store;
        let have = resume::rebuild(&self.manifest, None, |c, _| store[c as usize].clone());
        let swarm = Swarm::new(
            self.now,
            self.manifest.clone(),
            self.nodes[i].id,
            have,
            SwarmConfig::default(),
            seed,
        );
        self.nodes[i].swarm = Some(swarm);
    }

    fn connect(&mut self, a: usize, b: usize, rate: u64, latency_ms: u64) {
        for (x, y) in [(a, b), (b, a)] {
            let epoch = self.links.get(&(x, y)).map_or(0, |l| l.epoch + 1);
            self.links.insert(
                (x, y),
                Link {
                    rate,
                    latency: Duration::from_millis(latency_ms),
                    free_at_us: self.now.as_millis() * 1000,
                    up: true,
                    epoch,
                },
            );
            let peer = self.nodes[y].id;
            let now = self.now;
            self.swarm(x).add_peer(now, peer).expect("add peer");
        }
    }

    fn mesh(&mut self, rate: u64, latency_ms: u64) {
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                self.connect(a, b, rate, latency_ms);
            }
        }
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        for (x, y) in [(a, b), (b, a)] {
            if let Some(l) = self.links.get_mut(&(x, y)) {
                l.up = false;
            }
            let peer = self.nodes[y].id;
            let now = self.now;
            if let Some(s) = self.nodes[x].swarm.as_mut() {
                s.remove_peer(now, &peer);
            }
        }
    }

    /// Node `i` dies: its links go down, its machine is gone, its store stays.
    fn crash(&mut self, i: usize) {
        for j in 0..self.nodes.len() {
            if j != i && self.links.get(&(i, j)).is_some_and(|l| l.up) {
                self.disconnect(i, j);
            }
        }
        self.nodes[i].swarm = None;
    }

    fn swarm(&mut self, i: usize) -> &mut Swarm {
        self.nodes[i].swarm.as_mut().expect("a running node")
    }

    fn index_of(&self, id: &PeerId) -> usize {
        self.nodes.iter().position(|n| n.id == *id).expect("a node")
    }

    /// Drains every machine's events and transmits until all are quiet.
    fn settle(&mut self) {
        loop {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                while let Some(ev) = self.nodes[i].swarm.as_mut().and_then(Swarm::poll_event) {
                    busy = true;
                    self.on_event(i, ev);
                }
                while let Some(t) = self.nodes[i].swarm.as_mut().and_then(Swarm::poll_transmit) {
                    busy = true;
                    let j = self.index_of(&t.peer);
                    let mut msg = t.msg;
                    if let (true, PeerMessage::Piece { data, .. }) =
                        (self.nodes[i].corrupt, &mut msg)
                    {
                        data[0] ^= 0xff;
                    }
                    self.schedule(i, j, msg.encode_frame());
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn on_event(&mut self, i: usize, ev: SwarmEvent) {
        let now = self.now;
        match ev {
            SwarmEvent::ChunkVerified { index, data } => {
                self.nodes[i].store[index as usize] = Some(data)
            }
            SwarmEvent::ReadChunk { peer, index } => {
                let data = self.nodes[i].store[index as usize]
                    .clone()
                    .expect("asked only for chunks it has");
                self.swarm(i).serve_chunk(now, peer, index, data);
            }
            SwarmEvent::PeerDropped { peer, reason } => {
                let j = self.index_of(&peer);
                self.nodes[i].dropped.push((peer, reason));
                self.disconnect(i, j);
            }
            SwarmEvent::Complete => self.nodes[i].completed_at = Some(now),
            SwarmEvent::LocalChunkBad { index } => {
                self.nodes[i].store[index as usize] = None;
            }
        }
    }

    fn schedule(&mut self, from: usize, to: usize, frame: Vec<u8>) {
        let now_us = self.now.as_millis() * 1000;
        let link = self.links.get_mut(&(from, to)).expect("a link");
        if !link.up {
            return;
        }
        let start = link.free_at_us.max(now_us);
        link.free_at_us = start + frame.len() as u64 * 1_000_000 / link.rate;
        let deliver = link.free_at_us + link.latency.as_micros() as u64;
        self.seq += 1;
        self.in_flight
            .push(Reverse((deliver, self.seq, from, to, link.epoch)));
        self.frames.insert(self.seq, frame);
    }

    /// Advances to the next delivery or timer and processes it. False when nothing
    /// is left to happen.
    fn step(&mut self) -> bool {
        self.settle();
        let next_delivery = self
            .in_flight
            .peek()
            .map(|Reverse((at, ..))| Mono(at.div_ceil(1000)));
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.swarm.as_ref().and_then(Swarm::poll_timeout))
            .min();
        let Some(next) = [next_delivery, next_timer].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        let now_us = self.now.as_millis() * 1000;
        while let Some(&Reverse((at, seq, from, to, epoch))) = self.in_flight.peek() {
            if at > now_us {
                break;
            }
            self.in_flight.pop();
            let frame = self.frames.remove(&seq).expect("a frame");
            let link = &self.links[&(from, to)];
            if !link.up || link.epoch != epoch || self.nodes[to].swarm.is_none() {
                continue;
            }
            let len = peer_frame_len(frame[..4].try_into().expect("a prefix")).expect("valid");
            assert_eq!(len, frame.len() - 4);
            let msg = PeerMessage::decode(&frame[4..]).expect("a valid message");
            if let PeerMessage::Piece { index, data } = &msg {
                self.nodes[to].received[*index as usize] += data.len() as u64;
            }
            let (now, peer) = (self.now, self.nodes[from].id);
            self.swarm(to).handle_message(now, peer, msg);
        }
        for i in 0..self.nodes.len() {
            let now = self.now;
            if let Some(s) = self.nodes[i].swarm.as_mut() {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
            }
        }
        true
    }

    /// Runs until `done` or `limit` of virtual time; panics at the limit.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) {
        let end = self.now + limit;
        self.settle();
        while !done(self) {
            assert!(self.now < end, "not done after {limit:?} of virtual time");
            assert!(self.step(), "nothing left to happen");
            self.settle();
        }
    }

    fn all_complete(&self, who: &[usize]) -> bool {
        who.iter().all(|&i| self.nodes[i].completed_at.is_some())
    }

    fn assert_intact(&self, i: usize, data: &[u8]) {
        let got: Vec<u8> = self.nodes[i]
            .store
            .iter()
            .flat_map(|c| c.as_deref().expect("every chunk stored").iter().copied())
            .collect();
        assert!(got == data, "node {i} stored different bytes");
    }
}

impl Node {
    fn new(id: PeerId, store: Vec<Option<Vec<u8>>>, chunks: usize) -> Node {
        Node {
            id,
            swarm: None,
            store,
            corrupt: false,
            completed_at: None,
            dropped: Vec::new(),
            received: vec![0; chunks],
        }
    }
}

#[test]
fn four_recipients_complete_and_the_sender_uploads_about_once() {
    let data = file((16 * MIB) as usize, 1);
    let mut net = Net::new(&data, 4);
    net.mesh(8 * MIB, 10);
    let recipients = [1, 2, 3, 4];
    net.run_until(Duration::from_secs(120), |n| n.all_complete(&recipients));
    for r in recipients {
        net.assert_intact(r, &data);
        let s = net.nodes[r].swarm.as_ref().expect("running").stats();
        assert_eq!(s.verified, data.len() as u64);
        assert_eq!(s.downloaded, s.verified + s.wasted);
    }
    let sent = net.nodes[0]
        .swarm
        .as_ref()
        .expect("running")
        .stats()
        .uploaded;
    let ratio = sent as f64 / data.len() as f64;
    let served_by_recipients: u64 = recipients
        .iter()
        .map(|&r| {
            net.nodes[r]
                .swarm
                .as_ref()
                .expect("running")
                .stats()
                .uploaded
        })
        .sum();
    println!(
        "sender uploaded {ratio:.2}x the file; recipients served each other {:.2}x; done at {} ms",
        served_by_recipients as f64 / data.len() as f64,
        net.now.as_millis()
    );
    assert!(ratio <= 1.5, "the sender uploaded {ratio:.2}x the file");
    assert!(
        served_by_recipients >= 2 * data.len() as u64,
        "the swarm carried the rest"
    );
}

#[test]
fn a_corrupting_peer_is_dropped_and_the_file_still_completes() {
    let data = file((8 * MIB) as usize, 2);
    let mut net = Net::new(&data, 4);
    net.nodes[4].corrupt = true;
    net.mesh(8 * MIB, 10);
    let honest = [1, 2, 3];
    net.run_until(Duration::from_secs(120), |n| n.all_complete(&honest));
    let bad = net.nodes[4].id;
    let mut droppers = 0;
    for r in honest {
        net.assert_intact(r, &data);
        for (peer, reason) in &net.nodes[r].dropped {
            assert_eq!(*peer, bad, "only the corrupting peer is dropped");
            assert!(matches!(reason, DropReason::BadChunk(_)), "{reason}");
            droppers += 1;
        }
        // Once dropped it is banned: no second connection.
        let now = net.now;
        if !net.nodes[r].dropped.is_empty() {
            assert!(net.swarm(r).add_peer(now, bad).is_err());
        }
    }
    let c = net.nodes[4]
        .swarm
        .as_ref()
        .map(|s| (s.stats(), s.have().count()));
    assert!(droppers >= 1, "nobody caught the corrupting peer: {c:?}");
}

#[test]
fn a_restarted_recipient_downloads_only_what_it_lacks() {
    let data = file((8 * MIB) as usize, 3);
    let n = data.len().div_ceil(CHUNK_SIZE as usize) as u32;
    let mut net = Net::new(&data, 2);
    net.mesh(8 * MIB, 10);
    net.run_until(Duration::from_secs(60), |net| {
        net.nodes[2].swarm.as_ref().expect("running").have().count() >= n / 2
    });
    net.crash(2);
    // Half a chunk written when it died: not verified, so not trusted.
    let torn = (0..n as usize)
        .find(|&c| net.nodes[2].store[c].is_none())
        .expect("a missing chunk");
    net.nodes[2].store[torn] = Some(data[torn * CHUNK_SIZE as usize..][..1000].to_vec());
    let before: Bitfield = {
        let store = &net.nodes[2].store;
        resume::rebuild(&net.manifest, None, |c, _| store[c as usize].clone())
    };
    assert!(before.count() >= n / 2 && !before.get(torn as u32));
    net.nodes[2].received = vec![0; n as usize];
    net.start(2, 99);
    net.connect(0, 2, 8 * MIB, 10);
    net.connect(1, 2, 8 * MIB, 10);
    net.run_until(Duration::from_secs(60), |n| n.all_complete(&[1, 2]));
    net.assert_intact(2, &data);
    let rest: u64 = (0..n)
        .filter(|&c| !before.get(c))
        .map(|c| net.manifest.chunk_len(c) as u64)
        .sum();
    let s = net.nodes[2].swarm.as_ref().expect("running").stats();
    assert_eq!(s.verified, rest, "verified exactly the missing chunks");
    assert_eq!(s.downloaded, s.verified + s.wasted);
    for c in before.iter_ones() {
        assert_eq!(
            net.nodes[2].received[c as usize], 0,
            "chunk {c} downloaded again"
        );
    }
    println!(
        "restarted with {}/{n} chunks; downloaded {} bytes for {rest} missing ({} wasted)",
        before.count(),
        s.downloaded,
        s.wasted
    );
}

/// Drives one machine by hand for 135 s: six interested peers A..F, of which A..D
/// trade with it every second (as a recipient: they send it chunks; as the sender:
/// they ask it for chunks) and E, F do nothing. Returns every choke state change as
/// (ms, peer index, unchoked).
fn choke_log(as_sender: bool) -> (Vec<PeerId>, Vec<(u64, usize, bool)>) {
    let data = file(8 * CHUNK_SIZE as usize, 4);
    let sender = Identity::from_seed(&[1; 32]);
    let manifest = Manifest::for_bytes(&sender, "f", &data).expect("manifest");
    let n = manifest.chunk_count();
    let chunk =
        |i: u32| data[manifest.chunk_offset(i) as usize..][..manifest.chunk_len(i)].to_vec();
    let peers: Vec<PeerId> = (0..6u8)
        .map(|i| Identity::from_seed(&[50 + i; 32]).peer_id())
        .collect();
    let (me, have) = if as_sender {
        (sender.peer_id(), Bitfield::full(n))
    } else {
        (Identity::from_seed(&[2; 32]).peer_id(), Bitfield::empty(n))
    };
    let config = SwarmConfig {
        super_seed: false,
        ..SwarmConfig::default()
    };
    let mut swarm = Swarm::new(Mono(0), manifest.clone(), me, have, config, 7);
    let mut log = Vec::new();
    let drain = |swarm: &mut Swarm, log: &mut Vec<(u64, usize, bool)>, now: Mono| loop {
        while let Some(ev) = swarm.poll_event() {
            if let SwarmEvent::ReadChunk { peer, index } = ev {
                swarm.serve_chunk(now, peer, index, chunk(index));
            }
        }
        let Some(Transmit { peer, msg }) = swarm.poll_transmit() else {
            break;
        };
        let who = peers.iter().position(|p| *p == peer).expect("a peer");
        match msg {
            PeerMessage::Choke => log.push((now.as_millis(), who, false)),
            PeerMessage::Unchoke => log.push((now.as_millis(), who, true)),
            _ => {}
        }
    };
    for p in &peers {
        swarm.add_peer(Mono(0), *p).expect("add");
        let theirs = if as_sender {
            Bitfield::empty(n)
        } else {
            Bitfield::full(n)
        };
        swarm.handle_message(
            Mono(0),
            *p,
            PeerMessage::Bitfield(theirs.as_bytes().to_vec()),
        );
        swarm.handle_message(Mono(0), *p, PeerMessage::Interested);
    }
    drain(&mut swarm, &mut log, Mono(0));
    for sec in 1..=135u64 {
        let now = Mono(sec * 1000);
        for (k, p) in peers[..4].iter().enumerate() {
            // As a recipient it never completes (it would start seeding): each
            // trading peer resends one chunk, which counts as download all the same.
            let msg = if as_sender {
                PeerMessage::Request((sec as u32 + k as u32) % n)
            } else {
                PeerMessage::Piece {
                    index: k as u32,
                    data: chunk(k as u32),
                }
            };
            swarm.handle_message(now, *p, msg);
        }
        if swarm.poll_timeout().is_some_and(|t| t <= now) {
            swarm.handle_timeout(now);
        }
        drain(&mut swarm, &mut log, now);
    }
    (peers, log)
}

/// Checks the seed's choking cadence on a log from [`choke_log`].
fn check_cadence(log: &[(u64, usize, bool)]) {
    let mut unchoked = [false; 6];
    let mut optimistic_by_window: Vec<(u64, usize)> = Vec::new();
    let mut t = 0;
    let mut i = 0;
    while t <= 135_000 {
        while i < log.len() && log[i].0 <= t {
            let (at, who, up) = log[i];
            assert!(
                at == 0 || at % 10_000 == 0,
                "choke change at {at} ms, not on a 10 s round"
            );
            unchoked[who] = up;
            i += 1;
        }
        let count = unchoked.iter().filter(|u| **u).count();
        assert!(count <= 5, "{count} unchoked at {t} ms");
        if t >= 10_000 {
            assert!(
                unchoked[..4].iter().all(|u| *u),
                "a trading peer choked at {t} ms"
            );
            let opt: Vec<usize> = (4..6).filter(|&k| unchoked[k]).collect();
            assert_eq!(opt.len(), 1, "one optimistic unchoke at {t} ms");
            if (t - 10_000) % 30_000 == 0 {
                optimistic_by_window.push((t, opt[0]));
            } else {
                let (_, current) = optimistic_by_window.last().expect("a window");
                assert_eq!(
                    opt[0], *current,
                    "optimistic unchoke moved at {t} ms, mid-window"
                );
            }
        }
        t += 1000;
    }
    // Rotations at 40, 70, 100 and 130 s, to the other idle peer each time.
    assert_eq!(optimistic_by_window.len(), 5);
    for w in optimistic_by_window.windows(2) {
        assert_ne!(w[0].1, w[1].1, "no rotation at {} ms", w[1].0);
    }
}

#[test]
fn a_recipient_unchokes_by_download_rate_with_a_rotating_optimistic_unchoke() {
    let (_, log) = choke_log(false);
    // Fast start: the first five interested peers are unchoked at once.
    assert_eq!(log.iter().filter(|(at, _, up)| *at == 0 && *up).count(), 5);
    check_cadence(&log);
}

#[test]
fn a_sender_unchokes_by_upload_rate() {
    let (_, log) = choke_log(true);
    check_cadence(&log);
}
