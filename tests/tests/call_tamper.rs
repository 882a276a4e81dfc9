//! Acceptance: media is end-to-end authenticated. A malicious relay that flips a bit in
//! some datagrams and replays others cannot get either past the receiving client: each
//! is rejected and counted in the call summary, and the call carries on.

use parley_e2e::calls::{answering, call_end, calling, loopback};
use parley_e2e::Supernode;
use parley_net::{dial, read_frame, request, write_frame};
use parley_proto::relay::messages::{
    ClientToRelay, RelayToClient, RelayToSupernode, SupernodeToRelay,
};
use parley_proto::relay::{CallId, RelayLoad, ALPN_RELAY_REPORT};
use parley_proto::Identity;
use quinn::{Connection, SendStream};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every Nth datagram gets a flipped bit; every Mth is delivered twice.
const FLIP_EVERY: u64 = 10;
const REPLAY_EVERY: u64 = 7;

type Waiting = Arc<Mutex<HashMap<CallId, (Connection, SendStream)>>>;

/// Starts an evil relay with key `identity` that reports to `supernodes` (configured
/// with its key: supernodes hand out only relays their operator configured); returns
/// its address.
async fn evil_relay(identity: Identity, supernodes: &[SocketAddr]) -> SocketAddr {
    let endpoint =
        parley_relay::endpoint::relay_endpoint("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let load = RelayLoad {
        relay: identity.peer_id(),
        listen: addr,
        calls: 0,
        legs: 0,
        max_legs: 1000,
        tcp: None,
    };
    for sn in supernodes {
        let (conn, _) = dial(
            &endpoint,
            &identity,
            *sn,
            ALPN_RELAY_REPORT,
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let ack: SupernodeToRelay = request(
            &conn,
            &RelayToSupernode::Report(load.clone()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(ack, SupernodeToRelay::Ack);
    }
    let waiting: Waiting = Arc::default();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let (waiting, load) = (waiting.clone(), load.clone());
            tokio::spawn(async move {
                let conn = incoming.await.unwrap();
                let (mut send, mut recv) = conn.accept_bi().await.unwrap();
                // Admits anyone: this relay is the attacker, not the gatekeeper. It
                // answers the supernode's check of the address it reported.
                let token = match read_frame(&mut recv).await.unwrap() {
                    ClientToRelay::Join(token) => token,
                    ClientToRelay::LoadQuery => {
                        write_frame(&mut send, &RelayToClient::Load(load))
                            .await
                            .unwrap();
                        let _ = conn.closed().await;
                        return;
                    }
                };
                let other = waiting.lock().unwrap().remove(&token.token.call_id);
                match other {
                    None => {
                        write_frame_keep_open(
                            &mut send,
                            &RelayToClient::Joined {
                                paired: false,
                                channel: None,
                            },
                        )
                        .await;
                        waiting
                            .lock()
                            .unwrap()
                            .insert(token.token.call_id, (conn, send));
                    }
                    Some((first, mut first_send)) => {
                        write_frame_keep_open(
                            &mut send,
                            &RelayToClient::Joined {
                                paired: true,
                                channel: None,
                            },
                        )
                        .await;
                        write_frame(&mut first_send, &RelayToClient::Paired)
                            .await
                            .unwrap();
                        tokio::spawn(forward_tampering(first.clone(), conn.clone()));
                        tokio::spawn(forward_tampering(conn, first));
                        // Keep the streams alive for the call.
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        drop((send, recv));
                    }
                }
            });
        }
    });
    addr
}

async fn write_frame_keep_open(send: &mut SendStream, msg: &RelayToClient) {
    parley_net::send_frame(send, msg).await.unwrap();
}

async fn forward_tampering(from: Connection, to: Connection) {
    let mut n: u64 = 0;
    while let Ok(datagram) = from.read_datagram().await {
        n += 1;
        let mut bytes = datagram.to_vec();
        if n % FLIP_EVERY == 0 {
            let i = bytes.len() / 2;
            bytes[i] ^= 0x04;
        }
        let _ = to.send_datagram(bytes.clone().into());
        if n % REPLAY_EVERY == 0 {
            let _ = to.send_datagram(bytes.into());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_and_replayed_datagrams_are_rejected_and_counted() {
    let evil = Identity::generate();
    let evil_id = evil.peer_id().to_string();
    let mut sn = Supernode::start_with("sn", &[], &["--relay-key", &evil_id]).unwrap();
    evil_relay(evil, &[sn.quic]).await;
    // Handed out once the supernode has checked the relay at the address it reported.
    let sn = tokio::task::spawn_blocking(move || sn.wait_relay().map(|()| sn))
        .await
        .unwrap()
        .unwrap();
    let sn_addr = sn.quic.to_string();
    let summary = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let extra = ["--relay-only", "--supernode", &sn_addr];
        let bob = answering(&loopback, "bob", dir.path(), &extra).unwrap();
        let mut alice = calling(&loopback, "alice", dir.path(), &bob.home.id, &extra).unwrap();
        call_end(&mut alice, Duration::from_secs(60)).unwrap()
    })
    .await
    .unwrap();
    eprintln!("{summary}");
    assert_eq!(summary["path"], "relay");
    assert!(
        summary["datagrams_forged"].as_u64().unwrap() >= 10,
        "{summary}"
    );
    assert!(
        summary["datagrams_replayed"].as_u64().unwrap() >= 10,
        "{summary}"
    );
    // The genuine frames still made it: the call went on.
    assert!(
        summary["frames_received"].as_u64().unwrap() > 200,
        "{summary}"
    );
}
