//! Acceptance (issue 15, point 2): a standard RFC 5780 client, coturn's
//! `turnutils_natdiscovery`, classifies NAT mapping and filtering against one supernode
//! started with `--stun-alternate-ip`, on loopback (127.0.0.1 and 127.0.0.2): there is
//! no NAT, so it must find endpoint-independent mapping and filtering.

use anyhow::{Context, Result};
use parley_e2e::Supernode;
use std::process::Command;

#[test]
fn turnutils_natdiscovery_finds_endpoint_independent_mapping_and_filtering() -> Result<()> {
    let sn = Supernode::start_with("sn", &[], &["--stun-alternate-ip", "127.0.0.2"])?;
    let port = sn.stun.port().to_string();
    let out = Command::new("turnutils_natdiscovery")
        .args(["-m", "-f", "-p", &port, "127.0.0.1"])
        .output()
        .context(
            "running turnutils_natdiscovery (Debian package coturn; scripts/install-deps.sh)",
        )?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("turnutils_natdiscovery said:\n{text}");
    assert!(
        text.contains("Endpoint Independent Mapping"),
        "mapping not classified: {text}"
    );
    assert!(
        text.contains("Endpoint Independent Filtering"),
        "filtering not classified: {text}"
    );
    assert!(!text.contains("Error"), "{text}");
    Ok(())
}
