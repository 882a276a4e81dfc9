//! Call statistics: the live status line and the summary printed at hang-up.

use super::media_paths::PathKind;
use parley_proto::media::SessionStats;
use serde_json::{json, Value};
use std::time::Duration;

/// Counters of one call: the media engine's (copied once a second and at the end) and
/// what only the shell knows (set-up time, duration, how it ended, the transport).
#[derive(Debug, Default)]
pub struct CallStats {
    /// The engine's counters as of the last [`CallStats::absorb`]; `path` and `rtt` keep
    /// their last known value once the engine has none (the call ending, a path gone).
    pub media: SessionStats,
    pub setup: Option<Duration>,
    pub duration: Duration,
    pub ended_by: String,
    /// The call connected, then the connection was lost (nothing heard for the engine's
    /// give-up time): reported as `dropped`, a failure, never `completed`.
    pub dropped: bool,
    /// How our datagrams leave this machine: "udp", or "tcp" where UDP is blocked.
    pub transport: &'static str,
}

impl CallStats {
    /// Takes the media engine's counters.
    pub fn absorb(&mut self, s: &SessionStats) {
        let path = s.path.or(self.media.path);
        let rtt = s.rtt.or(self.media.rtt);
        self.media = SessionStats {
            path,
            rtt,
            ..s.clone()
        };
    }

    /// The `outcome` word of a call that connected (history and `call_end`): `dropped`
    /// when the connection was lost, else `completed`.
    pub fn outcome(&self) -> &'static str {
        if self.dropped {
            "dropped"
        } else {
            "completed"
        }
    }

    /// The path the call was last sent on.
    pub fn path(&self) -> Option<PathKind> {
        self.media.path
    }

    /// The encoder's bitrate now, bit/s (0 before the engine chose one).
    fn bitrate_bps(&self) -> i32 {
        self.media.target.map_or(0, |t| t.bitrate_bps)
    }

    fn path_name(&self) -> &'static str {
        self.path().map(PathKind::name).unwrap_or("none")
    }

    fn loss_percent(&self) -> f64 {
        let j = &self.media.jitter;
        let expected = j.received_in_time() + j.lost;
        if expected == 0 {
            0.0
        } else {
            100.0 * j.lost as f64 / expected as f64
        }
    }

    /// Loss of the frames we send, as the peer last reported it.
    fn peer_loss_percent(&self) -> f64 {
        let expected = self.media.peer_received + self.media.peer_lost;
        if expected == 0 {
            0.0
        } else {
            100.0 * self.media.peer_lost as f64 / expected as f64
        }
    }

    /// The one-line live view.
    pub fn status_line(&self) -> String {
        format!(
            "[{:>5.1}s] path {} | rtt {} | loss {:.1}% (copy {}, fec {}, dred {}, concealed {}) | jitter {:.1} ms | {:.1} kbit/s | sent {} recv {}",
            self.duration.as_secs_f64(),
            self.path_name(),
            self.media.rtt.map(|r| format!("{} ms", r.as_millis())).unwrap_or_else(|| "-".into()),
            self.loss_percent(),
            self.media.recovery.redundant,
            self.media.recovery.fec,
            self.media.recovery.dred,
            self.media.recovery.concealed,
            self.media.jitter.jitter_ms,
            f64::from(self.bitrate_bps()) / 1000.0,
            self.media.frames_sent,
            self.media.frames_received_direct + self.media.frames_received_relay,
        )
    }

    /// The machine-readable form: the live `stats` lines and the final `call_end` line.
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path_name(),
            "path_switches": self.media.path_switches,
            "setup_ms": self.setup.map(|d| d.as_millis() as u64),
            "frames_sent": self.media.frames_sent,
            "bytes_sent": self.media.bytes_sent,
            "frames_received": self.media.frames_received_direct + self.media.frames_received_relay,
            "frames_received_direct": self.media.frames_received_direct,
            "frames_received_relay": self.media.frames_received_relay,
            "frames_lost": self.media.jitter.lost,
            "frames_concealed": self.media.jitter.concealed,
            "frames_fec_recovered": self.media.jitter.fec_recovered,
            "frames_late": self.media.jitter.late,
            "frames_duplicate": self.media.jitter.duplicates,
            "frames_discarded": self.media.jitter.discarded,
            "datagrams_forged": self.media.forged,
            "datagrams_replayed": self.media.replayed,
            "datagrams_malformed": self.media.malformed,
            "loss_percent": (self.loss_percent() * 100.0).round() / 100.0,
            "rtt_ms": self.media.rtt.map(|r| r.as_secs_f64() * 1000.0),
            "jitter_ms": self.media.jitter.jitter_ms,
            "jitter_buffer_ms": self.media.jitter.target_delay_ms,
            "bitrate_bps": self.bitrate_bps(),
            "bitrate_min_bps": self.media.bitrate_min_bps,
            "bitrate_max_bps": self.media.bitrate_max_bps,
            "bitrate_changes": self.media.bitrate_changes,
            "expected_loss_percent": self.media.target.map_or(0, |t| t.expected_loss_percent),
            "reports_received": self.media.reports_received,
            "peer_loss_percent": (self.peer_loss_percent() * 100.0).round() / 100.0,
            "duration_s": (self.duration.as_secs_f64() * 100.0).round() / 100.0,
            "ended_by": self.ended_by,
            "max_gap_ms": self.media.max_gap.as_millis() as u64,
            "transport": if self.transport.is_empty() { "udp" } else { self.transport },
            "dred_ms": self.media.target.map_or(0, |t| u32::from(t.dred_10ms) * 10),
            "frames_recovered": self.media.recovered,
            // How each period of the peer's audio was played (what the codec did).
            "recovery": {
                "received": self.media.recovery.received,
                "redundant_copy": self.media.recovery.redundant,
                "fec": self.media.recovery.fec,
                "dred": self.media.recovery.dred,
                "concealed": self.media.recovery.concealed,
            },
            "redundant_frames": self.media.target.map_or(0, |t| t.redundant_frames),
            "redundant_bytes_sent": self.media.redundant_bytes_sent,
        })
    }
}
