//! Acceptance: three supernodes on loopback, client A online through the 2nd, and
//! A looked up through the 3rd, as a new user would type it.

use parley_e2e::{parley, ClientHome, Supernode};
use std::time::{Duration, Instant};

#[test]
fn a_client_attached_to_one_supernode_is_found_from_another() -> anyhow::Result<()> {
    let sn1 = Supernode::start("sn1", &[])?;
    let sn2 = Supernode::start("sn2", &[sn1.quic])?;
    let sn3 = Supernode::start("sn3", &[sn1.quic])?;

    let alice = ClientHome::new("alice")?;
    let mut online = alice.online("alice", &[sn2.quic])?;
    online.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"event\":\"published\"")
    })?;

    let bob = tempfile::tempdir()?;
    let start = Instant::now();
    let mut found = None;
    // The record is published; allow the overlay a moment, but within the 5 s promise.
    while start.elapsed() < Duration::from_secs(5) {
        let out = parley(
            bob.path(),
            &[
                "lookup",
                &alice.id,
                "--supernode",
                &sn3.quic.to_string(),
                "--json",
            ],
        )?;
        if out.status.success() {
            found = Some(String::from_utf8(out.stdout)?);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let line = found.ok_or_else(|| anyhow::anyhow!("A was not found through sn3 within 5 s"))?;
    let v: serde_json::Value = serde_json::from_str(line.trim())?;
    assert_eq!(v["event"], "found");
    assert_eq!(v["record"]["id"], alice.id.as_str());
    assert_eq!(v["record"]["display_name"], "alice");
    assert!(!v["record"]["supernodes"].as_array().unwrap().is_empty());

    // The human form names the user too.
    let out = parley(
        bob.path(),
        &["lookup", &alice.id, "--supernode", &sn3.quic.to_string()],
    )?;
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)?.contains(&alice.id));

    // An id nobody registered: a clear "not found" and a non-zero exit.
    let stranger = parley_proto::Identity::generate().peer_id().to_string();
    let out = parley(
        bob.path(),
        &["lookup", &stranger, "--supernode", &sn3.quic.to_string()],
    )?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("not found"));

    // A mistyped id is an error before anything is sent.
    let mut typo = alice.id.clone();
    typo.replace_range(5..6, if &typo[5..6] == "a" { "b" } else { "a" });
    let out = parley(
        bob.path(),
        &["lookup", &typo, "--supernode", &sn3.quic.to_string()],
    )?;
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)?.contains("typo"));
    drop(sn2);
    Ok(())
}
