//! The supernode server: accepts clients and supernodes on one QUIC endpoint and
//! answers STUN on a second UDP port. `run` is what `main` and tests call.

use crate::calls::{Attachments, CallRouter};
use crate::driver::{self, DriverHandle};
use crate::limits::Limits;
use crate::pool::Pool;
use crate::reach::Reach;
use crate::relay_watch::{poll_relay, serve_reports};
use crate::relays::RelayDirectory;
use crate::upload::Upload;
use anyhow::{Context, Result};
use parley_net::canonical;
use parley_net::limits::{ConnLimiter, ConnPermit};
use parley_net::tcp_tunnel::TunnelPeers;
use parley_net::{
    envelope_kind, make_endpoint_on, peer_id_of, read_raw_frame_within, write_frame, NetError,
};
use parley_proto::call::signal::CallSignal;
use parley_proto::codec::WireMessage;
use parley_proto::messages::{
    ClientToSupernode, Refusal, RefusalCode, ServerEndpoints, SupernodeReply, SupernodeToClient,
    SupernodeToSupernode, ALPN_CLIENT, ALPN_OVERLAY, MAX_CONTACTS,
};
use parley_proto::overlay::{Overlay, OverlayConfig};
use parley_proto::presence::Contact;
use parley_proto::reach::{DialBack, ProbeOrder, ProbeReply};
use parley_proto::relay::ALPN_RELAY_REPORT;
use parley_proto::upload::{UploadLimits, UploadProbe};
use parley_proto::{Identity, NodeId, PeerId};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, TransportConfig, VarInt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::lookup_host;
use tokio::sync::watch;

/// Where a running supernode can be reached.
#[derive(Clone, Debug)]
pub struct Bound {
    pub id: PeerId,
    pub quic: SocketAddr,
    pub stun: SocketAddr,
    /// The second STUN port (RFC 5780 change-port), on `stun`'s IP.
    pub stun_alternate: Option<SocketAddr>,
    /// Its overlay position (BEP 42, [`Contact::node_id`]): its key at its public IP
    /// (`--public-ip`, else the QUIC address's), as other supernodes compute it.
    pub position: NodeId,
    conns: Conns,
}

impl Bound {
    /// Live QUIC connections (clients, supernodes, relays reporting) and the cap on them
    /// (`Limits::conns_total`).
    pub fn connections(&self) -> (usize, usize) {
        (
            self.conns.0.live(std::net::Ipv4Addr::UNSPECIFIED.into()).0,
            self.conns.1,
        )
    }
}

/// The server's connection counter, for [`Bound::connections`].
#[derive(Clone)]
struct Conns(ConnLimiter, usize);

impl std::fmt::Debug for Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conns")
    }
}

/// What a server needs to start.
pub struct ServerParams {
    pub identity: Identity,
    pub listen: SocketAddr,
    pub stun_listen: SocketAddr,
    /// If `stun_listen` or the default second port cannot be bound (3478 or 3479 taken
    /// by another supernode on this host), bind ephemeral ports on its IP instead, with
    /// a warning: clients use the advertised STUN address, whatever its port.
    pub stun_fallback: bool,
    /// The second STUN port, for RFC 5780 change-port answers (`--stun-alternate-port`;
    /// 0: any free port). `None`: `stun_listen`'s port + 1, any free port when that is 0.
    pub stun_alternate_port: Option<u16>,
    /// A second IP for RFC 5780 change-IP answers (`--stun-alternate-ip`).
    pub stun_alternate_ip: Option<std::net::IpAddr>,
    pub join: Vec<String>,
    /// Relays to poll for load (`--relay`).
    pub relays: Vec<String>,
    /// Keys of relays that may report in (`--relay-key`).
    pub relay_keys: Vec<PeerId>,
    /// The bound TCP fallback (`--tcp-listen`), advertised to clients.
    pub tcp: Option<SocketAddr>,
    /// Which client each TCP tunnel carries: tunnelled connections reach QUIC from
    /// loopback, and are counted (caps, per-IP quotas) by the tunnel's peer instead.
    pub tunnel_peers: TunnelPeers,
    /// Admission caps, timeouts and quotas (see `limits.rs`, docs/security.md).
    pub limits: Limits,
    /// The public IP others reach this supernode at, if `listen`'s is a wildcard or
    /// a private address behind a port forward: its overlay position is computed
    /// from it (BEP 42, `parley_proto::overlay::position`), as the others compute it.
    pub public_ip: Option<std::net::IpAddr>,
}

