//! The RPCs an overlay has in flight, with their deadlines.
//!
//! RPC ids are handed out in sequence and every RPC gets the same timeout while the
//! clock never goes back, so the order RPCs are sent in is also the order of their
//! deadlines. One ring holds both: slot `i` is RPC `first + i`, with its deadline
//! and, until it is answered or times out, what it was for. Finding an answered RPC
//! is an index, not a hash lookup, and answered RPCs leave from the front as they
//! reach it, so the front is always the next deadline. (It replaced a hash map of
//! pending RPCs beside a queue of deadlines: the same order, one structure.)

use std::collections::VecDeque;

use crate::time::Timestamp;

/// Pending RPCs by id (see the module docs); `T` is what each one was for.
#[derive(Debug)]
pub(super) struct InFlight<T> {
    /// RPC `first + i` in slot `i`: its deadline, and `None` once it has ended.
    slots: VecDeque<(Timestamp, Option<T>)>,
    /// The id of the front slot.
    first: u64,
    /// Slots still pending.
    pending: usize,
}

impl<T> InFlight<T> {
    /// An empty ring whose first RPC will have id `first`.
    pub(super) fn new(first: u64) -> InFlight<T> {
        InFlight {
            slots: VecDeque::new(),
            first,
            pending: 0,
        }
    }

    /// The id the next RPC must have.
    pub(super) fn next_id(&self) -> u64 {
        self.first + self.slots.len() as u64
    }

    /// Adds the RPC with id [`InFlight::next_id`], due at `deadline`. Deadlines are
    /// meant to come in order; one earlier than a deadline before it (a wall clock
    /// stepped back) waits for that one: an RPC never times out before one sent
    /// earlier, which costs at most a late timeout.
    pub(super) fn push(&mut self, deadline: Timestamp, what: T) {
        self.slots.push_back((deadline, Some(what)));
        self.pending += 1;
    }

    /// Ends RPC `id` (answered): what it was for, or `None` if it already ended or
    /// was never sent.
    pub(super) fn remove(&mut self, id: u64) -> Option<T> {
        let index = usize::try_from(id.checked_sub(self.first)?).ok()?;
        let what = self.slots.get_mut(index)?.1.take()?;
        self.pending -= 1;
        self.drop_ended();
        Some(what)
    }

    /// Ends the first pending RPC whose deadline is at or before `now` (timed out).
    pub(super) fn pop_due(&mut self, now: Timestamp) -> Option<T> {
        let (deadline, _) = self.slots.front()?;
        if *deadline > now {
            return None;
        }
        let (_, what) = self.slots.pop_front()?;
        self.first += 1;
        let what = what?;
        self.pending -= 1;
        self.drop_ended();
        Some(what)
    }

    /// The deadline of the first pending RPC.
    pub(super) fn next_deadline(&self) -> Option<Timestamp> {
        self.slots.front().map(|(at, _)| *at)
    }

    /// RPCs pending.
    pub(super) fn len(&self) -> usize {
        self.pending
    }

    /// Drops ended RPCs from the front, so the front is always a pending one.
    fn drop_ended(&mut self) {
        while matches!(self.slots.front(), Some((_, None))) {
            self.slots.pop_front();
            self.first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_any_order_and_timeouts_in_send_order() {
        let mut rpcs = InFlight::new(1);
        for (i, what) in ["a", "b", "c", "d"].into_iter().enumerate() {
            assert_eq!(rpcs.next_id(), i as u64 + 1);
            rpcs.push(Timestamp(100 + i as u64), what);
        }
        assert_eq!(rpcs.len(), 4);
        // An answer in the middle; unknown, repeated and future ids change nothing.
        assert_eq!(rpcs.remove(3), Some("c"));
        assert_eq!(rpcs.remove(3), None);
        assert_eq!(rpcs.remove(0), None);
        assert_eq!(rpcs.remove(9), None);
        assert_eq!(rpcs.next_deadline(), Some(Timestamp(100)));
        // The front answered: the next deadline is the next pending RPC's.
        assert_eq!(rpcs.remove(1), Some("a"));
        assert_eq!(rpcs.next_deadline(), Some(Timestamp(101)));
        assert_eq!(rpcs.pop_due(Timestamp(100)), None);
        assert_eq!(rpcs.pop_due(Timestamp(103)), Some("b"));
        // "c" was answered, so "d" is next and due too.
        assert_eq!(rpcs.pop_due(Timestamp(103)), Some("d"));
        assert_eq!(rpcs.pop_due(Timestamp(103)), None);
        assert_eq!((rpcs.len(), rpcs.next_deadline()), (0, None));
        // Ids go on from where they were.
        assert_eq!(rpcs.next_id(), 5);
        rpcs.push(Timestamp(200), "e");
        assert_eq!(rpcs.remove(5), Some("e"));
        assert_eq!(rpcs.len(), 0);
    }

    #[test]
    fn a_deadline_out_of_order_waits_for_the_one_before_it() {
        // The clock stepped back between two sends: the second RPC's deadline is
        // earlier, and it times out with the first, not before it.
        let mut rpcs = InFlight::new(1);
        rpcs.push(Timestamp(500), "first");
        rpcs.push(Timestamp(300), "second");
        assert_eq!(rpcs.next_deadline(), Some(Timestamp(500)));
        assert_eq!(rpcs.pop_due(Timestamp(400)), None);
        assert_eq!(rpcs.pop_due(Timestamp(500)), Some("first"));
        assert_eq!(rpcs.pop_due(Timestamp(500)), Some("second"));
    }
}
