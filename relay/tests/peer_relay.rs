//! A peer relay (issue 10, acceptance 2), in process over real QUIC: the relay a
//! promoted client runs, trusting only its own key (its supernode role's) and limited by
//! `parley_proto::relay::peer::peer_config`. A leg of a call it did not grant is
//! refused; its quotas per key and per IP refuse with a reason; media crosses only
//! between the two proven legs, within the per-leg cap.

#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use bytes::Bytes;
use parley_net::make_endpoint;
use parley_proto::presence::Contact;
use parley_proto::relay::peer::{peer_config, TYPICAL_RELAY_KBPS};
use parley_proto::relay::{CallId, RelayRefusalCode, RelayToken, SignedRelayToken};
use parley_proto::Identity;
use parley_relay::{join_relay, Bound, MediaLeg, RelayClientError, RelayLeg, RelayParams};
use std::time::Duration;
use tokio::sync::watch;

const T: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(400);

/// The promoted peer: its supernode role's key is the relay's key and only issuer.
struct Peer {
    key: Identity,
    bound: Bound,
    _stop: watch::Sender<bool>,
}

impl Peer {
    async fn start() -> Peer {
        let key = Identity::generate();
        let (stop, stop_rx) = watch::channel(false);
        let (bound, serve) = parley_relay::start(
            RelayParams {
                data_threads: 1,
                ..RelayParams::new(
                    key.clone(),
                    "127.0.0.1:0".parse().unwrap(),
                    vec![key.peer_id()],
                    peer_config(TYPICAL_RELAY_KBPS).unwrap(),
                )
            },
            stop_rx,
        )
        .await
        .unwrap();
        tokio::spawn(serve);
        Peer {
            key,
            bound,
            _stop: stop,
        }
    }

    fn token_by(&self, issuer: &Identity, a: &Identity, b: &Identity) -> SignedRelayToken {
        RelayToken {
            call_id: CallId::random(),
            parties: [a.peer_id(), b.peer_id()],
            relay: self.bound.id,
            issuer: issuer.peer_id(),
            expires_at: parley_net::clock::now() + Duration::from_secs(60),
        }
        .sign(issuer)
    }

    fn token(&self, a: &Identity, b: &Identity) -> SignedRelayToken {
        self.token_by(&self.key, a, b)
    }

    async fn join(
        &self,
        who: &Identity,
        token: &SignedRelayToken,
    ) -> Result<RelayLeg, RelayClientError> {
        let endpoint = make_endpoint("127.0.0.1:0".parse().unwrap(), who, &[]).unwrap();
        let contact = Contact {
            id: self.bound.id,
            addr: self.bound.quic,
        };
        join_relay(&endpoint, who, contact, token, T).await
    }
}

fn refusal(r: Result<RelayLeg, RelayClientError>) -> (RelayRefusalCode, String) {
    match r {
        Err(RelayClientError::Refused(r)) => (r.code, r.message),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a leg"),
    }
}

#[tokio::test]
async fn a_leg_of_a_call_another_supernode_granted_is_refused() {
    let p = Peer::start().await;
    let (a, b) = (Identity::generate(), Identity::generate());
    // Any key can run a supernode: its token is worth nothing here.
    let stranger = Identity::generate();
    let (code, why) = refusal(p.join(&a, &p.token_by(&stranger, &a, &b)).await);
    assert_eq!(code, RelayRefusalCode::UntrustedIssuer, "{why}");
    // Its own grant, presented by a third key.
    let t = p.token(&a, &b);
    let (code, _) = refusal(p.join(&Identity::generate(), &t).await);
    assert_eq!(code, RelayRefusalCode::NotAParty);
    // The parties it granted pair and talk, and only to each other.
    let la = p.join(&a, &t).await.unwrap();
    let mut lb = p.join(&b, &t).await.unwrap();
    lb.wait_paired(T).await.unwrap();
    let (ma, mb) = (MediaLeg::open(la).await, MediaLeg::open(lb).await);
    ma.send_datagram(Bytes::from_static(b"hello")).unwrap();
    let got = tokio::time::timeout(QUIET, mb.read_datagram())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, &b"hello"[..]);
}

#[tokio::test]
async fn quotas_refuse_with_a_reason_and_the_leg_cap_holds() {
    let p = Peer::start().await;
    let a = Identity::generate();
    // Per key: two legs.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            p.join(&a, &p.token(&a, &Identity::generate()))
                .await
                .unwrap(),
        );
    }
    let (code, why) = refusal(p.join(&a, &p.token(&a, &Identity::generate())).await);
    assert_eq!(code, RelayRefusalCode::TooManyLegs);
    assert!(why.contains("limit per key"), "{why}");
    // Per IP (every leg here is from 127.0.0.1): four legs.
    for _ in 0..2 {
        let k = Identity::generate();
        held.push(
            p.join(&k, &p.token(&k, &Identity::generate()))
                .await
                .unwrap(),
        );
    }
    let k = Identity::generate();
    let (code, why) = refusal(p.join(&k, &p.token(&k, &Identity::generate())).await);
    assert_eq!(code, RelayRefusalCode::TooManyLegs);
    assert!(why.contains("limit per IP"), "{why}");
    // A leg that leaves frees its places.
    drop(held);
    let (b, c) = (Identity::generate(), Identity::generate());
    let t = p.token(&b, &c);
    let deadline = tokio::time::Instant::now() + T;
    let lb = loop {
        match p.join(&b, &t).await {
            Ok(leg) => break leg,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the freed places were not given back: {e}"),
        }
    };
    let mut lc = p.join(&c, &t).await.unwrap();
    lc.wait_paired(T).await.unwrap();
    let (mb, mc) = (MediaLeg::open(lb).await, MediaLeg::open(lc).await);
    // The per-leg cap: 32 kB/s with a one-second burst. 100 datagrams of 1,000 bytes
    // at once: about 32 get through.
    for _ in 0..100 {
        let _ = mb.send_datagram(Bytes::from(vec![7u8; 1_000]));
    }
    let mut got = 0;
    while tokio::time::timeout(QUIET, mc.read_datagram())
        .await
        .is_ok_and(|r| r.is_ok())
    {
        got += 1;
    }
    assert!((20..=33).contains(&got), "{got} datagrams crossed");
}
