//! `parley call ID`: look the callee up, place the call through our supernode, and run
//! it once answered. Runs in a short-lived session, or inside the running client when
//! one is up for the identity (see `crate::online`).

use super::audio::CallControl;
use super::stats::CallStats;
use super::{talk, AudioIo, CallOptions, Connected};
use crate::history::{self, Direction, Entry};
use crate::home::Home;
use crate::output::{Printer, EXIT_FAILED, EXIT_NOT_CONNECTED, EXIT_NOT_FOUND, EXIT_OK};
use crate::session::SessionHandle;
use anyhow::{anyhow, bail, Context, Result};
use parley_net::clock::{mono, mono_until, now};
use parley_net::{read_frame, send_frame};
use parley_proto::call::session::{CallEvent, CallerSession, EndReason};
use parley_proto::call::signal::CallSignal;
use parley_proto::messages::{ClientToSupernode, SupernodeToClient};
use parley_proto::relay::CallId;
use parley_proto::PeerId;
use quinn::Connection;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How the call ended, for the exit code.
pub enum CallOutcome {
    /// Talked, then hung up (or lost the connection: [`CallStats::dropped`]).
    Completed(Box<CallStats>),
    /// Never connected.
    NotConnected(EndReason),
    /// The callee is not online.
    NotFound,
}

impl CallOutcome {
    /// The exit code of `parley call` (see docs/user-guide.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            // Connected, then the connection was lost: a failure.
            CallOutcome::Completed(stats) if stats.dropped => EXIT_FAILED,
            CallOutcome::Completed(_) => EXIT_OK,
            CallOutcome::NotFound => EXIT_NOT_FOUND,
            CallOutcome::NotConnected(
                EndReason::Rejected | EndReason::Busy | EndReason::RingTimeout,
            ) => EXIT_NOT_CONNECTED,
            // We hung up ourselves while it rang: not an error.
            CallOutcome::NotConnected(EndReason::Cancelled) => EXIT_OK,
            CallOutcome::NotConnected(_) => EXIT_FAILED,
        }
    }
}

/// The `outcome` word of a call that never connected (history and `call_end`).
pub fn outcome_word(reason: &EndReason) -> &'static str {
    match reason {
        EndReason::Rejected => "rejected",
        EndReason::Busy => "busy",
        EndReason::Cancelled => "cancelled",
        EndReason::RingTimeout => "no_answer",
        EndReason::Unreachable(_) => "unreachable",
        EndReason::Failed(_) => "failed",
    }
}

/// What a call needs besides the session.
pub struct PlaceCall<'a> {
    pub home: &'a Home,
    pub callee: PeerId,
    /// The contact name we call them by, if any.
    pub contact: Option<String>,
    pub audio: AudioIo,
    pub opts: &'a CallOptions,
    pub out: Printer,
    /// Direct connections our endpoint accepts (the callee's punch-through dial).
    pub direct_in: mpsc::Receiver<(PeerId, Connection)>,
    pub control: Arc<CallControl>,
}

/// Places the call and runs it to its end; prints `call_end` and records the history.
pub async fn run(session: &SessionHandle, p: PlaceCall<'_>) -> Result<CallOutcome> {
    let started_ms = history::now_ms();
    let (callee, home, out) = (p.callee, p.home, p.out);
    let mut name = p.contact.clone().unwrap_or_default();
    let result = place(session, p, &mut name).await;
    let (outcome, duration_s, path) = match &result {
        Ok(CallOutcome::Completed(stats)) => {
            let mut fields = stats.to_json();
            fields["outcome"] = json!(stats.outcome());
            fields["peer"] = json!(callee.to_string());
            out.event(
                "call_end",
                fields,
                format!("call ended ({}): {}", stats.ended_by, stats.status_line()),
            );
            let path = stats.path().map(|p| p.name()).unwrap_or("none");
            (stats.outcome(), stats.duration.as_secs_f64(), path)
        }
        Ok(CallOutcome::NotConnected(reason)) => {
            out.event(
                "call_end",
                json!({"outcome": outcome_word(reason), "reason": reason.to_string(), "peer": callee.to_string()}),
                format!("call ended: {reason}"),
            );
            (outcome_word(reason), 0.0, "none")
        }
        Ok(CallOutcome::NotFound) => ("unreachable", 0.0, "none"),
        Err(e) => {
            // `call_end` always ends a call; the error itself is printed once, by main.
            out.event(
                "call_end",
                json!({"outcome": "failed", "reason": format!("{e:#}"), "peer": callee.to_string()}),
                "",
            );
            ("failed", 0.0, "none")
        }
    };
    history::record(
        home,
        &Entry {
            peer: callee.to_string(),
            display_name: name,
            started_ms,
            direction: Direction::Outgoing,
            duration_s: (duration_s * 10.0).round() / 10.0,
            outcome: outcome.to_string(),
            path: path.to_string(),
        },
    );
    result
}

