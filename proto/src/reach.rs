//! The reachability dial-back a client must pass before it is promoted to serve
//! (issue 10; docs/architecture.md, "Promotion").
//!
//! A client that wants to serve binds the UDP port it would advertise and asks a
//! supernode it is attached to: "have someone dial me back at ADDR, presenting nonce N"
//! ([`DialBack`]). The asked supernode never dials itself. It checks that ADDR's IP is
//! the client's own observed IP (so it can never be used as a reflector against a third
//! party), rate-limits the client's IP, and orders a probe from *another* supernode
//! ([`ProbeOrder`]), on a different network where it knows one ([`probers`]). That
//! supernode rate-limits the target IP again and dials ADDR over QUIC (ALPN
//! [`ALPN_PROBE`], the serving key pinned), sends [`Probe`] with the nonce and waits for
//! [`ProbeAck`]. The client counts the check passed only when the nonce arrived on its
//! serving socket over a connection whose key and address are not the asked
//! supernode's (the decision is [`crate::promotion::Promotion`]'s): the proof is what
//! the client received, not what any supernode says.
//!
//! Wire: five new envelope kinds (0x30–0x34), so no existing message changed shape; a
//! supernode that predates them refuses the request as malformed.

use crate::codec::WireMessage;
use crate::messages::{Refusal, RefusalCode};
use crate::overlay::diversity::ip_group;
use crate::presence::Contact;
use crate::quota::{KeyedQuota, Quota};
use crate::time::Mono;
use crate::PeerId;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// ALPN of a probe connection (prober → the client's serving socket).
pub const ALPN_PROBE: &[u8] = b"parley-probe/1";

/// A probe's nonce: 16 random bytes the client chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Nonce(pub [u8; 16]);

/// Client → a supernode it is attached to (kind 0x30): dial me back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialBack {
    /// Where to dial: the client's observed IP and its serving port.
    pub addr: SocketAddr,
    /// The key the serving socket presents (pinned by the prober).
    pub key: PeerId,
    /// Echoed in the probe.
    pub nonce: Nonce,
}

/// Supernode → supernode (kind 0x32): dial this address with this nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOrder {
    /// The dial-back request as the asked supernode checked it.
    pub dial: DialBack,
}

/// The answer to a [`DialBack`] or a [`ProbeOrder`] (kind 0x31).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeReply {
    /// The prober's probe was acknowledged by the target.
    Probed {
        /// The supernode that dialed.
        prober: PeerId,
    },
    /// The probe did not get through (or no other supernode could be asked).
    Failed(String),
    /// Refused (not your address, rate limit, malformed).
    Refused(Refusal),
}

/// Prober → the client's serving socket (kind 0x33).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The nonce from the dial-back request.
    pub nonce: Nonce,
}

/// The client's answer to a [`Probe`] (kind 0x34): the nonce, echoed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeAck {
    /// The probe's nonce.
    pub nonce: Nonce,
}

impl WireMessage for DialBack {
    const KIND: u8 = 0x30;
}
impl WireMessage for ProbeReply {
    const KIND: u8 = 0x31;
}
impl WireMessage for ProbeOrder {
    const KIND: u8 = 0x32;
}
impl WireMessage for Probe {
    const KIND: u8 = 0x33;
}
impl WireMessage for ProbeAck {
    const KIND: u8 = 0x34;
}

/// Rate limits on dial-backs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReachLimits {
    /// Dial-back requests a supernode accepts per client IP: 3 at once, 6 a minute (a
    /// client checks once per 30 s at most, [`crate::promotion::PromotionConfig`]).
    /// Loopback is not limited (it cannot be reached from outside).
    pub requests_per_ip: Quota,
    /// Probes a supernode sends to one target IP, whoever orders them: the same. A
    /// lying supernode ordering probes at a victim gets 6 QUIC handshakes a minute per
    /// prober out of it, nothing larger than what it sent.
    pub probes_per_target: Quota,
    /// Most IPs tracked by each quota.
    pub max_ips: usize,
}

