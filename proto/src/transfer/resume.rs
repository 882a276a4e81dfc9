//! Resuming a transfer: which chunks are verified, rebuilt from what storage holds.
//!
//! A receiver writes verified chunks into its partial file and keeps a small resume
//! file next to it. After a restart nothing is trusted unverified: the resume file only
//! says which chunks to hash ([`rebuild`]); without one, every chunk of the partial
//! file is hashed. Either way the result counts only chunks whose bytes match the
//! manifest.
//!
//! ```text
//! resume file = version:u8 (= 1) root:[u8; 32] bitfield: ceil(chunks / 8) bytes
//! ```

use super::bitfield::{Bitfield, BitfieldError};
use super::manifest::Manifest;
use thiserror::Error;

/// The resume-file format this build reads and writes.
pub const RESUME_VERSION: u8 = 1;

/// Why a resume file was not used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ResumeError {
    /// Shorter than its header, or a version this build does not read.
    #[error("resume file is not version {RESUME_VERSION} (or truncated)")]
    Version,
    /// It belongs to another file.
    #[error("resume file belongs to another transfer")]
    OtherTransfer,
    /// Its bitfield does not fit the manifest.
    #[error("resume file bitfield: {0}")]
    Bitfield(#[from] BitfieldError),
}

/// The resume file for `have` (see the module docs).
pub fn encode(manifest: &Manifest, have: &Bitfield) -> Vec<u8> {
    let mut out = vec![RESUME_VERSION];
    out.extend_from_slice(&manifest.root());
    out.extend_from_slice(have.as_bytes());
    out
}

/// Parses a resume file for `manifest`: the chunks it claims (to be checked with
/// [`rebuild`], never trusted as they are).
pub fn decode(manifest: &Manifest, bytes: &[u8]) -> Result<Bitfield, ResumeError> {
    let [RESUME_VERSION, rest @ ..] = bytes else {
        return Err(ResumeError::Version);
    };
    if rest.len() < 32 {
        return Err(ResumeError::Version);
    }
    let (root, bits) = rest.split_at(32);
    if root != manifest.root() {
        return Err(ResumeError::OtherTransfer);
    }
    Ok(Bitfield::from_bytes(manifest.chunk_count(), bits)?)
}

/// The chunks whose stored bytes match the manifest. `claimed`: the chunks to check
/// (from a resume file), or `None` to check all. `read(index, len)` returns the
/// stored bytes of a chunk (`None` when they cannot be read, e.g. past the end of a
/// short partial file).
pub fn rebuild(
    manifest: &Manifest,
    claimed: Option<&Bitfield>,
    mut read: impl FnMut(u32, usize) -> Option<Vec<u8>>,
) -> Bitfield {
    let mut have = Bitfield::empty(manifest.chunk_count());
    for i in 0..manifest.chunk_count() {
        if claimed.is_some_and(|c| !c.get(i)) {
            continue;
        }
        if let Some(data) = read(i, manifest.chunk_len(i)) {
            if manifest.verify_chunk(i, &data) {
                have.set(i);
            }
        }
    }
    have
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::manifest::CHUNK_SIZE;
    use crate::Identity;

    #[test]
    fn only_chunks_that_verify_count() {
        let file: Vec<u8> = (0..3 * CHUNK_SIZE as usize)
            .map(|i| (i % 251) as u8)
            .collect();
        let m = Manifest::for_bytes(&Identity::from_seed(&[1; 32]), "f", &file).expect("manifest");
        let mut stored = file.clone();
        stored[CHUNK_SIZE as usize + 5] ^= 1; // chunk 1 corrupted on disk
        let read = |i: u32, len: usize| {
            let start = m.chunk_offset(i) as usize;
            stored.get(start..start + len).map(<[u8]>::to_vec)
        };
        let all = rebuild(&m, None, read);
        assert_eq!(all.iter_ones().collect::<Vec<_>>(), vec![0, 2]);

        let mut claimed = Bitfield::empty(3);
        claimed.set(1);
        claimed.set(2);
        let bytes = encode(&m, &claimed);
        let claimed = decode(&m, &bytes).expect("resume file");
        let have = rebuild(&m, Some(&claimed), read);
        assert_eq!(
            have.iter_ones().collect::<Vec<_>>(),
            vec![2],
            "chunk 0 not claimed, 1 bad"
        );
    }

    #[test]
    fn foreign_or_damaged_resume_files_are_refused() {
        let id = Identity::from_seed(&[1; 32]);
        let m = Manifest::for_bytes(&id, "f", b"abc").expect("manifest");
        let other = Manifest::for_bytes(&id, "f", b"abd").expect("manifest");
        let good = encode(&m, &Bitfield::full(1));
        assert_eq!(decode(&m, &good), Ok(Bitfield::full(1)));
        assert_eq!(decode(&other, &good), Err(ResumeError::OtherTransfer));
        assert_eq!(decode(&m, &good[..20]), Err(ResumeError::Version));
        assert_eq!(decode(&m, &[]), Err(ResumeError::Version));
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(decode(&m, &v2), Err(ResumeError::Version));
        let mut spare = good;
        *spare.last_mut().expect("a bitfield byte") |= 1;
        assert!(matches!(decode(&m, &spare), Err(ResumeError::Bitfield(_))));
    }
}
