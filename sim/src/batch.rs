//! One millisecond's messages, delivered to their supernodes on every core.
//!
//! No message arrives less than 5 ms after it was sent (the latency model's floor), so
//! the messages due in one millisecond cannot depend on one another: each receiving
//! supernode takes its own share of them, in the order they were queued, on any core.
//! The machines share nothing but the verified-record cache (thread-safe, and what it
//! answers does not depend on the order of use). What they produce is kept per
//! supernode and applied afterwards on one thread, supernodes in index order, so a run
//! gives the same result on one core or many (conservative parallel discrete-event
//! simulation with the network's smallest delay as lookahead; Fujimoto, "Parallel
//! discrete event simulation", CACM 1990).

use crate::latency::{Network, Place};
use crate::phase::kind_index;
use crate::world::{Msg, Sim, Supernode};
use parley_proto::messages::SupernodeToSupernode;
use parley_proto::overlay::{OutgoingRpc, Overlay, OverlayEvent};
use parley_proto::{PeerId, Timestamp};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this many receiving supernodes a batch runs on the calling thread: handing
/// work to other cores costs more than it saves. See [`set_parallel_from`].
static PARALLEL_FROM: AtomicUsize = AtomicUsize::new(24);

/// Sets from how many receiving supernodes a batch is spread over the cores (default
/// 24; 1 spreads every batch, `usize::MAX` none). Results do not depend on it, only
/// the time taken: tests set it to check exactly that.
pub fn set_parallel_from(supernodes: usize) {
    PARALLEL_FROM.store(supernodes, Ordering::Relaxed);
}

/// What a supernode produced while taking its share, in the order produced.
enum Output {
    /// A message it put on the network, arriving at this millisecond (`None`: lost).
    Send(Option<u64>, Msg),
    /// Something it reports.
    Event(OverlayEvent),
}

/// What every share reads and nobody changes during a batch.
struct World<'a> {
    now: Timestamp,
    colluders: &'a HashSet<PeerId>,
    index: &'a HashMap<PeerId, u32>,
    places: &'a [Place],
    network: &'a Network,
}

/// One supernode's share of a batch and what came of it.
struct Share<'a> {
    index: u32,
    node: &'a mut Supernode,
    msgs: Vec<Msg>,
    out: Vec<Output>,
    next_timeout: Option<Timestamp>,
    /// `Store` requests delivered while it was honest, and while malicious.
    stores: [u64; 2],
    /// RPCs it sent, by request kind (`phase::kind_index`).
    rpcs: [u64; 4],
    /// Kept between inputs: RPCs just taken from the overlay.
    scratch: Vec<OutgoingRpc>,
}

impl Share<'_> {
    fn run(&mut self, world: &World<'_>) {
        let now = world.now;
        for msg in std::mem::take(&mut self.msgs) {
            let node = &mut *self.node;
            let Some(overlay) = node.overlay.as_mut() else {
                return;
            };
            match msg {
                Msg::Request {
                    from,
                    sender,
                    id,
                    request,
                    ..
                } => {
                    if matches!(request, SupernodeToSupernode::Store(_)) {
                        self.stores[usize::from(node.malicious.is_some())] += 1;
                    }
                    let reply = match node.malicious.as_mut() {
                        Some(liar) => liar.answer(
                            overlay,
                            now,
                            sender,
                            request,
                            world.colluders,
                            &mut node.rng,
                        ),
                        None => Some(overlay.handle_request(now, sender, request)),
                    };
                    self.drain(world);
                    if let Some(reply) = reply {
                        self.send(
                            world,
                            from,
                            Msg::Reply {
                                to: from,
                                id,
                                reply,
                            },
                        );
                    }
                }
                Msg::Reply { id, reply, .. } => {
                    overlay.handle_reply(now, id, Ok(reply));
                    self.drain(world);
                }
            }
        }
        self.next_timeout = self.node.overlay.as_ref().and_then(Overlay::poll_timeout);
    }

    /// Takes the overlay's RPCs and events after an input.
    fn drain(&mut self, world: &World<'_>) {
        let Some(overlay) = self.node.overlay.as_mut() else {
            return;
        };
        let mut rpcs = std::mem::take(&mut self.scratch);
        while let Some(rpc) = overlay.poll_transmit() {
            rpcs.push(rpc);
        }
        while let Some(event) = overlay.poll_event() {
            self.out.push(Output::Event(event));
        }
        for rpc in rpcs.drain(..) {
            self.rpcs[kind_index(&rpc.request)] += 1;
            // A contact nobody runs (a lie) cannot be reached: the RPC times out.
            let Some(&to) = world.index.get(&rpc.to.id) else {
                continue;
            };
            let msg = Msg::Request {
                from: self.index,
                sender: self.node.contact,
                to,
                id: rpc.id,
                request: rpc.request,
            };
            self.send(world, to, msg);
        }
        self.scratch = rpcs;
    }

    /// Puts `msg` to supernode `to` on the network, its delay drawn from this
    /// supernode's own randomness.
    fn send(&mut self, world: &World<'_>, to: u32, msg: Msg) {
        let (a, b) = (
            &world.places[self.index as usize],
            &world.places[to as usize],
        );
        let at = world
            .network
            .delay(&mut self.node.rng, a, b)
            .map(|ms| world.now.0 + u64::from(ms));
        self.out.push(Output::Send(at, msg));
    }
}

