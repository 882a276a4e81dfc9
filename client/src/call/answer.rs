//! Incoming calls while `parley online` runs: ring, answer (automatically with
//! `--auto-answer` or `--echo`, else when the user says so — `y` on the terminal, or
//! `parley answer` / `parley decline` from anywhere), and run the call. A second call
//! while one is in progress gets "busy" (see `crate::online`).
//!
//! The question is asked only while the call rings: once the caller gives up, the call
//! is "missed" and a later `y` answers nothing (see [`PendingAnswer`]).

use super::audio::{self, CallControl};
use super::{talk, CallOptions, Connected};
use crate::contacts::Contacts;
use crate::history::{self, Direction, Entry};
use crate::home::Home;
use crate::output::Printer;
use crate::session::{IncomingCall, SessionHandle};
use anyhow::{Context, Result};
use parley_net::clock::now;
use parley_net::{read_frame, send_frame};
use parley_proto::call::session::{busy_signal, CallEvent, CalleeSession};
use parley_proto::call::signal::CallSignal;
use parley_proto::presence::CandidateAddr;
use parley_proto::{Identity, PeerId};
use quinn::Connection;
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The longest an unanswered call rings here, whatever the caller's ring timeout.
pub const MAX_RING: Duration = Duration::from_secs(120);

/// Where the user's answer to the call ringing now goes: `y`/`n` on the terminal,
/// `parley answer`/`decline`, the terminal UI. Empty when nothing rings.
pub type PendingAnswer = Arc<Mutex<Option<oneshot::Sender<bool>>>>;

/// Gives the ringing call an answer; false when nothing rings.
pub fn give_answer(pending: &PendingAnswer, accept: bool) -> bool {
    let tx = pending.lock().unwrap_or_else(|p| p.into_inner()).take();
    tx.is_some_and(|tx| tx.send(accept).is_ok())
}

/// How incoming calls are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerMode {
    /// Ask the user.
    Ask,
    /// Answer every call (bots, tests).
    Auto,
    /// Answer every call and play the caller's audio back (`--echo`).
    Echo,
}

/// What answering needs from the running client.
pub struct Answerer {
    pub session: SessionHandle,
    pub home: Home,
    pub opts: CallOptions,
    pub mode: AnswerMode,
    pub out: Printer,
    pub pending: PendingAnswer,
    /// Whether a person at a terminal can type `y`.
    pub terminal: bool,
}

/// `heard.wav` for the first call, `heard-2.wav` for the second, and so on.
pub fn numbered_output(base: Option<&PathBuf>, n: u32) -> Option<PathBuf> {
    let base = base?;
    if n <= 1 {
        return Some(base.clone());
    }
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = base
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    Some(base.with_file_name(format!("{stem}-{n}{ext}")))
}

/// How long, after ringing, we wait for the caller's supernode to send the call's relay
/// grants (it grants only once we ring) before going on without a relay.
const GRANT_WAIT: Duration = Duration::from_secs(5);

/// Tells a second caller we are busy (signed, so nobody else can say it for us).
pub async fn refuse_busy(identity: Identity, mut call: IncomingCall) {
    if let CallSignal::Incoming { offer, .. } = &call.signal {
        if let Some(busy) = busy_signal(&identity, offer, now()) {
            let _ = send_frame(&mut call.send, &busy).await;
        }
    }
    let _ = call.send.finish();
}

/// How the ringing ended.
enum Decision {
    Accept,
    Decline,
    Missed,
}

