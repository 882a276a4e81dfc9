//! A cache of presence records whose signature and limits were already checked, so
//! that many replicas in one process share one verified copy.
//!
//! A real supernode verifies each record it is sent once per copy it keeps; that is
//! cheap next to the network. A simulation of thousands of supernodes in one
//! process would verify every record once per replica (20 ed25519 checks per
//! publication) and keep 20 copies of it. [`VerifiedRecords`] lets every
//! [`crate::overlay::Overlay`] of one process share the work and the memory: a record
//! is keyed by its signature, and a hit counts only if the cached record is equal,
//! byte for byte, to the one offered. So nothing unverified is ever accepted: the
//! cache skips re-checking bytes that were already checked, nothing else. Expiry
//! depends on the time and is checked on every use.

use crate::presence::{RecordError, SignedPresence};
use crate::time::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Records a cache holds by default before it starts over.
pub const DEFAULT_CAPACITY: usize = 1 << 16;

/// Verified records shared between overlays (see the module docs). Thread-safe.
#[derive(Debug)]
pub struct VerifiedRecords {
    records: Mutex<HashMap<[u8; 64], Arc<SignedPresence>>>,
    capacity: usize,
}

impl Default for VerifiedRecords {
    fn default() -> VerifiedRecords {
        VerifiedRecords::new(DEFAULT_CAPACITY)
    }
}

impl VerifiedRecords {
    /// An empty cache of at most `capacity` records (at least 1). When full it is
    /// emptied and refills: records already held by stores stay shared, only later
    /// arrivals of them are verified once more.
    pub fn new(capacity: usize) -> VerifiedRecords {
        VerifiedRecords {
            records: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// `record` verified at `now` (see [`SignedPresence::verify`]), as the shared
    /// copy. Errors are those of `verify`; a record failing them is not cached.
    pub fn verify(
        &self,
        now: Timestamp,
        record: impl Into<Arc<SignedPresence>>,
    ) -> Result<Arc<SignedPresence>, RecordError> {
        let record = record.into();
        if let Some(held) = self.cached(&record) {
            held.check_time(now)?;
            return Ok(held);
        }
        record.verify(now)?;
        let mut records = self.lock();
        if records.len() >= self.capacity {
            records.clear();
        }
        records.insert(record.signature, record.clone());
        Ok(record)
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached copy equal to `record`: the very copy (a record passed on within
    /// the process, checked by pointer) or one equal byte for byte.
    fn cached(&self, record: &Arc<SignedPresence>) -> Option<Arc<SignedPresence>> {
        let records = self.lock();
        records
            .get(&record.signature)
            .filter(|held| Arc::ptr_eq(held, record) || ***held == **record)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 64], Arc<SignedPresence>>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How an overlay checks records from the network: alone, or through a shared cache.
#[derive(Clone, Debug, Default)]
pub enum Verifier {
    /// Verify every record (a supernode process).
    #[default]
    Alone,
    /// Share verified records with other overlays (a simulation).
    Shared(Arc<VerifiedRecords>),
}

impl Verifier {
    /// `record` verified at `now`, as a shared copy.
    pub fn verify(
        &self,
        now: Timestamp,
        record: impl Into<Arc<SignedPresence>>,
    ) -> Result<Arc<SignedPresence>, RecordError> {
        let record = record.into();
        match self {
            Verifier::Alone => {
                record.verify(now)?;
                Ok(record)
            }
            Verifier::Shared(cache) => cache.verify(now, record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::PresenceRecord;
    use crate::Identity;

    fn signed(owner: &Identity, seq: u64) -> SignedPresence {
        PresenceRecord {
            id: owner.peer_id(),
            display_name: "bob".into(),
            supernodes: vec![],
            addresses: vec![],
            nat: Default::default(),
            seq,
            expires_at: Timestamp(60_000),
        }
        .sign(owner)
    }

    #[test]
    fn shares_one_copy_and_never_trusts_altered_bytes() {
        let cache = VerifiedRecords::new(10);
        let bob = Identity::from_seed(&[1; 32]);
        let good = signed(&bob, 1);
        let a = cache.verify(Timestamp(0), good.clone()).unwrap();
        let b = cache.verify(Timestamp(0), good.clone()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // Same signature, other content: verified afresh, and refused.
        let mut altered = good.clone();
        altered.record.seq = 9;
        assert_eq!(
            cache.verify(Timestamp(0), altered),
            Err(RecordError::BadSignature)
        );
        // A cached record still lapses (its expiry plus the clock skew a reader allows).
        assert!(matches!(
            cache.verify(good.record.lapses_at(), good),
            Err(RecordError::Expired { .. })
        ));
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = VerifiedRecords::new(2);
        for i in 0..3u8 {
            let owner = Identity::from_seed(&[i + 1; 32]);
            cache.verify(Timestamp(0), signed(&owner, 1)).unwrap();
        }
        assert_eq!(cache.len(), 1);
    }
}
