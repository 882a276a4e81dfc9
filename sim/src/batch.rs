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

use crate::world::{Msg, Sim, Supernode};
use parley_proto::messages::{SupernodeReply, SupernodeToSupernode};
use parley_proto::overlay::{OutgoingRpc, OverlayEvent, RpcId};
use parley_proto::{PeerId, Timestamp};
use rayon::prelude::*;
use std::collections::HashSet;

/// Below this many receiving supernodes a batch runs on the calling thread: handing
/// work to other cores costs more than it saves.
const PARALLEL_FROM: usize = 24;

/// What a supernode produced while taking its share, in the order produced.
enum Output {
    /// An RPC it sends.
    Rpc(OutgoingRpc),
    /// Its answer to a request from supernode `to`.
    Reply {
        to: u32,
        id: RpcId,
        reply: SupernodeReply,
    },
    /// Something it reports.
    Event(OverlayEvent),
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
}

impl Share<'_> {
    fn run(&mut self, now: Timestamp, colluders: &HashSet<PeerId>) {
        let node = &mut *self.node;
        for msg in std::mem::take(&mut self.msgs) {
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
                        Some(liar) => {
                            liar.answer(overlay, now, sender, request, colluders, &mut node.rng)
                        }
                        None => Some(overlay.handle_request(now, sender, request)),
                    };
                    drain(overlay, &mut self.out);
                    if let Some(reply) = reply {
                        self.out.push(Output::Reply {
                            to: from,
                            id,
                            reply,
                        });
                    }
                }
                Msg::Reply { id, reply, .. } => {
                    overlay.handle_reply(now, id, Ok(reply));
                    drain(overlay, &mut self.out);
                }
            }
        }
        self.next_timeout = node.overlay.as_ref().and_then(|o| o.poll_timeout());
    }
}

fn drain(overlay: &mut parley_proto::overlay::Overlay, out: &mut Vec<Output>) {
    while let Some(rpc) = overlay.poll_transmit() {
        out.push(Output::Rpc(rpc));
    }
    while let Some(event) = overlay.poll_event() {
        out.push(Output::Event(event));
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
        let now = self.now;
        let colluders = &self.colluders;
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
            })
            .collect();
        if shares.len() >= PARALLEL_FROM {
            shares
                .par_iter_mut()
                .with_min_len(4)
                .for_each(|share| share.run(now, colluders));
        } else {
            shares.iter_mut().for_each(|share| share.run(now, colluders));
        }
        let done: Vec<(u32, Vec<Output>, Option<Timestamp>, [u64; 2])> = shares
            .into_iter()
            .map(|s| (s.index, s.out, s.next_timeout, s.stores))
            .collect();
        for (index, out, next_timeout, stores) in done {
            self.stats.stores[0] += stores[0];
            self.stats.stores[1] += stores[1];
            self.arm(index, next_timeout);
            for output in out {
                match output {
                    Output::Rpc(rpc) => self.send_rpc(index, rpc),
                    Output::Reply { to, id, reply } => self.send_reply(index, to, id, reply),
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
