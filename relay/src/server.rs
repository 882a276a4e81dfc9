//! The relay server: accepts legs on one QUIC endpoint, answers their join and load
//! streams, forwards their datagrams through the switch (`switch.rs`), and runs the timers.
//! [`start`] is what `main` and tests call.

use crate::dataplane::DataPlane;
use crate::endpoint::relay_endpoint;
use crate::report;
use crate::switch::{Admitted, Switch};
use anyhow::{bail, Context, Result};
use parley_net::tcp_tunnel::TunnelPeers;
use parley_net::{peer_id_of, read_frame, NetError};
use parley_proto::codec::WireMessage;
use parley_proto::relay::channel::{ChannelKey, EXPORTER_LABEL, KEY_LEN};
use parley_proto::relay::messages::{ClientToRelay, RelayToClient};
use parley_proto::relay::{
    ChannelGrant, JoinLimiter, LegId, LoadCounts, RelayConfig, RelayCore, RelayLoad, RelayRefusal,
    RelayRefusalCode, RelayStats,
};
use parley_proto::{Identity, PeerId};
use quinn::{Connection, Endpoint, Incoming};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A connection that has not joined a call this long after its handshake is closed:
/// it holds relay resources without a token.
pub const JOIN_WINDOW: Duration = Duration::from_secs(10);
/// How long a client may take to send its request on a stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the relay logs its counters.
const STATS_INTERVAL: Duration = Duration::from_secs(60);

/// QUIC application close codes the relay uses besides [`CloseReason::code`].
///
/// [`CloseReason::code`]: parley_proto::relay::CloseReason::code
pub mod close_code {
    /// The relay is shutting down.
    pub const SHUTDOWN: u32 = 0;
    /// The connection did not join a call within [`super::JOIN_WINDOW`].
    pub const NO_JOIN: u32 = 0x100;
}

/// Where a running relay can be reached, and a window on its counters.
#[derive(Clone)]
pub struct Bound {
    /// The relay's identity.
    pub id: PeerId,
    /// The UDP address it serves QUIC on.
    pub quic: SocketAddr,
    /// The UDP address of its data plane (media channels).
    pub data: SocketAddr,
    switch: Arc<Switch>,
    plane: Arc<DataPlane>,
}

impl Bound {
    /// Forwarded and dropped datagrams (by reason) and closed legs since start, over
    /// QUIC legs and the data plane (whose counters lag by up to 100 ms).
    pub fn stats(&self) -> RelayStats {
        let mut stats = self.switch.stats();
        stats.merge(&self.plane.stats());
        stats
    }

    /// Calls and legs right now.
    pub fn load(&self) -> LoadCounts {
        self.switch.load()
    }
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("id", &self.id)
            .field("quic", &self.quic)
            .finish()
    }
}

/// What a relay needs to start.
#[derive(Clone, Debug)]
pub struct RelayParams {
    /// The relay's identity (tokens name it; legs pin it).
    pub identity: Identity,
    /// UDP address to serve QUIC on.
    pub listen: SocketAddr,
    /// Supernodes whose tokens are accepted.
    pub trusted: Vec<PeerId>,
    /// Limits.
    pub config: RelayConfig,
    /// Supernodes (`HOST:PORT`) to report load to every few seconds.
    pub supernodes: Vec<String>,
    /// The address to advertise in load reports, when it is not the bound one (NAT,
    /// or bound to 0.0.0.0).
    pub advertise: Option<SocketAddr>,
    /// The bound TCP fallback (QUIC over TCP), advertised in load reports so that
    /// supernodes hand it to clients whose UDP is blocked; `None`: no fallback.
    pub tcp: Option<SocketAddr>,
    /// UDP address of the data plane; `None`: the QUIC address's IP, an ephemeral port.
    pub data_listen: Option<SocketAddr>,
    /// Data-plane threads (one socket each); 0: one per available core.
    pub data_threads: usize,
    /// Joins per second per client IP; 0: [`JoinLimiter::DEFAULT_PER_SEC`].
    pub max_joins_per_ip: u32,
    /// The wall clock, read only for tokens' signed expiry; `None`: the system's.
    /// (Tests step it to show that no timer follows it.)
    pub wall_clock: Option<fn() -> parley_proto::Timestamp>,
    /// Which client each TCP tunnel carries: tunnelled legs reach QUIC from loopback,
    /// and the per-IP join rate counts them by the tunnel's TCP peer instead. Give the
    /// same value to the tunnel's server ([`parley_net::tcp_tunnel::TunnelListener::serve`]).
    pub tunnel_peers: TunnelPeers,
}

impl RelayParams {
    /// A relay with `identity` on `listen`, accepting tokens of `trusted`, with limits
    /// `config`: reporting to no supernode, no TCP fallback, the data plane on the QUIC
    /// address's IP (one thread per core), the default join rate, the system clock.
    /// Set the other fields with struct update syntax.
    pub fn new(
        identity: Identity,
        listen: SocketAddr,
        trusted: Vec<PeerId>,
        config: RelayConfig,
    ) -> RelayParams {
        RelayParams {
            identity,
            listen,
            trusted,
            config,
            supernodes: Vec::new(),
            advertise: None,
            tcp: None,
            data_listen: None,
            data_threads: 0,
            max_joins_per_ip: 0,
            wall_clock: None,
            tunnel_peers: TunnelPeers::default(),
        }
    }
}

