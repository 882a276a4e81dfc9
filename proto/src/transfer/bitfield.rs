//! Which chunks a peer holds: one bit per chunk, as in BitTorrent's `bitfield` message
//! (BEP 3): the high bit of the first byte is chunk 0, spare bits at the end are zero.

use thiserror::Error;

/// A set of chunk indices `0..len`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u32,
    ones: u32,
}

/// Why bitfield bytes were refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BitfieldError {
    /// Not `ceil(len / 8)` bytes.
    #[error("bitfield of {got} bytes for {chunks} chunks (expected {expected})")]
    WrongLength {
        /// Chunks in the file.
        chunks: u32,
        /// Bytes expected.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// A bit past the last chunk is set.
    #[error("bitfield has spare bits set past chunk {0}")]
    SpareBits(u32),
}

impl Bitfield {
    /// No chunks out of `len`.
    pub fn empty(len: u32) -> Bitfield {
        Bitfield {
            bits: vec![0; byte_len(len)],
            len,
            ones: 0,
        }
    }

    /// Every chunk out of `len` (a seeder).
    pub fn full(len: u32) -> Bitfield {
        let mut b = Bitfield::empty(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Parses the wire form for a file of `len` chunks, strictly.
    pub fn from_bytes(len: u32, bytes: &[u8]) -> Result<Bitfield, BitfieldError> {
        let expected = byte_len(len);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                chunks: len,
                expected,
                got: bytes.len(),
            });
        }
        let spare = (expected * 8) as u32 - len;
        if spare > 0 && bytes[expected - 1] & ((1u8 << spare) - 1) != 0 {
            return Err(BitfieldError::SpareBits(len));
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Bitfield {
            bits: bytes.to_vec(),
            len,
            ones,
        })
    }

    /// The wire form: `ceil(len / 8)` bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Chunks in the file.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True for a file of no chunks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Chunks held.
    pub fn count(&self) -> u32 {
        self.ones
    }

    /// Every chunk is held.
    pub fn is_complete(&self) -> bool {
        self.ones == self.len
    }

    /// Whether chunk `i` is held (false past the end).
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Marks chunk `i` held; false if it already was. Panics past the end (a caller bug:
    /// indices from the network are range-checked before they get here).
    pub fn set(&mut self, i: u32) -> bool {
        assert!(i < self.len, "chunk {i} out of range 0..{}", self.len);
        let (byte, mask) = ((i / 8) as usize, 0x80u8 >> (i % 8));
        let new = self.bits[byte] & mask == 0;
        if new {
            self.bits[byte] |= mask;
            self.ones += 1;
        }
        new
    }

    /// Marks chunk `i` not held; false if it was not.
    pub fn clear(&mut self, i: u32) -> bool {
        if !self.get(i) {
            return false;
        }
        self.bits[(i / 8) as usize] &= !(0x80u8 >> (i % 8));
        self.ones -= 1;
        true
    }

    /// Whether `self` holds any chunk `other` lacks (`other` must be as long).
    pub fn has_any_missing_from(&self, other: &Bitfield) -> bool {
        self.bits.iter().zip(&other.bits).any(|(a, b)| a & !b != 0)
    }

    /// The indices held, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

fn byte_len(len: u32) -> usize {
    (len as usize).div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_msb_first_and_counted() {
        let mut b = Bitfield::empty(10);
        assert!(b.set(0) && b.set(9) && !b.set(9));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert!(b.get(9) && !b.get(8) && !b.get(10));
        assert!(b.clear(0) && !b.clear(0));
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![9]);
        assert!(Bitfield::full(10).is_complete());
        assert_eq!(Bitfield::full(10).as_bytes(), &[0xff, 0xc0]);
    }

    #[test]
    fn wire_form_is_strict() {
        let b = Bitfield::from_bytes(10, &[0xff, 0xc0]).expect("valid");
        assert!(b.is_complete());
        assert_eq!(
            Bitfield::from_bytes(10, &[0xff, 0xe0]),
            Err(BitfieldError::SpareBits(10))
        );
        assert!(matches!(
            Bitfield::from_bytes(10, &[0xff]),
            Err(BitfieldError::WrongLength { expected: 2, .. })
        ));
        assert!(Bitfield::from_bytes(0, &[]).expect("empty").is_complete());
        assert!(Bitfield::from_bytes(16, &[0xff, 0xff]).is_ok());
    }

    #[test]
    fn missing_from_compares_sets() {
        let mut a = Bitfield::empty(12);
        let mut b = Bitfield::empty(12);
        a.set(11);
        assert!(a.has_any_missing_from(&b));
        b.set(11);
        assert!(!a.has_any_missing_from(&b));
    }
}
