//! `parley ui` (and `parley` with no arguments on a terminal): a full-screen terminal UI
//! (ratatui) on top of the running client: contacts with presence, the incoming-call
//! prompt, in-call controls, live stats with level meters, and the call history.
//!
//! The UI is a front end only: everything goes through the running client's control
//! socket (see `crate::control`), which it polls four times a second. If no client runs
//! for the home, the UI starts one (`parley online`, logging to `online.log` in the home)
//! and stops it when the UI quits.

mod view;

use crate::call::CallOptions;
use crate::contacts::Contacts;
use crate::control::{self, Request};
use crate::history::{self, Entry};
use crate::home::Home;
use anyhow::{bail, Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the UI asks the client for its status.
const POLL: Duration = Duration::from_millis(250);
/// Contacts and history are re-read every this many polls.
const SLOW_POLLS: u32 = 8;

/// What the screen shows.
#[derive(Default)]
pub struct App {
    pub status: Option<Value>,
    pub contacts: Vec<Value>,
    pub history: Vec<Entry>,
    pub selected: usize,
    pub message: String,
}

/// Runs the UI until `q`.
pub async fn run(home: &Home, supernodes: &[String], opts: CallOptions) -> Result<i32> {
    let started = if control::connect(home).await.is_none() {
        Some(start_client(home, supernodes).await?)
    } else {
        None
    };
    let mut terminal = ratatui::init();
    let result = ui_loop(&mut terminal, home, opts).await;
    ratatui::restore();
    if let Some(mut child) = started {
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    }
    result.map(|_| crate::output::EXIT_OK)
}

/// Starts `parley online` for this home in the background and waits for its socket.
async fn start_client(home: &Home, supernodes: &[String]) -> Result<std::process::Child> {
    let log_path = home.dir().join("online.log");
    std::fs::create_dir_all(home.dir())?;
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("--home").arg(home.dir()).arg("online");
    for s in supernodes {
        cmd.args(["--supernode", s]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting `parley online`")?;
    for _ in 0..100 {
        if control::connect(home).await.is_some() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("`parley online` exited ({status}): {}", log.trim());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    bail!("`parley online` did not open its control socket within 10 s")
}

/// Key presses, read on a thread of their own.
fn keys() -> mpsc::Receiver<(KeyCode, KeyModifiers)> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || loop {
        match event::poll(Duration::from_millis(200)) {
            Ok(true) => {
                if let Ok(Event::Key(k)) = event::read() {
                    if k.kind == KeyEventKind::Press
                        && tx.blocking_send((k.code, k.modifiers)).is_err()
                    {
                        return;
                    }
                }
            }
            Ok(false) => {
                if tx.is_closed() {
                    return;
                }
            }
            Err(_) => return,
        }
    });
    rx
}

async fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    home: &Home,
    opts: CallOptions,
) -> Result<()> {
    let mut app = App::default();
    let mut keys = keys();
    let (msg_tx, mut messages) = mpsc::unbounded_channel::<String>();
    let mut tick = tokio::time::interval(POLL);
    let mut polls: u32 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if polls % SLOW_POLLS == 0 {
                    refresh_slow(&mut app, home).await;
                }
                polls += 1;
                match control::ask(home, &Request::Status).await {
                    Ok((events, _)) => app.status = events.into_iter().find(|v| v["event"] == "status"),
                    Err(e) => {
                        app.status = None;
                        app.message = format!("the client is not running: {e:#}");
                    }
                }
            }
            Some(m) = messages.recv() => app.message = m,
            key = keys.recv() => {
                let Some((code, mods)) = key else { return Ok(()) };
                if code == KeyCode::Char('q') || (code == KeyCode::Char('c') && mods.contains(KeyModifiers::CONTROL)) {
                    return Ok(());
                }
                on_key(&mut app, code, home, &opts, &msg_tx);
            }
        }
        terminal.draw(|f| view::draw(f, &app))?;
    }
}

async fn refresh_slow(app: &mut App, home: &Home) {
    if let Ok((events, _)) = control::ask(home, &Request::Contacts).await {
        app.contacts = events
            .into_iter()
            .filter(|v| v["event"] == "contact")
            .collect();
    }
    app.history = history::load(home);
    app.selected = app.selected.min(app.contacts.len().saturating_sub(1));
}

/// Sends a request in the background; its error (or `done`) becomes the message line.
fn send(home: &Home, request: Request, done: &str, msg: &mpsc::UnboundedSender<String>) {
    let (home, msg, done) = (home.clone(), msg.clone(), done.to_string());
    tokio::spawn(async move {
        let text = match control::ask(&home, &request).await {
            Ok((events, code)) => {
                let error = events
                    .iter()
                    .find(|v| v["event"] == "error")
                    .and_then(|v| v["error"].as_str())
                    .map(str::to_string);
                let end = events
                    .iter()
                    .find(|v| v["event"] == "call_end")
                    .and_then(|v| v["outcome"].as_str())
                    .map(|o| format!("call ended: {o}"));
                error.or(end).unwrap_or_else(|| {
                    if code == 0 {
                        done
                    } else {
                        format!("failed (exit {code})")
                    }
                })
            }
            Err(e) => format!("{e:#}"),
        };
        let _ = msg.send(text);
    });
}

fn on_key(
    app: &mut App,
    code: KeyCode,
    home: &Home,
    opts: &CallOptions,
    msg: &mpsc::UnboundedSender<String>,
) {
    match code {
        KeyCode::Up | KeyCode::Char('k') => app.selected = app.selected.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => {
            app.selected = (app.selected + 1).min(app.contacts.len().saturating_sub(1))
        }
        KeyCode::Enter | KeyCode::Char('c') => {
            let Some(contact) = app.contacts.get(app.selected) else {
                app.message =
                    "no contact selected: add one with `parley contact add NAME ID`".into();
                return;
            };
            let name = contact["name"].as_str().unwrap_or_default().to_string();
            match Contacts::load(home).resolve(&name) {
                Ok((id, contact)) => {
                    app.message = format!("calling {name}…");
                    let request = Request::Call {
                        callee: id.to_string(),
                        contact,
                        opts: opts.clone(),
                    };
                    send(home, request, "call ended", msg);
                }
                Err(e) => app.message = format!("{e:#}"),
            }
        }
        KeyCode::Char('a') => send(home, Request::Answer, "answered", msg),
        KeyCode::Char('d') => send(home, Request::Decline, "declined", msg),
        KeyCode::Char('h') => send(home, Request::Hangup, "hung up", msg),
        KeyCode::Char('m') => {
            let muted = app
                .status
                .as_ref()
                .is_some_and(|s| s["call"]["muted"] == true);
            if muted {
                send(home, Request::Unmute, "unmuted", msg)
            } else {
                send(home, Request::Mute, "muted", msg)
            }
        }
        _ => {}
    }
}
