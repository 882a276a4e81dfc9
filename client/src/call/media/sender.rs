//! The sending half of a call's media: encode and send one frame every 20 ms, and adapt
//! the encoder to what the peer's reports and the RTT say about the path
//! ([`RateController`]: lower the bitrate on sustained loss or a building queue, raise
//! it back on a clean path, and size the in-band FEC to the measured loss).

use super::super::media_paths::MediaPaths;
use super::super::stats::CallStats;
use super::impair::Outbox;
use crate::output::Printer;
use anyhow::Result;
use parley_audio::Encoder;
use parley_net::clock::now;
use parley_proto::call::media::{MediaCrypto, MediaFrame};
use parley_proto::media::rate::{RateConfig, RateController};
use serde_json::json;
use std::time::Duration;

/// Encoder, rate controller and outgoing frame numbering of one call.
pub struct Sender {
    encoder: Encoder,
    rate: RateController,
    outbox: Outbox,
    frame_no: u64,
    out: Printer,
}

impl Sender {
    /// Starts at the user's `bitrate`, which is also the ceiling: adaptation only backs
    /// off from what the user chose, and comes back to it.
    pub fn new(bitrate: i32, outbox: Outbox, out: Printer, stats: &mut CallStats) -> Result<Self> {
        let rate = RateController::new(RateConfig::capped_at(bitrate));
        let mut sender = Sender {
            encoder: Encoder::new(bitrate)?,
            rate,
            outbox,
            frame_no: 0,
            out,
        };
        stats.bitrate_bps = bitrate;
        stats.bitrate_min_bps = bitrate;
        stats.bitrate_max_bps = bitrate;
        sender.apply(stats)?;
        Ok(sender)
    }

    /// Encodes, seals and sends one captured frame.
    pub fn send_audio(
        &mut self,
        pcm: &[f32],
        crypto: &mut MediaCrypto,
        paths: &MediaPaths,
        stats: &mut CallStats,
    ) -> Result<()> {
        let opus = self.encoder.encode(pcm)?;
        stats.bytes_sent += opus.len() as u64;
        let sealed = crypto.seal(&MediaFrame::Audio {
            frame: self.frame_no,
            opus,
        });
        self.frame_no += 1;
        if self.outbox.send(paths, sealed) {
            stats.frames_sent += 1;
        }
        Ok(())
    }

    /// Seals and sends a report, ping or pong: they cross the same (impaired) network
    /// as the audio.
    pub fn send_control(
        &mut self,
        frame: &MediaFrame,
        crypto: &mut MediaCrypto,
        paths: &MediaPaths,
    ) {
        let sealed = crypto.seal(frame);
        self.outbox.send(paths, sealed);
    }

    /// The peer reported its cumulative `received` and `lost` counts of our frames.
    pub fn on_report(&mut self, received: u64, lost: u64, stats: &mut CallStats) -> Result<()> {
        stats.reports_received += 1;
        stats.peer_received = received;
        stats.peer_lost = lost;
        self.rate.on_report(now(), received, lost);
        self.apply(stats)
    }

    /// An end-to-end RTT sample (one of our pings came back).
    pub fn on_rtt(&mut self, rtt: Duration, stats: &mut CallStats) -> Result<()> {
        stats.rtt = Some(rtt);
        self.rate.on_rtt(now(), rtt);
        self.apply(stats)
    }

    /// Hands a changed target to the encoder and the statistics.
    fn apply(&mut self, stats: &mut CallStats) -> Result<()> {
        let Some(target) = self.rate.poll_target() else {
            return Ok(());
        };
        self.encoder.set_bitrate(target.bitrate_bps)?;
        self.encoder
            .set_expected_loss(target.expected_loss_percent)?;
        stats.expected_loss_percent = target.expected_loss_percent;
        let bps = target.bitrate_bps;
        if bps != stats.bitrate_bps {
            self.out.event(
                "bitrate",
                json!({"bitrate_bps": bps, "expected_loss_percent": target.expected_loss_percent}),
                format!(
                    "bitrate now {:.1} kbit/s (FEC sized for {} % loss)",
                    f64::from(bps) / 1000.0,
                    target.expected_loss_percent
                ),
            );
            stats.bitrate_bps = bps;
            stats.bitrate_min_bps = stats.bitrate_min_bps.min(bps);
            stats.bitrate_max_bps = stats.bitrate_max_bps.max(bps);
            stats.bitrate_changes = self.rate.bitrate_changes();
        }
        Ok(())
    }
}
