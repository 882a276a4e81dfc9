//! `parley online`: the running client of an identity. It owns the attachment and the
//! presence record, answers calls, keeps the contacts' presence fresh, and does what
//! other `parley` commands ask over the control socket (see `crate::control`): place a
//! call with that command's audio options, hang up, mute, answer, decline, status,
//! contacts, lookup, send a file. One call at a time; a second incoming call gets
//! "busy". File offers are answered apart from calls (`crate::transfer::receive`).

use crate::call::answer::{give_answer, refuse_busy, AnswerMode, Answerer, PendingAnswer};
use crate::call::audio::CallControl;
use crate::call::place::{self, PlaceCall};
use crate::call::CallOptions;
use crate::contacts::Contacts;
use crate::control::{Command, Request};
use crate::home::Home;
use crate::output::{ForwardSlot, Printer, EXIT_FAILED, EXIT_OK};
use crate::presence::{self, PresenceMap};
use crate::session::{ClientSession, SessionHandle};
use crate::transfer::{self, receive::Receiver, Table};
use anyhow::Result;
use parley_proto::PeerId;
use quinn::Connection;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

mod conference;
pub mod serve;
mod status;

use conference::{already_in_a_call, hang_up_when_gone, host_conference, open_audio};
use status::status;

type DirectRoute = Arc<Mutex<Option<mpsc::Sender<(PeerId, Connection)>>>>;

/// The call in progress.
struct Current {
    peer: PeerId,
    label: String,
    direction: &'static str,
    since: Instant,
    control: Arc<CallControl>,
    /// `calling`, `ringing`, `connected`.
    state: &'static str,
    /// The latest `stats` event of the call.
    stats: Option<Value>,
    /// Set when the call is a conference we host.
    conference: Option<crate::conference::Handle>,
}

impl Current {
    fn new(
        peer: PeerId,
        label: String,
        direction: &'static str,
        control: Arc<CallControl>,
    ) -> Self {
        Current {
            peer,
            label,
            direction,
            since: Instant::now(),
            control,
            state: if direction == "incoming" {
                "ringing"
            } else {
                "calling"
            },
            stats: None,
            conference: None,
        }
    }
}

type CurrentCall = Arc<Mutex<Option<Current>>>;

/// How the running client behaves.
pub struct Config {
    /// Audio of answered calls.
    pub opts: CallOptions,
    pub mode: AnswerMode,
    pub out: Printer,
    /// Where accepted files go (`--accept-files`); `None` refuses file offers.
    pub accept_files: Option<std::path::PathBuf>,
    /// Whether and when to serve others (`--serve`, issue 10).
    pub serve: serve::ServeConfig,
    /// What NAT discovery found (`Unknown` when it could not tell).
    pub nat: parley_proto::presence::NatType,
}

/// What every task of the running client shares.
#[derive(Clone)]
struct Shared {
    home: Home,
    session: SessionHandle,
    current: CurrentCall,
    route: DirectRoute,
    pending: PendingAnswer,
    presence: PresenceMap,
    /// File transfers in progress (both ways), for `status`.
    transfers: Table,
    /// Where we serve others while promoted (`status`).
    serving: serve::Serving,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs until Ctrl-C / SIGTERM.
pub async fn run(
    home: &Home,
    mut session: ClientSession,
    cfg: Config,
    mut commands: mpsc::Receiver<Command>,
) -> Result<()> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let shared = Shared {
        home: home.clone(),
        session: session.handle(),
        current: Arc::default(),
        route: Arc::default(),
        pending: Arc::default(),
        presence: Arc::default(),
        transfers: Table::default(),
        serving: serve::Serving::default(),
    };
    let receiver = Arc::new(Receiver::new(
        shared.session.clone(),
        home.clone(),
        cfg.accept_files.clone(),
        cfg.out,
        shared.transfers.clone(),
    ));
    let answerer = Arc::new(Answerer {
        session: shared.session.clone(),
        home: home.clone(),
        opts: cfg.opts,
        mode: cfg.mode,
        out: cfg.out,
        pending: shared.pending.clone(),
        terminal,
    });
    let tracker = tokio::spawn(presence::track(
        home.clone(),
        shared.session.clone(),
        shared.presence.clone(),
    ));
    let serving = serve::spawn(
        home,
        shared.session.clone(),
        cfg.nat,
        cfg.serve,
        cfg.out,
        shared.serving.clone(),
    );
    let mut stdin = stdin_lines(terminal);
    let mut calls: u32 = 0;
    let mut stop = std::pin::pin!(parley_net::shutdown_signal());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some((peer, conn)) = session.direct.recv() => {
                let tx = lock(&shared.route).clone();
                match tx {
                    Some(tx) => { let _ = tx.send((peer, conn)).await; }
                    None => conn.close(1u32.into(), b"not in a call"),
                }
            }
            Some((peer, conn)) = session.files.recv() => {
                tokio::spawn(receiver.clone().connection(peer, conn));
            }
            Some(call) = session.incoming.recv() => {
                if transfer::offer::file_of(&call).is_some() {
                    tokio::spawn(receiver.clone().offer(call));
                    continue;
                }
                // Unverified until the answerer checks the offer: only for `status`.
                let parley_proto::call::signal::CallSignal::Incoming { offer, .. } = &call.signal else {
                    continue;
                };
                let (peer, name) = (offer.offer.caller, offer.offer.caller_name.clone());
                let control = Arc::new(CallControl::default());
                let Some(rx) = claim(&shared, |_| Current::new(peer, name, "incoming", control.clone())) else {
                    tokio::spawn(refuse_busy(shared.session.identity.clone(), call));
                    continue;
                };
                calls += 1;
                let (answerer, shared, candidates, n) = (answerer.clone(), shared.clone(), shared.session.candidates(), calls);
                let (out, slot) = monitor(&shared, answerer.out, None);
                tokio::spawn(async move {
                    if let Err(e) = answerer.handle(out, call, n, candidates, rx, control).await {
                        out.error(&format!("call failed: {e:#}"), EXIT_FAILED);
                    }
                    release(&shared);
                    lock(slot).take();
                });
            }
            Some(cmd) = commands.recv() => handle(cmd, &shared, cfg.out),
            Some(line) = stdin.recv() => {
                let yes = line.trim().eq_ignore_ascii_case("y") || line.trim().eq_ignore_ascii_case("yes");
                if !give_answer(&shared.pending, yes) && !line.trim().is_empty() {
                    eprintln!("(no call is ringing)");
                }
            }
        }
    }
    // Going offline: new commands find no client from here on.
    let _ = std::fs::remove_file(home.control_path());
    tracker.abort();
    if let Some(c) = lock(&shared.current).as_ref() {
        c.control.hang_up();
    }
    // Demote first: the clients attached to us are told (their connections close) and
    // move while we are still online.
    serving.quit().await;
    session.stop().await;
    Ok(())
}

