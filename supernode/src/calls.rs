//! Call signalling routing: a supernode carries a call's signalling frames from the
//! caller's attachment to the callee's, possibly through the callee's supernode, and
//! grants the call a relay. It checks only what it routes on (the caller signed the
//! offer); the offer's key exchange is opaque to it.

use crate::pool::Pool;
use crate::relays::RelayDirectory;
use parley_net::clock::now;
use parley_net::{read_raw_frame, send_frame, NetError};
use parley_proto::call::signal::{CallSignal, RelayGrant, SignedOffer, MAX_RELAYS, MAX_VIA};
use parley_proto::codec::WireMessage;
use parley_proto::presence::Contact;
use parley_proto::relay::{RelayToken, MAX_TOKEN_LIFETIME};
use parley_proto::{Identity, PeerId};
use quinn::{Connection, RecvStream, SendStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A signalling chain lives at most this long: ringing plus answering.
const SIGNALLING_LIFETIME: Duration = Duration::from_secs(120);

/// The clients attached to this supernode, by identity: where `Incoming` goes.
#[derive(Clone, Default)]
pub struct Attachments {
    inner: Arc<Mutex<HashMap<PeerId, Connection>>>,
}

impl Attachments {
    pub fn insert(&self, id: PeerId, conn: Connection) {
        self.lock().insert(id, conn);
    }

    /// Forgets `conn`, unless the client has since re-attached on a newer connection.
    pub fn remove(&self, id: &PeerId, conn: &Connection) {
        let mut map = self.lock();
        if map
            .get(id)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            map.remove(id);
        }
    }

    fn get(&self, id: &PeerId) -> Option<Connection> {
        self.lock()
            .get(id)
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Connection>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What call routing needs from the server.
#[derive(Clone)]
pub struct CallRouter {
    pub identity: Identity,
    pub attachments: Attachments,
    pub relays: RelayDirectory,
    pub pool: Pool,
}

impl CallRouter {
    /// The caller `from` placed a call on a stream of its attachment.
    pub async fn place(
        &self,
        from: PeerId,
        mut send: SendStream,
        recv: RecvStream,
        offer: SignedOffer,
        via: Vec<Contact>,
    ) -> Result<(), NetError> {
        if offer.offer.caller != from {
            let why = "the offer is not signed by the attached client".to_string();
            return finish_with(&mut send, CallSignal::Unreachable(why)).await;
        }
        let grants = self.grant(&offer);
        send_frame(&mut send, &CallSignal::RelayGranted(grants.clone())).await?;
        let callee = offer.offer.callee;
        let me = self.identity.peer_id();
        // Deliver locally if the callee is attached here, else through its supernodes.
        if let Some(conn) = self.attachments.get(&callee) {
            return deliver_to_client(conn, send, recv, offer, grants).await;
        }
        for contact in via.into_iter().filter(|c| c.id != me).take(MAX_VIA) {
            let Ok((mut fwd_send, mut fwd_recv)) = self.pool.open(contact).await else {
                continue;
            };
            let deliver = CallSignal::Deliver {
                offer: offer.clone(),
                relays: grants.clone(),
            };
            if send_frame(&mut fwd_send, &deliver).await.is_err() {
                continue;
            }
            // The remote's first frame tells whether it reached the callee.
            match read_raw_frame(&mut fwd_recv).await {
                Ok(Some(first))
                    if !matches!(
                        CallSignal::decode(&first),
                        Ok(CallSignal::Unreachable(_)) | Err(_)
                    ) =>
                {
                    send.write_all(&frame(&first)).await?;
                    splice(recv, send, fwd_recv, fwd_send).await;
                    return Ok(());
                }
                _ => continue,
            }
        }
        finish_with(
            &mut send,
            CallSignal::Unreachable(
                "the callee is not attached to any supernode we can reach".into(),
            ),
        )
        .await
    }

    /// Another supernode asks us to deliver an offer to a client attached here.
    pub async fn deliver(
        &self,
        mut send: SendStream,
        recv: RecvStream,
        offer: SignedOffer,
        relays: Vec<RelayGrant>,
    ) -> Result<(), NetError> {
        match self.attachments.get(&offer.offer.callee) {
            Some(conn) => deliver_to_client(conn, send, recv, offer, relays).await,
            None => {
                finish_with(
                    &mut send,
                    CallSignal::Unreachable("the callee is not attached here".into()),
                )
                .await
            }
        }
    }

    /// Relay tokens for the call: the least loaded relays we know, a primary and a
    /// standby.
    fn grant(&self, offer: &SignedOffer) -> Vec<RelayGrant> {
        let t = now();
        self.relays
            .choose(t, MAX_RELAYS)
            .into_iter()
            .map(|relay| {
                let token = RelayToken {
                    call_id: offer.offer.call_id,
                    parties: [offer.offer.caller, offer.offer.callee],
                    relay: relay.id,
                    issuer: self.identity.peer_id(),
                    expires_at: t + MAX_TOKEN_LIFETIME,
                }
                .sign(&self.identity);
                RelayGrant {
                    relay,
                    tcp: self.relays.tcp(&relay.id),
                    token,
                }
            })
            .collect()
    }
}

async fn deliver_to_client(
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    offer: SignedOffer,
    relays: Vec<RelayGrant>,
) -> Result<(), NetError> {
    let (mut to_send, to_recv) = conn.open_bi().await?;
    send_frame(&mut to_send, &CallSignal::Incoming { offer, relays }).await?;
    splice(recv, send, to_recv, to_send).await;
    Ok(())
}

async fn finish_with(send: &mut SendStream, signal: CallSignal) -> Result<(), NetError> {
    send_frame(send, &signal).await?;
    send.finish()?;
    Ok(())
}

fn frame(envelope: &[u8]) -> Vec<u8> {
    let mut out = (envelope.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(envelope);
    out
}

/// Copies call signalling frames both ways between two streams until both ends finish
/// (or the chain's lifetime runs out). Frames that are not valid `CallSignal`s are
/// dropped, not forwarded.
async fn splice(a_recv: RecvStream, a_send: SendStream, b_recv: RecvStream, b_send: SendStream) {
    let both = async {
        tokio::join!(pump(a_recv, b_send), pump(b_recv, a_send));
    };
    let _ = tokio::time::timeout(SIGNALLING_LIFETIME, both).await;
}

async fn pump(mut from: RecvStream, mut to: SendStream) {
    loop {
        match read_raw_frame(&mut from).await {
            Ok(Some(envelope)) => {
                if CallSignal::decode(&envelope).is_err() {
                    tracing::debug!("dropping a malformed call signalling frame");
                    continue;
                }
                if to.write_all(&frame(&envelope)).await.is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => {
                let _ = to.finish();
                return;
            }
        }
    }
}
