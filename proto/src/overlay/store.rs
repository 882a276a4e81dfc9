//! The presence store: at most one signed record per identity, verified on the way in,
//! with the timers for its expiry and republication.

use super::deadlines::Deadlines;
use super::verified::Verifier;
use crate::identity::NodeId;
use crate::presence::{RecordError, SignedPresence};
use crate::time::Timestamp;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Most records a supernode holds. Valid records cost nothing but a fresh key each,
/// so without a cap any supernode could fill another's memory with them. A few
/// hundred bytes each, this bounds the store to some tens of megabytes.
pub const MAX_RECORDS: usize = 100_000;

/// What [`RecordStore::offer`] did with an acceptable record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Nothing was held for this identity.
    New,
    /// It replaced an older record.
    Newer,
    /// The very record held arrived again (a republication).
    Same,
}

#[derive(Clone, Debug)]
struct Held {
    /// Shared with other stores of the same process when the verifier is shared.
    record: Arc<SignedPresence>,
    republish_at: Option<Timestamp>,
}

/// Presence records held by one supernode, keyed by `record.id.record_key()`.
#[derive(Clone, Debug, Default)]
pub struct RecordStore {
    verifier: Verifier,
    records: HashMap<NodeId, Held>,
    expiries: Deadlines,
    republish: Deadlines,
}

impl RecordStore {
    /// An empty store.
    pub fn new() -> RecordStore {
        RecordStore::default()
    }

    /// An empty store that verifies records with `verifier`.
    pub fn with_verifier(verifier: Verifier) -> RecordStore {
        RecordStore {
            verifier,
            ..RecordStore::default()
        }
    }

    /// Stores `record` if it verifies at `now` (signature, limits, expiry) and
    /// supersedes the one held; it is due for republication at `republish_at`.
    /// Offering the held record again only moves its republication to `republish_at`:
    /// whoever sent it has just republished it, so this holder need not.
    pub fn offer(
        &mut self,
        now: Timestamp,
        record: impl Into<Arc<SignedPresence>>,
        republish_at: Timestamp,
    ) -> Result<Accepted, RecordError> {
        let record = record.into();
        let key = record.record.id.record_key();
        let outcome = match self.records.get(&key) {
            Some(held) if Arc::ptr_eq(&held.record, &record) || *held.record == *record => {
                // Verified in full when it first arrived; only the clock has moved.
                if record.record.lapses_at() <= now {
                    return Err(RecordError::Expired {
                        expires_at: record.record.expires_at,
                        now,
                    });
                }
                self.schedule_republish(&key, Some(republish_at));
                return Ok(Accepted::Same);
            }
            Some(held) => {
                record.supersedes(&held.record)?;
                (self.verifier.verify(now, record)?, Accepted::Newer)
            }
            None => (self.verifier.verify(now, record)?, Accepted::New),
        };
        let (record, outcome) = outcome;
        // The held record (if any) is replaced below; its deadline entries go stale
        // and the one settle at the end drops them from the front.
        self.expiries.insert(record.record.lapses_at(), key);
        self.republish.insert(republish_at, key);
        self.records.insert(
            key,
            Held {
                record,
                republish_at: Some(republish_at),
            },
        );
        self.settle();
        Ok(outcome)
    }

    /// The live record under `key`.
    pub fn get(&self, now: Timestamp, key: &NodeId) -> Option<&Arc<SignedPresence>> {
        self.records
            .get(key)
            .map(|held| &held.record)
            .filter(|r| r.record.lapses_at() > now)
    }

    /// Every live record with its key, in no particular order.
    pub fn iter(&self, now: Timestamp) -> impl Iterator<Item = (&NodeId, &Arc<SignedPresence>)> {
        self.records
            .iter()
            .map(|(key, held)| (key, &held.record))
            .filter(move |(_, r)| r.record.lapses_at() > now)
    }

    /// Whether a record (live or not yet expired away) is held under `key`.
    pub fn contains(&self, key: &NodeId) -> bool {
        self.records.contains_key(key)
    }

    /// Whether a record under a new key would exceed [`MAX_RECORDS`].
    pub fn is_full(&self) -> bool {
        self.records.len() >= MAX_RECORDS
    }

    /// Drops the record under `key`.
    pub fn remove(&mut self, key: &NodeId) -> Option<Arc<SignedPresence>> {
        let held = self.records.remove(key)?;
        self.settle();
        Some(held.record)
    }

