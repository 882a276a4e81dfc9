//! Simulated clients: each attaches to two supernodes, publishes its signed record
//! (naming both) through one of them, as `parley_proto::attach` does, refreshes it
//! before it expires, and re-attaches when a supernode dies. Every timer that fires
//! for many clients at once is spread with jitter.

use crate::batch::{Local, Record};
use crate::world::Sim;
use parley_proto::presence::{AddressKind, CandidateAddr, NatType, PresenceRecord, SignedPresence};
use parley_proto::Identity;
use rand::Rng;
use std::net::SocketAddr;
use std::time::Duration;

/// No supernode in this attachment slot.
pub const NONE: u32 = u32::MAX;

/// How long a client's record lives.
pub const RECORD_TTL: Duration = Duration::from_secs(60 * 60);
/// How often a client publishes its record again (publisher-driven refresh), ±10 %.
pub const REFRESH: Duration = Duration::from_secs(20 * 60);
/// A dead supernode is noticed this long after it died at the earliest (attachment
/// idle timeout), and re-attachment starts within a further random [`REATTACH_SPREAD`].
pub const DETECT: Duration = Duration::from_secs(30);
/// Spread of re-attachments after [`DETECT`].
pub const REATTACH_SPREAD: Duration = Duration::from_secs(25);

/// What a client does when its timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientAction {
    /// Come online: attach to two supernodes and publish.
    Online,
    /// Publish the record again; the number names the refresh chain, so a chain
    /// from before the client went offline dies out.
    Refresh(u32),
    /// Replace the dead supernode in this slot and publish.
    Reattach(u8),
    /// Go offline (stop refreshing; the record expires).
    Offline,
    /// Someone looks this client up.
    Lookup,
}

/// One client.
pub struct Client {
    /// Its identity.
    pub identity: Identity,
    /// Supernodes it is attached to ([`NONE`] for an empty slot).
    pub attached: [u32; 2],
    /// Sequence number of its latest record.
    pub seq: u64,
    /// Sequence number of its latest record that a publication confirmed.
    pub settled_seq: u64,
    /// Whether it is online.
    pub online: bool,
    /// Its NAT's external port now (changes when it comes back online).
    pub port: u16,
    /// Current refresh chain.
    pub chain: u32,
    /// A record signed ahead of time (in parallel), used by the next publication.
    pub presigned: Option<SignedPresence>,
}

impl Client {
    /// A client that is not online yet.
    pub fn new(identity: Identity, port: u16) -> Client {
        Client {
            identity,
            attached: [NONE; 2],
            seq: 0,
            settled_seq: 0,
            online: false,
            port,
            chain: 0,
            presigned: None,
        }
    }

    /// The attachment slot supernode `s` is in, if any.
    pub fn slot_of(&self, s: u32) -> Option<usize> {
        self.attached.iter().position(|&a| a == s)
    }

    /// The record it would publish now with sequence number `seq`: the supernodes
    /// it is attached to now and the address true now (never accumulated).
    pub fn record(
        &self,
        sim: &Sim,
        seq: u64,
        expires_at: parley_proto::Timestamp,
    ) -> PresenceRecord {
        PresenceRecord {
            id: self.identity.peer_id(),
            display_name: String::new(),
            supernodes: self
                .attached
                .iter()
                .filter(|&&s| s != NONE)
                .map(|&s| sim.nodes[s as usize].contact)
                .collect(),
            addresses: vec![CandidateAddr {
                kind: AddressKind::Observed,
                addr: SocketAddr::from(([198, 51, 100, 7], self.port)),
            }],
            nat: NatType::PortRestrictedCone,
            seq,
            expires_at,
        }
    }
}

fn jittered<R: Rng>(rng: &mut R, base: Duration, share: f64) -> Duration {
    base.mul_f64(rng.gen_range(1.0 - share..=1.0 + share))
}

