//! The NAT lab's routers behave as their kinds are named: mapping, filtering, UDP
//! blocking, loss, hole punching, and teardown. Plain UDP (and TCP) sockets only, through
//! the test-only `udp-probe` binary (`tests/src/bin/udp-probe.rs`) run inside the lab's
//! namespaces.
//!
//! These tests need root (network namespaces, nftables); without it they fail. The last
//! one runs the real `supernode` and `parley` in the lab, so it also needs
//! `cargo build --workspace --bins` first.

use parley_e2e::natlab::{Host, NatKind, NatLab};
use parley_e2e::Proc;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, Stdio};
use std::time::Duration;

const PROBE: &str = env!("CARGO_BIN_EXE_udp-probe");
/// The port every echo server listens on.
const ECHO: u16 = 3478;
/// The port client probes bind.
const CLIENT_PORT: u16 = 40000;

/// Starts `udp-probe ARGS` (whitespace-separated) on `host` as a [`Proc`] and waits
/// until its socket is bound.
fn spawn_probe(host: &Host, name: &str, args: &str) -> Proc {
    let mut proc = host.spawn(name, PROBE, args.split_whitespace()).unwrap();
    proc.wait_for(Duration::from_secs(5), |l| l.starts_with("bound"))
        .unwrap();
    proc
}

/// A UDP echo server on `addr` of `host`.
fn echo_on(host: &Host, addr: SocketAddr) -> Proc {
    spawn_probe(
        host,
        &format!("echo {addr}"),
        &format!("--echo --bind {addr}"),
    )
}

/// A UDP echo server on `host`'s own address, port [`ECHO`].
fn echo(host: &Host) -> Proc {
    echo_on(host, host.addr(ECHO))
}

/// Runs `udp-probe ARGS` on `host` to completion; its stdout lines.
fn probe(host: &Host, args: &str) -> Vec<String> {
    let out = host.output(PROBE, args.split_whitespace()).unwrap();
    assert!(
        out.status.success(),
        "udp-probe {args} on {} failed: {}",
        host.name,
        String::from_utf8_lossy(&out.stderr)
    );
    lines(&out.stdout)
}

/// Starts `udp-probe ARGS` on `host` without waiting (for two runs that must overlap).
fn start_probe(host: &Host, args: &str) -> Child {
    host.command(PROBE, args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Vec<String> {
    lines(&child.wait_with_output().unwrap().stdout)
}

fn lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `(from, payload)` of every `recv FROM PAYLOAD` line.
fn received(lines: &[String]) -> Vec<(SocketAddr, String)> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("recv "))
        .filter_map(|l| {
            let (from, payload) = l.split_once(' ')?;
            Some((from.parse().ok()?, payload.to_string()))
        })
        .collect()
}

/// The address `server` saw us at, from its echo replies (`seen ADDR n=K`).
fn seen_by(lines: &[String], server: SocketAddr) -> Option<SocketAddr> {
    received(lines)
        .into_iter()
        .filter(|(from, _)| *from == server)
        .find_map(|(_, payload)| payload.split_whitespace().nth(1)?.parse().ok())
}

/// Sends to `server` from [`CLIENT_PORT`]; the client's address as seen there.
fn discover(client: &Host, server: SocketAddr) -> SocketAddr {
    let out = probe(
        client,
        &format!(
            "--bind 0.0.0.0:{CLIENT_PORT} --to {server} --count 3 --interval-ms 50 --for-ms 400"
        ),
    );
    seen_by(&out, server)
        .unwrap_or_else(|| panic!("{} got no echo from {server}: {out:?}", client.name))
}

/// Sends three datagrams from `from` (an address of `host`) to `to`.
fn poke(host: &Host, from: SocketAddr, to: SocketAddr) {
    probe(
        host,
        &format!("--bind {from} --to {to} --count 3 --interval-ms 20 --for-ms 100"),
    );
}

