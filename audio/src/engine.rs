//! The Opus codec as the media engine (`parley_proto::media::MediaSession`) drives it.

use crate::codec::{Decoder, Encoder};
use crate::error::AudioError;
use parley_proto::media::{Decoded, EncoderTarget, HostError, MediaCodec, Playout};

/// [`Encoder`] and [`Decoder`] of one call behind the engine's [`MediaCodec`] trait.
pub struct OpusCodec {
    encoder: Encoder,
    decoder: Decoder,
    /// DRED stays off whatever the target says (the benchmark's "without DRED" column).
    dred_allowed: bool,
}

impl OpusCodec {
    /// An encoder starting at `bitrate_bps` and a fresh decoder; DRED as the engine asks.
    pub fn new(bitrate_bps: i32) -> Result<OpusCodec, AudioError> {
        Ok(OpusCodec {
            encoder: Encoder::new(bitrate_bps)?,
            decoder: Decoder::new()?,
            dred_allowed: true,
        })
    }

    /// Never adds DRED, whatever the engine asks (for comparisons).
    pub fn without_dred(mut self) -> OpusCodec {
        self.dred_allowed = false;
        self
    }
}

fn host(e: AudioError) -> HostError {
    HostError(e.to_string())
}

impl MediaCodec for OpusCodec {
    fn encode(&mut self, pcm: &[f32]) -> Result<Vec<u8>, HostError> {
        self.encoder.encode(pcm).map_err(host)
    }

    fn decode(&mut self, playout: &Playout) -> Result<(Vec<f32>, Decoded), HostError> {
        self.decoder.play(playout).map_err(host)
    }

    fn set_target(&mut self, target: &EncoderTarget) -> Result<(), HostError> {
        self.encoder.set_bitrate(target.bitrate_bps).map_err(host)?;
        self.encoder
            .set_expected_loss(target.expected_loss_percent)
            .map_err(host)?;
        let dred = if self.dred_allowed {
            target.dred_10ms
        } else {
            0
        };
        self.encoder.set_dred(dred).map_err(host)
    }
}
