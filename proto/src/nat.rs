//! NAT behaviour discovery (in the spirit of RFC 5780), as a sans-IO state machine.
//!
//! The client probes two supernodes' STUN ports, A and B (different IPs), from the
//! socket it uses for calls (the "main" socket) and from a second, throwaway socket:
//!
//! 1. main → A: the mapped address M1. No answer at all: **UDP blocked**. M1 equal to
//!    our local address: **open** (no NAT).
//! 2. At once, before main has ever sent anything to B:
//!    - main → A with CHANGE-REQUEST(change port): A answers from another port.
//!      If that gets through, filtering does not depend on the port.
//!    - second → B with RESPONSE-PORT = M1's port: B answers to M1, from an address
//!      main never sent to. If that gets through, filtering is endpoint-independent.
//! 3. main → B: the mapped address M2. M1 ≠ M2 means the mapping depends on the
//!    destination: **symmetric**. (Sent only after step 2 ends, because it opens main's
//!    filter towards B and would spoil that test.)
//!
//! Otherwise: an answer from B in step 2 means **full cone**, one from A's other port
//! **restricted cone**, none **port-restricted cone**.
//!
//! Robustness (issue 15): if A has not answered after [`FALLBACK_AFTER`], main probes B
//! too, and whichever answers first plays A: one dead server is not evidence that UDP
//! is blocked. If A's answer carries OTHER-ADDRESS (RFC 5780 §7.3: the server has a
//! second IP), that address plays B, so one supernode with `--stun-alternate-ip` is
//! enough. Answers that cannot be right are discarded: a mapped address with an
//! unspecified IP or port 0, an answer from an address the request did not go to, and a
//! change-port answer from the port the request went to.
//!
//! Drive it like every machine here: send what [`NatDetector::poll_probe`] returns, feed
//! answers to [`NatDetector::handle_response`], call [`NatDetector::handle_timeout`] at
//! [`NatDetector::poll_timeout`], until [`NatDetector::result`] is `Some`.

use crate::presence::NatType;
use crate::time::Timestamp;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// How long to wait for the first answer (from A or B) before declaring UDP blocked.
pub const BLOCKED_AFTER: Duration = Duration::from_millis(1500);
/// How long A may stay silent before main also asks B in step 1.
pub const FALLBACK_AFTER: Duration = Duration::from_millis(500);
/// How long the filtering probes of step 2 may take.
pub const FILTER_WINDOW: Duration = Duration::from_millis(700);
/// How long step 3 may take.
pub const MAPPING_WINDOW: Duration = Duration::from_millis(1000);
/// Requests are retransmitted this often while their step lasts.
pub const RETRANSMIT: Duration = Duration::from_millis(250);

/// Which probe an answer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Step 1: main → A.
    Primary,
    /// Step 2: main → A, answer from A's other port.
    ChangePort,
    /// Step 2: second socket → B, answer to main's mapped port.
    OtherServer,
    /// Step 3: main → B.
    Mapping,
}

/// One STUN Binding request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The transaction id: answers are matched on it.
    pub txid: [u8; 12],
    /// What it tests.
    pub kind: ProbeKind,
    /// The STUN server.
    pub to: SocketAddr,
    /// Send from the second socket instead of the main one.
    pub from_second_socket: bool,
    /// Ask for the answer at this port of our (mapped) IP.
    pub response_port: Option<u16>,
    /// Ask for the answer from the server's other port.
    pub change_port: bool,
}

/// One STUN success answer, as the shell received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StunAnswer {
    /// Its transaction id.
    pub txid: [u8; 12],
    /// XOR-MAPPED-ADDRESS: where the server saw the request come from.
    pub mapped: SocketAddr,
    /// The datagram's source address.
    pub from: SocketAddr,
    /// OTHER-ADDRESS, if the server sent one (it has a second IP).
    pub other_address: Option<SocketAddr>,
    /// Received on the main socket (else the second one).
    pub on_main: bool,
}

