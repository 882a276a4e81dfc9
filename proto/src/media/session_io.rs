//! What the media engine ([`super::session::MediaSession`]) exchanges with its shell:
//! the codec and audio traits it drives, the datagrams it asks to send, the events it
//! reports, why a call ended, and its counters.

use super::paths::PathKind;
use super::JitterStats;
use super::Playout;
use std::time::Duration;
use thiserror::Error;

/// Samples in one 20 ms frame at 48 kHz mono.
pub const FRAME_SAMPLES: usize = 960;

/// A failure of the shell's codec or audio device, passed through the engine.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct HostError(pub String);

/// What the encoder should do now: bitrate, in-band FEC and DRED depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderTarget {
    /// Opus bitrate, bit/s.
    pub bitrate_bps: i32,
    /// Expected packet loss for in-band FEC, percent (0: no FEC).
    pub expected_loss_percent: u8,
    /// Deep redundancy (DRED) depth, in 10 ms units (0: none). See
    /// [`super::rate::dred_frames_for`].
    pub dred_10ms: u8,
    /// Exact copies of the previous frames each audio datagram carries (RFC 2198-style
    /// redundancy, `MediaFrame::RedAudio`; 0: none). Applied by the engine itself, not
    /// the codec, and only towards a peer that accepts it. See
    /// [`super::rate::redundancy_for`].
    pub redundant_frames: u8,
}

/// How the codec produced one period's audio from a [`Playout`] (for the per-call
/// [`Recovery`] counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A packet that arrived (or an exact redundant copy of it), decoded normally.
    Packet,
    /// A lost frame rebuilt from the next packet's in-band FEC (Opus LBRR).
    Fec,
    /// A lost frame rebuilt from a later packet's deep redundancy (Opus DRED).
    Dred,
    /// Concealed: nothing to rebuild from (deep PLC), or a packet that did not decode.
    Concealed,
}

/// How the periods of one call's incoming audio were played, up to now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Frames decoded from their own datagram.
    pub received: u64,
    /// Lost frames played from an exact copy carried by a later datagram.
    pub redundant: u64,
    /// Lost frames rebuilt from the next packet's in-band FEC.
    pub fec: u64,
    /// Lost frames rebuilt from a later packet's DRED.
    pub dred: u64,
    /// Periods concealed (lost frames nothing could rebuild, underruns, the buffer
    /// stretching its delay).
    pub concealed: u64,
}

/// The codec the engine drives. One 20 ms frame of 48 kHz mono `f32` per call.
pub trait MediaCodec {
    /// Encodes one captured frame ([`FRAME_SAMPLES`] samples) into one packet.
    fn encode(&mut self, pcm: &[f32]) -> Result<Vec<u8>, HostError>;
    /// Turns a jitter-buffer decision into [`FRAME_SAMPLES`] samples (decode, rebuild
    /// from FEC or DRED, or conceal), and says which it did. Must not fail on a corrupt
    /// packet: conceal instead.
    fn decode(&mut self, playout: &Playout) -> Result<(Vec<f32>, Decoded), HostError>;
    /// Applies new encoder settings.
    fn set_target(&mut self, target: &EncoderTarget) -> Result<(), HostError>;
}

/// How a period's audio came about, for [`AudioPort::play`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayKind {
    /// Frame `seq` as received.
    Frame(u64),
    /// Lost frame `seq`, rebuilt from a later packet's redundancy or concealed.
    Recovered(u64),
    /// A period concealed (loss with nothing later, or the buffer stretching).
    Concealed,
    /// Nothing to play (before the first frame, or the stream stopped): silence.
    Silence,
}

/// The audio the engine captures from and plays to.
pub trait AudioPort {
    /// The next captured frame ([`FRAME_SAMPLES`] samples), or `None` once the input
    /// has ended (a file played to its end). Called once per period.
    fn capture(&mut self) -> Option<Vec<f32>>;
    /// Plays one period ([`FRAME_SAMPLES`] samples). Called once per period.
    fn play(&mut self, pcm: &[f32], kind: PlayKind) -> Result<(), HostError>;
}

/// What a datagram to send is, so a shell can treat hang-ups specially (never impair them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransmitKind {
    /// An audio frame.
    Audio,
    /// A report, probe or probe answer.
    Control,
    /// A hang-up.
    Bye,
}

/// One sealed datagram to send on `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The path to send it on.
    pub path: PathKind,
    /// The sealed datagram.
    pub bytes: Vec<u8>,
    /// What it carries.
    pub kind: TransmitKind,
}

/// Why a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// [`MediaSession::hang_up`](super::session::MediaSession::hang_up).
    LocalHangup,
    /// The peer sent a Bye.
    PeerHangup,
    /// The input ended (and its tail was sent).
    InputEnded,
    /// [`SessionConfig::duration`](super::session::SessionConfig::duration) passed.
    DurationReached,
    /// Nothing authentic arrived from the peer on any path: why each path failed.
    NoMediaPath {
        /// How long the engine waited, ms (0: every path failed before).
        waited_ms: u64,
        /// "kind path: reason" for every path that failed.
        reasons: Vec<String>,
    },
    /// Media flowed, then nothing was heard on any path for `silent_ms`. Shown as
    /// "connection lost".
    PeerLost {
        /// How long nothing was heard, ms.
        silent_ms: u64,
    },
}

