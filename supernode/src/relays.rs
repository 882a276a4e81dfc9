//! The relays a supernode knows, with their last reported load, and the choice of
//! relay for a call: the least loaded one heard from recently.

use parley_proto::presence::Contact;
use parley_proto::relay::RelayLoad;
use parley_proto::{PeerId, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A relay whose last report is older than this is not chosen.
pub const REPORT_FRESHNESS: Duration = Duration::from_secs(15);

/// A relay's last report: its load, where to dial it, and when it was heard.
type Entry = (RelayLoad, Contact, Timestamp);

#[derive(Clone, Default)]
pub struct RelayDirectory {
    inner: Arc<Mutex<HashMap<PeerId, Entry>>>,
}

impl RelayDirectory {
    /// Records a load report for the relay at `contact` (where clients will dial).
    /// Announces a relay the first time it is heard of, on stdout for scripts.
    pub fn update(&self, now: Timestamp, contact: Contact, load: RelayLoad) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.insert(contact.id, (load, contact, now)).is_none() {
            println!("relay known id={} quic={}", contact.id, contact.addr);
            tracing::info!(relay = %contact.addr, id = %contact.id.short(), "learned a relay");
        }
    }

    /// Up to `n` fresh relays with room for a call, least loaded (by share of leg
    /// capacity in use) first.
    pub fn choose(&self, now: Timestamp, n: usize) -> Vec<Contact> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh: Vec<&Entry> = map
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
            },
        )
    }

    #[test]
    fn the_least_loaded_fresh_relay_is_chosen() {
        let dir = RelayDirectory::default();
        let t = Timestamp(100_000);
        let (busy, busy_load) = relay(80, 1);
        let (idle, idle_load) = relay(10, 2);
        let (stale, stale_load) = relay(0, 3);
        let (full, full_load) = relay(99, 4);
        dir.update(t, busy, busy_load);
        dir.update(t, idle, idle_load);
        dir.update(Timestamp(1), stale, stale_load);
        dir.update(t, full, full_load);
        assert_eq!(dir.choose(t, 1), vec![idle]);
        assert_eq!(dir.choose(t, 5), vec![idle, busy]);
        assert!(RelayDirectory::default().choose(t, 2).is_empty());
    }
}