fn v4(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

// ---------------------------------------------------------------------------------
// Mapping
// ---------------------------------------------------------------------------------

#[test]
fn cone_nats_give_every_destination_the_same_port_preserving_mapping() {
    let mut lab = NatLab::new().unwrap();
    let (a, b) = (lab.server("a").unwrap(), lab.server("b").unwrap());
    let _echoes = (echo(&a), echo(&b));
    for kind in [NatKind::Public, NatKind::FullCone, NatKind::PortRestricted] {
        let client = lab.client(&format!("{kind:?}"), kind, 0.0).unwrap();
        let seen_a = discover(&client, a.addr(ECHO));
        let seen_b = discover(&client, b.addr(ECHO));
        assert_eq!(seen_a, seen_b, "{kind:?}: one mapping for both servers");
        assert_eq!(seen_a, v4(client.public_ip(), CLIENT_PORT), "{kind:?}");
    }
}

#[test]
fn symmetric_nat_gives_every_destination_a_new_port() {
    let mut lab = NatLab::new().unwrap();
    let (a, b) = (lab.server("a").unwrap(), lab.server("b").unwrap());
    let _echoes = (echo(&a), echo(&b));
    let client = lab.client("sym", NatKind::Symmetric, 0.0).unwrap();
    let (to_a, to_b) = (a.addr(ECHO), b.addr(ECHO));
    // One socket, two destinations.
    let out = probe(
        &client,
        &format!("--bind 0.0.0.0:{CLIENT_PORT} --to {to_a} --to {to_b} --count 3 --interval-ms 50 --for-ms 400"),
    );
    let (seen_a, seen_b) = (seen_by(&out, to_a).unwrap(), seen_by(&out, to_b).unwrap());
    let wan = client.wan_ip.unwrap();
    assert_eq!((seen_a.ip(), seen_b.ip()), (wan.into(), wan.into()));
    assert_ne!(
        seen_a.port(),
        seen_b.port(),
        "a new external port per destination"
    );
}

// ---------------------------------------------------------------------------------
// Filtering
// ---------------------------------------------------------------------------------

/// What reached a client that listened on [`CLIENT_PORT`], then sent to server `a`.
#[derive(Debug, PartialEq)]
struct Reached {
    /// From `b`, to the client's public address and port before it sent anything.
    unsolicited: bool,
    /// From `a`'s address but another port, after the client sent to `a`.
    same_host_other_port: bool,
    /// From another host `b`, after the client sent to `a`.
    other_host: bool,
}

fn filtering(kind: NatKind) -> Reached {
    let mut lab = NatLab::new().unwrap();
    let (a, b) = (lab.server("a").unwrap(), lab.server("b").unwrap());
    let _echo = echo(&a);
    let client = lab.client("client", kind, 0.0).unwrap();
    // Listens at once; sends to `a` only from 800 ms on (and keeps sending).
    let to = a.addr(ECHO);
    let mut listener = spawn_probe(
        &client,
        "client",
        &format!("--bind 0.0.0.0:{CLIENT_PORT} --to {to} --count 40 --interval-ms 100 --start-ms 800 --for-ms 8000"),
    );
    let unsolicited_from = b.addr(5000);
    poke(&b, unsolicited_from, v4(client.public_ip(), CLIENT_PORT));

    // `a`'s answer to the client's own packets always gets through.
    let first_reply = listener
        .wait_for(Duration::from_secs(5), |l| l.contains(" seen "))
        .unwrap();
    let mapped = seen_by(&[first_reply], to).unwrap();
    let (other_port, other_host) = (a.addr(ECHO + 1), b.addr(5001));
    poke(&a, other_port, mapped);
    poke(&b, other_host, mapped);

    let mut got = |from: SocketAddr| {
        let prefix = format!("recv {from} probe");
        let arrived = listener
            .wait_for(Duration::from_millis(600), |l| l.starts_with(&prefix))
            .is_ok();
        assert!(listener.is_running(), "the client probe died early");
        arrived
    };
    Reached {
        same_host_other_port: got(other_port),
        other_host: got(other_host),
        unsolicited: got(unsolicited_from),
    }
}

#[test]
fn public_hosts_receive_from_anyone() {
    let expected = Reached {
        unsolicited: true,
        same_host_other_port: true,
        other_host: true,
    };
    assert_eq!(filtering(NatKind::Public), expected);
}

#[test]
fn full_cone_receives_from_anyone_once_the_port_is_mapped() {
    let expected = Reached {
        unsolicited: false,
        same_host_other_port: true,
        other_host: true,
    };
    assert_eq!(filtering(NatKind::FullCone), expected);
}

#[test]
fn port_restricted_receives_only_from_the_exact_address_and_port() {
    let expected = Reached {
        unsolicited: false,
        same_host_other_port: false,
        other_host: false,
    };
    assert_eq!(filtering(NatKind::PortRestricted), expected);
}

#[test]
fn symmetric_receives_only_from_the_exact_address_and_port() {
    let expected = Reached {
        unsolicited: false,
        same_host_other_port: false,
        other_host: false,
    };
    assert_eq!(filtering(NatKind::Symmetric), expected);
}

// ---------------------------------------------------------------------------------
// UDP blocked
// ---------------------------------------------------------------------------------

#[test]
fn udp_blocked_drops_all_udp_but_forwards_tcp_through_nat() {
    let mut lab = NatLab::new().unwrap();
    let a = lab.server("a").unwrap();
    let mut udp_echo = echo(&a);
    let tcp = a.addr(443);
    let _tcp_echo = spawn_probe(&a, "tcp echo", &format!("--tcp --echo --bind {tcp}"));
    let client = lab.client("blocked", NatKind::UdpBlocked, 0.0).unwrap();

    let to = a.addr(ECHO);
    let out = probe(
        &client,
        &format!("--to {to} --count 5 --interval-ms 20 --for-ms 400"),
    );
    assert!(received(&out).is_empty(), "no UDP answer: {out:?}");
    let udp_arrived = udp_echo.wait_for(Duration::from_millis(300), |l| l.starts_with("recv"));
    assert!(udp_arrived.is_err(), "no UDP got out");

    let out = probe(&client, &format!("--tcp --to {tcp} --for-ms 2000"));
    let seen = seen_by(&out, tcp).unwrap_or_else(|| panic!("TCP failed: {out:?}"));
    assert_eq!(
        seen.ip(),
        client.wan_ip.unwrap(),
        "TCP leaves through the NAT"
    );
}

// ---------------------------------------------------------------------------------
// Loss
// ---------------------------------------------------------------------------------

/// Starts 500 echo round trips to `server`, one every 2 ms.
fn start_round_trips(client: &Host, server: SocketAddr) -> Child {
    start_probe(
        client,
        &format!("--to {server} --count 500 --interval-ms 2 --for-ms 2500"),
    )
}

/// (replies the client got, datagrams the server got) of the round trips.
fn round_trip_counts(out: &[String], server: SocketAddr) -> (usize, usize) {
    let replies: Vec<_> = received(out)
        .into_iter()
        .filter(|(from, _)| *from == server)
        .collect();
    let server_got = replies
        .iter()
        .filter_map(|(_, p)| p.rsplit_once("n=")?.1.parse().ok())
        .max()
        .unwrap_or(0);
    (replies.len(), server_got)
}

#[test]
fn loss_parameter_drops_that_share_of_packets_each_way() {
    let mut lab = NatLab::new().unwrap();
    let (a, b) = (lab.server("a").unwrap(), lab.server("b").unwrap());
    let _echoes = (echo(&a), echo(&b));
    let natted = lab.client("natted", NatKind::PortRestricted, 20.0).unwrap();
    let public = lab.client("public", NatKind::Public, 20.0).unwrap();
    let runs = [
        (start_round_trips(&natted, a.addr(ECHO)), a.addr(ECHO)),
        (start_round_trips(&public, b.addr(ECHO)), b.addr(ECHO)),
    ];
    for (child, server) in runs {
        let (replies, server_got) = round_trip_counts(&finish(child), server);
        // 20 % each way: the server gets 400 ± 9 (one standard deviation), the client
        // 320 ± 11 answers back. The bounds are about five deviations wide.
        let counts = format!("{server} got {server_got} of 500, the client {replies} replies");
        assert!((350..=450).contains(&server_got), "{counts}");
        assert!((260..=380).contains(&replies), "{counts}");
    }
}

#[test]
fn set_loss_changes_the_loss_of_a_running_lab() {
    let mut lab = NatLab::new().unwrap();
    let a = lab.server("a").unwrap();
    let _echo = echo(&a);
    let to = a.addr(ECHO);
    for kind in [NatKind::PortRestricted, NatKind::Public] {
        let client = lab.client(&format!("{kind:?}"), kind, 0.0).unwrap();
        let mut replies_at = |percent: f64| {
            lab.set_loss(&client, percent).unwrap();
            let args = format!("--to {to} --count 20 --interval-ms 5 --for-ms 400");
            received(&probe(&client, &args)).len()
        };
        assert_eq!(replies_at(0.0), 20, "{kind:?} without loss");
        assert_eq!(replies_at(100.0), 0, "{kind:?} with 100 % loss");
        assert_eq!(replies_at(0.0), 20, "{kind:?} with the loss removed again");
    }
}

// ---------------------------------------------------------------------------------
// Hole punching by simultaneous open
// ---------------------------------------------------------------------------------

/// Both clients learn their mapping from an echo server, then send to each other's from
/// the same port, the first starting 300 ms before the second (so its first packets
/// arrive unsolicited at the second's router). Returns how many datagrams each got from
/// the other.
fn simultaneous_open(first: NatKind, second: NatKind) -> (usize, usize) {
    let mut lab = NatLab::new().unwrap();
    let a = lab.server("a").unwrap();
    let _echo = echo(&a);
    let c1 = lab.client("c1", first, 0.0).unwrap();
    let c2 = lab.client("c2", second, 0.0).unwrap();
    let (ext1, ext2) = (discover(&c1, a.addr(ECHO)), discover(&c2, a.addr(ECHO)));
    let punch = |peer: SocketAddr, for_ms: u32| {
        format!("--bind 0.0.0.0:{CLIENT_PORT} --to {peer} --count 15 --interval-ms 100 --for-ms {for_ms}")
    };
    let child1 = start_probe(&c1, &punch(ext2, 2000));
    std::thread::sleep(Duration::from_millis(300));
    let child2 = start_probe(&c2, &punch(ext1, 1700));
    let (out1, out2) = (finish(child1), finish(child2));
    let count_from = |out: &[String], peer: SocketAddr| {
        received(out)
            .iter()
            .filter(|(from, payload)| *from == peer && payload.starts_with("probe"))
            .count()
    };
    (count_from(&out1, ext2), count_from(&out2, ext1))
}

#[test]
fn port_restricted_clients_punch_through_by_simultaneous_open() {
    let (got1, got2) = simultaneous_open(NatKind::PortRestricted, NatKind::PortRestricted);
    assert!(got1 > 0 && got2 > 0, "both must receive: {got1} and {got2}");
}

#[test]
fn symmetric_and_port_restricted_clients_cannot_punch_through() {
    let (got1, got2) = simultaneous_open(NatKind::Symmetric, NatKind::PortRestricted);
    assert_eq!((got1, got2), (0, 0), "neither receives");
}

// ---------------------------------------------------------------------------------
// Lab life cycle
// ---------------------------------------------------------------------------------

fn listed_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| Some(l.split_whitespace().next()?.to_string()))
        .collect()
}