async fn place(
    session: &SessionHandle,
    p: PlaceCall<'_>,
    name: &mut String,
) -> Result<CallOutcome> {
    let dialed_at = Instant::now();
    let PlaceCall {
        home,
        callee,
        contact,
        audio,
        opts,
        out,
        direct_in,
        control,
    } = p;
    if callee == session.identity.peer_id() {
        bail!("that is your own id: you cannot call yourself");
    }
    // File transfers slow down from the dial on, so that a queue they built has drained
    // by the time the call's media starts (the media loop then paces them by its RTT).
    let _pacing = crate::transfer::pace::CallPacing::start();
    // The first attachment that answers places the call: one of ours may be a
    // supernode that died and is not noticed yet.
    let lookup = ClientToSupernode::Lookup(callee);
    let (link, reply) = tokio::select! {
        asked = session.ask(&lookup, Duration::from_secs(15)) => asked?,
        _ = control.wait_hangup() => return Ok(CallOutcome::NotConnected(EndReason::Cancelled)),
    };
    let record = match reply {
        SupernodeToClient::Found(signed) => signed
            .verify(now())
            .map_err(|e| anyhow!("the callee's presence record is invalid: {e}"))?
            .clone(),
        SupernodeToClient::NotFound => {
            let who = contact.clone().unwrap_or_else(|| callee.to_string());
            out.error(
                &format!("not found: {who} is not online (id {callee})"),
                EXIT_NOT_FOUND,
            );
            return Ok(CallOutcome::NotFound);
        }
        other => bail!("lookup failed: {other:?}"),
    };
    if name.is_empty() {
        *name = record.display_name.clone();
    }
    let label = match (&contact, record.display_name.is_empty()) {
        (Some(c), _) => c.clone(),
        (None, false) => parley_proto::text::printable(&record.display_name),
        (None, true) => callee.short(),
    };
    out.event(
        "calling",
        json!({"callee": callee.to_string(), "display_name": record.display_name, "contact": contact}),
        format!("calling {label}…"),
    );

    let mut call = CallerSession::start(
        &session.identity,
        &home.display_name(),
        callee,
        record.supernodes.clone(),
        session.candidates(),
        CallId::random(),
        now(),
        mono(),
        opts.ring_timeout,
    )?
    // Relay tokens count only if our own supernode signed them.
    .with_grant_issuer(link.id);
    let (mut send, mut recv) = link
        .conn
        .open_bi()
        .await
        .context("opening the signalling stream")?;
    let mut stop = std::pin::pin!(parley_net::shutdown_signal());
    let waiter = control.clone();
    let mut hangup = std::pin::pin!(waiter.wait_hangup());
    let connected = loop {
        while let Some(signal) = call.poll_signal() {
            // A failed send shows up as a lost chain on the next read.
            let _ = send_frame(&mut send, &signal).await;
        }
        if let Some(event) = call.poll_event() {
            match event {
                CallEvent::Ringing => {
                    out.event("ringing", json!({}), format!("{label}'s phone is ringing"))
                }
                CallEvent::Connected {
                    peer_candidates,
                    relays,
                    safety_code,
                } => break (peer_candidates, relays, safety_code),
                CallEvent::Ended(reason) => {
                    let _ = send.finish();
                    return Ok(CallOutcome::NotConnected(reason));
                }
            }
            continue;
        }
        let wake = call
            .poll_timeout()
            .map(mono_until)
            .unwrap_or(Duration::from_secs(60));
        tokio::select! {
            _ = &mut stop => call.cancel(),
            _ = &mut hangup => call.cancel(),
            _ = tokio::time::sleep(wake) => call.handle_timeout(mono()),
            frame = read_frame::<CallSignal>(&mut recv) => match frame {
                Ok(signal) => call.handle_signal(now(), signal),
                Err(e) => call.handle_lost(&format!("signalling lost: {e}")),
            },
        }
    };
    let _ = send.finish();
    let (peer_candidates, relays, safety_code) = connected;
    let keys = call.take_keys().context("connected without keys")?;
    out.event(
        "connected",
        json!({
            "peer": callee.to_string(),
            "safety_code": safety_code,
            "relays": relays.iter().map(|g| g.relay.addr.to_string()).collect::<Vec<_>>(),
        }),
        format!("connected to {label}. Safety code: {safety_code} (compare it with {label})"),
    );
    let connected = Connected {
        endpoint: session.endpoint.clone(),
        identity: session.identity.clone(),
        peer: callee,
        peer_candidates,
        relays,
        keys,
        audio,
        direct_in,
        dialed_at,
        over_tcp: session.over_tcp,
        control,
        contacts: crate::contacts::Contacts::load(home),
    };
    let stats = talk(connected, opts, out).await?;
    Ok(CallOutcome::Completed(Box::new(stats)))
}
