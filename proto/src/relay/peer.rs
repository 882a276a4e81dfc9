//! Peer relays: the limits of a relay run by a promoted client (issue 10), and the
//! trust model they serve (docs/architecture.md, "Peer relays").
//!
//! A peer relay has no operator to hand it a list of supernode keys, and keys cost
//! nothing, so it cannot trust "a supernode". It trusts exactly one issuer: its own
//! supernode role, which runs in the same process under the same key. A leg is admitted
//! only with a token that role signed, and it signs one only for a call it routed
//! itself: the caller is a client attached to it (its key proved by TLS on the
//! attachment), the callee is the key named in the caller's signed offer, and the
//! token is granted only once the callee's side answered `Ringing` (as for every
//! supernode: `supernode/src/calls.rs`), within the role's grant quotas per key and IP.
//! The token binds the call id, both parties' keys, the relay and a 10-minute expiry,
//! and [`RelayCore`](super::RelayCore) admits a leg only if its own TLS key is one of
//! the two parties; it forwards a datagram only to the other party's leg of the same
//! call (a QUIC connection that party opened, or a media channel whose address that
//! leg proved with its keyed tag), never to an address named in a packet. So a
//! stranger can use a peer relay only by placing a real call through the peer's
//! supernode to a real callee who rings, and then only within [`peer_config`]'s caps.
//!
//! [`peer_config`] turns the volunteer's `--relay-kbps` into hard limits: a per-leg
//! rate cap ([`PEER_LEG_RATE`]) times the most legs the relay holds never exceeds the
//! budget, so no global counter sits on the forwarding path; and small quotas per key
//! and per source IP keep one caller from taking all of it.

use super::pairing::RelayConfig;
use super::rate::RateLimit;
use std::time::Duration;

/// A peer relay leg's rate cap: 100 datagrams/s and 32 kB/s (256 kbit/s). A call's
/// sender tops out at 64 kbit/s of Opus; with two redundant copies of earlier frames in
/// each datagram (on a lossy path) and headers it stays under 200 kbit/s.
pub const PEER_LEG_RATE: RateLimit = RateLimit {
    packets_per_sec: 100,
    bytes_per_sec: 32 * 1024,
    burst: Duration::from_secs(1),
};

/// A typical budget: 2,048 kbit/s, 8 legs (4 calls), about what the default gives a
/// typical 8 Mbit/s residential upload (a quarter of it, `crate::upload::
/// default_relay_kbps`; the client measures its upload before it serves). The tests'
/// budget.
pub const TYPICAL_RELAY_KBPS: u32 = 2_048;

/// Legs one key may hold on a peer relay: one call, and one rejoin of it.
pub const PEER_LEGS_PER_KEY: u32 = 2;

/// Legs one source IP may hold on a peer relay: two calls.
pub const PEER_LEGS_PER_IP: u32 = 4;

/// The limits of a peer relay whose volunteer gives it `relay_kbps` kbit/s: legs =
/// `relay_kbps` / 256 (each leg's cap is [`PEER_LEG_RATE`]), at least 2 (one call);
/// [`PEER_LEGS_PER_KEY`], [`PEER_LEGS_PER_IP`]; calls at most 2 hours. Returns `None`
/// for a budget too small for one call (under 512 kbit/s).
pub fn peer_config(relay_kbps: u32) -> Option<RelayConfig> {
    let per_leg_kbps = PEER_LEG_RATE.bytes_per_sec * 8 / 1024;
    let legs = relay_kbps / per_leg_kbps;
    if legs < 2 {
        return None;
    }
    Some(RelayConfig {
        rate: PEER_LEG_RATE,
        max_call_length: Duration::from_secs(2 * 60 * 60),
        max_legs_per_key: PEER_LEGS_PER_KEY,
        max_legs_per_ip: PEER_LEGS_PER_IP,
        max_legs: legs,
        ..RelayConfig::default()
    })
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
