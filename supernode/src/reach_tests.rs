//! Dial-backs against live supernodes on loopback: a probe comes from another
//! supernode, never the asked one; an address that is not the requester's is refused
//! and never dialed; with no other supernode there is no probe.

use super::*;
use crate::relays::RelayDirectory;
use crate::server::{start_with, Bound, ServerParams};
use parley_net::{make_endpoint, make_endpoint_on, peer_id_of, write_frame};
use parley_proto::messages::{ClientToSupernode, RefusalCode, SupernodeToClient, ALPN_CLIENT};
use parley_proto::reach::Nonce;
use parley_proto::PeerId;
use tokio::sync::{mpsc, watch};

const T: Duration = Duration::from_secs(5);

async fn supernode(join: Option<SocketAddr>) -> (Bound, watch::Sender<bool>) {
    let (stop, stop_rx) = watch::channel(false);
    let any = "127.0.0.1:0".parse().unwrap();
    let params = ServerParams {
        join: join.map(|a| a.to_string()).into_iter().collect(),
        ..ServerParams::new(Identity::generate(), any, any)
    };
    let (bound, serve) = start_with(params, RelayDirectory::new([]), stop_rx)
        .await
        .unwrap();
    tokio::spawn(serve);
    (bound, stop)
}

/// A client attached to `sn`.
async fn attach(sn: &Bound) -> quinn::Connection {
    let id = Identity::generate();
    let ep = make_endpoint("127.0.0.1:0".parse().unwrap(), &id, &[]).unwrap();
    let (conn, _) = dial(&ep, &id, sn.quic, ALPN_CLIENT, Some(sn.id), T)
        .await
        .unwrap();
    conn
}

/// A serving socket that acknowledges every probe and reports who sent it.
fn serving(
    key: &Identity,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(PeerId, Nonce)>,
    quinn::Endpoint,
) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let ep = make_endpoint_on(socket, key, &[ALPN_PROBE]).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let accept = ep.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let conn = incoming.await.unwrap();
                let (mut send, mut recv) = conn.accept_bi().await.unwrap();
                let probe: Probe = read_frame(&mut recv).await.unwrap();
                let _ = tx.send((peer_id_of(&conn).unwrap(), probe.nonce));
                write_frame(&mut send, &ProbeAck { nonce: probe.nonce })
                    .await
                    .unwrap();
                let _ = tokio::time::timeout(T, conn.closed()).await;
            });
        }
    });
    (addr, rx, ep)
}

async fn ask(conn: &quinn::Connection, req: DialBack) -> ProbeReply {
    request::<DialBack, ProbeReply>(conn, &req, Duration::from_secs(20))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_probe_comes_from_another_supernode_never_the_asked_one() {
    let (sn1, _s1) = supernode(None).await;
    let (sn2, _s2) = supernode(Some(sn1.quic)).await;
    let client = attach(&sn1).await;
    // Until sn1 has heard of sn2 (the join), it has nobody to ask.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let reply = request::<_, SupernodeToClient>(&client, &ClientToSupernode::Supernodes, T)
            .await
            .unwrap();
        if matches!(&reply, SupernodeToClient::Supernodes(k) if k.iter().any(|c| c.id == sn2.id)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sn1 never learned of sn2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let key = Identity::generate();
    let (addr, mut probes, _ep) = serving(&key);
    let nonce = Nonce([42; 16]);
    let reply = ask(
        &client,
        DialBack {
            addr,
            key: key.peer_id(),
            nonce,
        },
    )
    .await;
    assert_eq!(reply, ProbeReply::Probed { prober: sn2.id });
    let (prober, got) = probes.recv().await.unwrap();
    assert_eq!((prober, got), (sn2.id, nonce));
    assert!(probes.try_recv().is_err(), "one probe, from sn2 only");
}

#[tokio::test]
async fn a_dial_back_to_another_address_is_refused_and_nothing_is_sent_there() {
    let (sn1, _s1) = supernode(None).await;
    let (_sn2, _s2) = supernode(Some(sn1.quic)).await;
    let client = attach(&sn1).await;
    // A victim on another loopback IP: the client is seen from 127.0.0.1.
    let victim = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let target = victim.local_addr().unwrap();
    let key = Identity::generate();
    let reply = ask(
        &client,
        DialBack {
            addr: target,
            key: key.peer_id(),
            nonce: Nonce([1; 16]),
        },
    )
    .await;
    assert!(
        matches!(&reply, ProbeReply::Refused(r) if r.code == RefusalCode::NotYours),
        "{reply:?}"
    );
    let mut buf = [0u8; 1500];
    let heard = tokio::time::timeout(Duration::from_millis(500), victim.recv_from(&mut buf)).await;
    assert!(heard.is_err(), "the victim received a datagram");
}

#[tokio::test]
async fn a_lone_supernode_has_nobody_to_probe_from() {
    let (sn1, _s1) = supernode(None).await;
    let client = attach(&sn1).await;
    // The connection counter a promoted client watches for overload.
    let cap = crate::limits::Limits::default().conns_total;
    assert_eq!(sn1.connections(), (1, cap));
    let key = Identity::generate();
    let (addr, mut probes, _ep) = serving(&key);
    let reply = ask(
        &client,
        DialBack {
            addr,
            key: key.peer_id(),
            nonce: Nonce([3; 16]),
        },
    )
    .await;
    assert!(
        matches!(&reply, ProbeReply::Failed(why) if why.contains("no other supernode")),
        "{reply:?}"
    );
    assert!(
        probes.try_recv().is_err(),
        "the asked supernode probed itself"
    );
}
