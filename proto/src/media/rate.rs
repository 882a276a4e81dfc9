//! The sender's adaptive bitrate and FEC controller: the sender decides its Opus bitrate
//! and how much loss the encoder should protect against from what the receiver measures
//! (the DASH idea, applied to a live stream).
//!
//! Sans-IO like the rest of this crate: the call code feeds it the receiver's reports
//! ([`RateController::on_report`], the cumulative `received`/`lost` counts that
//! `MediaFrame::Report` carries, about once a second) and end-to-end RTT samples
//! ([`RateController::on_rtt`]), each with the time, and applies what
//! [`RateController::target`] returns to its encoder, with the DRED depth
//! [`dred_frames_for`] gives for [`RateController::measured_loss`] (the media engine
//! re-derives both after every report and RTT sample: the depth can move while bitrate
//! and expected loss hold, so [`RateController::poll_target`] alone would miss it).
//!
//! # Policy
//!
//! - **Loss is measured per report interval**, from the differences between consecutive
//!   cumulative reports, so a lost report only merges two intervals. A report whose
//!   counts went backwards (reordered behind a newer one) is ignored.
//! - **Decisions look at the last two intervals together** (at least
//!   [`MIN_DECISION_FRAMES`] frames between them), so one unlucky second does not move
//!   the rate: 10 % random loss over 100 frames is above 5 % nineteen times in twenty.
//! - **Loss above [`LOSS_HIGH`] (5 %) lowers the bitrate multiplicatively** (× 0.85)
//!   when the loss averaged over about eight seconds agrees: 100 frames are a small
//!   sample, and at a steady 3 % one two-second window in twelve exceeds 5 %; with the
//!   average as well, a 3 % path sees one step in ten minutes, a 10 % path one within
//!   about six seconds. At most one step per [`DECREASE_HOLD`], so the effect of one is
//!   measured before the next.
//! - **Loss alone never takes it below the FEC floor** (`fec_floor_bps`, 20 kbit/s by
//!   default). Below about that, libopus stops adding in-band FEC at 10–20 % loss
//!   (measured with the libopus we ship: none at 16 kbit/s, nearly every speech frame at
//!   20), and on a randomly lossy path a lower rate only trades the recovery data away:
//!   speech at 10 % loss correlates 0.92 with the original at 20 kbit/s, 0.84 at 16.
//!   Congestion is what the delay rule is for.
//! - **A smoothed RTT well above its baseline lowers it the same way**, down to
//!   `min_bps`: a queue is building, and sending less is the one thing that drains it.
//!   The baseline is the smallest RTT of the last [`RTT_BASELINE_WINDOW`]; "well above"
//!   is more than `baseline + max(100 ms, baseline / 2)`. (A queue that stands for longer
//!   than the window becomes the baseline: there is no draining it from our side.)
//! - **After [`CLEAN_HOLD`] of clean reports** (loss at most [`LOSS_CLEAN`], 2 %, both
//!   over the last two intervals and on average, and the RTT near its baseline) **the
//!   bitrate rises additively**, [`INCREASE_STEP_BPS`] per second, up to `max_bps`.
//!   Between 2 % and 5 % it holds. After a stretch of 10 % loss the average takes about
//!   twelve seconds to fall to 2 %, so the climb back starts some seventeen seconds after
//!   the loss stopped: slow on purpose, as a path that just lost a tenth of its packets
//!   is the likeliest to do it again.
//! - **Expected loss** (what the encoder's in-band FEC is sized for) is the measured
//!   loss, smoothed (it follows a rise within a couple of reports and decays over about
//!   eight), rounded up to a whole percent and clamped to
//!   [`EXPECTED_LOSS_FLOOR`]`..=`[`EXPECTED_LOSS_CEILING`] (5..=30) once the path has
//!   lost anything (smoothed loss at least [`CLEAN_LOSS`]); never above 30, where more
//!   FEC bits stop paying. On a clean path it is 0 (no FEC, no DRED): FEC costs a clean
//!   call about 0.2 PESQ. It starts at 0 until the first report says otherwise. libopus has the last
//!   word: at 5 % it adds FEC only if the bitrate affords it at full audio bandwidth
//!   (about 30 kbit/s and up), above 5 % it narrows the bandwidth to make room.

