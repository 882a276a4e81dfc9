//! The call signalling state machines of the two parties.
//!
//! ```text
//! caller:  Offering ──Ringing──▶ Ringing ──Accept──▶ Connected
//!             │                     │ Reject/Busy/Cancel/timeout/Unreachable
//!             └─────────────────────┴──────────────▶ Ended(reason)
//! callee:  Alerting ──accept()──▶ Connected     ──reject()/Cancel──▶ Ended
//! ```
//! Feed received [`CallSignal`]s with `handle_signal`, call `handle_timeout` at
//! `poll_timeout`, and drain `poll_event` (for the user) and `poll_signal` (frames to
//! send up the signalling chain). Timers run on monotonic time ([`Mono`]); the wall
//! clock ([`Timestamp`]) is only written into the offer (`sent_at`) and used to check
//! an incoming offer's freshness.
//!
//! What the caller believes from the chain (every supernode on it could forge frames):
//! relay grants only if their tokens are signed for this call and these two parties
//! (and, when known, by our own supernode); `Declined` only if the callee signed it;
//! `Accept` only if the callee signed it and the key exchange completes; `Unreachable`
//! only before the callee has rung. The unsigned `Reject` and `Busy` are ignored.

use crate::call::e2e::{self, PendingHandshake, SessionKeys};
use crate::call::signal::{
    CallAnswer, CallDecline, CallOffer, CallSignal, OfferPurpose, RelayGrant, SignedOffer,
    MAX_RELAYS,
};
use crate::identity::{Identity, PeerId};
use crate::presence::{CandidateAddr, Contact};
use crate::relay::token::CallId;
use crate::time::{Mono, Timestamp};
use std::collections::VecDeque;
use std::time::Duration;

/// How long a call rings before the caller gives up.
pub const DEFAULT_RING_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The callee declined.
    Rejected,
    /// The callee was in another call.
    Busy,
    /// The caller gave up before an answer.
    Cancelled,
    /// Nobody answered in time.
    RingTimeout,
    /// The callee could not be reached.
    Unreachable(String),
    /// Signalling or key exchange failed (tampering, protocol error).
    Failed(String),
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Rejected => f.write_str("rejected"),
            EndReason::Busy => f.write_str("busy"),
            EndReason::Cancelled => f.write_str("cancelled"),
            EndReason::RingTimeout => f.write_str("no answer"),
            EndReason::Unreachable(why) => write!(f, "unreachable: {why}"),
            EndReason::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// What the user should see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEvent {
    /// The callee's device is ringing.
    Ringing,
    /// Answered; media may flow. Carries everything the media layer needs.
    Connected {
        /// The peer's direct candidates.
        peer_candidates: Vec<CandidateAddr>,
        /// The relays to use, preferred first.
        relays: Vec<RelayGrant>,
        /// Digits both users can compare.
        safety_code: String,
    },
    /// The call is over before media.
    Ended(EndReason),
}

/// What both sessions share: events out, signals out, the negotiated keys.
#[derive(Default)]
struct Outbox {
    events: VecDeque<CallEvent>,
    signals: VecDeque<CallSignal>,
    keys: Option<SessionKeys>,
    done: bool,
}

impl Outbox {
    fn end(&mut self, reason: EndReason) {
        if !self.done {
            self.done = true;
            self.events.push_back(CallEvent::Ended(reason));
        }
    }
}

/// The caller's side of one call.
pub struct CallerSession {
    offer: CallOffer,
    pending: Option<PendingHandshake>,
    relays: Vec<RelayGrant>,
    /// The supernode that must have issued our relay tokens, if known.
    issuer: Option<PeerId>,
    deadline: Mono,
    ringing: bool,
    out: Outbox,
}

