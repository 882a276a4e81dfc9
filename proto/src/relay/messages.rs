//! What clients and supernodes say to a relay.
//!
//! A call's leg is one QUIC connection to the relay with ALPN [`ALPN_RELAY`]. On it the
//! client opens one bidirectional stream and sends [`ClientToRelay::Join`]; the relay
//! answers [`RelayToClient::Joined`] (or `Refused`) and, when the leg was not paired at
//! once, later sends [`RelayToClient::Paired`] on the same stream when the other party
//! arrives. Media then flows as QUIC datagrams on the connection, which the relay
//! forwards verbatim to the paired leg. `LoadQuery` is a one-request stream of its own.
//!
//! Relays report their load to supernodes over connections they dial with ALPN
//! [`ALPN_RELAY_REPORT`]: one [`RelayToSupernode::Report`] per stream, answered `Ack`.

use crate::codec::WireMessage;
use crate::identity::PeerId;
use crate::relay::token::{SignedRelayToken, TokenError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// ALPN of a call leg (or a load query) to a relay.
pub const ALPN_RELAY: &[u8] = b"parley-relay/1";
/// ALPN of a relay's load reports to a supernode.
pub const ALPN_RELAY_REPORT: &[u8] = b"parley-relay-report/1";

/// A request from a client to a relay.
// Decoded once per stream and moved rarely: boxing the token would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientToRelay {
    /// Make this connection a leg of the token's call.
    Join(SignedRelayToken),
    /// How busy is the relay? Answered with [`RelayToClient::Load`].
    LoadQuery,
}

/// A relay's answer to a [`ClientToRelay`] request.
// As above: one per stream, never stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayToClient {
    /// The leg is admitted; `paired` when the other party's leg was already there.
    Joined {
        /// Whether datagrams are already forwarded to the other party.
        paired: bool,
        /// The leg's media channel on the relay's data port, when it has one; without
        /// one, media goes as QUIC datagrams on the leg's connection.
        channel: Option<ChannelGrant>,
    },
    /// Sent after `Joined { paired: false }` once the other party's leg arrives.
    Paired,
    /// The relay's load.
    Load(RelayLoad),
    /// The request was refused.
    Refused(RelayRefusal),
}

/// A leg's media channel (see [`crate::relay::channel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelGrant {
    /// The channel number to put in every channel datagram.
    pub channel: u32,
    /// The relay's UDP data port, on the IP address the leg dialed.
    pub port: u16,
}

/// A relay's load, for clients choosing a relay and supernodes handing out tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayLoad {
    /// The relay's identity.
    pub relay: PeerId,
    /// Where the relay takes legs. An unspecified IP (0.0.0.0) means "the address this
    /// report came from".
    pub listen: SocketAddr,
    /// Calls with at least one leg.
    pub calls: u32,
    /// Legs joined.
    pub legs: u32,
    /// The most legs the relay admits.
    pub max_legs: u32,
    /// Its QUIC-over-TCP tunnel for clients whose networks drop UDP, if it has one
    /// (an unspecified IP means the report's source IP, as for `listen`).
    pub tcp: Option<SocketAddr>,
}

/// Why a relay refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRefusal {
    /// A machine-readable reason.
    pub code: RelayRefusalCode,
    /// A sentence for people.
    pub message: String,
}

impl RelayRefusal {
    /// A refusal with `code` and a message.
    pub fn new(code: RelayRefusalCode, message: impl Into<String>) -> RelayRefusal {
        RelayRefusal {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for RelayRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// Machine-readable relay refusal reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RelayRefusalCode {
    /// The request carried no readable token (garbage, or not a `Join`).
    NoToken,
    /// The token does not verify: bad signature, lifetime over the limit, or the same
    /// key named twice.
    BadToken,
    /// The token expired.
    Expired,
    /// The token is for another relay.
    WrongRelay,
    /// The token's issuer is not a supernode this relay trusts.
    UntrustedIssuer,
    /// The connection's key is not one of the token's (or the call's) parties.
    NotAParty,
    /// This party already has a leg in the call, or this connection already joined.
    CallFull,
    /// This key already holds as many legs as the relay allows one key.
    TooManyLegs,
    /// The relay is at its leg limit; try another relay.
    Overloaded,
    /// Too many joins from this address lately; try again in a moment.
    RateLimited,
}

impl RelayRefusalCode {
    /// Every code, in counter order ([`RelayStats::refused_joins`](super::RelayStats::refused_joins)).
    pub const ALL: [RelayRefusalCode; 10] = [
        RelayRefusalCode::NoToken,
        RelayRefusalCode::BadToken,
        RelayRefusalCode::Expired,
        RelayRefusalCode::WrongRelay,
        RelayRefusalCode::UntrustedIssuer,
        RelayRefusalCode::NotAParty,
        RelayRefusalCode::CallFull,
        RelayRefusalCode::TooManyLegs,
        RelayRefusalCode::Overloaded,
        RelayRefusalCode::RateLimited,
    ];

    /// A short snake_case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayRefusalCode::NoToken => "no_token",
            RelayRefusalCode::BadToken => "bad_token",
            RelayRefusalCode::Expired => "expired",
            RelayRefusalCode::WrongRelay => "wrong_relay",
            RelayRefusalCode::UntrustedIssuer => "untrusted_issuer",
            RelayRefusalCode::NotAParty => "not_a_party",
            RelayRefusalCode::CallFull => "call_full",
            RelayRefusalCode::TooManyLegs => "too_many_legs",
            RelayRefusalCode::Overloaded => "overloaded",
            RelayRefusalCode::RateLimited => "rate_limited",
        }
    }
}

