//! How a supernode learns relays and their load: relays it was told about with
//! `--relay ADDR` are polled (the key met on first contact is pinned), and relays
//! started with `--supernode` report in — accepted only with a key the operator
//! configured (`--relay-key`), and handed out at a reported address only once the
//! supernode has dialed the relay there itself, pinned to that key.

use crate::relays::RelayDirectory;
use parley_net::clock::now;
use parley_net::{dial, read_frame, request, write_frame, NetError};
use parley_proto::presence::Contact;
use parley_proto::relay::messages::{
    ClientToRelay, RelayToClient, RelayToSupernode, SupernodeToRelay,
};
use parley_proto::relay::{RelayLoad, ALPN_RELAY};
use parley_proto::{Identity, PeerId};
use quinn::{Connection, Endpoint};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// How often a configured relay is asked for its load.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(3);

/// Where clients should dial a relay: its reported address, or, if it listens on an
/// unspecified IP, the IP its report came from.
pub fn dial_address(load: &RelayLoad, seen_from: SocketAddr) -> SocketAddr {
    let ip = if load.listen.ip().is_unspecified() {
        seen_from.ip()
    } else {
        load.listen.ip()
    };
    SocketAddr::new(ip.to_canonical(), load.listen.port())
}

/// Polls the relay at `addr` until shutdown, recording its load.
pub async fn poll_relay(
    addr: SocketAddr,
    endpoint: Endpoint,
    identity: Identity,
    relays: RelayDirectory,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<(Connection, PeerId)> = None;
    let mut pinned: Option<PeerId> = None;
    loop {
        if conn
            .as_ref()
            .is_none_or(|(c, _)| c.close_reason().is_some())
        {
            conn = dial(&endpoint, &identity, addr, ALPN_RELAY, pinned, TIMEOUT)
                .await
                .ok();
            if let (None, Some((_, id))) = (pinned, &conn) {
                tracing::info!(relay = %addr, id = %id.short(), "relay key pinned");
                pinned = Some(*id);
                relays.pin(*id);
            }
        }
        if let Some((c, id)) = &conn {
            match request::<_, RelayToClient>(c, &ClientToRelay::LoadQuery, TIMEOUT).await {
                Ok(RelayToClient::Load(load)) if load.relay == *id => {
                    relays.update(now(), Contact { id: *id, addr }, load);
                }
                Ok(other) => {
                    tracing::warn!(relay = %addr, ?other, "unexpected answer to a load query")
                }
                Err(e) => tracing::debug!(relay = %addr, error = %e, "relay load query failed"),
            }
        } else {
            tracing::warn!(relay = %addr, "cannot reach relay; retrying");
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

/// QUIC close code for a reporting relay whose key this supernode was not configured for.
pub const CLOSE_NOT_CONFIGURED: u32 = 0x201;

/// Serves a relay's report connection: each stream carries one report. A relay whose
/// key is not admitted is closed at once; a reported address is used only after
/// [`check_address`] reached the relay there.
pub async fn serve_reports(
    conn: Connection,
    relay: PeerId,
    relays: RelayDirectory,
    endpoint: Endpoint,
    identity: Identity,
) -> Result<(), NetError> {
    if !relays.admits(&relay) {
        let from = conn.remote_address();
        if relays.note_refused(relay, from) {
            if relays.is_unconfigured() {
                tracing::warn!(peer = %from, id = %relay, "a relay reported in, but no relay key is configured on this supernode (--relay-key ID admits a relay that reports in); refused, it will not be handed out");
            } else {
                tracing::warn!(peer = %from, id = %relay, "a relay reported in with a key this supernode was not configured for (--relay-key); refused, it will not be handed out");
            }
        } else {
            tracing::debug!(peer = %from, id = %relay, "refused relay reported in again");
        }
        conn.close(
            CLOSE_NOT_CONFIGURED.into(),
            b"relay key not configured on this supernode",
        );
        return Ok(());
    }
    let mut checking: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let RelayToSupernode::Report(load) = read_frame(&mut recv).await?;
        if load.relay != relay {
            tracing::warn!(peer = %conn.remote_address(), "relay reported someone else's load; ignored");
            continue;
        }
        let addr = dial_address(&load, conn.remote_address());
        if relays.address(&relay) == Some(addr) {
            relays.update(now(), Contact { id: relay, addr }, load);
        } else if checking.as_ref().is_none_or(|h| h.is_finished()) {
            let (e, i, r) = (endpoint.clone(), identity.clone(), relays.clone());
            checking = Some(tokio::spawn(check_address(addr, relay, e, i, r)));
        }
        write_frame(&mut send, &SupernodeToRelay::Ack).await?;
    }
}

/// Dials the relay `id` at its reported `addr` (pinned to its key) and asks its load;
/// only an answer there puts it in the directory at that address.
pub async fn check_address(
    addr: SocketAddr,
    id: PeerId,
    endpoint: Endpoint,
    identity: Identity,
    relays: RelayDirectory,
) {
    let answer = match dial(&endpoint, &identity, addr, ALPN_RELAY, Some(id), TIMEOUT).await {
        Ok((c, _)) => {
            let r = request::<_, RelayToClient>(&c, &ClientToRelay::LoadQuery, TIMEOUT).await;
            c.close(0u32.into(), b"address checked");
            r
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(RelayToClient::Load(load)) if load.relay == id => {
            relays.update(now(), Contact { id, addr }, load);
        }
        other => {
            tracing::warn!(relay = %addr, id = %id.short(), ?other, "a reporting relay cannot be reached at the address it reports; not handed out")
        }
    }
}
