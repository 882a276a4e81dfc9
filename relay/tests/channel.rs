//! The media data plane, in process: legs prove a channel address and media crosses on
//! it; spoofed, replayed and redirected datagrams are refused and counted; a channel leg
//! and a QUIC-only leg (the TCP fallback's kind) still talk; join floods are capped,
//! refused and counted, and a live call keeps forwarding through them.

#![allow(clippy::unwrap_used)] // a test: a panic is the failure report

use bytes::Bytes;
use parley_net::make_endpoint;
use parley_proto::presence::Contact;
use parley_proto::relay::channel::{
    decode_relay, encode_bind, encode_data, ChannelKey, RelayDatagram, KEY_LEN,
};
use parley_proto::relay::{
    CallId, DropReason, RelayConfig, RelayRefusalCode, RelayStats, RelayToken, SignedRelayToken,
};
use parley_proto::Identity;
use parley_relay::{join_relay, Bound, MediaLeg, RelayClientError, RelayLeg, RelayParams};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::watch;

const T: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(400);

struct World {
    bound: Bound,
    issuer: Identity,
    _stop: watch::Sender<bool>,
}

impl World {
    async fn start() -> World {
        World::start_with_joins(0).await
    }

    /// A relay admitting `per_ip` joins per second from one IP (0: the default).
    async fn start_with_joins(per_ip: u32) -> World {
        let issuer = Identity::generate();
        let (stop, stop_rx) = watch::channel(false);
        let (bound, serve) = parley_relay::start(
            RelayParams {
                identity: Identity::generate(),
                listen: "127.0.0.1:0".parse().unwrap(),
                trusted: vec![issuer.peer_id()],
                config: RelayConfig::default(),
                supernodes: vec![],
                advertise: None,
                tcp: None,
                data_listen: None,
                data_threads: 2,
                max_joins_per_ip: per_ip,
                wall_clock: None,
                tunnel_peers: Default::default(),
            },
            stop_rx,
        )
        .await
        .unwrap();
        tokio::spawn(serve);
        World {
            bound,
            issuer,
            _stop: stop,
        }
    }

    fn token(&self, a: &Identity, b: &Identity) -> SignedRelayToken {
        RelayToken {
            call_id: CallId::random(),
            parties: [a.peer_id(), b.peer_id()],
            relay: self.bound.id,
            issuer: self.issuer.peer_id(),
            expires_at: parley_net::clock::now() + Duration::from_secs(60),
        }
        .sign(&self.issuer)
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

    /// Two paired legs, both on their channel.
    async fn call(&self) -> (MediaLeg, MediaLeg) {
        let (a, b) = (Identity::generate(), Identity::generate());
        let t = self.token(&a, &b);
        let la = self.join(&a, &t).await.unwrap();
        let mut lb = self.join(&b, &t).await.unwrap();
        lb.wait_paired(T).await.unwrap();
        let (ma, mb) = (MediaLeg::open(la).await, MediaLeg::open(lb).await);
        assert!(ma.on_channel() && mb.on_channel());
        (ma, mb)
    }

    /// The relay's counters once the data plane has published them.
    async fn stats(&self) -> RelayStats {
        tokio::time::sleep(Duration::from_millis(250)).await;
        self.bound.stats()
    }
}

async fn recv(leg: &MediaLeg) -> Option<Bytes> {
    tokio::time::timeout(QUIET, leg.read_datagram())
        .await
        .ok()
        .and_then(Result::ok)
}

#[tokio::test]
async fn media_crosses_on_proven_channels_both_ways() {
    let w = World::start().await;
    let (a, b) = w.call().await;
    for i in 0..20u8 {
        a.send_datagram(Bytes::from(vec![i; 100])).unwrap();
        assert_eq!(recv(&b).await.unwrap(), vec![i; 100]);
        b.send_datagram(Bytes::from(vec![i; 80])).unwrap();
        assert_eq!(recv(&a).await.unwrap(), vec![i; 80]);
    }
    assert_eq!(w.stats().await.forwarded_packets, 40);
}

#[tokio::test]
async fn a_spoofed_datagram_claiming_a_channel_is_not_forwarded() {
    let w = World::start().await;
    let (a, b) = w.call().await;
    let key_a = ChannelKey([0; KEY_LEN]);
    // The forger knows A's channel (it is in every datagram A sends), not A's key. It
    // tries channel numbers near A's too, from a socket of its own.
    let forger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut out = Vec::new();
    for channel in 0..8u32 {
        for ctr in 1..5u64 {
            encode_data(&mut out, &key_a, channel | (1 << 20), ctr, b"injected");
            forger.send_to(&out, w.bound.data).await.unwrap();
        }
    }
    assert!(recv(&b).await.is_none(), "a forged datagram was forwarded");
    // The call is alive: a real datagram still crosses.
    a.send_datagram(Bytes::from_static(b"real")).unwrap();
    assert_eq!(recv(&b).await.unwrap(), &b"real"[..]);
    let stats = w.stats().await;
    assert!(
        stats.drops(DropReason::BadMac) + stats.drops(DropReason::UnknownChannel) >= 32,
        "{stats}"
    );
    assert_eq!(stats.forwarded_packets, 1);
}

#[tokio::test]
async fn a_party_cannot_make_the_relay_send_anywhere_but_to_its_partner() {
    let w = World::start().await;
    let (a, b) = w.call().await;
    // A third address (a victim) that A wants the relay to flood. A knows its own key
    // and channel (a malicious client does), and sends from the victim's address.
    let victim = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    victim.connect(w.bound.data).await.unwrap();
    let (ch, key) = (a_channel(&a), a_key(&a));
    let mut out = Vec::new();
    encode_bind(&mut out, &key, ch, 1_000, None);
    victim.send(&out).await.unwrap();
    encode_data(&mut out, &key, ch, 1_001, b"from the victim's address");
    victim.send(&out).await.unwrap();
    // B talks; only A gets it; the victim gets one challenge (13 bytes, smaller than
    // the 21-byte BIND) and never media.
    for _ in 0..5 {
        b.send_datagram(Bytes::from_static(b"for A only")).unwrap();
        assert_eq!(recv(&a).await.unwrap(), &b"for A only"[..]);
    }
    let mut buf = [0u8; 1500];
    let n = tokio::time::timeout(QUIET, victim.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        decode_relay(&buf[..n]),
        Ok(RelayDatagram::Challenge { .. })
    ));
    assert!(tokio::time::timeout(QUIET, victim.recv(&mut buf))
        .await
        .is_err());
    assert!(recv(&b).await.is_none(), "B got A's spoofed data");
    let stats = w.stats().await;
    assert_eq!(stats.drops(DropReason::UnprovenAddress), 1, "{stats}");
    // A replay of the BIND is refused as such.
    encode_bind(&mut out, &key, ch, 1_000, None);
    victim.send(&out).await.unwrap();
    assert_eq!(w.stats().await.drops(DropReason::Replayed), 1);
}

