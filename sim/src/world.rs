//! The simulated world: supernodes running the real [`Overlay`] machine, the network
//! between them, and the virtual clock. Clients (see `clients`) act through it.
//!
//! Every input reaches a machine exactly as the supernode shell would hand it over:
//! `handle_request` with the authenticated sender, `handle_reply` with the reply or
//! nothing (a lost message or a dead peer lets the machine's own RPC deadline fire),
//! `handle_timeout` when `poll_timeout` asked for it.

use crate::batch::LOOKAHEAD_MS;
use crate::clients::{Client, ClientAction};
use crate::latency::{Network, Place};
use crate::malice;
use crate::phase::{kind_index, Phase};
use crate::queue::{Timers, Wheel};
pub use crate::stats::Stats;
use parley_proto::messages::{SupernodeReply, SupernodeToSupernode};
use parley_proto::overlay::{
    OpId, Overlay, OverlayConfig, OverlayEvent, RpcId, VerifiedRecords, Verifier,
};
use parley_proto::presence::{Contact, SignedPresence};
use parley_proto::{Identity, NodeId, PeerId, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Supernode `i`'s address: a public IPv4 address (first octet 11–99), spread over
/// about 22,800 /16 networks by a multiplicative hash, so the routing tables'
/// diversity limits (`parley_proto::overlay::diversity`) apply as on the internet,
/// and so that its position follows BEP 42 (`parley_proto::overlay::position`).
pub(crate) fn public_addr(i: u32) -> SocketAddr {
    let h = (u64::from(i)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 32) as u32;
    let [a, b, c, d] = h.to_be_bytes();
    SocketAddr::from(([11 + a % 89, b, c, d], 7000))
}

/// Malicious supernode `i`'s address when the attacker holds only `networks` /16
/// networks (5.0/16, 5.1/16, …: apart from every honest address).
fn attacker_addr(i: u32, networks: u8) -> SocketAddr {
    let [_, _, c, d] = i.to_be_bytes();
    SocketAddr::from(([5, (i % u32::from(networks.max(1))) as u8, c, d], 7000))
}

/// Where the virtual clock starts (a plausible Unix time in milliseconds).
pub const T0: Timestamp = Timestamp(1_700_000_000_000);

/// One simulated supernode.
pub struct Supernode {
    /// The real machine; `None` once the supernode has left (its memory is freed).
    pub overlay: Option<Overlay>,
    /// Its contact.
    pub contact: Contact,
    /// Where it sits on the latency map.
    pub place: Place,
    /// Drops, lies and refuses (see `malice`).
    pub malicious: Option<Box<malice::Liar>>,
    /// When its session ends, if it has a lifetime (churn; a promoted peer).
    pub leaves_at: Option<Timestamp>,
    /// When it joined.
    pub joined_at: Timestamp,
    armed: Option<Timestamp>,
    /// Its own randomness (a liar's drops), so that supernodes can take their
    /// messages on any core (see `batch`).
    pub(crate) rng: StdRng,
}

impl Supernode {
    /// Whether it is up.
    pub fn alive(&self) -> bool {
        self.overlay.is_some()
    }
}

/// A message on the wire between supernodes.
pub enum Msg {
    /// A DHT request.
    Request {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
        /// The sender's RPC id.
        id: RpcId,
        /// What is asked.
        request: SupernodeToSupernode,
    },
    /// Its reply.
    Reply {
        /// The requester.
        to: u32,
        /// Its RPC id.
        id: RpcId,
        /// The answer.
        reply: SupernodeReply,
    },
}

impl Msg {
    /// The supernode it goes to.
    pub fn receiver(&self) -> u32 {
        match self {
            Msg::Request { to, .. } | Msg::Reply { to, .. } => *to,
        }
    }
}

/// The supernode an RPC to `to` reaches, if any: a contact nobody runs (a lie), or a
/// key named at an address it does not run at (QUIC proves the key at the address
/// dialed), cannot be reached, and the RPC times out.
pub(crate) fn reachable(
    index: &FastMap<PeerId, u32>,
    contacts: &[Contact],
    to: &Contact,
) -> Option<u32> {
    let &i = index.get(&to.id)?;
    (contacts[i as usize].addr == to.addr).then_some(i)
}

/// What an operation started on a supernode's overlay was for.
#[derive(Clone, Copy, Debug)]
pub enum OpKind {
    /// A client's publication of its record with this sequence number.
    Publish {
        /// The client.
        client: u32,
        /// The record's sequence number.
        seq: u64,
    },
    /// Someone looks a client up.
    Lookup {
        /// The client looked up.
        target: u32,
        /// The oldest sequence number that counts as current.
        min_seq: u64,
    },
}

/// The simulator's own maps, asked on every message (who runs this key, which
/// operation finished): foldhash rather than SipHash; their keys are the
/// simulator's, not an adversary's.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The whole simulation.
pub struct Sim {
    /// Seeded randomness of the world (not of the machines: each has its own seed).
    pub rng: StdRng,
    /// The virtual clock.
    pub now: Timestamp,
    /// Overlay settings for every supernode.
    pub config: OverlayConfig,
    /// Every supernode ever started, by index.
    pub nodes: Vec<Supernode>,
    /// Supernode index by identity.
    pub index: FastMap<PeerId, u32>,
    /// Where each supernode ever started sits (as `Supernode::place`, in one array so
    /// that every core can read it while supernodes take their messages).
    pub places: Vec<Place>,
    /// Each supernode's contact, by index (as `Supernode::contact`, for the same
    /// reason): a request's receiver learns its sender's from here, as a real one
    /// does from the authenticated connection, so messages need not carry it.
    pub contacts: Vec<Contact>,
    /// Live supernodes, unordered (for random choice).
    pub live: Vec<u32>,
    live_pos: HashMap<u32, usize>,
    /// The clients.
    pub clients: Vec<Client>,
    /// Clients attached to each supernode (may hold stale entries; check `attached`).
    pub attached_to: Vec<Vec<u32>>,
    /// The network model.
    pub network: Network,
    /// Messages in flight, boxed: a window moves each several times (queue, inbox,
    /// time order), and a box moves 8 bytes where a message moves 216.
    wheel: Wheel<Box<Msg>>,
    /// Supernodes' deadlines (`poll_timeout`), clients' actions and supernodes'
    /// session ends, each by time.
    node_timers: Timers<u32>,
    client_timers: Timers<(u32, ClientAction)>,
    leave_timers: Timers<u32>,
    pub(crate) gathered: crate::batch::Gathered,
    /// Operations in progress on overlays, by (supernode, op).
    pub ops: FastMap<(u32, OpId), OpKind>,
    /// The malicious supernodes, which name only each other in their replies.
    pub colluders: std::collections::HashSet<PeerId>,
    /// The verified-record cache the overlays share.
    pub verified: Arc<VerifiedRecords>,
    /// Counters.
    pub stats: Stats,
    /// The part of the run going on (for [`Stats::by_phase`]).
    pub phase: Phase,
    transmit_buf: Vec<parley_proto::overlay::OutgoingRpc>,
    /// Continuous churn, when on.
    pub churn: Option<crate::churn::Churn>,
    /// How many earlier supernodes a new one joins through (distinct, chosen at
    /// random, liars included): an operator's repeatable `--join`.
    pub bootstraps: usize,
    /// Why lookups missed.
    pub misses: crate::misses::Misses,
    /// The /16 networks malicious supernodes live in (`None`: spread like honest ones).
    pub attacker_networks: Option<u8>,
    /// The clients Sybils were minted next to (see `sybil`).
    pub targets: std::collections::HashSet<u32>,
    /// Promoted peers among the supernodes, when on (see `peers`).
    pub peers: Option<Box<crate::peers::Peers>>,
    /// Addresses chosen for particular supernodes (Sybils run where their BEP 42
    /// prefix lands next to a target, see `sybil`); others get `public_addr` or
    /// `attacker_addr`.
    pub addresses: HashMap<PeerId, SocketAddr>,
}

impl Sim {
    /// An empty world.
    pub fn new(seed: u64, config: OverlayConfig, network: Network, cache: usize) -> Sim {
        Sim {
            rng: StdRng::seed_from_u64(seed),
            now: T0,
            config,
            nodes: Vec::new(),
            index: FastMap::default(),
            places: Vec::new(),
            contacts: Vec::new(),
            live: Vec::new(),
            live_pos: HashMap::new(),
            clients: Vec::new(),
            attached_to: Vec::new(),
            network,
            wheel: Wheel::new(T0.0),
            node_timers: Timers::default(),
            client_timers: Timers::default(),
            leave_timers: Timers::default(),
            gathered: Default::default(),
            ops: FastMap::default(),
            colluders: Default::default(),
            verified: Arc::new(VerifiedRecords::new(cache)),
            stats: Stats::default(),
            phase: Phase::Join,
            transmit_buf: Vec::new(),
            churn: None,
            misses: Default::default(),
            bootstraps: 1,
            attacker_networks: None,
            targets: Default::default(),
            peers: None,
            addresses: HashMap::new(),
        }
    }

    /// Starts a supernode with `identity`; it joins through `via` if given.
    pub fn add_supernode(&mut self, identity: &Identity, via: Option<u32>, malicious: bool) -> u32 {
        let liar = malicious.then(Box::default);
        self.add_supernode_as(identity.peer_id(), via, liar)
    }

    /// Like [`Sim::add_supernode`] for the supernode `id` (nothing in the simulator
    /// checks a supernode's signature, so a Sybil's id need not be a real key), which
    /// is malicious in the way `liar` says if given.
    pub fn add_supernode_as(
        &mut self,
        id: PeerId,
        via: Option<u32>,
        liar: Option<Box<malice::Liar>>,
    ) -> u32 {
        let malicious = liar.is_some();
        let i = u32::try_from(self.nodes.len()).expect("fewer than 2^32 supernodes");
        let addr = match (self.addresses.get(&id), self.attacker_networks) {
            (Some(chosen), _) => *chosen,
            (None, Some(n)) if malicious => attacker_addr(i, n),
            _ => public_addr(i),
        };
        let contact = Contact { id, addr };
        let seed = self.rng.gen();
        let verifier = Verifier::Shared(self.verified.clone());
        let overlay =
            Overlay::with_verifier(contact, self.config.clone(), self.now, seed, verifier);
        let place = Place::random(&mut self.rng);
        self.places.push(place);
        self.contacts.push(contact);
        self.nodes.push(Supernode {
            overlay: Some(overlay),
            contact,
            place,
            malicious: liar,
            leaves_at: None,
            joined_at: self.now,
            armed: None,
            rng: StdRng::seed_from_u64(self.rng.gen()),
        });
        self.attached_to.push(Vec::new());
        if malicious {
            self.colluders.insert(contact.id);
        }
        self.index.insert(contact.id, i);
        self.live_pos.insert(i, self.live.len());
        self.live.push(i);
        if let Some(via) = via {
            let via = self.nodes[via as usize].contact;
            if let Some(o) = self.nodes[i as usize].overlay.as_mut() {
                o.join(self.now, via);
            }
        }
        self.touch(i);
        i
    }

    /// Starts a supernode that joins through up to [`Sim::bootstraps`] distinct
    /// random live supernodes (liars included).
    pub fn add_joining(&mut self, identity: &Identity, malicious: bool) -> u32 {
        self.add_joining_as(identity.peer_id(), malicious.then(Box::default))
    }

    /// Like [`Sim::add_joining`] for the supernode `id`, malicious as `liar` says
    /// (see [`Sim::add_supernode_as`]).
    pub fn add_joining_as(&mut self, id: PeerId, liar: Option<Box<malice::Liar>>) -> u32 {
        let n = self.bootstraps.max(1).min(self.live.len());
        let vias: Vec<u32> = rand::seq::index::sample(&mut self.rng, self.live.len(), n)
            .iter()
            .map(|j| self.live[j])
            .collect();
        let i = self.add_supernode_as(id, vias.first().copied(), liar);
        for &via in vias.iter().skip(1) {
            let contact = self.nodes[via as usize].contact;
            self.with_overlay(i, |o, now| o.join(now, contact));
        }
        i
    }

    /// Stops supernode `i` at once (a crash or the end of its session): it answers
    /// nothing from now on. Its attached clients notice after their keep-alive
    /// timeout and re-attach (see `clients`).
    pub fn kill(&mut self, i: u32) {
        if self.nodes[i as usize].overlay.take().is_none() {
            return;
        }
        self.nodes[i as usize].malicious = None;
        self.unlist(i);
        let attached = std::mem::take(&mut self.attached_to[i as usize]);
        for c in attached {
            self.client_lost_supernode(c, i);
        }
    }

    /// Takes supernode `i` off the live list (no new clients, lookups or joins go
    /// through it) while it keeps running.
    pub fn unlist(&mut self, i: u32) {
        if let Some(pos) = self.live_pos.remove(&i) {
            self.live.swap_remove(pos);
            if let Some(&moved) = self.live.get(pos) {
                self.live_pos.insert(moved, pos);
            }
        }
    }

    /// Schedules supernode `i` to leave at `at`.
    pub fn set_lifetime(&mut self, i: u32, at: Timestamp) {
        self.nodes[i as usize].leaves_at = Some(at);
        self.leave_timers.push(at.0, i);
    }

    /// Schedules a client action.
    pub fn schedule(&mut self, at: Timestamp, client: u32, action: ClientAction) {
        self.client_timers
            .push(at.0.max(self.now.0), (client, action));
    }

    /// A random live supernode, honest if `honest`.
    pub fn random_live(&mut self, honest: bool) -> Option<u32> {
        for _ in 0..1000 {
            let i = *self
                .live
                .get(self.rng.gen_range(0..self.live.len().max(1)))?;
            if !honest || self.nodes[i as usize].malicious.is_none() {
                return Some(i);
            }
        }
        None
    }

    /// Lets supernode `i`'s overlay act, then collects what it produced.
    pub fn with_overlay<T>(
        &mut self,
        i: u32,
        f: impl FnOnce(&mut Overlay, Timestamp) -> T,
    ) -> Option<T> {
        let now = self.now;
        let out = f(self.nodes[i as usize].overlay.as_mut()?, now);
        self.touch(i);
        Some(out)
    }

    /// Collects RPCs and events from supernode `i` after an input, and re-arms its timer.
    pub fn touch(&mut self, i: u32) {
        let Some(overlay) = self.nodes[i as usize].overlay.as_mut() else {
            return;
        };
        // Buffers kept between calls: this runs after every input.
        let mut out = std::mem::take(&mut self.transmit_buf);
        while let Some(rpc) = overlay.poll_transmit() {
            out.push(rpc);
        }
        let mut events = Vec::new();
        while let Some(event) = overlay.poll_event() {
            events.push(event);
        }
        let next = overlay.poll_timeout();
        self.arm(i, next);
        for rpc in out.drain(..) {
            self.send_rpc(i, rpc);
        }
        self.transmit_buf = out;
        for event in events {
            self.on_event(i, event);
        }
    }

    /// Sets supernode `i`'s timer for `next` (its `poll_timeout`) unless it is set.
    pub(crate) fn arm(&mut self, i: u32, next: Option<Timestamp>) {
        let node = &mut self.nodes[i as usize];
        if next.is_some() && next != node.armed {
            node.armed = next;
            if let Some(t) = next {
                self.node_timers.push(t.0.max(self.now.0), i);
            }
        }
    }

    /// Puts supernode `i`'s RPC on the network.
    pub(crate) fn send_rpc(&mut self, i: u32, rpc: parley_proto::overlay::OutgoingRpc) {
        let mut sent = [0; 4];
        sent[kind_index(&rpc.request)] = 1;
        self.count_rpcs(sent);
        let Some(to) = reachable(&self.index, &self.contacts, &rpc.to) else {
            return;
        };
        let from_place = self.nodes[i as usize].place;
        let to_place = self.nodes[to as usize].place;
        self.post(
            &from_place,
            &to_place,
            Box::new(Msg::Request {
                from: i,
                to,
                id: rpc.id,
                request: rpc.request,
            }),
        );
    }

    /// Counts RPCs sent, by request kind (`phase::kind_index`), in the current phase.
    pub(crate) fn count_rpcs(&mut self, by_kind: [u64; 4]) {
        for (kind, n) in by_kind.into_iter().enumerate() {
            self.stats.rpcs += n;
            self.stats.by_phase[self.phase as usize][kind] += n;
        }
    }

    fn post(&mut self, a: &Place, b: &Place, msg: Box<Msg>) {
        match self.network.delay(&mut self.rng, a, b) {
            Some(ms) => self.enqueue(self.now.0 + u64::from(ms), msg),
            None => self.stats.lost += 1,
        }
    }

    /// Queues `msg` to arrive at millisecond `at`.
    pub(crate) fn enqueue(&mut self, at: u64, msg: Box<Msg>) {
        self.wheel.push(self.now.0, at, msg);
    }

    pub(crate) fn on_event(&mut self, i: u32, event: OverlayEvent) {
        match event {
            OverlayEvent::Published { op, replicas } => {
                if let Some(OpKind::Publish { client, seq }) = self.ops.remove(&(i, op)) {
                    self.stats.published += 1;
                    self.stats.replicas += replicas as u64;
                    self.note_replicas(client, replicas);
                    self.client_published(client, seq);
                }
            }
            OverlayEvent::LookupDone { op, record, hops } => {
                if let Some(OpKind::Lookup { target, min_seq }) = self.ops.remove(&(i, op)) {
                    self.lookup_done(i, target, min_seq, record.as_ref(), hops);
                }
            }
            OverlayEvent::RecordRefused { .. } => self.stats.refused += 1,
            OverlayEvent::HandedOver { records, stored } => self.handed_over(i, records, stored),
        }
    }

    fn lookup_done(
        &mut self,
        origin: u32,
        target: u32,
        min_seq: u64,
        record: Option<&SignedPresence>,
        hops: usize,
    ) {
        self.stats.lookups += 1;
        let id = self.clients[target as usize].identity.peer_id();
        if self.targets.contains(&target) {
            self.stats.targeted[0] += 1;
            let current = matches!(record, Some(r) if r.record.id == id && r.record.seq >= min_seq);
            self.stats.targeted[1] += u64::from(current);
        }
        match record {
            Some(r) if r.record.id == id && r.record.seq >= min_seq => {
                self.stats.found += 1;
                self.stats.hops.push(u8::try_from(hops).unwrap_or(u8::MAX));
            }
            Some(_) => self.stats.missed[1] += 1,
            None => self.stats.missed[0] += 1,
        }
        if !matches!(record, Some(r) if r.record.id == id && r.record.seq >= min_seq) {
            self.explain_miss(origin, target, min_seq, record);
        }
    }

    /// Runs every message and timer due up to `until`, then sets the clock there:
    /// windows of at most [`LOOKAHEAD_MS`] (see `batch`), each ending before the next
    /// supernode's session ends (those change the world for everyone, so they run
    /// alone, on this thread).
    pub fn run_until(&mut self, until: Timestamp) {
        loop {
            let next = [
                self.wheel.next_time(),
                self.node_timers.next_time(),
                self.client_timers.next_time(),
                self.leave_timers.next_time(),
            ];
            let Some(t) = next.into_iter().flatten().min() else {
                break;
            };
            if t > until.0 {
                break;
            }
            let t = t.max(self.now.0);
            self.now = Timestamp(t);
            if self.leave_timers.next_time().is_some_and(|at| at <= t) {
                if let Some((_, i)) = self.leave_timers.pop() {
                    if self.nodes[i as usize]
                        .leaves_at
                        .is_some_and(|at| at <= self.now)
                    {
                        self.supernode_leaves(i);
                    }
                }
                continue;
            }
            let mut end = (t + LOOKAHEAD_MS).min(until.0 + 1);
            if let Some(at) = self.leave_timers.next_time() {
                end = end.min(at);
            }
            self.gather(end);
            self.run_window(Timestamp(t), end);
        }
        self.now = self.now.max(until);
    }

    /// Collects every input of the window ending before `end`: clients act (in time
    /// order, here), messages arrive, deadlines fall due.
    fn gather(&mut self, end: u64) {
        while let Some(at) = self.client_timers.next_time().filter(|&at| at < end) {
            if let Some((_, (c, action))) = self.client_timers.pop() {
                self.now = self.now.max(Timestamp(at));
                self.client_act(c, action);
            }
        }
        while let Some(at) = self.wheel.next_time().filter(|&at| at < end) {
            let mut msgs = self.wheel.take(at);
            for msg in msgs.drain(..) {
                self.gathered.message(at, msg);
            }
            self.wheel.recycle(at, msgs);
        }
        while self.node_timers.next_time().is_some_and(|at| at < end) {
            if let Some((_, i)) = self.node_timers.pop() {
                let node = &mut self.nodes[i as usize];
                if node.armed.is_some_and(|armed| armed.0 < end) {
                    node.armed = None;
                    self.gathered.wake(i);
                }
            }
        }
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.wheel.len()
    }

    /// The node id of supernode `i`.
    pub fn node_id(&self, i: u32) -> NodeId {
        self.nodes[i as usize].contact.node_id()
    }
}
