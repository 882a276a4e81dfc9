//! A call that starts on the relay moves to the direct path when that comes up, and the
//! move loses no audio: the path is switched only once the direct path has answered a
//! probe, and both paths are received meanwhile.

use parley_e2e::{ClientHome, Proc, Relay, Supernode};
use std::process::Command;
use std::time::Duration;

#[test]
fn a_relayed_call_upgrades_to_direct_without_losing_audio() {
    let mut sn1 = Supernode::start("sn1", &[]).unwrap();
    let s1 = sn1.quic.to_string();
    let relay = Relay::start_with(
        "relay",
        std::slice::from_ref(&sn1.id),
        &["--supernode", &s1],
    )
    .unwrap();
    sn1.wait_relay().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let speech = parley_audio::speech_fixture();
    let speech = speech.to_str().unwrap();
    let (alice, bob) = (
        ClientHome::new("alice").unwrap(),
        ClientHome::new("bob").unwrap(),
    );
    let (bob_out, alice_out) = (dir.path().join("bob.wav"), dir.path().join("alice.wav"));
    // Both hold their direct path back for 2 s: the call starts on the relay.
    let client = |home: &str, args: &[&str]| {
        let mut cmd = Command::new(parley_e2e::bin("parley").unwrap());
        cmd.env("PARLEY_DIRECT_DELAY_MS", "2000")
            .arg("--home")
            .arg(home)
            .args(args);
        cmd
    };
    let mut bob_proc = Proc::spawn_command(
        "bob",
        client(
            bob.path(),
            &[
                "online",
                "--json",
                "--auto-answer",
                "--supernode",
                &s1,
                "--input",
                speech,
                "--output",
                bob_out.to_str().unwrap(),
            ],
        ),
    )
    .unwrap();
    bob_proc
        .wait_for(Duration::from_secs(20), |l| {
            l.contains("\"event\":\"published\"")
        })
        .unwrap();
    let mut alice_proc = Proc::spawn_command(
        "alice",
        client(
            alice.path(),
            &[
                "call",
                &bob.id,
                "--json",
                "--supernode",
                &s1,
                "--duration",
                "6",
                "--input",
                speech,
                "--output",
                alice_out.to_str().unwrap(),
            ],
        ),
    )
    .unwrap();
    let end = alice_proc
        .wait_for(Duration::from_secs(40), |l| {
            l.contains("\"event\":\"call_end\"")
        })
        .unwrap();
    let bob_end = bob_proc
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("\"event\":\"call_end\"")
        })
        .unwrap();
    drop(relay);
    for line in [&end, &bob_end] {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        eprintln!("{v}");
        assert_eq!(v["path"], "direct", "{v}");
        assert_eq!(v["path_switches"], 1, "{v}");
        assert!(
            v["frames_received_relay"].as_u64().unwrap() > 30,
            "started on the relay: {v}"
        );
        assert!(
            v["frames_received_direct"].as_u64().unwrap() > 100,
            "moved to direct: {v}"
        );
        assert_eq!(v["frames_lost"], 0, "no frame lost in the switch: {v}");
        assert!(v["max_gap_ms"].as_u64().unwrap() < 200, "{v}");
    }
}