/// Mutable references to `items[i]` for every `i` of `sorted` (strictly increasing
/// indices, each less than `items.len()`).
fn pick_mut<'a, T>(mut items: &'a mut [T], sorted: &[u32]) -> Vec<&'a mut T> {
    let mut picked = Vec::with_capacity(sorted.len());
    let mut base = 0usize;
    for &i in sorted {
        let rest = std::mem::take(&mut items);
        let (_, from_i) = rest.split_at_mut(i as usize - base);
        let (item, after) = from_i
            .split_first_mut()
            .expect("indices are in range and increasing");
        picked.push(item);
        items = after;
        base = i as usize + 1;
    }
    picked
}

impl Sim {
    /// Delivers every message of one millisecond (see the module docs).
    pub(crate) fn deliver_batch(&mut self, mut batch: Vec<Msg>) {
        // Stable: each supernode's messages stay in queue order.
        batch.sort_by_key(Msg::receiver);
        let mut indices = Vec::new();
        let mut groups: Vec<Vec<Msg>> = Vec::new();
        for msg in batch.drain(..) {
            if indices.last() != Some(&msg.receiver()) {
                indices.push(msg.receiver());
                groups.push(Vec::new());
            }
            groups.last_mut().expect("pushed above").push(msg);
        }
        let world = World {
            now: self.now,
            colluders: &self.colluders,
            index: &self.index,
            places: &self.places,
            network: &self.network,
        };
        let mut shares: Vec<Share<'_>> = pick_mut(&mut self.nodes, &indices)
            .into_iter()
            .zip(indices.iter().zip(groups))
            .map(|(node, (&index, msgs))| Share {
                index,
                node,
                msgs,
                out: Vec::new(),
                next_timeout: None,
                stores: [0; 2],
                rpcs: [0; 4],
                scratch: Vec::new(),
            })
            .collect();
        if shares.len() >= PARALLEL_FROM.load(Ordering::Relaxed) {
            shares
                .par_iter_mut()
                .with_min_len(4)
                .for_each(|share| share.run(&world));
        } else {
            shares.iter_mut().for_each(|share| share.run(&world));
        }
        let done: Vec<_> = shares
            .into_iter()
            .map(|s| (s.index, s.out, s.next_timeout, s.stores, s.rpcs))
            .collect();
        for (index, out, next_timeout, stores, rpcs) in done {
            self.stats.stores[0] += stores[0];
            self.stats.stores[1] += stores[1];
            for (kind, n) in rpcs.into_iter().enumerate() {
                self.stats.rpcs += n;
                self.stats.by_phase[self.phase as usize][kind] += n;
            }
            self.arm(index, next_timeout);
            for output in out {
                match output {
                    Output::Send(Some(at), msg) => self.enqueue(at, msg),
                    Output::Send(None, _) => self.stats.lost += 1,
                    Output::Event(event) => self.on_event(index, event),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pick_mut;

    #[test]
    fn pick_mut_hands_out_exactly_the_indices_asked_for() {
        let mut items: Vec<u32> = (0..10).collect();
        for item in pick_mut(&mut items, &[0, 3, 4, 9]) {
            *item += 100;
        }
        assert_eq!(items, vec![100, 1, 2, 103, 104, 5, 6, 7, 8, 109]);
        assert!(pick_mut(&mut items, &[]).is_empty());
    }
}
