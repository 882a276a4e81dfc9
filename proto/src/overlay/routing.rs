//! The routing table: 256 k-buckets of supernodes, indexed by XOR-distance prefix.
//!
//! Bucket policy (Kademlia's, with a replacement cache):
//! - Only supernodes that talked to us directly (sent a request, or answered one) are
//!   added; contacts merely named in someone's reply are not, so every entry was live
//!   at some point and its address is authenticated.
//! - Each bucket keeps up to `k` entries ordered least- to most-recently seen. Seeing
//!   an entry again moves it to the back.
//! - A newcomer for a full bucket goes to the bucket's replacement cache (also up to
//!   `k`, newest kept). Old live nodes are preferred because long-lived nodes tend to
//!   stay up, and because this keeps an attacker from flushing a bucket with fresh ids.
//!   If the bucket's least-recently-seen entry has not been heard from in
//!   [`STALE_AFTER`], the table asks its owner to ping it ([`RoutingTable::seen`]
//!   returns it); if that ping fails the entry is evicted.
//! - A failed RPC evicts an entry at once when a replacement is waiting, else after
//!   [`MAX_FAILURES`] consecutive failures. The newest replacement takes its place.
//! - A newcomer from a network already well represented is not admitted at all (see
//!   [`diversity`](super::diversity): at most 2 per /16 in a bucket, 8 in the table).

use super::bucket_set::BucketSet;
use super::diversity::{ip_group, IpGroup, MAX_PER_GROUP_IN_BUCKET, MAX_PER_GROUP_IN_TABLE};
use super::FastMap;
use crate::identity::NodeId;
use crate::presence::Contact;
use crate::time::Timestamp;
use rand::Rng;
use std::ops::Range;
use std::time::Duration;

/// Consecutive failed RPCs after which an entry is dropped even with no replacement.
pub const MAX_FAILURES: u32 = 2;

/// A full bucket's least-recently-seen entry older than this is pinged when a
/// newcomer would like its place.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

const BUCKETS: usize = 256;

/// One known supernode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// How to reach it.
    pub contact: Contact,
    /// When it last talked to us.
    pub last_seen: Timestamp,
    /// RPCs to it that failed since it last answered.
    pub failures: u32,
    /// A liveness ping is out for it.
    pinging: bool,
    /// Its position in the key space as words: distances and equality compare
    /// word by word (see [`Entry::node_id`]); scans read one copy, not two.
    words: Words,
    /// The network of its address, for the diversity limits.
    group: Option<IpGroup>,
}

/// A node id as four big-endian words: XOR distances compare in the same order as
/// [`NodeId::distance`], at a fraction of the cost in the hot sorting paths.
type Words = [u64; 4];

fn words(id: &NodeId) -> Words {
    let mut out = [0u64; 4];
    for (word, chunk) in out.iter_mut().zip(id.0.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_be_bytes(bytes);
    }
    out
}

fn xor(a: &Words, b: &Words) -> Words {
    [a[0] ^ b[0], a[1] ^ b[1], a[2] ^ b[2], a[3] ^ b[3]]
}

impl Entry {
    fn new(now: Timestamp, contact: Contact, node_id: &NodeId) -> Entry {
        Entry {
            contact,
            last_seen: now,
            failures: 0,
            pinging: false,
            words: words(node_id),
            group: ip_group(contact.addr.ip()),
        }
    }

    /// Its position in the key space ([`Contact::node_id`] of its contact).
    pub fn node_id(&self) -> NodeId {
        let mut id = [0u8; 32];
        for (chunk, word) in id.chunks_exact_mut(8).zip(self.words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        NodeId(id)
    }
}

#[derive(Clone, Debug)]
struct Bucket {
    /// Least-recently seen first.
    entries: Vec<Entry>,
    /// Newest last.
    replacements: Vec<Entry>,
    last_lookup: Timestamp,
}

impl Bucket {
    /// Moves the newest replacement into the entries, kept in `last_seen` order, after an
    /// entry left (the replacement cache of the Kademlia paper, §4.1). Returns the
    /// promoted entry's network, if one was promoted.
    fn promote_replacement(&mut self) -> Option<Option<IpGroup>> {
        let newcomer = self.replacements.pop()?;
        let group = newcomer.group;
        let at = self
            .entries
            .iter()
            .position(|e| e.last_seen > newcomer.last_seen)
            .unwrap_or(self.entries.len());
        self.entries.insert(at, newcomer);
        Some(group)
    }
}

/// The k-buckets of one supernode.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    me: NodeId,
    k: usize,
    buckets: Vec<Bucket>,
    /// Whether the diversity limits apply.
    diversity: bool,
    /// Entries in all buckets (kept, not counted: every request asks).
    len: usize,
    /// The buckets that have entries: walks over the buckets skip the empty ones
    /// (most of the 256) without reading them.
    occupied: BucketSet,
    /// Entries per network, for the table-wide diversity limit (kept, not counted:
    /// every request from a supernode not in the table asks).
    groups: FastMap<IpGroup, usize>,
}