/// What was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatReport {
    /// The NAT's behaviour.
    pub nat: NatType,
    /// The main socket's address as A saw it, if A answered.
    pub mapped: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Primary,
    Filtering,
    Mapping,
    Done,
}

/// The discovery of one socket's NAT behaviour.
pub struct NatDetector {
    a: SocketAddr,
    b: SocketAddr,
    local: SocketAddr,
    step: Step,
    step_deadline: Timestamp,
    next_retransmit: Timestamp,
    /// When main starts asking B too in step 1.
    fallback_at: Timestamp,
    txids: Vec<([u8; 12], ProbeKind, SocketAddr)>,
    counter: u64,
    seed: u64,
    m1: Option<SocketAddr>,
    m2: Option<SocketAddr>,
    change_port_ok: bool,
    other_server_ok: bool,
    queue: VecDeque<Probe>,
    result: Option<NatReport>,
}

impl NatDetector {
    /// Starts discovery for the socket bound at `local`, with STUN servers `a` and `b`
    /// (on different IPs). `seed` makes transaction ids unpredictable to others.
    pub fn new(
        a: SocketAddr,
        b: SocketAddr,
        local: SocketAddr,
        now: Timestamp,
        seed: u64,
    ) -> NatDetector {
        let mut d = NatDetector {
            a,
            b,
            local,
            step: Step::Primary,
            step_deadline: now + BLOCKED_AFTER,
            next_retransmit: now,
            fallback_at: now + FALLBACK_AFTER,
            txids: Vec::new(),
            counter: 0,
            seed,
            m1: None,
            m2: None,
            change_port_ok: false,
            other_server_ok: false,
            queue: VecDeque::new(),
            result: None,
        };
        d.handle_timeout(now);
        d
    }

    fn txid(&mut self, kind: ProbeKind, to: SocketAddr) -> [u8; 12] {
        self.counter += 1;
        let mut x = self.seed ^ self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut id = [0u8; 12];
        for chunk in id.chunks_mut(4) {
            // xorshift: distinct ids per probe, unguessable without the seed.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_be_bytes()[..4]);
        }
        self.txids.push((id, kind, to));
        id
    }

    fn probe(&mut self, kind: ProbeKind) {
        self.probe_to(
            kind,
            if matches!(kind, ProbeKind::Primary | ProbeKind::ChangePort) {
                self.a
            } else {
                self.b
            },
        );
    }

    fn probe_to(&mut self, kind: ProbeKind, to: SocketAddr) {
        let txid = self.txid(kind, to);
        let m1_port = self.m1.map(|m| m.port());
        let probe = match kind {
            ProbeKind::Primary => Probe {
                txid,
                kind,
                to,
                from_second_socket: false,
                response_port: None,
                change_port: false,
            },
            ProbeKind::ChangePort => Probe {
                txid,
                kind,
                to: self.a,
                from_second_socket: false,
                response_port: None,
                change_port: true,
            },
            ProbeKind::OtherServer => Probe {
                txid,
                kind,
                to: self.b,
                from_second_socket: true,
                response_port: m1_port,
                change_port: false,
            },
            ProbeKind::Mapping => Probe {
                txid,
                kind,
                to: self.b,
                from_second_socket: false,
                response_port: None,
                change_port: false,
            },
        };
        self.queue.push_back(probe);
    }

    /// The next request to send.
    pub fn poll_probe(&mut self) -> Option<Probe> {
        self.queue.pop_front()
    }