impl Default for ReachLimits {
    fn default() -> ReachLimits {
        ReachLimits {
            requests_per_ip: Quota::new(3, 6),
            probes_per_target: Quota::new(3, 6),
            max_ips: 4096,
        }
    }
}

/// The supernode's side of dial-backs: admission checks and rate limits, on [`Mono`]
/// time.
#[derive(Debug)]
pub struct ReachGuard {
    requests: KeyedQuota<IpAddr>,
    probes: KeyedQuota<IpAddr>,
}

fn refusal(code: RefusalCode, message: String) -> Refusal {
    Refusal { code, message }
}

impl ReachGuard {
    /// A guard with `limits`.
    pub fn new(limits: ReachLimits) -> ReachGuard {
        ReachGuard {
            requests: KeyedQuota::new(limits.requests_per_ip, limits.max_ips),
            probes: KeyedQuota::new(limits.probes_per_target, limits.max_ips),
        }
    }

    /// The asked supernode: may the client seen at `observed` have `req` probed?
    /// Only its own observed IP (any port: the serving socket is not the attachment's)
    /// and a non-zero port; then the per-IP quota.
    pub fn check_request(
        &mut self,
        now: Mono,
        observed: SocketAddr,
        req: &DialBack,
    ) -> Result<(), Refusal> {
        let (want, got) = (observed.ip().to_canonical(), req.addr.ip().to_canonical());
        if want != got {
            return Err(refusal(
                RefusalCode::NotYours,
                format!("a dial-back goes only to your own address: you are seen from {want}, not {got}"),
            ));
        }
        if req.addr.port() == 0 {
            return Err(refusal(
                RefusalCode::Malformed,
                "a dial-back needs a port".into(),
            ));
        }
        // Loopback is not limited: it cannot be reached from outside (tests and
        // single-host deployments run every client on it).
        if !want.is_loopback() && !self.requests.take(&want, now) {
            return Err(refusal(
                RefusalCode::Overloaded,
                format!("too many dial-back requests from {want}; try again in a minute"),
            ));
        }
        Ok(())
    }

    /// The prober: may it dial `order`'s address now? (The target's quota.)
    pub fn check_order(&mut self, now: Mono, order: &ProbeOrder) -> Result<(), Refusal> {
        let ip = order.dial.addr.ip().to_canonical();
        if order.dial.addr.port() == 0 || ip.is_unspecified() || ip.is_multicast() {
            return Err(refusal(
                RefusalCode::Malformed,
                format!("cannot probe {}", order.dial.addr),
            ));
        }
        if !ip.is_loopback() && !self.probes.take(&ip, now) {
            return Err(refusal(
                RefusalCode::Overloaded,
                format!("{ip} was probed too often; try again in a minute"),
            ));
        }
        Ok(())
    }
}

