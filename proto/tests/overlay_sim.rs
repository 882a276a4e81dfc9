//! Acceptance simulation of the supernode overlay: 200 supernodes and 2,000 clients
//! in one process, on a virtual clock, over a seeded network with random latency.
//!
//! Run with `cargo test -p parley-proto --test overlay_sim -- --nocapture` to see the
//! figures (success rates, hop counts, replica counts, message totals).

use parley_proto::messages::{SupernodeReply, SupernodeToSupernode};
use parley_proto::overlay::{OpId, Overlay, OverlayConfig, OverlayEvent, RpcId};
use parley_proto::presence::{AddressKind, CandidateAddr, Contact, NatType, PresenceRecord};
use parley_proto::{Identity, PeerId, Timestamp};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

const SUPERNODES: usize = 200;
const CLIENTS: usize = 2_000;
const KILLED: usize = SUPERNODES / 5;
const SEED: u64 = 0x5eed_0f9a_71e7;
const T0: Timestamp = Timestamp(1_700_000_000_000);
const LATENCY_MS: std::ops::RangeInclusive<u64> = 5..=80;
// Clients refresh records within their lifetime; holders republish after most of
// an interval (30 min) without a refresh, so records must outlive that.
const RECORD_TTL: Duration = Duration::from_secs(60 * 60);

enum Msg {
    Request {
        from: usize,
        to: usize,
        id: RpcId,
        request: SupernodeToSupernode,
    },
    Reply {
        to: usize,
        id: RpcId,
        reply: SupernodeReply,
    },
}

