//! One quinn endpoint per process: it accepts connections and dials out from the same
//! UDP socket, so the address a server observes is the address others can reach.

use crate::tls::{client_tls, peer_id_from_spki, server_tls, SERVER_NAME};
use crate::NetError;
use parley_proto::{Identity, PeerId};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, TransportConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Keep-alives keep NAT mappings open; they must beat common 30 s UDP timeouts.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// A connection that hears nothing for this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

fn transport_with(keep_alive: Option<Duration>, idle: Duration) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(keep_alive);
    // Idle timeouts here are far below QUIC's varint limit: the conversion cannot fail.
    t.max_idle_timeout(idle.try_into().ok());
    Arc::new(t)
}

fn transport() -> Arc<TransportConfig> {
    transport_with(Some(KEEP_ALIVE), IDLE_TIMEOUT)
}

/// Accepted connections send no keep-alives of their own: the dialer keeps a
/// connection alive (it is the side behind a NAT, and every dial here sets an
/// interval). A server-side keep-alive shorter than a client's would double what an
/// idle attachment costs; QUIC restarts the keep-alive timer on every packet sent
/// or received, so the dialer's pings and their ACKs keep both ends quiet.
fn server_transport() -> Arc<TransportConfig> {
    transport_with(None, IDLE_TIMEOUT)
}

/// How a dial should watch its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Keep-alive every 10 s, dead after 30 s of silence: servers, media.
    Normal,
    /// A client's supernode attachment, as its attachment machine decides
    /// (`parley_proto::attach::KeepAlive`): a keep-alive after `keep_alive` without
    /// sending, dead after `idle` without hearing from the supernode (the QUIC idle
    /// timeout; the smaller of the two ends' values applies, and the supernode's is
    /// [`IDLE_TIMEOUT`]). The same over UDP and through the TCP tunnel.
    Attachment {
        /// Keep-alive interval.
        keep_alive: Duration,
        /// Idle timeout.
        idle: Duration,
    },
}

fn server_config(identity: &Identity, alpns: &[&[u8]]) -> Result<quinn::ServerConfig, NetError> {
    let tls = server_tls(identity, alpns)?;
    let quic = QuicServerConfig::try_from(tls)
        .map_err(|e| NetError::Tls(rustls::Error::General(e.to_string())))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(server_transport());
    Ok(server)
}

/// Binds `bind` and serves `alpns` as `identity`; the endpoint can also dial.
pub fn make_endpoint(
    bind: SocketAddr,
    identity: &Identity,
    alpns: &[&[u8]],
) -> Result<Endpoint, NetError> {
    let server = server_config(identity, alpns)?;
    Endpoint::server(server, bind).map_err(|source| NetError::Bind { addr: bind, source })
}

/// Like [`make_endpoint`], on a socket that is already bound (and may already have
/// been used, e.g. for STUN: its NAT mapping carries over to QUIC).
pub fn make_endpoint_on(
    socket: std::net::UdpSocket,
    identity: &Identity,
    alpns: &[&[u8]],
) -> Result<Endpoint, NetError> {
    use quinn::Runtime;
    let addr = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let socket = quinn::TokioRuntime
        .wrap_udp_socket(socket)
        .map_err(|source| NetError::Bind { addr, source })?;
    make_endpoint_with(socket, identity, alpns)
}

/// Like [`make_endpoint`], on any quinn socket (e.g. [`crate::tcp_tunnel::TcpTunnelSocket`]).
pub fn make_endpoint_with(
    socket: Arc<dyn quinn::AsyncUdpSocket>,
    identity: &Identity,
    alpns: &[&[u8]],
) -> Result<Endpoint, NetError> {
    let server = server_config(identity, alpns)?;
    Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| NetError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// Dials `addr` speaking `alpn`; with `expected`, only that key is accepted.
pub async fn dial(
    endpoint: &Endpoint,
    identity: &Identity,
    addr: SocketAddr,
    alpn: &[u8],
    expected: Option<PeerId>,
    timeout: Duration,
) -> Result<(Connection, PeerId), NetError> {
    dial_with(
        endpoint,
        identity,
        addr,
        alpn,
        expected,
        timeout,
        Liveness::Normal,
    )
    .await
}

/// [`dial`], choosing how quickly a dead peer is noticed.
pub async fn dial_with(
    endpoint: &Endpoint,
    identity: &Identity,
    addr: SocketAddr,
    alpn: &[u8],
    expected: Option<PeerId>,
    timeout: Duration,
    liveness: Liveness,
) -> Result<(Connection, PeerId), NetError> {
    let tls = client_tls(identity, alpn, expected)?;
    let quic = QuicClientConfig::try_from(tls)
        .map_err(|e| NetError::Tls(rustls::Error::General(e.to_string())))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(match liveness {
        Liveness::Normal => transport(),
        Liveness::Attachment { keep_alive, idle } => transport_with(Some(keep_alive), idle),
    });
    let connecting = endpoint.connect_with(config, addr, SERVER_NAME)?;
    let conn = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| NetError::Timeout(timeout))??;
    let peer = peer_id_of(&conn)?;
    Ok((conn, peer))
}

/// The identity the peer of `conn` proved in the handshake.
pub fn peer_id_of(conn: &Connection) -> Result<PeerId, NetError> {
    let identity = conn.peer_identity().ok_or(NetError::NoPeerIdentity)?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .map_err(|_| NetError::NoPeerIdentity)?;
    certs
        .first()
        .and_then(|c| peer_id_from_spki(c.as_ref()))
        .ok_or(NetError::NoPeerIdentity)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPN: &[u8] = b"test/1";

    #[tokio::test]
    async fn both_sides_learn_each_others_identity() {
        let server_id = Identity::generate();
        let client_id = Identity::generate();
        let server = make_endpoint("127.0.0.1:0".parse().unwrap(), &server_id, &[ALPN]).unwrap();
        let client = make_endpoint("127.0.0.1:0".parse().unwrap(), &client_id, &[ALPN]).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            peer_id_of(&conn).unwrap()
        });
        let (_conn, seen) = dial(
            &client,
            &client_id,
            addr,
            ALPN,
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(seen, server_id.peer_id());
        assert_eq!(accept.await.unwrap(), client_id.peer_id());
    }

    #[tokio::test]
    async fn a_pinned_key_refuses_an_impostor() {
        let server_id = Identity::generate();
        let client_id = Identity::generate();
        let server = make_endpoint("127.0.0.1:0".parse().unwrap(), &server_id, &[ALPN]).unwrap();
        let client = make_endpoint("127.0.0.1:0".parse().unwrap(), &client_id, &[ALPN]).unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                let _ = incoming.await;
            }
        });
        let other = Identity::generate().peer_id();
        let result = dial(
            &client,
            &client_id,
            addr,
            ALPN,
            Some(other),
            Duration::from_secs(5),
        )
        .await;
        assert!(result.is_err());
    }
}
