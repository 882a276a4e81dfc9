//! Call statistics: the live status line and the summary printed at hang-up.

use super::media_paths::PathKind;
use parley_proto::media::{JitterStats, SessionStats};
use serde_json::{json, Value};
use std::time::Duration;

/// Counters of one call, as the media loop keeps them.
#[derive(Debug, Default)]
pub struct CallStats {
    pub path: Option<PathKind>,
    pub path_switches: u32,
    pub setup: Option<Duration>,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub frames_received_direct: u64,
    pub frames_received_relay: u64,
    pub forged: u64,
    pub replayed: u64,
    pub malformed: u64,
    pub rtt: Option<Duration>,
    /// The encoder's bitrate now, and the extremes and number of changes so far (the
    /// rate controller adapts it to the peer's reports).
    pub bitrate_bps: i32,
    pub bitrate_min_bps: i32,
    pub bitrate_max_bps: i32,
    pub bitrate_changes: u64,
    /// The loss the encoder's in-band FEC is sized for.
    pub expected_loss_percent: u8,
    /// The peer's latest report on our frames: cumulative received and lost.
    pub reports_received: u64,
    pub peer_received: u64,
    pub peer_lost: u64,
    pub duration: Duration,
    pub jitter: JitterStats,
    pub ended_by: String,
    /// The longest time between two audio frames arriving (a path failing over shows here).
    pub max_gap: Duration,
    /// How our datagrams leave this machine: "udp", or "tcp" where UDP is blocked.
    pub transport: &'static str,
    /// Deep redundancy (DRED) the encoder adds now, ms of history (0: none).
    pub dred_ms: u32,
    /// Lost frames rebuilt from a later packet (FEC or DRED).
    pub frames_recovered: u64,
}

impl CallStats {
    /// Takes the media engine's counters.
    pub fn absorb(&mut self, s: &SessionStats) {
        self.path = s.path.or(self.path);
        self.path_switches = s.path_switches;
        self.frames_sent = s.frames_sent;
        self.bytes_sent = s.bytes_sent;
        self.frames_received_direct = s.frames_received_direct;
        self.frames_received_relay = s.frames_received_relay;
        self.forged = s.forged;
        self.replayed = s.replayed;
        self.malformed = s.malformed;
        self.rtt = s.rtt.or(self.rtt);
        if let Some(t) = s.target {
            self.bitrate_bps = t.bitrate_bps;
            self.expected_loss_percent = t.expected_loss_percent;
            self.dred_ms = u32::from(t.dred_10ms) * 10;
        }
        self.bitrate_min_bps = s.bitrate_min_bps;
        self.bitrate_max_bps = s.bitrate_max_bps;
        self.bitrate_changes = s.bitrate_changes;
        self.reports_received = s.reports_received;
        self.peer_received = s.peer_received;
        self.peer_lost = s.peer_lost;
        self.max_gap = s.max_gap;
        self.jitter = s.jitter.clone();
        self.frames_recovered = s.recovered;
    }

    fn path_name(&self) -> &'static str {
        self.path.map(PathKind::name).unwrap_or("none")
    }

    fn loss_percent(&self) -> f64 {
        let expected = self
            .jitter
            .received
            .saturating_sub(self.jitter.duplicates + self.jitter.late)
            + self.jitter.lost;
        if expected == 0 {
            0.0
        } else {
            100.0 * self.jitter.lost as f64 / expected as f64
        }
    }

    /// Loss of the frames we send, as the peer last reported it.
    fn peer_loss_percent(&self) -> f64 {
        let expected = self.peer_received + self.peer_lost;
        if expected == 0 {
            0.0
        } else {
            100.0 * self.peer_lost as f64 / expected as f64
        }
    }

    /// The one-line live view.
    pub fn status_line(&self) -> String {
        format!(
            "[{:>5.1}s] path {} | rtt {} | loss {:.1}% (fec {}, concealed {}) | jitter {:.1} ms | {:.1} kbit/s | sent {} recv {}",
            self.duration.as_secs_f64(),
            self.path_name(),
            self.rtt.map(|r| format!("{} ms", r.as_millis())).unwrap_or_else(|| "-".into()),
            self.loss_percent(),
            self.jitter.fec_recovered,
            self.jitter.concealed,
            self.jitter.jitter_ms,
            f64::from(self.bitrate_bps) / 1000.0,
            self.frames_sent,
            self.frames_received_direct + self.frames_received_relay,
        )
    }

    /// The machine-readable form: the live `stats` lines and the final `call_end` line.
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path_name(),
            "path_switches": self.path_switches,
            "setup_ms": self.setup.map(|d| d.as_millis() as u64),
            "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent,
            "frames_received": self.frames_received_direct + self.frames_received_relay,
            "frames_received_direct": self.frames_received_direct,
            "frames_received_relay": self.frames_received_relay,
            "frames_lost": self.jitter.lost,
            "frames_concealed": self.jitter.concealed,
            "frames_fec_recovered": self.jitter.fec_recovered,
            "frames_late": self.jitter.late,
            "frames_duplicate": self.jitter.duplicates,
            "datagrams_forged": self.forged,
            "datagrams_replayed": self.replayed,
            "datagrams_malformed": self.malformed,
            "loss_percent": (self.loss_percent() * 100.0).round() / 100.0,
            "rtt_ms": self.rtt.map(|r| r.as_secs_f64() * 1000.0),
            "jitter_ms": self.jitter.jitter_ms,
            "jitter_buffer_ms": self.jitter.target_delay_ms,
            "bitrate_bps": self.bitrate_bps,
            "bitrate_min_bps": self.bitrate_min_bps,
            "bitrate_max_bps": self.bitrate_max_bps,
            "bitrate_changes": self.bitrate_changes,
            "expected_loss_percent": self.expected_loss_percent,
            "reports_received": self.reports_received,
            "peer_loss_percent": (self.peer_loss_percent() * 100.0).round() / 100.0,
            "duration_s": (self.duration.as_secs_f64() * 100.0).round() / 100.0,
            "ended_by": self.ended_by,
            "max_gap_ms": self.max_gap.as_millis() as u64,
            "transport": if self.transport.is_empty() { "udp" } else { self.transport },
            "dred_ms": self.dred_ms,
            "frames_recovered": self.frames_recovered,
        })
    }
}
