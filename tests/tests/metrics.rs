//! Acceptance (issue 15, point 4): `--metrics` on the supernode and the relay serves
//! Prometheus text at `/metrics` and `ok` at `/health`; after one attach and one
//! relayed call the supernode counts a client and a lookup, and the relay forwarded
//! datagrams.

use anyhow::{Context, Result};
use parley_e2e::calls::{call_end, loopback, pair};
use parley_e2e::{http_get, prometheus_value, ready_field, RelayKey, Supernode};
use std::net::SocketAddr;
use std::time::Duration;

fn metrics_addr(ready: &str) -> Result<SocketAddr> {
    ready_field(ready, "metrics")
        .context("no metrics= in the ready line")?
        .parse()
        .context("metrics= is not an address")
}

fn scrape(addr: SocketAddr) -> Result<String> {
    let (status, body) = http_get(addr, "/metrics")?;
    anyhow::ensure!(status == 200, "/metrics answered {status}");
    Ok(body)
}

fn value(text: &str, name: &str) -> f64 {
    prometheus_value(text, name).unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

#[test]
fn metrics_count_an_attach_a_lookup_and_relayed_datagrams() -> Result<()> {
    let key = RelayKey::create()?;
    let mut sn = Supernode::start_with(
        "sn",
        &[],
        &["--metrics", "127.0.0.1:0", "--relay-key", &key.id],
    )?;
    let sn_metrics = metrics_addr(&sn.ready)?;
    let sn_addr = sn.quic.to_string();
    let relay = key.start(
        "relay",
        std::slice::from_ref(&sn.id),
        &["--supernode", &sn_addr, "--metrics", "127.0.0.1:0"],
    )?;
    let relay_metrics = metrics_addr(&relay.ready)?;
    sn.wait_relay()?;

    // Before anything happened: every metric is listed, at zero; /health is up.
    assert_eq!(http_get(sn_metrics, "/health")?, (200, "ok\n".to_string()));
    assert_eq!(http_get(relay_metrics, "/health")?.0, 200);
    assert_eq!(http_get(sn_metrics, "/nothing")?.0, 404);
    let before = scrape(sn_metrics)?;
    for name in [
        "parley_supernode_clients",
        "parley_supernode_records",
        "parley_supernode_lookups_total",
        "parley_supernode_calls_total",
    ] {
        assert_eq!(value(&before, name), 0.0, "{name} before any client");
    }
    let relay_before = scrape(relay_metrics)?;
    assert_eq!(value(&relay_before, "parley_relay_calls"), 0.0);
    assert_eq!(
        value(&relay_before, "parley_relay_forwarded_datagrams_total"),
        0.0
    );
    assert_eq!(
        value(
            &relay_before,
            "parley_relay_dropped_datagrams_total{reason=\"rate_limited\"}"
        ),
        0.0
    );
    assert_eq!(
        value(
            &relay_before,
            "parley_relay_refused_joins_total{reason=\"bad_token\"}"
        ),
        0.0
    );

    let dir = tempfile::tempdir()?;
    let (bob, mut alice) = pair(
        &loopback,
        dir.path(),
        ("bob", &["--supernode", &sn_addr, "--relay-only"]),
        ("alice", &["--supernode", &sn_addr, "--relay-only"]),
    )?;
    let summary = call_end(&mut alice, Duration::from_secs(60))?;
    assert_eq!(summary["path"], "relay", "{summary}");

    let after = scrape(sn_metrics)?;
    eprintln!("supernode metrics after the call:\n{after}");
    assert!(
        value(&after, "parley_supernode_clients") >= 1.0,
        "bob is attached"
    );
    assert!(value(&after, "parley_supernode_lookups_total") >= 1.0);
    assert!(value(&after, "parley_supernode_calls_total") >= 1.0);
    assert!(value(&after, "parley_supernode_records") >= 1.0);
    let relay_after = scrape(relay_metrics)?;
    eprintln!("relay metrics after the call:\n{relay_after}");
    assert!(value(&relay_after, "parley_relay_forwarded_datagrams_total") > 0.0);
    drop(bob);
    Ok(())
}
