//! The detector against a simulated NAT of each kind, on a virtual clock.

use super::*;
use std::collections::HashSet;

const A: &str = "198.51.100.11:3478";
const A_ALT: &str = "198.51.100.11:40000";
const B: &str = "198.51.100.12:3478";
const LOCAL: &str = "10.0.0.2:5000";
const LOCAL2: &str = "10.0.0.2:5001";
const WAN: &str = "198.51.100.101";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Open,
    Full,
    Restricted,
    PortRestricted,
    Symmetric,
    Blocked,
}

/// A one-host NAT: which external address a (local, destination) pair maps to, and
/// which inbound (source → external) packets it lets through.
struct Nat {
    kind: Kind,
    sent: HashSet<(SocketAddr, SocketAddr)>, // (external, remote) pairs seen outbound
}

impl Nat {
    fn external(&self, local: SocketAddr, remote: SocketAddr) -> SocketAddr {
        if self.kind == Kind::Open {
            return local;
        }
        let wan = WAN.parse().unwrap();
        let port = match self.kind {
            Kind::Symmetric => {
                20_000
                    + (remote.port() % 1000)
                    + u16::from(remote.ip().to_string().ends_with(".12")) * 7
            }
            _ => local.port(),
        };
        SocketAddr::new(wan, port)
    }