impl Sim {
    pub(crate) fn client_act(&mut self, c: u32, action: ClientAction) {
        match action {
            ClientAction::Online => {
                let client = &mut self.clients[c as usize];
                if client.online {
                    return;
                }
                client.online = true;
                client.chain += 1;
                let chain = client.chain;
                for slot in 0..2 {
                    let s = self.clients[c as usize].attached[slot];
                    if s == NONE || !self.nodes[s as usize].alive() {
                        self.attach(c, slot);
                    }
                }
                self.publish(c);
                let at = self.now + jittered(&mut self.rng, REFRESH, 0.1);
                self.schedule(at, c, ClientAction::Refresh(chain));
            }
            ClientAction::Refresh(chain) => {
                let client = &self.clients[c as usize];
                if !client.online || client.chain != chain {
                    return;
                }
                self.publish(c);
                let at = self.now + jittered(&mut self.rng, REFRESH, 0.1);
                self.schedule(at, c, ClientAction::Refresh(chain));
            }
            ClientAction::Reattach(slot) => {
                let client = &self.clients[c as usize];
                let current = client.attached[usize::from(slot)];
                if !client.online || (current != NONE && self.nodes[current as usize].alive()) {
                    return;
                }
                self.attach(c, usize::from(slot));
                self.publish(c);
            }
            ClientAction::Offline => {
                let client = &mut self.clients[c as usize];
                client.online = false;
                client.attached = [NONE; 2];
                // Back online, its NAT will give it another external port.
                client.port = client.port.wrapping_add(1).max(1024);
            }
            ClientAction::Lookup => {
                let client = &self.clients[c as usize];
                if !client.online || client.settled_seq == 0 {
                    self.stats.lookups_skipped[usize::from(client.online)] += 1;
                    return;
                }
                self.stats.lookups_started += 1;
                let (id, min_seq) = (client.identity.peer_id(), client.settled_seq);
                let Some(from) = self.random_live(true) else {
                    return;
                };
                let local = Local::Lookup {
                    target: c,
                    min_seq,
                    id,
                };
                self.gathered.local(from, self.now.0, local);
            }
        }
    }

    /// Attaches client `c`'s `slot` to a random live honest supernode other than
    /// the one in its other slot.
    fn attach(&mut self, c: u32, slot: usize) {
        let other = self.clients[c as usize].attached[1 - slot];
        let mut pick = NONE;
        for _ in 0..8 {
            match self.random_live(true) {
                Some(s) if s != other => {
                    pick = s;
                    break;
                }
                _ => {}
            }
        }
        self.clients[c as usize].attached[slot] = pick;
        if pick != NONE {
            self.attached_to[pick as usize].push(c);
        }
    }

    /// Client `c` publishes a new record through its first live attachment (the
    /// record names both; see `parley_proto::attach`).
    pub(crate) fn publish(&mut self, c: u32) {
        let client = &mut self.clients[c as usize];
        client.seq += 1;
        let seq = client.seq;
        let presigned = client
            .presigned
            .take()
            .filter(|r| r.record.seq == seq && r.record.expires_at > self.now);
        let client = &self.clients[c as usize];
        let record = match presigned {
            Some(r)
                if r.record.supernodes.len() == 2
                    && r.record
                        .supernodes
                        .iter()
                        .zip(client.attached)
                        .all(|(a, s)| s != NONE && *a == self.nodes[s as usize].contact) =>
            {
                Record::Signed(r)
            }
            // Signed by the supernode's share of the window, on any core.
            _ => Record::Unsigned(client.record(self, seq, self.now + RECORD_TTL)),
        };
        let publisher = client
            .attached
            .into_iter()
            .find(|&s| s != NONE && self.nodes[s as usize].alive());
        if let Some(s) = publisher {
            let local = Local::Publish {
                client: c,
                seq,
                record,
            };
            self.gathered.local(s, self.now.0, local);
        }
    }

    pub(crate) fn client_published(&mut self, c: u32, seq: u64) {
        let client = &mut self.clients[c as usize];
        client.settled_seq = client.settled_seq.max(seq);
    }

    /// Supernode `s`, which client `c` may be attached to, died.
    pub(crate) fn client_lost_supernode(&mut self, c: u32, s: u32) {
        let Some(slot) = self.clients[c as usize].slot_of(s) else {
            return;
        };
        let delay = DETECT + REATTACH_SPREAD.mul_f64(self.rng.gen_range(0.0..1.0));
        let at = self.now + delay;
        self.schedule(at, c, ClientAction::Reattach(slot as u8));
    }
}

impl Sim {
    /// Chooses client `c`'s two supernodes before it comes online (so its first
    /// record can be signed ahead of time).
    pub(crate) fn preattach(&mut self, c: u32) {
        for slot in 0..2 {
            self.attach(c, slot);
        }
    }
}