impl ServerParams {
    /// A supernode with `identity` serving QUIC on `listen` and STUN on `stun_listen`,
    /// and nothing else: no join, no relays, no TCP fallback, default limits, no STUN
    /// fallback port. Set the other fields with struct update syntax.
    pub fn new(identity: Identity, listen: SocketAddr, stun_listen: SocketAddr) -> ServerParams {
        ServerParams {
            identity,
            listen,
            stun_listen,
            stun_fallback: false,
            stun_alternate_port: None,
            stun_alternate_ip: None,
            join: Vec::new(),
            relays: Vec::new(),
            relay_keys: Vec::new(),
            tcp: None,
            tunnel_peers: TunnelPeers::default(),
            limits: Limits::default(),
            public_ip: None,
        }
    }
}

/// Binds the sockets and returns a future that serves until `shutdown` turns true.
pub async fn start(
    params: ServerParams,
    shutdown: watch::Receiver<bool>,
) -> Result<(Bound, impl std::future::Future<Output = ()>)> {
    let relays = RelayDirectory::new(params.relay_keys.iter().copied());
    start_with(params, relays, shutdown).await
}

/// The QUIC server side with the stream and buffer limits of `limits`.
fn limited_server_config(
    identity: &Identity,
    alpns: &[&[u8]],
    limits: &Limits,
) -> Result<quinn::ServerConfig> {
    let tls = parley_net::tls::server_tls(identity, alpns)?;
    let quic = QuicServerConfig::try_from(tls)?;
    let mut server = quinn::ServerConfig::with_crypto(std::sync::Arc::new(quic));
    let mut t = TransportConfig::default();
    // No keep-alives of our own: the dialer keeps a connection alive (a client's
    // attachment every ~15 s, see `parley_proto::attach::AttachConfig::keep_alive`);
    // ours every 10 s would more than double what an idle client costs (issue 9).
    t.keep_alive_interval(None);
    t.max_idle_timeout(parley_net::endpoint::IDLE_TIMEOUT.try_into().ok());
    t.max_concurrent_bidi_streams(VarInt::from_u32(limits.streams_per_conn));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.stream_receive_window(VarInt::from_u32(limits.stream_window));
    t.receive_window(VarInt::from_u32(limits.conn_window));
    server.transport_config(std::sync::Arc::new(t));
    Ok(server)
}

/// Receive buffer asked for on the QUIC socket (the kernel caps it at
/// `net.core.rmem_max`). Every client's keep-alives and requests arrive on this one
/// socket: with the default (~208 KiB) bursts overflow it and each dropped datagram
/// costs a QUIC retransmission (measured with `supernode-bench`, docs/performance.md).
pub const QUIC_RECV_BUFFER: usize = 8 * 1024 * 1024;

/// The QUIC socket on `listen`, bound as quinn binds it, with a larger receive buffer.
fn bind_quic(listen: SocketAddr) -> Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(listen)
        .with_context(|| format!("cannot bind the QUIC socket {listen}"))?;
    if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(QUIC_RECV_BUFFER) {
        tracing::warn!(error = %e, "cannot enlarge the QUIC socket's receive buffer");
    }
    Ok(socket)
}