impl EndReason {
    /// True when the call failed (no media path), rather than ended.
    pub fn is_failure(&self) -> bool {
        matches!(self, EndReason::NoMediaPath { .. })
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::LocalHangup => write!(f, "local hang-up"),
            EndReason::PeerHangup => write!(f, "peer hung up"),
            EndReason::InputEnded => write!(f, "input ended"),
            EndReason::DurationReached => write!(f, "duration reached"),
            EndReason::NoMediaPath { waited_ms, reasons } => {
                if reasons.is_empty() {
                    write!(
                        f,
                        "no media path: nothing came from the peer within {:.1} s",
                        *waited_ms as f64 / 1000.0
                    )
                } else {
                    write!(f, "no media path: {}", reasons.join("; "))
                }
            }
            // The words of the `ended_by` interface (docs/user-guide.md).
            EndReason::PeerLost { .. } => write!(f, "connection lost"),
        }
    }
}

/// Something the shell may want to show.
#[derive(Clone, Debug, PartialEq)]
pub enum MediaEvent {
    /// Sends now go on `to` (None before: the first path chosen).
    PathSwitch {
        /// The previous path.
        from: Option<PathKind>,
        /// The new one.
        to: PathKind,
    },
    /// The first frame of the peer's audio was played.
    FirstAudio,
    /// The encoder settings changed.
    Target(EncoderTarget),
    /// Nothing authentic from the peer on any path for `silent_ms` (at least
    /// [`stall_after`](super::session::SessionConfig::stall_after)) once media flowed;
    /// the call ends as lost at `gives_up_after_ms` unless the peer comes back. Once per
    /// silence.
    Stalled {
        /// How long nothing was heard, ms.
        silent_ms: u64,
        /// The silence that ends the call, ms
        /// ([`peer_timeout`](super::session::SessionConfig::peer_timeout)).
        gives_up_after_ms: u64,
    },
    /// The peer was heard again after a [`MediaEvent::Stalled`].
    Resumed {
        /// How long nothing was heard, ms.
        silent_ms: u64,
    },
    /// The peer, hosting a conference, named its members (itself included): a list
    /// newer than the last one reported ([`crate::media::group`]). The shell checks that
    /// it names both ends of this call and shows it with its group safety code.
    Roster(Vec<crate::PeerId>),
    /// A round-trip time measured by a probe on the path sends go on (about every
    /// 160 ms): for shells that pace other traffic around the call
    /// (`crate::transfer::call_yield`).
    Rtt(Duration),
    /// The call is over; nothing more will be sent except the Byes already queued.
    Ended(EndReason),
}

/// Counters of one call's media.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionStats {
    /// The path sends go on now.
    pub path: Option<PathKind>,
    /// Changes of that path after the first.
    pub path_switches: u32,
    /// Audio frames handed to a path.
    pub frames_sent: u64,
    /// Opus bytes in them.
    pub bytes_sent: u64,
    /// Audio frames received on the direct path / on relays.
    pub frames_received_direct: u64,
    /// See `frames_received_direct`.
    pub frames_received_relay: u64,
    /// Datagrams dropped: failed authentication, replayed, malformed.
    pub forged: u64,
    /// See `forged`.
    pub replayed: u64,
    /// See `forged`.
    pub malformed: u64,
    /// Latest end-to-end RTT on the current path.
    pub rtt: Option<Duration>,
    /// Encoder settings now, and the bitrate's extremes and changes.
    pub target: Option<EncoderTarget>,
    /// Lowest bitrate used, bit/s.
    pub bitrate_min_bps: i32,
    /// Highest bitrate used, bit/s.
    pub bitrate_max_bps: i32,
    /// Bitrate changes so far.
    pub bitrate_changes: u64,
    /// Reports received from the peer, and its latest cumulative counts of our frames.
    pub reports_received: u64,
    /// See `reports_received`.
    pub peer_received: u64,
    /// See `reports_received`.
    pub peer_lost: u64,
    /// Longest time between two audio frames arriving.
    pub max_gap: Duration,
    /// The jitter buffer's counters.
    pub jitter: JitterStats,
    /// Lost frames rebuilt from a later packet (FEC or DRED) or concealed with one there.
    pub recovered: u64,
    /// How each period of the peer's audio was played: received, from a redundant copy,
    /// from FEC, from DRED, concealed (what the codec actually did).
    pub recovery: Recovery,
    /// Opus bytes of redundant copies sent (included in `bytes_sent`).
    pub redundant_bytes_sent: u64,
    /// Whether the peer accepts redundant audio (`MediaFrame::Features`).
    pub peer_accepts_redundancy: bool,
    /// Whether sending is muted.
    pub muted: bool,
}
