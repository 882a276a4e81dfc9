//! A call from the client's side: signalling (`place`, `answer`), the media paths
//! (`paths`), the audio/media loop (`media`) and its statistics (`stats`).

pub mod answer;
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
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Which media paths a call may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathPolicy {
    /// Direct when it connects, else the relay.
    Any,
    /// Only the relay (diagnostics and tests).
    RelayOnly,
    /// Only a direct connection (diagnostics and tests).
    DirectOnly,
}

/// Everything about a call that the user chooses.
#[derive(Clone, Debug)]
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
    /// Opens the audio input and output (a file or a device): errors surface before
    /// anyone's phone rings.
    pub fn open_audio(&self, output: Option<PathBuf>) -> Result<AudioIo, parley_audio::AudioError> {
        let source =
            parley_audio::open_source(self.input.as_deref(), self.input_device.as_deref())?;
        let sink = parley_audio::open_sink(output.as_deref(), self.output_device.as_deref())?;
        Ok((source, sink))
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
}

/// Runs a connected call to its end: paths up, media until someone hangs up.
pub async fn talk(
    call: Connected,
    opts: &CallOptions,
    out: Printer,
) -> anyhow::Result<stats::CallStats> {
    let (events_tx, events) = mpsc::channel(8);
    paths::establish(
        paths::PathSetup {
            endpoint: call.endpoint,
            identity: call.identity,
            peer: call.peer,
            peer_candidates: call.peer_candidates,
            relays: call.relays,
            policy: opts.paths,
        },
        call.direct_in,
        events_tx,
    );
    let (source, sink) = call.audio;
    let over_tcp = call.over_tcp;
    let mut stats = media::run(
        media::MediaParams {
            crypto: MediaCrypto::new(call.keys),
            source,
            sink,
            bitrate: opts.bitrate,
            duration: opts.duration,
            dialed_at: call.dialed_at,
            out,
            mute: None,
        },
        events,
    )
    .await?;
    stats.transport = if over_tcp { "tcp" } else { "udp" };
    Ok(stats)
}
