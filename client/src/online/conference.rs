//! Hosting a conference from the running client (`parley call A B…`), and the pieces
//! it shares with a two-party call placed through the control socket.

use super::{claim, release, Current, Shared};
use crate::call::audio::{self, CallControl};
use crate::call::CallOptions;
use crate::output::{Printer, EXIT_FAILED};
use parley_proto::PeerId;
use std::sync::Arc;

/// Starts hosting a conference for a control request; `Some(exit code)` when it could
/// not start (the request is finished by the caller), `None` when `finish` will be
/// called at its end.
pub(super) fn host_conference(
    shared: &Shared,
    callees: Vec<(String, Option<String>)>,
    opts: CallOptions,
    out: Printer,
    gone: tokio::sync::watch::Receiver<bool>,
    finish: impl FnOnce(i32) + Send + 'static,
) -> Option<i32> {
    use crate::conference::{self, Conference, Handle, Invitee};
    let mut invitees = Vec::new();
    for (id, contact) in callees {
        match id.parse::<PeerId>() {
            Ok(peer) => invitees.push(Invitee { peer, contact }),
            Err(e) => {
                out.error(&format!("{id:?}: {e}"), crate::output::EXIT_USAGE);
                return Some(crate::output::EXIT_USAGE);
            }
        }
    }
    let Some(first) = invitees.first().cloned() else {
        out.error(
            "a conference needs someone to call",
            crate::output::EXIT_USAGE,
        );
        return Some(crate::output::EXIT_USAGE);
    };
    let control = Arc::new(CallControl::default());
    let (handle, requests) = Handle::new();
    let claimed = claim(shared, |_| {
        let mut c = Current::new(first.peer, "conference".into(), "outgoing", control.clone());
        c.conference = Some(handle.clone());
        c
    });
    let Some(direct_in) = claimed else {
        return Some(already_in_a_call(out));
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let watcher = hang_up_when_gone(gone, control.clone());
        let code = match open_audio(&opts, out) {
            None => EXIT_FAILED,
            Some(audio) => {
                let c = Conference {
                    session: shared.session.clone(),
                    home: shared.home.clone(),
                    opts,
                    audio,
                    out,
                    direct_in,
                    control,
                };
                conference::run(c, invitees, handle, requests).await
            }
        };
        watcher.abort();
        release(&shared);
        finish(code);
    });
    None
}

/// The refusal of a second call placed while one is in progress; its exit code.
pub(super) fn already_in_a_call(out: Printer) -> i32 {
    out.error(
        "already in a call: hang up first (`parley hangup`)",
        EXIT_FAILED,
    );
    EXIT_FAILED
}

/// Hangs the call up when the command that asked for it goes away.
pub(super) fn hang_up_when_gone(
    mut gone: tokio::sync::watch::Receiver<bool>,
    control: Arc<CallControl>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = gone.wait_for(|g| *g).await;
        control.hang_up();
    })
}

/// A requested call's audio (`None` once the error is printed).
pub(super) fn open_audio(opts: &CallOptions, out: Printer) -> Option<crate::call::AudioIo> {
    let opened = audio::open(opts, opts.output.clone(), out)
        .and_then(|(io, fb)| audio::check_fallbacks(fb).map(|_| io));
    opened
        .map_err(|e| out.error(&format!("{e:#}"), EXIT_FAILED))
        .ok()
}
