//! A call from the client's side: signalling (`place`, `answer`), the media paths
//! (`paths`), the audio/media loop (`media`) and its statistics (`stats`).

pub mod answer;
pub mod audio;
pub mod media;
pub mod media_paths;
pub mod paths;
pub mod place;
pub mod stats;

use crate::output::Printer;
use parley_proto::call::e2e::SessionKeys;
use parley_proto::call::media::MediaCrypto;
use parley_proto::call::signal::RelayGrant;
use parley_proto::presence::CandidateAddr;
use parley_proto::{Identity, PeerId};
use quinn::{Connection, Endpoint};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Which media paths a call may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathPolicy {
    /// Direct when it connects, else the relay.
    Any,
    /// Only the relay (diagnostics and tests).
    RelayOnly,
    /// Only a direct connection (diagnostics and tests).
    DirectOnly,
}

/// Everything about a call that the user chooses. It travels over the control socket
/// when a `parley call` runs through the running client.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallOptions {
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub input_device: Option<String>,
    pub output_device: Option<String>,
    pub bitrate: i32,
    pub paths: PathPolicy,
    pub duration: Option<Duration>,
    pub ring_timeout: Duration,
}

impl CallOptions {
    /// Defaults, no files, no devices named.
    #[cfg(test)]
    pub fn for_test() -> CallOptions {
        CallOptions {
            input: None,
            output: None,
            input_device: None,
            output_device: None,
            bitrate: 32_000,
            paths: PathPolicy::Any,
            duration: None,
            ring_timeout: Duration::from_secs(30),
        }
    }
}

/// A call's audio input and output.
pub type AudioIo = (
    Box<dyn parley_audio::FrameSource>,
    Box<dyn parley_audio::FrameSink>,
);

/// An answered call, on either side: what it takes to bring up the paths and talk.
pub struct Connected {
    pub endpoint: Endpoint,
    pub identity: Identity,
    pub peer: PeerId,
    pub peer_candidates: Vec<CandidateAddr>,
    pub relays: Vec<RelayGrant>,
    pub keys: SessionKeys,
    pub audio: AudioIo,
    /// Direct connections our endpoint accepts (the peer's punch-through dial).
    pub direct_in: mpsc::Receiver<(PeerId, Connection)>,
    /// When the user dialed, or the call arrived: setup time counts from here.
    pub dialed_at: Instant,
    /// Our datagrams go over TCP (UDP blocked here).
    pub over_tcp: bool,
    /// Mute and hang-up from outside the call.
    pub control: Arc<audio::CallControl>,
    /// Our contacts, to name the members a conference host lists.
    pub contacts: crate::contacts::Contacts,
}

/// Runs a connected call to its end: paths up, media until someone hangs up.
pub async fn talk(
    call: Connected,
    opts: &CallOptions,
    out: Printer,
) -> anyhow::Result<stats::CallStats> {
    let control = call.control.clone();
    let ends = (call.identity.peer_id(), call.peer);
    let (events_tx, events) = mpsc::channel(8);
    // Through the TCP tunnel a relay is dialed at the TCP fallback its grant names; a
    // relay without one is unreachable from here (its path fails, saying so).
    let relays = if call.over_tcp {
        call.relays
            .into_iter()
            .map(|mut g| {
                g.relay.addr = g.tcp.unwrap_or(SocketAddr::new(g.relay.addr.ip(), 0));
                g
            })
            .collect()
    } else {
        call.relays
    };
    let paths_tried = paths::establish(
        paths::PathSetup {
            endpoint: call.endpoint,
            identity: call.identity,
            peer: call.peer,
            peer_candidates: call.peer_candidates,
            relays,
            policy: opts.paths,
            over_tcp: call.over_tcp,
        },
        call.direct_in,
        events_tx,
    );
    let (source, sink) = audio::controlled(call.audio, &call.control);
    let over_tcp = call.over_tcp;
    let mut stats = media::run(
        media::MediaParams {
            crypto: MediaCrypto::new(call.keys),
            source,
            sink,
            bitrate: opts.bitrate,
            duration: opts.duration,
            dialed_at: call.dialed_at,
            paths_tried,
            hold_input_until_path: opts.input.is_some(),
            roster: control.roster_updates(),
            ends,
            contacts: call.contacts,
            out,
        },
        events,
    )
    .await?;
    stats.transport = if over_tcp { "tcp" } else { "udp" };
    if control.hung_up() {
        // `hangup` ends the input (see `audio::Controlled`); say what really happened.
        stats.ended_by = "local hang-up".to_string();
    }
    Ok(stats)
}
