//! A transfer connection through a relay: the relay forwards datagrams, not streams,
//! so the transfer runs an end-to-end QUIC connection (TLS with both identities, ALPN
//! `parley-file/1`, as on the direct path) whose UDP packets ride in the relay leg's
//! media datagrams: [`LegSocket`] is a quinn socket over a [`MediaLeg`]. The relay
//! sees only ciphertext, as with a call's audio.
//!
//! The relay caps every leg (by default 100 packets/s and 64 kB/s, `docs/relay.md`);
//! packets over the cap are dropped there. So the socket paces what it sends below
//! the default cap ([`PACE_BYTES`], [`PACE_PACKETS`]): when the bucket is empty it
//! says "would block" and quinn waits, instead of losing packets at the relay and
//! backing off. A relay configured lower is met by QUIC's congestion control.
//!
//! Only a leg on the relay's UDP media channel can carry QUIC: its datagrams hold
//! 1,200 bytes, QUIC's minimum; inside the leg's own QUIC connection (no channel)
//! there is less room, and the relayed path fails, saying so.

use super::hello::{self, QuicPeer};
use parley_proto::call::signal::RelayGrant;
use parley_proto::relay::channel::MAX_PAYLOAD;
use parley_proto::transfer::Manifest;
use parley_proto::{Identity, PeerId};
use parley_relay::MediaLeg;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Connection, Endpoint, UdpPoller};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bytes per second the socket sends at most: below the relay's default per-leg cap
/// of 64 kB/s (65,536 bytes), with room for the relay's own accounting.
pub const PACE_BYTES: u64 = 60_000;
/// Packets per second the socket sends at most (the relay's default cap is 100).
pub const PACE_PACKETS: u64 = 90;
/// How long joining the relay and waiting for the partner may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// The address the peer appears at inside the leg (there is only one).
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

/// A token bucket over bytes and packets, at most one second's worth.
#[derive(Debug)]
struct Bucket {
    bytes: f64,
    packets: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let dt = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.bytes = (self.bytes + dt * PACE_BYTES as f64).min(PACE_BYTES as f64);
        self.packets = (self.packets + dt * PACE_PACKETS as f64).min(PACE_PACKETS as f64);
    }

    /// When a packet of `len` bytes may go (now, if it may).
    fn ready_at(&mut self, now: Instant, len: usize) -> Instant {
        self.refill(now);
        let wait_bytes = (len as f64 - self.bytes).max(0.0) / PACE_BYTES as f64;
        let wait_packets = (1.0 - self.packets).max(0.0) / PACE_PACKETS as f64;
        now + Duration::from_secs_f64(wait_bytes.max(wait_packets))
    }
}

/// A quinn socket whose one peer is at the other end of a relay leg.
#[derive(Debug)]
pub struct LegSocket {
    leg: Arc<MediaLeg>,
    received: Mutex<mpsc::Receiver<bytes::Bytes>>,
    bucket: Mutex<Bucket>,
}

