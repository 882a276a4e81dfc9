//! What the [`Swarm`](super::Swarm) machine takes and gives: its configuration,
//! its outputs (transmits, events, counters) and its errors.

use super::super::bitfield::BitfieldError;
use super::super::choke::{OPTIMISTIC_EVERY, RECHOKE_INTERVAL, UNCHOKE_SLOTS};
use super::super::wire::PeerMessage;
use crate::identity::PeerId;
use std::time::Duration;
use thiserror::Error;

/// Limits and timers; the defaults are the seed's numbers.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// Regular unchoke slots ([`UNCHOKE_SLOTS`], 4).
    pub unchoke_slots: usize,
    /// How often they are re-evaluated ([`RECHOKE_INTERVAL`], 10 s).
    pub rechoke_interval: Duration,
    /// The optimistic unchoke rotates every this many rounds ([`OPTIMISTIC_EVERY`], 3).
    pub optimistic_every: u64,
    /// Requests in flight to one peer (4 chunks, 1 MiB: enough to keep a 100 MB/s
    /// link with a 10 ms round trip busy).
    pub max_in_flight: usize,
    /// Requests in flight to the manifest's sender when `spare_origin` is set (2: a
    /// deeper pipeline makes recipients ask it for the same chunk before they hear,
    /// through `have`, that another recipient already got it).
    pub max_in_flight_origin: usize,
    /// Requests one peer may have queued with us; more is a protocol violation (16).
    pub max_queued_requests: usize,
    /// A request unanswered this long is cancelled and asked elsewhere (30 s).
    pub request_timeout: Duration,
    /// Most connected peers (32).
    pub max_peers: usize,
    /// Ask the manifest's sender only for chunks no other unchoking peer has (true).
    pub spare_origin: bool,
    /// As the manifest's sender, reveal chunks a few at a time ([`superseed`](super::super::superseed); true).
    pub super_seed: bool,
}

impl Default for SwarmConfig {
    fn default() -> SwarmConfig {
        SwarmConfig {
            unchoke_slots: UNCHOKE_SLOTS,
            rechoke_interval: RECHOKE_INTERVAL,
            optimistic_every: OPTIMISTIC_EVERY,
            max_in_flight: 4,
            max_in_flight_origin: 2,
            max_queued_requests: 16,
            request_timeout: Duration::from_secs(30),
            max_peers: 32,
            spare_origin: true,
            super_seed: true,
        }
    }
}

/// A message for one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// To whom.
    pub peer: PeerId,
    /// What.
    pub msg: PeerMessage,
}

/// Something the shell must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwarmEvent {
    /// Chunk `index` arrived and matches the manifest: store it.
    ChunkVerified {
        /// Which chunk.
        index: u32,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// `peer` asked for chunk `index`: read it and call [`Swarm::serve_chunk`](super::Swarm::serve_chunk).
    ReadChunk {
        /// Who asked.
        peer: PeerId,
        /// Which chunk.
        index: u32,
    },
    /// `peer` is dropped and banned: close its connection.
    PeerDropped {
        /// Who.
        peer: PeerId,
        /// Why.
        reason: DropReason,
    },
    /// A stored chunk handed to [`Swarm::serve_chunk`](super::Swarm::serve_chunk) did not verify: it is no longer
    /// counted as held and will be downloaded again.
    LocalChunkBad {
        /// Which chunk.
        index: u32,
    },
    /// Every chunk is verified.
    Complete,
}

/// Why a peer was dropped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// It sent a chunk that does not match the manifest.
    #[error("served chunk {0}, which does not match the manifest")]
    BadChunk(u32),
    /// A bitfield after the first message.
    #[error("sent a bitfield after its first message")]
    LateBitfield,
    /// A bitfield that does not fit the file.
    #[error("sent a bad bitfield: {0}")]
    Bitfield(#[from] BitfieldError),
    /// A chunk index past the end of the file.
    #[error("named chunk {0}, past the end of the file")]
    IndexOutOfRange(u32),
    /// A request for a chunk we never announced.
    #[error("requested chunk {0}, which we do not have")]
    RequestedMissing(u32),
    /// More queued requests than [`SwarmConfig::max_queued_requests`].
    #[error("queued more than {0} requests")]
    TooManyRequests(usize),
}

/// Why a peer could not be added.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AddPeerError {
    /// Dropped earlier for misbehaving.
    #[error("peer is banned from this transfer")]
    Banned,
    /// Already connected.
    #[error("peer is already connected")]
    Duplicate,
    /// [`SwarmConfig::max_peers`] reached.
    #[error("too many peers ({0})")]
    TooMany(usize),
    /// Ourselves.
    #[error("cannot connect to ourselves")]
    Myself,
}

/// Byte counters (chunk payload only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwarmStats {
    /// Chunk bytes sent to peers.
    pub uploaded: u64,
    /// Chunk bytes received, including duplicates and bad ones.
    pub downloaded: u64,
    /// Chunk bytes received that verified and were new.
    pub verified: u64,
    /// Chunk bytes received that we already had (end-game duplicates).
    pub wasted: u64,
}
