//! The media paths of a call: a direct QUIC connection between the two clients and/or a
//! leg through the relay. Both are QUIC connections carrying the same sealed datagrams,
//! so the media loop sees one [`MediaPaths`] and never which path a byte took.

use super::PathPolicy;
use crate::output::Printer;
use parley_net::{dial, NetError};
use parley_proto::call::signal::RelayGrant;
use parley_proto::call::ALPN_CALL;
use parley_proto::presence::CandidateAddr;
use parley_proto::{Identity, PeerId};
use quinn::{Connection, Endpoint};
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How long a direct dial to one candidate may take.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait for the other party to join the relay.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// Which path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    Direct,
    Relay,
}

impl PathKind {
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Relay => "relay",
        }
    }
}

/// A path came up or went down.
pub enum PathEvent {
    Up(PathKind, Connection),
    Failed(PathKind, String),
}

/// The live paths; sends go on the preferred one.
#[derive(Default)]
pub struct MediaPaths {
    direct: Option<Connection>,
    relay: Option<Connection>,
}

impl MediaPaths {
    pub fn add(&mut self, kind: PathKind, conn: Connection) {
        match kind {
            PathKind::Direct => self.direct = Some(conn),
            PathKind::Relay => self.relay = Some(conn),
        }
    }

    /// The path sends use now: direct when it is alive, else the relay.
    pub fn current(&self) -> Option<(PathKind, &Connection)> {
        let alive = |c: &&Connection| c.close_reason().is_none();
        self.direct
            .as_ref()
            .filter(alive)
            .map(|c| (PathKind::Direct, c))
            .or_else(|| {
                self.relay
                    .as_ref()
                    .filter(alive)
                    .map(|c| (PathKind::Relay, c))
            })
    }

    /// Sends one datagram on the current path; false when there is none or it is full.
    pub fn send(&self, datagram: Vec<u8>) -> bool {
        match self.current() {
            Some((_, conn)) => conn.send_datagram(datagram.into()).is_ok(),
            None => false,
        }
    }

    /// Round-trip time of the current path's QUIC connection (to the peer, or to the relay).
    pub fn transport_rtt(&self) -> Option<Duration> {
        self.current().map(|(_, c)| c.rtt())
    }

    pub fn close_all(&self, reason: &[u8]) {
        for c in self.direct.iter().chain(self.relay.iter()) {
            c.close(0u32.into(), reason);
        }
    }
}

/// Forwards every datagram received on `conn` into `tx`, tagged with its path.
pub fn read_datagrams(
    kind: PathKind,
    conn: Connection,
    tx: mpsc::Sender<(PathKind, bytes::Bytes)>,
) {
    tokio::spawn(async move {
        while let Ok(d) = conn.read_datagram().await {
            if tx.send((kind, d)).await.is_err() {
                return;
            }
        }
    });
}

/// What establishing the paths needs.
pub struct PathSetup {
    pub endpoint: Endpoint,
    pub identity: Identity,
    pub peer: PeerId,
    pub peer_candidates: Vec<CandidateAddr>,
    pub relay: Option<RelayGrant>,
    pub policy: PathPolicy,
    pub out: Printer,
}

/// Brings the paths up concurrently, reporting each on `events` as it happens.
///
/// Both parties dial each other's candidates at once, as soon as the call is answered,
/// and each also accepts the other's dial (`direct_in` carries connections our endpoint
/// accepted). Behind NATs the two dials are the hole punch: each side's first packets
/// open its own NAT's mapping towards the other, so the other's (retransmitted) QUIC
/// Initials get through. A dial arriving from an address we did not know (a symmetric
/// NAT's fresh port) is simply accepted: the peer's key, not its address, is checked.
pub fn establish(
    setup: PathSetup,
    direct_in: mpsc::Receiver<(PeerId, Connection)>,
    events: mpsc::Sender<PathEvent>,
) {
    if setup.policy != PathPolicy::DirectOnly {
        match setup.relay.clone() {
            Some(grant) => {
                let (endpoint, identity, events) = (
                    setup.endpoint.clone(),
                    setup.identity.clone(),
                    events.clone(),
                );
                tokio::spawn(async move {
                    let event = match join(&endpoint, &identity, &grant).await {
                        Ok(conn) => PathEvent::Up(PathKind::Relay, conn),
                        Err(e) => PathEvent::Failed(PathKind::Relay, e),
                    };
                    let _ = events.send(event).await;
                });
            }
            None => {
                setup.out.event(
                    "path_failed",
                    json!({"path": "relay", "error": "no relay was granted"}),
                    "no relay is available for this call",
                );
            }
        }
    }
    if setup.policy == PathPolicy::RelayOnly {
        return;
    }
    tokio::spawn(direct_path(setup, direct_in, events));
}

/// Dials the peer and takes its dial; reports the first connection either way, and a
/// failure only when neither worked in time. Later connections (a second punch
/// succeeding) replace the first.
async fn direct_path(
    setup: PathSetup,
    mut direct_in: mpsc::Receiver<(PeerId, Connection)>,
    events: mpsc::Sender<PathEvent>,
) {
    let peer = setup.peer;
    let dial = dial_direct(&setup);
    tokio::pin!(dial);
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
                        let _ = events.send(PathEvent::Up(PathKind::Direct, conn)).await;
                    }
                    Err(e) => failure = Some(e),
                }
            }
            accepted = direct_in.recv() => match accepted {
                Some((from, conn)) if from == peer => {
                    settled = true;
                    let _ = events.send(PathEvent::Up(PathKind::Direct, conn)).await;
                }
                Some((_, conn)) => conn.close(1u32.into(), b"not in a call with you"),
                None => return,
            },
            _ = &mut give_up, if !settled && !dialing => {
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

async fn join(
    endpoint: &Endpoint,
    identity: &Identity,
    grant: &RelayGrant,
) -> Result<Connection, String> {
    let mut leg = parley_relay::join_relay(
        endpoint,
        identity,
        grant.relay,
        &grant.token,
        DIRECT_TIMEOUT,
    )
    .await
    .map_err(|e| format!("relay {}: {e}", grant.relay.addr))?;
    leg.wait_paired(PAIR_TIMEOUT)
        .await
        .map_err(|e| format!("relay {}: {e}", grant.relay.addr))?;
    Ok(leg.conn)
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