/// A message in flight, ordered by arrival time then by sending order.
struct InFlight {
    at: Timestamp,
    seq: u64,
    /// Boxed: the heap moves entries around, and records are a few hundred bytes.
    msg: Box<Msg>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Stats {
    rpcs: u64,
    refused: u64,
}

struct Sim {
    rng: StdRng,
    now: Timestamp,
    nodes: Vec<Overlay>,
    index: HashMap<PeerId, usize>,
    alive: Vec<bool>,
    network: BinaryHeap<InFlight>,
    sent: u64,
    timers: BinaryHeap<Reverse<(Timestamp, usize)>>,
    armed: Vec<Option<Timestamp>>,
    /// Completion events of the caller's operations, by (supernode, op).
    done: HashMap<(usize, OpId), OverlayEvent>,
    stats: Stats,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            rng: StdRng::seed_from_u64(SEED),
            now: T0,
            nodes: Vec::new(),
            index: HashMap::new(),
            alive: Vec::new(),
            network: BinaryHeap::new(),
            sent: 0,
            timers: BinaryHeap::new(),
            armed: Vec::new(),
            done: HashMap::new(),
            stats: Stats::default(),
        }
    }

    fn identity(&mut self) -> Identity {
        Identity::from_seed(&self.rng.gen())
    }

    fn add_supernode(&mut self) -> usize {
        let i = self.nodes.len();
        let me = Contact {
            id: self.identity().peer_id(),
            addr: SocketAddr::from(([10, (i / 256) as u8, (i % 256) as u8, 1], 7000)),
        };
        let seed = self.rng.gen();
        self.nodes
            .push(Overlay::new(me, OverlayConfig::default(), self.now, seed));
        self.index.insert(me.id, i);
        self.alive.push(true);
        self.armed.push(None);
        self.touch(i);
        i
    }

    /// Records held by live supernodes, per client: the replication level.
    fn live_copies_per_client(&self) -> f64 {
        let held: usize = (0..self.nodes.len())
            .filter(|&i| self.alive[i])
            .map(|i| self.nodes[i].stored_records())
            .sum();
        held as f64 / CLIENTS as f64
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.alive[i]).collect()
    }

    fn random_live(&mut self) -> usize {
        let live = self.live();
        live[self.rng.gen_range(0..live.len())]
    }

    fn latency(&mut self) -> Duration {
        Duration::from_millis(self.rng.gen_range(LATENCY_MS))
    }

    fn post(&mut self, msg: Msg) {
        let at = self.now + self.latency();
        self.sent += 1;
        self.network.push(InFlight {
            at,
            seq: self.sent,
            msg: Box::new(msg),
        });
    }

    /// Collects what node `i` produced after an input, and re-arms its timer.
    fn touch(&mut self, i: usize) {
        while let Some(rpc) = self.nodes[i].poll_transmit() {
            self.stats.rpcs += 1;
            let to = self.index_of(&rpc.to.id);
            self.post(Msg::Request {
                from: i,
                to,
                id: rpc.id,
                request: rpc.request,
            });
        }
        while let Some(event) = self.nodes[i].poll_event() {
            match event {
                OverlayEvent::Published { op, .. } | OverlayEvent::LookupDone { op, .. } => {
                    self.done.insert((i, op), event);
                }
                OverlayEvent::RecordRefused { .. } => self.stats.refused += 1,
                OverlayEvent::HandedOver { .. } => {}
            }
        }
        let next = self.nodes[i].poll_timeout();
        if next.is_some() && next != self.armed[i] {
            self.armed[i] = next;
            self.timers.extend(next.map(|t| Reverse((t, i))));
        }
    }

    fn index_of(&self, id: &PeerId) -> usize {
        *self
            .index
            .get(id)
            .expect("RPCs only go to known supernodes")
    }

    /// Handles the earliest network message or timer due by `limit`; false if none.
    fn step(&mut self, limit: Timestamp) -> bool {
        let msg_at = self.network.peek().map(|m| m.at);
        let timer_at = self.timers.peek().map(|Reverse((t, _))| *t);
        let take_msg = match (msg_at, timer_at) {
            (Some(m), Some(t)) => m <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        let at = if take_msg { msg_at } else { timer_at };
        if at.is_none_or(|at| at > limit) {
            return false;
        }
        if take_msg {
            let Some(m) = self.network.pop() else {
                return false;
            };
            self.now = self.now.max(m.at);
            self.deliver(*m.msg);
        } else if let Some(Reverse((t, i))) = self.timers.pop() {
            self.now = self.now.max(t);
            if self.alive[i] && self.armed[i] == Some(t) {
                self.armed[i] = None;
                self.nodes[i].handle_timeout(self.now);
                self.touch(i);
            }
        }
        true
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Request {
                from,
                to,
                id,
                request,
            } => {
                // A dead supernode never answers: the sender's deadline fires.
                if !self.alive[to] {
                    return;
                }
                let sender = self.nodes[from].me();
                let reply = self.nodes[to].handle_request(self.now, sender, request);
                self.touch(to);
                self.post(Msg::Reply {
                    to: from,
                    id,
                    reply,
                });
            }
            Msg::Reply { to, id, reply } => {
                if self.alive[to] {
                    self.nodes[to].handle_reply(self.now, id, Ok(reply));
                    self.touch(to);
                }
            }
        }
    }

    /// Runs until no message is in flight and no live supernode waits on an RPC or
    /// an operation.
    fn settle(&mut self) {
        loop {
            if self.network.is_empty() {
                let busy = (0..self.nodes.len()).any(|i| {
                    self.alive[i]
                        && (self.nodes[i].rpcs_in_flight() > 0
                            || self.nodes[i].operations_in_progress() > 0)
                });
                if !busy {
                    return;
                }
            }
            if !self.step(Timestamp(u64::MAX)) {
                return;
            }
        }
    }

    /// Runs every message and timer due up to `until`, then sets the clock there.
    fn run_until(&mut self, until: Timestamp) {
        while self.step(until) {}
        self.now = self.now.max(until);
    }
}

struct Client {
    identity: Identity,
    attached: [usize; 2],
    seq: u64,
}

