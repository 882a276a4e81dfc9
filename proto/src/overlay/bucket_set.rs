//! A set of k-bucket indices (0–255) as a 256-bit mask: which buckets of a routing
//! table hold entries, walked in either direction without visiting the empty ones
//! (a table of 10,000 supernodes fills the top dozen of its 256 buckets, and a walk
//! that tested each index spent more time on the empty ones than on the entries).

/// Bucket indices 0–255; bit `i % 64` of word `i / 64` is bucket `i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct BucketSet([u64; 4]);

impl BucketSet {
    /// The buckets whose bit is set in the 256-bit big-endian number `words`
    /// (`words[0]` holds bits 255–192): for `me XOR target`, the buckets where the
    /// target differs from us.
    pub(super) fn from_big_endian(words: &[u64; 4]) -> BucketSet {
        BucketSet([words[3], words[2], words[1], words[0]])
    }

    /// Every bucket below `index` (none for 0).
    pub(super) fn below(index: usize) -> BucketSet {
        let mut out = [0u64; 4];
        for (w, word) in out.iter_mut().enumerate() {
            let start = w * 64;
            *word = if index >= start + 64 {
                u64::MAX
            } else if index > start {
                (1u64 << (index - start)) - 1
            } else {
                0
            };
        }
        BucketSet(out)
    }

    pub(super) fn insert(&mut self, index: usize) {
        self.0[index / 64] |= 1 << (index % 64);
    }

    pub(super) fn remove(&mut self, index: usize) {
        self.0[index / 64] &= !(1 << (index % 64));
    }

    pub(super) fn contains(&self, index: usize) -> bool {
        self.0[index / 64] >> (index % 64) & 1 == 1
    }

    /// The buckets in both.
    pub(super) fn and(self, other: BucketSet) -> BucketSet {
        BucketSet(std::array::from_fn(|w| self.0[w] & other.0[w]))
    }

    /// The buckets of `self` not in `other`.
    pub(super) fn minus(self, other: BucketSet) -> BucketSet {
        BucketSet(std::array::from_fn(|w| self.0[w] & !other.0[w]))
    }

    /// The buckets in ascending order.
    pub(super) fn ascending(self) -> impl Iterator<Item = usize> {
        let mut words = self.0;
        let mut w = 0;
        std::iter::from_fn(move || {
            while w < 4 {
                if words[w] != 0 {
                    let bit = words[w].trailing_zeros() as usize;
                    words[w] &= words[w] - 1;
                    return Some(w * 64 + bit);
                }
                w += 1;
            }
            None
        })
    }

    /// The buckets in descending order.
    pub(super) fn descending(self) -> impl Iterator<Item = usize> {
        let mut words = self.0;
        let mut w = 4;
        std::iter::from_fn(move || {
            while w > 0 {
                let word = &mut words[w - 1];
                if *word != 0 {
                    let bit = 63 - word.leading_zeros() as usize;
                    *word &= !(1 << bit);
                    return Some((w - 1) * 64 + bit);
                }
                w -= 1;
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(indices: &[usize]) -> BucketSet {
        let mut s = BucketSet::default();
        for &i in indices {
            s.insert(i);
        }
        s
    }

    #[test]
    fn walks_only_the_members_in_either_order() {
        let s = set(&[0, 5, 63, 64, 130, 255]);
        assert_eq!(s.ascending().collect::<Vec<_>>(), [0, 5, 63, 64, 130, 255]);
        assert_eq!(s.descending().collect::<Vec<_>>(), [255, 130, 64, 63, 5, 0]);
        let mut t = s;
        t.remove(64);
        assert!(!t.contains(64) && t.contains(63));
        assert_eq!(BucketSet::default().ascending().next(), None);
    }

    #[test]
    fn below_and_masks_agree_with_indices() {
        for index in [0, 1, 63, 64, 65, 128, 200, 255, 256] {
            let below: Vec<usize> = BucketSet::below(index).ascending().collect();
            assert_eq!(below, (0..index.min(256)).collect::<Vec<_>>(), "{index}");
        }
        let s = set(&[3, 70, 200]);
        assert_eq!(
            s.and(BucketSet::below(100)).ascending().collect::<Vec<_>>(),
            [3, 70]
        );
        assert_eq!(
            s.minus(BucketSet::below(100))
                .ascending()
                .collect::<Vec<_>>(),
            [200]
        );
        // Bit 255 of a big-endian number is the top bit of its first word.
        let top = BucketSet::from_big_endian(&[1 << 63, 0, 0, 1]);
        assert_eq!(top.ascending().collect::<Vec<_>>(), [0, 255]);
    }
}
