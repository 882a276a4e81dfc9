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

/// Issue 15: bootstrap addresses can come from the client's config file
/// (`<home>/config.toml`, `supernodes = [...]`) instead of `--supernode` on every command;
/// a broken config file is an error that names it, before anything goes online.
#[test]
fn a_client_with_no_flags_bootstraps_from_its_config_file() -> anyhow::Result<()> {
    let sn1 = Supernode::start("sn1", &[])?;
    let alice = ClientHome::new("alice")?;
    let mut online = alice.online("alice", &[sn1.quic])?;
    online.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"event\":\"published\"")
    })?;

    let bob = tempfile::tempdir()?;
    let config = bob.path().join("config.toml");
    // Flags-free, as a user with a config file types it; the tcp:// entry is the TCP
    // fallback, kept for networks that drop UDP.
    std::fs::write(
        &config,
        format!("supernodes = [\"{}\", \"tcp://{}\"]\n", sn1.quic, sn1.quic),
    )?;
    let start = Instant::now();
    let found = loop {
        let out = parley(bob.path(), &["lookup", &alice.id, "--json"])?;
        if out.status.success() {
            break String::from_utf8(out.stdout)?;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(10),
            "not found with the config file's supernodes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let v: serde_json::Value = serde_json::from_str(found.trim())?;
    assert_eq!(v["event"], "found");
    assert_eq!(v["record"]["id"], alice.id.as_str());

    std::fs::write(&config, "supernode = [\"typo for supernodes\"]\n")?;
    let out = parley(bob.path(), &["lookup", &alice.id])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.contains("config.toml"), "{stderr}");
    Ok(())
}
