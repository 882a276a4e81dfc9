//! The sending half of a simulated call: the encoder, set either to fixed values or by
//! the client's adaptive rate controller, which learns about the path from receiver
//! reports and pings that cross the simulated network like everything else.

use anyhow::{Context, Result};
use parley_audio::Encoder;
use parley_proto::media::rate::{RateConfig, RateController, RateTarget};
use parley_proto::Timestamp;
use std::cmp::Reverse;

/// How the sender sets its encoder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateMode {
    /// The configured bitrate throughout, FEC sized for this loss (percent).
    Fixed {
        /// Expected loss handed to the encoder, percent.
        expected_loss_pct: u8,
    },
    /// The client's adaptive controller (`parley_proto::media::rate`), starting at the
    /// configured bitrate (also its ceiling, as in the client) and fed by receiver
    /// reports and pings that cross the same impaired network.
    Adaptive,
}

/// What travels back to the sender.
pub enum Control {
    /// Cumulative frames received and lost, as the client's receiver reports them.
    Report {
        /// Frames received in time, cumulative.
        received: u64,
        /// Frames lost, cumulative.
        lost: u64,
    },
    /// The answer to a ping sent at this time.
    Pong(Timestamp),
}

/// The sending half: encoder, optional rate controller, and the control messages on
/// their way back to it.
pub struct Sender {
    /// The encoder, set as the controller says.
    pub encoder: Encoder,
    /// The controller, in [`RateMode::Adaptive`].
    pub rate: Option<RateController>,
    /// What the encoder is set to now.
    pub target: RateTarget,
    /// Reports and pongs on their way back, with their arrival times.
    pub inbox: Vec<(Timestamp, Control)>,
}

impl Sender {
    /// An encoder at `bitrate`, set up for `mode`.
    pub fn new(bitrate: i32, mode: RateMode) -> Result<Sender> {
        let (rate, target) = match mode {
            RateMode::Fixed { expected_loss_pct } => (
                None,
                RateTarget {
                    bitrate_bps: bitrate,
                    expected_loss_percent: expected_loss_pct,
                },
            ),
            RateMode::Adaptive => {
                // As the client sets it up: the chosen bitrate is start and ceiling.
                let rate = RateController::new(RateConfig::capped_at(bitrate));
                let target = rate.target();
                (Some(rate), target)
            }
        };
        let mut encoder = Encoder::new(target.bitrate_bps).context("encoder")?;
        encoder
            .set_expected_loss(target.expected_loss_percent)
            .context("encoder")?;
        Ok(Sender {
            encoder,
            rate,
            target,
            inbox: Vec::new(),
        })
    }

    /// Hands the controller what has arrived by `now` and applies its decision.
    pub fn update(&mut self, now: Timestamp) -> Result<()> {
        let Some(rate) = self.rate.as_mut() else {
            return Ok(());
        };
        self.inbox.sort_by_key(|&(at, _)| Reverse(at));
        while self.inbox.last().is_some_and(|&(at, _)| at <= now) {
            let Some((at, message)) = self.inbox.pop() else {
                break;
            };
            match message {
                Control::Report { received, lost } => rate.on_report(at, received, lost),
                Control::Pong(sent) => rate.on_rtt(at, at.since(sent)),
            }
        }
        if let Some(target) = rate.poll_target() {
            self.encoder
                .set_bitrate(target.bitrate_bps)
                .context("encoder")?;
            self.encoder
                .set_expected_loss(target.expected_loss_percent)
                .context("encoder")?;
            self.target = target;
        }
        Ok(())
    }
}