impl CallerSession {
    /// Starts a call to `callee` (reachable through `via`); the `Place` signal to send
    /// to our supernode is queued. `now` is the wall clock (written into the offer as
    /// `sent_at`); `mono` is monotonic time, on which the ring timeout runs.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        me: &Identity,
        my_name: &str,
        callee: PeerId,
        via: Vec<Contact>,
        candidates: Vec<CandidateAddr>,
        call_id: CallId,
        now: Timestamp,
        mono: Mono,
        ring_timeout: Duration,
    ) -> Result<CallerSession, e2e::E2eError> {
        CallerSession::offer(
            me,
            my_name,
            callee,
            via,
            candidates,
            call_id,
            (now, mono),
            ring_timeout,
            OfferPurpose::Call,
        )
    }

    /// [`CallerSession::start`] for any purpose: a call, or a file offer (issue 17),
    /// which is signalled, rung and answered the same way. `clocks` is (wall, monotonic).
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        me: &Identity,
        my_name: &str,
        callee: PeerId,
        via: Vec<Contact>,
        candidates: Vec<CandidateAddr>,
        call_id: CallId,
        (now, mono): (Timestamp, Mono),
        ring_timeout: Duration,
        purpose: OfferPurpose,
    ) -> Result<CallerSession, e2e::E2eError> {
        let prologue = e2e::prologue(&call_id.0, &me.peer_id(), &callee);
        let (pending, handshake) = e2e::initiate(me, &callee, &prologue)?;
        let offer = CallOffer {
            call_id,
            caller: me.peer_id(),
            callee,
            caller_name: my_name.to_string(),
            candidates,
            handshake,
            sent_at: now,
            purpose,
        };
        let mut out = Outbox::default();
        out.signals.push_back(CallSignal::Place {
            offer: offer.clone().sign(me),
            via,
        });
        Ok(CallerSession {
            offer,
            pending: Some(pending),
            relays: Vec::new(),
            issuer: None,
            deadline: mono + ring_timeout,
            ringing: false,
            out,
        })
    }

    /// Accept relay grants only when `supernode` (the one we placed the call through)
    /// issued their tokens.
    pub fn with_grant_issuer(mut self, supernode: PeerId) -> CallerSession {
        self.issuer = Some(supernode);
        self
    }

    /// A frame from the signalling chain.
    pub fn handle_signal(&mut self, _now: Timestamp, signal: CallSignal) {
        if self.out.done {
            return;
        }
        match signal {
            CallSignal::RelayGranted(grants) if self.relays.is_empty() => {
                self.relays = grants
                    .into_iter()
                    .filter(|g| g.verify(&self.offer, self.issuer.as_ref()))
                    .take(MAX_RELAYS)
                    .collect();
            }
            CallSignal::Ringing if !self.ringing => {
                self.ringing = true;
                self.out.events.push_back(CallEvent::Ringing);
            }
            CallSignal::Accept(signed) => self.accepted(signed),
            CallSignal::Declined(signed) => {
                if let Ok(d) = signed.verify(&self.offer) {
                    let reason = if d.busy {
                        EndReason::Busy
                    } else {
                        EndReason::Rejected
                    };
                    self.out.end(reason);
                }
            }
            CallSignal::Unreachable(why) if !self.ringing => {
                self.out.end(EndReason::Unreachable(why))
            }
            _ => {}
        }
    }

    fn accepted(&mut self, signed: crate::call::signal::SignedAnswer) {
        let answer = match signed.verify(&self.offer) {
            Ok(a) => a.clone(),
            Err(e) => return self.out.end(EndReason::Failed(e.to_string())),
        };
        let Some(pending) = self.pending.take() else {
            return;
        };
        match pending.finish(&answer.handshake) {
            Ok(keys) => {
                let safety_code = keys.safety_code();
                self.out.keys = Some(keys);
                self.out.done = true;
                self.out.events.push_back(CallEvent::Connected {
                    peer_candidates: answer.candidates,
                    relays: self.relays.clone(),
                    safety_code,
                });
            }
            Err(e) => self.out.end(EndReason::Failed(e.to_string())),
        }
    }

    /// The signalling chain broke before an answer.
    pub fn handle_lost(&mut self, why: &str) {
        self.out.end(EndReason::Unreachable(why.to_string()));
    }

    /// The user hangs up before an answer: cancel.
    pub fn cancel(&mut self) {
        if !self.out.done {
            self.out.signals.push_back(CallSignal::Cancel);
            self.out.end(EndReason::Cancelled);
        }
    }

    /// The ring timeout (monotonic time).
    pub fn handle_timeout(&mut self, now: Mono) {
        if !self.out.done && now >= self.deadline {
            self.out.signals.push_back(CallSignal::Cancel);
            self.out.end(EndReason::RingTimeout);
        }
    }

    /// When `handle_timeout` is next due (monotonic time).
    pub fn poll_timeout(&self) -> Option<Mono> {
        (!self.out.done).then_some(self.deadline)
    }

    /// Next user-visible event.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.out.events.pop_front()
    }

    /// Next frame to send toward the callee.
    pub fn poll_signal(&mut self) -> Option<CallSignal> {
        self.out.signals.pop_front()
    }

    /// The media keys, once connected (taken once).
    pub fn take_keys(&mut self) -> Option<SessionKeys> {
        self.out.keys.take()
    }

    /// The call's id.
    pub fn call_id(&self) -> CallId {
        self.offer.call_id
    }
}

/// The callee's side of one call.
pub struct CalleeSession {
    me: Identity,
    offer: CallOffer,
    relays: Vec<RelayGrant>,
    out: Outbox,
}