/// Marks the client busy with a new call and routes direct connections to it; `None`
/// when a call is already in progress.
fn claim(
    shared: &Shared,
    current: impl FnOnce(()) -> Current,
) -> Option<mpsc::Receiver<(PeerId, Connection)>> {
    let mut slot = lock(&shared.current);
    if slot.is_some() {
        return None;
    }
    *slot = Some(current(()));
    let (tx, rx) = mpsc::channel(4);
    *lock(&shared.route) = Some(tx);
    Some(rx)
}

/// A printer for one call: its events also update the call's state and stats for
/// `status` (and the terminal UI), and go on to `requester` (a control connection) in
/// order, ending with the `{"exit": N}` sent through the returned slot.
fn monitor(
    shared: &Shared,
    base: Printer,
    requester: Option<mpsc::UnboundedSender<Value>>,
) -> (Printer, &'static ForwardSlot) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let (printer, slot) = match requester {
        Some(_) => base.forwarding_quietly(tx),
        None => base.forwarding(tx),
    };
    let current = shared.current.clone();
    tokio::spawn(async move {
        while let Some(v) = rx.recv().await {
            if let Some(c) = lock(&current).as_mut() {
                match v["event"].as_str() {
                    Some("ringing") => c.state = "ringing",
                    Some("connected") | Some("participant_joined") if c.state != "connected" => {
                        c.state = "connected";
                        c.since = Instant::now();
                    }
                    Some("stats") => c.stats = Some(v.clone()),
                    _ => {}
                }
            }
            if let Some(r) = &requester {
                let _ = r.send(v);
            }
        }
    });
    (printer, slot)
}

fn release(shared: &Shared) {
    *lock(&shared.route) = None;
    *lock(&shared.current) = None;
}

