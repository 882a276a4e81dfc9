//! `parley nat` and NAT discovery at start-up: the async shell around
//! [`NatDetector`], speaking STUN (stun-rs) from the socket the client will use for
//! calls, before quinn takes the socket over.
//!
//! A supernode's STUN address is what it advertises (`Welcome`, kept in the host
//! cache, or asked with an `Endpoints` query from a throwaway socket), never derived
//! from its QUIC port. "UDP blocked" is concluded only when no supernode answers over
//! UDP *and* one answers over its TCP fallback; when nothing answers at all, the
//! supernodes are unreachable, which says nothing about UDP.

use crate::home::KnownHost;
use crate::supernode_link::{ask_endpoints, local_ip_towards, Bootstrap};
use anyhow::{Context, Result};
use parley_net::canonical;
use parley_net::clock::{now, until};
use parley_proto::nat::{NatDetector, NatReport, Probe, StunAnswer};
use parley_proto::presence::NatType;
use std::net::SocketAddr;
use std::time::Duration;
use stun_rs::attributes::discovery::{
    ChangeRequest, ChangeRequestFlags, OtherAddress, ResponsePort,
};
use stun_rs::attributes::stun::XorMappedAddress;
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder, TransactionId,
};
use tokio::net::UdpSocket;

/// How long a supernode has to answer an endpoints query (over UDP) during discovery.
const ASK_UDP: Duration = Duration::from_millis(1500);
/// How long a supernode has to answer over its TCP fallback during discovery.
const ASK_TCP: Duration = Duration::from_secs(5);

/// `a` in the family of a socket bound to `local`: an IPv4 address as IPv4-mapped IPv6
/// when the socket is IPv6 (dual-stack), so that `send_to` accepts it.
pub fn for_socket(local: SocketAddr, a: SocketAddr) -> SocketAddr {
    match (local, a) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        _ => a,
    }
}

/// A UDP socket for both IPv4 and IPv6 (`[::]:0`, IPV6_V6ONLY off), or IPv4 only on
/// a host without IPv6.
pub fn bind_dual_stack() -> Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let dual = (|| -> std::io::Result<std::net::UdpSocket> {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_only_v6(false)?;
        s.bind(&SocketAddr::from(([0u16; 8], 0)).into())?;
        Ok(s.into())
    })();
    let socket = match dual {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "no IPv6 here; the client socket is IPv4 only");
            std::net::UdpSocket::bind(("0.0.0.0", 0))?
        }
    };
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn encode(probe: &Probe) -> Option<Vec<u8>> {
    let mut builder = StunMessageBuilder::new(BINDING, MessageClass::Request)
        .with_transaction_id(TransactionId::from(probe.txid));
    if let Some(port) = probe.response_port {
        builder = builder.with_attribute(ResponsePort::new(port));
    }
    if probe.change_port {
        builder = builder.with_attribute(ChangeRequest::new(Some(
            ChangeRequestFlags::ChangePort.into(),
        )));
    }
    let mut buf = vec![0u8; 128];
    let n = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, &builder.build())
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A success answer received from `from` on the main socket (`on_main`) or the second.
fn decode(datagram: &[u8], from: SocketAddr, on_main: bool) -> Option<StunAnswer> {
    let (msg, _) = MessageDecoderBuilder::default()
        .build()
        .decode(datagram)
        .ok()?;
    if msg.method() != BINDING || msg.class() != MessageClass::SuccessResponse {
        return None;
    }
    let mapped = msg
        .get::<XorMappedAddress>()?
        .as_xor_mapped_address()
        .ok()?;
    let other_address = msg
        .get::<OtherAddress>()
        .and_then(|a| a.as_other_address().ok())
        .map(|a| *a.socket_address());
    Some(StunAnswer {
        txid: *msg.transaction_id().as_bytes(),
        mapped: *mapped.socket_address(),
        from,
        other_address,
        on_main,
    })
}

/// Discovers the NAT in front of `main`, probing the STUN servers `sa` and `sb` (as
/// the supernodes advertised them).
pub async fn detect(main: &UdpSocket, sa: SocketAddr, sb: SocketAddr) -> Result<NatReport> {
    let local = main.local_addr()?;
    let port = local.port();
    let ip = local_ip_towards(sa).context("no route to the first supernode")?;
    let second = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await?;
    let mut detector = NatDetector::new(sa, sb, SocketAddr::new(ip, port), now(), rand::random());
    let (mut buf_main, mut buf_second) = (vec![0u8; 1500], vec![0u8; 1500]);
    loop {
        while let Some(probe) = detector.poll_probe() {
            let Some(bytes) = encode(&probe) else {
                continue;
            };
            let socket = if probe.from_second_socket {
                &second
            } else {
                main
            };
            if let Err(e) = socket.send_to(&bytes, for_socket(local, probe.to)).await {
                tracing::debug!(to = %probe.to, error = %e, "STUN probe not sent");
            }
        }
        if let Some(report) = detector.result() {
            return Ok(report);
        }
        let wake = detector.poll_timeout().map(until).unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wake) => detector.handle_timeout(now()),
            r = main.recv_from(&mut buf_main) => if let Ok((n, from)) = r {
                if let Some(answer) = decode(&buf_main[..n], canonical(from), true) {
                    detector.handle_response(now(), answer);
                }
            },
            r = second.recv_from(&mut buf_second) => if let Ok((n, from)) = r {
                if let Some(answer) = decode(&buf_second[..n], canonical(from), false) {
                    detector.handle_response(now(), answer);
                }
            },
        }
    }
}

