//! Call signalling routing: a supernode carries a call's signalling frames from the
//! caller's attachment to the callee's, possibly through the callee's supernode, and
//! grants the call a relay. It checks only what it routes on (the caller signed the
//! offer); the offer's key exchange is opaque to it.
//!
//! What a stranger cannot make it do (docs/security.md):
//! - dial arbitrary addresses: an offer goes only to the callee's attachment here, or
//!   to supernodes named in the callee's signed presence record (looked up here) or
//!   already in our routing table (`Place.via` is only a hint within those);
//! - sign relay tokens for calls that do not exist: tokens are granted only once the
//!   callee's side has answered the offer with `Ringing`, and at most
//!   `Limits::grants_per_key` / `grants_per_ip`;
//! - place calls without bound: `Limits::place_per_key` / `place_per_ip`.

use crate::driver::DriverHandle;
use crate::limits::Limits;
use crate::pool::Pool;
use crate::relays::RelayDirectory;
use parley_net::clock::{mono, now};
use parley_net::{read_raw_frame, read_raw_frame_within, send_frame, NetError};
use parley_proto::call::signal::{CallSignal, RelayGrant, SignedOffer, MAX_RELAYS, MAX_VIA};
use parley_proto::codec::WireMessage;
use parley_proto::presence::Contact;
use parley_proto::quota::KeyedQuota;
use parley_proto::relay::{RelayToken, MAX_TOKEN_LIFETIME};
use parley_proto::{Identity, PeerId};
use quinn::{Connection, RecvStream, SendStream};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A signalling chain lives at most this long: ringing plus answering.
const SIGNALLING_LIFETIME: Duration = Duration::from_secs(120);
/// How long the next supernode on the chain has to say whether it reached the callee.
const HOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many routing-table contacts `Place.via` hints are checked against.
const ROUTING_SCAN: usize = 4096;

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

/// Per-caller quotas.
struct Quotas {
    place_key: KeyedQuota<PeerId>,
    place_ip: KeyedQuota<IpAddr>,
    grant_key: KeyedQuota<PeerId>,
    grant_ip: KeyedQuota<IpAddr>,
}

/// What call routing needs from the server.
#[derive(Clone)]
pub struct CallRouter {
    pub identity: Identity,
    pub attachments: Attachments,
    pub relays: RelayDirectory,
    pub pool: Pool,
    driver: DriverHandle,
    quotas: Arc<Mutex<Quotas>>,
}

/// The far end of a chain: streams toward the callee, and its first frame if read.
type Route = (SendStream, RecvStream, Option<Vec<u8>>);

impl CallRouter {
    pub fn new(
        identity: Identity,
        attachments: Attachments,
        relays: RelayDirectory,
        pool: Pool,
        driver: DriverHandle,
        limits: &Limits,
    ) -> CallRouter {
        let n = limits.quota_keys;
        CallRouter {
            identity,
            attachments,
            relays,
            pool,
            driver,
            quotas: Arc::new(Mutex::new(Quotas {
                place_key: KeyedQuota::new(limits.place_per_key, n),
                place_ip: KeyedQuota::new(limits.place_per_ip, n),
                grant_key: KeyedQuota::new(limits.grants_per_key, n),
                grant_ip: KeyedQuota::new(limits.grants_per_ip, n),
            })),
        }
    }

    fn quotas(&self) -> std::sync::MutexGuard<'_, Quotas> {
        self.quotas.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller `from` placed a call on a stream of its attachment.
    pub async fn place(
        &self,
        from: Contact,
        mut send: SendStream,
        recv: RecvStream,
        offer: SignedOffer,
        via: Vec<Contact>,
    ) -> Result<(), NetError> {
        if offer.offer.caller != from.id {
            let why = "the offer is not signed by the attached client".to_string();
            return finish_with(&mut send, CallSignal::Unreachable(why)).await;
        }
        let ip = from.addr.ip();
        let allowed = {
            let t = mono();
            let mut q = self.quotas();
            // Check both before taking from either, so a refusal costs nothing.
            q.place_key.allows(&from.id, t)
                && q.place_ip.allows(&ip, t)
                && q.place_key.take(&from.id, t)
                && q.place_ip.take(&ip, t)
        };
        if !allowed {
            tracing::warn!(peer = %from.addr, id = %from.id.short(), "call placing over quota");
            let why = "too many calls placed from this client or address; try again shortly";
            return finish_with(&mut send, CallSignal::Unreachable(why.into())).await;
        }
        match self.route(&offer, via).await {
            Some(route) => {
                self.splice_granting(send, recv, route, offer, ip).await;
                Ok(())
            }
            None => {
                let why = "the callee is not attached to any supernode we can reach";
                finish_with(&mut send, CallSignal::Unreachable(why.into())).await
            }
        }
    }

    /// A chain to the callee: its attachment here, or a supernode that reached it.
    async fn route(&self, offer: &SignedOffer, via: Vec<Contact>) -> Option<Route> {
        let callee = offer.offer.callee;
        if let Some(conn) = self.attachments.get(&callee) {
            let (mut to_send, to_recv) = conn.open_bi().await.ok()?;
            let incoming = CallSignal::Incoming {
                offer: offer.clone(),
                relays: Vec::new(),
            };
            send_frame(&mut to_send, &incoming).await.ok()?;
            return Some((to_send, to_recv, None));
        }
        for contact in self.targets(callee, via).await {
            let Ok((mut fwd_send, mut fwd_recv)) = self.pool.open(contact).await else {
                continue;
            };
            let deliver = CallSignal::Deliver {
                offer: offer.clone(),
                relays: Vec::new(),
            };
            if send_frame(&mut fwd_send, &deliver).await.is_err() {
                continue;
            }
            // The remote's first frame tells whether it reached the callee.
            match read_raw_frame_within(&mut fwd_recv, HOP_TIMEOUT).await {
                Ok(Some(first))
                    if !matches!(
                        CallSignal::decode(&first),
                        Ok(CallSignal::Unreachable(_)) | Err(_)
                    ) =>
                {
                    return Some((fwd_send, fwd_recv, Some(first)))
                }
                _ => continue,
            }
        }
        None
    }

