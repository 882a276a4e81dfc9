//! Parley's protocol crate: identities, wire formats and sans-IO state machines.
//!
//! Nothing in this crate opens a socket or reads the clock. Every state machine takes
//! the current time as an argument ([`Timestamp`]) and is driven by its caller:
//! feed an input (`handle_*`), then drain the outputs (`poll_*`) until they return
//! `None`, and call `handle_timeout` no later than `poll_timeout` asks. The async
//! shells in `supernode/`, `relay/` and `client/` only move bytes between sockets and
//! these machines; tests drive many machines in one process with a virtual clock.
#![deny(missing_docs)]

pub mod attach;
pub mod call;
pub mod codec;
pub mod identity;
pub mod keyfile;
pub mod media;
pub mod messages;
pub mod nat;
pub mod overlay;
pub mod presence;
pub mod promotion;
pub mod quota;
pub mod reach;
pub mod relay;
pub mod text;
pub mod time;
pub mod transfer;
pub mod upload;
pub mod vivaldi;

pub use identity::{Identity, NodeId, PeerId};
pub use time::{Mono, Timestamp};
