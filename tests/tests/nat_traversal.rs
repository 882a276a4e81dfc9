//! NAT traversal in the lab (`parley_e2e::natlab`): `parley nat` names every NAT kind
//! right, and calls between clients behind every pair of NAT kinds connect, directly
//! wherever the NATs allow it and through the relay otherwise, over TCP exactly where
//! UDP is blocked.
//!
//! Every server runs its ports apart — QUIC, STUN and the TCP fallback on unrelated
//! numbers (issue 15: no "QUIC port + 1" conventions) — and clients are told the TCP
//! fallbacks only as `tcp://` bootstrap addresses; everything else they learn from what
//! the servers advertise.
//!
//! Needs root (network namespaces and nftables); fails loudly without.
//! `scripts/nat-matrix.sh` runs the pair matrix and prints the table in
//! docs/nat-traversal.md.

use parley_e2e::calls::{answering, call_end, calling};
use parley_e2e::natlab::{Host, NatKind, NatLab};
use parley_e2e::{bin, Proc, Relay};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Supernodes' QUIC, STUN and TCP-fallback ports, and the relay's QUIC and TCP ports:
/// deliberately unrelated numbers.
const SN_QUIC: u16 = 4433;
const SN_STUN: u16 = 3478;
const SN_TCP: u16 = 443;
const RELAY_QUIC: u16 = 4500;
const RELAY_TCP: u16 = 8443;

/// Two supernodes on different IPs (NAT discovery needs both) and a relay.
struct Internet {
    lab: NatLab,
    sn: [SocketAddr; 2],
    /// The supernodes' TCP fallbacks.
    sn_tcp: [SocketAddr; 2],
    _procs: Vec<Proc>,
    _keys: tempfile::TempDir,
}

fn ready_field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_default()
        .to_string()
}

fn internet(with_relay: bool) -> Internet {
    let mut lab = NatLab::new().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = |n: &str| keys.path().join(n).to_str().unwrap().to_string();
    let (h1, h2) = (lab.server("sn1").unwrap(), lab.server("sn2").unwrap());
    let (a1, a2) = (h1.addr(SN_QUIC), h2.addr(SN_QUIC));
    let mut procs = Vec::new();
    let mut ids = Vec::new();
    // The relay's key first: supernodes hand out only relays configured on them.
    let relay_id =
        with_relay.then(|| Relay::create_key(keys.path().join("relay").as_ref()).unwrap());
    for (host, addr, name, join) in [(&h1, a1, "sn1", None), (&h2, a2, "sn2", Some(a1))] {
        let listen = addr.to_string();
        let stun = host.addr(SN_STUN).to_string();
        let tcp = host.addr(SN_TCP).to_string();
        let k = key(name);
        let join = join.map(|j| j.to_string());
        let mut args = vec![
            "--listen",
            listen.as_str(),
            "--stun-listen",
            stun.as_str(),
            "--tcp-listen",
            tcp.as_str(),
            "--key",
            k.as_str(),
        ];
        if let Some(j) = &join {
            args.extend(["--join", j.as_str()]);
        }
        if let Some(r) = &relay_id {
            args.extend(["--relay-key", r.as_str()]);
        }
        let mut p = host.spawn_bin(name, "supernode", args).unwrap();
        let ready = p
            .wait_for(Duration::from_secs(20), |l| {
                l.starts_with("supernode ready")
            })
            .unwrap();
        ids.push(ready_field(&ready, "id="));
        procs.push(p);
    }
    if with_relay {
        let host = lab.server("relay").unwrap();
        let listen = host.addr(RELAY_QUIC).to_string();
        let tcp = host.addr(RELAY_TCP).to_string();
        let (k, s1, s2) = (key("relay"), a1.to_string(), a2.to_string());
        let args = [
            "--listen",
            &listen,
            "--tcp-listen",
            &tcp,
            "--key",
            &k,
            "--trust",
            &ids[0],
            "--trust",
            &ids[1],
            "--supernode",
            &s1,
            "--supernode",
            &s2,
        ];
        let mut p = host.spawn_bin("relay", "relay", args).unwrap();
        p.wait_for(Duration::from_secs(20), |l| l.starts_with("relay ready"))
            .unwrap();
        procs.push(p);
        for sn in procs.iter_mut().take(2) {
            sn.wait_for(Duration::from_secs(20), |l| l.starts_with("relay known"))
                .unwrap();
        }
    }
    Internet {
        lab,
        sn: [a1, a2],
        sn_tcp: [h1.addr(SN_TCP), h2.addr(SN_TCP)],
        _procs: procs,
        _keys: keys,
    }
}

impl Internet {
    /// `--supernode` values for every client: both QUIC addresses and both TCP
    /// fallbacks (`tcp://`), which only a client whose UDP is blocked uses.
    fn bootstrap(&self) -> [String; 4] {
        [
            self.sn[0].to_string(),
            self.sn[1].to_string(),
            format!("tcp://{}", self.sn_tcp[0]),
            format!("tcp://{}", self.sn_tcp[1]),
        ]
    }
}

fn kind_name(kind: NatKind) -> &'static str {
    match kind {
        NatKind::Public => "open",
        NatKind::FullCone => "full-cone",
        NatKind::PortRestricted => "port-restricted-cone",
        NatKind::Symmetric => "symmetric",
        NatKind::UdpBlocked => "udp-blocked",
    }
}

