//! The relay admits a leg only with a valid token naming the connection's own key,
//! and says why it refuses. A refused or unjoined connection gets nothing forwarded.

mod relay_common;

use parley_proto::relay::{CallId, RelayRefusalCode as Code, SignedRelayToken};
use parley_proto::{Identity, Timestamp};
use relay_common::*;
use std::time::Duration;

#[tokio::test]
async fn without_a_token_nothing_is_forwarded_and_garbage_is_refused() {
    let fx = Fixture::new("relay");
    let (alice, bob, mallory) = (Party::new(), Party::new(), Party::new());
    let token = fx.token(CallId::random(), &alice, &bob);
    let a = alice.join(&fx, &token).await.expect("alice joins");
    let b = bob.join(&fx, &token).await.expect("bob joins");

    // Mallory connects and sends datagrams without joining: they go nowhere.
    let m = mallory.connect(&fx).await;
    send_all(&m, &media(10)).await;
    assert_nothing_arrives(&a.conn, "alice").await;
    assert_nothing_arrives(&b.conn, "bob").await;
    // Nor does the call's traffic reach her.
    send_all(&a.conn, &media(5)).await;
    recv_n(&b.conn, 5).await;
    assert_nothing_arrives(&m, "mallory").await;

    // A join stream carrying garbage is answered with a NoToken refusal: once with a
    // well-framed but undecodable body, once with bytes that are not even a frame.
    for garbage in [
        &[0u8, 0, 0, 4, 1, 0x10, 0xff, 0xff][..],
        b"hello relay, let me in",
    ] {
        let (mut send, mut recv) = m.open_bi().await.expect("stream");
        send.write_all(garbage).await.expect("write");
        send.finish().expect("finish");
        let reply: parley_proto::relay::messages::RelayToClient =
            parley_net::read_frame(&mut recv).await.expect("a reply");
        match reply {
            parley_proto::relay::messages::RelayToClient::Refused(r) => {
                assert_eq!(r.code, Code::NoToken)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let fx = Fixture::new("relay");
    let (alice, bob) = (Party::new(), Party::new());
    let mut raw = fx.raw_token(CallId::random(), [alice.peer_id(), bob.peer_id()]);
    // Expired by more than the clock skew a relay forgives.
    let skew = parley_proto::time::MAX_CLOCK_SKEW.as_millis() as u64;
    raw.expires_at = Timestamp(now().as_millis() - skew - 1_000);
    assert_eq!(
        refusal(alice.join(&fx, &raw.sign(&fx.issuer)).await),
        Code::Expired
    );
    // And one that claims to live longer than the 10-minute maximum (plus the skew).
    let mut raw = fx.raw_token(CallId::random(), [alice.peer_id(), bob.peer_id()]);
    raw.expires_at = now() + Duration::from_secs(3600);
    assert_eq!(
        refusal(alice.join(&fx, &raw.sign(&fx.issuer)).await),
        Code::BadToken
    );
}

#[tokio::test]
async fn a_token_signed_by_an_untrusted_key_is_refused() {
    let fx = Fixture::new("relay");
    let (alice, bob) = (Party::new(), Party::new());
    let rogue = Identity::generate();
    let mut raw = fx.raw_token(CallId::random(), [alice.peer_id(), bob.peer_id()]);
    raw.issuer = rogue.peer_id();
    assert_eq!(
        refusal(alice.join(&fx, &raw.sign(&rogue)).await),
        Code::UntrustedIssuer
    );
    // Claiming the trusted issuer without its signature is a bad token.
    let forged = SignedRelayToken {
        token: fx.raw_token(CallId::random(), [alice.peer_id(), bob.peer_id()]),
        signature: rogue.sign(b"not the issuer"),
    };
    assert_eq!(refusal(alice.join(&fx, &forged).await), Code::BadToken);
}

#[tokio::test]
async fn a_token_for_another_relay_is_refused() {
    let fx = Fixture::new("relay");
    let (alice, bob) = (Party::new(), Party::new());
    let mut raw = fx.raw_token(CallId::random(), [alice.peer_id(), bob.peer_id()]);
    raw.relay = Identity::generate().peer_id();
    assert_eq!(
        refusal(alice.join(&fx, &raw.sign(&fx.issuer)).await),
        Code::WrongRelay
    );
}

#[tokio::test]
async fn a_leg_that_cannot_prove_it_holds_a_named_key_is_refused() {
    // QUIC's TLS handshake proves the connection's key, so the only way to present a
    // token without holding a key it names is to present someone else's token.
    let fx = Fixture::new("relay");
    let (alice, bob, mallory) = (Party::new(), Party::new(), Party::new());
    let token = fx.token(CallId::random(), &alice, &bob);
    assert_eq!(refusal(mallory.join(&fx, &token).await), Code::NotAParty);
    // The real parties still pair: Mallory took no slot.
    let _a = alice.join(&fx, &token).await.expect("alice joins");
    assert!(bob.join(&fx, &token).await.expect("bob joins").paired);
}

#[tokio::test]
async fn a_third_party_cannot_join_a_paired_call() {
    let fx = Fixture::new("relay");
    let (alice, bob, carol) = (Party::new(), Party::new(), Party::new());
    let call = CallId::random();
    let token = fx.token(call, &alice, &bob);
    let a = alice.join(&fx, &token).await.expect("alice joins");
    let b = bob.join(&fx, &token).await.expect("bob joins");

    // Carol has a genuine token for the same call id, naming her and Alice.
    let hers = fx.token(call, &carol, &alice);
    assert_eq!(refusal(carol.join(&fx, &hers).await), Code::NotAParty);
    // A second leg for a party already in the call.
    assert_eq!(refusal(alice.join(&fx, &token).await), Code::CallFull);

    // Carol's connection (refused) neither receives the call nor injects into it.
    let c = carol.connect(&fx).await;
    send_all(&a.conn, &media(5)).await;
    recv_n(&b.conn, 5).await;
    assert_nothing_arrives(&c, "carol").await;
    send_all(&c, &media(5)).await;
    assert_nothing_arrives(&a.conn, "alice").await;
    assert_nothing_arrives(&b.conn, "bob").await;
}
