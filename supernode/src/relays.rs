//! The relays a supernode knows, with their last reported load, and the choice of
//! relay for a call: the least loaded one heard from recently.
//!
//! Admission (issue 11 item 1): only relays the operator configured are handed out —
//! `--relay HOST:PORT` (polled; its key pinned on first contact) or `--relay-key ID`
//! (reports in). A supernode configured with neither hands out no relay at all: a relay
//! reporting in is refused like any unconfigured one (there is no "open mode"). The
//! directory holds at most [`MAX_RELAYS`] relays.

use parley_proto::presence::Contact;
use parley_proto::relay::RelayLoad;
use parley_proto::{PeerId, Timestamp};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A relay whose last report is older than this is not chosen.
pub const REPORT_FRESHNESS: Duration = Duration::from_secs(15);
/// Most relays in the directory.
pub const MAX_RELAYS: usize = 256;

/// A relay's last report: its load, where to dial it, and when it was heard.
type Entry = (RelayLoad, Contact, Timestamp);

#[derive(Default)]
struct Inner {
    entries: HashMap<PeerId, Entry>,
    /// Keys the operator configured (`--relay-key`) or pinned (`--relay` first contact).
    allowed: HashSet<PeerId>,
    /// Keys of relays refused so far, each announced once on stdout (at most
    /// [`MAX_RELAYS`] remembered).
    refused: HashSet<PeerId>,
    /// Announce to the log instead of stdout (a supernode inside another program).
    quiet: bool,
}

#[derive(Clone, Default)]
pub struct RelayDirectory {
    inner: Arc<Mutex<Inner>>,
}

impl RelayDirectory {
    /// A directory admitting the relays with `keys` (`--relay-key`), and those
    /// [`pin`](Self::pin)ned later (`--relay`); no other relay, ever. With no keys and
    /// nothing pinned it admits none.
    pub fn new(keys: impl IntoIterator<Item = PeerId>) -> RelayDirectory {
        let dir = RelayDirectory::default();
        dir.lock().allowed.extend(keys);
        dir
    }

