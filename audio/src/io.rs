//! Where a call's audio comes from and goes to: a WAV file or a sound device, behind two
//! small traits.
//!
//! The call code runs its own 20 ms clock: every period it takes one frame from its
//! [`FrameSource`] and gives one frame to its [`FrameSink`]. Neither trait blocks: a
//! device source hands out what was captured since the last call (silence if nothing
//! was), and a device sink queues the frame for the sound card.

use crate::codec::FRAME_SAMPLES;
use crate::device::{DeviceSink, DeviceSource};
use crate::error::AudioError;
use crate::wav::{read_wav_48k_mono, WavWriter};
use std::path::Path;

/// Something that yields 20 ms frames of 48 kHz mono audio: a microphone or a file.
pub trait FrameSource: Send {
    /// The next frame of exactly [`FRAME_SAMPLES`] samples, or `None` at the end of the
    /// input (a file that has been played out; a device never ends).
    fn next_frame(&mut self) -> Option<Vec<f32>>;
}

/// Something that plays 20 ms frames of 48 kHz mono audio: speakers or a file.
pub trait FrameSink: Send {
    /// Plays (or records) one frame.
    fn play(&mut self, frame: &[f32]) -> Result<(), AudioError>;
    /// Flushes and closes: a file gets its final header, a device drains its queue.
    fn finish(&mut self) -> Result<(), AudioError>;
}

/// A WAV file read into memory, handed out frame by frame.
pub struct WavSource {
    samples: Vec<f32>,
    pos: usize,
}

impl WavSource {
    /// Reads the whole file (see [`read_wav_48k_mono`] for the formats taken).
    pub fn open(path: impl AsRef<Path>) -> Result<WavSource, AudioError> {
        Ok(WavSource::from_samples(read_wav_48k_mono(path)?))
    }

    /// Serves samples already in memory (48 kHz mono).
    pub fn from_samples(samples: Vec<f32>) -> WavSource {
        WavSource { samples, pos: 0 }
    }

    /// Frames left, counting a final partial one.
    pub fn frames_left(&self) -> usize {
        (self.samples.len() - self.pos).div_ceil(FRAME_SAMPLES)
    }
}

impl FrameSource for WavSource {
    /// Frames in order; the last one is padded with silence; then `None`.
    fn next_frame(&mut self) -> Option<Vec<f32>> {
        if self.pos >= self.samples.len() {
            return None;
        }
        let end = (self.pos + FRAME_SAMPLES).min(self.samples.len());
        let mut frame = self.samples[self.pos..end].to_vec();
        frame.resize(FRAME_SAMPLES, 0.0);
        self.pos = end;
        Some(frame)
    }
}

/// Records played frames to a 48 kHz mono 16-bit WAV file.
pub struct WavSink {
    writer: WavWriter,
}

impl WavSink {
    /// Creates (or truncates) the file.
    pub fn create(path: impl AsRef<Path>) -> Result<WavSink, AudioError> {
        Ok(WavSink {
            writer: WavWriter::create(path)?,
        })
    }
}

impl FrameSink for WavSink {
    fn play(&mut self, frame: &[f32]) -> Result<(), AudioError> {
        self.writer.write(frame)
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        self.writer.finish()
    }
}

/// Opens the call's audio input: the WAV file `input` if given, else the capture device
/// named `device`, else the default capture device. With no capture device at all the
/// error is [`AudioError::NoDevice`], whose message tells the user to pass
/// `--input FILE.wav`.
pub fn open_source(
    input: Option<&Path>,
    device: Option<&str>,
) -> Result<Box<dyn FrameSource>, AudioError> {
    match input {
        Some(path) => Ok(Box::new(WavSource::open(path)?)),
        None => Ok(Box::new(DeviceSource::open(device)?)),
    }
}

/// Opens the call's audio output: the WAV file `output` if given, else the playback
/// device named `device`, else the default playback device. With no playback device at
/// all the error is [`AudioError::NoDevice`], whose message tells the user to pass
/// `--output FILE.wav`.
pub fn open_sink(
    output: Option<&Path>,
    device: Option<&str>,
) -> Result<Box<dyn FrameSink>, AudioError> {
    match output {
        Some(path) => Ok(Box::new(WavSink::create(path)?)),
        None => Ok(Box::new(DeviceSink::open(device)?)),
    }
}

/// Whether an error means "no usable device": the cue to suggest a WAV file instead.
pub fn is_missing_device(error: &AudioError) -> bool {
    matches!(
        error,
        AudioError::NoDevice { .. } | AudioError::DeviceNotFound { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_source_pads_the_last_frame_then_ends() {
        let mut source = WavSource::from_samples(vec![0.5; FRAME_SAMPLES * 2 + 10]);
        assert_eq!(source.frames_left(), 3);
        assert_eq!(source.next_frame(), Some(vec![0.5; FRAME_SAMPLES]));
        assert_eq!(source.next_frame(), Some(vec![0.5; FRAME_SAMPLES]));
        let last = source.next_frame().unwrap();
        assert_eq!(last.len(), FRAME_SAMPLES);
        assert_eq!(&last[..10], &[0.5; 10]);
        assert!(last[10..].iter().all(|&s| s == 0.0));
        assert_eq!(source.next_frame(), None);
        assert_eq!(source.next_frame(), None);
    }
}
