//! Every control message between clients and supernodes and among supernodes.
//!
//! Each QUIC bidirectional stream carries exactly one request frame and one reply frame
//! (see [`crate::codec`]). The connection's ALPN says which pair of types it speaks:
//! [`ALPN_CLIENT`] for a client attached to a supernode, [`ALPN_OVERLAY`] between
//! supernodes. Direction is in the type name.

use crate::codec::WireMessage;
use crate::identity::{NodeId, PeerId};
use crate::presence::{Contact, SignedPresence};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// ALPN of a client's attachment to a supernode.
pub const ALPN_CLIENT: &[u8] = b"parley-client/1";
/// ALPN of a supernode-to-supernode connection. Version 2: a supernode's position
/// follows its key *and* its IP (BEP 42, [`crate::overlay::position`]); `/1`
/// supernodes placed it by the key alone, so the two versions disagree on who is
/// closest to a key and do not mix (there was never a deployed `/1` network).
pub const ALPN_OVERLAY: &[u8] = b"parley-overlay/2";

/// Most contacts in one reply.
pub const MAX_CONTACTS: usize = 32;

/// A request from a client to the supernode it is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientToSupernode {
    /// First message on an attachment; answered with [`SupernodeToClient::Welcome`].
    Hello,
    /// Store the client's own presence record in the overlay.
    Publish(SignedPresence),
    /// Find the presence record of an identity.
    Lookup(PeerId),
    /// List supernodes this one knows, for the client's host cache.
    Supernodes,
    /// Where this supernode serves (QUIC, TCP fallback, STUN); answered with
    /// [`SupernodeToClient::Endpoints`]. Unlike `Hello` it does not attach, so a client
    /// may ask before it decides how to reach the overlay (UDP or TCP).
    Endpoints,
}

/// Where a server serves, as it advertises itself: clients use these and never derive
/// one port from another. An unspecified IP (`0.0.0.0`, `::`) means "the IP you reached
/// me at" (the server listens on every IP and cannot know which one is public).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerEndpoints {
    /// QUIC (UDP). `None` only in an answer from a server that does not know it.
    pub quic: Option<SocketAddr>,
    /// The QUIC-over-TLS-over-TCP tunnel for networks that drop UDP
    /// ([`parley-net`'s `tcp_tunnel`]); `None` if the server has none.
    pub tcp: Option<SocketAddr>,
    /// STUN Binding (RFC 8489/5780); `None` if the server answers no STUN.
    pub stun: Option<SocketAddr>,
}

impl ServerEndpoints {
    /// These endpoints with every unspecified IP replaced by `reached` (the IP the
    /// answer came from), and IPv4-mapped IPv6 addresses written as IPv4.
    pub fn resolved(self, reached: std::net::IpAddr) -> ServerEndpoints {
        let fix = |a: Option<SocketAddr>| {
            a.map(|a| {
                let ip = if a.ip().is_unspecified() {
                    reached
                } else {
                    a.ip()
                };
                SocketAddr::new(ip.to_canonical(), a.port())
            })
        };
        ServerEndpoints {
            quic: fix(self.quic),
            tcp: fix(self.tcp),
            stun: fix(self.stun),
        }
    }
}

/// A supernode's reply to a [`ClientToSupernode`] request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupernodeToClient {
    /// Reply to `Hello`.
    Welcome {
        /// The supernode's identity.
        supernode: PeerId,
        /// The client's address as the supernode sees it (server-reflexive).
        observed: SocketAddr,
        /// Where the supernode serves, for the client's host cache.
        endpoints: ServerEndpoints,
    },
    /// The record was stored on this many supernodes.
    Published {
        /// Number of replicas that accepted it.
        replicas: u16,
    },
    /// The record asked for.
    Found(SignedPresence),
    /// Nobody holds a live record for that identity.
    NotFound,
    /// Supernodes this one knows.
    Supernodes(Vec<Contact>),
    /// The request was refused.
    Refused(Refusal),
    /// Reply to `Endpoints`.
    Endpoints(ServerEndpoints),
}

/// A DHT request from one supernode to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupernodeToSupernode {
    /// Liveness check; also introduces the sender.
    Ping,
    /// The closest supernodes the receiver knows to a key.
    FindNode(NodeId),
    /// The record stored under a key, or else the closest supernodes.
    FindValue(NodeId),
    /// Store a presence record (replication or publication). Shared, not copied, by
    /// the `k` stores of one publication (the wire carries the record itself).
    Store(Arc<SignedPresence>),
}

/// A reply to a [`SupernodeToSupernode`] request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupernodeReply {
    /// Reply to `Ping`.
    Pong,
    /// Closest contacts known to the replier.
    Nodes(Vec<Contact>),
    /// The record asked for (the holder's copy, shared).
    Value(Arc<SignedPresence>),
    /// The record was stored.
    Stored,
    /// The request was refused.
    Refused(Refusal),
    /// A `Store` refused as stale, with the newer record the receiver holds as
    /// proof. The requester verifies it before acting on it: a bare claim of
    /// staleness (a `Refused` with [`RefusalCode::Stale`]) never makes anyone drop
    /// a valid record.
    Superseded(Arc<SignedPresence>),
}

/// Why a request was refused, for the requester to act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// A machine-readable reason.
    pub code: RefusalCode,
    /// A sentence for people.
    pub message: String,
}

/// Machine-readable refusal reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalCode {
    /// Bad signature or a field over its limit.
    BadRecord,
    /// Older than (or conflicting with) the record held.
    Stale,
    /// Expired, or expiring too far in the future.
    Expired,
    /// A client tried to publish a record that is not its own.
    NotYours,
    /// The request could not be decoded.
    Malformed,
    /// The supernode is shedding load; try another.
    Overloaded,
}

impl WireMessage for ClientToSupernode {
    const KIND: u8 = 0x01;
}
impl WireMessage for SupernodeToClient {
    const KIND: u8 = 0x02;
}
impl WireMessage for SupernodeToSupernode {
    const KIND: u8 = 0x03;
}
impl WireMessage for SupernodeReply {
    const KIND: u8 = 0x04;
}

impl From<&crate::presence::RecordError> for Refusal {
    fn from(e: &crate::presence::RecordError) -> Refusal {
        use crate::presence::RecordError as E;
        let code = match e {
            E::BadSignature | E::FieldTooLarge(_) => RefusalCode::BadRecord,
            E::Stale { .. } => RefusalCode::Stale,
            E::Expired { .. } | E::ExpiryTooFar { .. } => RefusalCode::Expired,
        };
        Refusal {
            code,
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_endpoints_resolve_unspecified_ips_and_are_canonical() {
        let e = ServerEndpoints {
            quic: Some("[::]:4433".parse().expect("addr")),
            tcp: Some("0.0.0.0:443".parse().expect("addr")),
            stun: Some("[::ffff:192.0.2.7]:3478".parse().expect("addr")),
        };
        let reached: std::net::IpAddr = "::ffff:198.51.100.10".parse().expect("ip");
        let r = e.resolved(reached);
        assert_eq!(r.quic, Some("198.51.100.10:4433".parse().expect("addr")));
        assert_eq!(r.tcp, Some("198.51.100.10:443".parse().expect("addr")));
        assert_eq!(r.stun, Some("192.0.2.7:3478".parse().expect("addr")));
        assert_eq!(
            ServerEndpoints::default().resolved(reached),
            Default::default()
        );
    }
}