impl Client {
    fn record(&self, sim: &Sim) -> parley_proto::presence::SignedPresence {
        PresenceRecord {
            id: self.identity.peer_id(),
            display_name: String::new(),
            supernodes: self.attached.iter().map(|&i| sim.nodes[i].me()).collect(),
            addresses: vec![CandidateAddr {
                kind: AddressKind::Observed,
                addr: SocketAddr::from(([198, 51, 100, 7], 40000)),
            }],
            nat: NatType::FullCone,
            seq: self.seq,
            expires_at: sim.now + RECORD_TTL,
        }
        .sign(&self.identity)
    }

    /// Publishes the current record through both attachments; returns the ops.
    fn publish(&self, sim: &mut Sim) -> Vec<(usize, OpId)> {
        let record = self.record(sim);
        self.attached
            .iter()
            .map(|&s| {
                let op = sim.nodes[s]
                    .publish(sim.now, record.clone())
                    .expect("a fresh record is accepted");
                sim.touch(s);
                (s, op)
            })
            .collect()
    }
}

struct Outcome {
    found: usize,
    hops: BTreeMap<usize, usize>,
}

impl Outcome {
    fn print(&self, label: &str, total: usize) {
        let n: usize = self.hops.values().sum();
        let sum: usize = self.hops.iter().map(|(h, c)| h * c).sum();
        let max = self.hops.keys().next_back().copied().unwrap_or(0);
        let histogram: Vec<String> = self.hops.iter().map(|(h, c)| format!("{h}:{c}")).collect();
        println!(
            "{label}: found {}/{} ({:.2}%), hops mean {:.2} max {} histogram [{}]",
            self.found,
            total,
            100.0 * self.found as f64 / total as f64,
            sum as f64 / n.max(1) as f64,
            max,
            histogram.join(" ")
        );
    }
}

/// Looks every client up from a random live supernode; a success is the client's
/// current record (right seq), not merely some record.
fn look_everyone_up(sim: &mut Sim, clients: &[Client]) -> Outcome {
    let ops: Vec<(usize, OpId)> = clients
        .iter()
        .map(|c| {
            let from = sim.random_live();
            let op = sim.nodes[from].lookup(sim.now, c.identity.peer_id());
            sim.touch(from);
            (from, op)
        })
        .collect();
    sim.settle();
    let mut outcome = Outcome {
        found: 0,
        hops: BTreeMap::new(),
    };
    for (client, key) in clients.iter().zip(ops) {
        match sim.done.remove(&key) {
            Some(OverlayEvent::LookupDone { record, hops, .. }) => {
                let current = record.is_some_and(|r| {
                    r.record.id == client.identity.peer_id() && r.record.seq == client.seq
                });
                if current {
                    outcome.found += 1;
                    *outcome.hops.entry(hops).or_default() += 1;
                }
            }
            other => panic!("lookup did not finish: {other:?}"),
        }
    }
    outcome
}

fn published_replicas(sim: &mut Sim, ops: &[(usize, OpId)]) -> Vec<usize> {
    ops.iter()
        .map(|key| match sim.done.remove(key) {
            Some(OverlayEvent::Published { replicas, .. }) => replicas,
            other => panic!("publish did not finish: {other:?}"),
        })
        .collect()
}

fn summary(values: &[usize]) -> String {
    let sum: usize = values.iter().sum();
    format!(
        "mean {:.1} min {} max {}",
        sum as f64 / values.len().max(1) as f64,
        values.iter().min().unwrap_or(&0),
        values.iter().max().unwrap_or(&0)
    )
}

