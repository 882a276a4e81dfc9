//! QUIC over TCP, for networks that drop UDP.
//!
//! A client behind such a firewall runs its whole QUIC endpoint on a [`TcpTunnelSocket`]:
//! every datagram the client addresses to `ip:port` travels, length-prefixed, over a
//! TLS 1.3 connection on TCP to that `ip:port` — so a tunnelled client dials a server at
//! its advertised TCP endpoint (`--tcp-listen`, any port; `Welcome`, relay grants and
//! `tcp://` bootstrap addresses carry it), never at a port derived from the QUIC one. The TLS layer uses the same raw-public-key
//! identities as QUIC (ALPN [`ALPN_TUNNEL`]), so to a firewall the tunnel is ordinary TLS;
//! the QUIC inside stays end-to-end authenticated to the server it names. The server
//! side, [`serve_tunnel`], turns each connection back into datagrams from a socket of its
//! own, so the QUIC server sees an ordinary (if local-looking) peer.
//!
//! ```text
//! frame = length:u16be datagram        (1 ≤ length ≤ 65535)
//! ```
//!
//! Datagram semantics are kept: when a connection's queue is full, datagrams are dropped,
//! never blocked on; QUIC recovers as it would from loss.

use crate::canonical;
use crate::limits::ConnLimiter;
use crate::tls::{client_tls, server_tls, SERVER_NAME};
use bytes::Bytes;
use parley_proto::Identity;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// ALPN of the TLS connection that carries a tunnel.
pub const ALPN_TUNNEL: &[u8] = b"parley-tunnel/1";

/// Datagrams queued per tunnel connection before new ones are dropped.
const QUEUE: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What one server's tunnels may take (docs/security.md).
#[derive(Clone, Copy, Debug)]
pub struct TunnelLimits {
    /// Live tunnels from one IP address.
    pub per_ip: usize,
    /// Live tunnels in total.
    pub total: usize,
    /// A tunnel that carries nothing either way for this long is closed. QUIC inside
    /// sends keep-alives at least every 15 s (13.5–15 s on attachments, 10 s on other
    /// connections), so only dead or abandoned tunnels get this quiet.
    pub idle: Duration,
}

impl Default for TunnelLimits {
    fn default() -> TunnelLimits {
        TunnelLimits {
            per_ip: 64,
            total: 4096,
            idle: Duration::from_secs(60),
        }
    }
}

/// Which tunnel each local datagram socket stands for: a server behind the tunnel sees
/// every tunnelled client coming from a loopback address, so it asks here for the TCP
/// peer's address instead — connection caps and per-IP quotas then count a tunnelled
/// client by its own IP, not as one more `127.0.0.1`. Cheap to clone (shared map).
#[derive(Clone, Debug, Default)]
pub struct TunnelPeers(Arc<Mutex<HashMap<SocketAddr, SocketAddr>>>);

impl TunnelPeers {
    /// The address `seen` (a datagram source at the server behind the tunnel) stands for:
    /// the TCP peer of the live tunnel whose socket it is, else `seen` itself. IPv4
    /// addresses come back canonical (never IPv4-mapped IPv6).
    pub fn real(&self, seen: SocketAddr) -> SocketAddr {
        let seen = canonical(seen);
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&seen).copied().unwrap_or(seen)
    }

    /// Records that datagrams from `local` are the tunnel of `peer`, until the guard drops.
    fn register(&self, local: SocketAddr, peer: SocketAddr) -> TunnelPeerGuard {
        let local = canonical(local);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(local, canonical(peer));
        TunnelPeerGuard {
            peers: self.clone(),
            local,
        }
    }
}

/// Removes its tunnel from [`TunnelPeers`] when the tunnel ends.
struct TunnelPeerGuard {
    peers: TunnelPeers,
    local: SocketAddr,
}

impl Drop for TunnelPeerGuard {
    fn drop(&mut self) {
        let mut map = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&self.local);
    }
}

/// A quinn socket whose datagrams travel over TCP connections, one per destination.
pub struct TcpTunnelSocket {
    tls: TlsConnector,
    connections: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
    received_tx: mpsc::Sender<(SocketAddr, Bytes)>,
    received: Mutex<mpsc::Receiver<(SocketAddr, Bytes)>>,
}

impl fmt::Debug for TcpTunnelSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TcpTunnelSocket")
    }
}

impl TcpTunnelSocket {
    /// A socket with no connections yet; they are opened on the first datagram to each
    /// destination, presenting `identity` in TLS. Must be used inside a tokio runtime.
    pub fn new(identity: &Identity) -> Result<Arc<TcpTunnelSocket>, crate::NetError> {
        let tls = TlsConnector::from(Arc::new(client_tls(identity, ALPN_TUNNEL, None)?));
        let (received_tx, received) = mpsc::channel(QUEUE * 4);
        Ok(Arc::new(TcpTunnelSocket {
            tls,
            connections: Mutex::new(HashMap::new()),
            received_tx,
            received: Mutex::new(received),
        }))
    }

