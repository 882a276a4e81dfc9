//! Two `parley` clients in a call, the way most end-to-end tests need them: the callee
//! online and answering automatically, the caller calling it, both sending the speech
//! fixture and recording what they hear, and the `call_end` summaries read at the end.
//!
//! Where a process runs is the caller's choice: [`loopback`] starts it here;
//! a NAT lab test passes a closure that starts it inside a namespace.

use crate::{ClientHome, Proc, Relay, RelayKey, Supernode};
use anyhow::Result;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Starts `parley ARGS...` under a name, somewhere.
pub type Spawn<'a> = &'a dyn Fn(&str, &[&str]) -> Result<Proc>;

/// Starts `parley ARGS...` on this host.
pub fn loopback(name: &str, args: &[&str]) -> Result<Proc> {
    Proc::spawn(name, "parley", args)
}

/// A client of a call: its home, its process, and the file it records to.
pub struct Party {
    pub home: ClientHome,
    pub proc: Proc,
    pub heard: PathBuf,
}

fn speech() -> String {
    parley_audio::speech_fixture()
        .to_string_lossy()
        .into_owned()
}

/// `parley online --json --auto-answer` sending speech and recording to `dir/NAME.wav`,
/// with `extra` flags (supernodes, path policy); returns once its presence is published.
pub fn answering(spawn: Spawn<'_>, name: &str, dir: &Path, extra: &[&str]) -> Result<Party> {
    let home = ClientHome::new(name)?;
    let heard = dir.join(format!("{name}.wav"));
    let (speech, out) = (speech(), heard.to_string_lossy().into_owned());
    let mut args = vec!["--home", home.path(), "online", "--json", "--auto-answer"];
    args.extend(["--input", &speech, "--output", &out]);
    args.extend_from_slice(extra);
    let mut proc = spawn(name, &args)?;
    proc.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"event\":\"published\"")
    })?;
    Ok(Party { home, proc, heard })
}

/// `parley call CALLEE --json` sending speech and recording to `dir/NAME.wav`.
pub fn calling(
    spawn: Spawn<'_>,
    name: &str,
    dir: &Path,
    callee: &str,
    extra: &[&str],
) -> Result<Party> {
    let home = ClientHome::new(name)?;
    let heard = dir.join(format!("{name}.wav"));
    let (speech, out) = (speech(), heard.to_string_lossy().into_owned());
    let mut args = vec!["--home", home.path(), "call", callee, "--json"];
    args.extend(["--input", &speech, "--output", &out]);
    args.extend_from_slice(extra);
    let proc = spawn(name, &args)?;
    Ok(Party { home, proc, heard })
}

/// The usual call: `callee` = (name, flags) answering, then `caller` = (name, flags)
/// calling it ([`answering`], [`calling`]); returns (callee, caller).
pub fn pair(
    spawn: Spawn<'_>,
    dir: &Path,
    callee: (&str, &[&str]),
    caller: (&str, &[&str]),
) -> Result<(Party, Party)> {
    let answered = answering(spawn, callee.0, dir, callee.1)?;
    let placed = calling(spawn, caller.0, dir, &answered.home.id, caller.1)?;
    Ok((answered, placed))
}

/// Waits for a party's `call_end` summary.
pub fn call_end(party: &mut Party, timeout: Duration) -> Result<Value> {
    let line = party
        .proc
        .wait_for(timeout, |l| l.contains("\"event\":\"call_end\""))?;
    Ok(serde_json::from_str(&line)?)
}

/// The servers a call needs on loopback: two supernodes (the second joined to the first)
/// and `relays` relays that trust both and report to both.
pub struct Servers {
    pub sn1: Supernode,
    pub sn2: Supernode,
    pub relays: Vec<Relay>,
}

impl Servers {
    /// Starts them, and returns once both supernodes know every relay.
    pub fn start(relays: usize) -> Result<Servers> {
        Servers::start_with(relays, &[])
    }

    /// [`Servers::start`] with `relay_flags` added to every relay's command line.
    pub fn start_with(relays: usize, relay_flags: &[&str]) -> Result<Servers> {
        // The relays' keys first: the supernodes hand out only relays configured on them.
        let keys = (0..relays)
            .map(|_| RelayKey::create())
            .collect::<Result<Vec<_>>>()?;
        let flags = RelayKey::flags(&keys);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut sn1 = Supernode::start_with("sn1", &[], &flags)?;
        let mut sn2 = Supernode::start_with("sn2", &[sn1.quic], &flags)?;
        let trusted = [sn1.id.clone(), sn2.id.clone()];
        let (s1, s2) = (sn1.quic.to_string(), sn2.quic.to_string());
        let mut report = vec!["--supernode", s1.as_str(), "--supernode", s2.as_str()];
        report.extend_from_slice(relay_flags);
        let relays = keys
            .into_iter()
            .enumerate()
            .map(|(n, key)| key.start(&format!("relay{}", n + 1), &trusted, &report))
            .collect::<Result<Vec<_>>>()?;
        for sn in [&mut sn1, &mut sn2] {
            for relay in &relays {
                sn.proc.wait_for(Duration::from_secs(20), |l| {
                    l.starts_with("relay known") && l.contains(&relay.id)
                })?;
            }
        }
        Ok(Servers { sn1, sn2, relays })
    }
}
