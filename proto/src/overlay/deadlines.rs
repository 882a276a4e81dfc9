//! An ordered set of `(deadline, key)` that answers "when is the earliest?" without
//! walking the tree: the overlay's `poll_timeout` asks after every input, and at a
//! thousand records per supernode `BTreeSet::first` is a few cache misses each time.

use crate::identity::NodeId;
use crate::time::Timestamp;
use std::collections::BTreeSet;

/// `(deadline, key)` pairs in deadline order, with the earliest kept at hand.
#[derive(Clone, Debug, Default)]
pub struct Deadlines {
    set: BTreeSet<(Timestamp, NodeId)>,
    /// `set.first()`, kept up to date by every change.
    first: Option<(Timestamp, NodeId)>,
}

impl Deadlines {
    /// Adds `key` due at `at`.
    pub fn insert(&mut self, at: Timestamp, key: NodeId) {
        self.set.insert((at, key));
        if self.first.is_none_or(|first| (at, key) < first) {
            self.first = Some((at, key));
        }
    }

    /// Removes `key` due at `at`, if present.
    pub fn remove(&mut self, at: Timestamp, key: &NodeId) {
        if self.set.remove(&(at, *key)) && self.first == Some((at, *key)) {
            self.first = self.set.first().copied();
        }
    }

    /// The earliest entry.
    pub fn first(&self) -> Option<(Timestamp, NodeId)> {
        self.first
    }

    /// Removes and returns the earliest entry.
    pub fn pop_first(&mut self) -> Option<(Timestamp, NodeId)> {
        let first = self.set.pop_first();
        self.first = self.set.first().copied();
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn the_earliest_follows_every_change() {
        let mut d = Deadlines::default();
        assert_eq!(d.first(), None);
        d.insert(Timestamp(50), key(1));
        d.insert(Timestamp(20), key(2));
        d.insert(Timestamp(20), key(0));
        d.insert(Timestamp(90), key(3));
        assert_eq!(d.first(), Some((Timestamp(20), key(0))));
        d.remove(Timestamp(20), &key(0));
        assert_eq!(d.first(), Some((Timestamp(20), key(2))));
        // Removing an absent pair, or a later one, leaves the earliest alone.
        d.remove(Timestamp(21), &key(2));
        d.remove(Timestamp(90), &key(3));
        assert_eq!(d.first(), Some((Timestamp(20), key(2))));
        assert_eq!(d.pop_first(), Some((Timestamp(20), key(2))));
        assert_eq!(d.first(), Some((Timestamp(50), key(1))));
        assert_eq!(d.pop_first(), Some((Timestamp(50), key(1))));
        assert_eq!((d.first(), d.pop_first()), (None, None));
    }
}
