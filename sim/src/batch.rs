//! One window of simulated time, run on every core.
//!
//! No message arrives less than [`LOOKAHEAD_MS`] after it was sent (the latency
//! model's floor), so nothing a supernode does inside a window of that length can
//! reach another supernode inside the same window: each supernode takes its own
//! inputs of the window — messages, its own deadlines (`poll_timeout`) and what
//! clients asked of it (publications, lookups) — in time order, on any core. The
//! machines share nothing but the verified-record cache (thread-safe, and what it
//! answers does not depend on the order of use). What they produce is kept per
//! supernode and applied afterwards on one thread, supernodes in index order, so a run
//! gives the same result on one core or many (conservative parallel discrete-event
//! simulation with the network's smallest delay as lookahead; Fujimoto, "Parallel
//! discrete event simulation", CACM 1990).
//!
//! Clients decide on one thread, in time order, before the window runs (which
//! supernodes to attach to, what to publish, whom to look up): they see the world as
//! it was when the window began, at most [`LOOKAHEAD_MS`] old. Their records are
//! signed and verified by the supernode's share, on any core.

use crate::clients::Client;
use crate::latency::{Network, Place};
use crate::phase::kind_index;
use crate::world::{reachable, FastMap, Msg, OpKind, Sim, Supernode};
use parley_proto::messages::SupernodeToSupernode;
use parley_proto::overlay::{OpId, OutgoingRpc, Overlay, OverlayEvent};
use parley_proto::presence::{Contact, PresenceRecord, SignedPresence};
use parley_proto::{PeerId, Timestamp};
use rayon::prelude::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Length of a window in milliseconds: the smallest delay of the latency model
/// (`latency::Network`), so that no message sent in a window arrives in it.
pub const LOOKAHEAD_MS: u64 = 5;

/// Most deadlines a supernode handles before one input (a machine that asked to be
/// woken again at once would otherwise stop the run; none does).
const MAX_TIMEOUTS_PER_INPUT: usize = 64;

/// Below this many supernodes with inputs a window runs on the calling thread:
/// handing work to other cores costs more than it saves. See [`set_parallel_from`].
static PARALLEL_FROM: AtomicUsize = AtomicUsize::new(24);

/// Sets from how many supernodes with inputs a window is spread over the cores
/// (default 24; 1 spreads every window, `usize::MAX` none). Results do not depend on
/// it, only the time taken: tests set it to check exactly that.
pub fn set_parallel_from(supernodes: usize) {
    PARALLEL_FROM.store(supernodes, Ordering::Relaxed);
}

/// What a client asked of a supernode.
pub enum Local {
    /// Publish a record: signed already, or to be signed by the share.
    Publish {
        /// The client.
        client: u32,
        /// The record's sequence number.
        seq: u64,
        /// The record.
        record: Record,
    },
    /// Look a client up.
    Lookup {
        /// The client looked up.
        target: u32,
        /// The oldest sequence number that counts as current.
        min_seq: u64,
        /// Its key.
        id: PeerId,
    },
}

/// A record to publish.
pub enum Record {
    /// Signed ahead of time.
    Signed(SignedPresence),
    /// To be signed with the client's key when published.
    Unsigned(PresenceRecord),
}

/// One input of a supernode in a window.
enum Input {
    Msg(Box<Msg>),
    Local(Local),
}

impl Input {
    /// Order within one millisecond: messages, then deadlines (not inputs: see
    /// [`Share::timeouts_until`]), then clients.
    fn after_deadlines(&self) -> bool {
        matches!(self, Input::Local(_))
    }
}

/// What a supernode produced while taking its share, in the order produced.
enum Output {
    /// A message it put on the network, arriving at this millisecond (`None`: lost).
    Send(Option<u64>, Box<Msg>),
    /// Something it reports.
    Event(OverlayEvent),
    /// An operation a client asked for began (`None`: refused at once).
    Started(OpKind, Option<OpId>),
}

