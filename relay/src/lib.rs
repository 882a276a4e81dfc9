//! The Parley relay: forwards a call's end-to-end encrypted media between the call's
//! two legs, and nowhere else. See docs/relay.md.
//!
//! - [`server`]: [`start`] runs a relay (what `main` and in-process tests call).
//! - [`client`]: [`join_relay`] and [`RelayLeg::wait_paired`], the client side of a leg.
//! - `dataplane`: media channels, one `SO_REUSEPORT` socket and thread per core,
//!   `recvmmsg`/`sendmmsg`, decisions by [`parley_proto::relay::ChannelTable`].
//! - `switch`: joins, timers and the slow leg kind (media inside QUIC), the sans-IO
//!   [`parley_proto::relay::RelayCore`] behind a mutex.
//! - [`media_leg`]: [`MediaLeg`], a joined leg to send media on (channel or QUIC).
//! - [`endpoint`]: the QUIC transport settings of a leg, on both ends.
//! - `report`: periodic load reports to supernodes.
//! - [`metrics`]: the relay's counters as Prometheus metrics (`--metrics`).
#![deny(missing_docs)]

pub mod client;
mod dataplane;
pub mod endpoint;
pub mod media_leg;
pub mod metrics;
mod report;
pub mod server;
mod switch;

pub use client::{join_relay, query_load, RelayClientError, RelayLeg};
pub use media_leg::MediaLeg;
pub use report::REPORT_INTERVAL;
pub use server::{start, Bound, RelayParams};
