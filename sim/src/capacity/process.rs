//! The `supernode` under test as a child process, and what `/proc` says about it.
//!
//! CPU time comes from `/proc/PID/stat` (utime + stime, fields 14 and 15, in USER_HZ
//! ticks) and resident memory from `/proc/PID/status` (`VmRSS`), as proc(5) describes
//! them; free memory from `/proc/meminfo` (`MemAvailable`).

use anyhow::{bail, Context, Result};
use parley_proto::PeerId;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// USER_HZ: the unit of CPU times in `/proc` on Linux (fixed at 100 for user space).
pub const TICKS_PER_SEC: u64 = 100;

/// A process's CPU time and resident memory at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// User + system CPU time so far, in [`TICKS_PER_SEC`] ticks.
    pub cpu_ticks: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
}

impl Sample {
    /// Reads process `pid` (`"self"` works too).
    pub fn read(pid: &str) -> Result<Sample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // The command name may hold spaces and parentheses; fields restart after the last ')'.
        let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After ')' the first field is the state (field 3), so utime (14) is index 11.
        let tick =
            |i: usize| -> Result<u64> { Ok(fields.get(i).context("short /proc stat")?.parse()?) };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        Ok(Sample {
            cpu_ticks: tick(11)? + tick(12)?,
            rss_kib: kib_field(&status, "VmRSS:").context("no VmRSS")?,
        })
    }

    /// CPU used between `self` and a later sample over `wall`, in % of one core.
    pub fn cpu_pct_until(&self, later: &Sample, wall: Duration) -> f64 {
        let secs = later.cpu_ticks.saturating_sub(self.cpu_ticks) as f64 / TICKS_PER_SEC as f64;
        100.0 * secs / wall.as_secs_f64().max(1e-9)
    }
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Memory the kernel could still hand out without swapping (`MemAvailable`), MiB.
pub fn mem_available_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&text, "MemAvailable:").map(|k| k / 1024)
}

/// UDP datagrams this host's kernel dropped for want of socket receive buffer so far
/// (`RcvbufErrors` in `/proc/net/snmp`): every one costs a QUIC retransmission.
pub fn udp_rcvbuf_errors() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A running `supernode` on loopback, killed (by its PID) when dropped.
pub struct Supernode {
    child: Child,
    /// Its QUIC address.
    pub addr: SocketAddr,
    /// Its key.
    pub id: PeerId,
    /// Holds the key file and the log.
    dir: tempfile::TempDir,
}

impl Supernode {
    /// Starts `binary` on 127.0.0.1 (every port ephemeral, key in a fresh temporary
    /// directory, log at warn level into it) admitting `max_connections` connections,
    /// and waits for its `supernode ready` line.
    pub fn start(binary: &Path, max_connections: usize) -> Result<Supernode> {
        let dir = tempfile::tempdir()?;
        let log = std::fs::File::create(dir.path().join("supernode.log"))?;
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0"])
            .args(["--tcp-listen", "127.0.0.1:0", "--key"])
            .arg(dir.path().join("supernode.key"))
            .args(["--max-connections", &max_connections.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().context("supernode stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        // Nothing else is printed on stdout; drain it anyway so it can never block.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        match parse_ready(&line) {
            Ok((id, addr)) => Ok(Supernode {
                child,
                addr,
                id,
                dir,
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                // One line: what went wrong, then what the supernode logged.
                Err(anyhow::anyhow!(
                    "{} did not start as a supernode: {e:#}{}",
                    binary.display(),
                    log_tail(dir.path())
                ))
            }
        }
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its CPU time and memory now; an error if it has exited.
    pub fn sample(&mut self) -> Result<Sample> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the supernode exited ({status}){}",
                log_tail(self.dir.path())
            );
        }
        Sample::read(&self.pid().to_string())
    }
}

/// `(id, quic)` from `supernode ready id=... quic=... ...`.
fn parse_ready(line: &str) -> Result<(PeerId, SocketAddr)> {
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .with_context(|| format!("no {k} in the supernode's first line {line:?}"))
    };
    Ok((field("id=")?.parse()?, field("quic=")?.parse()?))
}

/// The last lines of the supernode log in `dir`, for error messages.
fn log_tail(dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(dir.join("supernode.log")) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    format!("; its log ends: {tail}")
}

impl Drop for Supernode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `supernode` binary next to this executable (`target/release/supernode` when the
/// bench runs from `target/release`), built with cargo if it is missing or older than
/// this executable (after a `git pull`, `cargo run` rebuilds only the bench: without
/// this the bench would measure the old server). An old binary is used, with a
/// warning, when cargo cannot build it (an installed bench without the sources).
pub fn default_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name("supernode");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // Whether an older binary is there to fall back on.
    let fallback = match (modified(&path), modified(&me)) {
        (None, _) => false,
        (Some(server), Some(bench)) if server < bench => true,
        (Some(_), _) => return Ok(path),
    };
    let mut args = vec!["build", "-p", "parley-supernode", "--bin", "supernode"];
    if !cfg!(debug_assertions) {
        args.push("--release");
    }
    eprintln!("building the supernode (cargo {})", args.join(" "));
    let ok = Command::new("cargo")
        .args(&args)
        .status()
        .is_ok_and(|s| s.success());
    match (ok && path.exists(), fallback) {
        (true, _) => Ok(path),
        (false, true) => {
            eprintln!(
                "warning: could not rebuild {}; measuring it although it is older than this bench",
                path.display()
            );
            Ok(path)
        }
        (false, false) => bail!("cannot build the supernode binary at {}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_and_the_machine_has_free_memory() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        let s = Sample::read("self").unwrap();
        assert!(s.rss_kib > 100, "{s:?} {x}");
        assert!(mem_available_mib().unwrap() > 0);
        let later = Sample {
            cpu_ticks: s.cpu_ticks + 50,
            ..s
        };
        let pct = s.cpu_pct_until(&later, Duration::from_secs(1));
        assert!((pct - 50.0).abs() < 1e-9);
    }
}