    fn connection(&self, to: SocketAddr) -> mpsc::Sender<Bytes> {
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(&to).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run_client_connection(
            to,
            self.tls.clone(),
            rx,
            self.received_tx.clone(),
        ));
        map.insert(to, tx.clone());
        tx
    }
}

async fn run_client_connection(
    to: SocketAddr,
    tls: TlsConnector,
    mut outgoing: mpsc::Receiver<Bytes>,
    incoming: mpsc::Sender<(SocketAddr, Bytes)>,
) {
    let connect = async {
        let tcp = TcpStream::connect(to).await?;
        let _ = tcp.set_nodelay(true);
        let name =
            ServerName::try_from(SERVER_NAME).map_err(|e| io::Error::other(e.to_string()))?;
        tls.connect(name, tcp).await
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tracing::debug!(%to, error = %e, "tunnel connect failed"),
        Err(_) => return tracing::debug!(%to, "tunnel connect timed out"),
    };
    let (mut read, mut write) = tokio::io::split(stream);
    let reader = async move {
        while let Ok(Some(datagram)) = read_frame(&mut read).await {
            // A full queue means quinn is behind: drop, as UDP would.
            let _ = incoming.try_send((to, datagram));
        }
    };
    let writer = async move {
        while let Some(datagram) = outgoing.recv().await {
            if write_frame(&mut write, &datagram).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
}

/// Reads one tunnel frame (`length:u16be datagram`); `None` at a clean end of stream.
/// A zero length is an error. Public for the fuzz target `tunnel_frames`.
pub async fn read_frame(read: &mut (impl AsyncReadExt + Unpin)) -> io::Result<Option<Bytes>> {
    let mut len = [0u8; 2];
    match read.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::from(u16::from_be_bytes(len));
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "empty tunnel frame",
        ));
    }
    let mut buf = vec![0u8; len];
    read.read_exact(&mut buf).await?;
    Ok(Some(buf.into()))
}

/// Writes one tunnel frame; a datagram over 65535 bytes is an error.
pub async fn write_frame(
    write: &mut (impl AsyncWriteExt + Unpin),
    datagram: &[u8],
) -> io::Result<()> {
    let len = u16::try_from(datagram.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "datagram too large"))?;
    let mut frame = Vec::with_capacity(2 + datagram.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(datagram);
    write.write_all(&frame).await
}