    /// A STUN success answer. Answers to unknown transactions, and answers that cannot
    /// be right (see the module docs), are ignored.
    pub fn handle_response(&mut self, now: Timestamp, answer: StunAnswer) {
        let StunAnswer {
            txid,
            mapped,
            from,
            other_address,
            on_main,
        } = answer;
        let Some((kind, to)) = self
            .txids
            .iter()
            .find(|(id, _, _)| *id == txid)
            .map(|(_, k, to)| (*k, *to))
        else {
            return;
        };
        if !plausible(kind, to, from, mapped) {
            return;
        }
        match (kind, self.step) {
            (ProbeKind::Primary, Step::Primary) if on_main => {
                if to != self.a {
                    // A is silent and B answered: B plays A from now on.
                    std::mem::swap(&mut self.a, &mut self.b);
                }
                if let Some(other) = other_address.filter(|o| usable(*o) && o.ip() != self.a.ip()) {
                    self.b = other;
                }
                self.m1 = Some(mapped);
                if mapped == self.local {
                    return self.finish(NatType::Open);
                }
                self.enter(now, Step::Filtering, FILTER_WINDOW);
            }
            (ProbeKind::ChangePort, Step::Filtering) if on_main => self.change_port_ok = true,
            (ProbeKind::OtherServer, Step::Filtering) if on_main => self.other_server_ok = true,
            (ProbeKind::Mapping, Step::Mapping) if on_main => {
                self.m2 = Some(mapped);
                self.classify();
            }
            _ => {}
        }
    }

    fn enter(&mut self, now: Timestamp, step: Step, window: Duration) {
        self.step = step;
        self.step_deadline = now + window;
        self.next_retransmit = now;
        self.handle_timeout(now);
    }

    fn classify(&mut self) {
        let nat = match (self.m1, self.m2) {
            (Some(m1), Some(m2)) if m1 != m2 => NatType::Symmetric,
            _ if self.other_server_ok => NatType::FullCone,
            _ if self.change_port_ok => NatType::RestrictedCone,
            _ => NatType::PortRestrictedCone,
        };
        self.finish(nat);
    }

    fn finish(&mut self, nat: NatType) {
        self.step = Step::Done;
        self.queue.clear();
        self.result = Some(NatReport {
            nat,
            mapped: self.m1,
        });
    }

    /// Retransmissions and step deadlines.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.step == Step::Done {
            return;
        }
        if now >= self.step_deadline {
            match self.step {
                Step::Primary => return self.finish(NatType::UdpBlocked),
                Step::Filtering => return self.enter(now, Step::Mapping, MAPPING_WINDOW),
                // B never answered main: the mapping cannot be compared; assume it did
                // not change (cone) rather than claim symmetric without evidence.
                Step::Mapping => return self.classify(),
                Step::Done => return,
            }
        }
        if now >= self.next_retransmit {
            match self.step {
                Step::Primary => {
                    self.probe(ProbeKind::Primary);
                    if now >= self.fallback_at && self.b != self.a {
                        self.probe_to(ProbeKind::Primary, self.b);
                    }
                }
                Step::Filtering => {
                    if !self.change_port_ok {
                        self.probe(ProbeKind::ChangePort);
                    }
                    if !self.other_server_ok {
                        self.probe(ProbeKind::OtherServer);
                    }
                }
                Step::Mapping => self.probe(ProbeKind::Mapping),
                Step::Done => {}
            }
            self.next_retransmit = now + RETRANSMIT;
        }
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        (self.step != Step::Done).then(|| self.next_retransmit.min(self.step_deadline))
    }

    /// The outcome, once discovery has finished.
    pub fn result(&self) -> Option<NatReport> {
        self.result
    }
}

/// An address a STUN server could really have observed or named: a specified IP and a
/// non-zero port.
fn usable(addr: SocketAddr) -> bool {
    !addr.ip().is_unspecified() && addr.port() != 0
}

fn same(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port()
}

/// Whether an answer to a `kind` probe sent `to` could be right: a usable mapped
/// address, from the server asked; a change-port answer from the same IP but another
/// port.
fn plausible(kind: ProbeKind, to: SocketAddr, from: SocketAddr, mapped: SocketAddr) -> bool {
    if !usable(mapped) {
        return false;
    }
    match kind {
        ProbeKind::ChangePort => {
            from.ip().to_canonical() == to.ip().to_canonical() && from.port() != to.port()
        }
        ProbeKind::Primary | ProbeKind::OtherServer | ProbeKind::Mapping => same(from, to),
    }
}

#[cfg(test)]
mod tests;