/// The signed "busy" for an offer we cannot take (already in a call). An offer that
/// does not verify gets nothing: the caller times out.
pub fn busy_signal(me: &Identity, offer: &SignedOffer, now: Timestamp) -> Option<CallSignal> {
    let o = offer.verify(now, &me.peer_id()).ok()?;
    Some(decline(me, o, true))
}

fn decline(me: &Identity, offer: &CallOffer, busy: bool) -> CallSignal {
    CallSignal::Declined(
        CallDecline {
            call_id: offer.call_id,
            callee: offer.callee,
            busy,
        }
        .sign(me),
    )
}

impl CalleeSession {
    /// An incoming offer. A tampered, stale or misaddressed offer is refused here
    /// (`Err`, saying why: a stale one says by how much the clocks differ), and nothing
    /// is sent back: the caller times out. Relay grants usually arrive later, once we
    /// ring (see [`CalleeSession::handle_signal`]); grants in the offer's frame count too.
    pub fn incoming(
        me: &Identity,
        offer: &SignedOffer,
        mut relays: Vec<RelayGrant>,
        now: Timestamp,
    ) -> Result<CalleeSession, String> {
        let offer = offer
            .verify(now, &me.peer_id())
            .map_err(|e| e.to_string())?
            .clone();
        let mut out = Outbox::default();
        out.signals.push_back(CallSignal::Ringing);
        relays.retain(|g| g.verify(&offer, None));
        relays.truncate(MAX_RELAYS);
        Ok(CalleeSession {
            me: me.clone(),
            offer,
            relays,
            out,
        })
    }

    /// Who is calling, and their claimed name.
    pub fn caller(&self) -> (PeerId, &str) {
        (self.offer.caller, &self.offer.caller_name)
    }

    /// The call's id.
    pub fn call_id(&self) -> CallId {
        self.offer.call_id
    }

    /// Accept: completes the key exchange (refusing a caller whose key does not match
    /// the offer) and queues the signed answer.
    pub fn accept(&mut self, me: &Identity, candidates: Vec<CandidateAddr>) {
        if self.out.done {
            return;
        }
        let o = &self.offer;
        let prologue = e2e::prologue(&o.call_id.0, &o.caller, &o.callee);
        match e2e::respond(me, &o.caller, &prologue, &o.handshake) {
            Ok((keys, handshake)) => {
                let answer = CallAnswer {
                    call_id: o.call_id,
                    callee: o.callee,
                    candidates,
                    handshake,
                }
                .sign(me);
                self.out.signals.push_back(CallSignal::Accept(answer));
                let safety_code = keys.safety_code();
                self.out.keys = Some(keys);
                self.out.done = true;
                self.out.events.push_back(CallEvent::Connected {
                    peer_candidates: self.offer.candidates.clone(),
                    relays: self.relays.clone(),
                    safety_code,
                });
            }
            Err(e) => {
                let refusal = decline(&self.me, &self.offer, false);
                self.out.signals.push_back(refusal);
                self.out.end(EndReason::Failed(e.to_string()));
            }
        }
    }

    /// Decline.
    pub fn reject(&mut self) {
        if !self.out.done {
            let refusal = decline(&self.me, &self.offer, false);
            self.out.signals.push_back(refusal);
            self.out.end(EndReason::Rejected);
        }
    }

    /// A frame from the caller's side: `Cancel`, or the relay grants the caller's
    /// supernode sends once we ring (kept if their tokens are signed for this call and
    /// these parties; the first grants win). Returns whether it was a grant.
    pub fn handle_signal(&mut self, signal: CallSignal) -> bool {
        match signal {
            CallSignal::Cancel => {
                self.out.end(EndReason::Cancelled);
                false
            }
            CallSignal::RelayGranted(grants) => {
                if self.relays.is_empty() && !self.out.done {
                    self.relays = grants
                        .into_iter()
                        .filter(|g| g.verify(&self.offer, None))
                        .take(MAX_RELAYS)
                        .collect();
                }
                true
            }
            _ => false,
        }
    }

    /// The relays granted so far.
    pub fn relays(&self) -> &[RelayGrant] {
        &self.relays
    }

    /// The signalling chain broke before we answered: the caller is gone.
    pub fn handle_lost(&mut self) {
        self.out.end(EndReason::Cancelled);
    }

    /// Next user-visible event.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.out.events.pop_front()
    }

    /// Next frame to send toward the caller.
    pub fn poll_signal(&mut self) -> Option<CallSignal> {
        self.out.signals.pop_front()
    }

    /// The media keys, once accepted (taken once).
    pub fn take_keys(&mut self) -> Option<SessionKeys> {
        self.out.keys.take()
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
