//! One iterative Kademlia lookup, as a pure state machine over candidate supernodes.
//!
//! The lookup knows nothing of RPC ids or time: its owner asks [`Lookup::next_queries`]
//! whom to ask next, and reports each answer or failure back.
//!
//! Termination: the lookup keeps every candidate it has heard of sorted by distance
//! to the target. Failed candidates are skipped; the `k` closest of the rest are the
//! "frontier" (`VALUE_WIDTH × k` for a value lookup: supernodes that answer without
//! the record, as colluding liars do, would otherwise fill it before the lookup
//! reaches the holders; a value lookup usually ends at its quorum long before its
//! frontier is exhausted, so the wider frontier costs little). It queries the closest not-yet-queried frontier candidates, with at
//! most `alpha` frontier queries in flight, and is done when every frontier candidate
//! has answered. A query whose candidate was pushed out of the frontier by closer
//! discoveries no longer holds the lookup up. A value lookup is also done once
//! [`VALUE_QUORUM`] holders answered with a verified record: it does not stop at the
//! first, because an old record may still be served by a holder that missed the
//! latest store (or by a liar); it keeps the highest sequence number, and its quorum
//! counts only once every supernode closer than the farthest holder has answered
//! (nobody farther is asked meanwhile). Its wait is
//! bounded like any lookup's: by the frontier and the RPC deadline.
//!
//! Disjoint paths (S/Kademlia, Baumgart & Mies 2007, §4.4): the seeds are dealt to
//! `d` paths in turn, closest first, and every candidate belongs to the path whose
//! answer named it first; a node named again by another path is not asked again.
//! Each path keeps its own frontier and its own `alpha` queries in flight, and the
//! lookup ends when every path is done (or the value quorum is reached). Colluding
//! supernodes that name only each other can capture the paths they are asked on,
//! not the others, so a record stays findable as long as one path runs through
//! honest supernodes; and the answered supernodes of all paths together give a
//! publication more (and more diverse) replicas to choose from. With `d = 1` this is
//! the plain Kademlia lookup.
//!
//! Network diversity (issue 10; S/Kademlia §4.1 and libp2p's diversity filter
//! applied to the lookup, not only to the routing table): a lookup holds at most
//! [`MAX_PER_GROUP_IN_LOOKUP`] live candidates of one network group (an IPv4 /16 or
//! IPv6 /32, [`ip_group`]; non-routable addresses are not limited), the first it hears
//! of; more from that network are ignored until one of them fails. Node ids cost
//! nothing, so Sybils can mint ids closer to a key than every honest supernode and
//! name only each other; with this limit an attacker holding `n` networks fills at
//! most `2n` places of a lookup's frontier, of the `k` closest a publication stores
//! on, and of the holders a value lookup counts towards its quorum, whatever ids it
//! mints. Off with [`Lookup::with_diversity`] (to measure what it buys).
//!
//! Depth: seeds (from our own routing table) are depth 1; a candidate first named by
//! a depth-`d` candidate is depth `d + 1`. The depth of the candidate that answered
//! is the lookup's hop count.

use super::diversity::{ip_group, IpGroup, MAX_PER_GROUP_IN_LOOKUP};
use super::FastMap;
use crate::identity::{NodeId, PeerId};
use crate::presence::{Contact, SignedPresence};
use candidates::{key_of, Candidate, Candidates, Key, State};
use std::sync::Arc;

mod candidates;

/// Not-yet-queried candidates beyond this many times `k` are dropped, farthest first,
/// so a flood of contacts in replies cannot grow a lookup without bound.
const CANDIDATES_PER_K: usize = 4;

/// Most disjoint paths a lookup runs: more would each start from fewer than one
/// seed of a routing table's closest bucket.
pub const MAX_PATHS: usize = 8;

/// A value lookup's frontier is this many times `k` wide (see the module docs).
pub const VALUE_WIDTH: usize = 2;

/// Records a value lookup collects from distinct holders before it ends (fewer if
/// the frontier runs out first).
pub const VALUE_QUORUM: usize = 3;

/// What a lookup asks each supernode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupKind {
    /// `FIND_NODE`: find the `k` closest supernodes to the target.
    FindNode,
    /// `FIND_VALUE`: find the record stored under the target.
    FindValue,
}

