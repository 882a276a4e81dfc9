//! The operations an [`Overlay`] runs: a caller's publish or lookup, or the
//! machine's own join, bucket refresh and republication.
//!
//! Each runs an iterative [`Lookup`]; a publish or republication then sends `Store`
//! to the `k` closest supernodes that answered. A republication also stores to the
//! `k` closest in our own table at once, before its lookup: the other holders sit
//! there, and reaching them within one round trip postpones their own
//! republication of the same record (see `Overlay::republish_at`). Each RPC carries
//! the operation it belongs to, so its reply, or its deadline passing, moves the
//! right operation along.

use super::{Overlay, Pending, Purpose};
use crate::identity::{NodeId, PeerId};
use crate::messages::{SupernodeReply, SupernodeToSupernode, MAX_CONTACTS};
use crate::overlay::lookup::{Lookup, LookupKind};
use crate::overlay::{OpId, OverlayEvent, RpcFailure};
use crate::presence::{Contact, SignedPresence};
use crate::time::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// How many times `k` further answered supernodes (of all the lookup's disjoint
/// paths) a publication keeps in reserve for stores that fail or are refused:
/// colluding liars refuse every store, and each refusal moves on to the next.
const SPARE_PER_K: usize = 3;

pub(super) enum Goal {
    /// A caller's lookup; reports `LookupDone`.
    Find,
    /// A caller's publish; reports `Published`.
    Publish(Arc<SignedPresence>),
    /// Our periodic re-replication of a held record; silent.
    Republish(Arc<SignedPresence>),
    /// The self-lookup after joining; refreshes every bucket when done.
    Join,
    /// Keeps a bucket populated; silent.
    Refresh,
}

/// A caller's lookup or publish waiting for a first peer (see `Overlay::expect_join`).
pub(super) struct Parked {
    op: OpId,
    target: NodeId,
    kind: LookupKind,
    goal: Goal,
    /// When it stops waiting and runs with whatever the table holds then.
    pub(super) until: Timestamp,
}

pub(super) struct Operation {
    goal: Goal,
    /// Running until the lookup is done.
    lookup: Option<Lookup>,
    /// `Store` RPCs sent and not yet answered or failed.
    outstanding: usize,
    /// `Stored` replies.
    stored: usize,
    /// Everyone a `Store` went to, so no one gets it twice.
    stored_to: Vec<PeerId>,
    /// Supernodes that answered the lookup beyond the `k` closest, closest last:
    /// each failed or refused `Store` is sent on to the next of them, so a
    /// publication reaches `k` replicas even where some supernodes refuse or drop.
    spare: Vec<Contact>,
}

impl Overlay {
    pub(super) fn start_lookup(
        &mut self,
        now: Timestamp,
        target: NodeId,
        kind: LookupKind,
        goal: Goal,
    ) -> OpId {
        let op = self.new_op();
        // A publication is stored here already, and handed over to the first peer.
        let wait = match goal {
            Goal::Find => self.awaiting_join || now < self.newly_started_until,
            Goal::Publish(_) => self.awaiting_join,
            _ => false,
        };
        if wait && self.table.is_empty() {
            let until = now + self.config.rpc_timeout;
            self.parked.push_back(Parked {
                op,
                target,
                kind,
                goal,
                until,
            });
        } else {
            self.launch(now, op, target, kind, goal);
        }
        op
    }

    /// Counts our own copy `record` as one holder of value lookup `op`, if it runs.
    pub(super) fn add_local_value(&mut self, op: OpId, record: Arc<SignedPresence>) {
        let me = self.me;
        if let Some(lookup) = self.ops.get_mut(&op).and_then(|o| o.lookup.as_mut()) {
            lookup.on_local_value(me, record);
        }
    }

    /// Adds `contact` to a running join's self-lookup; false if none runs.
    pub(super) fn join_also(&mut self, now: Timestamp, contact: Contact) -> bool {
        let running = self
            .ops
            .iter_mut()
            .find_map(|(op, o)| match (&o.goal, &mut o.lookup) {
                (Goal::Join, Some(lookup)) => Some((*op, lookup)),
                _ => None,
            });
        let Some((op, lookup)) = running else {
            return false;
        };
        lookup.add_seed(contact);
        self.advance(now, op);
        true
    }

    /// Starts the operations parked for the join: those due by `due`, or all.
    pub(super) fn unpark(&mut self, now: Timestamp, due: Option<Timestamp>) {
        while let Some(p) = self.parked.front() {
            if due.is_some_and(|t| p.until > t) {
                break;
            }
            if let Some(p) = self.parked.pop_front() {
                self.launch(now, p.op, p.target, p.kind, p.goal);
            }
        }
    }

