//! The STUN service's sockets and receive loops: binds the [`Layout`] (two ports, and
//! with `--stun-alternate-ip` two IPs: four sockets), answers each datagram with
//! [`crate::stun::answer`] and admits it through [`StunLimiter`] first.

use crate::stun::{answer, Layout, Slot};
use crate::stun_limit::{StunLimiter, StunLimits};
use anyhow::{bail, Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::debug;

/// Receive buffer: a whole UDP payload, so an oversized datagram is seen whole (and
/// refused) rather than truncated into something that looks complete.
const RECV_BUFFER_LEN: usize = 64 * 1024;

/// Pause after a failed receive, so a persistent socket error cannot spin the loop.
const RECV_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Attempts at finding an alternate port free on both IPs.
const BIND_ATTEMPTS: usize = 16;

/// The bound sockets of the STUN service.
pub struct StunSockets {
    /// Their addresses.
    pub layout: Layout,
    sockets: Vec<(Slot, UdpSocket)>,
}

/// The default second port for a STUN port: the next one (RFC 5780 servers' usual
/// 3478 and 3479), or any free port (0) when the STUN port is ephemeral or 65535.
pub fn default_alt_port(stun_port: u16) -> u16 {
    match stun_port {
        0 | u16::MAX => 0,
        p => p + 1,
    }
}

/// [`bind`] at `primary` with the second port `alt_port` (`None`: [`default_alt_port`]),
/// logging both ports at info level (the firewall must let both in). With `fallback`
/// (`--stun-listen` not given) and `primary` or the default second port taken (a second
/// supernode on the host), binds ephemeral ports on the same IP instead, with a warning:
/// clients use the advertised STUN address, whatever its port.
pub async fn bind_with_fallback(
    primary: SocketAddr,
    alt_ip: Option<IpAddr>,
    alt_port: Option<u16>,
    fallback: bool,
) -> Result<StunSockets> {
    let port = alt_port.unwrap_or_else(|| default_alt_port(primary.port()));
    let sockets = match bind(primary, alt_ip, port).await {
        Err(e) if fallback => {
            let any = SocketAddr::new(primary.ip(), 0);
            let sockets = bind(any, alt_ip, alt_port.unwrap_or(0)).await?;
            tracing::warn!(
                "{e:#}; STUN answers on {} instead (advertised to clients; --stun-listen chooses)",
                sockets.layout.primary
            );
            sockets
        }
        r => r?,
    };
    let layout = sockets.layout;
    let second = layout.addr(Slot::ALL[1]).unwrap_or(layout.primary);
    tracing::info!(
        stun = %layout.primary,
        stun_alternate = %second,
        alternate_ip = ?layout.alt_ip,
        "STUN answers on two UDP ports (RFC 5780 change-port; --stun-alternate-port): open both"
    );
    Ok(sockets)
}

/// Binds the primary socket at `primary`, the second port `alt_port` on the same IP
/// (0: any free port), and with `alt_ip` the same two ports on that IP.
///
/// Errors: a socket cannot be bound; `alt_ip` with an unspecified primary IP (OTHER-ADDRESS
/// must name real addresses), or of another address family, or equal to the primary.
pub async fn bind(
    primary: SocketAddr,
    alt_ip: Option<IpAddr>,
    alt_port: u16,
) -> Result<StunSockets> {
    if let Some(alt) = alt_ip {
        if primary.ip().is_unspecified() {
            bail!("--stun-alternate-ip needs --stun-listen on a specific IP, not {primary}");
        }
        if alt.is_ipv4() != primary.is_ipv4() || alt == primary.ip() {
            bail!("--stun-alternate-ip {alt} must be another IP of the same family as {primary}");
        }
    }
    let main = UdpSocket::bind(primary)
        .await
        .with_context(|| format!("cannot bind the STUN port {primary}"))?;
    let primary = main.local_addr()?;
    let mut last_error = None;
    // An ephemeral second port may be taken on the alternate IP: try another one.
    let attempts = if alt_port == 0 { BIND_ATTEMPTS } else { 1 };
    for _ in 0..attempts {
        match bind_alternates(primary, alt_ip, alt_port).await {
            Ok((alt_port, mut rest)) => {
                let mut sockets = vec![(Slot::PRIMARY, main)];
                sockets.append(&mut rest);
                return Ok(StunSockets {
                    layout: Layout {
                        primary,
                        alt_port: Some(alt_port),
                        alt_ip,
                    },
                    sockets,
                });
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no alternate STUN port")))
}

/// The second port `port` (0: ephemeral) on the primary IP, and with `alt_ip` both
/// ports there.
async fn bind_alternates(
    primary: SocketAddr,
    alt_ip: Option<IpAddr>,
    port: u16,
) -> Result<(u16, Vec<(Slot, UdpSocket)>)> {
    let addr = SocketAddr::new(primary.ip(), port);
    let second = UdpSocket::bind(addr).await.with_context(|| {
        format!("cannot bind the second STUN port {addr} (RFC 5780 change-port; --stun-alternate-port chooses, 0 any free port)")
    })?;
    let alt_port = second.local_addr()?.port();
    let mut sockets = vec![(Slot::ALL[1], second)];
    if let Some(ip) = alt_ip {
        for (slot, port) in [(Slot::ALL[2], primary.port()), (Slot::ALL[3], alt_port)] {
            let addr = SocketAddr::new(ip, port);
            let socket = UdpSocket::bind(addr)
                .await
                .with_context(|| format!("cannot bind the STUN alternate-IP socket {addr}"))?;
            sockets.push((slot, socket));
        }
    }
    Ok((alt_port, sockets))
}

/// Answers on every socket until `shutdown` becomes `true` (or its sender is dropped).
/// Bad datagrams, refused sources and socket errors are logged at debug level and never
/// end the loops.
pub async fn serve(stun: StunSockets, limits: StunLimits, shutdown: watch::Receiver<bool>) {
    let layout = stun.layout;
    let limiter = Arc::new(Mutex::new(StunLimiter::new(limits, Instant::now())));
    let sockets: Arc<Vec<(Slot, UdpSocket)>> = Arc::new(stun.sockets);
    let mut tasks = Vec::new();
    for index in 0..sockets.len() {
        tasks.push(tokio::spawn(serve_one(
            index,
            sockets.clone(),
            layout,
            limiter.clone(),
            shutdown.clone(),
        )));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn serve_one(
    index: usize,
    sockets: Arc<Vec<(Slot, UdpSocket)>>,
    layout: Layout,
    limiter: Arc<Mutex<StunLimiter>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some((slot, socket)) = sockets.get(index) else {
        return;
    };
    let local = socket.local_addr().ok();
    debug!(?local, "STUN responder started");
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => {
                    let Some(datagram) = buf.get(..len) else { continue };
                    let Some(a) = answer(datagram, from, &layout, *slot) else {
                        debug!(%from, len, "dropped a datagram that is not a STUN binding request");
                        continue;
                    };
                    let admitted = limiter
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .admit(from.ip(), Instant::now());
                    if !admitted {
                        debug!(%from, "STUN rate limit: request not answered");
                        continue;
                    }
                    let Some((_, out)) = sockets.iter().find(|(s, _)| *s == a.from_slot) else {
                        continue;
                    };
                    match out.send_to(&a.bytes, a.to).await {
                        Ok(_) => debug!(%from, to = %a.to, "answered a STUN binding request"),
                        Err(e) => debug!(%from, error = %e, "cannot send a STUN response"),
                    }
                }
                Err(e) => {
                    debug!(?local, error = %e, "STUN socket receive failed");
                    tokio::time::sleep(RECV_ERROR_BACKOFF).await;
                }
            }
        }
    }
    debug!(?local, "STUN responder stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use stun_rs::attributes::discovery::{ChangeRequest, ChangeRequestFlags, OtherAddress};
    use stun_rs::methods::BINDING;
    use stun_rs::{
        MessageClass, MessageDecoder, MessageEncoderBuilder, StunMessage, StunMessageBuilder,
        TransactionId,
    };

    fn request(change: &[ChangeRequestFlags]) -> Vec<u8> {
        let mut b = StunMessageBuilder::new(BINDING, MessageClass::Request)
            .with_transaction_id(TransactionId::default());
        let mut flags = change.iter().copied();
        if let Some(first) = flags.next() {
            let all = flags.fold(first.into(), |acc, f| acc | f);
            b = b.with_attribute(ChangeRequest::new(Some(all)));
        }
        let mut buffer = [0u8; 512];
        let len = MessageEncoderBuilder::default()
            .build()
            .encode(&mut buffer, &b.build())
            .expect("encode");
        buffer[..len].to_vec()
    }

    async fn exchange(
        client: &UdpSocket,
        to: SocketAddr,
        req: &[u8],
    ) -> Option<(SocketAddr, StunMessage)> {
        client.send_to(req, to).await.expect("send");
        let mut buf = [0u8; 1500];
        let (len, from) =
            tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf))
                .await
                .ok()?
                .expect("recv");
        let (msg, _) = MessageDecoder::default()
            .decode(&buf[..len])
            .expect("decode");
        Some((from, msg))
    }

    fn attr_addr<A>(
        msg: &StunMessage,
        get: impl Fn(&stun_rs::StunAttribute) -> Option<&A>,
    ) -> SocketAddr
    where
        A: AsRef<SocketAddr>,
    {
        *msg.attributes()
            .iter()
            .find_map(get)
            .expect("attribute present")
            .as_ref()
    }

    #[tokio::test]
    async fn four_sockets_answer_with_response_origin_and_other_address() {
        let primary: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
        let alt_ip = IpAddr::from([127, 0, 0, 2]);
        let stun = bind(primary, Some(alt_ip), 0)
            .await
            .expect("bind four sockets");
        let layout = stun.layout;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(stun, StunLimits::default(), stopped));
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let me = client.local_addr().expect("addr");
        let p = layout.primary;
        let other = layout
            .other_address(Slot::PRIMARY)
            .expect("an other address");
        assert_eq!(other.ip(), alt_ip);
        assert_ne!(other.port(), p.port());

        let (ip, port) = (ChangeRequestFlags::ChangeIp, ChangeRequestFlags::ChangePort);
        let cases: [(&[ChangeRequestFlags], SocketAddr); 4] = [
            (&[], p),
            (&[port], layout.addr(Slot::ALL[1]).expect("alt port")),
            (&[ip], layout.addr(Slot::ALL[2]).expect("alt ip")),
            (&[ip, port], other),
        ];
        for (change, expect_from) in cases {
            let (from, msg) = exchange(&client, p, &request(change))
                .await
                .expect("an answer");
            assert_eq!(from, expect_from, "{change:?} answered from");
            let origin = attr_addr(&msg, |a| a.as_response_origin().ok());
            assert_eq!(origin, from, "RESPONSE-ORIGIN names the sending socket");
            let other_attr =
                attr_addr(&msg, |a: &stun_rs::StunAttribute| a.as_other_address().ok());
            assert_eq!(other_attr, other);
            let mapped = attr_addr(&msg, |a| a.as_xor_mapped_address().ok());
            assert_eq!(mapped, me);
        }
        // Asked on the OTHER-ADDRESS, the other address is the primary.
        let (_, msg) = exchange(&client, other, &request(&[]))
            .await
            .expect("answer");
        assert_eq!(attr_addr(&msg, |a| a.as_other_address().ok()), p);
        stop.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("serve stops")
            .expect("no panic");
    }

    #[tokio::test]
    async fn without_an_alternate_ip_change_ip_gets_no_answer_and_no_other_address() {
        let stun = bind((Ipv4Addr::LOCALHOST, 0).into(), None, 0)
            .await
            .expect("bind");
        let p = stun.layout.primary;
        let (_stop, stopped) = watch::channel(false);
        tokio::spawn(serve(stun, StunLimits::default(), stopped));
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let (from, msg) = exchange(&client, p, &request(&[])).await.expect("answer");
        assert_eq!(from, p);
        assert!(msg.get::<OtherAddress>().is_none());
        assert_eq!(attr_addr(&msg, |a| a.as_response_origin().ok()), p);
        let (from, _) = exchange(&client, p, &request(&[ChangeRequestFlags::ChangePort]))
            .await
            .expect("change-port answer");
        assert_eq!(from.ip(), p.ip());
        assert_ne!(from.port(), p.port());
        let change_ip = request(&[ChangeRequestFlags::ChangeIp]);
        assert!(exchange(&client, p, &change_ip).await.is_none());
        // The responder is alive: a plain request still gets its answer.
        assert!(exchange(&client, p, &request(&[])).await.is_some());
    }

    #[tokio::test]
    async fn a_flooding_source_is_rate_limited_over_udp_and_others_still_answered() {
        let stun = bind((Ipv4Addr::LOCALHOST, 0).into(), None, 0)
            .await
            .expect("bind");
        let p = stun.layout.primary;
        let limits = StunLimits {
            // No refill within the test: exactly the burst gets answers.
            per_ip_rate: 0.001,
            per_ip_burst: 5.0,
            ..StunLimits::default()
        };
        let (_stop, stopped) = watch::channel(false);
        tokio::spawn(serve(stun, limits, stopped));
        let flooder = UdpSocket::bind("127.0.0.1:0").await.expect("flooder");
        let mut answered = 0;
        for _ in 0..20 {
            if exchange(&flooder, p, &request(&[])).await.is_some() {
                answered += 1;
            }
        }
        assert_eq!(answered, 5, "the burst, then nothing");
        // Another source IP has its own bucket.
        let bystander = UdpSocket::bind("127.0.0.2:0").await.expect("bystander");
        assert!(exchange(&bystander, p, &request(&[])).await.is_some());
    }

    #[tokio::test]
    async fn alternate_ip_mistakes_are_errors() {
        let alt = Some(IpAddr::from([127, 0, 0, 2]));
        assert!(bind((Ipv4Addr::UNSPECIFIED, 0).into(), alt, 0)
            .await
            .is_err());
        assert!(bind(
            (Ipv4Addr::LOCALHOST, 0).into(),
            Some(IpAddr::from([127, 0, 0, 1])),
            0
        )
        .await
        .is_err());
        assert!(bind(
            (Ipv4Addr::LOCALHOST, 0).into(),
            Some("::1".parse().expect("ip")),
            0
        )
        .await
        .is_err());
    }

    #[tokio::test]
    async fn the_second_port_is_the_one_asked_for_or_the_default_or_an_error() {
        assert_eq!((default_alt_port(3478), default_alt_port(0)), (3479, 0));
        assert_eq!(default_alt_port(u16::MAX), 0);
        let free = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
        let port = free.local_addr().expect("addr").port();
        drop(free);
        let stun = bind((Ipv4Addr::LOCALHOST, 0).into(), None, port)
            .await
            .expect("bind");
        assert_eq!(stun.layout.alt_port, Some(port));
        let p = stun.layout.primary;
        let (_stop, stopped) = watch::channel(false);
        tokio::spawn(serve(stun, StunLimits::default(), stopped));
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let change_port = request(&[ChangeRequestFlags::ChangePort]);
        let (from, _) = exchange(&client, p, &change_port).await.expect("answer");
        assert_eq!(from, SocketAddr::new(p.ip(), port));
        // Taken: an error naming the setting, not another port.
        let err = bind((Ipv4Addr::LOCALHOST, 0).into(), None, port)
            .await
            .err()
            .expect("the port is taken");
        assert!(
            format!("{err:#}").contains("--stun-alternate-port"),
            "{err:#}"
        );
        // The default with a fixed STUN port is the next port; with fallback and it
        // taken, both ports move (with a warning) rather than fail.
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("taken");
        let taken_port = taken.local_addr().expect("addr").port();
        let before = SocketAddr::new(p.ip(), taken_port - 1);
        if let Ok(s) = bind_with_fallback(before, None, None, false).await {
            panic!("bound {:?} though the next port is taken", s.layout);
        }
        let s = bind_with_fallback(before, None, None, true)
            .await
            .expect("falls back");
        assert_ne!(s.layout.alt_port, Some(taken_port));
    }
}
