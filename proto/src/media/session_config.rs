//! Tunables of the media engine ([`super::session::MediaSession`]) and their defaults.

use super::rate::RateConfig;
use super::session_io::EncoderTarget;
use super::JitterConfig;
use std::time::Duration;

/// Tunables of a [`MediaSession`](super::session::MediaSession); the defaults are what the client uses.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Frame period.
    pub frame: Duration,
    /// The receive jitter buffer.
    pub jitter: JitterConfig,
    /// The sender's rate controller; `None`: fixed encoder settings (`fixed_target`).
    pub rate: Option<RateConfig>,
    /// Encoder settings without a controller, and the starting bitrate's FEC with one.
    pub fixed_target: EncoderTarget,
    /// How often a receiver report goes out.
    pub report_every: Duration,
    /// How often every open path is probed.
    pub probe_every: Duration,
    /// A path that has not answered a probe for this long is not sent on.
    pub path_dead_after: Duration,
    /// No authentic datagram from the peer this long after the start: no media path.
    pub setup_timeout: Duration,
    /// Nothing authentic heard on any path for this long, once media flowed: the peer
    /// is reported stalled ([`MediaEvent::Stalled`]); the call goes on.
    pub stall_after: Duration,
    /// Nothing authentic heard on any path for this long, once media flowed: peer lost.
    pub peer_timeout: Duration,
    /// After the input ends, how long to go on so the last frames reach the peer.
    pub input_tail: Duration,
    /// End the call this long after the start (`None`: no limit).
    pub duration: Option<Duration>,
    /// Byes sent on hang-up (they are datagrams and may be lost).
    pub bye_copies: usize,
}

/// Default [`SessionConfig::setup_timeout`].
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(8);
/// Default [`SessionConfig::stall_after`].
pub const STALL_AFTER: Duration = Duration::from_secs(2);
/// Default [`SessionConfig::peer_timeout`]: long enough for a path to come back (a relay
/// leg rejoins, a NAT mapping is punched again).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// After this process itself stalled (woken more than 5 frames late), how long it runs
/// before judging the peer silent: long enough to read what queued up meanwhile.
pub const STALL_GRACE: Duration = Duration::from_millis(200);

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            frame: Duration::from_millis(20),
            jitter: JitterConfig::default(),
            rate: Some(RateConfig::default()),
            fixed_target: EncoderTarget {
                bitrate_bps: RateConfig::default().start_bps,
                expected_loss_percent: 0,
                dred_10ms: 0,
                redundant_frames: 0,
            },
            report_every: Duration::from_secs(1),
            probe_every: Duration::from_millis(160),
            path_dead_after: Duration::from_millis(500),
            setup_timeout: SETUP_TIMEOUT,
            stall_after: STALL_AFTER,
            peer_timeout: PEER_TIMEOUT,
            input_tail: Duration::from_millis(400),
            duration: None,
            bye_copies: 3,
        }
    }
}
