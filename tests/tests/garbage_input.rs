//! Random bytes to every listening port, and malformed frames on valid QUIC streams,
//! crash nothing: the supernode keeps answering afterwards.

use parley_e2e::{parley, ClientHome, Supernode};
use parley_net::{dial, make_endpoint};
use parley_proto::messages::{SupernodeToClient, ALPN_CLIENT};
use parley_proto::Identity;
use rand::{Rng, SeedableRng};
use std::net::UdpSocket;
use std::time::Duration;

#[tokio::test]
async fn random_bytes_to_every_port_crash_nothing() {
    let mut sn = Supernode::start("sn", &[]).unwrap();
    let alice = ClientHome::new("alice").unwrap();
    let mut online = alice.online("alice", &[sn.quic]).unwrap();
    let line = online
        .wait_for(Duration::from_secs(20), |l| {
            l.contains("\"event\":\"online\"")
        })
        .unwrap();
    online
        .wait_for(Duration::from_secs(20), |l| {
            l.contains("\"event\":\"published\"")
        })
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let client_port: u16 = v["local"][0]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let targets = [
        sn.quic,
        sn.stun,
        format!("127.0.0.1:{client_port}").parse().unwrap(),
    ];
    for target in targets {
        for i in 0..2000 {
            let len = rng.gen_range(0..1400);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Also look like QUIC long headers and STUN headers now and then.
            if i % 3 == 0 && !buf.is_empty() {
                buf[0] = 0xc0 | (buf[0] & 0x0f);
            }
            if i % 3 == 1 && buf.len() >= 8 {
                buf[..8].copy_from_slice(&[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]);
            }
            let _ = socket.send_to(&buf, target);
        }
    }

    // Malformed frames on a real, authenticated stream get a refusal, not a crash.
    let me = Identity::generate();
    let endpoint = make_endpoint("127.0.0.1:0".parse().unwrap(), &me, &[]).unwrap();
    let (conn, _) = dial(
        &endpoint,
        &me,
        sn.quic,
        ALPN_CLIENT,
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    for body in [
        vec![1u8, 1, 0xff, 0xff],
        vec![9u8, 1],
        vec![1u8, 7, 0],
        (0..200).map(|_| rng.gen()).collect(),
    ] {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend(body);
        send.write_all(&frame).await.unwrap();
        send.finish().unwrap();
        let reply: SupernodeToClient = parley_net::read_frame(&mut recv).await.unwrap();
        assert!(matches!(reply, SupernodeToClient::Refused(_)), "{reply:?}");
    }
    // An absurd length prefix.
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let _ = send.finish();

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sn.proc.is_running(), "the supernode died");
    assert!(online.is_running(), "the client died");
    let bob = tempfile::tempdir().unwrap();
    let out = parley(
        bob.path(),
        &["lookup", &alice.id, "--supernode", &sn.quic.to_string()],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "lookup after the garbage failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
