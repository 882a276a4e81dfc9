//! Tests of the call signalling machines (`session.rs`).

use super::*;
use crate::call::signal::{CallDecline, OFFER_FRESHNESS};
use crate::relay::token::RelayToken;
use crate::time::MAX_CLOCK_SKEW;

fn start(alice: &Identity, bob: &Identity, now: Timestamp) -> (CallerSession, SignedOffer) {
    let mut caller = CallerSession::start(
        alice,
        "alice",
        bob.peer_id(),
        vec![],
        vec![],
        CallId([3; 16]),
        now,
        Mono(0),
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
    assert!(matches!(
        callee.poll_signal(),
        Some(CallSignal::Declined(d)) if !d.decline.busy
    ));
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
    // Minutes of clock difference either way are tolerated; more is refused, saying
    // by how much.
    let ten_min = Duration::from_secs(600); // within the 15 min allowed
    assert!(CalleeSession::incoming(&bob, &offer, vec![], t + ten_min).is_ok());
    let (_c, late) = start(&alice, &bob, t + ten_min);
    assert!(CalleeSession::incoming(&bob, &late, vec![], t).is_ok());
    let far = t + OFFER_FRESHNESS + MAX_CLOCK_SKEW + Duration::from_secs(1);
    let err = CalleeSession::incoming(&bob, &offer, vec![], far)
        .err()
        .unwrap();
    assert!(err.contains("-1021 s"), "{err}");
    let (_c, future) = start(&alice, &bob, t + MAX_CLOCK_SKEW + Duration::from_secs(1));
    let err = CalleeSession::incoming(&bob, &future, vec![], t)
        .err()
        .unwrap();
    assert!(err.contains("901 s"), "{err}");
}

#[test]
fn reject_busy_and_ring_timeout_end_the_call() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let t = Timestamp(1_000_000);
    // A signed refusal from the callee ends the call...
    let (mut caller, offer) = start(&alice, &bob, t);
    let mut callee = CalleeSession::incoming(&bob, &offer, vec![], t).unwrap();
    callee.poll_signal();
    callee.reject();
    caller.handle_signal(t, callee.poll_signal().unwrap());
    assert_eq!(
        caller.poll_event(),
        Some(CallEvent::Ended(EndReason::Rejected))
    );
    let (mut caller, offer) = start(&alice, &bob, t);
    caller.handle_signal(t, busy_signal(&bob, &offer, t).unwrap());
    assert_eq!(caller.poll_event(), Some(CallEvent::Ended(EndReason::Busy)));
    let (mut caller, _) = start(&alice, &bob, t);
    let due = caller.poll_timeout().unwrap();
    assert_eq!(due, Mono(0) + DEFAULT_RING_TIMEOUT);
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

fn grant(issuer: &Identity, offer: &CallOffer, parties: [PeerId; 2]) -> RelayGrant {
    let relay = Identity::generate().peer_id();
    let token = RelayToken {
        call_id: offer.call_id,
        parties,
        relay,
        issuer: issuer.peer_id(),
        expires_at: Timestamp(2_000_000),
    }
    .sign(issuer);
    RelayGrant {
        relay: Contact {
            id: relay,
            addr: ([127, 0, 0, 1], 9).into(),
        },
        tcp: None,
        token,
    }
}

#[test]
fn forged_refusals_and_late_unreachables_do_not_end_a_call() {
    let (alice, bob, mallory) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let t = Timestamp(1_000_000);
    let (mut caller, offer) = start(&alice, &bob, t);
    // Unsigned refusals (anyone on the chain could send them) are ignored.
    caller.handle_signal(t, CallSignal::Reject);
    caller.handle_signal(t, CallSignal::Busy);
    // A refusal signed by someone other than the callee is ignored.
    let forged = CallDecline {
        call_id: offer.offer.call_id,
        callee: bob.peer_id(),
        busy: true,
    }
    .sign(&mallory);
    caller.handle_signal(t, CallSignal::Declined(forged));
    // A refusal by the callee for another call is ignored.
    let other = CallDecline {
        call_id: CallId([4; 16]),
        callee: bob.peer_id(),
        busy: true,
    }
    .sign(&bob);
    caller.handle_signal(t, CallSignal::Declined(other));
    assert_eq!(caller.poll_event(), None);
    // Once the callee rings, a supernode cannot claim it is unreachable.
    caller.handle_signal(t, CallSignal::Ringing);
    assert_eq!(caller.poll_event(), Some(CallEvent::Ringing));
    caller.handle_signal(t, CallSignal::Unreachable("lies".into()));
    assert_eq!(caller.poll_event(), None);
    // The callee still answers and the call connects.
    let mut callee = CalleeSession::incoming(&bob, &offer, vec![], t).unwrap();
    callee.poll_signal();
    callee.accept(&bob, vec![]);
    caller.handle_signal(t, callee.poll_signal().unwrap());
    assert!(matches!(
        caller.poll_event(),
        Some(CallEvent::Connected { .. })
    ));
}

#[test]
fn unreachable_before_ringing_ends_the_call() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let t = Timestamp(1_000_000);
    let (mut caller, _) = start(&alice, &bob, t);
    caller.handle_signal(t, CallSignal::Unreachable("not attached".into()));
    assert!(matches!(
        caller.poll_event(),
        Some(CallEvent::Ended(EndReason::Unreachable(_)))
    ));
}

#[test]
fn only_grants_for_this_call_from_our_supernode_are_kept() {
    let (alice, bob, sn, rogue) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let t = Timestamp(1_000_000);
    let (caller, offer) = start(&alice, &bob, t);
    let mut caller = caller.with_grant_issuer(sn.peer_id());
    let o = &offer.offer;
    let parties = [alice.peer_id(), bob.peer_id()];
    let good = grant(&sn, o, parties);
    let by_rogue = grant(&rogue, o, parties);
    let wrong_parties = grant(&sn, o, [alice.peer_id(), rogue.peer_id()]);
    let mut tampered = grant(&sn, o, parties);
    tampered.relay.id = rogue.peer_id();
    tampered.token.token.relay = rogue.peer_id();
    caller.handle_signal(
        t,
        CallSignal::RelayGranted(vec![
            by_rogue.clone(),
            wrong_parties,
            tampered,
            good.clone(),
        ]),
    );
    // The callee keeps grants for the call by any issuer (it cannot know the caller's
    // supernode) but not forged or misdirected ones.
    let mut callee = CalleeSession::incoming(&bob, &offer, vec![], t).unwrap();
    let mut bad = good.clone();
    bad.token.signature[0] ^= 1;
    assert!(callee.handle_signal(CallSignal::RelayGranted(vec![bad, by_rogue.clone()])));
    assert_eq!(callee.relays(), &[by_rogue][..]);
    callee.poll_signal();
    callee.accept(&bob, vec![]);
    caller.handle_signal(t, callee.poll_signal().unwrap());
    match caller.poll_event() {
        Some(CallEvent::Connected { relays, .. }) => assert_eq!(relays, vec![good]),
        other => panic!("{other:?}"),
    }
}
