//! A lookup's candidates: supernodes heard of, sorted by XOR distance to the
//! target, each with its state and disjoint path (see the parent module).

use crate::identity::{NodeId, PeerId};
use crate::overlay::diversity::IpGroup;
use crate::presence::Contact;

/// A candidate's XOR distance to the target as four big-endian words: it orders
/// like [`NodeId::distance`] and compares word by word, where the bytes took a
/// `memcmp` call per comparison (a lookup compares keys on every answer).
pub(super) type Key = [u64; 4];

pub(super) fn key_of(id: &NodeId, target: &NodeId) -> Key {
    let distance = id.distance(target);
    let mut key = [0u64; 4];
    for (word, chunk) in key.iter_mut().zip(distance.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_be_bytes(bytes);
    }
    key
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum State {
    Waiting,
    InFlight,
    Answered,
    Failed,
}

/// One candidate, 48 bytes: what every answer scans (distance, state, path) is
/// kept together, its contact and network in [`Candidates::contacts`] (a lookup's
/// candidates are cold in the cache when an answer comes, and the scans read all
/// of them: at 128 bytes a candidate they read 2.7 times as many lines).
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    /// XOR distance to the target: the candidate's key in the map.
    pub(super) key: Key,
    /// Its contact's index in [`Candidates::contacts`].
    pub(super) slot: u32,
    /// Hops from us (seeds are 1), saturating.
    pub(super) depth: u16,
    /// The disjoint path it belongs to (< [`MAX_PATHS`](super::MAX_PATHS)).
    path: u8,
    pub(super) state: State,
}

impl Candidate {
    pub(super) fn path(&self) -> usize {
        usize::from(self.path)
    }

    pub(super) fn depth(&self) -> usize {
        usize::from(self.depth)
    }
}

/// A lookup's candidates sorted by key (XOR distance to the target). A lookup holds
/// at most about `CANDIDATES_PER_K × k` per path, so one sorted vector beats a
/// B-tree: every answer scans the closest of them, and a contiguous block is what
/// the cache wants; binary search finds one. An answer's contacts are appended
/// unsorted and merged in once ([`Candidates::settle`]): inserting each in place
/// moved half the vector per contact.
#[derive(Clone, Debug, Default)]
pub(super) struct Candidates {
    list: Vec<Candidate>,
    /// `list[..settled]` is sorted; what follows was pushed since.
    settled: usize,
    /// Every candidate's contact and network (when the diversity limit applies to
    /// it), by [`Candidate::slot`]; kept after a candidate is trimmed (a lookup
    /// adds a few hundred at most).
    contacts: Vec<(Contact, Option<IpGroup>)>,
}

impl Candidates {
    /// The settled candidate with `key`.
    pub(super) fn get_mut(&mut self, key: &Key) -> Option<&mut Candidate> {
        let i = self.list[..self.settled]
            .binary_search_by(|c| c.key.cmp(key))
            .ok()?;
        self.list.get_mut(i)
    }

    /// Appends a waiting candidate at `key` (which no candidate has); it is found by
    /// key, scanned and removed only after the next [`Candidates::settle`].
    pub(super) fn push(
        &mut self,
        key: Key,
        contact: Contact,
        group: Option<IpGroup>,
        depth: usize,
        path: usize,
    ) {
        let slot = u32::try_from(self.contacts.len()).unwrap_or(u32::MAX);
        self.contacts.push((contact, group));
        self.list.push(Candidate {
            key,
            slot,
            depth: u16::try_from(depth).unwrap_or(u16::MAX),
            path: u8::try_from(path).unwrap_or(u8::MAX),
            state: State::Waiting,
        });
    }

    /// The contact and network (when the diversity limit applies) in `slot`
    /// ([`Candidate::slot`]).
    pub(super) fn at(&self, slot: u32) -> (Contact, Option<IpGroup>) {
        self.contacts[slot as usize]
    }

    /// The settled candidate at `key` if it is `from`'s and in flight.
    pub(super) fn in_flight(&mut self, key: &Key, from: &PeerId) -> Option<&mut Candidate> {
        let i = self.list[..self.settled]
            .binary_search_by(|c| c.key.cmp(key))
            .ok()?;
        let c = &mut self.list[i];
        let ours = self.contacts[c.slot as usize].0.id == *from;
        (c.state == State::InFlight && ours).then_some(c)
    }

    /// Sorts what was pushed into place (one merge of two sorted runs).
    pub(super) fn settle(&mut self) {
        if self.settled < self.list.len() {
            self.list.sort_by_key(|c| c.key);
            self.settled = self.list.len();
        }
    }

    pub(super) fn remove(&mut self, key: &Key) -> Option<Candidate> {
        debug_assert_eq!(self.settled, self.list.len());
        let i = self.list.binary_search_by(|c| c.key.cmp(key)).ok()?;
        self.settled -= 1;
        Some(self.list.remove(i))
    }

    /// Closest first.
    pub(super) fn values(&self) -> std::slice::Iter<'_, Candidate> {
        debug_assert_eq!(self.settled, self.list.len());
        self.list.iter()
    }

    /// Those closer to the target than `bound`.
    pub(super) fn closer_than(&self, bound: &Key) -> &[Candidate] {
        debug_assert_eq!(self.settled, self.list.len());
        &self.list[..self.list.partition_point(|c| c.key < *bound)]
    }
}
