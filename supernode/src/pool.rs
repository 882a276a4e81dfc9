//! Outgoing overlay connections, one per remote supernode, dialed on demand.
//!
//! Requests a supernode sends travel on connections it dialed; requests it receives
//! arrive on connections others dialed. Keeping the two apart means a connection never
//! needs two owners.

use parley_net::{dial, request, NetError};
use parley_proto::messages::{SupernodeReply, SupernodeToSupernode, ALPN_OVERLAY};
use parley_proto::overlay::RpcFailure;
use parley_proto::presence::Contact;
use parley_proto::{Identity, PeerId};
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
    conns: Mutex<HashMap<PeerId, Connection>>,
}

impl Pool {
    pub fn new(endpoint: Endpoint, identity: Identity) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                endpoint,
                identity,
                conns: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn cached(&self, id: &PeerId) -> Option<Connection> {
        let conns = self.inner.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns
            .get(id)
            .filter(|c| c.close_reason().is_none())
            .cloned()
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
        self.inner
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, conn);
        Ok(Contact { id, addr })
    }

    /// A cached live connection to `to`, or a new one.
    async fn connection(&self, to: Contact) -> Result<Connection, NetError> {
        if let Some(c) = self.cached(&to.id) {
            return Ok(c);
        }
        self.connect(to.addr, Some(to.id)).await?;
        self.cached(&to.id).ok_or(NetError::NoPeerIdentity)
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