impl Answerer {
    /// Handles one incoming call to its end, telling `out` what happens.
    pub async fn handle(
        &self,
        out: Printer,
        call: IncomingCall,
        call_number: u32,
        candidates: Vec<CandidateAddr>,
        direct_in: mpsc::Receiver<(PeerId, Connection)>,
        control: Arc<CallControl>,
    ) -> Result<()> {
        let arrived = Instant::now();
        let started_ms = history::now_ms();
        let IncomingCall {
            mut send,
            mut recv,
            signal,
        } = call;
        let CallSignal::Incoming { offer, relays } = signal else {
            return Ok(());
        };
        let identity = &self.session.identity;
        let mut session = match CalleeSession::incoming(identity, &offer, relays, now()) {
            Ok(s) => s,
            Err(why) => {
                out.event(
                    "call_refused",
                    json!({"reason": why}),
                    format!("refused an incoming call: {why}"),
                );
                // Nothing is signed for an offer we refuse: the caller's chain just ends.
                let _ = send.finish();
                return Ok(());
            }
        };
        // File transfers slow down while it rings (see `place`).
        let _pacing = crate::transfer::pace::CallPacing::start();
        let (caller, claimed) = session.caller();
        let claimed = claimed.to_string();
        let contacts = Contacts::load(&self.home);
        let contact = contacts.name_of(&caller).map(str::to_string);
        if let Some(warning) = contacts.impostor_warning(&caller, &claimed) {
            out.warning(&warning);
        }
        let label = contact.clone().unwrap_or_else(|| {
            if claimed.is_empty() {
                caller.short()
            } else {
                let shown = parley_proto::text::printable(&claimed);
                format!("{shown} (not a contact)")
            }
        });
        let mut entry = Entry {
            peer: caller.to_string(),
            display_name: contact.clone().unwrap_or_else(|| claimed.clone()),
            started_ms,
            direction: Direction::Incoming,
            duration_s: 0.0,
            outcome: String::new(),
            path: "none".into(),
        };
        out.event(
            "incoming",
            json!({"caller": caller.to_string(), "display_name": claimed, "contact": contact}),
            format!("incoming call from {label} ({caller})"),
        );
        while let Some(s) = session.poll_signal() {
            send_frame(&mut send, &s).await?;
        }
        // We rang: the caller's supernode now sends the relay grants (or the caller
        // gives up first).
        let waited = tokio::time::timeout(GRANT_WAIT, read_frame::<CallSignal>(&mut recv)).await;
        match waited.map(|r| r.map(|signal| session.handle_signal(signal))) {
            Ok(Ok(true)) => {}
            Ok(_) => {
                self.end_unconnected(
                    out,
                    &mut entry,
                    "missed",
                    None,
                    format!("missed call from {label}"),
                );
                return Ok(());
            }
            Err(_) => tracing::warn!("no relay grant arrived; answering without a relay"),
        }
        // Audio before answering; a missing device is no reason to decline (see
        // `audio::open`), but an unwritable --output is.
        let audio = if self.mode == AnswerMode::Echo {
            Ok(audio::echo_pair())
        } else {
            let output = numbered_output(self.opts.output.as_ref(), call_number);
            audio::open(&self.opts, output, out).map(|(io, _)| io)
        };
        let decision = match &audio {
            Err(e) => {
                out.error(&format!("cannot answer: {e:#}"), crate::output::EXIT_FAILED);
                Decision::Decline
            }
            Ok(_) if self.mode != AnswerMode::Ask => Decision::Accept,
            Ok(_) => {
                self.ask(out, &mut recv, &mut session, &control, &label)
                    .await
            }
        };
        let audio = match (decision, audio) {
            (Decision::Accept, Ok(audio)) => audio,
            (Decision::Missed, _) => {
                self.end_unconnected(
                    out,
                    &mut entry,
                    "missed",
                    None,
                    format!("missed call from {label}"),
                );
                return Ok(());
            }
            _ => {
                session.reject();
                while let Some(s) = session.poll_signal() {
                    let _ = send_frame(&mut send, &s).await;
                }
                let _ = send.finish();
                let text = format!("declined the call from {label}");
                self.end_unconnected(out, &mut entry, "declined", None, text);
                return Ok(());
            }
        };
        session.accept(identity, candidates);
        while let Some(s) = session.poll_signal() {
            send_frame(&mut send, &s).await?;
        }
        let _ = send.finish();
        let (code, peer_candidates, relays) = match session.poll_event() {
            Some(CallEvent::Connected {
                safety_code,
                peer_candidates,
                relays,
            }) => (safety_code, peer_candidates, relays),
            Some(CallEvent::Ended(reason)) => {
                let text = format!("call ended: {reason}");
                self.end_unconnected(out, &mut entry, "failed", Some(reason.to_string()), text);
                return Ok(());
            }
            _ => return Ok(()),
        };
        let keys = session.take_keys().context("accepted without keys")?;
        out.event(
            "connected",
            json!({"peer": caller.to_string(), "safety_code": code}),
            format!("connected to {label}. Safety code: {code}"),
        );
        let connected = Connected {
            endpoint: self.session.endpoint.clone(),
            identity: identity.clone(),
            peer: caller,
            peer_candidates,
            relays,
            keys,
            audio,
            direct_in,
            dialed_at: arrived,
            over_tcp: self.session.over_tcp,
            control,
            contacts,
        };
        let result = talk(connected, &self.opts, out).await;
        match &result {
            Ok(stats) => {
                let mut fields = stats.to_json();
                fields["outcome"] = json!(stats.outcome());
                fields["peer"] = json!(caller.to_string());
                out.event(
                    "call_end",
                    fields,
                    format!("call ended ({}): {}", stats.ended_by, stats.status_line()),
                );
                entry.outcome = stats.outcome().into();
                entry.duration_s = (stats.duration.as_secs_f64() * 10.0).round() / 10.0;
                entry.path = stats.path().map(|p| p.name()).unwrap_or("none").into();
            }
            Err(e) => {
                out.event(
                    "call_end",
                    json!({"outcome": "failed", "reason": format!("{e:#}"), "peer": caller.to_string()}),
                    "",
                );
                entry.outcome = "failed".into();
            }
        }
        history::record(&self.home, &entry);
        result.map(|_| ())
    }

