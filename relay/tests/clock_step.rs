//! A live relayed call while the relay's wall clock steps forward and back by minutes
//! (issue 11, item 6): no leg is closed, the rate caps neither freeze nor refill, media
//! keeps crossing. The relay's timers run on the monotonic clock; the wall clock is read
//! for tokens' signed expiry only.

#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use bytes::Bytes;
use parley_net::make_endpoint;
use parley_proto::presence::Contact;
use parley_proto::relay::{CallId, CloseReason, DropReason, RelayConfig, RelayToken};
use parley_proto::{Identity, Timestamp};
use parley_relay::{join_relay, MediaLeg, RelayParams};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

const T: Duration = Duration::from_secs(5);

/// The relay's wall clock: the system's plus this many ms.
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

fn stepped_clock() -> Timestamp {
    let now = parley_net::clock::now().0 as i64;
    Timestamp((now + OFFSET_MS.load(Ordering::Relaxed)).max(0) as u64)
}

/// Sends `n` datagrams each way at 50/s on both legs; returns how many arrived.
async fn talk(a: &MediaLeg, b: &MediaLeg, n: usize) -> usize {
    let mut got = 0;
    for i in 0..n {
        a.send_datagram(Bytes::from(vec![i as u8; 90])).unwrap();
        b.send_datagram(Bytes::from(vec![i as u8; 90])).unwrap();
        for leg in [b, a] {
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(200), leg.read_datagram()).await
            {
                got += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got
}

#[tokio::test]
async fn a_call_carries_on_while_the_relay_clock_steps_by_minutes() {
    let issuer = Identity::generate();
    let (_stop, stop_rx) = watch::channel(false);
    let config = RelayConfig {
        idle_timeout: Duration::from_secs(3),
        ..RelayConfig::default()
    };
    let (bound, serve) = parley_relay::start(
        RelayParams {
            identity: Identity::generate(),
            listen: "127.0.0.1:0".parse().unwrap(),
            trusted: vec![issuer.peer_id()],
            config,
            supernodes: vec![],
            advertise: None,
            tcp: None,
            data_listen: None,
            data_threads: 1,
            max_joins_per_ip: 0,
            wall_clock: Some(stepped_clock),
            tunnel_peers: Default::default(),
        },
        stop_rx,
    )
    .await
    .unwrap();
    tokio::spawn(serve);
    let contact = Contact {
        id: bound.id,
        addr: bound.quic,
    };
    let (a, b) = (Identity::generate(), Identity::generate());
    let token = RelayToken {
        call_id: CallId::random(),
        parties: [a.peer_id(), b.peer_id()],
        relay: bound.id,
        issuer: issuer.peer_id(),
        expires_at: parley_net::clock::now() + Duration::from_secs(120),
    }
    .sign(&issuer);
    let ea = make_endpoint("127.0.0.1:0".parse().unwrap(), &a, &[]).unwrap();
    let eb = make_endpoint("127.0.0.1:0".parse().unwrap(), &b, &[]).unwrap();
    let la = join_relay(&ea, &a, contact, &token, T).await.unwrap();
    let mut lb = join_relay(&eb, &b, contact, &token, T).await.unwrap();
    lb.wait_paired(T).await.unwrap();
    let (ma, mb) = (MediaLeg::open(la).await, MediaLeg::open(lb).await);
    assert_eq!(talk(&ma, &mb, 20).await, 40);

    // Forward by ten minutes, then two seconds of silence (under the 3 s idle
    // timeout): a wall-clock timer waking in the silence sees ten minutes of it and
    // closes both legs.
    OFFSET_MS.store(10 * 60 * 1000, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        talk(&ma, &mb, 20).await,
        40,
        "the call broke after a forward step"
    );

    // Back by twenty minutes: wall-clock token buckets would stop refilling, and after
    // the one-second burst every datagram would be rate limited. 150 datagrams per
    // direction at 50/s is three seconds, well over the burst.
    OFFSET_MS.store(-10 * 60 * 1000, Ordering::Relaxed);
    assert_eq!(
        talk(&ma, &mb, 150).await,
        300,
        "the call broke after a backward step"
    );

    let stats = bound.stats();
    assert_eq!(stats.drops(DropReason::RateLimited), 0, "{stats}");
    for why in CloseReason::ALL {
        assert_eq!(stats.closes(why), 0, "{stats}");
    }
    assert_eq!(bound.load().legs, 2);
}
