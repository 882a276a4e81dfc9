//! How a supernode learns relays and their load: relays it was told about with
//! `--relay ADDR` are polled, and relays started with `--supernode` report in.

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
    if load.listen.ip().is_unspecified() {
        SocketAddr::new(seen_from.ip(), load.listen.port())
    } else {
        load.listen
    }
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
    loop {
        if conn
            .as_ref()
            .is_none_or(|(c, _)| c.close_reason().is_some())
        {
            conn = dial(&endpoint, &identity, addr, ALPN_RELAY, None, TIMEOUT)
                .await
                .ok();
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

/// Serves a relay's report connection: each stream carries one report.
pub async fn serve_reports(
    conn: Connection,
    relay: PeerId,
    relays: RelayDirectory,
) -> Result<(), NetError> {
    loop {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let RelayToSupernode::Report(load) = read_frame(&mut recv).await?;
        if load.relay != relay {
            tracing::warn!(peer = %conn.remote_address(), "relay reported someone else's load; ignored");
            continue;
        }
        let addr = dial_address(&load, conn.remote_address());
        relays.update(now(), Contact { id: relay, addr }, load);
        write_frame(&mut send, &SupernodeToRelay::Ack).await?;
    }
}