    fn launch(&mut self, now: Timestamp, op: OpId, target: NodeId, kind: LookupKind, goal: Goal) {
        self.table.touch(&target, now);
        let seeds = self.table.closest(&target, self.config.k, |_| true);
        let early = match &goal {
            Goal::Republish(record) => Some((record.clone(), seeds.clone())),
            _ => None,
        };
        // Republication, the one lookup that runs per record, stays one path: it
        // stores to the holders already known first (see the module docs), and the
        // publisher's own refresh is disjoint.
        let paths = match goal {
            Goal::Republish(_) => 1,
            Goal::Publish(_) => self.config.publish_paths,
            Goal::Find | Goal::Join | Goal::Refresh => self.config.disjoint_paths,
        };
        // The limit is set before the seeds go in (closest first, as `disjoint` deals
        // them): it applies to them too.
        let mut lookup = Lookup::disjoint(
            target,
            kind,
            self.my_id,
            self.config.k,
            self.config.alpha,
            paths,
            [],
        )
        .with_diversity(self.config.ip_diversity && self.config.lookup_diversity);
        for seed in seeds {
            lookup.add_seed(seed);
        }
        let operation = Operation {
            goal,
            lookup: Some(lookup),
            outstanding: 0,
            stored: 0,
            stored_to: Vec::new(),
            spare: Vec::new(),
        };
        self.ops.insert(op, operation);
        if let Some((record, targets)) = early {
            self.store_to(now, op, &record, &targets);
        }
        self.advance(now, op);
    }

    /// Sends `record` to each of `targets` not yet sent it, on behalf of `op`.
    fn store_to(
        &mut self,
        now: Timestamp,
        op: OpId,
        record: &Arc<SignedPresence>,
        targets: &[Contact],
    ) {
        let Some(operation) = self.ops.get_mut(&op) else {
            return;
        };
        let fresh: Vec<Contact> = targets
            .iter()
            .filter(|c| !operation.stored_to.contains(&c.id))
            .copied()
            .collect();
        operation.stored_to.extend(fresh.iter().map(|c| c.id));
        operation.outstanding += fresh.len();
        for to in fresh {
            let request = SupernodeToSupernode::Store(Arc::clone(record));
            self.send(now, to, request, Purpose::Store(op));
        }
    }

    /// Sends the queries `op`'s lookup wants, and moves on once it is done.
    fn advance(&mut self, now: Timestamp, op: OpId) {
        let Some(lookup) = self.ops.get_mut(&op).and_then(|o| o.lookup.as_mut()) else {
            return;
        };
        let queries = lookup.next_queries();
        let target = lookup.target();
        let request = match lookup.kind() {
            LookupKind::FindNode => SupernodeToSupernode::FindNode(target),
            LookupKind::FindValue => SupernodeToSupernode::FindValue(target),
        };
        let done = lookup.is_done();
        for to in queries {
            self.send(now, to, request.clone(), Purpose::Lookup(op));
        }
        if done {
            self.finish_search(now, op);
        }
    }

    fn finish_search(&mut self, now: Timestamp, op: OpId) {
        let Some(mut lookup) = self.ops.get_mut(&op).and_then(|o| o.lookup.take()) else {
            return;
        };
        let Some(operation) = self.ops.get(&op) else {
            return;
        };
        match &operation.goal {
            Goal::Find => {
                let hops = lookup.hops();
                let stale = lookup.stale_holders();
                let record = lookup.take_found();
                if let Some(newest) = &record {
                    // Holders that served an older record missed a store: repair
                    // them now (the replies are only counted, like any store),
                    // and our own copy if it is one of them.
                    self.store_to(now, op, newest, &stale);
                    let key = newest.record.id.record_key();
                    if let Some(ours) = self.store.get(now, &key).cloned() {
                        self.take_newer(now, &ours, Arc::clone(newest));
                    }
                }
                let record = record.map(Arc::unwrap_or_clone);
                self.events
                    .push_back(OverlayEvent::LookupDone { op, record, hops });
            }
            Goal::Join => self.refresh(now, Duration::ZERO),
            Goal::Refresh => {}
            Goal::Publish(record) | Goal::Republish(record) => {
                let record = record.clone();
                let k = self.config.k;
                let mut targets = lookup.closest_answered(k.saturating_mul(SPARE_PER_K + 1));
                let mut spare = targets.split_off(k.min(targets.len()));
                spare.reverse();
                if let Some(operation) = self.ops.get_mut(&op) {
                    operation.spare = spare;
                }
                self.store_to(now, op, &record, &targets);
            }
        }
        self.finish_if_done(op);
    }

