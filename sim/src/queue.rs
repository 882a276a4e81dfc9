//! The simulator's event queues: a timing wheel for messages in flight (every one
//! arrives within a second, so one slot per millisecond makes pushing and popping
//! O(1)), and a heap for timers, which may lie minutes ahead.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Slots in the wheel: the longest delay it accepts, in milliseconds.
pub const WHEEL_MS: u64 = 1024;

/// Messages keyed by arrival millisecond. Messages of one millisecond come out in
/// the order they were pushed, so runs are deterministic.
pub struct Wheel<T> {
    slots: Vec<Vec<T>>,
    /// No message is due before this millisecond.
    cursor: u64,
    count: usize,
}

impl<T> Wheel<T> {
    /// An empty wheel whose clock starts at `now` (milliseconds).
    pub fn new(now: u64) -> Wheel<T> {
        Wheel {
            slots: (0..WHEEL_MS).map(|_| Vec::new()).collect(),
            cursor: now,
            count: 0,
        }
    }

    /// Queues `item` for millisecond `at`, which must lie in `now..now + WHEEL_MS`
    /// where `now` is the time of the last [`Wheel::take`] or later.
    pub fn push(&mut self, now: u64, at: u64, item: T) {
        debug_assert!(at >= now && at < now + WHEEL_MS);
        if self.count == 0 || at < self.cursor {
            self.cursor = at;
        }
        self.slots[(at % WHEEL_MS) as usize].push(item);
        self.count += 1;
    }

    /// The millisecond of the earliest queued message.
    pub fn next_time(&mut self) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        while self.slots[(self.cursor % WHEEL_MS) as usize].is_empty() {
            self.cursor += 1;
        }
        Some(self.cursor)
    }

    /// Takes every message due at millisecond `at` (the value of [`Wheel::next_time`]).
    pub fn take(&mut self, at: u64) -> Vec<T> {
        let out = std::mem::take(&mut self.slots[(at % WHEEL_MS) as usize]);
        self.count -= out.len();
        out
    }

    /// Gives back an emptied vector from [`Wheel::take`] to keep its allocation.
    pub fn recycle(&mut self, at: u64, mut spent: Vec<T>) {
        let slot = &mut self.slots[(at % WHEEL_MS) as usize];
        if slot.is_empty() {
            spent.clear();
            *slot = spent;
        }
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Timers ordered by time, then by insertion.
pub struct Timers<T: Ord> {
    heap: BinaryHeap<Reverse<(u64, u64, T)>>,
    seq: u64,
}

impl<T: Ord> Default for Timers<T> {
    fn default() -> Timers<T> {
        Timers {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T: Ord> Timers<T> {
    /// Schedules `item` at millisecond `at`.
    pub fn push(&mut self, at: u64, item: T) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, item)));
    }

    /// When the earliest timer fires.
    pub fn next_time(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The earliest timer.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        self.heap.pop().map(|Reverse((at, _, item))| (at, item))
    }

    /// Timers queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether none is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_returns_messages_in_time_then_push_order() {
        let mut w = Wheel::new(1000);
        w.push(1000, 1010, "b");
        w.push(1000, 1005, "a");
        w.push(1000, 1010, "c");
        assert_eq!(w.next_time(), Some(1005));
        assert_eq!(w.take(1005), vec!["a"]);
        assert_eq!(w.next_time(), Some(1010));
        // Pushing from a later time keeps the order of arrivals.
        w.push(1005, 1007, "x");
        assert_eq!(w.next_time(), Some(1007));
        assert_eq!(w.take(1007), vec!["x"]);
        assert_eq!(w.take(1010), vec!["b", "c"]);
        assert!(w.is_empty());
        assert_eq!(w.next_time(), None);
        // An empty wheel accepts a push far ahead of its old cursor.
        w.push(50_000, 50_900, "z");
        assert_eq!(w.next_time(), Some(50_900));
    }

    #[test]
    fn timers_pop_in_time_then_insertion_order() {
        let mut t = Timers::default();
        t.push(5, 'b');
        t.push(3, 'z');
        t.push(5, 'a');
        assert_eq!(t.pop(), Some((3, 'z')));
        assert_eq!(t.pop(), Some((5, 'b')));
        assert_eq!(t.pop(), Some((5, 'a')));
        assert_eq!(t.pop(), None);
    }
}
