//! Malicious supernodes: they collude to hide records.
//!
//! A liar runs the real overlay underneath (so it answers pings, stays in routing
//! tables and looks like any supernode), but:
//! - it drops [`DROP_SHARE`] of all requests other than pings;
//! - asked for nodes, it names only fellow liars (trying to trap lookups among them);
//! - asked for a value, it answers with the oldest record it ever saw for that key,
//!   else with fellow liars only;
//! - asked to store, it keeps the record as its "old" copy and refuses with `Stale`,
//!   claiming to hold a newer one.
//!
//! A Sybil (see `sybil`) is a liar with an id minted next to a target's key that
//! never drops, names the fellow Sybils closest to any key asked, and accepts every
//! store (answering `Stored`) only to drop it.

use parley_proto::messages::{Refusal, RefusalCode, SupernodeReply, SupernodeToSupernode};
use parley_proto::overlay::Overlay;
use parley_proto::presence::{Contact, SignedPresence};
use parley_proto::{NodeId, PeerId, Timestamp};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Share of non-ping requests a liar drops.
pub const DROP_SHARE: f64 = 0.3;

/// One liar's memory: the first record it saw per key.
#[derive(Default)]
pub struct Liar {
    old: HashMap<NodeId, Arc<SignedPresence>>,
    /// Set for a Sybil: every Sybil of the run.
    sybils: Option<Arc<crate::sybil::Directory>>,
}

impl Liar {
    /// A Sybil that knows every fellow Sybil through `sybils` (see `sybil`).
    pub fn sybil(sybils: Arc<crate::sybil::Directory>) -> Liar {
        Liar {
            old: HashMap::new(),
            sybils: Some(sybils),
        }
    }

    /// The liar's answer to `request` from `from`, or `None` to drop it.
    pub fn answer<R: Rng>(
        &mut self,
        overlay: &mut Overlay,
        now: Timestamp,
        from: Contact,
        request: SupernodeToSupernode,
        colluders: &HashSet<PeerId>,
        rng: &mut R,
    ) -> Option<SupernodeReply> {
        if let Some(sybils) = &self.sybils {
            return Some(crate::sybil::answer(sybils, overlay, now, from, request));
        }
        if request != SupernodeToSupernode::Ping && rng.gen_bool(DROP_SHARE) {
            return None;
        }
        let only_liars = |reply: SupernodeReply| match reply {
            SupernodeReply::Nodes(mut contacts) => {
                contacts.retain(|c| colluders.contains(&c.id));
                SupernodeReply::Nodes(contacts)
            }
            other => other,
        };
        match request {
            SupernodeToSupernode::Store(record) => {
                let key = record.record.id.record_key();
                let seq = record.record.seq;
                self.old.entry(key).or_insert(record);
                Some(SupernodeReply::Refused(Refusal {
                    code: RefusalCode::Stale,
                    message: format!(
                        "stale presence record: seq {seq} but seq {} is already held",
                        seq + 1
                    ),
                }))
            }
            SupernodeToSupernode::FindValue(key) => match self.old.get(&key) {
                Some(old) => Some(SupernodeReply::Value(old.clone())),
                None => Some(only_liars(overlay.handle_request(
                    now,
                    from,
                    SupernodeToSupernode::FindValue(key),
                ))),
            },
            other => Some(only_liars(overlay.handle_request(now, from, other))),
        }
    }
}