#[test]
fn parley_nat_names_every_kind_of_nat_in_the_lab() {
    let mut net = internet(false);
    let [s1, s2, t1, t2] = net.bootstrap();
    let parley = bin("parley").unwrap();
    for (i, kind) in NatKind::ALL.into_iter().enumerate() {
        let host = net.lab.client(&format!("c{i}"), kind, 0.0).unwrap();
        let home = tempfile::tempdir().unwrap();
        let home = home.path().to_str().unwrap();
        let out = host
            .output(
                &parley,
                [
                    "--home",
                    home,
                    "nat",
                    "--json",
                    "--supernode",
                    &s1,
                    "--supernode",
                    &s2,
                    "--supernode",
                    &t1,
                    "--supernode",
                    &t2,
                ],
            )
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["nat"], kind_name(kind), "{kind:?}: {v}");
        if let (Some(wan), NatKind::FullCone | NatKind::PortRestricted) = (host.wan_ip, kind) {
            assert!(
                v["mapped"].as_str().unwrap().starts_with(&wan.to_string()),
                "{v}"
            );
        }
    }
}

/// Whether two clients behind these NATs can reach each other directly over UDP.
fn direct_possible(a: NatKind, b: NatKind) -> bool {
    use NatKind::*;
    !matches!(
        (a, b),
        (UdpBlocked, _)
            | (_, UdpBlocked)
            | (Symmetric, Symmetric)
            | (Symmetric, PortRestricted)
            | (PortRestricted, Symmetric)
    )
}

struct PairResult {
    path: String,
    setup_ms: u64,
    received: u64,
    /// How each side's datagrams left its machine ("udp" or "tcp").
    transports: (String, String),
}

/// `b` online answering; `a` calls it for a few seconds with speech; both summaries read.
fn call(net: &mut Internet, n: usize, a: NatKind, b: NatKind, loss: f64) -> PairResult {
    let dir = tempfile::tempdir().unwrap();
    let [s1, s2, t1, t2] = net.bootstrap();
    let (ha, hb): (Host, Host) = (
        net.lab.client(&format!("a{n}"), a, loss).unwrap(),
        net.lab.client(&format!("b{n}"), b, loss).unwrap(),
    );
    let in_a = |name: &str, args: &[&str]| ha.spawn_bin(name, "parley", args);
    let in_b = |name: &str, args: &[&str]| hb.spawn_bin(name, "parley", args);
    let mut bob = answering(
        &in_b,
        "bob",
        dir.path(),
        &[
            "--supernode",
            &s2,
            "--supernode",
            &s1,
            "--supernode",
            &t2,
            "--supernode",
            &t1,
        ],
    )
    .unwrap();
    let mut alice = calling(
        &in_a,
        "alice",
        dir.path(),
        &bob.home.id,
        &[
            "--supernode",
            &s1,
            "--supernode",
            &s2,
            "--supernode",
            &t1,
            "--supernode",
            &t2,
            "--duration",
            "5",
        ],
    )
    .unwrap();
    let v = call_end(&mut alice, Duration::from_secs(60)).unwrap();
    let w = call_end(&mut bob, Duration::from_secs(15)).unwrap();
    PairResult {
        path: v["path"].as_str().unwrap_or("none").to_string(),
        setup_ms: v["setup_ms"].as_u64().unwrap_or(0),
        transports: (
            v["transport"].as_str().unwrap_or("?").to_string(),
            w["transport"].as_str().unwrap_or("?").to_string(),
        ),
        received: v["frames_received"]
            .as_u64()
            .unwrap_or(0)
            .min(w["frames_received"].as_u64().unwrap_or(0)),
    }
}

/// Calls every unordered pair of the UDP-capable kinds, with `loss` percent random loss
/// on both clients' routers; prints the table and fails on any wrong path.
fn pair_matrix(loss: f64) {
    let mut net = internet(true);
    let kinds = NatKind::ALL;
    let mut table = vec![
        format!("loss on both routers: {loss} %"),
        "| caller | callee | path | expected | transport | setup ms | frames received |"
            .to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    let mut failures = Vec::new();
    let mut n = 0;
    let started = Instant::now();
    for (i, &a) in kinds.iter().enumerate() {
        for &b in &kinds[i..] {
            n += 1;
            let r = call(&mut net, n, a, b, loss);
            let expected = if direct_possible(a, b) {
                "direct"
            } else {
                "relay"
            };
            let transport = format!("{}/{}", r.transports.0, r.transports.1);
            table.push(format!(
                "| {} | {} | {} | {expected} | {transport} | {} | {} |",
                kind_name(a),
                kind_name(b),
                r.path,
                r.setup_ms,
                r.received
            ));
            let tcp = |k: NatKind| {
                if k == NatKind::UdpBlocked {
                    "tcp"
                } else {
                    "udp"
                }
            };
            let right_transport = r.transports == (tcp(a).to_string(), tcp(b).to_string());
            if r.path != expected || r.received < 100 || !right_transport {
                failures.push(format!(
                    "{a:?}→{b:?}: path {} (expected {expected}), {transport}, {} frames",
                    r.path, r.received
                ));
            }
        }
    }
    println!("{}", table.join("\n"));
    println!("({n} pairs in {:.0} s)", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn calls_between_every_pair_of_nat_kinds_connect() {
    pair_matrix(0.0);
}

#[test]
fn with_five_percent_loss_on_both_routers_every_pair_still_connects() {
    pair_matrix(5.0);
}
