//! Receive-side media timing: the jitter buffer that turns packets arriving at uneven
//! times into one decodable frame per 20 ms.
//!
//! Like the rest of this crate it is sans-IO and codec-agnostic: it never reads the
//! clock and never decodes audio. The call code inserts each received frame with
//! [`JitterBuffer::insert`] and, once per frame period of its playout clock, asks
//! [`JitterBuffer::pop`] what to play. The answer is a [`Playout`]: a frame to
//! decode, a lost frame to rebuild from the next frame's forward error correction,
//! or a frame to conceal. The audio crate's decoder turns any [`Playout`] into
//! 20 ms of PCM.

#[cfg(test)]
mod drift_tests;
pub mod group;
pub mod impair;
mod jitter;
pub mod mix;
pub mod mix_roster;
pub mod paths;
pub mod rate;
pub mod session;
mod session_config;
#[cfg(test)]
mod session_harness;
mod session_io;
#[cfg(test)]
mod session_tests;

pub use jitter::JitterBuffer;
pub use paths::PathKind;
pub use session::{
    AudioPort, Decoded, EncoderTarget, EndReason, HostError, MediaCodec, MediaEvent, MediaSession,
    PlayKind, Recovery, SessionConfig, SessionStats, Transmit, TransmitKind, FRAME_SAMPLES,
};

use std::time::Duration;

/// Tunables of a [`JitterBuffer`]. The defaults suit 20 ms Opus frames over the Internet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// Duration of one frame: consecutive sequence numbers are this far apart in time.
    pub frame: Duration,
    /// Smallest playout delay the buffer aims for, even on a perfect network.
    pub min_delay: Duration,
    /// Largest playout delay the buffer aims for. Frames further ahead of the playout
    /// point than this are dropped, which also bounds the buffer's memory.
    pub max_delay: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            frame: Duration::from_millis(20),
            min_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(300),
        }
    }
}

/// What to play for one frame period, as returned by [`JitterBuffer::pop`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Playout {
    /// Frame `seq` itself was lost, but an exact copy arrived in a later datagram
    /// (RFC 2198-style redundancy, [`JitterBuffer::insert_redundant`]): decode `payload`
    /// exactly like a [`Playout::Frame`].
    Redundant {
        /// Sequence number of the frame.
        seq: u64,
        /// The copy of the encoded frame.
        payload: Vec<u8>,
    },
    /// Frame `seq` arrived in time: decode `payload` normally.
    Frame {
        /// Sequence number of the frame.
        seq: u64,
        /// The encoded frame as received.
        payload: Vec<u8>,
    },
    /// Frame `seq` was lost but frame `seq + 1` is here: rebuild `seq` from the
    /// forward-error-correction data carried in `next_payload` (Opus in-band FEC).
    /// Frame `seq + 1` itself stays buffered and is returned as a [`Playout::Frame`]
    /// by the next pop.
    Fec {
        /// Sequence number of the lost frame.
        seq: u64,
        /// The encoded frame `seq + 1`, whose FEC data describes frame `seq`.
        next_payload: Vec<u8>,
    },
    /// Nothing usable for frame `seq`: synthesize a stand-in (packet-loss concealment).
    ///
    /// Either `seq` is lost (a later frame is already here, so the buffer moves on), or
    /// the buffer ran dry (nothing after `seq` has arrived yet), or it is stretching its
    /// delay back up to the target (a frame inserted, as a slow sender clock needs). In
    /// the last two cases the buffer waits for `seq` instead of skipping it, which is how
    /// its playout delay grows: the next pop may return `seq` again.
    Conceal {
        /// Sequence number of the frame being concealed.
        seq: u64,
    },
    /// Frame `seq` was lost, frame `seq + 1` too, but a later frame `later_seq` is here:
    /// rebuild `seq` from the deep redundancy (Opus DRED, up to about a second of
    /// history) that `later_payload` may carry, `later_seq - seq` frames back; conceal
    /// if it carries none. The later frame stays buffered.
    Recover {
        /// Sequence number of the lost frame.
        seq: u64,
        /// Sequence number of the first frame after `seq` that is here (`> seq + 1`).
        later_seq: u64,
        /// That frame as received.
        later_payload: Vec<u8>,
    },
}

/// Counters and state of a [`JitterBuffer`], for logs and call-quality reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JitterStats {
    /// Frames held right now.
    pub buffered: usize,
    /// The playout delay the buffer currently aims for, in milliseconds.
    pub target_delay_ms: u32,
    /// Interarrival jitter estimate (RFC 3550, section 6.4.1), in milliseconds.
    pub jitter_ms: f32,
    /// Every frame handed to [`JitterBuffer::insert`], including the ones dropped.
    pub received: u64,
    /// Frames that arrived after their playout time had passed (dropped).
    pub late: u64,
    /// Frames that arrived more than once (the copies are dropped).
    pub duplicates: u64,
    /// Frames that had not arrived when the buffer had to move past them (including the
    /// ones played from a redundant copy: the network lost them all the same).
    pub lost: u64,
    /// Lost frames played from a redundant copy ([`Playout::Redundant`]).
    pub redundant_recovered: u64,
    /// Frames the playout point moved past after an underrun, because the periods already
    /// concealed had stood in for them (the frames were lost, not late).
    pub stall_skipped: u64,
    /// Lost frames handed out as [`Playout::Fec`].
    pub fec_recovered: u64,
    /// Periods answered with [`Playout::Conceal`] or [`Playout::Recover`] (losses without
    /// in-band FEC, underruns, and periods inserted to stretch the delay).
    pub concealed: u64,
    /// Frames dropped for being too far from the playout point (a sequence jump not yet
    /// confirmed, or a flood of junk), discarded by a resynchronisation, or skipped to
    /// bring an over-long delay back down to the target.
    pub discarded: u64,
}

impl JitterStats {
    /// Frames that arrived in time to be played: received minus duplicates and late
    /// ones (what a receiver report counts as received).
    pub fn received_in_time(&self) -> u64 {
        self.received.saturating_sub(self.duplicates + self.late)
    }
}