impl LegSocket {
    /// Wraps `leg` (which must be on its media channel) and starts reading it.
    pub fn new(leg: Arc<MediaLeg>) -> Arc<LegSocket> {
        let (tx, rx) = mpsc::channel(256);
        let reader = leg.clone();
        tokio::spawn(async move {
            while let Ok(d) = reader.read_datagram().await {
                // Full: dropped, as a UDP socket's buffer would.
                let _ = tx.try_send(d);
            }
        });
        Arc::new(LegSocket {
            leg,
            received: Mutex::new(rx),
            bucket: Mutex::new(Bucket {
                bytes: PACE_BYTES as f64,
                packets: PACE_PACKETS as f64,
                at: Instant::now(),
            }),
        })
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writable when the bucket holds a full-size packet's worth.
#[derive(Debug)]
struct Pacer {
    socket: Arc<LegSocket>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl UdpPoller for Pacer {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let at = self.socket.bucket().ready_at(Instant::now(), MAX_PAYLOAD);
            if at <= Instant::now() {
                self.sleep = None;
                return Poll::Ready(Ok(()));
            }
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            sleep.as_mut().reset(at);
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

use std::future::Future;

impl AsyncUdpSocket for LegSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Pacer {
            socket: self,
            sleep: None,
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let len = transmit.contents.len();
        if len > MAX_PAYLOAD {
            // An MTU probe the channel cannot carry: lost, as on a path with that MTU.
            return Ok(());
        }
        let now = Instant::now();
        let mut bucket = self.bucket();
        if bucket.ready_at(now, len) > now {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        bucket.bytes -= len as f64;
        bucket.packets -= 1.0;
        drop(bucket);
        let datagram = bytes::Bytes::copy_from_slice(transmit.contents);
        // A full buffer or a closed leg loses the packet, as UDP would.
        let _ = self.leg.send_datagram(datagram);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        parley_net::channel_socket::poll_recv(
            &self.received,
            cx,
            bufs,
            meta,
            |datagram| (PEER, datagram),
            "relay leg closed",
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::from(([127, 0, 0, 1], 8)))
    }
}

/// Joins the relay of `grant`, waits for the partner and opens the media channel;
/// then an endpoint over the leg.
async fn leg_endpoint(
    endpoint: &Endpoint,
    identity: &Identity,
    grant: &RelayGrant,
) -> Result<Endpoint, String> {
    let at = grant.relay.addr;
    let mut leg =
        parley_relay::join_relay(endpoint, identity, grant.relay, &grant.token, JOIN_TIMEOUT)
            .await
            .map_err(|e| format!("relay {at}: {e}"))?;
    leg.wait_paired(PAIR_TIMEOUT)
        .await
        .map_err(|e| format!("relay {at}: {e}"))?;
    let leg = MediaLeg::open(leg).await;
    if !leg.on_channel() {
        return Err(format!(
            "relay {at}: no UDP media channel, and a file transfer cannot run inside the leg's QUIC datagrams"
        ));
    }
    let socket = LegSocket::new(Arc::new(leg));
    parley_net::make_endpoint_with(socket, identity, &[super::link::ALPN_FILE])
        .map_err(|e| e.to_string())
}

/// The sender's side: joins the relay and dials `peer` through it (its key pinned),
/// writing the hello. Returns the connection (its endpoint lives as long as it does).
pub async fn dial(
    endpoint: &Endpoint,
    identity: &Identity,
    peer: PeerId,
    grant: &RelayGrant,
    manifest: &Manifest,
) -> Result<(Connection, QuicPeer), String> {
    let leg = leg_endpoint(endpoint, identity, grant).await?;
    let candidate = parley_proto::presence::CandidateAddr {
        kind: parley_proto::presence::AddressKind::Local,
        addr: PEER,
    };
    let (conn, streams) = hello::dial(&leg, identity, peer, &[candidate], manifest).await?;
    keep_until_closed(leg, conn.clone());
    Ok((conn, streams))
}

/// The receiver's side: joins the relay and takes the sender's connection through it.
pub async fn accept(
    endpoint: &Endpoint,
    identity: &Identity,
    grant: &RelayGrant,
) -> Result<(PeerId, Connection), String> {
    let leg = leg_endpoint(endpoint, identity, grant).await?;
    let incoming = tokio::time::timeout(PAIR_TIMEOUT, leg.accept())
        .await
        .ok()
        .flatten()
        .ok_or("nobody connected through the relay")?;
    let conn = incoming.await.map_err(|e| e.to_string())?;
    let peer = parley_net::peer_id_of(&conn).map_err(|e| e.to_string())?;
    keep_until_closed(leg, conn.clone());
    Ok((peer, conn))
}

/// Keeps the leg's endpoint (and with it the relay leg) until `conn` closes.
fn keep_until_closed(endpoint: Endpoint, conn: Connection) {
    tokio::spawn(async move {
        conn.closed().await;
        endpoint.close(0u32.into(), b"done");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_paces_bytes_and_packets() {
        let t0 = Instant::now();
        let mut b = Bucket {
            bytes: 0.0,
            packets: PACE_PACKETS as f64,
            at: t0,
        };
        // 1,200 bytes at 60 kB/s: 20 ms.
        let at = b.ready_at(t0, 1200);
        assert_eq!((at - t0).as_millis(), 20);
        let mut b = Bucket {
            bytes: PACE_BYTES as f64,
            packets: 0.0,
            at: t0,
        };
        // One packet at 90/s: 11 ms.
        assert_eq!((b.ready_at(t0, 100) - t0).as_millis(), 11);
        // A full second refills at most a second's worth.
        b.ready_at(t0 + Duration::from_secs(5), 0);
        assert_eq!(b.bytes, PACE_BYTES as f64);
        assert_eq!(b.packets, PACE_PACKETS as f64);
    }
}