struct Ctx {
    me: PeerId,
    advertised: SocketAddr,
    advertised_tcp: Option<SocketAddr>,
    switch: Arc<Switch>,
    data_port: u16,
    tunnel_peers: TunnelPeers,
}

impl Ctx {
    fn load(&self) -> RelayLoad {
        let counts = self.switch.load();
        RelayLoad {
            relay: self.me,
            listen: self.advertised,
            calls: counts.calls,
            legs: counts.legs,
            max_legs: counts.max_legs,
            tcp: self.advertised_tcp,
        }
    }
}

/// Binds the socket and returns a future that serves until `shutdown` turns true (or
/// its sender is dropped: keep it alive for as long as the relay should run).
pub async fn start(
    params: RelayParams,
    shutdown: watch::Receiver<bool>,
) -> Result<(Bound, impl std::future::Future<Output = ()>)> {
    if params.trusted.is_empty() {
        bail!("the relay trusts no supernode, so it would admit no call: pass --trust KEY");
    }
    let endpoint = relay_endpoint(params.listen, &params.identity)?;
    let quic = endpoint
        .local_addr()
        .context("reading the bound QUIC address")?;
    let id = params.identity.peer_id();
    let now = Instant::now();
    let core = RelayCore::new(id, params.trusted.clone(), params.config.clone(), now);
    let per_ip = match params.max_joins_per_ip {
        0 => JoinLimiter::DEFAULT_PER_SEC,
        n => n,
    };
    let joins = JoinLimiter::new(per_ip, JoinLimiter::DEFAULT_MAX_IPS, now);
    let wall = params.wall_clock.unwrap_or(parley_net::clock::now);
    let switch = Arc::new(Switch::new(core, joins, wall));
    let threads = match params.data_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let data_bind = params
        .data_listen
        .unwrap_or_else(|| SocketAddr::new(quic.ip(), 0));
    let plane = DataPlane::start(data_bind, threads, switch.channels(), switch.clone())
        .with_context(|| format!("binding the data port {data_bind}"))?;
    switch.channels().set_own_addrs(vec![plane.addr, quic]);
    let _ = switch.data_sender.set(plane.sender.try_clone()?);
    let plane = Arc::new(plane);
    let ctx = Arc::new(Ctx {
        me: id,
        advertised: params.advertise.unwrap_or(quic),
        // A TCP port bound on every IP is on the advertised IP when one is set, else
        // on the IP reports come from (the supernode resolves an unspecified IP).
        advertised_tcp: params.tcp.map(|t| match params.advertise {
            Some(a) if t.ip().is_unspecified() && !a.ip().is_unspecified() => {
                SocketAddr::new(a.ip(), t.port())
            }
            _ => t,
        }),
        switch,
        data_port: plane.addr.port(),
        tunnel_peers: params.tunnel_peers.clone(),
    });
    let bound = Bound {
        id,
        quic,
        data: plane.addr,
        switch: ctx.switch.clone(),
        plane: plane.clone(),
    };

    let serve = async move {
        tokio::spawn(run_timers(ctx.switch.clone(), shutdown.clone()));
        for target in params.supernodes {
            let reporter = report::Reporter {
                endpoint: endpoint.clone(),
                identity: params.identity.clone(),
                trusted: params.trusted.clone(),
                target,
            };
            let ctx = ctx.clone();
            tokio::spawn(reporter.run(move || ctx.load(), shutdown.clone()));
        }
        accept_loop(&endpoint, &ctx, shutdown).await;
        plane.stop();
        tracing::info!(stats = %ctx.switch.stats(), data = %plane.stats(), "relay stopping");
        endpoint.close(close_code::SHUTDOWN.into(), b"relay shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    };
    Ok((bound, serve))
}

async fn accept_loop(endpoint: &Endpoint, ctx: &Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let next_leg = AtomicU64::new(1);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { return };
                let leg = LegId(next_leg.fetch_add(1, Ordering::Relaxed));
                tokio::spawn(serve_connection(incoming, leg, ctx.clone()));
            }
        }
    }
}

async fn serve_connection(incoming: Incoming, leg: LegId, ctx: Arc<Ctx>) {
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
    };
    let peer = match peer_id_of(&conn) {
        Ok(peer) => peer,
        Err(e) => {
            tracing::debug!(error = %e, "connection without an identity");
            return;
        }
    };
    tracing::debug!(%leg, peer = %conn.remote_address(), id = %peer.short(), "connection accepted");
    ctx.switch.register(leg, conn.clone());
    // Datagrams get a task of their own so the hot path is polled for nothing else.
    let datagrams = tokio::spawn(forward_datagrams(conn.clone(), leg, ctx.switch.clone()));
    let watchdog = async {
        tokio::time::sleep(JOIN_WINDOW).await;
        if !ctx.switch.is_joined(leg) {
            tracing::debug!(%leg, "no join in time; closing");
            conn.close(
                close_code::NO_JOIN.into(),
                b"no valid Join within the join window",
            );
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = serve_streams(&conn, leg, peer, &ctx) => {}
        _ = watchdog => {}
    }
    let _ = datagrams.await;
    ctx.switch.closed(leg);
    tracing::debug!(%leg, reason = %conn.close_reason().map(|e| e.to_string()).unwrap_or_default(), "leg closed");
}