impl RoutingTable {
    /// An empty table for the supernode at `me`, with buckets of `k` (at least 1).
    pub fn new(me: NodeId, k: usize, now: Timestamp) -> RoutingTable {
        let bucket = Bucket {
            entries: Vec::new(),
            replacements: Vec::new(),
            last_lookup: now,
        };
        RoutingTable {
            me,
            k: k.max(1),
            buckets: vec![bucket; BUCKETS],
            diversity: true,
            len: 0,
            occupied: BucketSet::default(),
            groups: FastMap::default(),
        }
    }

    /// The same table with the diversity limits on (the default) or off.
    pub fn with_diversity(self, on: bool) -> RoutingTable {
        RoutingTable {
            diversity: on,
            ..self
        }
    }

    /// Counts an entry of network `group` entering the buckets.
    fn entered(&mut self, group: Option<IpGroup>) {
        self.len += 1;
        if let Some(group) = group {
            *self.groups.entry(group).or_default() += 1;
        }
    }

    /// Notes whether bucket `index` has entries now (after one came or went).
    fn mark(&mut self, index: usize) {
        if self.buckets[index].entries.is_empty() {
            self.occupied.remove(index);
        } else {
            self.occupied.insert(index);
        }
    }

    /// Counts an entry of network `group` leaving the buckets.
    fn left(&mut self, group: Option<IpGroup>) {
        self.len = self.len.saturating_sub(1);
        if let Some(group) = group {
            if let Some(n) = self.groups.get_mut(&group) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.groups.remove(&group);
                }
            }
        }
    }

    /// Records that `contact` talked to us directly at `now`: an entry is its
    /// position, [`Contact::node_id`] (key and IP, BEP 42), so a supernode whose IP
    /// changed is a new entry and its old one goes as RPCs to the old address fail.
    /// Returns a contact the
    /// caller should ping: the least-recently-seen entry of a full bucket that has
    /// gone quiet, whose failure to answer will let a newcomer in.
    pub fn seen(&mut self, now: Timestamp, contact: Contact) -> Option<Contact> {
        let node_id = contact.node_id();
        let index = self.me.bucket_index(&node_id)?;
        let k = self.k;
        let id = words(&node_id);
        let known = self.buckets[index]
            .entries
            .iter()
            .position(|e| e.words == id);
        if known.is_none() && !self.admits(index, &contact, &id) {
            return None;
        }
        let bucket = &mut self.buckets[index];
        if let Some(pos) = known {
            let mut entry = bucket.entries.remove(pos);
            let (old, new) = (entry.group, ip_group(contact.addr.ip()));
            entry.contact = contact;
            entry.group = new;
            entry.last_seen = now;
            entry.failures = 0;
            entry.pinging = false;
            bucket.entries.push(entry);
            if old != new {
                self.left(old);
                self.entered(new);
            }
            return None;
        }
        bucket.replacements.retain(|e| e.words != id);
        if bucket.entries.len() < k {
            let entry = Entry::new(now, contact, &node_id);
            let group = entry.group;
            bucket.entries.push(entry);
            self.entered(group);
            self.mark(index);
            return None;
        }
        bucket.replacements.push(Entry::new(now, contact, &node_id));
        if bucket.replacements.len() > k {
            bucket.replacements.remove(0);
        }
        if bucket.entries.iter().any(|e| e.pinging) {
            return None;
        }
        let oldest = bucket.entries.first_mut()?;
        if oldest.last_seen + STALE_AFTER <= now {
            oldest.pinging = true;
            return Some(oldest.contact);
        }
        None
    }

    /// Whether a newcomer at `contact` may enter bucket `index` (as an entry or a
    /// replacement) without its network passing the diversity limits.
    fn admits(&self, index: usize, contact: &Contact, id: &Words) -> bool {
        let Some(group) = ip_group(contact.addr.ip()).filter(|_| self.diversity) else {
            return true;
        };
        let same = |e: &&Entry| e.group == Some(group) && e.words != *id;
        let bucket = &self.buckets[index];
        let in_bucket = bucket.entries.iter().chain(&bucket.replacements);
        // The newcomer is not an entry (the caller checked), so every entry of its
        // network counts against the table-wide limit.
        in_bucket.filter(same).count() < MAX_PER_GROUP_IN_BUCKET
            && self.groups.get(&group).copied().unwrap_or(0) < MAX_PER_GROUP_IN_TABLE
    }

    /// Records that an RPC to `peer` failed; may evict it (see the module docs).
    /// An entry is a contact's position (its key and IP), so a supernode seen at
    /// another IP since is another entry.
    pub fn failed(&mut self, peer: &Contact) {
        let node_id = peer.node_id();
        let Some(index) = self.me.bucket_index(&node_id) else {
            return;
        };
        let id = words(&node_id);
        let bucket = &mut self.buckets[index];
        // A replacement that fails is not worth promoting later.
        bucket.replacements.retain(|e| e.words != id);
        let Some(pos) = bucket.entries.iter().position(|e| e.words == id) else {
            return;
        };
        let entry = &mut bucket.entries[pos];
        entry.failures = entry.failures.saturating_add(1);
        entry.pinging = false;
        if entry.failures < MAX_FAILURES && bucket.replacements.is_empty() {
            return;
        }
        let gone = bucket.entries.remove(pos).group;
        let promoted = bucket.promote_replacement();
        self.left(gone);
        if let Some(group) = promoted {
            self.entered(group);
        }
        self.mark(index);
    }

    /// Forgets `peer` entirely; the newest replacement, if any, takes its place.
    pub fn remove(&mut self, peer: &Contact) {
        let node_id = peer.node_id();
        if let Some(index) = self.me.bucket_index(&node_id) {
            let id = words(&node_id);
            let bucket = &mut self.buckets[index];
            bucket.replacements.retain(|e| e.words != id);
            if let Some(pos) = bucket.entries.iter().position(|e| e.words == id) {
                let gone = bucket.entries.remove(pos).group;
                let promoted = bucket.promote_replacement();
                self.left(gone);
                if let Some(group) = promoted {
                    self.entered(group);
                }
                self.mark(index);
            }
        }
    }

    /// The entry for `peer`, if it is in a bucket (not merely a replacement).
    pub fn get(&self, peer: &Contact) -> Option<&Entry> {
        let node_id = peer.node_id();
        let index = self.me.bucket_index(&node_id)?;
        let id = words(&node_id);
        self.buckets[index].entries.iter().find(|e| e.words == id)
    }

    /// Up to `n` contacts closest to `target`, closest first, of the entries `keep`
    /// accepts.
    ///
    /// Walks the occupied buckets in order of distance ([`Self::buckets_by_distance`])
    /// and sorts only within a bucket, stopping once it has `n`: answering a
    /// `FindNode` reads a bucket or two, not the whole table.
    pub fn closest(
        &self,
        target: &NodeId,
        n: usize,
        keep: impl Fn(&Entry) -> bool + Copy,
    ) -> Vec<Contact> {
        let mut out = Vec::with_capacity(n.min(self.len()));
        let target_words = words(target);
        for i in self.buckets_by_distance(target) {
            if out.len() >= n {
                break;
            }
            self.extend_sorted(i, &target_words, n, keep, &mut out);
        }
        out
    }

    /// Occupied buckets, in order of their entries' distance to `target`: every entry of
    /// a bucket is closer to `target` than every entry of the buckets after it, so a
    /// search for the closest entries can stop at the bucket where it has enough.
    ///
    /// With `D = me XOR target` and `b` its highest set bit (the target's bucket): an
    /// entry of bucket `i` differs from us first at bit `i`, so its distance to the
    /// target is `D` with bit `i` and lower bits changed. Bucket `b`'s entries clear
    /// bit `b`: they come first. Below `b`, buckets where `D` has a 1 clear it (closer,
    /// and the higher such bit the closer), buckets where `D` has a 0 set it (farther,
    /// and the higher the farther). Above `b` the distance's highest bit is `i` itself.
    fn buckets_by_distance(&self, target: &NodeId) -> impl Iterator<Item = usize> {
        let d = BucketSet::from_big_endian(&xor(&words(&self.me), &words(target)));
        let occupied = self.occupied;
        let b = self.me.bucket_index(target);
        let (first, lower, above) = match b {
            Some(b) => (
                Some(b).filter(|&b| occupied.contains(b)),
                occupied.and(BucketSet::below(b)),
                occupied.minus(BucketSet::below(b + 1)),
            ),
            None => (None, BucketSet::default(), occupied),
        };
        first
            .into_iter()
            .chain(lower.and(d).descending())
            .chain(lower.minus(d).ascending())
            .chain(above.ascending())
    }

    fn extend_sorted(
        &self,
        bucket: usize,
        target: &Words,
        n: usize,
        keep: impl Fn(&Entry) -> bool,
        out: &mut Vec<Contact>,
    ) {
        let entries = &self.buckets[bucket].entries;
        if entries.is_empty() {
            return;
        }
        let mut group: Vec<(Words, &Entry)> = entries
            .iter()
            .filter(|e| keep(e))
            .map(|e| (xor(&e.words, target), e))
            .collect();
        group.sort_unstable_by_key(|a| a.0);
        let want = n.saturating_sub(out.len());
        out.extend(group.iter().take(want).map(|(_, e)| e.contact));
    }

    /// How many entries are closer to `key` than we are, counting no further than
    /// `cap`: our rank among the holders of a record under `key`, as far as we know.
    ///
    /// Everything in the key's own bucket is closer than us, everything in higher
    /// buckets is farther, and only the buckets below need comparing.
    pub fn closer_than_me(&self, key: &NodeId, cap: usize) -> usize {
        let Some(b) = self.me.bucket_index(key) else {
            return 0;
        };
        let key = words(key);
        let mine = xor(&words(&self.me), &key);
        let mut count = self.buckets[b].entries.len();
        for i in self.occupied.and(BucketSet::below(b)).descending() {
            if count >= cap {
                break;
            }
            count += self.buckets[i]
                .entries
                .iter()
                .filter(|e| xor(&e.words, &key) < mine)
                .count();
        }
        count.min(cap)
    }

    /// How many entries are closer to `key` than `than` is, counting no further than
    /// `cap` (`than` itself, if in the table, is not counted): the rank `than` would
    /// have among the holders of a record under `key`, as far as we know.
    pub fn closer_than(&self, key: &NodeId, than: &NodeId, cap: usize) -> usize {
        let key = words(key);
        let theirs = xor(&words(than), &key);
        let mut count = 0;
        for e in self.entries() {
            if count >= cap {
                break;
            }
            if xor(&e.words, &key) < theirs {
                count += 1;
            }
        }
        count
    }

    /// Up to `n` entries that answered their last RPC, most recently seen first.
    pub fn live(&self, n: usize) -> Vec<Contact> {
        let mut all: Vec<&Entry> = self.entries().filter(|e| e.failures == 0).collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
        all.into_iter().take(n).map(|e| e.contact).collect()
    }

    /// Every entry, bucket by bucket.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.occupied
            .ascending()
            .flat_map(|i| self.buckets[i].entries.iter())
    }

    /// Number of entries (replacements not counted).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Notes that a lookup for `target` ran at `now`, which refreshes its bucket.
    pub fn touch(&mut self, target: &NodeId, now: Timestamp) {
        if let Some(index) = self.me.bucket_index(target) {
            self.buckets[index].last_lookup = now;
        }
    }

    /// Buckets worth refreshing: from the one holding our closest neighbour up to
    /// the farthest. Closer buckets are empty because no such nodes exist, and a
    /// self-lookup already covers them.
    fn refreshable(&self) -> Range<usize> {
        let lowest = self.occupied.ascending().next();
        lowest.unwrap_or(BUCKETS)..BUCKETS
    }

    /// Buckets that saw no lookup for `max_age` (all refreshable buckets if zero).
    pub fn stale_buckets(&self, now: Timestamp, max_age: Duration) -> Vec<usize> {
        self.refreshable()
            .filter(|&i| self.buckets[i].last_lookup + max_age <= now)
            .collect()
    }

    /// When the next bucket will have gone `max_age` without a lookup.
    pub fn next_refresh(&self, max_age: Duration) -> Option<Timestamp> {
        self.refreshable()
            .map(|i| self.buckets[i].last_lookup + max_age)
            .min()
    }

    /// A uniformly random id that falls in bucket `index` (0..=255).
    pub fn random_id_in_bucket<R: Rng>(&self, index: usize, rng: &mut R) -> NodeId {
        let index = index.min(BUCKETS - 1);
        let prefix = BUCKETS - 1 - index;
        let mut id = [0u8; 32];
        rng.fill(&mut id[..]);
        for (bit, byte_of) in (0..=prefix).map(|bit| (bit, bit / 8)) {
            let mask = 0x80u8 >> (bit % 8);
            let mine = self.me.0[byte_of] & mask;
            // The first `prefix` bits agree with ours; the next one differs.
            let want = if bit == prefix { mine ^ mask } else { mine };
            id[byte_of] = (id[byte_of] & !mask) | want;
        }
        NodeId(id)
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
