//! Incoming calls while `parley online` runs: ring, answer (automatically with
//! `--auto-answer`, else by asking), and run the call. A second call while one is in
//! progress gets "busy".

use super::{talk, CallOptions, Connected};
use crate::output::Printer;
use crate::session::IncomingCall;
use anyhow::{Context, Result};
use parley_net::clock::now;
use parley_net::{read_frame, send_frame};
use parley_proto::call::session::{busy_signal, CallEvent, CalleeSession};
use parley_proto::call::signal::CallSignal;
use parley_proto::presence::CandidateAddr;
use parley_proto::{Identity, PeerId};
use quinn::{Connection, Endpoint};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

/// What answering needs from the session.
pub struct Answerer {
    pub identity: Identity,
    pub endpoint: Endpoint,
    pub opts: CallOptions,
    pub auto_answer: bool,
    pub out: Printer,
    /// Our datagrams go over TCP (UDP blocked here).
    pub over_tcp: bool,
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

impl Answerer {
    /// Handles one incoming call to its end.
    pub async fn handle(
        &self,
        call: IncomingCall,
        call_number: u32,
        candidates: Vec<CandidateAddr>,
        direct_in: mpsc::Receiver<(PeerId, Connection)>,
    ) -> Result<()> {
        let arrived = Instant::now();
        let IncomingCall {
            mut send,
            mut recv,
            signal,
        } = call;
        let CallSignal::Incoming { offer, relays } = signal else {
            return Ok(());
        };
        let mut session = match CalleeSession::incoming(&self.identity, &offer, relays, now()) {
            Ok(s) => s,
            Err(why) => {
                self.out.event(
                    "call_refused",
                    json!({"reason": why}),
                    format!("refused an incoming call: {why}"),
                );
                // Nothing is signed for an offer we refuse: the caller's chain just ends.
                let _ = send.finish();
                return Ok(());
            }
        };
        let (caller, name) = session.caller();
        let name = parley_proto::text::printable(name);
        self.out.event(
            "incoming",
            json!({"caller": caller.to_string(), "name": name}),
            format!(
                "incoming call from {} ({caller})",
                if name.is_empty() { "someone" } else { &name }
            ),
        );
        while let Some(s) = session.poll_signal() {
            send_frame(&mut send, &s).await?;
        }
        // We rang: the caller's supernode now sends the relay grants (or the caller
        // gives up first).
        let waited = tokio::time::timeout(GRANT_WAIT, read_frame::<CallSignal>(&mut recv)).await;
        match waited {
            Ok(Ok(signal)) => {
                if !session.handle_signal(signal) {
                    self.out.event(
                        "call_ended",
                        json!({"reason": "cancelled"}),
                        "the caller gave up",
                    );
                    return Ok(());
                }
            }
            Ok(Err(_)) => {
                self.out.event(
                    "call_ended",
                    json!({"reason": "cancelled"}),
                    "the caller gave up",
                );
                return Ok(());
            }
            Err(_) => tracing::warn!("no relay grant arrived; answering without a relay"),
        }
        // Audio before answering: with no device and no file, decline with a clear error.
        let output = numbered_output(self.opts.output.as_ref(), call_number);
        let audio = self.opts.open_audio(output);
        if let Err(e) = &audio {
            eprintln!("error: cannot answer: {e}");
        }
        let accept = audio.is_ok()
            && if self.auto_answer {
                true
            } else {
                eprint!("answer? [y/N] ");
                let mut line = String::new();
                let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
                tokio::select! {
                    r = stdin.read_line(&mut line) => r.is_ok() && line.trim().eq_ignore_ascii_case("y"),
                    // The caller may give up while we think.
                    _ = read_frame::<CallSignal>(&mut recv) => false,
                }
            };
        let (source, sink) = match audio {
            Ok(pair) if accept => pair,
            _ => {
                session.reject();
                while let Some(s) = session.poll_signal() {
                    send_frame(&mut send, &s).await?;
                }
                let _ = send.finish();
                self.out.event(
                    "call_ended",
                    json!({"reason": "declined"}),
                    "declined the call",
                );
                return Ok(());
            }
        };
        session.accept(&self.identity, candidates);
        while let Some(s) = session.poll_signal() {
            send_frame(&mut send, &s).await?;
        }
        let _ = send.finish();
        let safety_code = match session.poll_event() {
            Some(CallEvent::Connected {
                safety_code,
                peer_candidates,
                relays,
            }) => (safety_code, peer_candidates, relays),
            Some(CallEvent::Ended(reason)) => {
                self.out.event(
                    "call_ended",
                    json!({"reason": reason.to_string()}),
                    format!("call ended: {reason}"),
                );
                return Ok(());
            }
            _ => return Ok(()),
        };
        let (code, peer_candidates, relays) = safety_code;
        let keys = session.take_keys().context("accepted without keys")?;
        self.out.event(
            "connected",
            json!({"safety_code": code}),
            format!("connected. Safety code: {code}"),
        );
        let connected = Connected {
            endpoint: self.endpoint.clone(),
            identity: self.identity.clone(),
            peer: caller,
            peer_candidates,
            relays,
            keys,
            audio: (source, sink),
            direct_in,
            dialed_at: arrived,
            over_tcp: self.over_tcp,
        };
        let stats = talk(connected, &self.opts, self.out).await?;
        self.out.event(
            "call_end",
            stats.to_json(),
            format!("call ended ({}): {}", stats.ended_by, stats.status_line()),
        );
        Ok(())
    }
}