use crate::time::Timestamp;
use std::collections::VecDeque;
use std::time::Duration;

/// Interval loss above which the bitrate is lowered (fraction).
pub const LOSS_HIGH: f64 = 0.05;
/// Interval loss at or below which a report counts as clean (fraction).
pub const LOSS_CLEAN: f64 = 0.02;
/// Fewest frames the last two intervals must cover for a decision.
pub const MIN_DECISION_FRAMES: u64 = 20;
/// Factor applied to the bitrate on each decrease.
pub const DECREASE_FACTOR: f64 = 0.85;
/// Least time between two decreases.
pub const DECREASE_HOLD: Duration = Duration::from_secs(2);
/// How long reports must stay clean before the bitrate rises.
pub const CLEAN_HOLD: Duration = Duration::from_secs(5);
/// Bitrate added per second of clean reports once [`CLEAN_HOLD`] has passed.
pub const INCREASE_STEP_BPS: i32 = 1_000;
/// Least time between two increases.
pub const INCREASE_EVERY: Duration = Duration::from_secs(1);
/// How far back the RTT baseline (the minimum) looks.
pub const RTT_BASELINE_WINDOW: Duration = Duration::from_secs(60);
/// Smallest RTT rise over the baseline that counts as a building queue.
pub const RTT_RISE_MIN: Duration = Duration::from_millis(100);
/// Lowest expected loss handed to the encoder, in percent.
pub const EXPECTED_LOSS_FLOOR: u8 = 5;
/// Highest expected loss handed to the encoder, in percent.
pub const EXPECTED_LOSS_CEILING: u8 = 30;
/// Below this bitrate libopus (1.6) adds no FEC at all at 5 % expected loss (measured by
/// the quality benchmark), so the floor there is [`EXPECTED_LOSS_FLOOR_LOW_RATE`].
pub const LOW_RATE_BPS: i32 = 32_000;
/// Lowest expected loss handed to the encoder below [`LOW_RATE_BPS`], in percent.
pub const EXPECTED_LOSS_FLOOR_LOW_RATE: u8 = 10;
/// Expected loss assumed before the first report, in percent: none, a path is clean
/// until a report says otherwise (the first arrives within about a second).
pub const INITIAL_EXPECTED_LOSS: u8 = 0;
/// Smoothed loss (fraction) below which the path counts as clean: no in-band FEC and no
/// DRED, so a clean call gets the codec's full quality.
pub const CLEAN_LOSS: f64 = 0.005;
/// Deepest DRED the sender asks for, in 10 ms units: the jitter buffer holds at most
/// 300 ms, so older history could never be played.
pub const DRED_MAX_10MS: u8 = 30;

/// Smoothed loss (fraction) from which each audio datagram carries an exact copy of the
/// previous frame, when the peer accepts copies.
pub const REDUNDANCY_ONE_FROM: f64 = 0.02;
/// Smoothed loss (fraction) from which it carries copies of the previous two frames.
pub const REDUNDANCY_TWO_FROM: f64 = 0.08;

/// How many exact copies of the previous frames each audio datagram should carry for a
/// smoothed loss fraction (RFC 2198-style redundancy): none on a clean path (below
/// [`REDUNDANCY_ONE_FROM`]), one, or two from [`REDUNDANCY_TWO_FROM`]. With one copy a
/// frame is lost only if two datagrams in a row are (4 % of frames at 20 % random loss);
/// with two, three in a row (0.8 %).
pub fn redundancy_for(loss: f64) -> u8 {
    if loss.is_nan() || loss < REDUNDANCY_ONE_FROM {
        0
    } else if loss < REDUNDANCY_TWO_FROM {
        1
    } else {
        2
    }
}

