//! The receiving half of a call's media: frames into the jitter buffer as they arrive,
//! one frame out of it every 20 ms (decoded, rebuilt from FEC, or concealed) to the
//! speakers or file, and the receiver report the sender adapts its bitrate to.

use super::super::stats::CallStats;
use anyhow::Result;
use parley_audio::{Decoder, FrameSink, FRAME_SAMPLES};
use parley_net::clock::now;
use parley_proto::call::media::MediaFrame;
use parley_proto::media::{JitterBuffer, JitterConfig};

/// Jitter buffer, decoder and audio output of one call.
pub struct Receiver {
    jitter: JitterBuffer,
    decoder: Decoder,
    sink: Box<dyn FrameSink>,
    /// Whether anything has been played yet: before, the output stays empty.
    started: bool,
}

impl Receiver {
    /// Plays into `sink`.
    pub fn new(sink: Box<dyn FrameSink>) -> Result<Receiver> {
        Ok(Receiver {
            jitter: JitterBuffer::new(JitterConfig::default()),
            decoder: Decoder::new()?,
            sink,
            started: false,
        })
    }

    /// Frame number `frame` arrived.
    pub fn on_audio(&mut self, frame: u64, opus: Vec<u8>) {
        self.jitter.insert(now(), frame, opus);
    }

    /// Plays one frame period. True the first time real audio is played.
    pub fn play_one(&mut self) -> Result<bool> {
        if let Some(playout) = self.jitter.pop(now()) {
            let pcm = self.decoder.play(&playout)?;
            self.sink.play(&pcm)?;
            let first = !self.started;
            self.started = true;
            return Ok(first);
        }
        if self.started {
            // Keep the output's timeline: silence while nothing is playable.
            self.sink.play(&[0.0; FRAME_SAMPLES])?;
        }
        Ok(false)
    }

    /// The receiver report for the peer's rate controller: cumulative frames that
    /// arrived in time (each counted once) and frames lost. None before the first frame.
    pub fn report(&self) -> Option<MediaFrame> {
        let s = self.jitter.stats();
        if s.received == 0 {
            return None;
        }
        Some(MediaFrame::Report {
            received: s.received.saturating_sub(s.duplicates + s.late),
            lost: s.lost,
        })
    }

    /// Copies the jitter buffer's counters into `stats`.
    pub fn update_stats(&self, stats: &mut CallStats) {
        stats.jitter = self.jitter.stats();
    }

    /// Flushes the output (the WAV file's header is written here).
    pub fn finish(&mut self) -> Result<()> {
        self.sink.finish()?;
        Ok(())
    }
}
