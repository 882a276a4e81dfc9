//! Every limit a supernode puts on what strangers can make it do, with its default.
//! docs/security.md lists them with the reasoning and what to tune.
//!
//! Defaults let ordinary use through untouched: a household or office behind one NAT
//! address (dozens of clients), a user placing a call every few seconds, test suites
//! that run dozens of clients and supernodes from 127.0.0.1.

use parley_proto::quota::Quota;
use std::time::Duration;

/// A supernode's limits. `Limits::default()` is what `supernode` runs with.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Live QUIC connections from one IP address (clients, supernodes, relays alike).
    pub conns_per_ip: usize,
    /// Live QUIC connections in total.
    pub conns_total: usize,
    /// A QUIC handshake must complete within this.
    pub handshake_timeout: Duration,
    /// Concurrent bidirectional streams a peer may have open on one connection
    /// (QUIC flow control: more wait; unidirectional streams are not accepted at all).
    pub streams_per_conn: u32,
    /// Bytes a peer may have in flight per stream and per connection (QUIC receive
    /// windows): bounds what one connection can make us buffer.
    pub stream_window: u32,
    /// See `stream_window`.
    pub conn_window: u32,
    /// A request's first frame must arrive within this.
    pub request_timeout: Duration,
    /// Answering a request (a DHT lookup may take several round trips) must finish
    /// within this.
    pub reply_timeout: Duration,
    /// Calls one client key may place.
    pub place_per_key: Quota,
    /// Calls one IP address may place (all clients behind it together).
    pub place_per_ip: Quota,
    /// Relay grants (one per answered call) for one caller key.
    pub grants_per_key: Quota,
    /// Relay grants for callers at one IP address.
    pub grants_per_ip: Quota,
    /// Most keys (client keys or addresses) each quota table tracks.
    pub quota_keys: usize,
    /// Outgoing overlay connections kept open at most.
    pub pool_max: usize,
    /// An outgoing overlay connection unused this long is closed.
    pub pool_idle: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            conns_per_ip: 256,
            conns_total: 20_000,
            handshake_timeout: Duration::from_secs(10),
            streams_per_conn: 256,
            stream_window: 128 * 1024,
            conn_window: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(30),
            // A call every few seconds is fine; a burst of 20 is fine.
            place_per_key: Quota::new(20, 30),
            place_per_ip: Quota::new(200, 600),
            grants_per_key: Quota::new(20, 30),
            grants_per_ip: Quota::new(200, 600),
            quota_keys: 100_000,
            pool_max: 1024,
            pool_idle: Duration::from_secs(300),
        }
    }
}
