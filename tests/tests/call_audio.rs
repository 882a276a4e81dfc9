//! Acceptance: a real call between two `parley` processes carries speech, through the
//! relay and directly; the callee's recording, aligned to what was sent, correlates
//! at ≥ 0.9, and the caller's JSON summary names the path.

use parley_e2e::calls::{answering, call_end, calling, loopback, Servers};
use parley_e2e::similarity;
use std::time::Duration;

/// Bob online through sn2 answering automatically; Alice calls him through sn1.
fn call(lab: &Servers, path_flag: &str) -> anyhow::Result<(serde_json::Value, f32)> {
    let dir = tempfile::tempdir()?;
    let (sn1, sn2) = (lab.sn1.quic.to_string(), lab.sn2.quic.to_string());
    let mut bob = answering(
        &loopback,
        "bob",
        dir.path(),
        &["--supernode", &sn2, path_flag],
    )?;
    let mut alice = calling(
        &loopback,
        "alice",
        dir.path(),
        &bob.home.id,
        &["--supernode", &sn1, path_flag],
    )?;
    let summary = call_end(&mut alice, Duration::from_secs(60))?;
    let heard_by_bob = call_end(&mut bob, Duration::from_secs(10))?;
    let s = similarity(&parley_audio::speech_fixture(), &bob.heard)?;
    eprintln!(
        "{path_flag}: correlation {:.3} at lag {} samples; alice's summary {summary}; \
         bob's (the recording's) {heard_by_bob}",
        s.correlation, s.lag_samples
    );
    Ok((summary, s.correlation))
}

fn check(summary: &serde_json::Value, correlation: f32, path: &str) {
    assert_eq!(summary["path"], path, "{summary}");
    for key in [
        "setup_ms",
        "frames_sent",
        "frames_received",
        "frames_lost",
        "frames_concealed",
        "rtt_ms",
        "jitter_ms",
        "duration_s",
    ] {
        assert!(!summary[key].is_null(), "summary lacks {key}: {summary}");
    }
    assert!(summary["frames_sent"].as_u64().unwrap() > 250, "{summary}");
    assert_eq!(summary["datagrams_forged"], 0);
    assert!(
        correlation >= 0.9,
        "received speech correlates only {correlation}"
    );
}

#[test]
fn a_call_through_the_relay_carries_speech() -> anyhow::Result<()> {
    let lab = Servers::start(1)?;
    let (summary, correlation) = call(&lab, "--relay-only")?;
    check(&summary, correlation, "relay");
    assert!(summary["frames_received_relay"].as_u64().unwrap() > 250);
    Ok(())
}

#[test]
fn a_direct_call_carries_speech() -> anyhow::Result<()> {
    let lab = Servers::start(1)?;
    let (summary, correlation) = call(&lab, "--direct-only")?;
    check(&summary, correlation, "direct");
    assert!(summary["frames_received_direct"].as_u64().unwrap() > 250);
    Ok(())
}
