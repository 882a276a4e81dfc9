//! A call that starts on the relay moves to the direct path when that comes up, and the
//! move loses no audio: the path is switched only once the direct path has answered a
//! probe, and both paths are received meanwhile.

use parley_e2e::calls::{answering, call_end, calling};
use parley_e2e::{Proc, RelayKey, Supernode};
use std::process::Command;
use std::time::Duration;

#[test]
fn a_relayed_call_upgrades_to_direct_without_losing_audio() {
    let key = RelayKey::create().unwrap();
    let mut sn1 = Supernode::start_with("sn1", &[], &["--relay-key", &key.id]).unwrap();
    let s1 = sn1.quic.to_string();
    let relay = key
        .start(
            "relay",
            std::slice::from_ref(&sn1.id),
            &["--supernode", &s1],
        )
        .unwrap();
    sn1.wait_relay().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Both hold their direct path back for 2 s: the call starts on the relay.
    let delayed = |name: &str, args: &[&str]| {
        let mut cmd = Command::new(parley_e2e::bin("parley")?);
        cmd.env("PARLEY_DIRECT_DELAY_MS", "2000").args(args);
        Proc::spawn_command(name, cmd)
    };
    let mut bob = answering(&delayed, "bob", dir.path(), &["--supernode", &s1]).unwrap();
    let mut alice = calling(
        &delayed,
        "alice",
        dir.path(),
        &bob.home.id,
        &["--supernode", &s1, "--duration", "6"],
    )
    .unwrap();
    let end = call_end(&mut alice, Duration::from_secs(40)).unwrap();
    let bob_end = call_end(&mut bob, Duration::from_secs(10)).unwrap();
    drop(relay);
    for v in [&end, &bob_end] {
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