/// Whether in-band FEC stays on while copies are sent (a copy of frame `n - 1` makes
/// its FEC in packet `n` redundant).
const FEC_WITH_REDUNDANCY: bool = false;

/// The deep-redundancy (Opus DRED) depth for a smoothed loss fraction, in 10 ms units:
/// none on a clean path (below [`CLEAN_LOSS`]), else `10 + loss·100`, at most
/// [`DRED_MAX_10MS`] (5 % → 150 ms, 10 % → 200 ms, 20 % → 300 ms). A deeper history
/// covers longer bursts; the jitter buffer's depth bounds what can be used.
pub fn dred_frames_for(loss: f64) -> u8 {
    if loss.is_nan() || loss < CLEAN_LOSS {
        return 0;
    }
    (10.0 + (loss * 100.0).round()).clamp(10.0, f64::from(DRED_MAX_10MS)) as u8
}

/// Smoothing gain of the loss estimate when loss rises (follows within two reports).
const LOSS_GAIN_UP: f64 = 0.5;
/// Smoothing gain when it falls (decays over about eight reports).
const LOSS_GAIN_DOWN: f64 = 0.125;
/// Smoothing gain of the loss average that decisions use.
const LOSS_GAIN_AVG: f64 = 0.125;
/// Smoothing gain of the RTT estimate.
const RTT_GAIN: f64 = 0.25;
/// RTT samples kept for the baseline (a sample a second covers the window).
const RTT_SAMPLES: usize = 128;

/// Bounds and starting point of a [`RateController`], in bit/s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Lowest bitrate ever chosen.
    pub min_bps: i32,
    /// Highest bitrate ever chosen.
    pub max_bps: i32,
    /// The bitrate at the start of the call.
    pub start_bps: i32,
    /// Loss alone does not lower the bitrate below this (see the module docs).
    pub fec_floor_bps: i32,
}

impl RateConfig {
    /// The defaults, with `bitrate` as both start and ceiling: adaptation only backs off
    /// from what the user chose, and comes back to it.
    pub fn capped_at(bitrate: i32) -> RateConfig {
        let defaults = RateConfig::default();
        RateConfig {
            min_bps: defaults.min_bps.min(bitrate),
            max_bps: bitrate,
            start_bps: bitrate,
            ..defaults
        }
    }
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            min_bps: 12_000,
            max_bps: 64_000,
            start_bps: 32_000,
            fec_floor_bps: 20_000,
        }
    }
}

impl RateConfig {
    /// The bounds made consistent: `min ≤ start ≤ max`, widening `min` or `max` to
    /// include `start` if needed.
    fn normalised(mut self) -> RateConfig {
        self.start_bps = self.start_bps.max(1);
        self.min_bps = self.min_bps.clamp(1, self.start_bps);
        self.max_bps = self.max_bps.max(self.start_bps);
        self
    }
}

/// What the encoder should use now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateTarget {
    /// Opus bitrate, in bit/s.
    pub bitrate_bps: i32,
    /// Expected packet loss for the encoder's in-band FEC, in percent.
    pub expected_loss_percent: u8,
    /// Copies of the previous frames each datagram carries ([`redundancy_for`]; 0 unless
    /// the peer accepts them).
    pub redundant_frames: u8,
}

/// Frames received and lost during one report interval.
#[derive(Clone, Copy, Debug, Default)]
struct Interval {
    received: u64,
    lost: u64,
}

/// The adaptive bitrate and FEC controller of one outgoing stream; see the module docs.
#[derive(Debug)]
pub struct RateController {
    config: RateConfig,
    bitrate: i32,
    /// Cumulative counts of the newest report.
    last_report: Interval,
    /// The last two intervals, newest last.
    intervals: VecDeque<Interval>,
    /// Smoothed loss fraction for the encoder's FEC: quick up, slow down.
    loss: f64,
    /// Loss fraction averaged over about eight reports, for decisions.
    loss_avg: f64,
    rtt_samples: VecDeque<(Timestamp, Duration)>,
    /// Smoothed RTT, in ms.
    srtt_ms: Option<f64>,
    last_decrease: Option<Timestamp>,
    last_increase: Option<Timestamp>,
    clean_since: Option<Timestamp>,
    changes: u64,
    polled: Option<RateTarget>,
    /// Whether the peer accepts redundant copies ([`RateController::set_redundancy_available`]).
    redundancy_available: bool,
}

