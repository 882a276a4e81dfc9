//! [`MediaLeg`]: the client's end of a joined relay leg as something to send media on.
//!
//! When the relay granted a channel (`Joined { channel }`), the leg proves its UDP
//! address to the relay's data port (BIND, CHALLENGE, BIND with the cookie, BOUND) and
//! then sends media as channel datagrams, tagged with the key both ends exported from
//! the join's TLS session. When that does not work within [`BIND_TIMEOUT`] (UDP
//! blocked, the leg tunnelled over TCP, an old relay), media goes as QUIC datagrams on
//! the leg's connection instead: the slow leg kind, which the relay forwards too.
//! Either way datagrams from the partner arrive on both, and `read_datagram` returns
//! them from whichever carried them.

use crate::client::{RelayClientError, RelayLeg};
use bytes::Bytes;
use parley_proto::relay::channel::{
    decode_relay, encode_bind, encode_data, ChannelId, ChannelKey, RelayDatagram, MAX_DATAGRAM,
};
use quinn::{Connection, ConnectionError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// How long the address proof may take before the leg settles for QUIC datagrams.
pub const BIND_TIMEOUT: Duration = Duration::from_millis(1500);
/// How often a BIND is resent while proving (UDP loses packets).
const BIND_RETRY: Duration = Duration::from_millis(250);
/// How often a bound channel re-sends BIND: keeps the NAT mapping open through
/// silence, and lets the relay challenge a new address after a NAT rebinding.
pub const CHANNEL_KEEPALIVE: Duration = Duration::from_secs(5);

struct Link {
    socket: UdpSocket,
    key: ChannelKey,
    channel: ChannelId,
    counter: AtomicU64,
}

impl Link {
    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn bind(&self, cookie: Option<u64>) {
        let mut out = Vec::with_capacity(32);
        encode_bind(&mut out, &self.key, self.channel, self.next(), cookie);
        let _ = self.socket.try_send(&out);
    }
}

/// A joined relay leg to send media on. See the module documentation.
pub struct MediaLeg {
    /// The leg's QUIC connection (control, and media when there is no channel).
    pub conn: Connection,
    link: Option<Arc<Link>>,
}

impl std::fmt::Debug for MediaLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLeg")
            .field("relay", &self.conn.remote_address())
            .field("channel", &self.link.as_ref().map(|l| l.channel))
            .finish()
    }
}

impl MediaLeg {
    /// Sets up `leg` for media: proves a channel address when the relay granted a
    /// channel, else (or when that fails) uses QUIC datagrams.
    pub async fn open(leg: RelayLeg) -> MediaLeg {
        let link = match (leg.channel, leg.channel_key) {
            (Some(grant), Some(key)) => {
                let relay = SocketAddr::new(leg.conn.remote_address().ip(), grant.port);
                prove(relay, key, grant.channel).await
            }
            _ => None,
        };
        if link.is_none() {
            tracing::debug!(relay = %leg.conn.remote_address(), "relay leg carries media inside QUIC");
        }
        let link = link.map(Arc::new);
        if let Some(link) = &link {
            let (conn, link) = (leg.conn.clone(), Arc::downgrade(link));
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = conn.closed() => return,
                        _ = tokio::time::sleep(CHANNEL_KEEPALIVE) => {}
                    }
                    match link.upgrade() {
                        Some(l) => l.bind(None),
                        None => return,
                    }
                }
            });
        }
        MediaLeg {
            conn: leg.conn,
            link,
        }
    }

    /// Sets up `leg` for media inside QUIC datagrams only, without trying the relay's
    /// UDP media channel: for a client whose datagrams go through a TCP tunnel (the
    /// channel's UDP port cannot be reached, and trying costs [`BIND_TIMEOUT`]).
    pub fn inside_quic(leg: RelayLeg) -> MediaLeg {
        MediaLeg {
            conn: leg.conn,
            link: None,
        }
    }

    /// The channel number, when media goes on the channel (diagnostics and tests).
    pub fn channel_id(&self) -> Option<ChannelId> {
        self.link.as_ref().map(|l| l.channel)
    }

    /// The channel's key (this leg's own secret; diagnostics and tests).
    pub fn channel_key(&self) -> Option<ChannelKey> {
        self.link.as_ref().map(|l| l.key)
    }

    /// Whether media goes on the channel (false: inside QUIC).
    pub fn on_channel(&self) -> bool {
        self.link.is_some()
    }

    /// Sends one media datagram to the partner (never blocks; a full buffer drops it).
    pub fn send_datagram(&self, payload: Bytes) -> Result<(), RelayClientError> {
        match &self.link {
            Some(link) => {
                let mut out = Vec::with_capacity(payload.len() + 21);
                encode_data(&mut out, &link.key, link.channel, link.next(), &payload);
                link.socket
                    .try_send(&out)
                    .map(|_| ())
                    .map_err(RelayClientError::Io)
            }
            None => Ok(self.conn.send_datagram(payload)?),
        }
    }

    /// The partner's next datagram, from the channel or the connection; an error once
    /// the connection is closed.
    pub async fn read_datagram(&self) -> Result<Bytes, ConnectionError> {
        let Some(link) = &self.link else {
            return self.conn.read_datagram().await;
        };
        let mut buf = [0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                d = self.conn.read_datagram() => return d,
                r = link.socket.recv(&mut buf) => {
                    let Ok(n) = r else { continue };
                    match decode_relay(&buf[..n]) {
                        Ok(RelayDatagram::Data { channel, payload }) if channel == link.channel => {
                            return Ok(Bytes::copy_from_slice(payload));
                        }
                        Ok(RelayDatagram::Challenge { channel, cookie }) if channel == link.channel => {
                            link.bind(Some(cookie));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// BIND, answer the challenge, wait for BOUND; `None` if it does not work in time.
async fn prove(relay: SocketAddr, key: ChannelKey, channel: ChannelId) -> Option<Link> {
    let any: SocketAddr = if relay.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = UdpSocket::bind(any).await.ok()?;
    socket.connect(relay).await.ok()?;
    let link = Link {
        socket,
        key,
        channel,
        counter: AtomicU64::new(0),
    };
    let mut buf = [0u8; 64];
    let proof = async {
        let mut cookie = None;
        loop {
            link.bind(cookie);
            let deadline = tokio::time::sleep(BIND_RETRY);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    r = link.socket.recv(&mut buf) => {
                        let Ok(n) = r else { continue };
                        match decode_relay(&buf[..n]) {
                            Ok(RelayDatagram::Bound { channel: c, .. }) if c == channel => return,
                            Ok(RelayDatagram::Challenge { channel: c, cookie: k }) if c == channel => {
                                cookie = Some(k);
                                break;
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(BIND_TIMEOUT, proof).await.ok()?;
    Some(link)
}
