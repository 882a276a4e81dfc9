//! Helpers for the desktop-client tests: run a `parley` command to completion with a
//! deadline (a command that hangs fails the test instead of hanging it), and start
//! `parley online` with chosen flags and environment.

use crate::{bin, ClientHome, Proc};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished command printed, and its exit code.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The stdout lines that are JSON objects.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first event named `name`.
    pub fn event(&self, name: &str) -> Option<Value> {
        self.events().into_iter().find(|v| v["event"] == name)
    }
}

/// Runs `parley --home HOME ARGS...` (stdin closed, `env` set) and waits at most
/// `timeout` for it to exit; a command still running then is killed and an error.
pub fn run(home: &str, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Result<Ran> {
    let mut cmd = Command::new(bin("parley")?);
    cmd.arg("--home").arg(home).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting parley")?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let mut stderr = child.stderr.take().context("no stderr")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            );
            bail!("parley {args:?} still running after {timeout:?}; stdout {o:?} stderr {e:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ran = Ran {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    eprintln!("parley {args:?} -> {ran:?}");
    Ok(ran)
}

/// Starts `parley --home HOME online --json ARGS...` with `env`, and waits until its
/// presence is published.
pub fn online(name: &str, home: &ClientHome, args: &[&str], env: &[(&str, &str)]) -> Result<Proc> {
    let mut cmd = Command::new(bin("parley")?);
    cmd.arg("--home")
        .arg(home.path())
        .args(["online", "--json"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn_command(name, cmd)?;
    proc.wait_for(Duration::from_secs(20), |l| {
        l.contains("\"event\":\"published\"")
    })?;
    Ok(proc)
}

/// The speech fixture's path, as an argument.
pub fn speech() -> String {
    parley_audio::speech_fixture()
        .to_string_lossy()
        .into_owned()
}
