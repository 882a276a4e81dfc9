//! Outgoing overlay connections, one per remote supernode, dialed on demand.
//!
//! The pool shrinks: closed connections are dropped, a connection unused for
//! `Limits::pool_idle` is closed, and past `Limits::pool_max` the least recently used
//! ones are closed (all checked on every new dial, on monotonic time).
//!
//! Requests a supernode sends travel on connections it dialed; requests it receives
//! arrive on connections others dialed. Keeping the two apart means a connection never
//! needs two owners.

use crate::limits::Limits;
use parley_net::clock::mono;
use parley_net::{canonical, dial, request, NetError};
use parley_proto::messages::{SupernodeReply, SupernodeToSupernode, ALPN_OVERLAY};
use parley_proto::overlay::RpcFailure;
use parley_proto::presence::Contact;
use parley_proto::{Identity, Mono, PeerId};
use quinn::{Connection, Endpoint};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a dial or a request may take before the peer counts as unreachable.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    identity: Identity,
    max: usize,
    idle: Duration,
    /// Each connection with when it was last used.
    conns: Mutex<HashMap<PeerId, (Connection, Mono)>>,
}

impl Pool {
    pub fn new(endpoint: Endpoint, identity: Identity, limits: &Limits) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                endpoint,
                identity,
                max: limits.pool_max.max(1),
                idle: limits.pool_idle,
                conns: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The cached live connection to `to`'s key *at `to`'s address*. A contact is
    /// a key at an address, and a supernode's overlay position follows the IP
    /// (BEP 42): a contact naming a key we are connected to elsewhere must be
    /// dialed at its own address (where QUIC proves the key, or fails), never
    /// answered over the other connection, or anyone could name himself at an
    /// address whose position lands next to a victim's key.
    fn cached(&self, to: &Contact) -> Option<Connection> {
        let mut conns = self.inner.conns.lock().unwrap_or_else(|p| p.into_inner());
        let (conn, used) = conns.get_mut(&to.id).filter(|(c, _)| {
            c.close_reason().is_none() && canonical(c.remote_address()) == canonical(to.addr)
        })?;
        *used = mono();
        Some(conn.clone())
    }

    /// Drops closed connections, closes idle ones, then the least recently used ones
    /// until there is room for one more.
    pub fn sweep(&self, now: Mono) {
        let mut conns = self.inner.conns.lock().unwrap_or_else(|p| p.into_inner());
        let idle = self.inner.idle;
        conns.retain(|_, (c, used)| {
            let keep = c.close_reason().is_none() && now.since(*used) < idle;
            if !keep {
                c.close(0u32.into(), b"idle");
            }
            keep
        });
        while conns.len() >= self.inner.max {
            let Some(oldest) = conns
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some((c, _)) = conns.remove(&oldest) {
                c.close(0u32.into(), b"pool full");
            }
        }
    }

    /// How many connections are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Dials `addr` (any key, or the pinned one) and caches the connection.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<Contact, NetError> {
        let (conn, id) = dial(
            &self.inner.endpoint,
            &self.inner.identity,
            addr,
            ALPN_OVERLAY,
            expected,
            RPC_TIMEOUT,
        )
        .await?;
        let now = mono();
        self.sweep(now);
        self.inner
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (conn, now));
        Ok(Contact { id, addr })
    }

    /// A cached live connection to `to`, or a new one.
    async fn connection(&self, to: Contact) -> Result<Connection, NetError> {
        if let Some(c) = self.cached(&to) {
            return Ok(c);
        }
        self.connect(to.addr, Some(to.id)).await?;
        self.cached(&to).ok_or(NetError::NoPeerIdentity)
    }

    /// A new bidirectional stream to `to` (for call signalling).
    pub async fn open(
        &self,
        to: Contact,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), NetError> {
        let conn = self.connection(to).await?;
        Ok(conn.open_bi().await?)
    }

    /// One DHT request to `to`, dialing first if needed.
    pub async fn rpc(
        &self,
        to: Contact,
        req: &SupernodeToSupernode,
    ) -> Result<SupernodeReply, RpcFailure> {
        let conn = self.connection(to).await.map_err(|e| {
            tracing::debug!(peer = %to.addr, error = %e, "overlay dial failed");
            RpcFailure::Unreachable
        })?;
        request(&conn, req, RPC_TIMEOUT).await.map_err(|e| match e {
            NetError::Timeout(_) => RpcFailure::Timeout,
            other => {
                tracing::debug!(peer = %to.addr, error = %other, "overlay request failed");
                RpcFailure::Unreachable
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_net::make_endpoint;

    const ALPNS: [&[u8]; 1] = [ALPN_OVERLAY];

    /// An overlay endpoint with a new identity on loopback that accepts every
    /// connection and holds it until the peer closes it; returns its address.
    fn accepting_server() -> SocketAddr {
        let id = Identity::generate();
        let ep = make_endpoint("127.0.0.1:0".parse().unwrap(), &id, &ALPNS).unwrap();
        let addr = ep.local_addr().unwrap();
        tokio::spawn(async move {
            while let Some(inc) = ep.accept().await {
                tokio::spawn(async move {
                    if let Ok(c) = inc.await {
                        c.closed().await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_pool_closes_idle_connections_and_stays_under_its_cap() {
        let servers: Vec<SocketAddr> = (0..3).map(|_| accepting_server()).collect();
        let me = Identity::generate();
        let ep = make_endpoint("127.0.0.1:0".parse().unwrap(), &me, &ALPNS).unwrap();
        let limits = Limits {
            pool_max: 2,
            ..Limits::default()
        };
        let pool = Pool::new(ep, me, &limits);
        let mut conns = Vec::new();
        for s in &servers {
            let c = pool.connect(*s, None).await.unwrap();
            conns.push(pool.cached(&c).unwrap());
            // Last use is kept in milliseconds: dials in the same one would tie.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Three dials, a cap of two: the least recently used went.
        assert_eq!(pool.len(), 2);
        assert!(conns[0].close_reason().is_some());
        assert!(conns[2].close_reason().is_none(), "the newest is alive");
        // Nothing used for longer than pool_idle: everything is closed.
        pool.sweep(mono() + limits.pool_idle);
        assert_eq!(pool.len(), 0);
        assert!(conns[2].close_reason().is_some());
    }

    /// A key we are connected to, named at another address (where another key
    /// answers): the RPC goes to that address and fails; the cached connection
    /// is not used for it.
    #[tokio::test]
    async fn a_key_named_at_another_address_is_dialed_there() {
        let addrs: Vec<SocketAddr> = (0..2).map(|_| accepting_server()).collect();
        let me = Identity::generate();
        let ep = make_endpoint("127.0.0.1:0".parse().unwrap(), &me, &ALPNS).unwrap();
        let pool = Pool::new(ep, me, &Limits::default());
        let real = pool.connect(addrs[0], None).await.unwrap();
        assert!(pool.connection(real).await.is_ok());
        let elsewhere = Contact {
            id: real.id,
            addr: addrs[1],
        };
        assert!(pool.cached(&elsewhere).is_none());
        assert!(
            pool.connection(elsewhere).await.is_err(),
            "another key answers there"
        );
    }
}