fn assert_all_gone(names: &[String]) {
    assert!(!names.is_empty());
    let listed = listed_namespaces();
    for ns in names {
        assert!(!listed.contains(ns), "{ns} still exists");
    }
}

#[test]
fn dropping_the_lab_kills_its_processes_and_deletes_its_namespaces() {
    let mut lab = NatLab::new().unwrap();
    let server = lab.server("a").unwrap();
    lab.add_public_ip(&server).unwrap();
    for kind in NatKind::ALL {
        lab.client(&format!("{kind:?}"), kind, 1.0).unwrap();
    }
    let mut running = echo(&server);
    let names = lab.namespaces().to_vec();
    assert_eq!(
        names.len(),
        1 + 1 + 1 + 4 * 2,
        "internet, server, public, 4 NATs"
    );
    let listed = listed_namespaces();
    assert!(names.iter().all(|ns| listed.contains(ns)));
    drop(lab);
    assert_all_gone(&names);
    assert!(!running.is_running(), "processes in the lab die with it");
}

#[test]
fn a_panicking_test_still_deletes_its_namespaces() {
    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut lab = NatLab::new().unwrap();
        lab.client("c", NatKind::Symmetric, 0.0).unwrap();
        names = lab.namespaces().to_vec();
        panic!("a test failing mid-way");
    }));
    assert!(result.is_err());
    assert_all_gone(&names);
}

