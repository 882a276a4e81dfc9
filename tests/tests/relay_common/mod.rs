//! Shared by the relay end-to-end tests: a real `relay` process trusting a test
//! "supernode" key, and parties that dial it with their own identities.

#![allow(dead_code)] // each test binary uses a different subset

use bytes::Bytes;
use parley_e2e::Relay;
use parley_proto::presence::Contact;
use parley_proto::relay::{CallId, RelayRefusalCode, RelayToken, SignedRelayToken};
use parley_proto::{Identity, PeerId, Timestamp};
use parley_relay::{join_relay, RelayClientError, RelayLeg};
use quinn::{Connection, Endpoint};
use std::time::Duration;

pub const T: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(500);

pub fn now() -> Timestamp {
    parley_net::clock::now()
}

/// A relay process and the supernode key it trusts.
pub struct Fixture {
    pub relay: Relay,
    pub issuer: Identity,
    pub contact: Contact,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        let issuer = Identity::generate();
        let relay = Relay::start(name, &[issuer.peer_id().to_string()]).expect("relay starts");
        let contact = Contact {
            id: relay.id.parse().expect("relay id"),
            addr: relay.quic,
        };
        Fixture {
            relay,
            issuer,
            contact,
        }
    }

    /// An unsigned token for `call` between `parties`, valid for two minutes.
    pub fn raw_token(&self, call: CallId, parties: [PeerId; 2]) -> RelayToken {
        RelayToken {
            call_id: call,
            parties,
            relay: self.contact.id,
            issuer: self.issuer.peer_id(),
            expires_at: now() + Duration::from_secs(120),
        }
    }

    /// A token for `call` between `a` and `b`, signed by the trusted issuer.
    pub fn token(&self, call: CallId, a: &Party, b: &Party) -> SignedRelayToken {
        self.raw_token(call, [a.peer_id(), b.peer_id()])
            .sign(&self.issuer)
    }
}

/// A client with its own identity and endpoint.
pub struct Party {
    pub identity: Identity,
    pub endpoint: Endpoint,
}

impl Party {
    pub fn new() -> Party {
        let identity = Identity::generate();
        let endpoint =
            parley_net::make_endpoint("127.0.0.1:0".parse().expect("addr"), &identity, &[])
                .expect("client endpoint");
        Party { identity, endpoint }
    }

    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    pub async fn join(
        &self,
        fx: &Fixture,
        token: &SignedRelayToken,
    ) -> Result<RelayLeg, RelayClientError> {
        join_relay(&self.endpoint, &self.identity, fx.contact, token, T).await
    }

    /// A connection to the relay that never joins.
    pub async fn connect(&self, fx: &Fixture) -> Connection {
        parley_relay::endpoint::dial_leg(
            &self.endpoint,
            &self.identity,
            fx.contact.id,
            fx.contact.addr,
        )
        .expect("dial")
        .await
        .expect("handshake")
    }
}

/// The refusal code of a failed join.
pub fn refusal(result: Result<RelayLeg, RelayClientError>) -> RelayRefusalCode {
    match result {
        Err(RelayClientError::Refused(r)) => {
            assert!(!r.message.is_empty(), "a refusal says why");
            r.code
        }
        Err(e) => panic!("expected a refusal, got error {e}"),
        Ok(leg) => panic!("expected a refusal, got a leg (paired: {})", leg.paired),
    }
}

/// `n` datagrams of Opus-like sizes (80–120 bytes) of random content.
pub fn media(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let len = 80 + (i * 7) % 41;
            Bytes::from((0..len).map(|_| rand::random::<u8>()).collect::<Vec<u8>>())
        })
        .collect()
}

pub async fn send_all(conn: &Connection, datagrams: &[Bytes]) {
    for d in datagrams {
        conn.send_datagram(d.clone()).expect("send datagram");
    }
}

/// Receives `n` datagrams, failing after `T`.
pub async fn recv_n(conn: &Connection, n: usize) -> Vec<Bytes> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout(T, conn.read_datagram()).await {
            Ok(Ok(d)) => got.push(d),
            Ok(Err(e)) => panic!("connection lost after {} of {n} datagrams: {e}", got.len()),
            Err(_) => panic!("only {} of {n} datagrams arrived", got.len()),
        }
    }
    got
}

/// Asserts no datagram arrives on `conn` for [`QUIET`], on a connection that is alive
/// throughout: "nothing arrived" on a closed connection would prove nothing.
pub async fn assert_nothing_arrives(conn: &Connection, who: &str) {
    match tokio::time::timeout(QUIET, conn.read_datagram()).await {
        Ok(Ok(d)) => panic!("{who} received a {}-byte datagram it must not get", d.len()),
        Ok(Err(e)) => panic!("{who}'s connection is dead ({e}): silence would prove nothing"),
        Err(_) => assert!(
            conn.close_reason().is_none(),
            "{who}'s connection closed while we listened"
        ),
    }
}

/// The same datagrams, regardless of arrival order.
pub fn same_set(mut a: Vec<Bytes>, mut b: Vec<Bytes>) -> bool {
    a.sort();
    b.sort();
    a == b
}

impl Fixture {
    /// A relay started with extra flags (limits).
    pub fn with_flags(name: &str, flags: &[&str]) -> Fixture {
        let issuer = Identity::generate();
        let relay =
            Relay::start_with(name, &[issuer.peer_id().to_string()], flags).expect("relay starts");
        let contact = Contact {
            id: relay.id.parse().expect("relay id"),
            addr: relay.quic,
        };
        Fixture {
            relay,
            issuer,
            contact,
        }
    }
}
