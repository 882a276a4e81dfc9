//! The contacts' presence, kept fresh by the running client cheaply: one lookup at a
//! time, each contact looked up once per [`REFRESH`], and never more often than one
//! lookup per [`MIN_SPACING`] however many contacts there are (a 1000-contact list costs
//! a supernode 0.5 lookups/s from this client, not a burst of 1000). `parley contacts`
//! reads the result without asking the overlay anything.
//!
//! The overlay knows only whether a signed presence record exists, so the states are:
//! `online` (a record now), `away` (none now, but one within [`AWAY_WINDOW`]: a client
//! between networks or restarting), `offline` (none for longer, or never seen), and
//! `unknown` (not looked up yet, or the lookup failed).

use crate::contacts::Contacts;
use crate::output::Printer;
use crate::session::SessionHandle;
use parley_net::clock::now;
use parley_proto::messages::{ClientToSupernode, SupernodeToClient};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each contact is looked up this often.
pub const REFRESH: Duration = Duration::from_secs(60);
/// The least time between two lookups, however many contacts.
pub const MIN_SPACING: Duration = Duration::from_secs(2);
/// Seen online this recently but not now: `away`.
pub const AWAY_WINDOW: Duration = Duration::from_secs(600);

/// A contact's presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Online,
    Away,
    Offline,
    Unknown,
}

impl State {
    /// The word in output.
    pub fn name(self) -> &'static str {
        match self {
            State::Online => "online",
            State::Away => "away",
            State::Offline => "offline",
            State::Unknown => "unknown",
        }
    }
}

/// What the tracker last learnt about one contact.
#[derive(Clone, Debug)]
pub struct Seen {
    pub state: State,
    pub checked: Instant,
    pub last_online: Option<Instant>,
    /// The name in their record.
    pub display_name: String,
}

/// Contact id (printable) → what we know.
pub type PresenceMap = Arc<Mutex<HashMap<String, Seen>>>;

/// A copy of the map.
pub fn snapshot(map: &PresenceMap) -> HashMap<String, Seen> {
    map.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The new state after a lookup that found a record (`Some(true)`), found none
/// (`Some(false)`) or failed (`None`).
pub fn next_state(prev: Option<&Seen>, found: Option<bool>, at: Instant) -> State {
    match found {
        Some(true) => State::Online,
        Some(false) => match prev.and_then(|p| p.last_online) {
            Some(t) if at.duration_since(t) < AWAY_WINDOW => State::Away,
            _ => State::Offline,
        },
        None => prev.map(|p| p.state).unwrap_or(State::Unknown),
    }
}

/// The time between two lookups for `n` contacts.
pub fn spacing(n: usize) -> Duration {
    (REFRESH / (n.max(1) as u32)).max(MIN_SPACING)
}

/// Runs for the life of the running client.
pub async fn track(home: crate::home::Home, session: SessionHandle, map: PresenceMap) {
    let mut last_lookup: Option<Instant> = None;
    loop {
        let contacts = Contacts::load(&home).ids();
        // The contact checked longest ago (or never: those go first).
        let seen = snapshot(&map);
        let due = contacts
            .iter()
            .map(|(_, id)| (id, seen.get(&id.to_string()).map(|s| s.checked)))
            .min_by_key(|(_, checked)| *checked)
            .filter(|(_, checked)| checked.is_none_or(|t| t.elapsed() >= REFRESH))
            .map(|(id, _)| *id);
        let spaced = last_lookup.is_none_or(|t| t.elapsed() >= spacing(contacts.len()));
        let new_contact = contacts
            .iter()
            .any(|(_, id)| !seen.contains_key(&id.to_string()));
        if let Some(id) = due.filter(|_| spaced || new_contact) {
            last_lookup = Some(Instant::now());
            check(&session, &map, id).await;
        }
        tokio::time::sleep(MIN_SPACING).await;
    }
}

/// One lookup, and its result in the map.
async fn check(session: &SessionHandle, map: &PresenceMap, id: parley_proto::PeerId) {
    let asked = session
        .ask(&ClientToSupernode::Lookup(id), Duration::from_secs(10))
        .await;
    let found = match asked.map(|(_, reply)| reply) {
        Ok(SupernodeToClient::Found(signed)) => match signed.verify(now()) {
            Ok(r) if r.id == id => Some(Some(r.display_name.clone())),
            _ => None,
        },
        Ok(SupernodeToClient::NotFound) => Some(None),
        _ => None,
    };
    let at = Instant::now();
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    let prev = m.get(&id.to_string()).cloned();
    let state = next_state(prev.as_ref(), found.as_ref().map(Option::is_some), at);
    m.insert(
        id.to_string(),
        Seen {
            state,
            checked: at,
            last_online: if state == State::Online {
                Some(at)
            } else {
                prev.as_ref().and_then(|p| p.last_online)
            },
            display_name: found
                .flatten()
                .or(prev.map(|p| p.display_name))
                .unwrap_or_default(),
        },
    );
}

/// One `contact` event per contact (a table for people).
pub fn print(contacts: &Contacts, seen: &HashMap<String, Seen>, out: Printer) {
    if contacts.list.is_empty() && !out.is_json() {
        println!("no contacts yet: add one with `parley contact add NAME ID`");
    }
    for c in &contacts.list {
        let s = seen.get(&c.id);
        let state = s.map(|s| s.state).unwrap_or(State::Unknown);
        let name = s.map(|s| s.display_name.clone()).unwrap_or_default();
        out.event(
            "contact",
            json!({
                "name": c.name,
                "id": c.id,
                "presence": state.name(),
                "verified": c.verified,
                "display_name": name,
            }),
            format!(
                "{:<16} {:<8} {:<10} {}",
                c.name,
                state.name(),
                if c.verified { "verified" } else { "unverified" },
                c.id
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_states_follow_lookups() {
        let t0 = Instant::now();
        assert_eq!(next_state(None, None, t0), State::Unknown);
        assert_eq!(next_state(None, Some(false), t0), State::Offline);
        let online = Seen {
            state: State::Online,
            checked: t0,
            last_online: Some(t0),
            display_name: String::new(),
        };
        assert_eq!(next_state(Some(&online), Some(true), t0), State::Online);
        assert_eq!(
            next_state(Some(&online), Some(false), t0 + Duration::from_secs(30)),
            State::Away
        );
        assert_eq!(
            next_state(Some(&online), Some(false), t0 + AWAY_WINDOW),
            State::Offline
        );
        // A failed lookup keeps what we knew.
        assert_eq!(next_state(Some(&online), None, t0), State::Online);
    }

    #[test]
    fn lookups_are_spaced_whatever_the_list_size() {
        assert_eq!(spacing(0), REFRESH);
        assert_eq!(spacing(10), Duration::from_secs(6));
        assert_eq!(spacing(1000), MIN_SPACING);
    }
}
