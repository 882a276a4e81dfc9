//! The [`Overlay`] machine: one supernode's part of the DHT. This module holds the
//! machine's state, its public interface, request handling and timers; the
//! operations it runs (lookups, publication, republication) are in `operations`.

use super::in_flight::InFlight;
use super::lookup::LookupKind;
use super::routing::RoutingTable;
use super::store::RecordStore;
use super::verified::Verifier;
use super::{FastMap, OpId, OutgoingRpc, OverlayConfig, OverlayEvent, RpcFailure, RpcId};
use crate::identity::{NodeId, PeerId};
use crate::messages::{Refusal, RefusalCode, SupernodeReply, SupernodeToSupernode, MAX_CONTACTS};
use crate::presence::{Contact, RecordError, SignedPresence};
use crate::time::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

mod leave;
mod operations;

use leave::Leaving;
use operations::{Goal, Operation, Parked};

/// Refresh timers never fire more often than this, whatever the configuration says.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(1);

enum Purpose {
    Lookup(OpId),
    Store(OpId),
    /// Is a full bucket's least-recently-seen entry still there?
    Liveness,
    /// A record handed over to a newcomer.
    HandOver,
    /// A record handed over as we leave (see [`Overlay::leave`]).
    Leave,
}

struct Pending {
    to: Contact,
    purpose: Purpose,
}

/// One supernode's DHT: routing table, record store and the operations in progress.
pub struct Overlay {
    me: Contact,
    my_id: NodeId,
    config: OverlayConfig,
    rng: StdRng,
    verifier: Verifier,
    table: RoutingTable,
    store: RecordStore,
    ops: FastMap<OpId, Operation>,
    /// RPCs in flight with their deadlines, in the order sent, which is their
    /// deadlines' order: every RPC gets the same `rpc_timeout` and `now` does not go
    /// back (if it did, an RPC would time out no earlier than the one sent before it).
    rpcs: InFlight<Pending>,
    transmit: VecDeque<OutgoingRpc>,
    events: VecDeque<OverlayEvent>,
    next_op: u64,
    next_refresh: Timestamp,
    /// A join is on its way (see [`Overlay::expect_join`]).
    awaiting_join: bool,
    /// Until then a supernode that knows no other is newly started, and others may
    /// be about to join through it.
    newly_started_until: Timestamp,
    /// Callers' operations waiting for a first peer, oldest first.
    parked: VecDeque<Parked>,
    /// A graceful leave in progress or done (see [`Overlay::leave`]).
    leaving: Option<Leaving>,
}

impl Overlay {
    /// The overlay of the supernode `me`. `seed` drives every random choice
    /// (republication jitter, refresh targets), so equal inputs give equal runs.
    pub fn new(me: Contact, config: OverlayConfig, now: Timestamp, seed: u64) -> Overlay {
        Overlay::with_verifier(me, config, now, seed, Verifier::Alone)
    }

    /// Like [`Overlay::new`], checking records from the network with `verifier`
    /// (a simulation shares one verified copy of each record between its overlays).
    pub fn with_verifier(
        me: Contact,
        config: OverlayConfig,
        now: Timestamp,
        seed: u64,
        verifier: Verifier,
    ) -> Overlay {
        let config = OverlayConfig {
            k: config.k.max(1),
            alpha: config.alpha.max(1),
            disjoint_paths: config.disjoint_paths.max(1),
            publish_paths: config.publish_paths.max(1),
            ..config
        };
        let my_id = me.node_id();
        let newly_started_until = now + config.rpc_timeout;
        Overlay {
            me,
            my_id,
            table: RoutingTable::new(my_id, config.k, now).with_diversity(config.ip_diversity),
            next_refresh: now + config.refresh_interval.max(MIN_REFRESH_GAP),
            config,
            rng: StdRng::seed_from_u64(seed),
            store: RecordStore::with_verifier(verifier.clone()),
            verifier,
            ops: FastMap::default(),
            rpcs: InFlight::new(1),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            next_op: 0,
            awaiting_join: false,
            newly_started_until,
            parked: VecDeque::new(),
            leaving: None,
        }
    }

