//! `parley call A B ...` (several callees: a conference this client hosts) and
//! `parley add C`. Every target is checked before anything goes on the network; the
//! conference runs in the running client when one is up (so `parley add`, `hangup` and
//! `mute` reach it), else in a short-lived session as a two-party `parley call` does.

use super::{Conference, Handle, Invitee, MAX_PEOPLE};
use crate::call::audio::{self, CallControl};
use crate::call::CallOptions;
use crate::contacts::Contacts;
use crate::control::{self, InstanceLock, Request};
use crate::home::Home;
use crate::output::{Failure, Printer};
use crate::session::ClientSession;
use anyhow::Result;
use parley_proto::keyfile;
use parley_proto::media::mix_roster::{Refusal, Roster};
use std::sync::Arc;

/// Resolves the targets (contact names or ids): distinct, not ourselves, at most
/// [`MAX_PEOPLE`] − 1 of them (the conference's own rules, `mix_roster::Roster`).
pub fn invitees(home: &Home, targets: &[String]) -> Result<Vec<Invitee>> {
    let me = keyfile::load(&home.key_path())?.peer_id();
    let contacts = Contacts::load(home);
    let mut rules = Roster::new(me, MAX_PEOPLE);
    let mut list: Vec<Invitee> = Vec::new();
    for t in targets {
        let (peer, contact) = contacts.resolve(t)?;
        match rules.invite(peer) {
            Ok(_) => list.push(Invitee { peer, contact }),
            Err(Refusal::AlreadyIn) => return Err(Failure::usage(format!("{t} is named twice"))),
            Err(why) => return Err(Failure::usage(why.to_string())),
        }
    }
    Ok(list)
}

/// `parley call A B ...`.
pub async fn call(
    home: &Home,
    targets: &[String],
    supernodes: &[String],
    mut opts: CallOptions,
    out: Printer,
) -> Result<i32> {
    let invitees = invitees(home, targets)?;
    audio::validate_files(&mut opts)?;
    if let Some(stream) = control::connect(home).await {
        let request = Request::Conference {
            callees: invitees
                .iter()
                .map(|i| (i.peer.to_string(), i.contact.clone()))
                .collect(),
            opts,
        };
        return control::remote(stream, &request, out).await;
    }
    audio::check_call_audio(&opts)?;
    let _lock = InstanceLock::acquire(home, "call")?;
    let identity = keyfile::load(&home.key_path())?;
    let (audio, _) = audio::open(&opts, opts.output.clone(), out)?;
    let (endpoint, nat) = crate::open_endpoint(&identity, home, supernodes, out).await?;
    let mut session = ClientSession::start(home, identity, endpoint, supernodes, nat, out).await?;
    let direct_in = std::mem::replace(&mut session.direct, tokio::sync::mpsc::channel(1).1);
    let (handle, requests) = Handle::new();
    let conference = Conference {
        session: session.handle(),
        home: home.clone(),
        opts,
        audio,
        out,
        direct_in,
        control: Arc::new(CallControl::default()),
    };
    let code = super::run(conference, invitees, handle, requests).await;
    session.stop().await;
    Ok(code)
}

/// `parley add TARGET`: only the running client hosts a conference one can add to.
pub async fn add(home: &Home, target: &str, out: Printer) -> Result<i32> {
    let (peer, contact) = Contacts::load(home).resolve(target)?;
    let request = Request::Add {
        callee: peer.to_string(),
        contact,
    };
    crate::to_running(home, request, out).await
}