/// [`start`] with a given relay directory (tests fill it by hand); `params.relay_keys`
/// is then not used (the directory already says which relays it admits).
pub async fn start_with(
    params: ServerParams,
    relays: RelayDirectory,
    shutdown: watch::Receiver<bool>,
) -> Result<(Bound, impl std::future::Future<Output = ()>)> {
    let alpns = [ALPN_CLIENT, ALPN_OVERLAY, ALPN_RELAY_REPORT];
    let endpoint = make_endpoint_on(bind_quic(params.listen)?, &params.identity, &alpns)?;
    endpoint.set_server_config(Some(limited_server_config(
        &params.identity,
        &alpns,
        &params.limits,
    )?));
    let quic = endpoint
        .local_addr()
        .context("reading the bound QUIC address")?;
    // RFC 5780: a second port, and with --stun-alternate-ip a second IP.
    let stun_sockets = crate::stun_service::bind_with_fallback(
        params.stun_listen,
        params.stun_alternate_ip,
        params.stun_alternate_port,
        params.stun_fallback,
    )
    .await?;
    let stun = stun_sockets.layout.primary;
    let stun_alternate = stun_sockets.layout.addr(crate::stun::Slot::ALL[1]);
    let id = params.identity.peer_id();
    // The overlay's own position, as other supernodes compute it from the address
    // they reach us at (BEP 42): a wildcard or private bound IP places us by the key
    // alone, which is right only on a LAN or loopback.
    let me = Contact {
        id,
        addr: SocketAddr::new(params.public_ip.unwrap_or(quic.ip()), quic.port()),
    };
    if params.public_ip.is_none() && quic.ip().is_unspecified() {
        tracing::warn!("--listen {quic} is a wildcard and no --public-ip was given: the overlay position is this supernode's key alone, while supernodes reaching it at a public IP place it there (BEP 42)");
    }
    let mut overlay = Overlay::new(me, OverlayConfig::default(), driver::now(), rand::random());
    if !params.join.is_empty() {
        // Clients may ask before the join connects: their first requests wait for it.
        overlay.expect_join();
    }
    let limits = params.limits.clone();
    let pool = Pool::new(endpoint.clone(), params.identity.clone(), &limits);
    let driver = driver::spawn(overlay, pool.clone());
    let reach = Reach::new(
        me,
        params.identity.clone(),
        endpoint.clone(),
        pool.clone(),
        driver.clone(),
    );
    let limiter = ConnLimiter::new(limits.conns_per_ip, limits.conns_total);
    let bound = Bound {
        id,
        quic,
        stun,
        stun_alternate,
        position: me.node_id(),
        conns: Conns(limiter.clone(), limits.conns_total),
    };
    if params.relays.is_empty() && relays.is_unconfigured() {
        tracing::info!("no --relay or --relay-key configured: calls get no relay, and relays that report in are refused");
    }
    let ctx = Ctx {
        endpoint: endpoint.clone(),
        me: id,
        endpoints: ServerEndpoints {
            quic: Some(quic),
            tcp: params.tcp,
            stun: Some(stun),
        },
        driver: driver.clone(),
        router: CallRouter::new(
            params.identity.clone(),
            Attachments::default(),
            relays,
            pool.clone(),
            driver,
            &limits,
        ),
        limiter,
        tunnel_peers: params.tunnel_peers.clone(),
        limits,
        reach,
        upload: Upload::new(UploadLimits::default()),
    };

    let serve = async move {
        tokio::spawn(crate::stun_service::serve(
            stun_sockets,
            crate::stun_limit::StunLimits::default(),
            shutdown.clone(),
        ));
        for target in params.join {
            tokio::spawn(join_loop(
                target,
                pool.clone(),
                ctx.driver.clone(),
                shutdown.clone(),
            ));
        }
        for target in params.relays {
            match resolve(&target).await {
                Ok(addr) => {
                    let (e, i, r) = (
                        endpoint.clone(),
                        params.identity.clone(),
                        ctx.router.relays.clone(),
                    );
                    tokio::spawn(poll_relay(addr, e, i, r, shutdown.clone()));
                }
                Err(e) => {
                    tracing::error!(relay = %target, error = %e, "cannot resolve relay address")
                }
            }
        }
        let driver = ctx.driver.clone();
        accept_loop(&endpoint, ctx, shutdown).await;
        hand_over(&driver).await;
        endpoint.close(0u32.into(), b"supernode shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    };
    Ok((bound, serve))
}

/// How long a supernode that stops (shutdown, or a promoted peer's demotion) waits for
/// its records to reach the supernodes that replace it before it closes its
/// connections, which tells attached clients to move.
pub const HAND_OVER_WAIT: Duration = Duration::from_secs(2);

/// Leaves the overlay gracefully: hands over the records we hold
/// (`Overlay::leave`), waiting at most [`HAND_OVER_WAIT`].
async fn hand_over(driver: &DriverHandle) {
    match tokio::time::timeout(HAND_OVER_WAIT, driver.leave()).await {
        Ok(Ok(done)) => tracing::info!(
            records = done.records,
            stored = done.stored,
            "handed records over before stopping"
        ),
        Ok(Err(_)) => {}
        Err(_) => tracing::warn!("record hand-over not finished within {HAND_OVER_WAIT:?}"),
    }
}

/// What every connection handler needs.
#[derive(Clone)]
struct Ctx {
    endpoint: Endpoint,
    me: PeerId,
    /// What Welcome and Endpoints advertise (unspecified IPs: "where you reached me").
    endpoints: ServerEndpoints,
    driver: DriverHandle,
    router: CallRouter,
    limiter: ConnLimiter,
    tunnel_peers: TunnelPeers,
    limits: Limits,
    /// Reachability dial-backs (promotion, issue 10).
    reach: Reach,
    /// Upload probes (a promoted client's default relay budget, issue 10).
    upload: Upload,
}

async fn accept_loop(endpoint: &Endpoint, ctx: Ctx, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { return };
                let from = ctx.tunnel_peers.real(incoming.remote_address());
                let permit = match ctx.limiter.try_acquire(from.ip()) {
                    Ok(p) => p,
                    Err(why) => {
                        tracing::warn!(peer = %from, %why, "connection refused");
                        incoming.refuse();
                        continue;
                    }
                };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(ctx.limits.handshake_timeout, incoming);
                    match handshake.await {
                        Ok(Ok(conn)) => {
                            if let Err(e) = serve_connection(conn, ctx, permit).await {
                                tracing::debug!(error = %e, "connection ended");
                            }
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "handshake failed"),
                        Err(_) => tracing::debug!(peer = %from, "handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Keeps trying to join through `target` until it answers once.
async fn join_loop(
    target: String,
    pool: Pool,
    driver: DriverHandle,
    shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(200);
    while !*shutdown.borrow() {
        match resolve(&target).await {
            Ok(addr) => match pool.connect(addr, None).await {
                Ok(contact) => {
                    tracing::info!(peer = %contact.addr, id = %contact.id.short(), "joined the overlay");
                    let _ = driver.join(contact).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, "cannot reach supernode to join; retrying")
                }
            },
            Err(e) => {
                tracing::warn!(%target, error = %e, "cannot resolve supernode to join; retrying")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

async fn resolve(target: &str) -> Result<SocketAddr> {
    lookup_host(target)
        .await?
        .next()
        .with_context(|| format!("{target} resolves to no address"))
}

fn alpn_of(conn: &Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// Serves one connection; `_permit` holds its admission slot until it ends.
async fn serve_connection(conn: Connection, ctx: Ctx, _permit: ConnPermit) -> Result<(), NetError> {
    let peer = peer_id_of(&conn)?;
    // A tunnelled client is known by its TCP peer address, not the tunnel's loopback socket.
    let contact = Contact {
        id: peer,
        addr: ctx.tunnel_peers.real(conn.remote_address()),
    };
    let alpn = alpn_of(&conn);
    tracing::debug!(peer = %contact.addr, id = %peer.short(), "connection accepted");
    let overlay = match alpn.as_deref() {
        Some(ALPN_OVERLAY) => true,
        Some(ALPN_CLIENT) => false,
        Some(ALPN_RELAY_REPORT) => {
            let (e, i) = (ctx.endpoint.clone(), ctx.router.identity.clone());
            return serve_reports(conn, peer, ctx.router.relays.clone(), e, i).await;
        }
        _ => return Ok(()),
    };
    if !overlay {
        ctx.router.attachments.insert(peer, conn.clone());
        crate::metrics::client_attached(true);
    }
    let result = serve_streams(&conn, contact, overlay, &ctx).await;
    if !overlay {
        ctx.router.attachments.remove(&peer, &conn);
        crate::metrics::client_attached(false);
    }
    result
}

async fn serve_streams(
    conn: &Connection,
    contact: Contact,
    overlay: bool,
    ctx: &Ctx,
) -> Result<(), NetError> {
    loop {
        let (send, recv) = conn.accept_bi().await?;
        let (ctx, conn) = (ctx.clone(), conn.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_stream(send, recv, &conn, contact, overlay, &ctx).await {
                tracing::debug!(peer = %contact.addr, error = %e, "stream failed");
            }
        });
    }
}

/// Dispatches a stream on its first frame's kind: call signalling or a request.
async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    conn: &Connection,
    from: Contact,
    overlay: bool,
    ctx: &Ctx,
) -> Result<(), NetError> {
    let Some(first) = read_raw_frame_within(&mut recv, ctx.limits.request_timeout).await? else {
        return Ok(());
    };
    if envelope_kind(&first) == Some(CallSignal::KIND) {
        return match (CallSignal::decode(&first), overlay) {
            (Ok(CallSignal::Place { offer, via }), false) => {
                crate::metrics::call_placed();
                ctx.router.place(from, send, recv, offer, via).await
            }
            (Ok(CallSignal::Deliver { offer, relays }), true) => {
                ctx.router.deliver(send, recv, offer, relays).await
            }
            (other, _) => {
                tracing::warn!(peer = %from.addr, ?other, "unexpected call signalling frame");
                let why = "unexpected call signalling frame".to_string();
                write_frame(&mut send, &CallSignal::Unreachable(why)).await
            }
        };
    }
    match (envelope_kind(&first), overlay) {
        (Some(UploadProbe::KIND), false) => {
            let seen = conn.remote_address();
            let tunnelled = ctx.tunnel_peers.real(seen) != seen;
            return ctx.upload.serve(from, tunnelled, &first, send, recv).await;
        }
        (Some(DialBack::KIND), false) => {
            let reply = match DialBack::decode(&first) {
                Ok(req) => {
                    let seen = conn.remote_address();
                    let tunnelled = ctx.tunnel_peers.real(seen) != seen;
                    ctx.reach.dial_back(canonical(seen), tunnelled, req).await
                }
                Err(e) => ProbeReply::Refused(malformed(&e)),
            };
            return write_frame(&mut send, &reply).await;
        }
        (Some(ProbeOrder::KIND), true) => {
            let reply = match ProbeOrder::decode(&first) {
                Ok(order) => ctx.reach.probe(order).await,
                Err(e) => ProbeReply::Refused(malformed(&e)),
            };
            return write_frame(&mut send, &reply).await;
        }
        _ => {}
    }
    let within = ctx.limits.reply_timeout;
    if overlay {
        let reply = match SupernodeToSupernode::decode(&first) {
            Ok(request) => {
                match tokio::time::timeout(within, ctx.driver.request(from, request)).await {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(_)) => return Ok(()),
                    Err(_) => return Err(NetError::Timeout(within)),
                }
            }
            Err(e) => {
                tracing::warn!(peer = %from.addr, error = %e, "bad overlay message");
                SupernodeReply::Refused(malformed(&e))
            }
        };
        return write_frame(&mut send, &reply).await;
    }
    let reply = match ClientToSupernode::decode(&first) {
        Ok(request) => {
            let reply = client_reply(request, conn, ctx, from);
            match tokio::time::timeout(within, reply).await {
                Ok(Some(reply)) => reply,
                Ok(None) => return Ok(()),
                Err(_) => return Err(NetError::Timeout(within)),
            }
        }
        Err(e) => {
            tracing::warn!(peer = %from.addr, error = %e, "bad client message");
            SupernodeToClient::Refused(malformed(&e))
        }
    };
    write_frame(&mut send, &reply).await
}

fn malformed(e: &impl std::fmt::Display) -> Refusal {
    Refusal {
        code: RefusalCode::Malformed,
        message: e.to_string(),
    }
}

/// The reply to one client request; `None` when the server is shutting down.
async fn client_reply(
    request: ClientToSupernode,
    conn: &Connection,
    ctx: &Ctx,
    from: Contact,
) -> Option<SupernodeToClient> {
    let driver = &ctx.driver;
    Some(match request {
        ClientToSupernode::Hello => SupernodeToClient::Welcome {
            supernode: ctx.me,
            observed: canonical(conn.remote_address()),
            endpoints: ctx.endpoints,
        },
        ClientToSupernode::Endpoints => SupernodeToClient::Endpoints(ctx.endpoints),
        ClientToSupernode::Publish(record) if record.record.id != from.id => {
            tracing::warn!(peer = %from.addr, "client tried to publish another identity's record");
            SupernodeToClient::Refused(Refusal {
                code: RefusalCode::NotYours,
                message: "a client may only publish its own presence record".into(),
            })
        }
        ClientToSupernode::Publish(record) => match driver.publish(record).await.ok()? {
            Ok(replicas) => SupernodeToClient::Published {
                replicas: replicas.min(u16::MAX as usize) as u16,
            },
            Err(e) => SupernodeToClient::Refused(Refusal::from(&e)),
        },
        ClientToSupernode::Lookup(id) => {
            crate::metrics::lookup();
            match driver.lookup(id).await.ok()? {
                Some(record) => SupernodeToClient::Found(record),
                None => SupernodeToClient::NotFound,
            }
        }
        ClientToSupernode::Supernodes => {
            SupernodeToClient::Supernodes(driver.known(MAX_CONTACTS).await.ok()?)
        }
    })
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