#[tokio::test]
async fn a_channel_leg_and_a_leg_inside_quic_talk_to_each_other() {
    let w = World::start().await;
    let (a, b) = (Identity::generate(), Identity::generate());
    let t = w.token(&a, &b);
    let la = w.join(&a, &t).await.unwrap();
    let mut lb = w.join(&b, &t).await.unwrap();
    lb.wait_paired(T).await.unwrap();
    let a = MediaLeg::open(la).await;
    assert!(a.on_channel());
    // B never proves a channel address, as a client over the TCP tunnel cannot.
    for _ in 0..5 {
        a.send_datagram(Bytes::from_static(b"to quic")).unwrap();
        let got = tokio::time::timeout(T, lb.conn.read_datagram()).await;
        assert_eq!(got.unwrap().unwrap(), &b"to quic"[..]);
        lb.conn
            .send_datagram(Bytes::from_static(b"to channel"))
            .unwrap();
        assert_eq!(recv(&a).await.unwrap(), &b"to channel"[..]);
    }
}

#[tokio::test]
async fn join_floods_from_one_address_are_capped() {
    let w = World::start().await;
    let spammer = Identity::generate();
    let t = w.token(&spammer, &Identity::generate());
    let endpoint = make_endpoint("127.0.0.1:0".parse().unwrap(), &spammer, &[]).unwrap();
    let contact = Contact {
        id: w.bound.id,
        addr: w.bound.quic,
    };
    let mut codes = Vec::new();
    for _ in 0..120 {
        match join_relay(&endpoint, &spammer, contact, &t, T).await {
            Err(RelayClientError::Refused(r)) => codes.push(r.code),
            Ok(_) => codes.push(RelayRefusalCode::NoToken), // admitted: marks a slot
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        codes.contains(&RelayRefusalCode::RateLimited),
        "120 joins at once were all verified: {codes:?}"
    );
}

/// What one flooder got: the refusal code of every join, and how many were admitted.
#[derive(Default)]
struct FloodResult {
    refused: Vec<RelayRefusalCode>,
    admitted: usize,
}

/// Joins from `ip` with tokens from `token` until `stop` is set and at least `min`
/// joins were made (at most 5000).
async fn flood(
    w: &World,
    ip: &str,
    min: usize,
    stop: &std::sync::atomic::AtomicBool,
    token: impl Fn(&Identity) -> SignedRelayToken,
) -> FloodResult {
    use std::sync::atomic::Ordering;
    let who = Identity::generate();
    let bind = format!("{ip}:0").parse().unwrap();
    let endpoint = make_endpoint(bind, &who, &[]).unwrap();
    let contact = Contact {
        id: w.bound.id,
        addr: w.bound.quic,
    };
    let mut result = FloodResult::default();
    for n in 0..5000 {
        if n >= min && stop.load(Ordering::Relaxed) {
            break;
        }
        match join_relay(&endpoint, &who, contact, &token(&who), T).await {
            Err(RelayClientError::Refused(r)) => result.refused.push(r.code),
            Ok(_leg) => result.admitted += 1,
            Err(e) => panic!("join from {ip}: {e}"),
        }
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_call_keeps_forwarding_while_the_relay_is_flooded_with_joins() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // 5 joins/s from one IP (burst 15): each flooder below is over it however fast
    // this machine runs them.
    let w = std::sync::Arc::new(World::start_with_joins(5).await);
    let (a, b) = w.call().await;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    // Three flooders at other addresses than the call's, each making at least 80
    // joins: tokens from an issuer the relay does not trust, tokens with a broken
    // signature, and valid tokens (each for a new call) over the rate. They keep going
    // until the call below is over, so the whole call runs under the flood.
    let spawn = |ip: &'static str, kind: u8| {
        let (w, stop) = (w.clone(), stop.clone());
        tokio::spawn(async move {
            let stranger = Identity::generate();
            let token = |who: &Identity| match kind {
                0 => RelayToken {
                    call_id: CallId::random(),
                    parties: [who.peer_id(), Identity::generate().peer_id()],
                    relay: w.bound.id,
                    issuer: stranger.peer_id(),
                    expires_at: parley_net::clock::now() + Duration::from_secs(60),
                }
                .sign(&stranger),
                1 => {
                    let mut t = w.token(who, &Identity::generate());
                    t.signature[7] ^= 0x10;
                    t
                }
                _ => w.token(who, &Identity::generate()),
            };
            flood(&w, ip, 80, &stop, token).await
        })
    };
    let flooders = [
        spawn("127.0.0.2", 0),
        spawn("127.0.0.3", 1),
        spawn("127.0.0.4", 2),
    ];
    // The call: 50 datagrams each way, each of which must arrive.
    const ROUNDS: u8 = 50;
    for i in 0..ROUNDS {
        a.send_datagram(Bytes::from(vec![i; 120])).unwrap();
        let got = tokio::time::timeout(T, b.read_datagram()).await;
        assert_eq!(got.unwrap().unwrap(), vec![i; 120], "round {i}: a to b");
        b.send_datagram(Bytes::from(vec![i; 90])).unwrap();
        let got = tokio::time::timeout(T, a.read_datagram()).await;
        assert_eq!(got.unwrap().unwrap(), vec![i; 90], "round {i}: b to a");
    }
    let still_flooding = flooders.iter().filter(|f| !f.is_finished()).count();
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for f in flooders {
        results.push(f.await.unwrap());
    }
    assert_eq!(
        still_flooding, 3,
        "every flooder ran until the call was over"
    );
    // Nothing with a bad token got in; the over-rate flooder was cut to the rate.
    for (who, r) in results.iter().take(2).enumerate() {
        assert_eq!(r.admitted, 0, "flooder {who} was admitted");
        assert!(r.refused.len() >= 80);
    }
    let codes = |r: &FloodResult, c| r.refused.iter().filter(|&&x| x == c).count() as u64;
    assert!(codes(&results[0], RelayRefusalCode::UntrustedIssuer) > 0);
    assert!(codes(&results[1], RelayRefusalCode::BadToken) > 0);
    assert!(codes(&results[2], RelayRefusalCode::RateLimited) > 0);
    // The relay counted every refusal, by its code, and forwarded the call's 100
    // datagrams and nothing else.
    let stats = w.stats().await;
    for code in RelayRefusalCode::ALL {
        let seen: u64 = results.iter().map(|r| codes(r, code)).sum();
        assert_eq!(stats.refused_joins(code), seen, "{code:?}: {stats}");
    }
    assert_eq!(stats.forwarded_packets, 2 * u64::from(ROUNDS), "{stats}");
    assert_eq!(stats.total_drops(), 0, "{stats}");
}

fn a_channel(leg: &MediaLeg) -> u32 {
    leg.channel_id().unwrap()
}

fn a_key(leg: &MediaLeg) -> ChannelKey {
    leg.channel_key().unwrap()
}
