//! The client's home directory: identity key, profile and host cache.
//!
//! `--home DIR`, else `$PARLEY_HOME`, else the platform config dir (for example
//! `~/.config/parley` on Linux).

use anyhow::{Context, Result};
use parley_proto::presence::Contact;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Paths inside one home directory.
#[derive(Clone, Debug)]
pub struct Home {
    dir: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Profile {
    display_name: String,
}

impl Home {
    /// Resolves the home directory from the flag (clap already applied `PARLEY_HOME`).
    pub fn resolve(flag: Option<PathBuf>) -> Result<Home> {
        let dir = match flag {
            Some(dir) => dir,
            None => directories::ProjectDirs::from("", "", "parley")
                .map(|d| d.config_dir().to_path_buf())
                .context("no home directory: pass --home DIR or set PARLEY_HOME")?,
        };
        Ok(Home { dir })
    }

    /// The identity key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("identity.key")
    }

    fn profile_path(&self) -> PathBuf {
        self.dir.join("profile.json")
    }

    fn hosts_path(&self) -> PathBuf {
        self.dir.join("hosts.json")
    }

    /// The directory itself.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Call history, one JSON line per call.
    pub fn history_path(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }

    /// Contacts and their pinned keys.
    pub fn contacts_path(&self) -> PathBuf {
        self.dir.join("contacts.json")
    }

    /// The running client's control socket (owner-only).
    pub fn control_path(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Held locked by the one process using this identity; holds its pid.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("client.lock")
    }

    /// The display name chosen at `id new`, or empty.
    pub fn display_name(&self) -> String {
        std::fs::read_to_string(self.profile_path())
            .ok()
            .and_then(|t| serde_json::from_str::<Profile>(&t).ok())
            .map(|p| p.display_name)
            .unwrap_or_default()
    }

    /// Stores the display name.
    pub fn set_display_name(&self, name: &str) -> Result<()> {
        let text = serde_json::to_string_pretty(&Profile {
            display_name: name.to_string(),
        })?;
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.profile_path(), text)
            .with_context(|| format!("cannot write {}", self.profile_path().display()))
    }

    fn seq_path(&self) -> PathBuf {
        self.dir.join("seq")
    }

    /// The last presence sequence number used (0 if none is kept). Kept so that
    /// sequence numbers keep rising across restarts even when the clock stepped back
    /// (they are `max(last + 1, wall-clock ms)`).
    pub fn last_seq(&self) -> u64 {
        std::fs::read_to_string(self.seq_path())
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Keeps `seq` as the last sequence number used, atomically.
    pub fn save_seq(&self, seq: u64) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join("seq.tmp");
        std::fs::write(&tmp, format!("{seq}\n"))?;
        std::fs::rename(&tmp, self.seq_path())?;
        Ok(())
    }

    /// Supernodes that answered before (QUIC addresses); a missing or corrupt cache is
    /// just empty.
    pub fn host_cache(&self) -> Vec<Contact> {
        self.known_hosts().into_iter().map(|h| h.contact).collect()
    }

    /// The host cache with every endpoint each supernode advertised.
    pub fn known_hosts(&self) -> Vec<KnownHost> {
        let Ok(text) = std::fs::read_to_string(self.hosts_path()) else {
            return Vec::new();
        };
        let opt = |a: Option<String>| a.and_then(|a| a.parse().ok());
        match serde_json::from_str::<Vec<CachedHost>>(&text) {
            Ok(hosts) => hosts
                .into_iter()
                .filter_map(|h| {
                    Some(KnownHost {
                        contact: Contact {
                            id: h.id.parse().ok()?,
                            addr: h.addr.parse().ok()?,
                        },
                        tcp: opt(h.tcp),
                        stun: opt(h.stun),
                    })
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a corrupt host cache");
                Vec::new()
            }
        }
    }

    /// Replaces the host cache (QUIC addresses only), atomically.
    #[cfg(test)]
    pub fn save_host_cache(&self, hosts: &[Contact]) -> Result<()> {
        let hosts: Vec<KnownHost> = hosts
            .iter()
            .map(|&contact| KnownHost {
                contact,
                tcp: None,
                stun: None,
            })
            .collect();
        self.save_known_hosts(&hosts)
    }

    /// Replaces the host cache, atomically (write then rename).
    pub fn save_known_hosts(&self, hosts: &[KnownHost]) -> Result<()> {
        let list: Vec<CachedHost> = hosts
            .iter()
            .map(|h| CachedHost {
                id: h.contact.id.to_string(),
                addr: h.contact.addr.to_string(),
                tcp: h.tcp.map(|a| a.to_string()),
                stun: h.stun.map(|a| a.to_string()),
            })
            .collect();
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join("hosts.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&list)?)?;
        std::fs::rename(&tmp, self.hosts_path())?;
        Ok(())
    }
}

/// A supernode in the host cache: its QUIC contact and the other endpoints it
/// advertised (Welcome), so that a later start can probe STUN, or reach it over TCP
/// from a network that drops UDP, without any port convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownHost {
    pub contact: Contact,
    pub tcp: Option<std::net::SocketAddr>,
    pub stun: Option<std::net::SocketAddr>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedHost {
    id: String,
    /// QUIC.
    addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stun: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::Identity;

    #[test]
    fn host_cache_round_trips_and_tolerates_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(dir.path().to_path_buf())).unwrap();
        assert!(home.host_cache().is_empty());
        let c = Contact {
            id: Identity::generate().peer_id(),
            addr: "127.0.0.1:4000".parse().unwrap(),
        };
        home.save_host_cache(&[c]).unwrap();
        assert_eq!(home.host_cache(), vec![c]);
        let k = KnownHost {
            contact: c,
            tcp: Some("127.0.0.1:443".parse().unwrap()),
            stun: Some("[::1]:3478".parse().unwrap()),
        };
        home.save_known_hosts(&[k]).unwrap();
        assert_eq!(home.known_hosts(), vec![k]);
        std::fs::write(dir.path().join("hosts.json"), "{not json").unwrap();
        assert!(home.host_cache().is_empty());
    }

    #[test]
    fn the_last_sequence_number_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(dir.path().to_path_buf())).unwrap();
        assert_eq!(home.last_seq(), 0);
        home.save_seq(1_700_000_000_123).unwrap();
        assert_eq!(home.last_seq(), 1_700_000_000_123);
    }
}