/// An iterative lookup of one key.
#[derive(Clone, Debug)]
pub struct Lookup {
    target: NodeId,
    kind: LookupKind,
    local: NodeId,
    k: usize,
    alpha: usize,
    paths: usize,
    /// Seeds dealt to the paths so far.
    dealt: usize,
    /// Keyed by XOR distance to the target, which is unique per node id.
    candidates: Candidates,
    /// Candidates per path (kept, so that `trim` looks at them only when a path
    /// is over its cap).
    per_path: Vec<usize>,
    /// Each candidate's key by identity. Replies name the same nodes over and over,
    /// and this spares hashing each one into its node id every time.
    keys: FastMap<PeerId, Key>,
    found: Option<(Arc<SignedPresence>, usize)>,
    /// Every holder that answered with a record, and that record's sequence number.
    /// (Their distance to the target is kept: the quorum compares it on every answer.)
    holders: Vec<(Contact, u64, Key)>,
    /// Whether the per-network limit applies (see the module docs).
    diversity: bool,
    /// Candidates that have not failed, per network (the limited ones only).
    groups: FastMap<IpGroup, usize>,
}

impl Lookup {
    /// A lookup of `target` run by the supernode at `local` (never queried), starting
    /// from `seeds`, over one path. `k` and `alpha` are raised to at least 1.
    pub fn new(
        target: NodeId,
        kind: LookupKind,
        local: NodeId,
        k: usize,
        alpha: usize,
        seeds: impl IntoIterator<Item = Contact>,
    ) -> Lookup {
        Lookup::disjoint(target, kind, local, k, alpha, 1, seeds)
    }

    /// Like [`Lookup::new`] over `paths` disjoint paths (at least 1; see the module
    /// docs). The seeds are dealt to the paths closest first.
    pub fn disjoint(
        target: NodeId,
        kind: LookupKind,
        local: NodeId,
        k: usize,
        alpha: usize,
        paths: usize,
        seeds: impl IntoIterator<Item = Contact>,
    ) -> Lookup {
        let mut lookup = Lookup {
            target,
            kind,
            local,
            k: k.max(1),
            alpha: alpha.max(1),
            paths: paths.clamp(1, MAX_PATHS),
            dealt: 0,
            candidates: Candidates::default(),
            per_path: vec![0; paths.clamp(1, MAX_PATHS)],
            // Sized for a typical lookup's candidates: growing it step by step
            // rehashed it five times per lookup.
            keys: FastMap::with_capacity_and_hasher(
                k.max(1) * paths.clamp(1, MAX_PATHS) * 2,
                Default::default(),
            ),
            found: None,
            holders: Vec::new(),
            diversity: true,
            groups: FastMap::default(),
        };
        let mut seeds: Vec<(_, Contact)> = seeds
            .into_iter()
            .map(|c| (c.node_id().distance(&target), c))
            .collect();
        seeds.sort_unstable_by_key(|(d, _)| *d);
        for (_, seed) in seeds {
            lookup.add_seed(seed);
        }
        lookup
    }

    /// The same lookup with the per-network limit on (the default) or off. Seeds
    /// already added stay; turn it off before adding any (see [`Lookup::add_seed`]).
    pub fn with_diversity(self, on: bool) -> Lookup {
        Lookup {
            diversity: on,
            ..self
        }
    }

    /// Adds `contact` as one more seed (depth 1), on the next path in turn; a
    /// contact already known is left where it is.
    pub fn add_seed(&mut self, contact: Contact) {
        self.add(contact, 1, self.dealt % self.paths);
        self.candidates.settle();
        self.dealt += 1;
        self.trim();
    }

    /// The key looked up.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// What is asked.
    pub fn kind(&self) -> LookupKind {
        self.kind
    }

    fn add(&mut self, contact: Contact, depth: usize, path: usize) {
        if let Some(key) = self.keys.get(&contact.id) {
            // Known already: only a shorter route, on its own path, to a node not
            // yet asked matters.
            if let Some(held) = self.candidates.get_mut(key) {
                if held.state == State::Waiting && held.path() == path && depth < held.depth() {
                    held.depth = u16::try_from(depth).unwrap_or(u16::MAX);
                }
            }
            return;
        }
        let id = contact.node_id();
        if id == self.local {
            return;
        }
        let group = ip_group(contact.addr.ip()).filter(|_| self.diversity);
        if let Some(group) = group {
            let held = self.groups.entry(group).or_default();
            if *held >= MAX_PER_GROUP_IN_LOOKUP {
                return;
            }
            *held += 1;
        }
        let key = key_of(&id, &self.target);
        self.keys.insert(contact.id, key);
        self.per_path[path] += 1;
        self.candidates.push(key, contact, group, depth, path);
    }

    /// A candidate of `group` failed or left: another of its network may come in.
    fn release(&mut self, group: Option<IpGroup>) {
        if let Some(group) = group {
            if let Some(held) = self.groups.get_mut(&group) {
                *held = held.saturating_sub(1);
            }
        }
    }

