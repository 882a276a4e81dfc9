//! The client side of a relay leg, shared by the `parley` client, tests and the
//! benchmark: dial the relay pinning its key, join with a token, wait to be paired.
//!
//! ```no_run
//! # async fn call(endpoint: quinn::Endpoint, me: parley_proto::Identity,
//! #     relay: parley_proto::presence::Contact, token: parley_proto::relay::SignedRelayToken)
//! #     -> Result<(), parley_relay::RelayClientError> {
//! use std::time::Duration;
//! let mut leg = parley_relay::join_relay(&endpoint, &me, relay, &token, Duration::from_secs(5)).await?;
//! if !leg.paired {
//!     leg.wait_paired(Duration::from_secs(60)).await?;
//! }
//! leg.conn.send_datagram(bytes::Bytes::from_static(b"sealed media"))?;
//! # Ok(()) }
//! ```

use crate::endpoint::dial_leg;
use parley_net::{peer_id_of, read_frame, request, write_frame, NetError};
use parley_proto::presence::Contact;
use parley_proto::relay::channel::{ChannelKey, EXPORTER_LABEL, KEY_LEN};
use parley_proto::relay::messages::{ClientToRelay, RelayToClient};
use parley_proto::relay::{ChannelGrant, RelayLoad, RelayRefusal, SignedRelayToken};
use parley_proto::Identity;
use quinn::{Connection, Endpoint, RecvStream};
use std::time::Duration;
use thiserror::Error;

/// Why a leg could not be set up.
#[derive(Debug, Error)]
pub enum RelayClientError {
    /// The relay refused (bad token, call full, overloaded...).
    #[error("the relay refused: {0}")]
    Refused(RelayRefusal),
    /// Dialing or talking to the relay failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The relay sent something other than what this step expects.
    #[error("the relay answered {0}, which makes no sense here")]
    Unexpected(String),
    /// The relay ended the join stream without pairing (the leg was closed).
    #[error("the relay closed the leg before the other party arrived")]
    NotPaired,
    /// A datagram could not be sent.
    #[error("cannot send a datagram: {0}")]
    Datagram(#[from] quinn::SendDatagramError),
    /// Nothing in time.
    #[error("the relay did not answer within {0:?}")]
    Timeout(Duration),
    /// The media channel's socket failed.
    #[error("relay channel: {0}")]
    Io(#[from] std::io::Error),
}

/// A joined leg: the connection to the relay, over which datagrams now go to the
/// other party (once paired).
#[derive(Debug)]
pub struct RelayLeg {
    /// The connection to the relay. Send media with `send_datagram`, receive it with
    /// `read_datagram`; the relay forwards datagrams verbatim to the other party.
    pub conn: Connection,
    /// Whether the other party's leg is there (datagrams cross already).
    pub paired: bool,
    /// The leg's media channel on the relay's data port, if granted.
    pub channel: Option<ChannelGrant>,
    /// The channel's key, exported from this connection's TLS session.
    pub channel_key: Option<ChannelKey>,
    /// The join stream, on which `Paired` arrives. Dropping it is harmless.
    control: RecvStream,
}

/// Dials `relay` with [`ALPN_RELAY`] (accepting only its key), joins the call of
/// `token` and returns the leg once the relay admits it. A refusal is
/// [`RelayClientError::Refused`] with the relay's code and reason.
///
/// [`ALPN_RELAY`]: parley_proto::relay::ALPN_RELAY
pub async fn join_relay(
    endpoint: &Endpoint,
    identity: &Identity,
    relay: Contact,
    token: &SignedRelayToken,
    timeout: Duration,
) -> Result<RelayLeg, RelayClientError> {
    let join = async {
        let conn = dial_leg(endpoint, identity, relay.id, relay.addr)?
            .await
            .map_err(NetError::from)?;
        let (mut send, mut control) = conn.open_bi().await.map_err(NetError::from)?;
        write_frame(&mut send, &ClientToRelay::Join(token.clone())).await?;
        match read_frame::<RelayToClient>(&mut control).await? {
            RelayToClient::Joined { paired, channel } => {
                let mut key = [0u8; KEY_LEN];
                let channel_key = conn
                    .export_keying_material(&mut key, EXPORTER_LABEL, b"")
                    .ok()
                    .map(|()| ChannelKey(key));
                Ok(RelayLeg {
                    conn,
                    paired,
                    channel,
                    channel_key,
                    control,
                })
            }
            RelayToClient::Refused(refusal) => {
                conn.close(0u32.into(), b"join refused");
                Err(RelayClientError::Refused(refusal))
            }
            other => Err(RelayClientError::Unexpected(format!("{other:?}"))),
        }
    };
    tokio::time::timeout(timeout, join)
        .await
        .map_err(|_| RelayClientError::Timeout(timeout))?
}

impl RelayLeg {
    /// Waits until the other party joins (returns at once when already paired).
    pub async fn wait_paired(&mut self, timeout: Duration) -> Result<(), RelayClientError> {
        if self.paired {
            return Ok(());
        }
        let next = tokio::time::timeout(timeout, read_frame::<RelayToClient>(&mut self.control))
            .await
            .map_err(|_| RelayClientError::Timeout(timeout))?;
        match next {
            Ok(RelayToClient::Paired) => {
                self.paired = true;
                Ok(())
            }
            Ok(other) => Err(RelayClientError::Unexpected(format!("{other:?}"))),
            Err(NetError::Read(_)) => Err(RelayClientError::NotPaired),
            Err(e) => Err(e.into()),
        }
    }

    /// The relay's identity, as proven in the handshake.
    pub fn relay_id(&self) -> Result<parley_proto::PeerId, NetError> {
        peer_id_of(&self.conn)
    }
}

/// Asks a relay how busy it is, over a fresh connection (closed afterwards).
pub async fn query_load(
    endpoint: &Endpoint,
    identity: &Identity,
    relay: Contact,
    timeout: Duration,
) -> Result<RelayLoad, RelayClientError> {
    let ask = async {
        let conn = dial_leg(endpoint, identity, relay.id, relay.addr)?
            .await
            .map_err(NetError::from)?;
        let reply = request::<_, RelayToClient>(&conn, &ClientToRelay::LoadQuery, timeout).await;
        conn.close(0u32.into(), b"done");
        match reply? {
            RelayToClient::Load(load) => Ok(load),
            RelayToClient::Refused(refusal) => Err(RelayClientError::Refused(refusal)),
            other => Err(RelayClientError::Unexpected(format!("{other:?}"))),
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| RelayClientError::Timeout(timeout))?
}
