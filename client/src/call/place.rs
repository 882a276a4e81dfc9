//! `parley call ID`: look the callee up, place the call through our supernode, and run
//! it once answered.

use super::stats::CallStats;
use super::{talk, CallOptions, Connected};
use crate::home::Home;
use crate::output::Printer;
use crate::session::ClientSession;
use anyhow::{anyhow, bail, Context, Result};
use parley_net::clock::{mono, mono_until, now};
use parley_net::{read_frame, send_frame};
use parley_proto::call::session::{CallEvent, CallerSession};
use parley_proto::call::signal::CallSignal;
use parley_proto::messages::{ClientToSupernode, SupernodeToClient};
use parley_proto::relay::CallId;
use parley_proto::PeerId;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How the call ended, for the exit code.
pub enum CallOutcome {
    /// Talked, then hung up.
    Completed(Box<CallStats>),
    /// Never connected (rejected, busy, no answer, unreachable).
    NotConnected,
    /// The callee is not online.
    NotFound,
}

pub async fn run(
    session: &mut ClientSession,
    home: &Home,
    callee: &str,
    opts: &CallOptions,
    out: Printer,
) -> Result<CallOutcome> {
    let dialed_at = Instant::now();
    let callee: PeerId = callee.parse().map_err(|e| anyhow!("{callee:?}: {e}"))?;
    if callee == session.identity.peer_id() {
        bail!("that is your own id: you cannot call yourself");
    }
    // Audio first: a missing device is an error before anyone's phone rings.
    let (source, sink) = opts.open_audio(opts.output.clone())?;
    let link = session.attached(Duration::from_secs(15)).await?;
    let record = match link.ask(&ClientToSupernode::Lookup(callee)).await? {
        SupernodeToClient::Found(signed) => signed
            .verify(now())
            .map_err(|e| anyhow!("the callee's presence record is invalid: {e}"))?
            .clone(),
        SupernodeToClient::NotFound => {
            eprintln!("not found: nobody with id {callee} is online");
            return Ok(CallOutcome::NotFound);
        }
        other => bail!("lookup failed: {other:?}"),
    };
    let label = if record.display_name.is_empty() {
        callee.short()
    } else {
        parley_proto::text::printable(&record.display_name)
    };
    out.event(
        "calling",
        json!({"callee": callee.to_string(), "name": record.display_name}),
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
                    out.event(
                        "call_failed",
                        json!({"reason": reason.to_string()}),
                        format!("call ended: {reason}"),
                    );
                    return Ok(CallOutcome::NotConnected);
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
        audio: (source, sink),
        // The caller's endpoint takes the callee's punch-through dial too.
        direct_in: std::mem::replace(&mut session.direct, mpsc::channel(1).1),
        dialed_at,
        over_tcp: session.over_tcp,
    };
    let stats = talk(connected, opts, out).await?;
    Ok(CallOutcome::Completed(Box::new(stats)))
}
