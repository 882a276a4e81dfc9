//! Issue 9: records published while the overlay has one supernode are found through a
//! second one that joins later, at once, in both directions: no `sleep` between
//! starting supernodes and using them (README "Using it by hand").

use parley_e2e::{parley, ClientHome, Supernode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One `parley lookup` through `via`; fails the test unless it finds `id` first time,
/// within `deadline`.
fn found_at_once(id: &str, via: SocketAddr, deadline: Duration) -> anyhow::Result<()> {
    let home = tempfile::tempdir()?;
    let start = Instant::now();
    let via = via.to_string();
    let out = parley(home.path(), &["lookup", id, "--supernode", &via, "--json"])?;
    let took = start.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{id} not found through {via} (exit {:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["event"], "found");
    assert_eq!(v["record"]["id"], id);
    assert!(took < deadline, "the lookup took {took:?}");
    Ok(())
}

#[test]
fn records_published_before_a_supernode_joins_are_found_through_it_at_once() -> anyhow::Result<()> {
    let deadline = Duration::from_secs(10);
    let sn1 = Supernode::start("sn1", &[])?;
    let alice = ClientHome::new("alice")?;
    let mut alice_online = alice.online("alice", &[sn1.quic])?;
    alice_online.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"event\":\"published\"")
    })?;

    // sn2 joins sn1; carol attaches to it before the join may have completed.
    let sn2 = Supernode::start("sn2", &[sn1.quic])?;
    let carol = ClientHome::new("carol")?;
    let mut carol_online = carol.online("carol", &[sn2.quic])?;

    // Alice, published to sn1 alone, through sn2 the moment it is ready.
    found_at_once(&alice.id, sn2.quic, deadline)?;
    // Carol, published to sn2 while it was joining, through sn1.
    carol_online.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"event\":\"published\"")
    })?;
    found_at_once(&carol.id, sn1.quic, deadline)?;
    // And each through the other supernode's copy alone.
    drop(sn1);
    found_at_once(&alice.id, sn2.quic, deadline)?;
    found_at_once(&carol.id, sn2.quic, deadline)?;
    Ok(())
}
