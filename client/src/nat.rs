//! `parley nat` and NAT discovery at start-up: the async shell around
//! [`NatDetector`], speaking STUN (stun-rs) from the socket the client will use for
//! calls, before quinn takes the socket over. Supernodes answer STUN on their QUIC
//! port + 1 (their default).

use crate::supernode_link::local_ip_towards;
use anyhow::{Context, Result};
use parley_net::clock::{now, until};
use parley_proto::nat::{NatDetector, NatReport, Probe, StunAnswer};
use std::net::SocketAddr;
use stun_rs::attributes::discovery::{
    ChangeRequest, ChangeRequestFlags, OtherAddress, ResponsePort,
};
use stun_rs::attributes::stun::XorMappedAddress;
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder, TransactionId,
};
use tokio::net::UdpSocket;

/// The STUN address of a supernode listening for QUIC at `quic`.
pub fn stun_address(quic: SocketAddr) -> SocketAddr {
    SocketAddr::new(quic.ip(), quic.port().wrapping_add(1))
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

/// Discovers the NAT in front of `main`, probing the supernodes `a` and `b` (QUIC
/// addresses; their STUN ports are derived).
pub async fn detect(main: &UdpSocket, a: SocketAddr, b: SocketAddr) -> Result<NatReport> {
    let (sa, sb) = (stun_address(a), stun_address(b));
    let port = main.local_addr()?.port();
    let ip = local_ip_towards(sa).context("no route to the first supernode")?;
    let second = UdpSocket::bind(SocketAddr::new(main.local_addr()?.ip(), 0)).await?;
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
            if let Err(e) = socket.send_to(&bytes, probe.to).await {
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
                if let Some(answer) = decode(&buf_main[..n], from, true) {
                    detector.handle_response(now(), answer);
                }
            },
            r = second.recv_from(&mut buf_second) => if let Ok((n, from)) = r {
                if let Some(answer) = decode(&buf_second[..n], from, false) {
                    detector.handle_response(now(), answer);
                }
            },
        }
    }
}

/// Binds the client's one UDP socket and, given two supernodes, discovers its NAT
/// through it; the socket then becomes the QUIC endpoint's.
pub async fn bind_and_detect(
    supernodes: &[SocketAddr],
) -> Result<(std::net::UdpSocket, Option<NatReport>)> {
    let socket = tokio::net::UdpSocket::bind(("0.0.0.0", 0))
        .await
        .context("cannot open the client's UDP socket")?;
    let report = match supernodes {
        [a, b, ..] => match detect(&socket, *a, *b).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("NAT discovery failed: {e:#}");
                None
            }
        },
        _ => None,
    };
    Ok((socket.into_std()?, report))
}