/// Sends never wait, so the socket is always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for TcpTunnelSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let tx = self.connection(transmit.destination);
        for chunk in transmit.contents.chunks(segment) {
            // Full or closed: the datagram is lost, as on UDP.
            let _ = tx.try_send(Bytes::copy_from_slice(chunk));
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        crate::channel_socket::poll_recv(
            &self.received,
            cx,
            bufs,
            meta,
            |item| item,
            "tunnel closed",
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// The tunnel's bound TCP port, not yet served: bind it first, so that its address can
/// be advertised (Welcome, relay reports) by the server that starts next.
#[derive(Debug)]
pub struct TunnelListener {
    listener: TcpListener,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// What a server says when [`bind`] fails: the port is `--tcp-listen`'s, which by
/// default is the `--listen` port (so a busy `--listen` port shows here first).
pub const BIND_FAILED: &str =
    "cannot bind the TCP port for clients without UDP (--tcp-listen, by default the --listen port)";

/// Binds the tunnel's TCP port at `addr` (the server's `--tcp-listen`; any port, it is
/// advertised, never derived from the QUIC port).
pub async fn bind(addr: SocketAddr) -> Result<TunnelListener, crate::NetError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| crate::NetError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| crate::NetError::Bind { addr, source })?;
    Ok(TunnelListener {
        listener,
        addr: bound,
    })
}

impl TunnelListener {
    /// Serves the tunnel in the background as `identity`, into the QUIC socket at
    /// `quic` (QUIC over TCP for clients whose networks drop UDP); `peers` learns which
    /// client each tunnel carries.
    pub fn serve(
        self,
        quic: SocketAddr,
        identity: &Identity,
        peers: TunnelPeers,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), crate::NetError> {
        let tls = TlsAcceptor::from(Arc::new(server_tls(identity, &[ALPN_TUNNEL])?));
        let tunnel = Tunnel {
            tls,
            quic,
            limits: TunnelLimits::default(),
            peers,
        };
        tokio::spawn(serve_tunnel(self.listener, tunnel, shutdown));
        Ok(())
    }
}

/// What a tunnel server needs besides its listener.
#[derive(Clone)]
pub struct Tunnel {
    /// TLS as the server's identity, ALPN [`ALPN_TUNNEL`].
    pub tls: TlsAcceptor,
    /// The QUIC server's socket on this host.
    pub quic: SocketAddr,
    /// Caps and idle timeout.
    pub limits: TunnelLimits,
    /// Learns which TCP peer each tunnel's socket stands for.
    pub peers: TunnelPeers,
}

/// Serves tunnels on `listener` into the QUIC socket at `tunnel.quic` (on this host) until
/// `shutdown` turns true, within `tunnel.limits`: a connection over a cap is closed at once.
pub async fn serve_tunnel(
    listener: TcpListener,
    tunnel: Tunnel,
    mut shutdown: watch::Receiver<bool>,
) {
    let Tunnel {
        tls,
        quic,
        limits,
        peers,
    } = tunnel;
    let admission = ConnLimiter::new(limits.per_ip, limits.total);
    // The QUIC server listens on `quic`; reach it on loopback when it listens on any IP.
    let target = if quic.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if quic.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(loopback, quic.port())
    } else {
        quic
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = match admission.try_acquire(peer.ip()) {
                        Ok(p) => p,
                        Err(why) => {
                            tracing::warn!(%peer, %why, "tunnel refused");
                            continue;
                        }
                    };
                    let (tls, peers) = (tls.clone(), peers.clone());
                    tokio::spawn(async move {
                        if let Err(e) = bridge(stream, tls, target, limits.idle, peers).await {
                            tracing::debug!(%peer, error = %e, "tunnel ended");
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "tunnel accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// One tunnel: TCP frames ↔ datagrams from a socket of its own to the QUIC server,
/// until either side ends or nothing moves for `idle`.
async fn bridge(
    stream: TcpStream,
    tls: TlsAcceptor,
    target: SocketAddr,
    idle: Duration,
    peers: TunnelPeers,
) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    let _ = stream.set_nodelay(true);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.accept(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let bind = SocketAddr::new(target.ip(), 0);
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(target).await?;
    let _registered = peers.register(socket.local_addr()?, peer);
    let (mut read, mut write) = tokio::io::split(stream);
    // Monotonic milliseconds since `start` at the last datagram either way.
    let start = tokio::time::Instant::now();
    let last = AtomicU64::new(0);
    let touch = || last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    let up = async {
        while let Some(datagram) = read_frame(&mut read).await? {
            touch();
            socket.send(&datagram).await?;
        }
        io::Result::Ok(())
    };
    let down = async {
        let mut buf = vec![0u8; 65_535];
        loop {
            let n = socket.recv(&mut buf).await?;
            touch();
            write_frame(&mut write, &buf[..n]).await?;
        }
        #[allow(unreachable_code)]
        io::Result::Ok(())
    };
    let watchdog = async {
        loop {
            let quiet_since = start + Duration::from_millis(last.load(Ordering::Relaxed));
            if quiet_since.elapsed() >= idle {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel idle"));
            }
            tokio::time::sleep_until(quiet_since + idle).await;
        }
    };
    tokio::select! {
        r = up => r,
        r = down => r,
        r = watchdog => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dial, make_endpoint};
    use parley_proto::Identity;
    use std::sync::Arc as StdArc;

    /// A tunnel server in front of a UDP echo socket.
    struct EchoTunnel {
        addr: SocketAddr,
        peers: TunnelPeers,
        /// Where the echo socket saw the last datagram come from.
        last_source: Arc<Mutex<Option<SocketAddr>>>,
        _stop: watch::Sender<bool>,
    }

    async fn echo_tunnel(limits: TunnelLimits) -> EchoTunnel {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let quic = echo.local_addr().unwrap();
        let last_source = Arc::new(Mutex::new(None));
        let seen = last_source.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                *seen.lock().unwrap() = Some(from);
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let id = Identity::generate();
        let tls = TlsAcceptor::from(Arc::new(server_tls(&id, &[ALPN_TUNNEL]).unwrap()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let peers = TunnelPeers::default();
        let tunnel = Tunnel {
            tls,
            quic,
            limits,
            peers: peers.clone(),
        };
        tokio::spawn(serve_tunnel(listener, tunnel, stop_rx));
        EchoTunnel {
            addr,
            peers,
            last_source,
            _stop: stop,
        }
    }

    async fn open_tunnel(
        addr: SocketAddr,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let me = Identity::generate();
        let tls = TlsConnector::from(Arc::new(client_tls(&me, ALPN_TUNNEL, None).unwrap()));
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        tls.connect(name, tcp).await
    }

    /// Sends one datagram through the tunnel and waits for its echo.
    async fn echoes(t: &mut tokio_rustls::client::TlsStream<TcpStream>) -> bool {
        if write_frame(t, b"ping").await.is_err() {
            return false;
        }
        let back = tokio::time::timeout(Duration::from_secs(5), read_frame(t)).await;
        matches!(back, Ok(Ok(Some(d))) if &d[..] == b"ping")
    }

    #[tokio::test]
    async fn tunnels_over_the_cap_are_refused_and_the_others_keep_working() {
        let limits = TunnelLimits {
            per_ip: 2,
            ..TunnelLimits::default()
        };
        let server = echo_tunnel(limits).await;
        let addr = server.addr;
        let mut first = open_tunnel(addr).await.unwrap();
        let mut second = open_tunnel(addr).await.unwrap();
        assert!(echoes(&mut first).await && echoes(&mut second).await);
        // A third from the same address is closed before TLS completes.
        assert!(open_tunnel(addr).await.is_err());
        // The bystanders are alive; closing one frees its slot.
        assert!(echoes(&mut first).await);
        drop(second);
        let mut third = None;
        for _ in 0..50 {
            if let Ok(t) = open_tunnel(addr).await {
                third = Some(t);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(echoes(third.as_mut().expect("a freed slot is reusable")).await);
    }

    #[tokio::test]
    async fn the_server_behind_the_tunnel_learns_each_clients_own_address() {
        let server = echo_tunnel(TunnelLimits::default()).await;
        let mut first = open_tunnel(server.addr).await.unwrap();
        let mut second = open_tunnel(server.addr).await.unwrap();
        let mut sources = Vec::new();
        for t in [&mut first, &mut second] {
            assert!(echoes(t).await);
            let source = server
                .last_source
                .lock()
                .unwrap()
                .expect("a datagram arrived");
            // Both come from loopback sockets of the tunnel; each stands for its client.
            assert_eq!(
                server.peers.real(source),
                t.get_ref().0.local_addr().unwrap()
            );
            sources.push(source);
        }
        assert_ne!(sources[0], sources[1]);
        // An address no tunnel uses is itself; a closed tunnel is forgotten.
        let stranger: SocketAddr = "192.0.2.7:4433".parse().unwrap();
        assert_eq!(server.peers.real(stranger), stranger);
        drop(first);
        let mut forgotten = false;
        for _ in 0..100 {
            if server.peers.real(sources[0]) == sources[0] {
                forgotten = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(forgotten, "the closed tunnel's socket is no longer mapped");
        assert!(echoes(&mut second).await, "the other tunnel lives on");
        assert_ne!(server.peers.real(sources[1]), sources[1]);
    }

    #[tokio::test]
    async fn an_idle_tunnel_is_closed_and_a_busy_one_is_not() {
        let limits = TunnelLimits {
            idle: Duration::from_millis(300),
            ..TunnelLimits::default()
        };
        let server = echo_tunnel(limits).await;
        let addr = server.addr;
        let mut idle = open_tunnel(addr).await.unwrap();
        let mut busy = open_tunnel(addr).await.unwrap();
        // The busy one talks every 100 ms for 1.2 s; the idle one says nothing.
        for _ in 0..12 {
            assert!(echoes(&mut busy).await, "a busy tunnel stays open");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let end = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut idle)).await;
        assert!(
            matches!(end, Ok(Ok(None)) | Ok(Err(_))),
            "the idle tunnel was closed by the server"
        );
    }

    #[tokio::test]
    async fn quic_runs_through_the_tunnel() {
        let server_id = Identity::generate();
        let server = make_endpoint("127.0.0.1:0".parse().unwrap(), &server_id, &[b"t/1"]).unwrap();
        let quic = server.local_addr().unwrap();
        let (_stop, stop_rx) = watch::channel(false);
        // The tunnel on the QUIC port's number, over TCP (any port would do).
        let tunnel = bind(quic).await.unwrap();
        tunnel
            .serve(quic, &server_id, TunnelPeers::default(), stop_rx)
            .unwrap();
        tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            let d = conn.read_datagram().await.unwrap();
            conn.send_datagram(d).unwrap();
            conn.closed().await;
        });

        let me = Identity::generate();
        let socket = TcpTunnelSocket::new(&me).unwrap();
        let endpoint =
            crate::endpoint::make_endpoint_with(socket as StdArc<dyn AsyncUdpSocket>, &me, &[])
                .unwrap();
        let (conn, peer) = dial(&endpoint, &me, quic, b"t/1", None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(peer, server_id.peer_id());
        conn.send_datagram(Bytes::from_static(b"ping")).unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), conn.read_datagram())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back[..], b"ping");
    }
}
