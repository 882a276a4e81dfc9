//! Load reporting, in process: a relay started with a supernode to report to sends it
//! `Report`s, and answers `LoadQuery` with its current counts.

use parley_net::{make_endpoint, peer_id_of, read_frame, write_frame};
use parley_proto::presence::Contact;
use parley_proto::relay::messages::{RelayToSupernode, SupernodeToRelay};
use parley_proto::relay::{CallId, RelayConfig, RelayToken, ALPN_RELAY_REPORT};
use parley_proto::Identity;
use parley_relay::{join_relay, query_load, RelayParams};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn the_relay_reports_its_load_and_answers_load_queries() {
    // A stand-in supernode that acknowledges reports and passes them on.
    let supernode = Identity::generate();
    let sn = make_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &supernode,
        &[ALPN_RELAY_REPORT],
    )
    .unwrap();
    let sn_addr = sn.local_addr().unwrap();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(incoming) = sn.accept().await {
            let conn = incoming.await.unwrap();
            let from = peer_id_of(&conn).unwrap();
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let RelayToSupernode::Report(load) = read_frame(&mut recv).await.unwrap();
                write_frame(&mut send, &SupernodeToRelay::Ack)
                    .await
                    .unwrap();
                let _ = reports_tx.send((from, load));
            }
        }
    });

    let relay_id = Identity::generate();
    let (_stop, stop_rx) = watch::channel(false);
    let (bound, serve) = parley_relay::start(
        RelayParams {
            identity: relay_id.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            trusted: vec![supernode.peer_id()],
            config: RelayConfig {
                max_legs: 77,
                ..RelayConfig::default()
            },
            supernodes: vec![sn_addr.to_string()],
            advertise: Some("192.0.2.9:4434".parse().unwrap()),
            tcp: None,
            data_listen: None,
            data_threads: 0,
            max_joins_per_ip: 0,
            wall_clock: None,
            tunnel_peers: Default::default(),
        },
        stop_rx,
    )
    .await
    .unwrap();
    tokio::spawn(serve);

    // The first report goes out at start.
    let (from, load) = tokio::time::timeout(T, reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, relay_id.peer_id());
    assert_eq!(load.relay, relay_id.peer_id());
    assert_eq!(load.listen, "192.0.2.9:4434".parse().unwrap());
    assert_eq!((load.calls, load.legs, load.max_legs), (0, 0, 77));

    // With one leg waiting, a load query counts it.
    let alice = Identity::generate();
    let client = make_endpoint("127.0.0.1:0".parse().unwrap(), &alice, &[]).unwrap();
    let contact = Contact {
        id: bound.id,
        addr: bound.quic,
    };
    let token = RelayToken {
        call_id: CallId::random(),
        parties: [alice.peer_id(), Identity::generate().peer_id()],
        relay: bound.id,
        issuer: supernode.peer_id(),
        expires_at: parley_net::clock::now() + Duration::from_secs(60),
    }
    .sign(&supernode);
    let _leg = join_relay(&client, &alice, contact, &token, T)
        .await
        .unwrap();
    let load = query_load(&client, &alice, contact, T).await.unwrap();
    assert_eq!((load.calls, load.legs), (1, 1));
    assert_eq!(bound.load().legs, 1);
}
