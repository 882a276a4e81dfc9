//! Acceptance (issue 11 item 1, issue 15 "relays every supernode can use"): a supernode
//! hands out only the relays its operator configured. A rogue relay that reports in
//! with its own key, and a configured relay that does not trust the supernode, forward
//! nothing over six relayed calls; the configured relay carries them all. A supernode
//! with no relay configured at all refuses every relay that reports in, and hands out
//! none.

use anyhow::{Context, Result};
use parley_e2e::calls::{answering, call_end, calling, loopback, pair};
use parley_e2e::{http_get, prometheus_value, ready_field, Relay, RelayKey, Supernode};
use std::net::SocketAddr;
use std::time::Duration;

fn forwarded(relay: &Relay) -> Result<f64> {
    let addr: SocketAddr = ready_field(&relay.ready, "metrics")
        .context("no metrics= in the ready line")?
        .parse()?;
    let (status, body) = http_get(addr, "/metrics")?;
    anyhow::ensure!(
        status == 200,
        "{} /metrics answered {status}",
        relay.proc.name
    );
    prometheus_value(&body, "parley_relay_forwarded_datagrams_total")
        .context("no forwarded counter")
}

#[test]
fn a_rogue_relay_reporting_in_forwards_nothing_over_six_relayed_calls() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let good_key = keys.path().join("good.key");
    let good_id = Relay::create_key(&good_key)?;
    let distrustful_key = keys.path().join("distrustful.key");
    let distrustful_id = Relay::create_key(&distrustful_key)?;

    let mut sn = Supernode::start_with(
        "sn",
        &[],
        &["--relay-key", &good_id, "--relay-key", &distrustful_id],
    )?;
    let sn_addr = sn.quic.to_string();
    let report = ["--supernode", sn_addr.as_str(), "--metrics", "127.0.0.1:0"];
    let trusting = [sn.id.clone()];
    let good = Relay::start_keyed("good", &good_key, &trusting, &report, tempfile::tempdir()?)?;
    // Configured on the supernode, but it trusts another supernode only.
    let elsewhere = [parley_proto::Identity::generate().peer_id().to_string()];
    let distrustful = Relay::start_keyed(
        "distrustful",
        &distrustful_key,
        &elsewhere,
        &report,
        tempfile::tempdir()?,
    )?;
    // Reports in with its own key, trusting the supernode: never configured there.
    let rogue = Relay::start_with("rogue", &trusting, &report)?;
    sn.proc.wait_for(Duration::from_secs(20), |l| {
        l.starts_with("relay known") && l.contains(&good.id)
    })?;

    let dir = tempfile::tempdir()?;
    let mut bob = answering(
        &loopback,
        "bob",
        dir.path(),
        &["--supernode", &sn_addr, "--relay-only"],
    )?;
    for n in 0..6 {
        let mut alice = calling(
            &loopback,
            &format!("alice{n}"),
            dir.path(),
            &bob.home.id,
            &["--supernode", &sn_addr, "--relay-only", "--duration", "2"],
        )?;
        let summary = call_end(&mut alice, Duration::from_secs(60))?;
        assert_eq!(summary["path"], "relay", "call {n}: {summary}");
        // Bob's (n+1)-th call summary (wait_for scans what was already seen first).
        let count = std::cell::Cell::new(0);
        bob.proc.wait_for(Duration::from_secs(20), |l| {
            l.contains("\"event\":\"call_end\"") && {
                count.set(count.get() + 1);
                count.get() == n + 1
            }
        })?;
    }

    assert!(
        forwarded(&good)? > 0.0,
        "the configured relay carried the calls"
    );
    // The others are alive and could forward (their metrics answer), yet carried nothing.
    assert_eq!(
        forwarded(&rogue)?,
        0.0,
        "the rogue relay forwarded datagrams"
    );
    assert_eq!(
        forwarded(&distrustful)?,
        0.0,
        "a relay that does not trust the supernode was handed out"
    );
    let sn_saw = sn.proc.wait_for(Duration::from_millis(200), |l| {
        l.starts_with("relay known") && (l.contains(&rogue.id) || l.contains(&distrustful.id))
    });
    assert!(
        sn_saw.is_err(),
        "the supernode listed a relay it must not: {sn_saw:?}"
    );
    Ok(())
}

#[test]
fn a_relay_reporting_to_a_supernode_with_no_relay_configured_is_refused_and_never_granted(
) -> Result<()> {
    let key = RelayKey::create()?;
    // No --relay, no --relay-key.
    let mut bare = Supernode::start("bare", &[])?;
    // The control: the same relay, configured here, is handed out and forwards.
    let mut configured = Supernode::start_with("configured", &[], &["--relay-key", &key.id])?;
    let (b, c) = (bare.quic.to_string(), configured.quic.to_string());
    let trusting = [bare.id.clone(), configured.id.clone()];
    let report = [
        "--supernode",
        &b,
        "--supernode",
        &c,
        "--metrics",
        "127.0.0.1:0",
    ];
    let relay = key.start("relay", &trusting, &report)?;
    configured.proc.wait_for(Duration::from_secs(20), |l| {
        l.starts_with("relay known") && l.contains(&relay.id)
    })?;
    // The relay did report to the bare supernode, and was refused.
    bare.proc.wait_for(Duration::from_secs(20), |l| {
        l.starts_with("relay refused") && l.contains(&relay.id)
    })?;

    let dir = tempfile::tempdir()?;
    let (bob, mut alice) = pair(
        &loopback,
        dir.path(),
        ("bob", &["--supernode", &b, "--relay-only"]),
        (
            "alice",
            &["--supernode", &b, "--relay-only", "--duration", "2"],
        ),
    )?;
    let connected = alice.proc.wait_for(Duration::from_secs(30), |l| {
        l.contains("\"event\":\"connected\"")
    })?;
    let connected: serde_json::Value = serde_json::from_str(&connected)?;
    assert_eq!(
        connected["relays"],
        serde_json::json!([]),
        "the bare supernode granted a relay: {connected}"
    );
    alice.proc.wait_for(Duration::from_secs(30), |l| {
        l.contains("\"event\":\"path_failed\"") && l.contains("no relay was granted")
    })?;
    let status = alice.proc.wait_exit(Duration::from_secs(60))?;
    assert!(
        !status.success(),
        "a relay-only call with no relay granted succeeded"
    );
    assert_eq!(forwarded(&relay)?, 0.0, "the relay forwarded datagrams");
    let listed = bare
        .proc
        .wait_for(Duration::from_millis(200), |l| l.starts_with("relay known"));
    assert!(
        listed.is_err(),
        "the bare supernode listed a relay: {listed:?}"
    );
    drop(bob);

    // The relay is alive and would forward for a supernode configured with it.
    let (mut bob, mut alice) = pair(
        &loopback,
        dir.path(),
        ("bob2", &["--supernode", &c, "--relay-only"]),
        (
            "alice2",
            &["--supernode", &c, "--relay-only", "--duration", "2"],
        ),
    )?;
    let summary = call_end(&mut alice, Duration::from_secs(60))?;
    assert_eq!(summary["path"], "relay", "{summary}");
    assert!(
        forwarded(&relay)? > 0.0,
        "the configured relay carried the call"
    );
    bob.proc.kill();
    Ok(())
}