    /// Asks the user while the call rings; the question goes away with the call.
    /// Ends an incoming call that never carried audio: one `call_end` (with `reason` when
    /// there is one) and its history line.
    fn end_unconnected(
        &self,
        out: Printer,
        entry: &mut Entry,
        outcome: &str,
        reason: Option<String>,
        text: String,
    ) {
        let mut fields = json!({"outcome": outcome, "peer": entry.peer});
        if let Some(reason) = reason {
            fields["reason"] = json!(reason);
        }
        out.event("call_end", fields, text);
        entry.outcome = outcome.into();
        history::record(&self.home, entry);
    }

    async fn ask(
        &self,
        out: Printer,
        recv: &mut quinn::RecvStream,
        session: &mut CalleeSession,
        control: &CallControl,
        label: &str,
    ) -> Decision {
        let (tx, rx) = oneshot::channel();
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let how = if self.terminal {
            "answer? [y/N] (or `parley answer` / `parley decline`)"
        } else {
            "answer with `parley answer`, or `parley decline`"
        };
        out.event(
            "prompt",
            json!({"answer_with": ["parley answer", "parley decline"]}),
            format!("{label} is calling: {how}"),
        );
        let decision = tokio::select! {
            answer = rx => match answer {
                Ok(true) => Decision::Accept,
                _ => Decision::Decline,
            },
            _ = control.wait_hangup() => Decision::Decline,
            _ = tokio::time::sleep(MAX_RING) => Decision::Missed,
            // The caller gives up (Cancel) or goes away (the stream ends).
            frame = read_frame::<CallSignal>(recv) => {
                match frame {
                    Ok(signal) => {
                        session.handle_signal(signal);
                    }
                    Err(_) => session.handle_lost(),
                }
                Decision::Missed
            }
        };
        // Nothing rings any more: a late `y` answers nothing.
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        decision
    }
}