#[test]
fn labs_are_isolated_from_each_other() {
    let (mut lab1, mut lab2) = (NatLab::new().unwrap(), NatLab::new().unwrap());
    let (a1, a2) = (lab1.server("a").unwrap(), lab2.server("a").unwrap());
    assert_eq!(a1.ip, a2.ip, "both labs hand out the same addresses");
    let _echo = echo(&a1);
    let c1 = lab1.client("c", NatKind::PortRestricted, 0.0).unwrap();
    let c2 = lab2.client("c", NatKind::PortRestricted, 0.0).unwrap();
    let args = format!(
        "--to {} --count 3 --interval-ms 20 --for-ms 300",
        a1.addr(ECHO)
    );
    assert!(
        !received(&probe(&c1, &args)).is_empty(),
        "lab 1 has an echo server"
    );
    assert!(received(&probe(&c2, &args)).is_empty(), "lab 2 does not");
}

#[test]
fn a_server_can_answer_on_a_second_public_address() {
    let mut lab = NatLab::new().unwrap();
    let a = lab.server("a").unwrap();
    let alternate = lab.add_public_ip(&a).unwrap();
    assert_ne!(alternate, a.ip);
    let _echoes = (echo(&a), echo_on(&a, v4(alternate, ECHO)));
    let client = lab.client("c", NatKind::PortRestricted, 0.0).unwrap();
    let primary = discover(&client, a.addr(ECHO));
    let other = discover(&client, v4(alternate, ECHO));
    assert_eq!(
        primary, other,
        "endpoint-independent mapping across server addresses"
    );
}