#[test]
fn two_hundred_supernodes_two_thousand_clients_and_a_20_percent_crash() {
    let started = std::time::Instant::now();
    let mut sim = Sim::new();

    // 1. Supernodes join one after another, each through a random earlier one.
    sim.add_supernode();
    for _ in 1..SUPERNODES {
        let via = sim.rng.gen_range(0..sim.nodes.len());
        let i = sim.add_supernode();
        let contact = sim.nodes[via].me();
        sim.nodes[i].join(sim.now, contact);
        sim.touch(i);
        sim.settle();
    }
    let tables: Vec<usize> = sim.nodes.iter().map(|n| n.routing_table_len()).collect();
    println!(
        "joined {SUPERNODES} supernodes by virtual t+{:.1}s; routing table sizes {} [wall {:.1}s]",
        sim.now.since(T0).as_secs_f64(),
        summary(&tables),
        started.elapsed().as_secs_f64()
    );
    assert!(tables.iter().all(|&n| n > 0));

    // 2. Every client attaches to two supernodes and publishes through both.
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| {
            let pair = sample(&mut sim.rng, SUPERNODES, 2);
            Client {
                identity: sim.identity(),
                attached: [pair.index(0), pair.index(1)],
                seq: 1,
            }
        })
        .collect();
    let rpcs_before = sim.stats.rpcs;
    let ops: Vec<(usize, OpId)> = clients.iter().flat_map(|c| c.publish(&mut sim)).collect();
    sim.settle();
    let replicas = published_replicas(&mut sim, &ops);
    let stored: Vec<usize> = sim.nodes.iter().map(|n| n.stored_records()).collect();
    println!(
        "published {} records ({} publishes, {} RPCs): replicas per publish {}; records per supernode {}; \
         copies per record {:.1}",
        CLIENTS,
        ops.len(),
        sim.stats.rpcs - rpcs_before,
        summary(&replicas),
        summary(&stored),
        sim.live_copies_per_client()
    );
    assert!(replicas.iter().all(|&r| r >= 20));

    // 3. Everyone is found.
    let rpcs_before = sim.stats.rpcs;
    let first = look_everyone_up(&mut sim, &clients);
    first.print("lookup, all supernodes up", CLIENTS);
    println!(
        "  ({} RPCs) [wall {:.1}s]",
        sim.stats.rpcs - rpcs_before,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(first.found, CLIENTS, "every client must be found");

    // 4. A fifth of the supernodes crash at once.
    for i in sample(&mut sim.rng, SUPERNODES, KILLED).into_iter() {
        sim.alive[i] = false;
    }
    println!(
        "killed {KILLED} supernodes: live copies per record {:.1}",
        sim.live_copies_per_client()
    );
    let mut moved = 0;
    let mut ops = Vec::new();
    for c in clients.iter_mut() {
        let mut changed = false;
        for slot in 0..2 {
            if !sim.alive[c.attached[slot]] {
                let other = c.attached[1 - slot];
                let replacement = loop {
                    let s = sim.random_live();
                    if s != other {
                        break s;
                    }
                };
                c.attached[slot] = replacement;
                changed = true;
            }
        }
        if changed {
            moved += 1;
            c.seq += 1;
            ops.extend(c.publish(&mut sim));
        }
    }
    let until = sim.now + OverlayConfig::default().republish_interval;
    let rpcs_before = sim.stats.rpcs;
    sim.run_until(until);
    sim.settle();
    let replicas = published_replicas(&mut sim, &ops);
    println!(
        "{moved} clients re-attached and republished (seq+1): replicas per publish {}; \
         one republish interval later: live copies per record {:.1} ({} RPCs, {} records refused so far)",
        summary(&replicas),
        sim.live_copies_per_client(),
        sim.stats.rpcs - rpcs_before,
        sim.stats.refused
    );
    let rpcs_before = sim.stats.rpcs;
    let second = look_everyone_up(&mut sim, &clients);
    second.print("lookup, after 20% crash", CLIENTS);
    println!(
        "  ({} RPCs) [wall {:.1}s]",
        sim.stats.rpcs - rpcs_before,
        started.elapsed().as_secs_f64()
    );
    println!(
        "simulation took {:.1}s of wall time",
        started.elapsed().as_secs_f64()
    );
    assert!(
        second.found * 100 >= CLIENTS * 99,
        "at least 99% must be found after the crash"
    );
}
