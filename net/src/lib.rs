//! Parley's QUIC plumbing, shared by the supernode, relay and client shells.
//!
//! - [`tls`]: QUIC's TLS 1.3 bound to ed25519 identities with raw public keys
//!   (RFC 7250), so both ends of every connection learn the other's [`PeerId`].
//! - [`endpoint`]: one quinn endpoint per process, serving and dialing on one socket.
//! - [`framing`]: one request frame and one reply frame per bidirectional stream.
//!
//! [`PeerId`]: parley_proto::PeerId

pub mod channel_socket;
pub mod clock;
pub mod endpoint;
pub mod error;
pub mod framing;
pub mod limits;
pub mod logging;
#[cfg(feature = "metrics")]
pub mod metrics_http;
pub mod signal;
pub mod tcp_tunnel;
pub mod tls;
pub mod upload;

pub use endpoint::{
    dial, dial_with, make_endpoint, make_endpoint_on, make_endpoint_with, peer_id_of, Liveness,
};
pub use error::NetError;
pub use framing::{
    envelope_kind, read_frame, read_raw_frame, read_raw_frame_within, request, send_frame,
    write_frame,
};
pub use logging::{init_logging, print_server_id};
pub use signal::{serve_until_signal, shutdown_signal};

/// `a` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) written as plain IPv4: a
/// dual-stack socket reports IPv4 peers mapped, and every address Parley stores,
/// advertises or dials is canonical (issue 15).
pub fn canonical(a: std::net::SocketAddr) -> std::net::SocketAddr {
    std::net::SocketAddr::new(a.ip().to_canonical(), a.port())
}
