//! A relay killed mid-call: both parties already hold a leg on a standby relay, and the
//! call moves there within a second (measured as the longest gap between audio frames).

use parley_e2e::calls::{answering, call_end, calling, loopback, Servers};
use std::time::Duration;

#[test]
fn a_call_survives_its_relay_dying() {
    let mut servers = Servers::start(2).unwrap();
    let (s1, s2) = (servers.sn1.quic.to_string(), servers.sn2.quic.to_string());
    let relays = &mut servers.relays;

    let dir = tempfile::tempdir().unwrap();
    let bob = answering(
        &loopback,
        "bob",
        dir.path(),
        &["--relay-only", "--supernode", &s2],
    )
    .unwrap();
    let mut alice = calling(
        &loopback,
        "alice",
        dir.path(),
        &bob.home.id,
        &["--relay-only", "--supernode", &s1, "--duration", "6"],
    )
    .unwrap();
    let alice_proc = &mut alice.proc;
    let connected = alice_proc
        .wait_for(Duration::from_secs(30), |l| {
            l.contains("\"event\":\"connected\"")
        })
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&connected).unwrap();
    let granted: Vec<String> = v["relays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert_eq!(granted.len(), 2, "two relays granted: {v}");
    // Let audio flow on the primary, then kill it.
    alice_proc
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("\"event\":\"stats\"") && l.contains("\"frames_received\":1")
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let primary = relays
        .iter()
        .position(|r| r.quic.to_string() == granted[0])
        .unwrap();
    relays[primary].proc.kill();

    let summary = call_end(&mut alice, Duration::from_secs(30)).unwrap();
    eprintln!("{summary}");
    assert_eq!(summary["path"], "relay");
    assert!(summary["path_switches"].as_u64().unwrap() >= 1, "{summary}");
    let gap = summary["max_gap_ms"].as_u64().unwrap();
    assert!(gap < 1000, "audio stopped for {gap} ms when the relay died");
    assert!(
        summary["frames_received"].as_u64().unwrap() > 200,
        "{summary}"
    );
}
