//! IPv6 and dual stack (issue 15, acceptance 3): a supernode listening on `[::]` serves
//! IPv4 and IPv6 clients on one socket; a client attached over `::1` is found by a
//! client attached over `127.0.0.1`, and a call between them carries audio.

use parley_e2e::calls::{answering, call_end, calling, loopback};
use parley_e2e::{parley, ready_field, ClientHome, Proc};
use std::net::SocketAddr;
use std::time::Duration;

/// Whether this host can bind `::1` (IPv6 may be disabled in a container).
fn ipv6_loopback() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

#[test]
fn a_client_on_ipv6_is_found_and_called_from_ipv4_through_a_dual_stack_supernode(
) -> anyhow::Result<()> {
    assert!(
        ipv6_loopback(),
        "this test needs IPv6 on loopback (::1); enable it (sysctl net.ipv6.conf.lo.disable_ipv6=0)"
    );
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("sn.key");
    let key = key.to_str().unwrap_or_default();
    let mut sn = Proc::spawn("sn", "supernode", &["--listen", "[::]:0", "--key", key])?;
    let ready = sn.wait_for(Duration::from_secs(20), |l| {
        l.starts_with("supernode ready")
    })?;
    let quic: SocketAddr = ready_field(&ready, "quic").unwrap_or_default().parse()?;
    assert!(quic.is_ipv6(), "{ready}");
    let over_v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], quic.port())).to_string();
    let over_v4 = SocketAddr::from(([127, 0, 0, 1], quic.port())).to_string();

    // Alice attaches over IPv6 and publishes; carol, over IPv4, finds her.
    let mut alice = answering(&loopback, "alice", dir.path(), &["--supernode", &over_v6])?;
    let carol = ClientHome::new("carol")?;
    let found = parley(
        std::path::Path::new(carol.path()),
        &["lookup", &alice.home.id, "--supernode", &over_v4, "--json"],
    )?;
    let record = String::from_utf8_lossy(&found.stdout);
    assert!(found.status.success(), "lookup over IPv4 failed: {record}");
    assert!(
        record.contains("[::1]:"),
        "alice's record names her IPv6 address: {record}"
    );

    // Bob calls her over IPv4-attached signalling; the call carries audio both ways.
    let mut bob = calling(
        &loopback,
        "bob",
        dir.path(),
        &alice.home.id,
        &["--supernode", &over_v4, "--duration", "4"],
    )?;
    let b = call_end(&mut bob, Duration::from_secs(60))?;
    let a = call_end(&mut alice, Duration::from_secs(15))?;
    for (who, v) in [("bob", &b), ("alice", &a)] {
        assert_eq!(v["outcome"], "completed", "{who}: {v}");
        assert!(
            v["frames_received"].as_u64().unwrap_or(0) > 100,
            "{who} heard too little: {v}"
        );
    }
    Ok(())
}
