//! Key files: the 32-byte secret seed of an [`Identity`], as one line of hex behind a
//! version tag, written with owner-only (0600) permissions.

use crate::identity::Identity;
use data_encoding::HEXLOWER_PERMISSIVE;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

const TAG: &str = "parley-secret-key-v1";

/// Why a key file could not be read or written.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// There is no key file at that path.
    #[error(
        "no identity at {0}: create one with `parley id new` (servers create theirs at start)"
    )]
    Missing(PathBuf),
    /// The file exists already and will not be overwritten.
    #[error("{0} already holds an identity; refusing to overwrite it (move it away first)")]
    Exists(PathBuf),
    /// The file does not hold a key in the expected format.
    #[error("{path} is not a Parley key file: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The operating system refused.
    #[error("cannot access key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the identity stored at `path`.
pub fn load(path: &Path) -> Result<Identity, KeyFileError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyFileError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    parse(&text).map_err(|why| KeyFileError::Malformed {
        path: path.to_path_buf(),
        why,
    })
}

fn parse(text: &str) -> Result<Identity, &'static str> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("the file is empty")?;
    let (tag, hex) = line
        .split_once(' ')
        .ok_or("expected `parley-secret-key-v1 <hex>`")?;
    if tag != TAG {
        return Err("unknown key file version");
    }
    let bytes = HEXLOWER_PERMISSIVE
        .decode(hex.trim().as_bytes())
        .map_err(|_| "the key is not hex")?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| "the key is not 32 bytes")?;
    Ok(Identity::from_seed(&seed))
}

/// Writes `identity` to a new file at `path` (mode 0600), creating parent directories.
pub fn create(path: &Path, identity: &Identity) -> Result<(), KeyFileError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(path))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(KeyFileError::Exists(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let text = format!(
        "# Parley identity {}. Keep this file private.\n{TAG} {}\n",
        identity.peer_id(),
        data_encoding::HEXLOWER.encode(&identity.seed())
    );
    file.write_all(text.as_bytes()).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Reads the identity at `path`, or makes and stores a new one if there is none.
pub fn load_or_create(path: &Path) -> Result<Identity, KeyFileError> {
    match load(path) {
        Err(KeyFileError::Missing(_)) => {
            let identity = Identity::generate();
            match create(path, &identity) {
                Ok(()) => Ok(identity),
                // Another process created it first: use theirs.
                Err(KeyFileError::Exists(_)) => load(path),
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key");
        let id = Identity::generate();
        create(&path, &id).unwrap();
        assert_eq!(load(&path).unwrap().peer_id(), id.peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(create(&path, &id), Err(KeyFileError::Exists(_))));
    }

    #[test]
    fn load_or_create_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
    }

    #[test]
    fn malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        for bad in [
            "",
            "garbage",
            "parley-secret-key-v2 00",
            "parley-secret-key-v1 zz",
            "parley-secret-key-v1 0011",
        ] {
            fs::write(&path, bad).unwrap();
            assert!(
                matches!(load(&path), Err(KeyFileError::Malformed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            load(&dir.path().join("none")),
            Err(KeyFileError::Missing(_))
        ));
    }
}
