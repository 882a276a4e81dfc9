//! A supernode refuses forged, replayed (older) and expired presence records, whether
//! they come from a client or from another supernode.

use parley_e2e::Supernode;
use parley_net::{dial, make_endpoint, request};
use parley_proto::messages::{
    ClientToSupernode, RefusalCode, SupernodeReply, SupernodeToClient, SupernodeToSupernode,
    ALPN_CLIENT, ALPN_OVERLAY,
};
use parley_proto::presence::{NatType, PresenceRecord, SignedPresence};
use parley_proto::time::MAX_CLOCK_SKEW;
use parley_proto::{Identity, Timestamp};
use std::net::SocketAddr;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn now() -> Timestamp {
    parley_net::clock::now()
}

fn record(owner: &Identity, seq: u64, expires_at: Timestamp) -> PresenceRecord {
    PresenceRecord {
        id: owner.peer_id(),
        display_name: "test".into(),
        supernodes: vec![],
        addresses: vec![],
        nat: NatType::Unknown,
        seq,
        expires_at,
    }
}

async fn connect(identity: &Identity, to: SocketAddr, alpn: &[u8]) -> quinn::Connection {
    let endpoint = make_endpoint("127.0.0.1:0".parse().unwrap(), identity, &[]).unwrap();
    dial(&endpoint, identity, to, alpn, None, T)
        .await
        .unwrap()
        .0
}

async fn publish(conn: &quinn::Connection, r: SignedPresence) -> SupernodeToClient {
    request(conn, &ClientToSupernode::Publish(r), T)
        .await
        .unwrap()
}

fn refusal(reply: SupernodeToClient) -> RefusalCode {
    match reply {
        SupernodeToClient::Refused(r) => r.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn forged_replayed_and_expired_records_are_refused() {
    let sn = Supernode::start("sn", &[]).unwrap();
    let alice = Identity::generate();
    let conn = connect(&alice, sn.quic, ALPN_CLIENT).await;
    let later = now() + Duration::from_secs(300);

    // Forged: Alice's id, signed by Mallory's key.
    let mallory = Identity::generate();
    let mut forged = record(&mallory, 10, later).sign(&mallory);
    forged.record.id = alice.peer_id();
    assert_eq!(
        refusal(publish(&conn, forged).await),
        RefusalCode::BadRecord
    );

    // Someone else's genuine record over Alice's attachment is not hers to publish.
    let bobs = record(&mallory, 10, later).sign(&mallory);
    assert_eq!(refusal(publish(&conn, bobs).await), RefusalCode::NotYours);

    // Replay: seq 5 is accepted, then the older seq 4 is refused.
    let five = record(&alice, 5, later).sign(&alice);
    assert!(matches!(
        publish(&conn, five.clone()).await,
        SupernodeToClient::Published { .. }
    ));
    let four = record(&alice, 4, later).sign(&alice);
    assert_eq!(refusal(publish(&conn, four).await), RefusalCode::Stale);

    // Expired, by more than the clock skew a supernode forgives.
    let skew = MAX_CLOCK_SKEW.as_millis() as u64;
    let old = record(&alice, 6, Timestamp(now().as_millis() - skew - 1_000)).sign(&alice);
    assert_eq!(refusal(publish(&conn, old).await), RefusalCode::Expired);

    // The same refusals hold for records arriving from another "supernode".
    let peer = Identity::generate();
    let overlay = connect(&peer, sn.quic, ALPN_OVERLAY).await;
    let store = |r: SignedPresence| {
        let overlay = overlay.clone();
        async move {
            request::<_, SupernodeReply>(&overlay, &SupernodeToSupernode::Store(r.into()), T)
                .await
                .unwrap()
        }
    };
    let mut forged = record(&mallory, 50, later).sign(&mallory);
    forged.record.id = alice.peer_id();
    assert!(
        matches!(store(forged).await, SupernodeReply::Refused(r) if r.code == RefusalCode::BadRecord)
    );
    // A replay is refused as stale, with the newer record held as proof.
    let replay = record(&alice, 3, later).sign(&alice);
    assert!(matches!(store(replay).await, SupernodeReply::Superseded(r) if *r == five));
    let expired = record(&alice, 60, Timestamp(now().as_millis() - skew - 1)).sign(&alice);
    assert!(
        matches!(store(expired).await, SupernodeReply::Refused(r) if r.code == RefusalCode::Expired)
    );

    // And the held record is still the good one.
    let found: SupernodeToClient = request(&conn, &ClientToSupernode::Lookup(alice.peer_id()), T)
        .await
        .unwrap();
    assert_eq!(found, SupernodeToClient::Found(five));
}
