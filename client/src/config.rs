//! The client's optional config file, `<home>/config.toml`.
//!
//! It holds what a user would otherwise pass on every command line; today that is the
//! bootstrap supernodes, used by every command given no `--supernode`:
//!
//! ```toml
//! # HOST:PORT is a supernode's QUIC address; tcp://HOST:PORT its TCP fallback, for a
//! # first start on a network that drops UDP (issue 15).
//! supernodes = ["sn1.example.org:4433", "tcp://sn1.example.org:443"]
//! ```
//!
//! A missing file is an empty config. A file that does not parse, or has a key this
//! version does not know, is an error naming the file: a typo must not silently leave
//! the client without its supernodes.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;

/// The config file's name inside the home directory.
pub const FILE_NAME: &str = "config.toml";

/// What `<home>/config.toml` may say.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Bootstrap supernodes (`HOST:PORT` or `tcp://HOST:PORT`), used when a command is
    /// given no `--supernode`.
    #[serde(default)]
    pub supernodes: Vec<String>,
}

impl ClientConfig {
    /// Reads `dir/config.toml`; a missing file is the empty config.
    ///
    /// Errors: the file exists but cannot be read, is not TOML, or has unknown keys.
    pub fn load(dir: &Path) -> Result<ClientConfig> {
        let path = dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
    }
}

/// The bootstrap list a command uses: its `--supernode` flags if any, else the config's.
pub fn bootstrap(flags: &mut Vec<String>, dir: &Path) -> Result<()> {
    if flags.is_empty() {
        *flags = ClientConfig::load(dir)?.supernodes;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_and_the_file_fills_in_when_there_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut none = Vec::new();
        bootstrap(&mut none, dir.path()).unwrap();
        assert!(none.is_empty(), "no file, no flags: nothing");

        std::fs::write(
            dir.path().join(FILE_NAME),
            "supernodes = [\"127.0.0.1:4433\", \"tcp://127.0.0.1:443\"]\n",
        )
        .unwrap();
        let mut empty = Vec::new();
        bootstrap(&mut empty, dir.path()).unwrap();
        assert_eq!(empty, ["127.0.0.1:4433", "tcp://127.0.0.1:443"]);

        let mut given = vec!["10.0.0.1:4433".to_string()];
        bootstrap(&mut given, dir.path()).unwrap();
        assert_eq!(given, ["10.0.0.1:4433"]);
    }

    #[test]
    fn a_bad_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for bad in ["supernodes = \"not a list\"", "supernode = [\"a:1\"]", "{"] {
            std::fs::write(&path, bad).unwrap();
            let e = ClientConfig::load(dir.path()).unwrap_err();
            assert!(format!("{e:#}").contains(FILE_NAME), "{bad}: {e:#}");
        }
    }
}
