//! The swarm machine: one transfer as seen by one peer (the sender or a recipient).
//!
//! The shell connects peers (`add_peer` / `remove_peer`), feeds their decoded
//! [`PeerMessage`]s to [`Swarm::handle_message`], sends what [`Swarm::poll_transmit`]
//! returns, and acts on [`Swarm::poll_event`]:
//!
//! * [`SwarmEvent::ChunkVerified`]: store these bytes (already checked against the
//!   manifest);
//! * [`SwarmEvent::ReadChunk`]: read a stored chunk and hand it to
//!   [`Swarm::serve_chunk`], which checks it against the manifest again before it goes
//!   out (a chunk damaged on disk is never served);
//! * [`SwarmEvent::PeerDropped`]: close that connection (a peer that served a chunk
//!   that does not verify, or broke the protocol; it is banned for this transfer);
//! * [`SwarmEvent::Complete`]: every chunk is verified.
//!
//! Rules: [`picker`](super::picker) (rarest first, end game) decides what to request,
//! at most [`SwarmConfig::max_in_flight`] requests per peer; [`choke`](super::choke)
//! decides whom to serve. One rule is Parley's own, *sparing the origin*: a recipient
//! asks the manifest's sender only for chunks no other peer that unchokes it can
//! give, never sends it end-game duplicates, and keeps a shallower pipeline to it
//! ([`SwarmConfig::max_in_flight_origin`]), so the sender's upload goes to chunks the
//! swarm does not have yet and it uploads each chunk about once however many
//! recipients there are.

mod types;
pub use types::{AddPeerError, DropReason, SwarmConfig, SwarmEvent, SwarmStats, Transmit};

use super::bitfield::Bitfield;
use super::choke::{Candidate, Choker};
use super::manifest::Manifest;
use super::picker::Picker;
use super::superseed::{self, RevealView, REVEAL_DEPTH, STARVE_AFTER};
use super::wire::PeerMessage;
use crate::identity::PeerId;
use crate::time::Mono;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
#[derive(Debug)]
struct Peer {
    id: PeerId,
    has: Bitfield,
    /// Chunks we announced to it (all of ours, unless super-seeding).
    revealed: Bitfield,
    /// When its chunk count last grew (or it was last revealed a chunk).
    progress_at: Mono,
    /// It stalled once (see [`superseed`]): from then on it is revealed chunks
    /// whoever holds them, a few at a time, without waiting to stall again.
    starved: bool,
    seen_first: bool,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    /// Our requests to them, with when they were sent.
    in_flight: BTreeMap<u32, Mono>,
    /// Their requests waiting for [`Swarm::serve_chunk`].
    queued: BTreeSet<u32>,
    window_down: u64,
    window_up: u64,
}

/// Peers are kept in key order (their public key bytes; `PeerId` is not `Ord`), so
/// a run with the same seed makes the same choices.
type Key = [u8; 32];

fn key(id: &PeerId) -> Key {
    id.to_bytes()
}

/// One transfer, one peer's view. See the module docs.
#[derive(Debug)]
pub struct Swarm {
    manifest: Manifest,
    me: PeerId,
    have: Bitfield,
    config: SwarmConfig,
    peers: BTreeMap<Key, Peer>,
    banned: BTreeSet<Key>,
    picker: Picker,
    choker: Choker,
    window_start: Mono,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SwarmEvent>,
    stats: SwarmStats,
    rng: StdRng,
}

