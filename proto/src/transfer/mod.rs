//! File transfer, swarm style (issue 17): a file described by a signed manifest, cut
//! into 256 KiB chunks that every recipient verifies and serves on to the others.
//!
//! The ideas are BitTorrent's (B. Cohen, "Incentives Build Robustness in BitTorrent",
//! 2003, and BEP 3): rarest-first piece picking, tit-for-tat choking with four
//! unchoked peers re-evaluated every 10 s and one optimistic unchoke every 30 s, and
//! an end game for the last chunks. Everything here is sans-IO:
//!
//! * [`manifest`]: the signed description of one file ([`Manifest`]) and its strict
//!   decoder.
//! * [`name`]: the receiver's check on the file name a manifest carries.
//! * [`bitfield`]: which chunks a peer holds.
//! * [`wire`]: the peer messages (have, bitfield, request, piece, cancel,
//!   choke/unchoke, interested) and their codec.
//! * [`choke`]: who gets unchoked, and when.
//! * [`picker`]: which chunk to ask a peer for.
//! * [`swarm`]: the machine that ties them together for one transfer ([`Swarm`]).
//! * [`resume`]: rebuilding which chunks are verified from what is on disk.
//! * [`superseed`]: how the sender reveals its chunks, a few at a time.
//! * [`call_yield`]: pacing transfers so that a call in progress keeps its delay.

pub mod bitfield;
pub mod call_yield;
pub mod choke;
pub mod manifest;
pub mod name;
pub mod picker;
pub mod resume;
pub mod superseed;
pub mod swarm;
pub mod wire;

pub use bitfield::Bitfield;
pub use manifest::{Manifest, ManifestError, CHUNK_SIZE};
pub use name::{check_file_name, NameError};
pub use swarm::{Swarm, SwarmConfig, SwarmEvent, Transmit};
pub use wire::PeerMessage;