    /// This directory, announcing relays to the log instead of stdout: for a supernode
    /// run inside another program (a promoted client), whose stdout is its own.
    pub fn quiet(self) -> RelayDirectory {
        self.lock().quiet = true;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a relay with key `id` may be handed out.
    pub fn admits(&self, id: &PeerId) -> bool {
        self.lock().allowed.contains(id)
    }

    /// Whether no relay is configured or pinned yet.
    pub fn is_unconfigured(&self) -> bool {
        self.lock().allowed.is_empty()
    }

    /// Notes that the relay `id` reporting from `from` was refused; returns true the
    /// first time for `id` (and announces it on stdout for scripts, `relay refused
    /// id=<id> from=<addr>`), false after that, so that a relay retrying every few
    /// seconds does not flood the output.
    pub fn note_refused(&self, id: PeerId, from: std::net::SocketAddr) -> bool {
        let mut inner = self.lock();
        if inner.refused.contains(&id) || inner.refused.len() >= MAX_RELAYS {
            return false;
        }
        inner.refused.insert(id);
        if inner.quiet {
            tracing::info!("relay refused id={id} from={from}");
        } else {
            println!("relay refused id={id} from={from}");
        }
        true
    }

    /// Pins a `--relay HOST:PORT` relay's key, learnt on first contact.
    pub fn pin(&self, id: PeerId) {
        self.lock().allowed.insert(id);
    }

    /// The address clients were told for `id`, if it is in the directory.
    pub fn address(&self, id: &PeerId) -> Option<std::net::SocketAddr> {
        self.lock().entries.get(id).map(|(_, c, _)| c.addr)
    }

    /// The TCP fallback the relay `id` advertised in its last report, its unspecified IP
    /// (if any) replaced by the IP clients dial its QUIC address at.
    pub fn tcp(&self, id: &PeerId) -> Option<std::net::SocketAddr> {
        let inner = self.lock();
        let (load, contact, _) = inner.entries.get(id)?;
        load.tcp.map(|t| {
            let ip = if t.ip().is_unspecified() {
                contact.addr.ip()
            } else {
                t.ip()
            };
            std::net::SocketAddr::new(ip.to_canonical(), t.port())
        })
    }

    /// Records the load of the relay at `contact` (where clients will dial; the caller
    /// has checked that the relay answers there with its key). Ignored for a relay
    /// that is not admitted, or a new one when the directory is full. Announces a
    /// relay the first time it is heard of, on stdout for scripts.
    pub fn update(&self, now: Timestamp, contact: Contact, load: RelayLoad) {
        let mut inner = self.lock();
        if !inner.allowed.contains(&contact.id) {
            return;
        }
        if !inner.entries.contains_key(&contact.id) && inner.entries.len() >= MAX_RELAYS {
            tracing::warn!(relay = %contact.addr, "relay directory full; relay ignored");
            return;
        }
        if inner
            .entries
            .insert(contact.id, (load, contact, now))
            .is_none()
        {
            if inner.quiet {
                tracing::info!("relay known id={} quic={}", contact.id, contact.addr);
            } else {
                println!("relay known id={} quic={}", contact.id, contact.addr);
            }
            tracing::info!(relay = %contact.addr, id = %contact.id.short(), "learned a relay");
        }
    }

    /// Up to `n` fresh relays with room for a call, least loaded (by share of leg
    /// capacity in use) first.
    pub fn choose(&self, now: Timestamp, n: usize) -> Vec<Contact> {
        let inner = self.lock();
        let mut fresh: Vec<&Entry> = inner
            .entries
            .values()
            .filter(|(_, _, seen)| now.since(*seen) <= REPORT_FRESHNESS)
            .filter(|(load, _, _)| load.legs + 2 <= load.max_legs)
            .collect();
        fresh.sort_by(|(a, _, _), (b, _, _)| share(a).total_cmp(&share(b)));
        fresh
            .into_iter()
            .take(n)
            .map(|(_, contact, _)| *contact)
            .collect()
    }
}

fn share(load: &RelayLoad) -> f64 {
    f64::from(load.legs) / f64::from(load.max_legs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::Identity;

    fn relay(legs: u32, port: u16) -> (Contact, RelayLoad) {
        let id = Identity::generate().peer_id();
        let addr = ([127, 0, 0, 1], port).into();
        (
            Contact { id, addr },
            RelayLoad {
                relay: id,
                listen: addr,
                calls: legs / 2,
                legs,
                max_legs: 100,
                tcp: Some(([0, 0, 0, 0], 443).into()),
            },
        )
    }

    #[test]
    fn only_configured_relays_enter_the_directory() {
        let t = Timestamp(100_000);
        let (good, good_load) = relay(0, 1);
        let (rogue, rogue_load) = relay(0, 2);
        let dir = RelayDirectory::new([good.id]);
        dir.update(t, rogue, rogue_load);
        dir.update(t, good, good_load);
        assert_eq!(dir.choose(t, 5), vec![good]);
        assert_eq!(dir.tcp(&good.id), Some(([127, 0, 0, 1], 443).into()));
        assert!(!dir.admits(&rogue.id));
        // A --relay HOST:PORT relay is admitted once its key is pinned.
        let (polled, polled_load) = relay(0, 3);
        dir.update(t, polled, polled_load.clone());
        assert_eq!(dir.choose(t, 5).len(), 1);
        dir.pin(polled.id);
        dir.update(t, polled, polled_load);
        assert_eq!(dir.choose(t, 5).len(), 2);
    }

    #[test]
    fn with_no_relay_configured_none_is_admitted_or_chosen() {
        let t = Timestamp(100_000);
        let dir = RelayDirectory::new([]);
        assert!(dir.is_unconfigured());
        let (rogue, rogue_load) = relay(0, 1);
        dir.update(t, rogue, rogue_load);
        assert!(!dir.admits(&rogue.id));
        assert_eq!(dir.address(&rogue.id), None);
        assert!(dir.choose(t, 5).is_empty());
        // Each refused relay is announced once, however often it retries.
        assert!(dir.note_refused(rogue.id, rogue.addr));
        assert!(!dir.note_refused(rogue.id, rogue.addr));
    }

    #[test]
    fn the_directory_is_bounded() {
        let t = Timestamp(100_000);
        let relays: Vec<_> = (0..(MAX_RELAYS as u16 + 10))
            .map(|port| relay(0, port))
            .collect();
        let dir = RelayDirectory::new(relays.iter().map(|(c, _)| c.id));
        for (c, l) in relays {
            dir.update(t, c, l);
        }
        assert_eq!(dir.choose(t, usize::MAX).len(), MAX_RELAYS);
        // The list of refused relays is bounded too.
        let refused = RelayDirectory::new([]);
        let fresh = (0..MAX_RELAYS + 10).filter(|_| {
            let (c, _) = relay(0, 1);
            refused.note_refused(c.id, c.addr)
        });
        assert_eq!(fresh.count(), MAX_RELAYS);
    }

    #[test]
    fn the_least_loaded_fresh_relay_is_chosen() {
        let t = Timestamp(100_000);
        let (busy, busy_load) = relay(80, 1);
        let (idle, idle_load) = relay(10, 2);
        let (stale, stale_load) = relay(0, 3);
        let (full, full_load) = relay(99, 4);
        let dir = RelayDirectory::new([busy.id, idle.id, stale.id, full.id]);
        dir.update(t, busy, busy_load);
        dir.update(t, idle, idle_load);
        dir.update(Timestamp(1), stale, stale_load);
        dir.update(t, full, full_load);
        assert_eq!(dir.choose(t, 1), vec![idle]);
        assert_eq!(dir.choose(t, 5), vec![idle, busy]);
        assert!(RelayDirectory::new([]).choose(t, 2).is_empty());
    }
}
