//! The relay's limits, through the real process: rate caps drop the excess, quiet
//! calls are closed with a reason, and legs are capped per key and in total.

mod relay_common;

use parley_proto::relay::{CallId, CloseReason, RelayRefusalCode as Code};
use relay_common::*;
use std::time::Duration;

#[tokio::test]
async fn datagrams_over_the_rate_cap_are_dropped() {
    let fx = Fixture::with_flags("relay", &["--max-packets-per-sec", "5"]);
    let (alice, bob) = (Party::new(), Party::new());
    let token = fx.token(CallId::random(), &alice, &bob);
    let mut a = alice.join(&fx, &token).await.expect("alice joins");
    let b = bob.join(&fx, &token).await.expect("bob joins");
    a.wait_paired(T).await.expect("paired");
    // The bucket holds one second's worth (5) and refills at 5/s: of a burst of 50,
    // Bob gets 5, plus whatever refilled while the relay worked through the burst.
    let start = std::time::Instant::now();
    send_all(&a.conn, &media(50)).await;
    let mut got = recv_n(&b.conn, 5).await.len();
    while let Ok(Ok(_)) = tokio::time::timeout(QUIET, b.conn.read_datagram()).await {
        got += 1;
    }
    let refilled = (start.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        got <= 5 + refilled,
        "{got} datagrams passed a cap of 5/s in {:?}",
        start.elapsed()
    );
    assert!(got < 50);
}

#[tokio::test]
async fn a_quiet_call_is_closed_with_a_reason() {
    let fx = Fixture::with_flags(
        "relay",
        &["--idle-timeout-secs", "1", "--rejoin-grace-secs", "1"],
    );
    let (alice, bob) = (Party::new(), Party::new());
    let token = fx.token(CallId::random(), &alice, &bob);
    let mut a = alice.join(&fx, &token).await.expect("alice joins");
    let b = bob.join(&fx, &token).await.expect("bob joins");
    a.wait_paired(T).await.expect("paired");
    for (leg, who) in [(&a.conn, "alice"), (&b.conn, "bob")] {
        let closed = tokio::time::timeout(Duration::from_secs(10), leg.closed())
            .await
            .unwrap_or_else(|_| panic!("{who}'s idle leg was not closed"));
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                // Both went quiet together, so both are closed as idle.
                assert_eq!(
                    close.error_code,
                    CloseReason::IdleTimeout.code().into(),
                    "{who}"
                );
            }
            other => panic!("{who}: expected an application close, got {other}"),
        }
    }
}

#[tokio::test]
async fn a_key_is_limited_in_legs_and_the_relay_in_total() {
    let fx = Fixture::with_flags("relay", &["--max-legs-per-key", "1", "--max-legs", "2"]);
    let (alice, bob, carol, dave) = (Party::new(), Party::new(), Party::new(), Party::new());
    let _first = alice
        .join(&fx, &fx.token(CallId::random(), &alice, &bob))
        .await
        .expect("first leg");
    let second = alice
        .join(&fx, &fx.token(CallId::random(), &alice, &carol))
        .await;
    assert_eq!(refusal(second), Code::TooManyLegs);
    let _carol = carol
        .join(&fx, &fx.token(CallId::random(), &carol, &dave))
        .await
        .expect("second leg");
    let third = dave
        .join(&fx, &fx.token(CallId::random(), &dave, &bob))
        .await;
    assert_eq!(refusal(third), Code::Overloaded);
}
