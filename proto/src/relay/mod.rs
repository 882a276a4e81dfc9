//! Relays: forwarding a call's media when the two parties cannot reach each other.
//!
//! Both parties dial the relay outward (so any NAT lets them through) and present a
//! [`token::SignedRelayToken`] that a supernode the relay trusts issued for the call.
//! The relay pairs the two legs of a call and forwards QUIC datagrams between them,
//! verbatim: media is end-to-end encrypted by the parties, the relay only counts bytes.
//!
//! - [`token`]: the call id and the signed, short-lived permission to use a relay.
//! - [`messages`]: what clients and supernodes say to a relay, and its refusals.
//! - [`pairing`]: [`pairing::RelayCore`], the sans-IO machine that admits legs, pairs
//!   them, enforces the limits and decides where each datagram goes.
//! - [`channel`] and [`channel_table`]: the media channel's wire format and the
//!   data plane's table (MAC, replay window, proven addresses, rate caps).
//! - [`stats`]: typed reasons for every drop and close, and their counters.
//! - [`RateLimit`]: the per-leg token buckets (module `rate`).
//! - [`peer`]: the limits and trust model of a relay run by a promoted client.
//! - [`choice`]: which relay a call uses (RTT to both parties by Vivaldi coordinates
//!   and pings, and load).

pub mod channel;
pub mod channel_table;
pub mod choice;
pub mod messages;
pub mod pairing;
pub mod peer;
mod rate;
pub mod stats;
pub mod token;

#[cfg(test)]
mod pairing_tests;

pub use channel::{ChannelId, ChannelKey};
pub use channel_table::{ChannelTable, ChannelVerdict};
pub use messages::{
    ChannelGrant, RelayLoad, RelayRefusal, RelayRefusalCode, ALPN_RELAY, ALPN_RELAY_REPORT,
};
pub use pairing::{
    JoinOutcome, LegId, LoadCounts, RelayConfig, RelayCore, TokenVerifier, Verdict, VerifiedJoin,
};
pub use rate::{JoinLimiter, RateLimit};
pub use stats::{CloseReason, DropReason, RelayStats};
pub use token::{CallId, RelayToken, SignedRelayToken, TokenError, MAX_TOKEN_LIFETIME};