impl Swarm {
    /// A swarm member `me` holding the verified chunks `have` (all of them for the
    /// sender; from [`resume::rebuild`](super::resume::rebuild) for a recipient).
    /// `seed` drives the random choices. Panics if `have` is not as long as the file.
    pub fn new(
        now: Mono,
        manifest: Manifest,
        me: PeerId,
        have: Bitfield,
        config: SwarmConfig,
        seed: u64,
    ) -> Swarm {
        assert_eq!(
            have.len(),
            manifest.chunk_count(),
            "bitfield of another file"
        );
        let choker = Choker::new(
            now,
            config.unchoke_slots,
            config.rechoke_interval,
            config.optimistic_every,
        );
        Swarm {
            picker: Picker::new(manifest.chunk_count()),
            manifest,
            me,
            have,
            config,
            peers: BTreeMap::new(),
            banned: BTreeSet::new(),
            choker,
            window_start: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: SwarmStats::default(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The file.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The verified chunks.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Every chunk is verified.
    pub fn is_complete(&self) -> bool {
        self.have.is_complete()
    }

    /// Byte counters.
    pub fn stats(&self) -> SwarmStats {
        self.stats
    }

    /// Connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.values().map(|p| &p.id)
    }

    /// Whether `peer` is connected and holds every chunk (by its bitfield and haves).
    pub fn peer_complete(&self, peer: &PeerId) -> bool {
        self.peers
            .get(&key(peer))
            .is_some_and(|p| p.has.is_complete())
    }

    /// Peers we currently serve.
    pub fn unchoked(&self) -> Vec<PeerId> {
        self.peers
            .values()
            .filter(|p| !p.am_choking)
            .map(|p| p.id)
            .collect()
    }

    /// A connection to `peer` is up: announce our chunks to it.
    pub fn add_peer(&mut self, now: Mono, peer: PeerId) -> Result<(), AddPeerError> {
        if peer == self.me {
            return Err(AddPeerError::Myself);
        }
        if self.banned.contains(&key(&peer)) {
            return Err(AddPeerError::Banned);
        }
        if self.peers.contains_key(&key(&peer)) {
            return Err(AddPeerError::Duplicate);
        }
        if self.peers.len() >= self.config.max_peers {
            return Err(AddPeerError::TooMany(self.config.max_peers));
        }
        self.peers.insert(
            key(&peer),
            Peer {
                id: peer,
                has: Bitfield::empty(self.manifest.chunk_count()),
                revealed: if self.superseeding() {
                    Bitfield::empty(self.manifest.chunk_count())
                } else {
                    self.have.clone()
                },
                progress_at: now,
                starved: false,
                seen_first: false,
                am_choking: true,
                am_interested: false,
                peer_choking: true,
                peer_interested: false,
                in_flight: BTreeMap::new(),
                queued: BTreeSet::new(),
                window_down: 0,
                window_up: 0,
            },
        );
        let shown = self.peer_mut(peer).revealed.as_bytes().to_vec();
        self.send(peer, PeerMessage::Bitfield(shown));
        Ok(())
    }

    /// The connection to `peer` is gone: its chunks and our requests to it are
    /// forgotten, and the requests go to others.
    pub fn remove_peer(&mut self, now: Mono, peer: &PeerId) {
        let Some(p) = self.peers.remove(&key(peer)) else {
            return;
        };
        self.picker.remove_peer(&p.has);
        for i in p.in_flight.keys() {
            self.picker.released(*i);
        }
        self.choker.remove(peer);
        self.transmits.retain(|t| t.peer != *peer);
        self.fill_all(now);
        self.reveal_all(now, false);
    }

    /// A message from `peer`. Messages from peers not connected are ignored.
    pub fn handle_message(&mut self, now: Mono, peer: PeerId, msg: PeerMessage) {
        match self.handle(now, peer, msg) {
            Ok(()) => self.reveal_all(now, false),
            Err(reason) => self.drop_peer(now, peer, reason),
        }
    }

    fn handle(&mut self, now: Mono, from: PeerId, msg: PeerMessage) -> Result<(), DropReason> {
        let n = self.manifest.chunk_count();
        let Some(p) = self.peers.get_mut(&key(&from)) else {
            return Ok(());
        };
        let first = !std::mem::replace(&mut p.seen_first, true);
        match msg {
            PeerMessage::Bitfield(_) if !first => return Err(DropReason::LateBitfield),
            PeerMessage::Bitfield(bytes) => {
                p.has = Bitfield::from_bytes(n, &bytes)?;
                p.progress_at = now;
                self.picker.add_peer(&p.has);
                self.update_interest(from);
                self.fill(now, from);
            }
            PeerMessage::Have(i) => {
                if i >= n {
                    return Err(DropReason::IndexOutOfRange(i));
                }
                if p.has.set(i) {
                    p.progress_at = now;
                    self.picker.add_have(i);
                    self.update_interest(from);
                    self.fill(now, from);
                }
            }
            PeerMessage::Interested => {
                p.peer_interested = true;
                let unchoked = self.peers.values().filter(|p| !p.am_choking).count();
                // Start at once while there are free slots; rounds rebalance later.
                if unchoked < self.config.unchoke_slots + 1 {
                    self.set_choking(from, false);
                }
            }
            PeerMessage::NotInterested => p.peer_interested = false,
            PeerMessage::Choke => {
                p.peer_choking = true;
                // BEP 3: a choke discards every pending request.
                for i in std::mem::take(&mut p.in_flight).into_keys() {
                    self.picker.released(i);
                }
                self.fill_all(now);
            }
            PeerMessage::Unchoke => {
                p.peer_choking = false;
                self.fill_all(now);
            }
            PeerMessage::Request(i) => {
                if i >= n {
                    return Err(DropReason::IndexOutOfRange(i));
                }
                if !self.have.get(i) {
                    return Err(DropReason::RequestedMissing(i));
                }
                if p.am_choking {
                    return Ok(()); // crossed our choke; BEP 3 says ignore
                }
                if p.queued.len() >= self.config.max_queued_requests {
                    return Err(DropReason::TooManyRequests(self.config.max_queued_requests));
                }
                if p.queued.insert(i) {
                    self.events.push_back(SwarmEvent::ReadChunk {
                        peer: from,
                        index: i,
                    });
                }
            }
            PeerMessage::Cancel(i) => {
                p.queued.remove(&i);
            }
            PeerMessage::Piece { index, data } => {
                if index >= n {
                    return Err(DropReason::IndexOutOfRange(index));
                }
                self.stats.downloaded += data.len() as u64;
                p.window_down += data.len() as u64;
                if p.in_flight.remove(&index).is_some() {
                    self.picker.released(index);
                }
                if self.have.get(index) {
                    self.stats.wasted += data.len() as u64;
                } else if !self.manifest.verify_chunk(index, &data) {
                    return Err(DropReason::BadChunk(index));
                } else {
                    self.chunk_verified(now, index, data);
                }
                self.fill(now, from);
            }
        }
        Ok(())
    }

    fn chunk_verified(&mut self, now: Mono, index: u32, data: Vec<u8>) {
        self.have.set(index);
        self.stats.verified += data.len() as u64;
        self.events
            .push_back(SwarmEvent::ChunkVerified { index, data });
        for id in self.peer_ids() {
            let p = self.peer_mut(id);
            // End game: the other copies are no longer needed.
            let cancel = p.in_flight.remove(&index).is_some();
            p.revealed.set(index);
            if cancel {
                self.picker.released(index);
                self.send(id, PeerMessage::Cancel(index));
            }
            // To everyone, as BEP 3 does: a super-seeding sender learns from it
            // that a revealed chunk reached this recipient some other way.
            self.send(id, PeerMessage::Have(index));
            self.update_interest(id);
        }
        if self.have.is_complete() {
            self.events.push_back(SwarmEvent::Complete);
        }
        self.fill_all(now);
    }

    /// The stored bytes of chunk `index` that `peer` asked for (after
    /// [`SwarmEvent::ReadChunk`]). Sent only if the request still stands and the bytes
    /// match the manifest.
    pub fn serve_chunk(&mut self, _now: Mono, peer: PeerId, index: u32, data: Vec<u8>) {
        let Some(p) = self.peers.get_mut(&key(&peer)) else {
            return;
        };
        if !p.queued.remove(&index) {
            return; // cancelled, or the peer was choked meanwhile
        }
        if !self.manifest.verify_chunk(index, &data) {
            self.have.clear(index);
            self.events.push_back(SwarmEvent::LocalChunkBad { index });
            return;
        }
        p.window_up += data.len() as u64;
        self.stats.uploaded += data.len() as u64;
        self.send(peer, PeerMessage::Piece { index, data });
    }

    /// Runs the choking round and request timeouts that are due at `now`.
    pub fn handle_timeout(&mut self, now: Mono) {
        if now >= self.choker.next_round() {
            self.rechoke(now);
        }
        let timeout = self.config.request_timeout;
        let mut expired = Vec::new();
        for p in self.peers.values_mut() {
            let id = p.id;
            p.in_flight.retain(|&i, sent| {
                let keep = *sent + timeout > now;
                if !keep {
                    expired.push((id, i));
                }
                keep
            });
        }
        for (id, i) in &expired {
            self.picker.released(*i);
            self.send(*id, PeerMessage::Cancel(*i));
        }
        if !expired.is_empty() {
            self.fill_all(now);
        }
        if self.next_starve_check().is_some_and(|t| t <= now) {
            self.reveal_all(now, true);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next run.
    pub fn poll_timeout(&self) -> Option<Mono> {
        let oldest = self
            .peers
            .values()
            .flat_map(|p| p.in_flight.values())
            .min()
            .map(|&sent| sent + self.config.request_timeout);
        [
            oldest,
            self.next_starve_check(),
            Some(self.choker.next_round()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing the shell must act on.
    pub fn poll_event(&mut self) -> Option<SwarmEvent> {
        self.events.pop_front()
    }

    fn rechoke(&mut self, now: Mono) {
        let secs = now.since(self.window_start).as_millis().max(1) as u64;
        self.window_start = now;
        let seeding = self.have.is_complete();
        let candidates: Vec<Candidate> = self
            .peers
            .values_mut()
            .map(|p| {
                let bytes = if seeding { p.window_up } else { p.window_down };
                p.window_up = 0;
                p.window_down = 0;
                Candidate {
                    peer: p.id,
                    rate: bytes * 1000 / secs,
                    interested: p.peer_interested,
                }
            })
            .collect();
        let unchoke = self.choker.rechoke(now, &candidates, &mut self.rng);
        for id in self.peer_ids() {
            self.set_choking(id, !unchoke.contains(&id));
        }
        self.reveal_all(now, false);
    }

    fn superseeding(&self) -> bool {
        self.config.super_seed && self.me == self.manifest.sender() && self.have.is_complete()
    }

    /// Tops every recipient up to [`REVEAL_DEPTH`] revealed chunks it lacks; with
    /// `starving`, only those stalled for [`STARVE_AFTER`], whatever others hold.
    fn reveal_all(&mut self, now: Mono, starving: bool) {
        if !self.superseeding() {
            return;
        }
        let n = self.manifest.chunk_count();
        let mut blocked = if starving {
            Bitfield::empty(n)
        } else {
            let views = self.peers.values().map(|p| RevealView {
                has: &p.has,
                revealed: &p.revealed,
                active: !p.am_choking || !p.peer_interested,
            });
            superseed::blocked(n, views)
        };
        let unblocked = Bitfield::empty(n);
        for id in self.peer_ids() {
            let p = self.peer_mut(id);
            if starving && p.progress_at + STARVE_AFTER > now {
                continue;
            }
            if starving && p.seen_first {
                p.starved = true;
            }
            loop {
                let p = self.peers.get_mut(&key(&id)).expect("a connected peer");
                if !p.seen_first || superseed::pending(&p.has, &p.revealed) >= REVEAL_DEPTH {
                    break;
                }
                let skip = if p.starved { &unblocked } else { &blocked };
                let Some(i) = superseed::choose(&p.has, &p.revealed, skip, &mut self.rng) else {
                    break;
                };
                p.revealed.set(i);
                p.progress_at = now;
                blocked.set(i);
                self.send(id, PeerMessage::Have(i));
            }
        }
    }

    /// When the next stalled recipient is due for reveals (super-seeding only).
    fn next_starve_check(&self) -> Option<Mono> {
        if !self.superseeding() {
            return None;
        }
        self.peers
            .values()
            .filter(|p| p.seen_first && !p.has.is_complete())
            .map(|p| p.progress_at + STARVE_AFTER)
            .min()
    }

    fn set_choking(&mut self, id: PeerId, choke: bool) {
        let p = self.peer_mut(id);
        if p.am_choking == choke {
            return;
        }
        p.am_choking = choke;
        if choke {
            p.queued.clear();
            self.send(id, PeerMessage::Choke);
        } else {
            self.send(id, PeerMessage::Unchoke);
        }
    }

    fn update_interest(&mut self, id: PeerId) {
        let p = self.peers.get_mut(&key(&id)).expect("a connected peer");
        let want = p.has.has_any_missing_from(&self.have);
        if want != p.am_interested {
            p.am_interested = want;
            let msg = if want {
                PeerMessage::Interested
            } else {
                PeerMessage::NotInterested
            };
            self.send(id, msg);
        }
    }

    fn fill_all(&mut self, now: Mono) {
        for id in self.peer_ids() {
            self.fill(now, id);
        }
    }

    /// Sends requests to `id` until its pipeline is full or it has nothing to give.
    fn fill(&mut self, now: Mono, id: PeerId) {
        loop {
            let Some(p) = self.peers.get(&key(&id)) else {
                return;
            };
            let spare = self.config.spare_origin && id == self.manifest.sender();
            let depth = if spare {
                self.config.max_in_flight_origin
            } else {
                self.config.max_in_flight
            };
            if p.peer_choking || !p.am_interested || p.in_flight.len() >= depth {
                return;
            }
            let others: Vec<&Bitfield> = if spare {
                self.peers
                    .values()
                    .filter(|q| q.id != id && !q.peer_choking)
                    .map(|q| &q.has)
                    .collect()
            } else {
                Vec::new()
            };
            let picker = &self.picker;
            // Sparing the origin: nothing another unchoking peer has, and no end-game
            // duplicates.
            let excluded = |i: u32| {
                p.in_flight.contains_key(&i)
                    || (spare && picker.outstanding(i) > 0)
                    || others.iter().any(|b| b.get(i))
            };
            let Some(i) = self
                .picker
                .pick(&self.have, &p.has, excluded, &mut self.rng)
            else {
                return;
            };
            self.picker.requested(i);
            self.peer_mut(id).in_flight.insert(i, now);
            self.send(id, PeerMessage::Request(i));
        }
    }

    fn drop_peer(&mut self, now: Mono, peer: PeerId, reason: DropReason) {
        self.banned.insert(key(&peer));
        self.remove_peer(now, &peer);
        self.events
            .push_back(SwarmEvent::PeerDropped { peer, reason });
    }

    fn peer_ids(&self) -> Vec<PeerId> {
        self.peers.values().map(|p| p.id).collect()
    }

    fn peer_mut(&mut self, id: PeerId) -> &mut Peer {
        self.peers.get_mut(&key(&id)).expect("a connected peer")
    }

    fn send(&mut self, peer: PeerId, msg: PeerMessage) {
        self.transmits.push_back(Transmit { peer, msg });
    }
}

#[cfg(test)]
mod tests;