    fn outbound(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<SocketAddr> {
        if self.kind == Kind::Blocked {
            return None;
        }
        let ext = self.external(local, remote);
        self.sent.insert((ext, remote));
        Some(ext)
    }

    fn inbound_ok(&self, from: SocketAddr, to_external: SocketAddr) -> bool {
        match self.kind {
            Kind::Open | Kind::Full => true,
            Kind::Restricted => self
                .sent
                .iter()
                .any(|(e, r)| *e == to_external && r.ip() == from.ip()),
            Kind::PortRestricted | Kind::Symmetric => self.sent.contains(&(to_external, from)),
            Kind::Blocked => false,
        }
    }
}

fn detect(kind: Kind) -> NatReport {
    let (a, b, local, local2): (SocketAddr, SocketAddr, SocketAddr, SocketAddr) = (
        A.parse().unwrap(),
        B.parse().unwrap(),
        LOCAL.parse().unwrap(),
        LOCAL2.parse().unwrap(),
    );
    let mut nat = Nat {
        kind,
        sent: HashSet::new(),
    };
    let mut now = Timestamp(1_000);
    let mut d = NatDetector::new(a, b, local, now, 42);
    for _ in 0..1000 {
        while let Some(p) = d.poll_probe() {
            let from_local = if p.from_second_socket { local2 } else { local };
            let Some(ext) = nat.outbound(from_local, p.to) else {
                continue;
            };
            // The server answers: to RESPONSE-PORT at the same IP, from its other port.
            let answer_to = SocketAddr::new(ext.ip(), p.response_port.unwrap_or(ext.port()));
            let answer_from = if p.change_port {
                A_ALT.parse().unwrap()
            } else {
                p.to
            };
            if nat.inbound_ok(answer_from, answer_to) {
                // RESPONSE-PORT aims the second socket's answer at the main socket.
                let on_main = !p.from_second_socket || p.response_port.is_some();
                d.handle_response(
                    now,
                    StunAnswer {
                        txid: p.txid,
                        mapped: ext,
                        from: answer_from,
                        other_address: None,
                        on_main,
                    },
                );
            }
        }
        if let Some(r) = d.result() {
            return r;
        }
        now = d.poll_timeout().unwrap();
        d.handle_timeout(now);
    }
    panic!("detection did not finish");
}

#[test]
fn each_nat_kind_is_recognised() {
    assert_eq!(detect(Kind::Open).nat, NatType::Open);
    assert_eq!(detect(Kind::Full).nat, NatType::FullCone);
    assert_eq!(detect(Kind::Restricted).nat, NatType::RestrictedCone);
    assert_eq!(
        detect(Kind::PortRestricted).nat,
        NatType::PortRestrictedCone
    );
    assert_eq!(detect(Kind::Symmetric).nat, NatType::Symmetric);
    let blocked = detect(Kind::Blocked);
    assert_eq!(blocked.nat, NatType::UdpBlocked);
    assert_eq!(blocked.mapped, None);
}

#[test]
fn blocked_is_declared_only_after_retransmissions() {
    let mut d = NatDetector::new(
        A.parse().unwrap(),
        B.parse().unwrap(),
        LOCAL.parse().unwrap(),
        Timestamp(0),
        1,
    );
    let mut sent = 0;
    let mut now = Timestamp(0);
    while d.result().is_none() {
        while d.poll_probe().is_some() {
            sent += 1;
        }
        now = d.poll_timeout().unwrap();
        d.handle_timeout(now);
    }
    assert!(sent >= 5, "only {sent} requests before giving up");
    assert_eq!(now, Timestamp(BLOCKED_AFTER.as_millis() as u64));
}

#[test]
fn answers_to_unknown_transactions_are_ignored() {
    let mut d = NatDetector::new(
        A.parse().unwrap(),
        B.parse().unwrap(),
        LOCAL.parse().unwrap(),
        Timestamp(0),
        1,
    );
    d.handle_response(
        Timestamp(1),
        StunAnswer {
            txid: [9; 12],
            mapped: "1.2.3.4:5".parse().unwrap(),
            from: A.parse().unwrap(),
            other_address: None,
            on_main: true,
        },
    );
    assert!(d.result().is_none());
}

fn answer(p: &Probe, mapped: &str, from: SocketAddr) -> StunAnswer {
    StunAnswer {
        txid: p.txid,
        mapped: mapped.parse().unwrap(),
        from,
        other_address: None,
        on_main: !p.from_second_socket || p.response_port.is_some(),
    }
}

/// Runs a detector whose servers are answered by `serve` (None: no answer), to the end.
fn run(
    a: SocketAddr,
    b: SocketAddr,
    mut serve: impl FnMut(&Probe) -> Option<StunAnswer>,
) -> NatReport {
    let mut d = NatDetector::new(a, b, LOCAL.parse().unwrap(), Timestamp(0), 7);
    let mut now = Timestamp(0);
    for _ in 0..1000 {
        while let Some(p) = d.poll_probe() {
            if let Some(ans) = serve(&p) {
                d.handle_response(now, ans);
            }
        }
        if let Some(r) = d.result() {
            return r;
        }
        now = d.poll_timeout().unwrap();
        d.handle_timeout(now);
    }
    panic!("detection did not finish");
}

#[test]
fn a_dead_first_server_is_not_udp_blocked() {
    let (a, b): (SocketAddr, SocketAddr) = (A.parse().unwrap(), B.parse().unwrap());
    // A never answers; B answers everything straight (a full cone seen from B).
    let r = run(a, b, |p| {
        (p.to == b).then(|| answer(p, "198.51.100.101:5000", b))
    });
    assert_ne!(r.nat, NatType::UdpBlocked);
    assert_eq!(r.mapped, Some("198.51.100.101:5000".parse().unwrap()));
}

#[test]
fn zero_mapped_addresses_are_discarded() {
    let (a, b): (SocketAddr, SocketAddr) = (A.parse().unwrap(), B.parse().unwrap());
    let r = run(a, b, |p| Some(answer(p, "0.0.0.0:0", p.to)));
    assert_eq!(r.nat, NatType::UdpBlocked, "no believable answer came");
    assert_eq!(r.mapped, None);
}

#[test]
fn a_change_port_answer_from_the_same_port_does_not_count() {
    let (a, b): (SocketAddr, SocketAddr) = (A.parse().unwrap(), B.parse().unwrap());
    // A broken server answers change-port requests from its primary port; B is silent
    // to the second socket. Without the check this reads as a restricted cone.
    let r = run(a, b, |p| {
        if p.from_second_socket {
            return None;
        }
        Some(answer(p, "198.51.100.101:5000", p.to))
    });
    assert_eq!(r.nat, NatType::PortRestrictedCone);
    // The same with a correct server: restricted cone.
    let r = run(a, b, |p| {
        if p.from_second_socket {
            return None;
        }
        let from = if p.change_port {
            A_ALT.parse().unwrap()
        } else {
            p.to
        };
        Some(answer(p, "198.51.100.101:5000", from))
    });
    assert_eq!(r.nat, NatType::RestrictedCone);
}

#[test]
fn other_address_stands_in_for_a_second_server() {
    let a: SocketAddr = A.parse().unwrap();
    let dead: SocketAddr = "192.0.2.99:3478".parse().unwrap();
    let other: SocketAddr = "198.51.100.21:3479".parse().unwrap();
    // No NAT filtering (full cone): every probe is answered, by the server it went to;
    // A names its second IP in OTHER-ADDRESS, B (dead) never answers.
    let r = run(a, dead, |p| {
        if p.to == dead {
            return None;
        }
        let from = if p.change_port {
            A_ALT.parse().unwrap()
        } else {
            p.to
        };
        let mut ans = answer(p, "198.51.100.101:5000", from);
        ans.other_address = Some(other);
        Some(ans)
    });
    assert_eq!(r.nat, NatType::FullCone);
}
