//! The relay pairs the two legs of a call and forwards datagrams between them,
//! byte-identical, both ways, and to no one else.

mod relay_common;

use parley_proto::relay::CallId;
use relay_common::*;
use std::time::Duration;

#[tokio::test]
async fn two_legs_pair_and_datagrams_cross_both_ways_unchanged() {
    let fx = Fixture::new("relay");
    let (alice, bob, carol, dave) = (Party::new(), Party::new(), Party::new(), Party::new());
    let call = CallId::random();
    let token = fx.token(call, &alice, &bob);

    let mut a = alice.join(&fx, &token).await.expect("alice joins");
    assert!(!a.paired, "alice is first");
    let b = bob.join(&fx, &token).await.expect("bob joins");
    assert!(b.paired, "bob finds alice waiting");
    a.wait_paired(T).await.expect("alice learns bob arrived");

    // Bystanders: Carol is a leg of another call (waiting), Dave never joins.
    let other = fx.token(CallId::random(), &carol, &alice);
    let c = carol
        .join(&fx, &other)
        .await
        .expect("carol joins her own call");
    let d = dave.connect(&fx).await;

    let from_alice = media(40);
    let from_bob = media(40);
    send_all(&a.conn, &from_alice).await;
    send_all(&b.conn, &from_bob).await;
    assert!(
        same_set(recv_n(&b.conn, 40).await, from_alice),
        "bob gets alice's bytes unchanged"
    );
    assert!(
        same_set(recv_n(&a.conn, 40).await, from_bob),
        "alice gets bob's bytes unchanged"
    );

    // Nobody else saw any of it.
    assert_nothing_arrives(&c.conn, "carol (another call)").await;
    assert_nothing_arrives(&d, "dave (not joined)").await;
    // Nor do the bystanders' datagrams reach the call.
    send_all(&c.conn, &media(5)).await;
    send_all(&d, &media(5)).await;
    assert_nothing_arrives(&a.conn, "alice").await;
    assert_nothing_arrives(&b.conn, "bob").await;
}

#[tokio::test]
async fn legs_holding_tokens_for_different_calls_are_not_paired() {
    let fx = Fixture::new("relay");
    let (alice, bob) = (Party::new(), Party::new());
    // The same two parties, but Alice's token is for call X and Bob's for call Y.
    let x = fx.token(CallId::random(), &alice, &bob);
    let y = fx.token(CallId::random(), &alice, &bob);
    let mut a = alice.join(&fx, &x).await.expect("alice joins X");
    let mut b = bob.join(&fx, &y).await.expect("bob joins Y");
    assert!(!a.paired && !b.paired);

    send_all(&a.conn, &media(10)).await;
    send_all(&b.conn, &media(10)).await;
    assert_nothing_arrives(&b.conn, "bob").await;
    assert_nothing_arrives(&a.conn, "alice").await;
    assert!(a.wait_paired(Duration::from_millis(200)).await.is_err());
    assert!(b.wait_paired(Duration::from_millis(200)).await.is_err());
}

#[tokio::test]
async fn a_party_that_reconnects_is_paired_again() {
    let fx = Fixture::new("relay");
    let (alice, bob) = (Party::new(), Party::new());
    let token = fx.token(CallId::random(), &alice, &bob);
    let mut a = alice.join(&fx, &token).await.expect("alice joins");
    let b = bob.join(&fx, &token).await.expect("bob joins");
    a.wait_paired(T).await.expect("paired");

    // Bob's network changes: his connection goes away and he dials again.
    b.conn.close(0u32.into(), b"switching networks");
    let b2 = tokio::time::timeout(T, async {
        loop {
            // The relay frees Bob's slot once it sees the close.
            match bob.join(&fx, &token).await {
                Ok(leg) => break leg,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("bob rejoins");
    assert!(b2.paired, "alice was still waiting");
    let burst = media(10);
    send_all(&b2.conn, &burst).await;
    assert!(same_set(recv_n(&a.conn, 10).await, burst));
}