    /// Tells the overlay that the shell is connecting to a supernode to [`join`]
    /// through. Until then, a caller's lookup or publish that finds the routing
    /// table empty waits for the join, at most `rpc_timeout`, instead of ending at
    /// once with nothing found (or with only the local copy stored): a supernode
    /// accepts clients as soon as it listens, and their first requests would
    /// otherwise race its join. During its first `rpc_timeout` a supernode lets
    /// lookups wait without being told, until any supernode talks to it: one started
    /// alongside it may be joining through it, holding records its own clients
    /// published meanwhile.
    ///
    /// [`join`]: Overlay::join
    pub fn expect_join(&mut self) {
        self.awaiting_join = true;
    }

    /// A supernode we were told to join through (the shell already connected and
    /// learned its key). Adds it and starts a self-lookup to fill the table; when
    /// that ends, every bucket beyond our closest neighbour is refreshed. A join
    /// while that self-lookup runs (several `--join` addresses) adds its contact to
    /// it as a seed instead of starting another: one self-lookup and one refresh,
    /// however many bootstraps.
    pub fn join(&mut self, now: Timestamp, contact: Contact) {
        self.awaiting_join = false;
        self.saw(now, contact);
        if !self.join_also(now, contact) {
            self.start_lookup(now, self.my_id, LookupKind::FindNode, Goal::Join);
        }
    }

    /// An incoming DHT request from the authenticated supernode `from`; returns the
    /// reply at once. Also adds `from` to the routing table.
    pub fn handle_request(
        &mut self,
        now: Timestamp,
        from: Contact,
        request: SupernodeToSupernode,
    ) -> SupernodeReply {
        self.saw(now, from);
        match request {
            SupernodeToSupernode::Ping => SupernodeReply::Pong,
            SupernodeToSupernode::FindNode(target) => {
                SupernodeReply::Nodes(self.closest_for(&target, &from))
            }
            SupernodeToSupernode::FindValue(key) => match self.store.get(now, &key) {
                Some(record) => SupernodeReply::Value(Arc::clone(record)),
                None => SupernodeReply::Nodes(self.closest_for(&key, &from)),
            },
            SupernodeToSupernode::Store(record) => {
                let key = record.record.id.record_key();
                if self.store.is_full() && !self.store.contains(&key) {
                    return SupernodeReply::Refused(Refusal {
                        code: RefusalCode::Overloaded,
                        message: "record store full".into(),
                    });
                }
                let at = self.republish_at(now, &key);
                match self.store.offer(now, record, at) {
                    Ok(_) => SupernodeReply::Stored,
                    Err(error @ RecordError::Stale { .. }) => {
                        // Prove it: the sender checks the newer record itself.
                        let held = self.store.get(now, &key).cloned();
                        let refusal = Refusal::from(&error);
                        self.refused(Some(from), error);
                        match held {
                            Some(held) => SupernodeReply::Superseded(held),
                            None => SupernodeReply::Refused(refusal),
                        }
                    }
                    Err(error) => {
                        let refusal = Refusal::from(&error);
                        self.refused(Some(from), error);
                        SupernodeReply::Refused(refusal)
                    }
                }
            }
        }
    }

    /// The reply (or failure) for an RPC that [`Overlay::poll_transmit`] handed out.
    /// Unknown and late ids are ignored.
    pub fn handle_reply(
        &mut self,
        now: Timestamp,
        id: RpcId,
        reply: Result<SupernodeReply, RpcFailure>,
    ) {
        let Some(pending) = self.rpcs.remove(id.0) else {
            return;
        };
        self.complete(now, pending, reply);
    }