/// Lines typed at the terminal, read by one task for the whole run: a `y` typed after a
/// call stopped ringing is not kept for the next one. Only while the client is the
/// terminal's foreground job: a background job reading its terminal would be stopped
/// (SIGTTIN) — `parley online &` must keep running.
fn stdin_lines(terminal: bool) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(4);
    if terminal {
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                if !in_foreground() {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    continue;
                }
                match std::io::stdin().read_line(&mut line) {
                    Ok(n) if n > 0 => {
                        if tx.blocking_send(std::mem::take(&mut line)).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
    }
    rx
}

/// Whether this process is in the foreground process group of the terminal on stdin.
fn in_foreground() -> bool {
    rustix::termios::tcgetpgrp(std::io::stdin()).is_ok_and(|fg| fg == rustix::process::getpgrp())
}

/// One control request.
fn handle(cmd: Command, shared: &Shared, out: Printer) {
    let Command {
        request,
        reply,
        gone,
    } = cmd;
    let (out, slot) = match &request {
        // A call's events also feed `status`; the exit follows them in order.
        Request::Call { .. } | Request::Conference { .. } => {
            monitor(shared, out, Some(reply.clone()))
        }
        _ => out.forwarding_quietly(reply.clone()),
    };
    let finish = move |code: i32| {
        if let Some(tx) = lock(slot).take() {
            let _ = tx.send(json!({ "exit": code }));
        }
    };
    let current = |f: &dyn Fn(&Current)| -> bool {
        match lock(&shared.current).as_ref() {
            Some(c) => {
                f(c);
                true
            }
            None => false,
        }
    };
    match request {
        Request::Call {
            callee,
            contact,
            opts,
        } => {
            let callee: PeerId = match callee.parse() {
                Ok(id) => id,
                Err(e) => {
                    out.error(&format!("{callee:?}: {e}"), crate::output::EXIT_USAGE);
                    return finish(crate::output::EXIT_USAGE);
                }
            };
            let control = Arc::new(CallControl::default());
            let label = contact.clone().unwrap_or_else(|| callee.short());
            let Some(direct_in) = claim(shared, |_| {
                Current::new(callee, label.clone(), "outgoing", control.clone())
            }) else {
                return finish(already_in_a_call(out));
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let watcher = hang_up_when_gone(gone, control.clone());
                let code = match open_audio(&opts, out) {
                    None => EXIT_FAILED,
                    Some(audio) => {
                        let call = PlaceCall {
                            home: &shared.home,
                            callee,
                            contact,
                            audio,
                            opts: &opts,
                            out,
                            direct_in,
                            control,
                        };
                        match place::run(&shared.session, call).await {
                            Ok(outcome) => outcome.exit_code(),
                            Err(e) => {
                                let code = crate::output::exit_code_of(&e);
                                out.error(&format!("{e:#}"), code);
                                code
                            }
                        }
                    }
                };
                watcher.abort();
                release(&shared);
                finish(code);
            });
        }
        Request::Conference { callees, opts } => {
            let code = host_conference(shared, callees, opts, out, gone, finish);
            if let Some(code) = code {
                finish(code);
            }
        }
        Request::Add { callee, contact } => {
            let handle = lock(&shared.current)
                .as_ref()
                .and_then(|c| c.conference.clone());
            let Some(handle) = handle else {
                out.error(
                    "no conference in progress: start one with `parley call A B`",
                    EXIT_FAILED,
                );
                return finish(EXIT_FAILED);
            };
            let Ok(peer) = callee.parse::<PeerId>() else {
                out.error(&format!("{callee:?}: not an id"), crate::output::EXIT_USAGE);
                return finish(crate::output::EXIT_USAGE);
            };
            tokio::spawn(async move {
                let label = contact.clone().unwrap_or_else(|| peer.short());
                let code = match handle
                    .add(crate::conference::Invitee { peer, contact })
                    .await
                {
                    Ok(()) => {
                        out.event(
                            "added",
                            json!({"peer": peer.to_string()}),
                            format!("{label} joined"),
                        );
                        EXIT_OK
                    }
                    Err((code, why)) => {
                        out.error(&why, code);
                        code
                    }
                };
                finish(code);
            });
        }
        Request::Send { req } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut gone = gone;
                let cancel = async move {
                    let _ = gone.wait_for(|g| *g).await;
                };
                let name = shared.home.display_name();
                let table = Some(shared.transfers.clone());
                let sent = transfer::send::run(&shared.session, &name, req, table, out, cancel);
                finish(reported(sent.await, out));
            });
        }
        Request::Hangup => {
            let found = current(&|c| c.control.hang_up());
            report(out, found, "hangup", "hanging up");
            finish(if found { EXIT_OK } else { EXIT_FAILED });
        }
        Request::Mute | Request::Unmute => {
            let mute = matches!(request, Request::Mute);
            let found = current(&|c| c.control.set_muted(mute));
            let word = if mute { "muted" } else { "unmuted" };
            report(out, found, if mute { "mute" } else { "unmute" }, word);
            finish(if found { EXIT_OK } else { EXIT_FAILED });
        }
        Request::Answer | Request::Decline => {
            let accept = matches!(request, Request::Answer);
            let found = give_answer(&shared.pending, accept);
            let word = if accept { "answered" } else { "declined" };
            if found {
                out.event(word, json!({}), word);
            } else {
                out.error("no call is ringing", EXIT_FAILED);
            }
            finish(if found { EXIT_OK } else { EXIT_FAILED });
        }
        Request::Status => {
            status(shared, out);
            finish(EXIT_OK);
        }
        Request::Contacts => {
            let contacts = Contacts::load(&shared.home);
            let seen = presence::snapshot(&shared.presence);
            presence::print(&contacts, &seen, out);
            finish(EXIT_OK);
        }
        Request::Lookup { id } => {
            let session = shared.session.clone();
            tokio::spawn(async move {
                let looked = crate::lookup::through_session(&session, &id, out).await;
                finish(reported(looked, out));
            });
        }
    }
}

/// A command's exit code; an error is printed first.
fn reported(result: Result<i32>, out: Printer) -> i32 {
    result.unwrap_or_else(|e| {
        let code = crate::output::exit_code_of(&e);
        out.error(&format!("{e:#}"), code);
        code
    })
}

fn report(out: Printer, found: bool, event: &str, text: &str) {
    if found {
        out.event(event, json!({}), text);
    } else {
        out.error("no call in progress", EXIT_FAILED);
    }
}
