//! The terminal UI in a real terminal (issue 14, acceptance 4): `parley ui` runs in a
//! tmux pane, driven by send-keys and read by capture-pane, through an outgoing call
//! (contacts with presence, live stats, mute, hang-up, history) and an incoming one
//! (the prompt, answered with a key).

use anyhow::{bail, Result};
use parley_e2e::calls::Servers;
use parley_e2e::client::{online, run, speech};
use parley_e2e::{bin, ClientHome};
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
const NO_DEVICES: (&str, &str) = ("PARLEY_NO_AUDIO_DEVICES", "1");

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Result<Tmux> {
        let socket = format!("parley-ui-test-{}", std::process::id());
        let t = Tmux { socket };
        let ok = t
            .cmd(&[
                "new-session",
                "-d",
                "-s",
                "ui",
                "-x",
                "120",
                "-y",
                "36",
                command,
            ])
            .status()?
            .success();
        if !ok {
            bail!("tmux new-session failed");
        }
        Ok(t)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).args(args);
        c
    }

    fn keys(&self, keys: &str) -> Result<()> {
        self.cmd(&["send-keys", "-t", "ui", keys]).status()?;
        Ok(())
    }

    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "ui"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Waits until a screen line satisfies `pred`; returns the screen.
    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.lines().any(&pred) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                bail!("the UI never showed {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

#[test]
fn the_terminal_ui_places_and_answers_calls() -> Result<()> {
    let lab = Servers::start(0)?;
    let (sn1, sn2) = (lab.sn1.quic.to_string(), lab.sn2.quic.to_string());
    let sp = speech();
    let (alice, bob) = (ClientHome::new("alice")?, ClientHome::new("bob")?);
    let _bob_proc = online(
        "bob",
        &bob,
        &["--supernode", &sn2, "--auto-answer", "--input", &sp],
        &[NO_DEVICES],
    )?;
    let added = run(alice.path(), &["contact", "add", "bob", &bob.id], &[], T)?;
    assert_eq!(added.code, 0, "{added:?}");

    // The UI starts alice's client itself; calls placed from it send the speech file.
    let parley = bin("parley")?;
    let command = format!(
        "env {}={} {} --home {} ui --supernode {sn1} --input {sp}; sleep 10",
        NO_DEVICES.0,
        NO_DEVICES.1,
        parley.display(),
        alice.path()
    );
    let ui = Tmux::start(&command)?;
    ui.wait_line("bob online", |l| l.contains("bob") && l.contains("online"))?;

    // An outgoing call: connected, live stats, mute, hang up, then in the history.
    ui.keys("c")?;
    ui.wait_line("the call connected", |l| l.contains("connected with bob"))?;
    ui.wait_line("live stats", |l| {
        l.contains("path direct") && l.contains("rtt")
    })?;
    ui.keys("m")?;
    ui.wait_line("muted", |l| l.contains("[MUTED]"))?;
    ui.keys("h")?;
    ui.wait_line("the call in the history", |l| {
        l.contains("→ bob") && l.contains("completed")
    })?;

    // An incoming call: the prompt, answered with `a`.
    let caller = std::thread::spawn({
        let (bob_home, alice_id, sp) = (bob.path().to_string(), alice.id.clone(), sp.clone());
        move || {
            run(
                &bob_home,
                &["call", &alice_id, "--input", &sp, "--duration", "3"],
                &[],
                T,
            )
        }
    });
    ui.wait_line("the incoming call", |l| {
        l.contains("INCOMING CALL from bob")
    })?;
    ui.keys("a")?;
    ui.wait_line("the answered call", |l| l.contains("connected with bob"))?;
    let ran = caller.join().expect("the caller thread")?;
    assert_eq!(ran.code, 0, "{ran:?}");
    ui.wait_line("the incoming call in the history", |l| {
        l.contains("← bob") && l.contains("completed")
    })?;

    // `q` quits, and stops the client the UI started.
    ui.keys("q")?;
    let mut stopped = false;
    for _ in 0..50 {
        let status = run(alice.path(), &["status", "--json"], &[], T)?;
        if status.event("status").is_some_and(|s| s["online"] == false) {
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(stopped, "the client the UI started is still running");
    Ok(())
}
