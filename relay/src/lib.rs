//! The Parley relay: forwards a call's end-to-end encrypted media between the call's
//! two legs, and nowhere else. See docs/relay.md.
//!
//! - [`server`]: [`start`] runs a relay (what `main` and in-process tests call).
//! - [`client`]: [`join_relay`] and [`RelayLeg::wait_paired`], the client side of a leg.
//! - `switch`: the hot path, the sans-IO [`parley_proto::relay::RelayCore`] behind a mutex.
//! - [`endpoint`]: the QUIC transport settings of a leg, on both ends.
//! - `report`: periodic load reports to supernodes.
//! - [`metrics`]: the relay's counters as Prometheus metrics (`--metrics`).
#![deny(missing_docs)]

pub mod client;
pub mod endpoint;
pub mod metrics;
mod report;
pub mod server;
mod switch;

pub use client::{join_relay, query_load, RelayClientError, RelayLeg};
pub use report::REPORT_INTERVAL;
pub use server::{start, Bound, RelayParams};
