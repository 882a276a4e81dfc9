//! Clocks that disagree, and clocks that step: processes whose wall clocks differ by
//! minutes still attach, publish and call, and a live relayed call carries on while the
//! parties' wall clocks are stepped backwards and forwards by minutes.
//!
//! Uses the test hooks of `parley_net::clock`: `PARLEY_CLOCK_OFFSET_S` (a fixed offset)
//! and `PARLEY_CLOCK_OFFSET_FILE` (an offset re-read while running). Supernodes and
//! relays run on the true clock.

use anyhow::Result;
use parley_e2e::calls::{answering, call_end, calling, Servers};
use parley_e2e::{bin, Proc};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Starts `parley` with extra environment variables.
fn with_env(env: Vec<(&'static str, String)>) -> impl Fn(&str, &[&str]) -> Result<Proc> {
    move |name: &str, args: &[&str]| {
        let mut cmd = Command::new(bin("parley")?);
        cmd.args(args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        Proc::spawn_command(name, cmd)
    }
}

fn write_offset(path: &Path, secs: i64) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, secs.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn clients_eleven_minutes_behind_and_three_ahead_attach_publish_and_call() {
    let servers = Servers::start(1).unwrap();
    let (s1, s2) = (servers.sn1.quic.to_string(), servers.sn2.quic.to_string());
    // Bob's clock is 11 minutes behind (before, his records were refused as expired);
    // Alice's is 3 minutes ahead: 14 minutes from Bob's.
    relayed_call_with_clocks_off(&s1, &s2, 180, -660);
}

/// Bob (clock `bob_s` seconds off, attached to `s2`) answers a relay-only call from Alice
/// (`alice_s` off, via `s1`); the call must go through the relay and carry audio.
fn relayed_call_with_clocks_off(s1: &str, s2: &str, alice_s: i64, bob_s: i64) {
    let dir = tempfile::tempdir().unwrap();
    let bob = answering(
        &with_env(vec![("PARLEY_CLOCK_OFFSET_S", bob_s.to_string())]),
        "bob",
        dir.path(),
        &["--relay-only", "--supernode", s2],
    )
    .unwrap_or_else(|e| panic!("bob ({bob_s} s off) attaches and publishes: {e:#}"));
    let mut alice = calling(
        &with_env(vec![("PARLEY_CLOCK_OFFSET_S", alice_s.to_string())]),
        "alice",
        dir.path(),
        &bob.home.id,
        &["--relay-only", "--supernode", s1, "--duration", "3"],
    )
    .unwrap();
    let summary = call_end(&mut alice, Duration::from_secs(40)).unwrap();
    eprintln!("{summary}");
    assert_eq!(summary["path"], "relay", "{summary}");
    assert!(
        summary["frames_received"].as_u64().unwrap() > 100,
        "{summary}"
    );
}

#[test]
fn a_relayed_call_carries_on_while_the_clocks_step_by_minutes() {
    let servers = Servers::start(1).unwrap();
    let (s1, s2) = (servers.sn1.quic.to_string(), servers.sn2.quic.to_string());
    let dir = tempfile::tempdir().unwrap();
    let (bob_clock, alice_clock) = (
        dir.path().join("bob.offset"),
        dir.path().join("alice.offset"),
    );
    write_offset(&bob_clock, 0);
    write_offset(&alice_clock, 0);
    let file = |p: &Path| with_env(vec![("PARLEY_CLOCK_OFFSET_FILE", p.display().to_string())]);
    let bob = answering(
        &file(&bob_clock),
        "bob",
        dir.path(),
        &["--relay-only", "--supernode", &s2],
    )
    .unwrap();
    let mut alice = calling(
        &file(&alice_clock),
        "alice",
        dir.path(),
        &bob.home.id,
        &["--relay-only", "--supernode", &s1, "--duration", "8"],
    )
    .unwrap();
    alice
        .proc
        .wait_for(Duration::from_secs(30), |l| {
            l.contains("\"event\":\"stats\"") && l.contains("\"frames_received\":1")
        })
        .unwrap();
    // Forward five minutes, then back ten, then forward again: on both sides at once
    // and in opposite directions.
    for (a, b) in [(300, -300), (-300, 300), (0, 0)] {
        write_offset(&alice_clock, a);
        write_offset(&bob_clock, b);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let summary = call_end(&mut alice, Duration::from_secs(40)).unwrap();
    eprintln!("{summary}");
    assert_eq!(summary["path"], "relay", "{summary}");
    let gap = summary["max_gap_ms"].as_u64().unwrap();
    assert!(gap < 1000, "audio stopped for {gap} ms around a clock step");
    assert!(
        summary["frames_received"].as_u64().unwrap() > 300,
        "{summary}"
    );
    drop(bob);
}

/// The seconds in "about N s <dir> this one" of a refusal message.
fn skew_told(line: &str, dir: &str) -> Option<u64> {
    let tail = format!(" s {dir} this one");
    let end = line.find(&tail)?;
    let start = line[..end].rfind("about ")? + "about ".len();
    line[start..end].parse().ok()
}

#[test]
fn a_client_two_hours_off_is_told_which_clock_is_wrong_and_by_how_much() {
    let sn = parley_e2e::Supernode::start("sn", &[]).unwrap();
    for (offset, dir) in [(7200, "ahead of"), (-7200, "behind")] {
        let home = parley_e2e::ClientHome::new("carol").unwrap();
        let spawn = with_env(vec![("PARLEY_CLOCK_OFFSET_S", offset.to_string())]);
        let q = sn.quic.to_string();
        let mut carol = spawn(
            "carol",
            &["--home", home.path(), "online", "--json", "--supernode", &q],
        )
        .unwrap();
        // Refused, and the refusal names the signing machine's clock and the offset.
        let line = carol
            .wait_for(Duration::from_secs(20), |l| {
                l.contains("\"event\":\"publish_failed\"")
            })
            .unwrap();
        let told = skew_told(&line, dir).unwrap_or_else(|| panic!("{offset}: {line}"));
        assert!(
            (7100..=7300).contains(&told),
            "{offset}: told {told} s: {line}"
        );
        assert!(line.contains("\"clock\":true"), "{line}");
        // No re-dial loop: the attachment is kept (it works) and nothing is retried
        // within the next few seconds.
        std::thread::sleep(Duration::from_secs(4));
        let again = carol.wait_for(Duration::from_millis(100), |l| {
            l.contains("\"event\":\"detached\"")
                || (l.contains("\"event\":\"publish_failed\"") && l != line)
        });
        assert!(again.is_err(), "{offset}: retried at once: {again:?}");
    }
}

#[test]
fn supernodes_relay_and_clients_on_clocks_minutes_apart_attach_publish_and_call() {
    use parley_e2e::{Relay, RelayKey, Supernode};
    // Every pair of clocks that must agree on something signed is under 15 minutes
    // apart; no two clocks are the same. (Seconds off the true time.)
    let (sn1_s, sn2_s, relay_s, alice_s, bob_s) = (300, -300, -360, 180, -480);
    let key = RelayKey::create().unwrap();
    let flags = ["--relay-key", key.id.as_str()];
    let mut sn1 = Supernode::start_skewed("sn1", &[], &flags, sn1_s).unwrap();
    let mut sn2 = Supernode::start_skewed("sn2", &[sn1.quic], &flags, sn2_s).unwrap();
    let (s1, s2) = (sn1.quic.to_string(), sn2.quic.to_string());
    let report = ["--supernode", s1.as_str(), "--supernode", s2.as_str()];
    let trusted = [sn1.id.clone(), sn2.id.clone()];
    let relay = Relay::start_skewed("relay", key, &trusted, &report, relay_s).unwrap();
    sn1.wait_relay().unwrap();
    sn2.wait_relay().unwrap();
    relayed_call_with_clocks_off(&s1, &s2, alice_s, bob_s);
    drop(relay);
}
