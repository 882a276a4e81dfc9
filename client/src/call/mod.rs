//! A call from the client's side: signalling (`place`, `answer`), the media paths
//! (`paths`), the audio/media loop (`media`) and its statistics (`stats`).

pub mod answer;
pub mod media;
pub mod paths;
pub mod place;
pub mod stats;

use std::path::PathBuf;
use std::time::Duration;

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