/// What every share reads and nobody changes during a window.
struct World<'a> {
    colluders: &'a HashSet<PeerId>,
    index: &'a FastMap<PeerId, u32>,
    places: &'a [Place],
    contacts: &'a [Contact],
    network: &'a Network,
    clients: &'a [Client],
    /// The first millisecond after the window.
    end: u64,
}

/// One supernode's share of a window and what came of it.
struct Share<'a> {
    index: u32,
    node: &'a mut Supernode,
    inputs: Vec<(u64, Input)>,
    /// The supernode's clock: the time of the input it is taking.
    now: Timestamp,
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
        // Stable: one millisecond's messages stay in queue order, clients in theirs.
        self.inputs
            .sort_by_key(|(at, input)| (*at, input.after_deadlines()));
        // Drained rather than consumed: the emptied list is used again.
        let mut inputs = std::mem::take(&mut self.inputs);
        for (at, input) in inputs.drain(..) {
            self.timeouts_until(world, at, input.after_deadlines());
            self.now = self.now.max(Timestamp(at));
            match input {
                Input::Msg(msg) => self.deliver(world, *msg),
                Input::Local(local) => self.local(world, local),
            }
        }
        self.inputs = inputs;
        self.timeouts_until(world, world.end, false);
        self.next_timeout = self.node.overlay.as_ref().and_then(Overlay::poll_timeout);
    }

    /// Handles the overlay's deadlines before `at` (and at `at` if `inclusive`).
    fn timeouts_until(&mut self, world: &World<'_>, at: u64, inclusive: bool) {
        for _ in 0..MAX_TIMEOUTS_PER_INPUT {
            let Some(overlay) = self.node.overlay.as_mut() else {
                return;
            };
            let Some(due) = overlay.poll_timeout() else {
                return;
            };
            if due.0 > at || (due.0 == at && !inclusive) {
                return;
            }
            self.now = self.now.max(due);
            overlay.handle_timeout(self.now);
            self.drain(world);
        }
    }

    fn deliver(&mut self, world: &World<'_>, msg: Msg) {
        let now = self.now;
        let node = &mut *self.node;
        let Some(overlay) = node.overlay.as_mut() else {
            return;
        };
        match msg {
            Msg::Request {
                from, id, request, ..
            } => {
                let sender = world.contacts[from as usize];
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

    /// Starts what a client asked for.
    fn local(&mut self, world: &World<'_>, local: Local) {
        let now = self.now;
        let Some(overlay) = self.node.overlay.as_mut() else {
            return;
        };
        let started = match local {
            Local::Publish {
                client,
                seq,
                record,
            } => {
                let record = match record {
                    Record::Signed(r) => r,
                    Record::Unsigned(r) => r.sign(&world.clients[client as usize].identity),
                };
                let op = overlay.publish(now, record).ok();
                (OpKind::Publish { client, seq }, op)
            }
            Local::Lookup {
                target,
                min_seq,
                id,
            } => (
                OpKind::Lookup { target, min_seq },
                Some(overlay.lookup(now, id)),
            ),
        };
        // Before the drain: a lookup answered from the local store reports at once.
        self.out.push(Output::Started(started.0, started.1));
        self.drain(world);
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
            let Some(to) = reachable(world.index, world.contacts, &rpc.to) else {
                continue;
            };
            let msg = Msg::Request {
                from: self.index,
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
            .map(|ms| self.now.0 + u64::from(ms));
        debug_assert!(at.is_none_or(|at| at >= world.end), "inside the lookahead");
        self.out.push(Output::Send(at, Box::new(msg)));
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

/// Every supernode's inputs of one window, gathered before it runs.
#[derive(Default)]
pub(crate) struct Gathered {
    /// Input list of each supernode with inputs, by position in `order`.
    inputs: Vec<Vec<(u64, Input)>>,
    /// Supernode of each input list.
    order: Vec<u32>,
    /// Position in `order` by supernode (`u32::MAX`: none yet; all `u32::MAX`
    /// between windows).
    slot: Vec<u32>,
    /// Emptied input and output lists of earlier windows, used again: growing
    /// thousands of new ones per window took a tenth of the event loop's time.
    spare_inputs: Vec<Vec<(u64, Input)>>,
    spare_outputs: Vec<Vec<Output>>,
}

/// Most emptied lists kept for use again, of each kind.
const SPARE_LISTS: usize = 4096;

impl Gathered {
    fn list(&mut self, node: u32) -> &mut Vec<(u64, Input)> {
        if self.slot.len() <= node as usize {
            self.slot.resize(node as usize + 1, u32::MAX);
        }
        let slot = &mut self.slot[node as usize];
        if *slot == u32::MAX {
            *slot = self.order.len() as u32;
            self.order.push(node);
            let list = self.spare_inputs.pop().unwrap_or_default();
            self.inputs.push(list);
        }
        &mut self.inputs[*slot as usize]
    }

    /// A message arrives at `at`.
    pub(crate) fn message(&mut self, at: u64, msg: Box<Msg>) {
        self.list(msg.receiver()).push((at, Input::Msg(msg)));
    }

    /// Supernode `node` is asked `local` at `at`.
    pub(crate) fn local(&mut self, node: u32, at: u64, local: Local) {
        self.list(node).push((at, Input::Local(local)));
    }

    /// Supernode `node` has a deadline in the window.
    pub(crate) fn wake(&mut self, node: u32) {
        self.list(node);
    }

    /// Keeps emptied lists for use again.
    fn recycle(&mut self, inputs: Vec<(u64, Input)>, outputs: Vec<Output>) {
        if self.spare_inputs.len() < SPARE_LISTS {
            self.spare_inputs.push(inputs);
        }
        if self.spare_outputs.len() < SPARE_LISTS {
            self.spare_outputs.push(outputs);
        }
    }

    /// The supernodes with inputs, in index order, each with its inputs.
    fn take(&mut self) -> (Vec<u32>, Vec<Vec<(u64, Input)>>) {
        for &node in &self.order {
            self.slot[node as usize] = u32::MAX;
        }
        let mut pairs: Vec<_> = std::mem::take(&mut self.order)
            .into_iter()
            .zip(std::mem::take(&mut self.inputs))
            .collect();
        pairs.sort_unstable_by_key(|(node, _)| *node);
        pairs.into_iter().unzip()
    }
}

impl Sim {
    /// Runs every supernode's inputs gathered for the window ending before
    /// millisecond `end` (see the module docs), then applies what they produced.
    pub(crate) fn run_window(&mut self, start: Timestamp, end: u64) {
        let (indices, inputs) = self.gathered.take();
        let mut outputs: Vec<Vec<Output>> = (0..indices.len())
            .map(|_| self.gathered.spare_outputs.pop().unwrap_or_default())
            .collect();
        let world = World {
            colluders: &self.colluders,
            index: &self.index,
            places: &self.places,
            contacts: &self.contacts,
            network: &self.network,
            clients: &self.clients,
            end,
        };
        let mut shares: Vec<Share<'_>> = pick_mut(&mut self.nodes, &indices)
            .into_iter()
            .zip(indices.iter().zip(inputs))
            .map(|(node, (&index, inputs))| Share {
                index,
                node,
                inputs,
                now: start,
                out: outputs.pop().unwrap_or_default(),
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
            .map(|s| (s.index, s.inputs, s.out, s.next_timeout, s.stores, s.rpcs))
            .collect();
        // What they report happened by the window's last millisecond.
        self.now = Timestamp(end - 1).max(self.now);
        for (index, inputs, mut out, next_timeout, stores, rpcs) in done {
            self.stats.stores[0] += stores[0];
            self.stats.stores[1] += stores[1];
            self.count_rpcs(rpcs);
            self.arm(index, next_timeout);
            for output in out.drain(..) {
                match output {
                    Output::Send(Some(at), msg) => self.enqueue(at, msg),
                    Output::Send(None, _) => self.stats.lost += 1,
                    Output::Event(event) => self.on_event(index, event),
                    Output::Started(kind, Some(op)) => {
                        self.ops.insert((index, op), kind);
                    }
                    Output::Started(_, None) => self.stats.publish_refused += 1,
                }
            }
            self.gathered.recycle(inputs, out);
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
