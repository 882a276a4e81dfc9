//! Issue 10: a promoted client's default relay budget comes from its measured upload.
//! In the NAT lab, a public host whose uplink is shaped to 8 Mbit/s (`tc qdisc ... tbf
//! rate 8000kbit` on its interface) runs `parley online --serve always` with no
//! `--relay-kbps`: the upload it measures against a lab supernode lies within 5-9
//! Mbit/s, and the relay budget in its `promoted` event is a quarter of it. An
//! unshaped host beside it measures far more (the shaping is what is measured).
//!
//! Needs root (network namespaces, nftables, tc with sch_tbf); fails loudly without.

use anyhow::Context;
use parley_e2e::lab_supernodes::LabSupernodes;
use parley_e2e::natlab::{Host, NatKind, NatLab};
use parley_e2e::ClientHome;
use parley_proto::upload::default_relay_kbps;
use serde_json::Value;
use std::time::Duration;

/// Runs `parley online --serve always` in `host` until it is promoted; returns its
/// `upload_measured` and `promoted` events.
fn measure(host: &Host, name: &str, boot: &[String; 2]) -> anyhow::Result<(Value, Value)> {
    let home = ClientHome::new(name)?;
    let args = [
        "--home",
        home.path(),
        "online",
        "--json",
        "--serve",
        "always",
        "--supernode",
        &boot[0],
        "--supernode",
        &boot[1],
    ];
    let mut p = host.spawn_bin(name, "parley", args)?;
    let event = |l: &str| serde_json::from_str::<Value>(l).context("not JSON");
    let measured = p.wait_for(Duration::from_secs(60), |l| {
        l.contains("\"event\":\"upload_measured\"")
    })?;
    let promoted = p.wait_for(Duration::from_secs(30), |l| {
        l.contains("\"event\":\"promoted\"")
    })?;
    eprintln!("{name}: {measured}\n{name}: {promoted}");
    Ok((event(&measured)?, event(&promoted)?))
}

fn mbit(kbps: &Value) -> f64 {
    kbps.as_u64().unwrap_or(0) as f64 * 1024.0 / 1e6
}

#[test]
fn an_8_mbit_uplink_measures_5_to_9_mbit_and_relays_a_quarter_of_it() -> anyhow::Result<()> {
    let mut lab = NatLab::new()?;
    let servers = LabSupernodes::start(&mut lab)?;
    let boot = servers.addrs.map(|a| a.to_string());
    let shaped = lab.client("shaped", NatKind::Public, 0.0)?;
    lab.set_uplink(&shaped, 8_000, 100)?;
    let (measured, promoted) = measure(&shaped, "shaped", &boot)?;
    let upload = &measured["upload_kbps"];
    assert!(
        (5.0..=9.0).contains(&mbit(upload)),
        "{} Mbit/s measured on an 8 Mbit/s link: {measured}",
        mbit(upload)
    );
    assert_eq!(promoted["upload_kbps"], *upload, "{promoted}");
    assert_eq!(promoted["relay_kbps_source"], "measured", "{promoted}");
    let up = upload.as_u64().unwrap_or(0) as u32;
    // A quarter, within the bounds (512-8192) that a 5-9 Mbit/s upload never meets.
    assert_eq!(promoted["relay_kbps"], default_relay_kbps(up), "{promoted}");
    assert_eq!(promoted["relay_kbps"], up / 4, "{promoted}");

    let open = lab.client("open", NatKind::Public, 0.0)?;
    let (fast, _) = measure(&open, "open", &boot)?;
    assert!(
        mbit(&fast["upload_kbps"]) > 1.5 * mbit(upload),
        "unshaped {fast} vs shaped {measured}"
    );
    Ok(())
}
