//! Establishing the media paths of a call: a direct QUIC connection between the two
//! clients, and legs through every granted relay. The media engine then chooses among
//! them (`parley_proto::media::paths`).

use super::media_paths::PathKind;
use super::PathPolicy;
use bytes::Bytes;
use parley_net::{dial, NetError};
use parley_proto::call::signal::RelayGrant;
use parley_proto::call::ALPN_CALL;
use parley_proto::presence::CandidateAddr;
use parley_proto::{Identity, PeerId};
use parley_relay::MediaLeg;
use quinn::{Connection, ConnectionError, Endpoint};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How long a direct dial to one candidate may take.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long after the call starts a failed direct dial is tried again.
const DIRECT_RETRY_WINDOW: Duration = Duration::from_secs(10);
/// The pause before dialing again (a peer without candidates fails at once).
const DIRECT_RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long joining a relay over UDP may take (QUIC handshake and the join exchange).
/// Longer than a direct dial: the relay is the path of last resort, and on a lossy
/// link a lost Initial costs the 1 s probe timeout, then 2 s more (RFC 9002 §6.2), so
/// a 3 s limit failed a join now and then at 5 % loss (CI, the NAT matrix). Kept under the media
/// engine's 8 s set-up timeout (`SETUP_TIMEOUT`), which ends a call with no path.
const RELAY_UDP_TIMEOUT: Duration = Duration::from_secs(6);
/// How long to wait for the other party to join the relay.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a relay leg that was up and got lost (not closed by either end) is
/// rejoined with its grant before the path is given up (issue 11, item 10).
const REJOINS: u32 = 3;

/// A path came up or went down.
pub enum PathEvent {
    Up(PathKind, PathConn),
    Failed(PathKind, String),
}

/// What a path sends on: a direct QUIC connection, or a relay leg (its media channel,
/// or QUIC datagrams when it has none).
#[derive(Clone, Debug)]
pub enum PathConn {
    Direct(Connection),
    Relay(Arc<MediaLeg>),
}

impl PathConn {
    fn conn(&self) -> &Connection {
        match self {
            PathConn::Direct(c) => c,
            PathConn::Relay(leg) => &leg.conn,
        }
    }

    /// Sends one datagram (never blocks; a full buffer drops it).
    pub fn send_datagram(&self, datagram: Bytes) -> Result<(), String> {
        match self {
            PathConn::Direct(c) => c.send_datagram(datagram).map_err(|e| e.to_string()),
            PathConn::Relay(leg) => leg.send_datagram(datagram).map_err(|e| e.to_string()),
        }
    }

    /// The next datagram from the peer on this path.
    pub async fn read_datagram(&self) -> Result<Bytes, ConnectionError> {
        match self {
            PathConn::Direct(c) => c.read_datagram().await,
            PathConn::Relay(leg) => leg.read_datagram().await,
        }
    }

    /// Why the path's connection closed, if it did.
    pub fn close_reason(&self) -> Option<ConnectionError> {
        self.conn().close_reason()
    }

    /// Tells this path's connection from another of the same kind (QUIC's stable id).
    pub fn id(&self) -> usize {
        self.conn().stable_id()
    }

    /// Round-trip time of the QUIC connection (to the peer, or to the relay).
    pub fn rtt(&self) -> Duration {
        self.conn().rtt()
    }

    /// Closes the path.
    pub fn close(&self, code: quinn::VarInt, reason: &[u8]) {
        self.conn().close(code, reason)
    }
}

/// What establishing the paths needs.
pub struct PathSetup {
    pub endpoint: Endpoint,
    pub identity: Identity,
    pub peer: PeerId,
    pub peer_candidates: Vec<CandidateAddr>,
    /// Relays granted for the call, preferred first; every one is joined.
    pub relays: Vec<RelayGrant>,
    pub policy: PathPolicy,
    /// Our datagrams go through the TCP tunnel (UDP blocked here): relay legs get
    /// longer to come up (TCP retransmits a lost SYN after 1 s, then 3 s) and carry
    /// media inside QUIC (the relay's UDP media channel cannot be reached).
    pub over_tcp: bool,
}