impl From<&TokenError> for RelayRefusal {
    fn from(e: &TokenError) -> RelayRefusal {
        let code = match e {
            TokenError::UntrustedIssuer { .. } => RelayRefusalCode::UntrustedIssuer,
            TokenError::BadSignature
            | TokenError::LifetimeTooLong { .. }
            | TokenError::SameParties => RelayRefusalCode::BadToken,
            TokenError::WrongRelay { .. } => RelayRefusalCode::WrongRelay,
            TokenError::Expired { .. } => RelayRefusalCode::Expired,
        };
        RelayRefusal::new(code, e.to_string())
    }
}

/// A relay's message to a supernode it reports to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayToSupernode {
    /// The relay's current load; sent every few seconds.
    Report(RelayLoad),
}

/// A supernode's answer to a [`RelayToSupernode`] message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupernodeToRelay {
    /// The report was received.
    Ack,
}

impl WireMessage for ClientToRelay {
    const KIND: u8 = 0x10;
}
impl WireMessage for RelayToClient {
    const KIND: u8 = 0x11;
}
impl WireMessage for RelayToSupernode {
    const KIND: u8 = 0x12;
}
impl WireMessage for SupernodeToRelay {
    const KIND: u8 = 0x13;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::DecodeError;
    use crate::relay::token::{CallId, RelayToken};
    use crate::{Identity, Timestamp};

    fn signed_token() -> SignedRelayToken {
        let issuer = Identity::generate();
        RelayToken {
            call_id: CallId([1; 16]),
            parties: [
                Identity::generate().peer_id(),
                Identity::generate().peer_id(),
            ],
            relay: Identity::generate().peer_id(),
            issuer: issuer.peer_id(),
            expires_at: Timestamp(5_000),
        }
        .sign(&issuer)
    }

    #[test]
    fn every_message_round_trips() {
        let load = RelayLoad {
            relay: Identity::generate().peer_id(),
            listen: "192.0.2.1:4434".parse().unwrap(),
            calls: 3,
            legs: 5,
            max_legs: 100,
            tcp: Some("192.0.2.1:443".parse().unwrap()),
        };
        for m in [
            ClientToRelay::Join(signed_token()),
            ClientToRelay::LoadQuery,
        ] {
            assert_eq!(ClientToRelay::decode(&m.encode()).unwrap(), m);
        }
        for m in [
            RelayToClient::Joined {
                paired: true,
                channel: Some(ChannelGrant {
                    channel: 7,
                    port: 3479,
                }),
            },
            RelayToClient::Joined {
                paired: false,
                channel: None,
            },
            RelayToClient::Paired,
            RelayToClient::Load(load.clone()),
            RelayToClient::Refused(RelayRefusal::new(RelayRefusalCode::CallFull, "full")),
        ] {
            assert_eq!(RelayToClient::decode(&m.encode()).unwrap(), m);
        }
        let report = RelayToSupernode::Report(load);
        assert_eq!(RelayToSupernode::decode(&report.encode()).unwrap(), report);
        let ack = SupernodeToRelay::Ack;
        assert_eq!(SupernodeToRelay::decode(&ack.encode()).unwrap(), ack);
    }

    #[test]
    fn a_relay_message_is_not_a_client_message() {
        let bytes = RelayToClient::Paired.encode();
        assert_eq!(
            ClientToRelay::decode(&bytes),
            Err(DecodeError::WrongKind {
                expected: 0x10,
                got: 0x11
            })
        );
    }

    #[test]
    fn token_errors_map_to_refusal_codes() {
        let now = Timestamp(1);
        let cases = [
            (TokenError::BadSignature, RelayRefusalCode::BadToken),
            (TokenError::SameParties, RelayRefusalCode::BadToken),
            (
                TokenError::LifetimeTooLong {
                    expires_at: now,
                    now,
                },
                RelayRefusalCode::BadToken,
            ),
            (
                TokenError::Expired {
                    expires_at: now,
                    now,
                },
                RelayRefusalCode::Expired,
            ),
        ];
        for (e, code) in cases {
            let r = RelayRefusal::from(&e);
            assert_eq!(r.code, code);
            assert_eq!(r.message, e.to_string());
        }
    }
}
