//! A file offer in call signalling (issue 17): the sender offers through its supernode
//! exactly as `parley call` does (lookup, signed offer, the supernode chain), with the
//! offer's purpose set to the file; the receiver's running client answers it without
//! ringing anyone. The answer's candidates are what the sender then dials with the
//! file ALPN ([`super::hello`]).

use crate::session::{IncomingCall, SessionHandle};
use anyhow::{anyhow, Context, Result};
use parley_net::clock::{mono, mono_until, now};
use parley_net::{read_frame, send_frame};
use parley_proto::call::session::{CallEvent, CalleeSession, CallerSession, EndReason};
use parley_proto::call::signal::{CallSignal, FileOffer, OfferPurpose, RelayGrant};
use parley_proto::messages::{ClientToSupernode, SupernodeToClient};
use parley_proto::presence::CandidateAddr;
use parley_proto::relay::CallId;
use parley_proto::{Identity, PeerId};
use std::time::Duration;

/// How long a file offer waits for its answer (a running client answers at once).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// How an offer ended.
#[derive(Debug)]
pub enum Offered {
    /// Accepted: the recipient's direct candidates, and the relays granted.
    Accepted(Vec<CandidateAddr>, Vec<RelayGrant>),
    /// Refused by the recipient (signed): not worth asking again.
    Refused(String),
    /// Not reached now (offline, no answer, the chain broke): worth asking again.
    Unreachable(String),
}

/// Offers `file` to `to` through our attachment.
pub async fn offer(
    session: &SessionHandle,
    my_name: &str,
    to: PeerId,
    file: FileOffer,
) -> Result<Offered> {
    let (link, reply) = session
        .ask(&ClientToSupernode::Lookup(to), Duration::from_secs(15))
        .await?;
    let record = match reply {
        SupernodeToClient::Found(signed) => signed
            .verify(now())
            .map_err(|e| anyhow!("the recipient's presence record is invalid: {e}"))?
            .clone(),
        SupernodeToClient::NotFound => return Ok(Offered::Unreachable("not online".into())),
        other => return Ok(Offered::Unreachable(format!("lookup failed: {other:?}"))),
    };
    let mut call = CallerSession::offer(
        &session.identity,
        my_name,
        to,
        record.supernodes.clone(),
        session.candidates(),
        CallId::random(),
        (now(), mono()),
        ANSWER_TIMEOUT,
        OfferPurpose::File(file),
    )?
    .with_grant_issuer(link.id);
    let (mut send, mut recv) = link
        .conn
        .open_bi()
        .await
        .context("opening the signalling stream")?;
    let outcome = loop {
        while let Some(signal) = call.poll_signal() {
            let _ = send_frame(&mut send, &signal).await;
        }
        if let Some(event) = call.poll_event() {
            match event {
                CallEvent::Ringing => continue,
                CallEvent::Connected {
                    peer_candidates,
                    relays,
                    ..
                } => break Offered::Accepted(peer_candidates, relays),
                // The signalling carries no reason (the receiver prints it): not
                // accepting files, not a contact, a name it refuses, or full.
                CallEvent::Ended(EndReason::Rejected) => {
                    break Offered::Refused("refused the file (their client says why)".into())
                }
                CallEvent::Ended(EndReason::Busy) => {
                    break Offered::Refused("busy; try again later".into())
                }
                CallEvent::Ended(EndReason::Failed(why)) => break Offered::Refused(why),
                CallEvent::Ended(other) => break Offered::Unreachable(other.to_string()),
            }
        }
        let wake = call
            .poll_timeout()
            .map(mono_until)
            .unwrap_or(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(wake) => call.handle_timeout(mono()),
            frame = read_frame::<CallSignal>(&mut recv) => match frame {
                Ok(signal) => call.handle_signal(now(), signal),
                Err(e) => call.handle_lost(&format!("signalling lost: {e}")),
            },
        }
    };
    let _ = send.finish();
    Ok(outcome)
}

/// The file an incoming offer is for, if it is a file offer (unverified).
pub fn file_of(call: &IncomingCall) -> Option<(PeerId, &FileOffer)> {
    match &call.signal {
        CallSignal::Incoming { offer, .. } => match &offer.offer.purpose {
            OfferPurpose::File(f) => Some((offer.offer.caller, f)),
            OfferPurpose::Call => None,
        },
        _ => None,
    }
}

/// How long, after ringing, the receiver waits for the relay grants the sender's
/// supernode sends (it always sends them, possibly none, on the first ring).
const GRANT_WAIT: Duration = Duration::from_secs(5);

/// What an accepted offer gives the receiver: the sender, the file, the relays.
pub type Answered = (PeerId, FileOffer, Vec<RelayGrant>);

/// Verifies an incoming file offer (signature, freshness, addressed to us), rings
/// (the sender's supernode then grants relays) and runs `decide` on it with the
/// grants; accepts with `candidates` when it says `Ok`, declines (signed) otherwise.
/// Returns what was accepted, or who offered (if known) and why it was refused.
pub async fn answer(
    identity: &Identity,
    call: IncomingCall,
    candidates: Vec<CandidateAddr>,
    decide: impl FnOnce(&PeerId, &FileOffer, &[RelayGrant]) -> Result<(), String>,
) -> Result<Answered, (Option<PeerId>, String)> {
    let IncomingCall {
        mut send,
        mut recv,
        signal,
    } = call;
    let CallSignal::Incoming { offer, relays } = signal else {
        return Err((None, "not an offer".into()));
    };
    let mut session = match CalleeSession::incoming(identity, &offer, relays, now()) {
        Ok(s) => s,
        Err(why) => {
            // Nothing is signed for an offer that does not verify.
            let _ = send.finish();
            return Err((None, why));
        }
    };
    let sender = offer.offer.caller;
    let OfferPurpose::File(file) = offer.offer.purpose else {
        return Err((Some(sender), "not a file offer".into()));
    };
    while let Some(s) = session.poll_signal() {
        let _ = send_frame(&mut send, &s).await;
    }
    if let Ok(Ok(signal)) = tokio::time::timeout(GRANT_WAIT, read_frame(&mut recv)).await {
        session.handle_signal(signal);
    }
    let relays = session.relays().to_vec();
    let verdict = decide(&sender, &file, &relays);
    match &verdict {
        Ok(()) => session.accept(identity, candidates),
        Err(_) => session.reject(),
    }
    while let Some(s) = session.poll_signal() {
        let _ = send_frame(&mut send, &s).await;
    }
    let _ = send.finish();
    match verdict {
        Ok(()) => match session.poll_event() {
            Some(CallEvent::Ended(reason)) => Err((Some(sender), reason.to_string())),
            _ => Ok((sender, file, relays)),
        },
        Err(why) => Err((Some(sender), why)),
    }
}