    /// Runs every timer due at `now`: RPC deadlines, record expiry, republication
    /// and bucket refresh.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(pending) = self.rpcs.pop_due(now) {
            self.complete(now, pending, Err(RpcFailure::Timeout));
        }
        self.unpark(now, Some(now));
        self.store.expire(now);
        if self.leaving.is_some() {
            // Leaving: answer and hand over, start nothing new.
            return;
        }
        // A record with less than half an interval left would barely outlive the
        // lookup that re-replicates it; its owner will have published a new one.
        let min_life = self.config.republish_interval / 2;
        for record in self.store.take_due(now, min_life) {
            let key = record.record.id.record_key();
            let at = self.republish_at(now, &key);
            self.store.schedule_republish(&key, Some(at));
            // With k supernodes we know of closer to the key than us, the replicas
            // are theirs to maintain; we keep our copy only to answer lookups.
            if self.table.closer_than_me(&key, self.config.k) < self.config.k {
                self.start_lookup(now, key, LookupKind::FindNode, Goal::Republish(record));
            }
        }
        if now >= self.next_refresh {
            self.refresh(now, self.config.refresh_interval);
        }
    }

    /// When [`Overlay::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let rpc = self.rpcs.next_deadline();
        let parked = self.parked.front().map(|p| p.until);
        if self.leaving.is_some() {
            // No republication or refresh any more: only RPCs and parked requests.
            return rpc.into_iter().chain(parked).min();
        }
        [
            rpc,
            parked,
            self.store.next_deadline(),
            Some(self.next_refresh),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next RPC for the shell to send.
    pub fn poll_transmit(&mut self) -> Option<OutgoingRpc> {
        self.transmit.pop_front()
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<OverlayEvent> {
        self.events.pop_front()
    }

    /// A client attached to this supernode publishes its record. A record that does
    /// not verify or does not supersede the one held is refused at once. Otherwise
    /// it is stored locally and replicated with `Store` to the `k` closest supernodes
    /// an iterative `FIND_NODE` finds; completes with [`OverlayEvent::Published`].
    pub fn publish(&mut self, now: Timestamp, record: SignedPresence) -> Result<OpId, RecordError> {
        let key = record.record.id.record_key();
        let at = self.republish_at(now, &key);
        self.store.offer(now, record, at)?;
        let shared = self
            .store
            .get(now, &key)
            .cloned()
            .ok_or(RecordError::Expired {
                expires_at: now,
                now,
            })?;
        Ok(self.start_lookup(now, key, LookupKind::FindNode, Goal::Publish(shared)))
    }

    /// Finds the record of `id` by an iterative `FIND_VALUE`; completes with
    /// [`OverlayEvent::LookupDone`]. A record held locally counts as one holder
    /// (hop 0) but does not end the lookup: this supernode may hold a copy older
    /// than the one the key's closest supernodes hold (it was an attachment or a
    /// holder before the client published again). With nobody to ask, the local
    /// record is the answer at once.
    pub fn lookup(&mut self, now: Timestamp, id: PeerId) -> OpId {
        let key = id.record_key();
        let local = self.store.get(now, &key).cloned();
        if let (Some(record), true) = (&local, self.table.is_empty()) {
            let op = self.new_op();
            self.events.push_back(OverlayEvent::LookupDone {
                op,
                record: Some(SignedPresence::clone(record)),
                hops: 0,
            });
            return op;
        }
        let op = self.start_lookup(now, key, LookupKind::FindValue, Goal::Find);
        if let Some(record) = local {
            self.add_local_value(op, record);
        }
        op
    }

    /// Up to `n` known live supernodes (for clients' host caches), excluding me,
    /// most recently heard from first.
    pub fn known_supernodes(&self, n: usize) -> Vec<Contact> {
        self.table.live(n)
    }

    /// Supernodes in the routing table.
    pub fn routing_table_len(&self) -> usize {
        self.table.len()
    }

    /// Records held.
    pub fn stored_records(&self) -> usize {
        self.store.len()
    }

    /// The record held under `key`, if any and unexpired (for diagnostics: which
    /// supernodes hold what).
    pub fn stored(&self, now: Timestamp, key: &NodeId) -> Option<&Arc<SignedPresence>> {
        self.store.get(now, key)
    }

    /// This supernode.
    pub fn me(&self) -> Contact {
        self.me
    }

    /// RPCs handed out and not yet answered or timed out.
    pub fn rpcs_in_flight(&self) -> usize {
        self.rpcs.len()
    }

    /// Operations (the caller's and the machine's own) still running.
    pub fn operations_in_progress(&self) -> usize {
        self.ops.len() + self.parked.len()
    }

    /// The contacts to name in a reply to `asker`: never the asker itself, and not
    /// entries whose last RPC failed. Those are probably dead, and right after a crash
    /// naming them would crowd live nodes out of everyone's `k` closest.
    fn closest_for(&self, target: &NodeId, asker: &Contact) -> Vec<Contact> {
        let n = self.config.k.min(MAX_CONTACTS);
        self.table
            .closest(target, n, |e| e.failures == 0 && e.contact.id != asker.id)
    }

    fn new_op(&mut self) -> OpId {
        self.next_op += 1;
        OpId(self.next_op)
    }

    /// When to republish the record under `key`, in the last quarter of the
    /// interval, ordered by our rank among its holders (how many supernodes we know
    /// closer to the key). The closest holder goes first; its `Store` reaches the
    /// others before their turn and postpones them, so one republication per
    /// interval usually suffices. A random offset within the rank's slot breaks ties
    /// between holders that count alike.
    fn republish_at(&mut self, now: Timestamp, key: &NodeId) -> Timestamp {
        let k = self.config.k;
        let interval =
            u64::try_from(self.config.republish_interval.as_millis()).unwrap_or(u64::MAX);
        let slot = interval / 4 / u64::try_from(k).unwrap_or(u64::MAX).max(1);
        let rank = u64::try_from(self.table.closer_than_me(key, k.saturating_sub(1))).unwrap_or(0);
        let jitter = self.rng.gen_range(0..=slot);
        let delay = (interval - interval / 4)
            .saturating_add(rank.saturating_mul(slot))
            .saturating_add(jitter);
        now + Duration::from_millis(delay)
    }

    fn refused(&mut self, from: Option<Contact>, error: RecordError) {
        self.events
            .push_back(OverlayEvent::RecordRefused { from, error });
    }

    /// `contact` talked to us directly.
    fn saw(&mut self, now: Timestamp, contact: Contact) {
        if contact.id == self.me.id {
            return;
        }
        let before = self.table.len();
        if let Some(quiet) = self.table.seen(now, contact) {
            self.send(now, quiet, SupernodeToSupernode::Ping, Purpose::Liveness);
        }
        if self.table.len() > before {
            self.hand_over(now, contact);
            if before == 0 {
                self.unpark(now, None);
            }
        }
    }

    /// A supernode new to our table may belong among the `k` holders of some of our
    /// records (it just joined). Kademlia's hand-over on join (Maymounkov & Mazières
    /// 2002, §2.5): for each record where the newcomer is among the `k` closest
    /// supernodes we know (us included) and we are the closest of the others, we
    /// store it there. Only that one holder sends, so replicas follow the membership
    /// at a cost proportional to joins, not to records; with fewer than `k + 1`
    /// supernodes every one of them ends up holding every record.
    fn hand_over(&mut self, now: Timestamp, newcomer: Contact) {
        if self.store.is_empty() {
            return;
        }
        let theirs = newcomer.node_id();
        let k = self.config.k;
        let mut due: Vec<(NodeId, Arc<SignedPresence>)> = self
            .store
            .iter(now)
            .filter(|(key, _)| {
                // The table already counts the newcomer: discount it when it is closer.
                let newcomer_closer = theirs.distance(key) < self.my_id.distance(key);
                self.table.closer_than_me(key, 2) == usize::from(newcomer_closer)
            })
            .filter(|(key, _)| {
                let me_closer = self.my_id.distance(key) < theirs.distance(key);
                self.table.closer_than(key, &theirs, k) + usize::from(me_closer) < k
            })
            .map(|(key, r)| (*key, Arc::clone(r)))
            .collect();
        // In key order, so equal inputs give equal runs.
        due.sort_unstable_by_key(|(key, _)| *key);
        for (_, record) in due {
            let request = SupernodeToSupernode::Store(record);
            self.send(now, newcomer, request, Purpose::HandOver);
        }
    }

    fn send(
        &mut self,
        now: Timestamp,
        to: Contact,
        request: SupernodeToSupernode,
        purpose: Purpose,
    ) {
        let id = RpcId(self.rpcs.next_id());
        let deadline = now + self.config.rpc_timeout;
        self.rpcs.push(deadline, Pending { to, purpose });
        self.transmit.push_back(OutgoingRpc { id, to, request });
    }

    fn refresh(&mut self, now: Timestamp, max_age: Duration) {
        for index in self.table.stale_buckets(now, max_age) {
            let target = self.table.random_id_in_bucket(index, &mut self.rng);
            self.start_lookup(now, target, LookupKind::FindNode, Goal::Refresh);
        }
        let interval = self.config.refresh_interval;
        let next = self.table.next_refresh(interval).unwrap_or(now + interval);
        self.next_refresh = next.max(now + MIN_REFRESH_GAP);
    }
}
