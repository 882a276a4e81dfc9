//! Calls: signalling, the end-to-end key exchange, and sealed media datagrams.

pub mod e2e;
pub mod media;
pub mod session;
pub mod signal;

/// ALPN of a direct (peer-to-peer) media connection between the two parties.
pub const ALPN_CALL: &[u8] = b"parley-call/1";