/// One task per leg: read a datagram, ask the switch, repeat until the connection ends.
async fn forward_datagrams(conn: Connection, leg: LegId, switch: Arc<Switch>) {
    while let Ok(datagram) = conn.read_datagram().await {
        switch.forward(leg, datagram);
    }
}

async fn serve_streams(conn: &Connection, leg: LegId, peer: PeerId, ctx: &Arc<Ctx>) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        let ctx = ctx.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_stream(send, recv, &conn, leg, peer, &ctx).await {
                tracing::debug!(%leg, error = %e, "relay stream failed");
            }
        });
    }
}

async fn write(send: &mut quinn::SendStream, msg: &RelayToClient) -> Result<(), NetError> {
    send.write_all(&msg.encode_frame()).await?;
    Ok(())
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    conn: &Connection,
    leg: LegId,
    peer: PeerId,
    ctx: &Ctx,
) -> Result<(), NetError> {
    let request =
        match tokio::time::timeout(REQUEST_TIMEOUT, read_frame::<ClientToRelay>(&mut recv)).await {
            Err(_) => return Err(NetError::Timeout(REQUEST_TIMEOUT)),
            Ok(Err(NetError::Decode(e))) => {
                tracing::info!(%leg, id = %peer.short(), error = %e, "unreadable relay request");
                ctx.switch.count_refused(RelayRefusalCode::NoToken);
                let refusal = RelayRefusal::new(
                    RelayRefusalCode::NoToken,
                    format!("expected a Join request carrying a relay token: {e}"),
                );
                write(&mut send, &RelayToClient::Refused(refusal)).await?;
                send.finish()?;
                return Ok(());
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(request)) => request,
        };
    let token = match request {
        ClientToRelay::LoadQuery => {
            write(&mut send, &RelayToClient::Load(ctx.load())).await?;
            send.finish()?;
            return Ok(());
        }
        ClientToRelay::Join(token) => token,
    };
    let call = token.token.call_id;
    let mut key = [0u8; KEY_LEN];
    let key = conn
        .export_keying_material(&mut key, EXPORTER_LABEL, b"")
        .ok()
        .map(|()| ChannelKey(key));
    // A tunnelled leg is counted by its client's own IP, not the tunnel's loopback one.
    let ip = ctx.tunnel_peers.real(conn.remote_address()).ip();
    let Admitted {
        paired,
        wait,
        channel,
    } = match ctx.switch.join(leg, peer, ip, &token, key) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(%leg, %call, id = %peer.short(), code = ?refusal.code, why = %refusal.message, "join refused");
            write(&mut send, &RelayToClient::Refused(refusal)).await?;
            send.finish()?;
            return Ok(());
        }
    };
    tracing::info!(%leg, %call, id = %peer.short(), paired, "leg joined");
    let channel = channel.map(|channel| ChannelGrant {
        channel,
        port: ctx.data_port,
    });
    write(&mut send, &RelayToClient::Joined { paired, channel }).await?;
    if let Some(wait) = wait {
        // The stream stays open until the partner arrives, so the client learns at once.
        tokio::select! {
            arrived = wait => {
                if arrived.is_ok() {
                    tracing::info!(%leg, %call, "legs paired");
                    write(&mut send, &RelayToClient::Paired).await?;
                }
            }
            _ = conn.closed() => return Ok(()),
        }
    }
    send.finish()?;
    Ok(())
}

/// Closes legs when the core's deadlines pass, and logs the counters now and then.
async fn run_timers(switch: Arc<Switch>, mut shutdown: watch::Receiver<bool>) {
    let mut last_log = tokio::time::Instant::now();
    loop {
        let (closing, next) = switch.expire();
        for (leg, conn, why) in closing {
            tracing::info!(%leg, reason = %why, "closing leg");
            conn.close(why.code().into(), why.message().as_bytes());
        }
        if last_log.elapsed() >= STATS_INTERVAL {
            last_log = tokio::time::Instant::now();
            let load = switch.load();
            tracing::info!(calls = load.calls, legs = load.legs, stats = %switch.stats(), "relay stats");
        }
        // Wake at the next deadline, but at least every STATS_INTERVAL, and at once
        // when a join or close may have brought a deadline forward.
        // Monotonic time (issue 11, item 6): a wall-clock step moves no deadline. The
        // core counts in milliseconds: one more keeps a wake-up from landing just
        // before the deadline it was for.
        let sleep = next.map_or(STATS_INTERVAL, |at| {
            (at.saturating_duration_since(Instant::now()) + Duration::from_millis(1))
                .min(STATS_INTERVAL)
        });
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(sleep) => {}
            _ = switch.timers_changed.notified() => {}
        }
    }
}