    /// Where an offer for `callee` may go: the supernodes in the callee's signed
    /// presence record (as we look it up, not as the caller says), then `via` hints
    /// that are in our routing table. Never ourselves; at most [`MAX_VIA`].
    async fn targets(&self, callee: PeerId, via: Vec<Contact>) -> Vec<Contact> {
        let me = self.identity.peer_id();
        let mut out: Vec<Contact> = Vec::new();
        if let Ok(Some(record)) = self.driver.lookup(callee).await {
            if record.record.id == callee && record.verify(now()).is_ok() {
                out.extend(record.record.supernodes.iter().copied());
            }
        }
        let hinted: Vec<Contact> = via.into_iter().take(MAX_VIA).collect();
        if hinted.iter().any(|c| !out.contains(c)) {
            let known = self.driver.known(ROUTING_SCAN).await.unwrap_or_default();
            out.extend(hinted.into_iter().filter(|c| known.contains(c)));
        }
        let mut seen = Vec::new();
        out.retain(|c| {
            c.id != me && !seen.contains(c) && {
                seen.push(*c);
                true
            }
        });
        out.truncate(MAX_VIA);
        out
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
            Some(conn) => {
                let (mut to_send, to_recv) = conn.open_bi().await?;
                send_frame(&mut to_send, &CallSignal::Incoming { offer, relays }).await?;
                splice(recv, send, to_recv, to_send).await;
                Ok(())
            }
            None => {
                finish_with(
                    &mut send,
                    CallSignal::Unreachable("the callee is not attached here".into()),
                )
                .await
            }
        }
    }

    /// Relay tokens for the call, within the caller's quotas: the least loaded relays
    /// we know, a primary and a standby. Empty when over quota or no relay is known.
    fn grant(&self, offer: &SignedOffer, ip: IpAddr) -> Vec<RelayGrant> {
        let caller = offer.offer.caller;
        let allowed = {
            let t = mono();
            let mut q = self.quotas();
            q.grant_key.allows(&caller, t)
                && q.grant_ip.allows(&ip, t)
                && q.grant_key.take(&caller, t)
                && q.grant_ip.take(&ip, t)
        };
        if !allowed {
            tracing::warn!(%ip, caller = %caller.short(), "relay grant over quota");
            return Vec::new();
        }
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

    /// Like [`splice`], for the caller's supernode: when the callee's side first rings,
    /// the call's relay grants go to both parties (`RelayGranted`, to the caller just
    /// before the `Ringing`). Grants from anyone else on the chain are dropped.
    async fn splice_granting(
        &self,
        caller_send: SendStream,
        caller_recv: RecvStream,
        route: Route,
        offer: SignedOffer,
        ip: IpAddr,
    ) {
        let (callee_send, callee_recv, first) = route;
        let callee_send = Arc::new(tokio::sync::Mutex::new(callee_send));
        let up = {
            let callee_send = callee_send.clone();
            async move {
                let mut from = caller_recv;
                while let Some(envelope) = next_signal(&mut from).await {
                    let mut to = callee_send.lock().await;
                    if to.write_all(&frame(&envelope)).await.is_err() {
                        return;
                    }
                }
                let _ = callee_send.lock().await.finish();
            }
        };
        let down = async move {
            let (mut from, mut to, mut pending, mut granted) =
                (callee_recv, caller_send, first, false);
            loop {
                let envelope = match pending.take() {
                    Some(f) if CallSignal::decode(&f).is_ok() => f,
                    Some(_) => continue,
                    None => match next_signal(&mut from).await {
                        Some(f) => f,
                        None => break,
                    },
                };
                let signal = CallSignal::decode(&envelope).ok();
                if matches!(signal, Some(CallSignal::RelayGranted(_))) {
                    continue;
                }
                if matches!(signal, Some(CallSignal::Ringing)) && !granted {
                    granted = true;
                    let grants = CallSignal::RelayGranted(self.grant(&offer, ip));
                    if send_frame(&mut to, &grants).await.is_err() {
                        return;
                    }
                    let _ = send_frame(&mut *callee_send.lock().await, &grants).await;
                }
                if to.write_all(&frame(&envelope)).await.is_err() {
                    return;
                }
            }
            let _ = to.finish();
        };
        let both = async {
            tokio::join!(up, down);
        };
        let _ = tokio::time::timeout(SIGNALLING_LIFETIME, both).await;
    }
}

/// The next well-formed call signalling frame; malformed ones are dropped. `None` at
/// the end of the stream or on an error.
async fn next_signal(from: &mut RecvStream) -> Option<Vec<u8>> {
    loop {
        match read_raw_frame(from).await {
            Ok(Some(envelope)) if CallSignal::decode(&envelope).is_ok() => return Some(envelope),
            Ok(Some(_)) => tracing::debug!("dropping a malformed call signalling frame"),
            Ok(None) | Err(_) => return None,
        }
    }
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
    while let Some(envelope) = next_signal(&mut from).await {
        if to.write_all(&frame(&envelope)).await.is_err() {
            return;
        }
    }
    let _ = to.finish();
}
