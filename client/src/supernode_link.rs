//! One attachment to one supernode: dial, say hello, and send requests.

use anyhow::{bail, Context, Result};
use parley_net::canonical;
use parley_net::{dial_with, request, Liveness};
use parley_proto::attach::KeepAlive;
use parley_proto::messages::{ClientToSupernode, ServerEndpoints, SupernodeToClient, ALPN_CLIENT};
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
    /// Where it serves, as its Welcome advertised (unspecified IPs resolved to the one
    /// we dialed).
    pub endpoints: ServerEndpoints,
}

impl SupernodeLink {
    /// Dials `addr` (pinning `expected` when known) and exchanges Hello/Welcome; the
    /// connection is kept alive and declared dead as the attachment machine said.
    pub async fn connect(
        endpoint: &Endpoint,
        identity: &Identity,
        addr: SocketAddr,
        expected: Option<PeerId>,
        keep_alive: KeepAlive,
    ) -> Result<SupernodeLink> {
        let (conn, id) = dial_with(
            endpoint,
            identity,
            addr,
            ALPN_CLIENT,
            expected,
            REQUEST_TIMEOUT,
            Liveness::Attachment {
                keep_alive: keep_alive.interval,
                idle: keep_alive.dead_after,
            },
        )
        .await
        .with_context(|| format!("cannot reach supernode {addr}"))?;
        let link = SupernodeLink {
            conn,
            id,
            addr,
            observed: addr,
            endpoints: ServerEndpoints::default(),
        };
        match link.ask(&ClientToSupernode::Hello).await? {
            SupernodeToClient::Welcome {
                observed,
                endpoints,
                ..
            } => Ok(SupernodeLink {
                observed: canonical(observed),
                endpoints: endpoints.resolved(addr.ip()),
                ..link
            }),
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

/// Bootstrap addresses as the user gave them: `HOST:PORT` is a supernode's QUIC
/// address, `tcp://HOST:PORT` its TCP fallback (for a first start on a network that
/// drops UDP). Nothing is derived from anything else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bootstrap {
    pub quic: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
}

/// Resolves `HOST:PORT` and `tcp://HOST:PORT` strings, reporting which one is bad.
pub async fn resolve_bootstrap(targets: &[String]) -> Result<Bootstrap> {
    let mut out = Bootstrap::default();
    for t in targets {
        let (list, host) = match t.strip_prefix("tcp://") {
            Some(rest) => (&mut out.tcp, rest),
            None => (&mut out.quic, t.as_str()),
        };
        let addr = tokio::net::lookup_host(host)
            .await
            .with_context(|| {
                format!("cannot resolve supernode address {t:?} (expected HOST:PORT or tcp://HOST:PORT)")
            })?
            .next()
            .with_context(|| format!("{t} resolves to no address"))?;
        list.push(canonical(addr));
    }
    Ok(out)
}

/// The QUIC addresses among `targets` (`tcp://` ones are left out).
pub async fn resolve_all(targets: &[String]) -> Result<Vec<SocketAddr>> {
    Ok(resolve_bootstrap(targets).await?.quic)
}

/// Asks the supernode at `addr` (through `endpoint`: UDP, or the TCP tunnel) where it
/// serves, without attaching: the connection presents a throwaway identity, so it
/// never stands in for our running client's attachment.
pub async fn ask_endpoints(
    endpoint: &Endpoint,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(PeerId, ServerEndpoints)> {
    let anonymous = Identity::generate();
    let (conn, id) = parley_net::dial(endpoint, &anonymous, addr, ALPN_CLIENT, None, timeout)
        .await
        .with_context(|| format!("cannot reach supernode {addr}"))?;
    let reply = request(&conn, &ClientToSupernode::Endpoints, timeout).await;
    conn.close(0u32.into(), b"done");
    match reply.with_context(|| format!("supernode {addr} did not answer"))? {
        SupernodeToClient::Endpoints(e) => Ok((id, e.resolved(addr.ip()))),
        other => bail!("supernode {addr} answered an endpoints query with {other:?}"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bootstrap_addresses_name_quic_or_the_tcp_fallback_explicitly() {
        let targets = [
            "127.0.0.1:4433".to_string(),
            "tcp://127.0.0.1:443".to_string(),
            "[::1]:4433".to_string(),
        ];
        let b = resolve_bootstrap(&targets).await.unwrap();
        assert_eq!(
            b.quic,
            vec![
                "127.0.0.1:4433".parse().unwrap(),
                "[::1]:4433".parse().unwrap()
            ]
        );
        assert_eq!(b.tcp, vec!["127.0.0.1:443".parse().unwrap()]);
        assert!(resolve_bootstrap(&["tcp://nowhere".to_string()])
            .await
            .is_err());
    }
}