impl RateController {
    /// A controller starting at `config.start_bps`, with nothing measured yet.
    pub fn new(config: RateConfig) -> RateController {
        let config = config.normalised();
        RateController {
            bitrate: config.start_bps,
            config,
            last_report: Interval::default(),
            intervals: VecDeque::with_capacity(2),
            loss: f64::from(INITIAL_EXPECTED_LOSS) / 100.0,
            loss_avg: 0.0,
            rtt_samples: VecDeque::new(),
            srtt_ms: None,
            last_decrease: None,
            last_increase: None,
            clean_since: None,
            changes: 0,
            polled: None,
            redundancy_available: false,
        }
    }

    /// The bounds in use (after [`RateController::new`] made them consistent).
    pub fn config(&self) -> &RateConfig {
        &self.config
    }

    /// A receiver report arrived at `now`: `received` and `lost` are its cumulative
    /// totals since the call started.
    pub fn on_report(&mut self, now: Timestamp, received: u64, lost: u64) {
        let prev = self.last_report;
        if received < prev.received || lost < prev.lost {
            return; // Older than one already seen.
        }
        let interval = Interval {
            received: received - prev.received,
            lost: lost - prev.lost,
        };
        // Counts come from the peer: add without trusting them to be small.
        let total = interval.received.saturating_add(interval.lost);
        if total == 0 {
            return; // Nothing sent meanwhile (or a duplicate): no news.
        }
        self.last_report = Interval { received, lost };
        if self.intervals.len() == 2 {
            self.intervals.pop_front();
        }
        self.intervals.push_back(interval);
        let fraction = interval.lost as f64 / total as f64;
        let gain = if fraction > self.loss {
            LOSS_GAIN_UP
        } else {
            LOSS_GAIN_DOWN
        };
        self.loss += (fraction - self.loss) * gain;
        self.loss_avg += (fraction - self.loss_avg) * LOSS_GAIN_AVG;

        let (lost, total) = self.intervals.iter().fold((0u64, 0u64), |(l, t), i| {
            (
                l.saturating_add(i.lost),
                t.saturating_add(i.received).saturating_add(i.lost),
            )
        });
        if total < MIN_DECISION_FRAMES {
            return;
        }
        let recent = lost as f64 / total as f64;
        if recent > LOSS_HIGH && self.loss_avg > LOSS_HIGH && self.redundancy() > 0 {
            // Loss without a queue is not congestion: copies answer it, the bitrate holds
            // (the delay rule still lowers it if a queue builds).
            self.clean_since = None;
        } else if recent > LOSS_HIGH && self.loss_avg > LOSS_HIGH {
            self.clean_since = None;
            // Loss alone stops at the FEC floor, or where the delay rule left it.
            let floor = self.config.fec_floor_bps.min(self.bitrate);
            self.decrease(now, floor);
        } else if recent > LOSS_CLEAN || self.loss_avg > LOSS_CLEAN || self.rtt_high() {
            self.clean_since = None;
        } else {
            let since = *self.clean_since.get_or_insert(now);
            self.maybe_increase(now, since);
        }
    }

    /// An end-to-end RTT sample (a ping's echo) arrived at `now`.
    pub fn on_rtt(&mut self, now: Timestamp, rtt: Duration) {
        if self.rtt_samples.len() == RTT_SAMPLES {
            self.rtt_samples.pop_front();
        }
        self.rtt_samples.push_back((now, rtt));
        while self
            .rtt_samples
            .front()
            .is_some_and(|&(t, _)| now.since(t) > RTT_BASELINE_WINDOW)
        {
            self.rtt_samples.pop_front();
        }
        let ms = rtt.as_secs_f64() * 1000.0;
        let srtt = self.srtt_ms.map_or(ms, |s| s + (ms - s) * RTT_GAIN);
        self.srtt_ms = Some(srtt);
        if self.rtt_high() {
            self.clean_since = None;
            self.decrease(now, self.config.min_bps);
        }
    }

