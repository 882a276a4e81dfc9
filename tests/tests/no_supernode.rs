//! A client that reaches no supernode says so to its user — a `warning` event under
//! `--json`, not only a log line — keeps trying, and never claims to be published.

use parley_e2e::{bin, ClientHome, Proc};
use std::process::Command;
use std::time::Duration;

#[test]
fn online_with_no_supernode_reachable_warns_in_json_and_keeps_trying() -> anyhow::Result<()> {
    // A port nobody listens on: bound, then released.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let home = ClientHome::new("lonely")?;
    let mut cmd = Command::new(bin("parley")?);
    cmd.args(["--home", home.path(), "online", "--json", "--supernode"])
        .arg(dead.to_string())
        .env("PARLEY_NO_AUDIO_DEVICES", "1");
    let mut proc = Proc::spawn_command("lonely", cmd)?;
    let line = proc.wait_for(Duration::from_secs(60), |l| {
        l.contains("\"event\":\"warning\"") && l.contains("no supernode answered")
    })?;
    let warning: serde_json::Value = serde_json::from_str(&line)?;
    assert!(
        warning["warning"]
            .as_str()
            .is_some_and(|w| w.contains("will keep trying")),
        "{warning}"
    );
    assert!(proc.is_running(), "it keeps trying rather than exiting");
    let published = proc.wait_for(Duration::from_secs(2), |l| l.contains("\"published\""));
    assert!(published.is_err(), "nothing was published: {published:?}");
    proc.kill();
    Ok(())
}