    /// Queried candidates stay, so a failed or answered node is never asked twice.
    /// The cap holds per path.
    fn trim(&mut self) {
        let cap = self.k.saturating_mul(CANDIDATES_PER_K);
        if self.per_path.iter().all(|&n| n <= cap) {
            return;
        }
        let count = &mut self.per_path;
        let mut victims = Vec::new();
        for c in self.candidates.values().rev() {
            if c.state == State::Waiting && count[c.path()] > cap {
                count[c.path()] -= 1;
                victims.push(c.key);
            }
        }
        for key in victims {
            if let Some(c) = self.candidates.remove(&key) {
                let (contact, group) = self.candidates.at(c.slot);
                self.keys.remove(&contact.id);
                self.release(group);
            }
        }
    }

    fn width(&self) -> usize {
        match self.kind {
            LookupKind::FindNode => self.k,
            LookupKind::FindValue => self.k.saturating_mul(VALUE_WIDTH),
        }
    }

    /// The supernodes to ask now; each is marked in flight. Empty when the lookup
    /// is done or waiting for answers.
    pub fn next_queries(&mut self) -> Vec<Contact> {
        let chosen = self.askable();
        let mut out = Vec::new();
        for key in chosen {
            if let Some(c) = self.candidates.get_mut(&key) {
                c.state = State::InFlight;
                let slot = c.slot;
                out.push(self.candidates.at(slot).0);
            }
        }
        out
    }

    /// The keys of the candidates to ask now (see [`Lookup::next_queries`]): on each
    /// path, the closest waiting frontier candidates (within the quorum's bound, once
    /// there is one), as many as leave at most `alpha` of its frontier in flight.
    fn askable(&self) -> Vec<Key> {
        if self.quorum() {
            return Vec::new();
        }
        let bound = self.quorum_bound();
        let width = self.width();
        // One pass over the candidates, closest first, for every path at once (this
        // runs after every answer), counting on the stack.
        let mut seen = [0usize; MAX_PATHS];
        let mut in_flight = [0usize; MAX_PATHS];
        let mut waiting = [0usize; MAX_PATHS];
        let mut picked: Vec<(usize, Key)> = Vec::new();
        let mut open = self.paths;
        for c in self.candidates.values() {
            if c.state == State::Failed || seen[c.path()] >= width {
                continue;
            }
            seen[c.path()] += 1;
            match c.state {
                State::InFlight => in_flight[c.path()] += 1,
                State::Waiting
                    if bound.is_none_or(|b| c.key < b) && waiting[c.path()] < self.alpha =>
                {
                    waiting[c.path()] += 1;
                    picked.push((c.path(), c.key));
                }
                _ => {}
            }
            if seen[c.path()] == width {
                open -= 1;
                if open == 0 {
                    break;
                }
            }
        }
        // Each path's closest waiting candidates, as many as it has room in flight
        // for; path by path.
        let mut taken = [0usize; MAX_PATHS];
        picked.retain(|&(path, _)| {
            let room = taken[path] < self.alpha.saturating_sub(in_flight[path]);
            taken[path] += usize::from(room);
            room
        });
        picked.sort_by_key(|&(path, _)| path);
        picked.into_iter().map(|(_, key)| key).collect()
    }

    /// Whether the lookup has finished (see the module docs): the quorum is reached,
    /// every path's frontier has answered, or nothing is in flight and nobody is left
    /// to ask. The last covers a value lookup whose quorum waits on a candidate
    /// outside its path's frontier (so never asked) while another path's frontier
    /// waits on candidates beyond the quorum's bound (so never asked either): it would
    /// otherwise wait forever.
    pub fn is_done(&self) -> bool {
        self.quorum()
            || self.frontiers_answered()
            || (!self.candidates.values().any(|c| c.state == State::InFlight)
                && self.askable().is_empty())
    }

    /// Whether every candidate of every path's frontier has answered (one pass,
    /// stopping at the first that has not).
    fn frontiers_answered(&self) -> bool {
        let width = self.width();
        let mut seen = [0usize; MAX_PATHS];
        for c in self.candidates.values() {
            if c.state == State::Failed || seen[c.path()] >= width {
                continue;
            }
            if c.state != State::Answered {
                return false;
            }
            seen[c.path()] += 1;
        }
        true
    }