    fn finish_if_done(&mut self, op: OpId) {
        let Some(operation) = self.ops.get(&op) else {
            return;
        };
        if operation.lookup.is_some() || operation.outstanding > 0 {
            return;
        }
        if let Goal::Publish(_) = operation.goal {
            let replicas = operation.stored.saturating_add(1);
            self.events
                .push_back(OverlayEvent::Published { op, replicas });
        }
        self.ops.remove(&op);
    }

    /// An RPC ended, with a reply or a failure.
    pub(super) fn complete(
        &mut self,
        now: Timestamp,
        pending: Pending,
        reply: Result<SupernodeReply, RpcFailure>,
    ) {
        match reply {
            Ok(_) => self.saw(now, pending.to),
            Err(_) => self.table.failed(&pending.to),
        }
        match pending.purpose {
            Purpose::Lookup(op) => self.on_lookup_reply(now, op, pending.to, reply),
            Purpose::Store(op) => self.on_store_reply(now, op, reply),
            Purpose::Leave => self.on_leave_reply(&reply),
            Purpose::Liveness | Purpose::HandOver => {}
        }
    }

    fn on_lookup_reply(
        &mut self,
        now: Timestamp,
        op: OpId,
        from: Contact,
        reply: Result<SupernodeReply, RpcFailure>,
    ) {
        let Some(lookup) = self.ops.get_mut(&op).and_then(|o| o.lookup.as_mut()) else {
            // The lookup already ended; the routing table has learned from the reply.
            return;
        };
        match reply {
            Ok(SupernodeReply::Nodes(contacts)) if contacts.len() <= MAX_CONTACTS => {
                lookup.on_nodes(&from.id, &contacts)
            }
            Ok(SupernodeReply::Value(record))
                if lookup.kind() == LookupKind::FindValue
                    && record.record.id.record_key() == lookup.target() =>
            {
                match self.verifier.verify(now, record) {
                    Ok(record) => lookup.on_value(&from.id, record),
                    Err(error) => {
                        lookup.on_failure(&from.id);
                        self.refused(Some(from), error);
                    }
                }
            }
            // Failures, oversized lists and answers to another question alike.
            _ => lookup.on_failure(&from.id),
        }
        self.advance(now, op);
    }

    fn on_store_reply(
        &mut self,
        now: Timestamp,
        op: OpId,
        reply: Result<SupernodeReply, RpcFailure>,
    ) {
        let Some(operation) = self.ops.get_mut(&op) else {
            return;
        };
        operation.outstanding = operation.outstanding.saturating_sub(1);
        if !matches!(reply, Ok(SupernodeReply::Stored))
            && operation.stored + operation.outstanding < self.config.k
        {
            let next = std::iter::from_fn(|| operation.spare.pop())
                .find(|c| !operation.stored_to.contains(&c.id));
            if let (Some(to), Goal::Publish(record) | Goal::Republish(record)) =
                (next, &operation.goal)
            {
                let record = record.clone();
                self.store_to(now, op, &record, &[to]);
            }
        }
        let Some(operation) = self.ops.get_mut(&op) else {
            return;
        };
        match reply {
            Ok(SupernodeReply::Stored) => operation.stored += 1,
            Ok(SupernodeReply::Superseded(newer)) => {
                if let Goal::Republish(record) | Goal::Publish(record) = &operation.goal {
                    // A replica holds a newer record and proved it: if it verifies
                    // and supersedes ours, hold it instead. A bare or forged claim
                    // changes nothing.
                    let ours = record.clone();
                    self.take_newer(now, &ours, newer);
                }
            }
            _ => {}
        }
        self.finish_if_done(op);
    }

    /// Replaces our copy of `ours` with `newer` if `newer` is a valid, newer record
    /// of the same identity (verification and supersession are checked by the store).
    fn take_newer(&mut self, now: Timestamp, ours: &SignedPresence, newer: Arc<SignedPresence>) {
        if newer.record.id != ours.record.id || newer.record.seq <= ours.record.seq {
            return;
        }
        let key = ours.record.id.record_key();
        let at = self.republish_at(now, &key);
        if let Err(error) = self.store.offer(now, newer, at) {
            self.refused(None, error);
        }
    }
}