/// What discovery concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// The NAT was classified (UDP blocked only when a TCP fallback answered).
    Found(NatReport),
    /// No supernode answered, over UDP or over TCP: nothing is known about the NAT.
    Unreachable,
    /// Supernodes answered, but fewer than two STUN servers on different IPs are
    /// known, so the NAT cannot be classified.
    Unknown,
}

/// Binds the client's one socket (dual stack) and discovers its NAT through it,
/// against the STUN servers the supernodes in `hosts` (the host cache) and `boot`
/// advertise; the socket then becomes the QUIC endpoint's.
pub async fn bind_and_detect(
    boot: &Bootstrap,
    hosts: &[KnownHost],
) -> Result<(std::net::UdpSocket, Discovery)> {
    let socket = bind_dual_stack().context("cannot open the client's UDP socket")?;
    let socket = UdpSocket::from_std(socket)?;
    let discovery = discover(&socket, boot, hosts).await;
    Ok((socket.into_std()?, discovery))
}

/// Two STUN servers on different IPs (RFC 5780's mapping test needs both).
fn two_ips(stun: &[SocketAddr]) -> Option<(SocketAddr, SocketAddr)> {
    let a = *stun.first()?;
    let b = *stun.iter().find(|s| s.ip() != a.ip())?;
    Some((a, b))
}

async fn discover(socket: &UdpSocket, boot: &Bootstrap, hosts: &[KnownHost]) -> Discovery {
    let mut stun: Vec<SocketAddr> = hosts.iter().filter_map(|h| h.stun).collect();
    let mut udp_answered = false;
    if two_ips(&stun).is_none() && !boot.quic.is_empty() {
        // Ask the bootstrap supernodes where they answer STUN, from a throwaway socket
        // (the main socket's NAT mappings must stay untouched for the filtering tests).
        match ask_all_over_udp(&boot.quic).await {
            Ok(answers) => {
                udp_answered = !answers.is_empty();
                stun.extend(answers.into_iter().filter_map(|e| e.stun));
            }
            Err(e) => tracing::debug!(error = %e, "endpoint queries not sent"),
        }
    }
    if let Some((a, b)) = two_ips(&stun) {
        match detect(socket, a, b).await {
            Ok(r) if r.nat != NatType::UdpBlocked => return Discovery::Found(r),
            Ok(_) if udp_answered => return Discovery::Unknown,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("NAT discovery failed: {e:#}");
                return Discovery::Unknown;
            }
        }
    } else if udp_answered {
        return Discovery::Unknown;
    }
    // Nothing answered over UDP. UDP is blocked only if a supernode answers over TCP.
    let tcp: Vec<SocketAddr> = boot
        .tcp
        .iter()
        .copied()
        .chain(hosts.iter().filter_map(|h| h.tcp))
        .collect();
    if tcp.is_empty() && stun.is_empty() && boot.quic.is_empty() {
        return Discovery::Unknown;
    }
    if tcp_answers(&tcp).await {
        Discovery::Found(NatReport {
            nat: NatType::UdpBlocked,
            mapped: None,
        })
    } else {
        Discovery::Unreachable
    }
}

/// Endpoints queries to every address at once over UDP; the answers that came.
async fn ask_all_over_udp(
    addrs: &[SocketAddr],
) -> Result<Vec<parley_proto::messages::ServerEndpoints>> {
    let anonymous = parley_proto::Identity::generate();
    let endpoint = parley_net::make_endpoint_on(bind_dual_stack()?, &anonymous, &[])?;
    let asks = addrs.iter().map(|&a| {
        let endpoint = endpoint.clone();
        async move { ask_endpoints(&endpoint, a, ASK_UDP).await }
    });
    let answers = futures_join_all(asks).await;
    endpoint.close(0u32.into(), b"done");
    Ok(answers
        .into_iter()
        .filter_map(|r| match r {
            Ok((_, e)) => Some(e),
            Err(e) => {
                tracing::debug!("{e:#}");
                None
            }
        })
        .collect())
}

/// Whether any supernode answers at these TCP fallback addresses (QUIC over TCP).
async fn tcp_answers(addrs: &[SocketAddr]) -> bool {
    if addrs.is_empty() {
        return false;
    }
    let anonymous = parley_proto::Identity::generate();
    let Ok(tunnel) = parley_net::tcp_tunnel::TcpTunnelSocket::new(&anonymous) else {
        return false;
    };
    let Ok(endpoint) = parley_net::make_endpoint_with(tunnel, &anonymous, &[]) else {
        return false;
    };
    let asks = addrs.iter().map(|&a| {
        let endpoint = endpoint.clone();
        async move { ask_endpoints(&endpoint, a, ASK_TCP).await }
    });
    let answered = futures_join_all(asks).await.iter().any(|r| r.is_ok());
    endpoint.close(0u32.into(), b"done");
    answered
}

/// Runs every future to completion, concurrently, in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}
