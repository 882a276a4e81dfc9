//! CPU ceiling of the file-transfer core: a sender and N recipients run `Swarm`
//! machines in one process with an instant network (every message encoded, framed
//! and decoded; every chunk hashed on receipt and again before it is served), so the
//! figure is how fast the protocol code alone can move a file, before any socket.
//!
//! ```text
//! cargo run --release -p parley-proto --example transfer_core -- [MIB] [RECIPIENTS]
//! ```
//!
//! Prints `RESULT mib=.. recipients=.. secs=.. mb_per_s_per_recipient=..
//! sender_upload_ratio=..` (MB = 10^6 bytes).

use parley_proto::transfer::swarm::{Swarm, SwarmConfig, SwarmEvent};
use parley_proto::transfer::wire::PeerMessage;
use parley_proto::transfer::{Bitfield, Manifest, CHUNK_SIZE};
use parley_proto::{Identity, Mono};
use std::collections::VecDeque;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args
        .next()
        .map_or(64, |a| a.parse().expect("MIB: a number"));
    let recipients: usize = args
        .next()
        .map_or(4, |a| a.parse().expect("RECIPIENTS: a number"));
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let sender = Identity::from_seed(&[1; 32]);
    let manifest = Manifest::for_bytes(&sender, "bench.bin", &data).expect("manifest");
    let n = manifest.chunk_count();
    let ids: Vec<_> = (0..=recipients)
        .map(|i| {
            if i == 0 {
                sender.peer_id()
            } else {
                Identity::from_seed(&[i as u8 + 1; 32]).peer_id()
            }
        })
        .collect();
    let mut stores: Vec<Vec<Option<Vec<u8>>>> = vec![vec![None; n as usize]; recipients + 1];
    stores[0] = data
        .chunks(CHUNK_SIZE as usize)
        .map(|c| Some(c.to_vec()))
        .collect();
    let start = Instant::now();
    let mut swarms: Vec<Swarm> = (0..=recipients)
        .map(|i| {
            let have = if i == 0 {
                Bitfield::full(n)
            } else {
                Bitfield::empty(n)
            };
            Swarm::new(
                Mono(0),
                manifest.clone(),
                ids[i],
                have,
                SwarmConfig::default(),
                i as u64,
            )
        })
        .collect();
    for (a, swarm) in swarms.iter_mut().enumerate() {
        for (b, id) in ids.iter().enumerate() {
            if a != b {
                swarm.add_peer(Mono(0), *id).expect("add");
            }
        }
    }
    let mut wire: VecDeque<(usize, usize, Vec<u8>)> = VecDeque::new();
    let mut rounds = 0u64;
    while !swarms[1..].iter().all(Swarm::is_complete) {
        rounds += 1;
        // One virtual millisecond per round: choking rounds and timeouts still run.
        let now = Mono(rounds);
        for i in 0..swarms.len() {
            if swarms[i].poll_timeout().is_some_and(|t| t <= now) {
                swarms[i].handle_timeout(now);
            }
            while let Some(ev) = swarms[i].poll_event() {
                match ev {
                    SwarmEvent::ChunkVerified { index, data } => {
                        stores[i][index as usize] = Some(data)
                    }
                    SwarmEvent::ReadChunk { peer, index } => {
                        let chunk = stores[i][index as usize].clone().expect("held");
                        swarms[i].serve_chunk(now, peer, index, chunk);
                    }
                    _ => {}
                }
            }
            while let Some(t) = swarms[i].poll_transmit() {
                let to = ids.iter().position(|p| *p == t.peer).expect("a peer");
                wire.push_back((i, to, t.msg.encode_frame()));
            }
        }
        assert!(!wire.is_empty() || rounds < 1_000_000, "stalled");
        while let Some((from, to, frame)) = wire.pop_front() {
            let msg = PeerMessage::decode(&frame[4..]).expect("decodes");
            swarms[to].handle_message(now, ids[from], msg);
        }
    }
    // The last chunks verified: their events are still queued.
    for (i, swarm) in swarms.iter_mut().enumerate() {
        while let Some(ev) = swarm.poll_event() {
            if let SwarmEvent::ChunkVerified { index, data } = ev {
                stores[i][index as usize] = Some(data);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    for (i, store) in stores.iter().enumerate().skip(1) {
        let got: usize = store.iter().map(|c| c.as_ref().map_or(0, Vec::len)).sum();
        assert_eq!(got, data.len(), "recipient {i} incomplete");
    }
    let ratio = swarms[0].stats().uploaded as f64 / data.len() as f64;
    let mbps = data.len() as f64 / 1e6 / secs;
    println!(
        "RESULT mib={mib} recipients={recipients} secs={secs:.3} \
         mb_per_s_per_recipient={mbps:.0} sender_upload_ratio={ratio:.2}"
    );
}
