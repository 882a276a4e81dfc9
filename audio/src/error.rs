//! The one error type of the audio crate. Every message says what went wrong and, where
//! the user can do something about it, what to do.

use std::fmt;
use std::path::PathBuf;
use thiserror::Error;

/// Which way sound flows through a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Capture: a microphone.
    Input,
    /// Playback: speakers or headphones.
    Output,
}

impl Direction {
    /// The command-line flag that replaces a device of this direction with a WAV file.
    pub fn file_flag(self) -> &'static str {
        match self {
            Direction::Input => "--input",
            Direction::Output => "--output",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// Everything that can go wrong with audio.
#[derive(Debug, Error)]
pub enum AudioError {
    /// There is no sound device of this direction at all (common on servers and in CI).
    #[error(
        "no audio {direction} device is available on this machine; pass {} FILE.wav to use a \
         WAV file instead",
        direction.file_flag()
    )]
    NoDevice {
        /// Capture or playback.
        direction: Direction,
    },

    /// The named device does not exist.
    #[error(
        "no audio {direction} device named {name:?}; available {direction} devices: {}; or pass \
         {} FILE.wav to use a WAV file",
        if available.is_empty() { "none".to_string() } else { available.join(", ") },
        direction.file_flag()
    )]
    DeviceNotFound {
        /// Capture or playback.
        direction: Direction,
        /// The name asked for.
        name: String,
        /// The names that do exist.
        available: Vec<String>,
    },

    /// A device exists but could not be used.
    #[error(
        "audio {direction} device {name:?} failed: {detail}; try another device, or pass {} \
         FILE.wav to use a WAV file",
        direction.file_flag()
    )]
    Device {
        /// Capture or playback.
        direction: Direction,
        /// The device's name.
        name: String,
        /// What the audio system said.
        detail: String,
    },

    /// The audio system itself could not be used.
    #[error(
        "cannot use the audio system: {detail}; pass --input FILE.wav and --output FILE.wav to \
         use WAV files instead"
    )]
    Host {
        /// What the audio system said.
        detail: String,
    },

    /// A WAV file could not be opened or read.
    #[error("cannot read WAV file {}: {source}", path.display())]
    WavRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: hound::Error,
    },

    /// A WAV file is valid but in a format this crate does not take.
    #[error(
        "unsupported WAV file {}: {detail}; use 8/16/24/32-bit PCM or 32-bit float, mono or \
         stereo, at 8, 11.025, 12, 16, 22.05, 24, 32, 44.1, 48, 88.2 or 96 kHz (for example \
         `sox in.wav -r 48000 -c 1 -b 16 out.wav`)",
        path.display()
    )]
    WavUnsupported {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// A WAV file could not be created or written.
    #[error("cannot write WAV file {}: {source}", path.display())]
    WavWrite {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: hound::Error,
    },

    /// The Opus codec refused an operation (a corrupt packet, usually).
    #[error("Opus {operation} failed: {}", code.message())]
    Codec {
        /// What was being done.
        operation: &'static str,
        /// What libopus said.
        code: opusic_c::ErrorCode,
    },

    /// A buffer of PCM or an Opus packet was not one 20 ms frame.
    #[error("expected a 20 ms frame of {expected} samples at 48 kHz, got {got} samples")]
    FrameSize {
        /// Samples in a 20 ms frame.
        expected: usize,
        /// Samples given or decoded.
        got: usize,
    },

    /// Sample-rate conversion failed (a bug, or an absurd sample rate).
    #[error("sample-rate conversion from {from} Hz to {to} Hz failed: {detail}")]
    Resample {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// What the resampler said.
        detail: String,
    },
}

impl AudioError {
    /// Wraps an Opus error with the name of the operation that failed.
    pub(crate) fn codec(operation: &'static str) -> impl FnOnce(opusic_c::ErrorCode) -> AudioError {
        move |code| AudioError::Codec { operation, code }
    }
}
