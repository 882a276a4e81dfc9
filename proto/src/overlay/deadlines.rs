//! Deadlines `(time, key)` of a record store, earliest first, as a heap cleaned
//! lazily: a record that is replaced, removed or rescheduled leaves its old entries
//! behind, and they are dropped when they reach the front ([`Deadlines::settle`])
//! or when they outnumber the live ones. A store moves one record's two deadlines
//! for every record it receives; a B-tree paid a remove and an insert (a few cache
//! misses each, at a thousand records) for each, a heap pays one push, O(1) for
//! deadlines later than the ones held, which is what a store's mostly are.
//!
//! The earliest entry is kept at hand: the overlay's `poll_timeout` asks after every
//! input.

use crate::identity::NodeId;
use crate::time::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Stale entries allowed beyond twice the live ones before the heap is rebuilt.
const SLACK: usize = 64;

#[derive(Clone, Debug, Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(Timestamp, NodeId)>>,
    /// The front entry, valid whenever the owner has settled since its last change.
    first: Option<(Timestamp, NodeId)>,
}

impl Deadlines {
    /// Adds a deadline (meant until the owner says otherwise; a duplicate is harmless:
    /// the owner stops meaning it once it has acted on the first).
    pub fn insert(&mut self, at: Timestamp, key: NodeId) {
        self.heap.push(Reverse((at, key)));
        if self.first.is_none_or(|first| (at, key) < first) {
            self.first = Some((at, key));
        }
    }

    /// Drops the entries at the front that are no longer meant (`meant` is false),
    /// and every stale one when they outnumber the `live` records more than twice
    /// over. Call after anything that may have made an entry stale.
    pub fn settle(&mut self, live: usize, meant: impl Fn(Timestamp, &NodeId) -> bool) {
        if self.heap.len() > live.saturating_mul(2).saturating_add(SLACK) {
            self.heap.retain(|Reverse((at, key))| meant(*at, key));
        }
        while let Some(Reverse((at, key))) = self.heap.peek() {
            if meant(*at, key) {
                break;
            }
            self.heap.pop();
        }
        self.first = self.heap.peek().map(|Reverse(entry)| *entry);
    }

    /// The earliest deadline (meant, if settled since the last change).
    pub fn first(&self) -> Option<(Timestamp, NodeId)> {
        self.first
    }

    /// Removes the earliest entry; settle afterwards.
    pub fn pop_first(&mut self) -> Option<(Timestamp, NodeId)> {
        let first = self.heap.pop().map(|Reverse(entry)| entry);
        self.first = self.heap.peek().map(|Reverse(entry)| *entry);
        first
    }

    /// Entries held, stale ones included.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn key(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn the_earliest_meant_deadline_comes_first() {
        let mut d = Deadlines::default();
        let mut meant: HashMap<NodeId, Timestamp> = HashMap::new();
        assert_eq!(d.first(), None);
        for (at, k) in [(50, 1), (20, 2), (20, 0), (90, 3)] {
            d.insert(Timestamp(at), key(k));
            meant.insert(key(k), Timestamp(at));
        }
        assert_eq!(d.first(), Some((Timestamp(20), key(0))));
        // Key 0 moves later: its old entry is stale and goes when settled.
        meant.insert(key(0), Timestamp(70));
        d.insert(Timestamp(70), key(0));
        d.settle(meant.len(), |at, k| meant.get(k) == Some(&at));
        assert_eq!(d.first(), Some((Timestamp(20), key(2))));
        // Key 2 leaves altogether.
        meant.remove(&key(2));
        d.settle(meant.len(), |at, k| meant.get(k) == Some(&at));
        assert_eq!(d.first(), Some((Timestamp(50), key(1))));
        assert_eq!(d.pop_first(), Some((Timestamp(50), key(1))));
        meant.remove(&key(1));
        d.settle(meant.len(), |at, k| meant.get(k) == Some(&at));
        assert_eq!(d.first(), Some((Timestamp(70), key(0))));
    }

    #[test]
    fn stale_entries_do_not_pile_up() {
        let mut d = Deadlines::default();
        // One record rescheduled ten thousand times: one live entry, the rest stale.
        for at in 0..10_000u64 {
            d.insert(Timestamp(at), key(7));
            d.settle(1, |t, _| t == Timestamp(at));
        }
        assert!(d.held() <= 2 + SLACK, "{} entries held", d.held());
        assert_eq!(d.first(), Some((Timestamp(9_999), key(7))));
    }
}
