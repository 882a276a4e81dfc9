//! Helpers for end-to-end tests: start the real `supernode`, `relay` and `parley`
//! binaries as processes, read their output line by line, and stop them on drop.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, which the
//! README's test command does); set `PARLEY_BIN_DIR` to use binaries elsewhere.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod calls;
pub mod client;
pub mod lab_supernodes;
pub mod natlab;
pub mod promotion;
pub mod udp_count;

/// Where the workspace's binaries are.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PARLEY_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Test executables live in target/<profile>/deps; the binaries one level up.
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The path of one binary, or a clear error if it was not built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the binaries first with `cargo build --workspace --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// A running process whose stdout is read line by line; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    /// Starts `bin` with `args`; stderr goes to the test's stderr, prefixed by nothing.
    pub fn spawn(name: &str, bin_name: &str, args: &[&str]) -> Result<Proc> {
        Proc::spawn_env(name, bin_name, args, &[])
    }

    /// [`Proc::spawn`] with extra environment variables.
    pub fn spawn_env(
        name: &str,
        bin_name: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<Proc> {
        let mut cmd = Command::new(bin(bin_name)?);
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn_command(name, cmd).with_context(|| format!("starting {bin_name}"))
    }

    /// Reads the child's stdout line by line (echoing each line to stderr as `[name]`).
    fn from_child(name: &str, mut child: Child) -> Result<Proc> {
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        let label = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[{label}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            name: name.to_string(),
            child,
            lines: rx,
            seen: Vec::new(),
        })
    }

    /// Waits for a stdout line that satisfies `pred` among those not read yet (unlike
    /// [`Proc::wait_for`], lines already seen do not count).
    pub fn wait_for_new(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "{}: no matching line within {timeout:?}; saw {:?}",
                        self.name,
                        self.seen
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "{}: exited before printing a matching line; saw {:?}",
                        self.name,
                        self.seen
                    )
                }
            }
        }
    }

    /// Waits for a stdout line that satisfies `pred` (one already seen counts),
    /// returning it.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String> {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return Ok(line.clone());
        }
        self.wait_for_new(timeout, pred)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit by itself, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{}: still running after {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (a crash, as far as the others can tell).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM, as `kill` or a service manager would): it
    /// shuts down cleanly. Errors if the signal cannot be sent.
    pub fn terminate(&mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("{}: kill -TERM failed ({status})", self.name);
        }
        Ok(())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A supernode started on loopback with ephemeral ports.
pub struct Supernode {
    pub proc: Proc,
    pub id: String,
    pub quic: SocketAddr,
    pub stun: SocketAddr,
    /// The whole `supernode ready ...` line (optional fields such as `metrics=`).
    pub ready: String,
    _dir: tempfile::TempDir,
}

impl Supernode {
    /// Starts one, joining through `join`, and waits until it is listening.
    pub fn start(name: &str, join: &[SocketAddr]) -> Result<Supernode> {
        Supernode::start_with(name, join, &[])
    }

    /// Like [`Supernode::start`], with extra flags (e.g. `--metrics 127.0.0.1:0`).
    pub fn start_with(name: &str, join: &[SocketAddr], extra: &[&str]) -> Result<Supernode> {
        Supernode::start_env(name, join, extra, &[])
    }

    /// Like [`Supernode::start_with`], with its wall clock `offset_s` seconds off (the
    /// `PARLEY_CLOCK_OFFSET_S` test hook of `parley_net::clock`).
    pub fn start_skewed(
        name: &str,
        join: &[SocketAddr],
        extra: &[&str],
        offset_s: i64,
    ) -> Result<Supernode> {
        let env = [("PARLEY_CLOCK_OFFSET_S", offset_s.to_string())];
        Supernode::start_env(name, join, extra, &env)
    }

    fn start_env(
        name: &str,
        join: &[SocketAddr],
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Result<Supernode> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("supernode.key");
        let key = key.to_str().context("temp path is not UTF-8")?.to_string();
        let joins: Vec<String> = join.iter().map(|a| a.to_string()).collect();
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--stun-listen",
            "127.0.0.1:0",
            "--key",
            key.as_str(),
        ];
        for j in &joins {
            args.extend(["--join", j.as_str()]);
        }
        args.extend_from_slice(extra);
        let mut proc = Proc::spawn_env(name, "supernode", &args, env)?;
        let ready = proc.wait_for(Duration::from_secs(20), |l| {
            l.starts_with("supernode ready")
        })?;
        let field = |k: &str| -> Result<String> {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_string)
                .ok_or_else(|| anyhow!("no {k} in {ready:?}"))
        };
        Ok(Supernode {
            id: field("id=")?,
            quic: field("quic=")?.parse()?,
            stun: field("stun=")?.parse()?,
            ready: ready.clone(),
            proc,
            _dir: dir,
        })
    }
}

impl Supernode {
    /// Waits until this supernode has heard from a relay (so it can grant one to calls).
    pub fn wait_relay(&mut self) -> Result<()> {
        self.proc
            .wait_for(Duration::from_secs(20), |l| l.starts_with("relay known"))
            .map(|_| ())
    }
}

/// A client home directory with an identity in it.
pub struct ClientHome {
    pub dir: tempfile::TempDir,
    pub id: String,
}

impl ClientHome {
    /// `parley --home DIR id new --name NAME`.
    pub fn new(name: &str) -> Result<ClientHome> {
        let dir = tempfile::tempdir()?;
        let out = parley(dir.path(), &["id", "new", "--name", name])?;
        if !out.status.success() {
            bail!("id new failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let id = String::from_utf8(out.stdout)?.trim().to_string();
        Ok(ClientHome { dir, id })
    }

    /// The home path as a string argument.
    pub fn path(&self) -> &str {
        self.dir.path().to_str().unwrap_or_default()
    }

    /// Starts `parley --home DIR online --json` with the given supernodes.
    pub fn online(&self, name: &str, supernodes: &[SocketAddr]) -> Result<Proc> {
        let list: Vec<String> = supernodes.iter().map(|a| a.to_string()).collect();
        let mut args = vec!["--home", self.path(), "online", "--json"];
        for s in &list {
            args.extend(["--supernode", s.as_str()]);
        }
        Proc::spawn(name, "parley", &args)
    }
}

/// Runs `parley --home HOME ARGS...` to completion.
pub fn parley(home: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(bin("parley")?);
    cmd.arg("--home").arg(home).args(args).stdin(Stdio::null());
    cmd.output().context("running parley")
}

// ---------------------------------------------------------------------------------
// Relay (calls issue): start the real `relay` binary.
// ---------------------------------------------------------------------------------

/// A relay started on loopback with an ephemeral port.
pub struct Relay {
    pub proc: Proc,
    pub id: String,
    pub quic: SocketAddr,
    /// The whole `relay ready ...` line (optional fields such as `metrics=`).
    pub ready: String,
    _dir: tempfile::TempDir,
}

impl Relay {
    /// Starts one that accepts tokens from the supernode keys `trusted` (printable ids),
    /// and waits until it is listening.
    pub fn start(name: &str, trusted: &[String]) -> Result<Relay> {
        Relay::start_with(name, trusted, &[])
    }

    /// Like [`Relay::start`], with extra flags (limits such as `--max-legs 2`).
    pub fn start_with(name: &str, trusted: &[String], extra: &[&str]) -> Result<Relay> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("relay.key");
        Relay::start_keyed(name, &key, trusted, extra, dir)
    }

    /// Creates a relay key file at `path` (`relay id --key PATH`) and returns its id,
    /// for supernodes that must know a relay's key before it starts (`--relay-key`).
    pub fn create_key(path: &Path) -> Result<String> {
        let out = Command::new(bin("relay")?)
            .arg("id")
            .arg("--key")
            .arg(path)
            .output()?;
        if !out.status.success() {
            bail!("relay id failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// Like [`RelayKey::start`], with its wall clock `offset_s` seconds off (the
    /// `PARLEY_CLOCK_OFFSET_S` test hook of `parley_net::clock`).
    pub fn start_skewed(
        name: &str,
        key: RelayKey,
        trusted: &[String],
        extra: &[&str],
        offset_s: i64,
    ) -> Result<Relay> {
        let env = [("PARLEY_CLOCK_OFFSET_S", offset_s.to_string())];
        Relay::start_env(name, &key.path, trusted, extra, key.dir, &env)
    }

    /// Like [`Relay::start_with`], with the key file at `key`; `dir` lives as long as
    /// the relay.
    pub fn start_keyed(
        name: &str,
        key: &Path,
        trusted: &[String],
        extra: &[&str],
        dir: tempfile::TempDir,
    ) -> Result<Relay> {
        Relay::start_env(name, key, trusted, extra, dir, &[])
    }

    fn start_env(
        name: &str,
        key: &Path,
        trusted: &[String],
        extra: &[&str],
        dir: tempfile::TempDir,
        env: &[(&str, String)],
    ) -> Result<Relay> {
        let key = key.to_str().context("temp path is not UTF-8")?.to_string();
        let mut args = vec!["--listen", "127.0.0.1:0", "--key", key.as_str()];
        for t in trusted {
            args.extend(["--trust", t.as_str()]);
        }
        args.extend_from_slice(extra);
        let mut proc = Proc::spawn_env(name, "relay", &args, env)?;
        let ready = proc.wait_for(Duration::from_secs(20), |l| l.starts_with("relay ready"))?;
        let field = |k: &str| -> Result<String> {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_string)
                .ok_or_else(|| anyhow!("no {k} in {ready:?}"))
        };
        Ok(Relay {
            id: field("id=")?,
            quic: field("quic=")?.parse()?,
            ready: ready.clone(),
            proc,
            _dir: dir,
        })
    }
}

/// A relay's key file made before the relay starts (`relay id --key PATH`), so that
/// supernodes can be started with its id (`--relay-key`): a supernode hands out only
/// the relays it was configured with.
pub struct RelayKey {
    /// The relay's printable id.
    pub id: String,
    path: PathBuf,
    dir: tempfile::TempDir,
}

impl RelayKey {
    /// A new key in a temporary directory.
    pub fn create() -> Result<RelayKey> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("relay.key");
        let id = Relay::create_key(&path)?;
        Ok(RelayKey { id, path, dir })
    }

    /// `--relay-key ID` for each of `keys`: the flags that let a supernode use them.
    pub fn flags(keys: &[RelayKey]) -> Vec<String> {
        keys.iter()
            .flat_map(|k| ["--relay-key".to_string(), k.id.clone()])
            .collect()
    }

    /// Starts the relay with this key ([`Relay::start_with`]'s `trusted` and `extra`).
    pub fn start(self, name: &str, trusted: &[String], extra: &[&str]) -> Result<Relay> {
        Relay::start_keyed(name, &self.path, trusted, extra, self.dir)
    }
}

/// The value of `key=` in a `... ready key=value ...` line.
pub fn ready_field(ready: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

/// `GET path` over plain HTTP/1.1 (what `curl` does): the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// The value of an unlabelled sample `name` (or `name{labels}` written out) in
/// Prometheus text, if present.
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok())?
    })
}

/// The similarity of a heard recording to the sent audio (both read as 48 kHz mono):
/// each 2 s of the sent audio aligned on its own (up to 2 s of lag) and the correlations
/// averaged by energy ([`parley_audio::align_segments`]). A receiver's playout delay
/// may change mid-call (the jitter buffer adapts; a starved process catches up), which
/// one alignment for the whole file would score as lost audio (seen: a clean call with
/// no frame lost scored 0.78 whole-file under CI load, 0.96 alone).
pub fn similarity(sent: &Path, heard: &Path) -> Result<parley_audio::Similarity> {
    let sent = parley_audio::read_wav_48k_mono(sent)?;
    let heard = parley_audio::read_wav_48k_mono(heard)?;
    Ok(parley_audio::align_segments(
        &sent,
        &heard,
        2 * 48_000,
        2 * 48_000,
    ))
}

// ---------------------------------------------------------------------------------
// NAT lab (NAT traversal issue): start a prepared command, e.g. one that runs inside a
// network namespace (`natlab::Host::spawn`).
// ---------------------------------------------------------------------------------

impl Proc {
    /// Starts a prepared command like [`Proc::spawn`] does a binary: stdin closed,
    /// stdout read line by line, stderr inherited, `RUST_LOG` defaulting to `info`
    /// unless the command sets it.
    pub fn spawn_command(name: &str, mut cmd: Command) -> Result<Proc> {
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Proc::from_child(name, child)
    }
}
