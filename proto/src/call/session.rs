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
//! send up the signalling chain).

use crate::call::e2e::{self, PendingHandshake, SessionKeys};
use crate::call::signal::{CallAnswer, CallOffer, CallSignal, RelayGrant, SignedOffer};
use crate::identity::{Identity, PeerId};
use crate::presence::{CandidateAddr, Contact};
use crate::relay::token::CallId;
use crate::time::Timestamp;
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
    deadline: Timestamp,
    ringing: bool,
    out: Outbox,
}

impl CallerSession {
    /// Starts a call to `callee` (reachable through `via`); the `Place` signal to send
    /// to our supernode is queued.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        me: &Identity,
        my_name: &str,
        callee: PeerId,
        via: Vec<Contact>,
        candidates: Vec<CandidateAddr>,
        call_id: CallId,
        now: Timestamp,
        ring_timeout: Duration,
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
            deadline: now + ring_timeout,
            ringing: false,
            out,
        })
    }

    /// A frame from the signalling chain.
    pub fn handle_signal(&mut self, _now: Timestamp, signal: CallSignal) {
        if self.out.done {
            return;
        }
        match signal {
            CallSignal::RelayGranted(mut grants) => {
                grants.truncate(crate::call::signal::MAX_RELAYS);
                self.relays = grants;
            }
            CallSignal::Ringing if !self.ringing => {
                self.ringing = true;
                self.out.events.push_back(CallEvent::Ringing);
            }
            CallSignal::Accept(signed) => self.accepted(signed),
            CallSignal::Reject => self.out.end(EndReason::Rejected),
            CallSignal::Busy => self.out.end(EndReason::Busy),
            CallSignal::Unreachable(why) => self.out.end(EndReason::Unreachable(why)),
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

    /// The ring timeout.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if !self.out.done && now >= self.deadline {
            self.out.signals.push_back(CallSignal::Cancel);
            self.out.end(EndReason::RingTimeout);
        }
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
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
    offer: CallOffer,
    relays: Vec<RelayGrant>,
    out: Outbox,
}

impl CalleeSession {
    /// An incoming offer. A tampered, stale or misaddressed offer is refused here
    /// (`Err`), and nothing is sent back: the caller times out.
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
        relays.truncate(crate::call::signal::MAX_RELAYS);
        Ok(CalleeSession { offer, relays, out })
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
                self.out.signals.push_back(CallSignal::Reject);
                self.out.end(EndReason::Failed(e.to_string()));
            }
        }
    }

    /// Decline.
    pub fn reject(&mut self) {
        if !self.out.done {
            self.out.signals.push_back(CallSignal::Reject);
            self.out.end(EndReason::Rejected);
        }
    }

    /// A frame from the caller's side (only `Cancel` matters before answering).
    pub fn handle_signal(&mut self, signal: CallSignal) {
        if let CallSignal::Cancel = signal {
            self.out.end(EndReason::Cancelled);
        }
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
mod tests {
    use super::*;

    fn start(alice: &Identity, bob: &Identity, now: Timestamp) -> (CallerSession, SignedOffer) {
        let mut caller = CallerSession::start(
            alice,
            "alice",
            bob.peer_id(),
            vec![],
            vec![],
            CallId([3; 16]),
            now,
            DEFAULT_RING_TIMEOUT,
        )
        .unwrap();
        let Some(CallSignal::Place { offer, .. }) = caller.poll_signal() else {
            panic!("no offer")
        };
        (caller, offer)
    }

    #[test]
    fn an_answered_call_connects_both_sides_with_the_same_code() {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let t = Timestamp(1_000_000);
        let (mut caller, offer) = start(&alice, &bob, t);
        let mut callee = CalleeSession::incoming(&bob, &offer, vec![], t).unwrap();
        assert_eq!(callee.caller().0, alice.peer_id());
        caller.handle_signal(t, callee.poll_signal().unwrap());
        assert_eq!(caller.poll_event(), Some(CallEvent::Ringing));
        callee.accept(&bob, vec![]);
        caller.handle_signal(t, callee.poll_signal().unwrap());
        let code = |e| match e {
            Some(CallEvent::Connected { safety_code, .. }) => safety_code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(caller.poll_event()), code(callee.poll_event()));
        assert!(caller.take_keys().is_some() && callee.take_keys().is_some());
    }

    #[test]
    fn a_tampered_offer_is_refused() {
        let (alice, bob, mallory) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let t = Timestamp(1_000_000);
        let (_caller, offer) = start(&alice, &bob, t);
        // A supernode swaps the caller's key for its own, without re-signing...
        let mut swapped = offer.clone();
        swapped.offer.caller = mallory.peer_id();
        assert!(CalleeSession::incoming(&bob, &swapped, vec![], t).is_err());
        // ...or re-signs it with its own key: the signature checks, the handshake does not.
        let resigned = swapped.offer.clone().sign(&mallory);
        let mut callee = CalleeSession::incoming(&bob, &resigned, vec![], t).unwrap();
        callee.accept(&bob, vec![]);
        assert_eq!(callee.poll_signal(), Some(CallSignal::Ringing));
        assert_eq!(callee.poll_signal(), Some(CallSignal::Reject));
        assert!(matches!(
            callee.poll_event(),
            Some(CallEvent::Ended(EndReason::Failed(_)))
        ));
        assert!(callee.take_keys().is_none());
    }

    #[test]
    fn stale_and_misaddressed_offers_are_refused() {
        let (alice, bob, carol) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let t = Timestamp(1_000_000);
        let (_c, offer) = start(&alice, &bob, t);
        assert!(CalleeSession::incoming(&carol, &offer, vec![], t).is_err());
        assert!(
            CalleeSession::incoming(&bob, &offer, vec![], t + Duration::from_secs(600)).is_err()
        );
    }

    #[test]
    fn reject_busy_and_ring_timeout_end_the_call() {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let t = Timestamp(1_000_000);
        for (signal, reason) in [
            (CallSignal::Reject, EndReason::Rejected),
            (CallSignal::Busy, EndReason::Busy),
        ] {
            let (mut caller, _) = start(&alice, &bob, t);
            caller.handle_signal(t, signal);
            assert_eq!(caller.poll_event(), Some(CallEvent::Ended(reason)));
        }
        let (mut caller, _) = start(&alice, &bob, t);
        let due = caller.poll_timeout().unwrap();
        caller.handle_timeout(due);
        assert_eq!(caller.poll_signal(), Some(CallSignal::Cancel));
        assert_eq!(
            caller.poll_event(),
            Some(CallEvent::Ended(EndReason::RingTimeout))
        );
        assert_eq!(caller.poll_timeout(), None);
    }

    #[test]
    fn cancel_reaches_the_callee() {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let t = Timestamp(1_000_000);
        let (mut caller, offer) = start(&alice, &bob, t);
        let mut callee = CalleeSession::incoming(&bob, &offer, vec![], t).unwrap();
        caller.cancel();
        callee.handle_signal(caller.poll_signal().unwrap());
        assert_eq!(
            callee.poll_event(),
            Some(CallEvent::Ended(EndReason::Cancelled))
        );
    }
}
