//! Where a receiver keeps a file while it arrives: verified chunks written into
//! `DIR/<name>.part`, a resume file beside it, and an atomic, never-overwriting
//! rename at the end.
//!
//! Nothing is written outside `DIR`: every path is `DIR` joined with one component
//! that [`check_file_name`] accepted (the manifest's name, already checked when the
//! manifest was decoded, is checked again here), and files are opened with
//! `O_NOFOLLOW`, so a symlink planted at `DIR/<name>.part` is refused rather than
//! followed. The finished file gets the first free name of `<name>`,
//! `<stem> (1)<ext>`, `<stem> (2)<ext>`… (at most [`MAX_SUFFIX`]), claimed with
//! `link(2)`, which fails if the name exists, so an existing file is never replaced,
//! even by a race.
//!
//! The resume file (`DIR/.<name>.parley-resume`, format in docs/protocol.md) is written
//! to a temporary name and renamed, so it is always whole; it only says which chunks
//! to hash again ([`parley_proto::transfer::resume`]).

use parley_proto::transfer::resume;
use parley_proto::transfer::{check_file_name, Bitfield, Manifest, NameError};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Highest ` (N)` suffix tried for a free name.
pub const MAX_SUFFIX: u32 = 999;

/// Why a file cannot be received into the directory.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The name (or a name derived from it) is not a plain file name.
    #[error("cannot save {name:?}: {why}")]
    Name {
        /// The name.
        name: String,
        /// Why.
        why: NameError,
    },
    /// `DIR/<name>.part` belongs to another file's transfer.
    #[error(
        "{0} is a partial download of another file with the same name; finish or remove it first"
    )]
    Busy(PathBuf),
    /// `DIR/<name>.part` is not a regular file (a symlink, a directory...).
    #[error("{0} exists and is not a regular file; refusing to write through it")]
    NotAFile(PathBuf),
    /// Every name up to `<stem> (MAX_SUFFIX)<ext>` is taken.
    #[error("no free name for {0:?} in the directory (tried up to ({MAX_SUFFIX}))")]
    NoFreeName(String),
    /// The file system said no.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

pub(super) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// `dir` joined with `name`, if `name` is one plain component.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, StorageError> {
    check_file_name(name).map_err(|why| StorageError::Name {
        name: name.to_string(),
        why,
    })?;
    Ok(dir.join(name))
}

/// `name`, then `<stem> (1)<ext>`, … for the `n`th attempt. The stem ends at the first
/// dot that is not the first character, so `a.tar.gz` becomes `a (1).tar.gz` and
/// `.profile` becomes `.profile (1)`.
pub fn candidate_name(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    let split = name
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '.')
        .map_or(name.len(), |(i, _)| i);
    format!("{} ({n}){}", &name[..split], &name[split..])
}

/// A file being received into a directory.
#[derive(Debug)]
pub struct PartialFile {
    manifest: Manifest,
    dir: PathBuf,
    part: PathBuf,
    resume: PathBuf,
    file: File,
}

impl PartialFile {
    /// Opens `DIR/<name>.part` for `manifest`, creating it if needed, and returns it
    /// with the chunks it verifiably holds (those its resume file names, or every
    /// chunk when there is no resume file, each hashed against the manifest).
    pub fn open(dir: &Path, manifest: &Manifest) -> Result<(PartialFile, Bitfield), StorageError> {
        let name = manifest.name();
        let part = inside(dir, &format!("{name}.part"))?;
        let resume = inside(dir, &format!(".{name}.parley-resume"))?;
        let claimed = match std::fs::read(&resume) {
            Ok(bytes) => match resume::decode(manifest, &bytes) {
                Ok(claimed) => Some(claimed),
                Err(resume::ResumeError::OtherTransfer) => return Err(StorageError::Busy(part)),
                // A damaged resume file: hash everything instead.
                Err(_) => None,
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("reading", &resume)(e)),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&part)
            .map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    StorageError::NotAFile(part.clone())
                } else {
                    io_err("opening", &part)(e)
                }
            })?;
        let meta = file.metadata().map_err(io_err("inspecting", &part))?;
        if !meta.is_file() {
            return Err(StorageError::NotAFile(part));
        }
        let pf = PartialFile {
            manifest: manifest.clone(),
            dir: dir.to_path_buf(),
            part,
            resume,
            file,
        };
        let have = resume::rebuild(manifest, claimed.as_ref(), |i, _| pf.read_chunk(i).ok());
        Ok((pf, have))
    }

    /// Where the partial file is.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn part_path(&self) -> &Path {
        &self.part
    }

    /// Writes a verified chunk at its offset.
    pub fn write_chunk(&self, index: u32, data: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all_at(data, self.manifest.chunk_offset(index))
            .map_err(io_err("writing", &self.part))
    }

    /// Reads chunk `index` as stored (the swarm verifies it before serving it).
    pub fn read_chunk(&self, index: u32) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0; self.manifest.chunk_len(index)];
        self.file
            .read_exact_at(&mut buf, self.manifest.chunk_offset(index))
            .map_err(io_err("reading", &self.part))?;
        Ok(buf)
    }

    /// Records which chunks are verified (written whole: temporary file, then rename).
    /// The partial file is not synced first: the resume file only says which chunks to
    /// hash again, so a chunk it names that did not reach the disk before a crash
    /// fails its hash and is downloaded again (syncing every 8 chunks cut a 256 MiB
    /// transfer's rate by about half).
    pub fn save_resume(&self, have: &Bitfield) -> Result<(), StorageError> {
        let tmp = self.resume.with_extension("parley-resume-tmp");
        std::fs::write(&tmp, resume::encode(&self.manifest, have))
            .map_err(io_err("writing", &tmp))?;
        std::fs::rename(&tmp, &self.resume).map_err(io_err("renaming", &tmp))
    }

    /// Ends a complete transfer: syncs the file, gives it the first free name (never
    /// replacing anything), removes the resume file, and returns the final path.
    pub fn finish(self) -> Result<PathBuf, StorageError> {
        self.file
            .sync_all()
            .map_err(io_err("syncing", &self.part))?;
        let name = self.manifest.name();
        for n in 0..=MAX_SUFFIX {
            let target = inside(&self.dir, &candidate_name(name, n))?;
            match std::fs::hard_link(&self.part, &target) {
                Ok(()) => {
                    std::fs::remove_file(&self.part).map_err(io_err("removing", &self.part))?;
                    match std::fs::remove_file(&self.resume) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err("removing", &self.resume)(e)),
                    }
                    return Ok(target);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("linking", &target)(e)),
            }
        }
        Err(StorageError::NoFreeName(name.to_string()))
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
