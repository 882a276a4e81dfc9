//! A graceful leave: before a supernode stops (a promoted peer demoted, an operator's
//! shutdown), it hands the records it holds to the supernodes that replace it.
//!
//! Kademlia keeps `k` replicas of each record on the `k` supernodes closest to its
//! key (Maymounkov & Mazières 2002, §2.5). When one of them leaves, the `k` closest
//! that remain are the other `k - 1` holders plus one supernode that was `k + 1`-th:
//! the `k`-th closest of the others. The leaving holder knows its own neighbourhood
//! best (every key it holds is near its id), so it stores each record there, and only
//! there: one `Store` per record, no lookup, the same work as the hand-over to a
//! newcomer in reverse. Records it holds without being among the `k` closest it knows
//! (a publisher's own copy, a lookup's repair) are left alone: their holders are
//! elsewhere. Republication (`republish_interval`) repairs whatever this misses.

use super::{Overlay, Purpose};
use crate::identity::NodeId;
use crate::messages::{SupernodeReply, SupernodeToSupernode};
use crate::overlay::{OverlayEvent, RpcFailure};
use crate::presence::{Contact, SignedPresence};
use crate::time::Timestamp;
use std::sync::Arc;

/// Most records one leave hands over (each a `Store` sent at once). A supernode
/// holds about `k × records / supernodes` as a holder, far fewer than this; the
/// rest are left to republication.
pub const MAX_HAND_OVER: usize = 20_000;

/// A leave in progress.
pub(super) struct Leaving {
    /// Hand-over `Store`s sent.
    records: usize,
    /// Not yet answered or timed out.
    outstanding: usize,
    /// `Stored` replies.
    stored: usize,
    /// [`OverlayEvent::HandedOver`] was reported.
    reported: bool,
}

impl Overlay {
    /// Leaves the overlay gracefully: hands every live record this supernode holds
    /// among the `k` closest it knows to the record's key to the `k`-th closest other
    /// supernode it knows (the one that takes its place among them), one `Store` each,
    /// at most [`MAX_HAND_OVER`], closest keys to us first. From now on the overlay
    /// still answers requests but starts no republication or refresh of its own.
    /// Reports [`OverlayEvent::HandedOver`] once every `Store` was answered or timed
    /// out, so at most `rpc_timeout` after `now` (at once when there is nothing to
    /// hand over); the shell keeps feeding replies and timeouts until then, then
    /// closes its connections. Returns the number of records handed over. A second
    /// call does nothing and returns 0.
    pub fn leave(&mut self, now: Timestamp) -> usize {
        if self.leaving.is_some() {
            return 0;
        }
        let k = self.config.k;
        let mut due: Vec<(NodeId, Arc<SignedPresence>)> = self
            .store
            .iter(now)
            .filter(|(key, _)| self.table.closer_than_me(key, k) < k)
            .map(|(key, r)| (*key, r.clone()))
            .collect();
        // Closest keys first, so a cut keeps the records we are surest to hold for.
        due.sort_unstable_by_key(|(key, _)| self.my_id.distance(key));
        due.truncate(MAX_HAND_OVER);
        let mut sends: Vec<(Contact, Arc<SignedPresence>)> = Vec::with_capacity(due.len());
        for (key, record) in due {
            // Entries whose last RPC failed are probably gone.
            let others = self.table.closest(&key, k, |e| e.failures == 0);
            if others.len() == k {
                sends.push((others[k - 1], record));
            }
        }
        self.leaving = Some(Leaving {
            records: sends.len(),
            outstanding: sends.len(),
            stored: 0,
            reported: false,
        });
        for (to, record) in &sends {
            let request = SupernodeToSupernode::Store(Arc::clone(record));
            self.send(now, *to, request, Purpose::Leave);
        }
        self.leave_done_if_over();
        sends.len()
    }

    /// Whether [`Overlay::leave`] was called.
    pub fn is_leaving(&self) -> bool {
        self.leaving.is_some()
    }

    /// A hand-over `Store` was answered or failed.
    pub(super) fn on_leave_reply(&mut self, reply: &Result<SupernodeReply, RpcFailure>) {
        let Some(leaving) = self.leaving.as_mut() else {
            return;
        };
        leaving.outstanding = leaving.outstanding.saturating_sub(1);
        if matches!(reply, Ok(SupernodeReply::Stored)) {
            leaving.stored += 1;
        }
        self.leave_done_if_over();
    }

    fn leave_done_if_over(&mut self) {
        let Some(leaving) = self.leaving.as_mut() else {
            return;
        };
        if leaving.outstanding == 0 && !leaving.reported {
            leaving.reported = true;
            let (records, stored) = (leaving.records, leaving.stored);
            self.events
                .push_back(OverlayEvent::HandedOver { records, stored });
        }
    }
}