    /// [`VALUE_QUORUM`] holders answered, and no supernode closer to the target than
    /// the farthest of them is still to answer: under churn, supernodes just past the
    /// `k` closest keep older copies until they expire, and a quorum of those answering
    /// first must not outvote the closest holders.
    fn quorum(&self) -> bool {
        self.quorum_bound().is_some_and(|farthest| {
            !self
                .candidates
                .closer_than(&farthest)
                .iter()
                .any(|c| matches!(c.state, State::Waiting | State::InFlight))
        })
    }

    /// Once [`VALUE_QUORUM`] holders answered, the distance of the farthest of them:
    /// only supernodes closer than that are still worth asking.
    fn quorum_bound(&self) -> Option<Key> {
        if self.holders.len() < VALUE_QUORUM {
            return None;
        }
        self.holders.iter().map(|(_, _, distance)| *distance).max()
    }

    fn in_flight(&mut self, from: &PeerId) -> Option<&mut Candidate> {
        let key = self.keys.get(from)?;
        self.candidates.in_flight(key, from)
    }

    /// `from` answered with the supernodes it knows closest to the target. The
    /// caller has already refused lists longer than the protocol allows.
    pub fn on_nodes(&mut self, from: &PeerId, contacts: &[Contact]) {
        let Some(c) = self.in_flight(from) else {
            return;
        };
        c.state = State::Answered;
        let depth = c.depth().saturating_add(1);
        let path = c.path();
        for contact in contacts {
            self.add(*contact, depth, path);
        }
        self.candidates.settle();
        self.trim();
    }

    /// `from` answered with a record the caller has verified and matched to the
    /// target. The highest sequence number wins if several arrive.
    pub fn on_value(&mut self, from: &PeerId, record: impl Into<Arc<SignedPresence>>) {
        let Some(c) = self.in_flight(from) else {
            return;
        };
        c.state = State::Answered;
        let (slot, depth) = (c.slot, c.depth());
        let contact = self.candidates.at(slot).0;
        self.held_by(contact, record.into(), depth);
    }

    /// The local supernode `me` holds `record` (verified, of the target): it counts
    /// as one holder (hop 0) and the lookup goes on to its quorum, because a local
    /// copy may be older than the one the key's closest supernodes hold.
    pub fn on_local_value(&mut self, me: Contact, record: impl Into<Arc<SignedPresence>>) {
        self.held_by(me, record.into(), 0);
    }

    /// `holder`, at `depth`, holds `record`: the highest sequence number wins.
    fn held_by(&mut self, holder: Contact, record: Arc<SignedPresence>, depth: usize) {
        let distance = match self.keys.get(&holder.id) {
            Some(key) => *key,
            None => key_of(&holder.node_id(), &self.target),
        };
        self.holders.push((holder, record.record.seq, distance));
        let better = self
            .found
            .as_ref()
            .is_none_or(|(held, _)| record.record.seq > held.record.seq);
        if better {
            self.found = Some((record, depth));
        }
    }

    /// The query to `from` failed, timed out, or was answered uselessly.
    pub fn on_failure(&mut self, from: &PeerId) {
        if let Some(c) = self.in_flight(from) {
            c.state = State::Failed;
            let slot = c.slot;
            let group = self.candidates.at(slot).1;
            self.release(group);
        }
    }

    /// The record found, if any.
    pub fn found(&self) -> Option<&SignedPresence> {
        self.found.as_ref().map(|(record, _)| &**record)
    }

    /// Holders that answered with an older record than the one found: they missed
    /// a store, and the caller may send them the newest.
    pub fn stale_holders(&self) -> Vec<Contact> {
        let Some((best, _)) = &self.found else {
            return Vec::new();
        };
        self.holders
            .iter()
            .filter(|(c, seq, _)| *seq < best.record.seq && c.node_id() != self.local)
            .map(|(c, _, _)| *c)
            .collect()
    }

    /// Takes the record found, if any.
    pub fn take_found(&mut self) -> Option<Arc<SignedPresence>> {
        self.found.take().map(|(record, _)| record)
    }

    /// The hop count (see the module docs): the depth of the supernode that returned
    /// the record, else of the deepest one that answered.
    pub fn hops(&self) -> usize {
        match &self.found {
            Some((_, depth)) => *depth,
            None => self
                .candidates
                .values()
                .filter(|c| c.state == State::Answered)
                .map(Candidate::depth)
                .max()
                .unwrap_or(0),
        }
    }

    /// Up to `n` supernodes that answered, closest to the target first.
    pub fn closest_answered(&self, n: usize) -> Vec<Contact> {
        self.candidates
            .values()
            .filter(|c| c.state == State::Answered)
            .take(n)
            .map(|c| self.candidates.at(c.slot).0)
            .collect()
    }
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