// ---------------------------------------------------------------------------------
// The real binaries in the lab
// ---------------------------------------------------------------------------------

#[test]
fn a_client_behind_a_nat_publishes_its_nat_address_through_a_supernode_in_the_lab() {
    let mut lab = NatLab::new().unwrap();
    let server = lab.server("sn1").unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("sn1.key");
    let key = key.to_str().unwrap();
    let (quic, stun) = (server.addr(4433).to_string(), server.addr(4434).to_string());
    let args = ["--listen", &quic, "--stun-listen", &stun, "--key", key];
    let mut supernode = server.spawn_bin("sn1", "supernode", args).unwrap();
    supernode
        .wait_for(Duration::from_secs(20), |l| {
            l.starts_with("supernode ready")
        })
        .unwrap();

    let alice = lab.client("alice", NatKind::PortRestricted, 0.0).unwrap();
    let home = parley_e2e::ClientHome::new("alice").unwrap();
    let args = [
        "--home",
        home.path(),
        "online",
        "--json",
        "--supernode",
        &quic,
    ];
    let mut online = alice.spawn_bin("alice", "parley", args).unwrap();
    online
        .wait_for(Duration::from_secs(20), |l| {
            l.contains("\"event\":\"published\"")
        })
        .unwrap();

    let bob = lab.client("bob", NatKind::Public, 0.0).unwrap();
    let bob_dir = tempfile::tempdir().unwrap();
    let bob_home = bob_dir.path().to_str().unwrap();
    let args = [
        "--home",
        bob_home,
        "lookup",
        &home.id,
        "--supernode",
        &quic,
        "--json",
    ];
    let lookup = bob
        .output(parley_e2e::bin("parley").unwrap(), args)
        .unwrap();
    let record = String::from_utf8_lossy(&lookup.stdout);
    assert!(lookup.status.success(), "lookup failed: {record}");
    let wan = alice.wan_ip.unwrap().to_string();
    assert!(
        record.contains(&wan),
        "alice's record names her NAT's address {wan}: {record}"
    );
}
