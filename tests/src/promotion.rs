//! Promoted peers (issue 10): `parley online --serve always` clients that proved they
//! are reachable and now serve as a supernode and a relay.

use crate::{ClientHome, Proc};
use anyhow::{Context, Result};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// A client that printed `promoted`.
pub struct Promoted {
    pub home: ClientHome,
    pub proc: Proc,
    /// Its supernode role's QUIC address (the event's `quic`).
    pub quic: SocketAddr,
    /// Its relay's QUIC address (the event's `relay`).
    pub relay: SocketAddr,
    /// The whole event, and the line it came on.
    pub event: Value,
    pub line: String,
}

/// Starts `parley online --json --serve always` with `extra` flags and waits (at most
/// `within`) for its `promoted` event.
pub fn promoted(name: &str, extra: &[&str], within: Duration) -> Result<Promoted> {
    let home = ClientHome::new(name)?;
    let mut cmd = Command::new(crate::bin("parley")?);
    cmd.arg("--home")
        .arg(home.path())
        .args(["online", "--json", "--serve", "always"])
        .args(extra);
    let mut proc = Proc::spawn_command(name, cmd)?;
    let line = proc.wait_for(within, |l| l.contains("\"event\":\"promoted\""))?;
    let event: Value = serde_json::from_str(&line).context("promoted is not JSON")?;
    let addr = |k: &str| -> Result<SocketAddr> {
        event[k]
            .as_str()
            .with_context(|| format!("promoted event lacks {k}: {event}"))?
            .parse()
            .with_context(|| format!("promoted event's {k} is not an address: {event}"))
    };
    Ok(Promoted {
        quic: addr("quic")?,
        relay: addr("relay")?,
        home,
        proc,
        event,
        line,
    })
}
