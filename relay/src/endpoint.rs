//! QUIC settings for relay legs, on both ends.
//!
//! `parley_net::make_endpoint` uses a transport tuned for control streams. A leg
//! carries real-time audio as datagrams, where a late packet is worth nothing: the
//! buffers here are sized so that under pressure old datagrams are dropped (and
//! counted) rather than queued for seconds.

use parley_net::tls::{client_tls, server_tls, SERVER_NAME};
use parley_net::NetError;
use parley_proto::relay::ALPN_RELAY;
use parley_proto::{Identity, PeerId};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connecting, Endpoint, EndpointConfig, TokioRuntime, TransportConfig};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Keep-alives keep the client's NAT mapping towards the relay open through silences.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// A leg that hears nothing at all (not even keep-alives) for this long is dead.
pub const QUIC_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Datagrams received but not yet forwarded. The forwarding task reads them as they
/// come; a backlog only builds when the relay is overloaded, and then a second of
/// audio at the rate cap is already too late to be worth forwarding.
const DATAGRAM_RECEIVE_BUFFER: usize = 64 * 1024;
/// Datagrams waiting for the congestion window. 64 KiB is about a second of audio at
/// the default rate cap; beyond that the partner's path cannot keep up and fresh
/// audio is worth more than old, so the relay drops instead of queueing.
const DATAGRAM_SEND_BUFFER: usize = 64 * 1024;
/// A leg needs one stream to join and the odd load query; more is abuse.
const MAX_BIDI_STREAMS: u32 = 4;
/// Kernel buffer of the relay's one UDP socket. Every leg's packets arrive on it, so
/// the default (~200 KiB, a few hundred small packets) overflows in a scheduling
/// hiccup of a few milliseconds at 20,000 packets/s. Much more would only turn loss
/// into delay when the relay is saturated, and late audio is as useless as lost
/// audio. The kernel caps the request at `net.core.rmem_max` / `wmem_max`.
pub const SOCKET_BUFFER: usize = 2 * 1024 * 1024;

/// The transport of a relay leg (the same on the relay and on the client).
pub fn leg_transport() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // Far below QUIC's varint limit, so this conversion cannot fail.
    t.max_idle_timeout(QUIC_IDLE_TIMEOUT.try_into().ok());
    t.datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER));
    t.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    t.max_concurrent_bidi_streams(MAX_BIDI_STREAMS.into());
    t.max_concurrent_uni_streams(0u32.into());
    Arc::new(t)
}

fn tls_error(e: impl std::fmt::Display) -> NetError {
    NetError::Tls(rustls::Error::General(e.to_string()))
}

/// The relay's endpoint: serves [`ALPN_RELAY`] as `identity` on `bind`, and can dial
/// out (load reports) from the same socket.
pub fn relay_endpoint(bind: SocketAddr, identity: &Identity) -> Result<Endpoint, NetError> {
    let quic =
        QuicServerConfig::try_from(server_tls(identity, &[ALPN_RELAY])?).map_err(tls_error)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(leg_transport());
    let bind_error = |source| NetError::Bind { addr: bind, source };
    let socket = bind_socket(bind).map_err(bind_error)?;
    Endpoint::new(
        EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(TokioRuntime),
    )
    .map_err(bind_error)
}

/// Binds `addr` with [`SOCKET_BUFFER`]-sized kernel buffers (best effort).
fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Smaller buffers than asked for are not an error: the relay works, with less
    // slack for bursts. The sizes are logged so an operator can tell.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    tracing::debug!(
        recv = socket.recv_buffer_size().unwrap_or(0),
        send = socket.send_buffer_size().unwrap_or(0),
        "relay socket buffers"
    );
    Ok(socket.into())
}

/// Starts dialing a relay as `identity`, accepting only the relay's key `relay`.
pub fn dial_leg(
    endpoint: &Endpoint,
    identity: &Identity,
    relay: PeerId,
    addr: SocketAddr,
) -> Result<Connecting, NetError> {
    let tls = client_tls(identity, ALPN_RELAY, Some(relay))?;
    let quic = QuicClientConfig::try_from(tls).map_err(tls_error)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(leg_transport());
    Ok(endpoint.connect_with(config, addr, SERVER_NAME)?)
}
