//! Why a lookup missed: for every lookup that did not return the client's current
//! record, look at who holds what at that moment and classify the miss. Cheap,
//! because it runs only on misses.

use crate::world::Sim;
use parley_proto::presence::SignedPresence;
use std::collections::BTreeMap;

/// Miss counts by cause, and the last publication's replica count per client.
#[derive(Clone, Debug, Default)]
pub struct Misses {
    /// Miss count by cause (a short key=value-friendly name).
    pub causes: BTreeMap<&'static str, u64>,
    /// Replicas of each client's last finished publication (`u8::MAX`: none yet).
    pub last_replicas: Vec<u8>,
    /// Print one line per miss to stderr.
    pub explain: bool,
}

impl Misses {
    /// One line: `cause=count` pairs.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .causes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.join(" ")
    }
}

impl Sim {
    /// Notes that client `c`'s publication reached `replicas` holders.
    pub(crate) fn note_replicas(&mut self, c: u32, replicas: usize) {
        let v = &mut self.misses.last_replicas;
        if v.len() <= c as usize {
            v.resize(c as usize + 1, u8::MAX);
        }
        v[c as usize] = u8::try_from(replicas).unwrap_or(u8::MAX - 1);
    }

    /// Classifies a lookup of client `target` from supernode `origin` that returned
    /// `record` while `min_seq` was current.
    pub(crate) fn explain_miss(
        &mut self,
        origin: u32,
        target: u32,
        min_seq: u64,
        record: Option<&SignedPresence>,
    ) {
        let key = self.clients[target as usize]
            .identity
            .peer_id()
            .record_key();
        let now = self.now;
        // Live supernodes by distance to the key, with what each holds.
        let mut holders: Vec<([u8; 32], Option<u64>, bool)> = self
            .live
            .iter()
            .map(|&i| {
                let n = &self.nodes[i as usize];
                let held = n
                    .overlay
                    .as_ref()
                    .and_then(|o| o.stored(now, &key))
                    .map(|r| r.record.seq);
                (
                    n.contact.node_id().distance(&key),
                    held,
                    n.malicious.is_none(),
                )
            })
            .collect();
        holders.sort_unstable_by_key(|h| h.0);
        let k = self.config.k;
        let current: Vec<usize> = holders
            .iter()
            .enumerate()
            .filter(|(_, h)| h.1.is_some_and(|s| s >= min_seq) && h.2)
            .map(|(r, _)| r)
            .collect();
        let old = holders
            .iter()
            .filter(|h| h.1.is_some_and(|s| s < min_seq))
            .count();
        let client = &self.clients[target as usize];
        let replicas = self
            .misses
            .last_replicas
            .get(target as usize)
            .copied()
            .unwrap_or(u8::MAX);
        let origin_holds = self.nodes[origin as usize]
            .overlay
            .as_ref()
            .and_then(|o| o.stored(now, &key))
            .map(|r| r.record.seq);
        let cause: &'static str = match (record, current.first()) {
            (_, None) if old > 0 => "no_live_current_only_older",
            (_, None) => "no_live_replica",
            (None, Some(&r)) if r < k => "lookup_empty_current_in_k_closest",
            (None, Some(_)) => "lookup_empty_current_beyond_k",
            (Some(_), Some(&r)) if r < k => "lookup_old_current_in_k_closest",
            (Some(_), Some(_)) => "lookup_old_current_beyond_k",
        };
        *self.misses.causes.entry(cause).or_default() += 1;
        if client.chain > 1 {
            *self.misses.causes.entry("client_came_back").or_default() += 1;
        }
        if client.seq > client.settled_seq {
            *self
                .misses
                .causes
                .entry("client_publish_pending")
                .or_default() += 1;
        }
        if self.misses.explain {
            let known = self.nodes[origin as usize]
                .overlay
                .as_ref()
                .map(|o| o.known_supernodes(10_000))
                .unwrap_or_default();
            let liars = known
                .iter()
                .filter(|c| self.colluders.contains(&c.id))
                .count();
            eprintln!(
                "miss origin={origin} origin_knows={} of_them_malicious={liars}",
                known.len()
            );
            eprintln!(
                "miss c={target} min_seq={min_seq} seq={} got={:?} current_ranks={:?} \
                 older_live={old} last_replicas={replicas} origin_holds={origin_holds:?} \
                 chain={} k_closest={:?}",
                client.seq,
                record.map(|r| r.record.seq),
                current,
                client.chain,
                holders
                    .iter()
                    .take(k + 2)
                    .map(|h| (h.1, h.2))
                    .collect::<Vec<_>>()
            );
        }
    }
}