    /// Drops the record under `key` if it is still the one with sequence number `seq`.
    pub fn remove_if_seq(&mut self, key: &NodeId, seq: u64) -> bool {
        let matches = self
            .records
            .get(key)
            .is_some_and(|held| held.record.record.seq == seq);
        if matches {
            self.remove(key);
        }
        matches
    }

    /// Moves (or with `None`, cancels) the republication of the record under `key`.
    pub fn schedule_republish(&mut self, key: &NodeId, at: Option<Timestamp>) {
        let Some(held) = self.records.get_mut(key) else {
            return;
        };
        held.republish_at = at;
        if let Some(at) = at {
            self.republish.insert(at, *key);
        }
        self.settle();
    }

    /// Drops deadline entries no longer meant from the front of both queues (see
    /// [`Deadlines::settle`]): an expiry is meant while its record is held, a
    /// republication while it is the record's scheduled one.
    fn settle(&mut self) {
        let records = &self.records;
        let live = records.len();
        self.expiries.settle(live, |at, key| {
            records
                .get(key)
                .is_some_and(|held| held.record.record.lapses_at() == at)
        });
        self.republish.settle(live, |at, key| {
            records
                .get(key)
                .is_some_and(|held| held.republish_at == Some(at))
        });
    }

    /// Drops every record expired at `now`; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let mut dropped = 0;
        while let Some((at, key)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.remove(&key);
            dropped += 1;
        }
        dropped
    }

    /// The records due for republication at `now`, unscheduled: the caller
    /// reschedules those it republishes. Records with less than `min_life` left are
    /// left to expire instead; their owners republish on their own schedule.
    pub fn take_due(&mut self, now: Timestamp, min_life: Duration) -> Vec<Arc<SignedPresence>> {
        let mut due = Vec::new();
        while let Some((at, key)) = self.republish.first() {
            if at > now {
                break;
            }
            self.republish.pop_first();
            if let Some(held) = self.records.get_mut(&key) {
                held.republish_at = None;
                if held.record.record.lapses_at() > now + min_life {
                    due.push(held.record.clone());
                }
            }
            self.settle();
        }
        due
    }

    /// The next expiry or republication.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let expiry = self.expiries.first().map(|(at, _)| at);
        let republish = self.republish.first().map(|(at, _)| at);
        expiry.into_iter().chain(republish).min()
    }

    /// Number of records held (expired ones linger until [`RecordStore::expire`]).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::PresenceRecord;
    use crate::Identity;

    /// Records stay served this long past their expiry (clock skew).
    const SKEW: u64 = crate::time::MAX_CLOCK_SKEW.as_millis() as u64;

    const MIN: u64 = 60_000;
    const MIN_HALF: Duration = Duration::from_secs(30);

    fn signed(owner: &Identity, seq: u64, expires_at: u64) -> SignedPresence {
        PresenceRecord {
            id: owner.peer_id(),
            display_name: "bob".into(),
            supernodes: vec![],
            addresses: vec![],
            nat: Default::default(),
            seq,
            expires_at: Timestamp(expires_at),
        }
        .sign(owner)
    }

    #[test]
    fn keeps_one_record_per_identity_and_refuses_replays() {
        let bob = Identity::from_seed(&[1; 32]);
        let key = bob.peer_id().record_key();
        let mut store = RecordStore::new();
        let now = Timestamp(0);
        let one = signed(&bob, 1, 10 * MIN);
        let two = signed(&bob, 2, 10 * MIN);
        assert_eq!(
            store.offer(now, one.clone(), Timestamp(MIN)),
            Ok(Accepted::New)
        );
        assert_eq!(
            store.offer(now, two.clone(), Timestamp(MIN)),
            Ok(Accepted::Newer)
        );
        assert_eq!(store.len(), 1);
        // A replay of the older record is refused even though its signature is good.
        assert_eq!(
            store.offer(now, one, Timestamp(MIN)),
            Err(RecordError::Stale { got: 1, held: 2 })
        );
        // A different record with the same seq is a conflict, not a republication.
        let other_two = signed(&bob, 2, 9 * MIN);
        assert_eq!(
            store.offer(now, other_two, Timestamp(MIN)),
            Err(RecordError::Stale { got: 2, held: 2 })
        );
        assert_eq!(store.get(now, &key).map(|r| &**r), Some(&two));
        assert_eq!(store.offer(now, two, Timestamp(MIN)), Ok(Accepted::Same));
    }

    #[test]
    fn refuses_forged_and_expired_records() {
        let bob = Identity::from_seed(&[1; 32]);
        let mallory = Identity::from_seed(&[2; 32]);
        let mut store = RecordStore::new();
        let mut forged = signed(&mallory, 5, 10 * MIN);
        forged.record.id = bob.peer_id();
        assert_eq!(
            store.offer(Timestamp(0), forged, Timestamp(MIN)),
            Err(RecordError::BadSignature)
        );
        let old = signed(&bob, 1, MIN);
        assert!(matches!(
            store.offer(Timestamp(MIN + SKEW), old, Timestamp(2 * MIN)),
            Err(RecordError::Expired { .. })
        ));
        // A forged record cannot displace a good one either.
        let good = signed(&bob, 1, 10 * MIN);
        store
            .offer(Timestamp(0), good.clone(), Timestamp(MIN))
            .unwrap();
        let mut forged = signed(&mallory, 9, 10 * MIN);
        forged.record.id = bob.peer_id();
        assert_eq!(
            store.offer(Timestamp(0), forged, Timestamp(MIN)),
            Err(RecordError::BadSignature)
        );
        assert_eq!(
            store
                .get(Timestamp(0), &bob.peer_id().record_key())
                .map(|r| &**r),
            Some(&good)
        );
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn expired_records_are_hidden_then_dropped() {
        let bob = Identity::from_seed(&[1; 32]);
        let key = bob.peer_id().record_key();
        let mut store = RecordStore::new();
        let r = signed(&bob, 1, 5 * MIN);
        store
            .offer(Timestamp(0), r.clone(), Timestamp(MIN))
            .unwrap();
        assert_eq!(store.next_deadline(), Some(Timestamp(MIN)));
        // Served through the clock-skew allowance past its expiry, then not.
        assert!(store.get(Timestamp(5 * MIN + SKEW - 1), &key).is_some());
        assert_eq!(store.expire(Timestamp(5 * MIN + SKEW - 1)), 0);
        assert!(store.get(Timestamp(5 * MIN + SKEW), &key).is_none());
        assert!(matches!(
            store.offer(Timestamp(5 * MIN + SKEW), r, Timestamp(6 * MIN)),
            Err(RecordError::Expired { .. })
        ));
        assert_eq!(store.expire(Timestamp(5 * MIN + SKEW)), 1);
        assert!(store.is_empty());
        assert_eq!(store.next_deadline(), None);
    }

    #[test]
    fn republication_is_due_unless_the_record_expires_soon() {
        let bob = Identity::from_seed(&[1; 32]);
        let carol = Identity::from_seed(&[3; 32]);
        let mut store = RecordStore::new();
        let long = signed(&bob, 1, 30 * MIN);
        let short = signed(&carol, 1, MIN + MIN / 4);
        // Times shifted by SKEW: `short` is then a quarter minute from lapsing.
        let at = |ms: u64| Timestamp(ms + SKEW);
        store.offer(at(0), long.clone(), at(MIN)).unwrap();
        store.offer(at(0), short, at(MIN)).unwrap();
        assert!(store.take_due(at(MIN - 1), MIN_HALF).is_empty());
        assert_eq!(
            store.take_due(at(MIN), MIN_HALF),
            vec![Arc::new(long.clone())]
        );
        // Taken records are unscheduled until the caller reschedules them.
        assert!(store.take_due(at(2 * MIN), MIN_HALF).is_empty());
        store.schedule_republish(&bob.peer_id().record_key(), Some(at(2 * MIN)));
        // Receiving the same record from another holder postpones ours.
        store.offer(at(MIN), long, at(3 * MIN)).unwrap();
        assert!(store.take_due(at(2 * MIN), MIN_HALF).is_empty());
        assert_eq!(store.take_due(at(3 * MIN), MIN_HALF).len(), 1);
    }

    #[test]
    fn removal_only_if_still_the_same_seq() {
        let bob = Identity::from_seed(&[1; 32]);
        let key = bob.peer_id().record_key();
        let mut store = RecordStore::new();
        store
            .offer(Timestamp(0), signed(&bob, 2, 10 * MIN), Timestamp(MIN))
            .unwrap();
        assert!(!store.remove_if_seq(&key, 1));
        assert!(store.remove_if_seq(&key, 2));
        assert!(store.is_empty());
    }
}