/// Which supernodes to ask for a probe of a client at `client`, in order of
/// preference: never `me` (by key or address); first those whose network (IPv4 /16,
/// IPv6 /32, [`ip_group`]) is neither ours nor the client's, then the others on a
/// different address. Within a rank, `known`'s order is kept.
pub fn probers(me: &Contact, client: IpAddr, known: &[Contact]) -> Vec<Contact> {
    let (mine, theirs) = (ip_group(me.addr.ip()), ip_group(client));
    let mut far = Vec::new();
    let mut near = Vec::new();
    for c in known {
        if c.id == me.id || c.addr == me.addr || far.contains(c) || near.contains(c) {
            continue;
        }
        let group = ip_group(c.addr.ip());
        if group.is_some() && group != mine && group != theirs {
            far.push(*c);
        } else {
            near.push(*c);
        }
    }
    far.extend(near);
    far
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;
    use std::time::Duration;

    fn contact(addr: &str) -> Contact {
        Contact {
            id: Identity::generate().peer_id(),
            addr: addr.parse().expect("addr"),
        }
    }

    fn dial(addr: &str) -> DialBack {
        DialBack {
            addr: addr.parse().expect("addr"),
            key: Identity::generate().peer_id(),
            nonce: Nonce([7; 16]),
        }
    }

    #[test]
    fn a_dial_back_goes_only_to_the_requesters_own_ip_and_is_rate_limited() {
        let mut g = ReachGuard::new(ReachLimits::default());
        let seen: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
        let t = Mono(0);
        let other = g.check_request(t, seen, &dial("203.0.113.9:5000"));
        assert_eq!(other.map_err(|r| r.code), Err(RefusalCode::NotYours));
        let no_port = g.check_request(t, seen, &dial("198.51.100.7:0"));
        assert_eq!(no_port.map_err(|r| r.code), Err(RefusalCode::Malformed));
        // Another port on its own IP is fine (its serving socket), three times at once.
        for _ in 0..3 {
            assert!(g.check_request(t, seen, &dial("198.51.100.7:5000")).is_ok());
        }
        let flood = g.check_request(t, seen, &dial("198.51.100.7:5000"));
        assert_eq!(flood.map_err(|r| r.code), Err(RefusalCode::Overloaded));
        // An IPv4-mapped spelling of the same IP is the same IP.
        let mapped: SocketAddr = "[::ffff:198.51.100.7]:40000".parse().expect("addr");
        let later = Mono(Duration::from_secs(10).as_millis() as u64);
        assert!(g
            .check_request(later, mapped, &dial("198.51.100.7:5000"))
            .is_ok());
    }

    #[test]
    fn probes_to_one_target_are_rate_limited_whoever_orders_them() {
        let mut g = ReachGuard::new(ReachLimits::default());
        let order = ProbeOrder {
            dial: dial("198.51.100.7:5000"),
        };
        let ok = (0..10)
            .filter(|_| g.check_order(Mono(0), &order).is_ok())
            .count();
        assert_eq!(ok, 3);
        let other = ProbeOrder {
            dial: dial("198.51.100.8:5000"),
        };
        assert!(g.check_order(Mono(0), &other).is_ok());
        let bad = ProbeOrder {
            dial: dial("0.0.0.0:5000"),
        };
        assert!(g.check_order(Mono(0), &bad).is_err());
    }

    #[test]
    fn probers_prefer_other_networks_and_never_the_asked_supernode() {
        let me = contact("198.51.100.1:4433");
        let same_net = contact("198.51.100.2:4433");
        let clients_net = contact("192.0.2.200:4433");
        let far = contact("203.0.113.5:4433");
        let me_again = Contact {
            id: me.id,
            addr: "203.0.113.99:1".parse().expect("addr"),
        };
        let known = [me, same_net, clients_net, me_again, far, far];
        let client: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(
            probers(&me, client, &known),
            vec![far, same_net, clients_net]
        );
        // On loopback (no networks): any other supernode, at another address.
        let lo = contact("127.0.0.1:4433");
        let lo_twin = Contact {
            id: Identity::generate().peer_id(),
            addr: lo.addr,
        };
        let lo2 = contact("127.0.0.1:4443");
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(probers(&lo, ip, &[lo, lo_twin, lo2]), vec![lo2]);
    }

    #[test]
    fn the_messages_round_trip_and_decode_strictly() {
        let d = dial("198.51.100.7:5000");
        assert_eq!(DialBack::decode(&d.encode()), Ok(d));
        let o = ProbeOrder { dial: d };
        assert_eq!(ProbeOrder::decode(&o.encode()), Ok(o));
        let r = ProbeReply::Probed { prober: d.key };
        assert_eq!(ProbeReply::decode(&r.encode()), Ok(r));
        let p = Probe { nonce: d.nonce };
        assert_eq!(Probe::decode(&p.encode()), Ok(p));
        let a = ProbeAck { nonce: d.nonce };
        assert_eq!(ProbeAck::decode(&a.encode()), Ok(a));
        // A probe is not an ack, and trailing bytes are refused.
        assert!(ProbeAck::decode(&p.encode()).is_err());
        let mut long = a.encode();
        long.push(0);
        assert!(ProbeAck::decode(&long).is_err());
    }
}