    /// The peer accepts (or no longer accepts) redundant copies of earlier frames.
    pub fn set_redundancy_available(&mut self, available: bool) {
        self.redundancy_available = available;
    }

    /// Copies of earlier frames each datagram should carry now: one until the first
    /// report (the path is unknown, and a copy costs bandwidth only, never quality),
    /// then what the loss calls for.
    fn redundancy(&self) -> u8 {
        if !self.redundancy_available {
            0
        } else if self.last_report.received == 0 && self.last_report.lost == 0 {
            1
        } else {
            redundancy_for(self.loss)
        }
    }

    /// What the encoder should use now.
    pub fn target(&self) -> RateTarget {
        let redundant_frames = self.redundancy();
        if self.loss < CLEAN_LOSS {
            // A clean path: every bit to the primary encoding (FEC costs ~0.2 PESQ).
            return RateTarget {
                bitrate_bps: self.bitrate,
                expected_loss_percent: 0,
                redundant_frames,
            };
        }
        if redundant_frames > 0 && !FEC_WITH_REDUNDANCY {
            return RateTarget {
                bitrate_bps: self.bitrate,
                expected_loss_percent: 0,
                redundant_frames,
            };
        }
        let percent = (self.loss * 100.0).ceil().clamp(0.0, 100.0) as u8;
        let floor = if self.bitrate < LOW_RATE_BPS {
            EXPECTED_LOSS_FLOOR_LOW_RATE
        } else {
            EXPECTED_LOSS_FLOOR
        };
        RateTarget {
            bitrate_bps: self.bitrate,
            expected_loss_percent: percent.clamp(floor, EXPECTED_LOSS_CEILING),
            redundant_frames,
        }
    }

    /// The target if it changed since the last call (always, the first time).
    pub fn poll_target(&mut self) -> Option<RateTarget> {
        let target = self.target();
        if self.polled == Some(target) {
            return None;
        }
        self.polled = Some(target);
        Some(target)
    }

    /// How many times the bitrate has changed.
    pub fn bitrate_changes(&self) -> u64 {
        self.changes
    }

    /// The smoothed loss the receiver reports, as a fraction.
    pub fn measured_loss(&self) -> f64 {
        self.loss
    }

    /// Whether the smoothed RTT is well above the baseline.
    fn rtt_high(&self) -> bool {
        let (Some(srtt), Some(base)) =
            (self.srtt_ms, self.rtt_samples.iter().map(|&(_, r)| r).min())
        else {
            return false;
        };
        let base = base.as_secs_f64() * 1000.0;
        let margin = (RTT_RISE_MIN.as_secs_f64() * 1000.0).max(base / 2.0);
        srtt > base + margin
    }

    fn decrease(&mut self, now: Timestamp, floor: i32) {
        if self
            .last_decrease
            .is_some_and(|t| now.since(t) < DECREASE_HOLD)
        {
            return;
        }
        let lower = ((f64::from(self.bitrate) * DECREASE_FACTOR).round() as i32)
            .max(floor)
            .max(self.config.min_bps);
        if lower < self.bitrate {
            self.bitrate = lower;
            self.changes += 1;
            self.last_decrease = Some(now);
        }
    }

    fn maybe_increase(&mut self, now: Timestamp, clean_since: Timestamp) {
        if now.since(clean_since) < CLEAN_HOLD
            || self
                .last_increase
                .is_some_and(|t| now.since(t) < INCREASE_EVERY)
        {
            return;
        }
        let higher = (self.bitrate + INCREASE_STEP_BPS).min(self.config.max_bps);
        if higher > self.bitrate {
            self.bitrate = higher;
            self.changes += 1;
            self.last_increase = Some(now);
        }
    }
}

#[cfg(test)]
#[path = "rate_tests.rs"]
mod tests;
