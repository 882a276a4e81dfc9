//! One attachment to one supernode: dial, say hello, and send requests.

use anyhow::{bail, Context, Result};
use parley_net::{dial_with, request, Liveness};
use parley_proto::messages::{ClientToSupernode, SupernodeToClient, ALPN_CLIENT};
use parley_proto::{Identity, PeerId};
use quinn::{Connection, Endpoint};
use std::net::SocketAddr;
use std::time::Duration;

/// How long a supernode has to answer a dial or a request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// An attached supernode.
#[derive(Clone)]
pub struct SupernodeLink {
    pub conn: Connection,
    pub id: PeerId,
    pub addr: SocketAddr,
    /// Our address as this supernode sees it.
    pub observed: SocketAddr,
}

impl SupernodeLink {
    /// Dials `addr` (pinning `expected` when known) and exchanges Hello/Welcome.
    pub async fn connect(
        endpoint: &Endpoint,
        identity: &Identity,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<SupernodeLink> {
        let (conn, id) = dial_with(
            endpoint,
            identity,
            addr,
            ALPN_CLIENT,
            expected,
            REQUEST_TIMEOUT,
            Liveness::Attachment,
        )
        .await
        .with_context(|| format!("cannot reach supernode {addr}"))?;
        let link = SupernodeLink {
            conn,
            id,
            addr,
            observed: addr,
        };
        match link.ask(&ClientToSupernode::Hello).await? {
            SupernodeToClient::Welcome { observed, .. } => Ok(SupernodeLink { observed, ..link }),
            other => bail!("supernode {addr} answered hello with {other:?}"),
        }
    }

    /// One request and its reply.
    pub async fn ask(&self, req: &ClientToSupernode) -> Result<SupernodeToClient> {
        request(&self.conn, req, REQUEST_TIMEOUT)
            .await
            .with_context(|| format!("supernode {} did not answer", self.addr))
    }
}

/// Resolves `HOST:PORT` strings, reporting which one is bad.
pub async fn resolve_all(targets: &[String]) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for t in targets {
        let addr = tokio::net::lookup_host(t.as_str())
            .await
            .with_context(|| {
                format!("cannot resolve supernode address {t:?} (expected HOST:PORT)")
            })?
            .next()
            .with_context(|| format!("{t} resolves to no address"))?;
        out.push(addr);
    }
    Ok(out)
}

/// The local address a packet to `to` would leave from: our LAN candidate address.
pub fn local_ip_towards(to: SocketAddr) -> Option<std::net::IpAddr> {
    let bind: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(to).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}