/// How long a relay leg may take to join through the TCP tunnel.
const RELAY_TCP_TIMEOUT: Duration = Duration::from_secs(8);

/// Brings the paths up concurrently, reporting each on `events` as it happens.
///
/// Both parties dial each other's candidates at once, as soon as the call is answered,
/// and each also accepts the other's dial (`direct_in` carries connections our endpoint
/// accepted). Behind NATs the two dials are the hole punch: each side's first packets
/// open its own NAT's mapping towards the other, so the other's (retransmitted) QUIC
/// Initials get through. A dial arriving from an address we did not know (a symmetric
/// NAT's fresh port) is simply accepted: the peer's key, not its address, is checked.
///
/// Returns the paths tried: each reports `Up` or `Failed` at least once (a relay-or-any
/// call with no relay granted reports that as one failed relay path), so the media
/// engine knows when every one has failed.
pub fn establish(
    setup: PathSetup,
    direct_in: mpsc::Receiver<(PeerId, Connection)>,
    events: mpsc::Sender<PathEvent>,
) -> Vec<PathKind> {
    let mut tried = Vec::new();
    if setup.policy != PathPolicy::DirectOnly {
        if setup.relays.is_empty() {
            // Through the media engine like any path failure, so a call left with no
            // path at all names this as its reason.
            let failed = PathEvent::Failed(PathKind::Relay(0), super::media::NO_RELAY.into());
            let _ = events.try_send(failed);
            tried.push(PathKind::Relay(0));
        }
        tried.extend((0..setup.relays.len()).map(|i| PathKind::Relay(i as u8)));
        // The primary and the standby relay alike: a relay's death then costs no set-up.
        for (i, grant) in setup.relays.iter().enumerate() {
            let (endpoint, identity, events, grant) = (
                setup.endpoint.clone(),
                setup.identity.clone(),
                events.clone(),
                grant.clone(),
            );
            let over_tcp = setup.over_tcp;
            let kind = PathKind::Relay(i as u8);
            tokio::spawn(async move {
                let mut rejoins = 0;
                loop {
                    let leg = match join(&endpoint, &identity, &grant, over_tcp).await {
                        Ok(leg) => Arc::new(leg),
                        Err(e) if rejoins == 0 => {
                            let _ = events.send(PathEvent::Failed(kind, e)).await;
                            return;
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "relay leg could not rejoin");
                            return;
                        }
                    };
                    let conn = leg.conn.clone();
                    if events
                        .send(PathEvent::Up(kind, PathConn::Relay(leg)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // A leg lost to the network (not closed by us or by the relay) is
                    // joined again with the same grant: the relay takes it back into
                    // the call even once the token has expired.
                    let why = conn.closed().await;
                    let lost = matches!(why, ConnectionError::TimedOut | ConnectionError::Reset);
                    rejoins += 1;
                    if !lost || rejoins > REJOINS || events.is_closed() {
                        return;
                    }
                    tracing::info!(reason = %why, "relay leg lost; rejoining");
                }
            });
        }
    }
    if setup.policy == PathPolicy::RelayOnly {
        return tried;
    }
    tokio::spawn(direct_path(setup, direct_in, events));
    tried.push(PathKind::Direct);
    tried
}

/// Dials the peer and takes its dial; reports the first connection either way, and a
/// failure only when neither worked in time. Later connections (a second punch
/// succeeding) are reported too: `MediaPaths` keeps every open one and sends on the one
/// the peer was last heard on.
async fn direct_path(
    setup: PathSetup,
    mut direct_in: mpsc::Receiver<(PeerId, Connection)>,
    events: mpsc::Sender<PathEvent>,
) {
    // Diagnostics: `PARLEY_DIRECT_DELAY_MS` holds the direct path back, so that a call
    // starts on the relay and its upgrade to direct can be watched (docs/user-guide.md).
    if let Some(ms) = std::env::var("PARLEY_DIRECT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let peer = setup.peer;
    let started = tokio::time::Instant::now();
    let mut dial = Box::pin(dial_direct_after(&setup, Duration::ZERO));
    let give_up = tokio::time::sleep(DIRECT_TIMEOUT + Duration::from_secs(1));
    tokio::pin!(give_up);
    // `settled`: a path is up, or its failure has been reported.
    let (mut dialing, mut settled, mut failure) = (true, false, None);
    loop {
        tokio::select! {
            result = &mut dial, if dialing => {
                dialing = false;
                match result {
                    Ok(conn) => {
                        settled = true;
                        let _ = events.send(PathEvent::Up(PathKind::Direct, PathConn::Direct(conn))).await;
                    }
                    // A lossy link can lose a handshake's every retransmission within
                    // one dial's 3 s: dial again (a fresh punch) while the call is young,
                    // so a call that fell back to the relay still moves to the direct path.
                    Err(e) if started.elapsed() + DIRECT_RETRY_PAUSE + DIRECT_TIMEOUT <= DIRECT_RETRY_WINDOW => {
                        tracing::debug!(error = %e, "direct dial failed; dialing again");
                        failure = Some(e);
                        dial = Box::pin(dial_direct_after(&setup, DIRECT_RETRY_PAUSE));
                        dialing = true;
                    }
                    Err(e) => failure = Some(e),
                }
            }
            accepted = direct_in.recv() => match accepted {
                Some((from, conn)) if from == peer => {
                    settled = true;
                    let _ = events.send(PathEvent::Up(PathKind::Direct, PathConn::Direct(conn))).await;
                }
                Some((_, conn)) => conn.close(1u32.into(), b"not in a call with you"),
                None => return,
            },
            _ = &mut give_up, if !settled && failure.is_some() => {
                let why = failure.take().unwrap_or_else(|| "no direct path".into());
                let _ = events.send(PathEvent::Failed(PathKind::Direct, why)).await;
                // Reported; a late punch is still taken.
                settled = true;
            }
        }
        if events.is_closed() {
            return;
        }
    }
}

/// Joins the relay of `grant`, waits for the partner, then proves the media channel
/// (or settles for QUIC datagrams).
async fn join(
    endpoint: &Endpoint,
    identity: &Identity,
    grant: &RelayGrant,
    over_tcp: bool,
) -> Result<MediaLeg, String> {
    let timeout = if over_tcp {
        RELAY_TCP_TIMEOUT
    } else {
        RELAY_UDP_TIMEOUT
    };
    let mut leg = parley_relay::join_relay(endpoint, identity, grant.relay, &grant.token, timeout)
        .await
        .map_err(|e| format!("relay {}: {e}", grant.relay.addr))?;
    leg.wait_paired(PAIR_TIMEOUT)
        .await
        .map_err(|e| format!("relay {}: {e}", grant.relay.addr))?;
    if over_tcp {
        return Ok(MediaLeg::inside_quic(leg));
    }
    Ok(MediaLeg::open(leg).await)
}

/// [`dial_direct`] after `pause`.
async fn dial_direct_after(setup: &PathSetup, pause: Duration) -> Result<Connection, String> {
    tokio::time::sleep(pause).await;
    dial_direct(setup).await
}

/// Dials every candidate of the peer at once; the first to answer with the peer's key wins.
async fn dial_direct(setup: &PathSetup) -> Result<Connection, String> {
    let mut tries = JoinSet::new();
    let mut seen = Vec::new();
    for c in &setup.peer_candidates {
        if seen.contains(&c.addr) {
            continue;
        }
        seen.push(c.addr);
        let (endpoint, identity, peer, addr) = (
            setup.endpoint.clone(),
            setup.identity.clone(),
            setup.peer,
            c.addr,
        );
        tries.spawn(async move {
            dial(
                &endpoint,
                &identity,
                addr,
                ALPN_CALL,
                Some(peer),
                DIRECT_TIMEOUT,
            )
            .await
            .map(|(conn, _)| conn)
        });
    }
    let mut last: Option<NetError> = None;
    while let Some(result) = tries.join_next().await {
        match result {
            Ok(Ok(conn)) => {
                tries.abort_all();
                return Ok(conn);
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => {}
        }
    }
    Err(match last {
        Some(e) => format!("no direct path: {e}"),
        None => "no direct path: the peer gave no candidate addresses".into(),
    })
}
