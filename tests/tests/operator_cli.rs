//! What an operator or a first-time user meets at the command line (issue 15): errors
//! that say what happened and name the right command.

use anyhow::Result;
use parley_e2e::{bin, ClientHome};
use std::process::Command;

/// `parley nat` against supernodes that do not answer (over UDP nor over their TCP
/// fallback) says it could not reach them and exits 1; it never reports "udp-blocked",
/// which needs a TCP fallback to have answered.
#[test]
fn parley_nat_with_unreachable_supernodes_says_so_and_fails() -> Result<()> {
    let home = ClientHome::new("nat")?;
    // Nothing listens on port 9 (discard) on loopback, over UDP or TCP.
    let out = Command::new(bin("parley")?)
        .args([
            "--home",
            home.path(),
            "nat",
            "--json",
            "--supernode",
            "127.0.0.1:9",
            "--supernode",
            "127.0.0.2:9",
            "--supernode",
            "tcp://127.0.0.1:9",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("could not reach"), "{text}");
    assert!(!text.contains("udp-blocked"), "{text}");
    Ok(())
}

/// `supernode id` without a key names the supernode's own command, not the client's.
#[test]
fn supernode_id_without_a_key_names_supernode_id_create() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("sn1.key");
    let out = Command::new(bin("supernode")?)
        .args(["id", "--key", key.to_str().unwrap_or_default()])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("supernode id --create --key"), "{err}");
    assert!(!err.contains("parley id new"), "{err}");
    Ok(())
}

/// The operator guide's metrics table names every reason the relay counts drops and
/// refused joins by.
#[test]
fn the_operator_guide_lists_every_drop_reason() -> Result<()> {
    let guide = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operator-guide.md");
    let guide = std::fs::read_to_string(guide)?;
    let row = guide
        .lines()
        .find(|l| l.contains("parley_relay_dropped_datagrams_total{reason}"))
        .unwrap_or_default();
    for reason in parley_proto::relay::DropReason::ALL {
        assert!(
            row.contains(&format!("`{}`", reason.as_str())),
            "docs/operator-guide.md: {reason} missing from {row}"
        );
    }
    let row = guide
        .lines()
        .find(|l| l.contains("parley_relay_refused_joins_total{reason}"))
        .unwrap_or_default();
    for code in parley_proto::relay::RelayRefusalCode::ALL {
        assert!(
            row.contains(&format!("`{}`", code.as_str())),
            "docs/operator-guide.md: {code:?} missing from {row}"
        );
    }
    Ok(())
}
