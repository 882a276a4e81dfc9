//! Opus for calls: 48 kHz mono, 20 ms frames, tuned for voice, with in-band forward
//! error correction (FEC).
//!
//! FEC in Opus works one frame back: when the encoder expects loss, each packet also
//! carries a low-bitrate copy of the *previous* frame. A receiver that lost frame `n` but
//! has frame `n + 1` calls [`Decoder::decode_fec`] with packet `n + 1` to rebuild frame
//! `n`, then [`Decoder::decode`]s packet `n + 1` as usual. The encoder only spends bits
//! on FEC when [`Encoder::set_expected_loss`] is above zero; the default assumes 10 %.

use crate::error::AudioError;
use opus::{Application, Bitrate, Channels, Signal};
use parley_proto::media::Playout;

/// Sample rate of all PCM in Parley, in Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE`], mono.
pub const FRAME_SAMPLES: usize = 960;
/// Default encoder bitrate, in bits per second.
pub const DEFAULT_BITRATE: i32 = 32_000;
/// Default expected packet loss, in percent: enough for the encoder to add FEC.
pub const DEFAULT_EXPECTED_LOSS: u8 = 10;
/// Lowest and highest bitrates Opus accepts, in bits per second.
pub const BITRATE_RANGE: std::ops::RangeInclusive<i32> = 6_000..=510_000;

/// Largest packet the encoder may produce (libopus' recommended buffer size).
const MAX_PACKET: usize = 4_000;
/// Room for the longest Opus packet (120 ms), so a wrong-sized packet is reported, not
/// truncated.
const MAX_DECODED: usize = 5_760;

/// Encodes 20 ms frames of 48 kHz mono PCM into Opus packets.
pub struct Encoder {
    inner: opus::Encoder,
}

impl Encoder {
    /// A voice encoder at `bitrate_bps` (clamped to [`BITRATE_RANGE`]) with FEC on and
    /// [`DEFAULT_EXPECTED_LOSS`].
    pub fn new(bitrate_bps: i32) -> Result<Encoder, AudioError> {
        let inner = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)
            .map_err(AudioError::codec("encoder setup"))?;
        let mut encoder = Encoder { inner };
        encoder
            .inner
            .set_signal(Signal::Voice)
            .map_err(AudioError::codec("encoder setup"))?;
        encoder
            .inner
            .set_inband_fec(true)
            .map_err(AudioError::codec("encoder setup"))?;
        encoder.set_bitrate(bitrate_bps)?;
        encoder.set_expected_loss(DEFAULT_EXPECTED_LOSS)?;
        Ok(encoder)
    }

    /// Encodes one frame: `pcm` must hold exactly [`FRAME_SAMPLES`] samples in [-1, 1].
    pub fn encode(&mut self, pcm: &[f32]) -> Result<Vec<u8>, AudioError> {
        check_frame(pcm.len())?;
        self.inner
            .encode_vec_float(pcm, MAX_PACKET)
            .map_err(AudioError::codec("encode"))
    }

    /// Changes the target bitrate (clamped to [`BITRATE_RANGE`]).
    pub fn set_bitrate(&mut self, bps: i32) -> Result<(), AudioError> {
        let bps = bps.clamp(*BITRATE_RANGE.start(), *BITRATE_RANGE.end());
        self.inner
            .set_bitrate(Bitrate::Bits(bps))
            .map_err(AudioError::codec("set bitrate"))
    }

    /// Tells the encoder how much loss to expect (0–100 %): the more, the more bits go to
    /// FEC. Zero turns FEC off in practice.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), AudioError> {
        self.inner
            .set_packet_loss_perc(i32::from(percent.min(100)))
            .map_err(AudioError::codec("set expected loss"))
    }
}

/// Decodes Opus packets into 20 ms frames of 48 kHz mono PCM, and stands in for lost ones.
///
/// Every method returns exactly [`FRAME_SAMPLES`] samples.
pub struct Decoder {
    inner: opus::Decoder,
}

impl Decoder {
    /// A fresh decoder.
    pub fn new() -> Result<Decoder, AudioError> {
        let inner = opus::Decoder::new(SAMPLE_RATE, Channels::Mono)
            .map_err(AudioError::codec("decoder setup"))?;
        Ok(Decoder { inner })
    }

    /// Decodes one packet that arrived. A packet that is not 20 ms long is an error
    /// ([`AudioError::FrameSize`]); so is a corrupt one ([`AudioError::Codec`]). An empty
    /// packet means "lost" and is concealed.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<f32>, AudioError> {
        if packet.is_empty() {
            return self.conceal();
        }
        let mut pcm = vec![0.0; MAX_DECODED];
        let n = self
            .inner
            .decode_float(packet, &mut pcm, false)
            .map_err(AudioError::codec("decode"))?;
        check_frame(n)?;
        pcm.truncate(n);
        Ok(pcm)
    }

    /// Rebuilds the lost frame *before* `next_packet` from the FEC data `next_packet`
    /// carries (falling back to concealment if it carries none). Decode `next_packet`
    /// itself with [`decode`](Self::decode) afterwards.
    pub fn decode_fec(&mut self, next_packet: &[u8]) -> Result<Vec<f32>, AudioError> {
        if next_packet.is_empty() {
            return self.conceal();
        }
        // With FEC, libopus decodes exactly as many samples as the buffer asks for.
        let mut pcm = vec![0.0; FRAME_SAMPLES];
        let n = self
            .inner
            .decode_float(next_packet, &mut pcm, true)
            .map_err(AudioError::codec("FEC decode"))?;
        check_frame(n)?;
        Ok(pcm)
    }

    /// Packet-loss concealment: a plausible 20 ms continuation of what came before,
    /// fading to silence if called repeatedly.
    pub fn conceal(&mut self) -> Result<Vec<f32>, AudioError> {
        let mut pcm = vec![0.0; FRAME_SAMPLES];
        let n = self
            .inner
            .decode_float(&[], &mut pcm, false)
            .map_err(AudioError::codec("loss concealment"))?;
        check_frame(n)?;
        Ok(pcm)
    }

    /// Turns what the jitter buffer handed out into PCM. A packet that fails to decode
    /// (corrupt, or not 20 ms) is concealed instead, so a call never stops on bad input;
    /// only a failure of concealment itself is returned as an error.
    pub fn play(&mut self, playout: &Playout) -> Result<Vec<f32>, AudioError> {
        let decoded = match playout {
            Playout::Frame { payload, .. } => self.decode(payload),
            Playout::Fec { next_payload, .. } => self.decode_fec(next_payload),
            Playout::Conceal { .. } => return self.conceal(),
        };
        decoded.or_else(|e| {
            tracing::debug!(error = %e, "undecodable audio frame, concealing it");
            self.conceal()
        })
    }
}

fn check_frame(got: usize) -> Result<(), AudioError> {
    if got == FRAME_SAMPLES {
        Ok(())
    } else {
        Err(AudioError::FrameSize {
            expected: FRAME_SAMPLES,
            got,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frames: usize) -> Vec<f32> {
        (0..frames * FRAME_SAMPLES)
            .map(|i| 0.3 * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin())
            .collect()
    }

    #[test]
    fn every_call_yields_one_frame() {
        let mut enc = Encoder::new(DEFAULT_BITRATE).unwrap();
        let mut dec = Decoder::new().unwrap();
        for frame in tone(5).chunks(FRAME_SAMPLES) {
            let packet = enc.encode(frame).unwrap();
            assert!(!packet.is_empty() && packet.len() < 400);
            assert_eq!(dec.decode(&packet).unwrap().len(), FRAME_SAMPLES);
            assert_eq!(dec.decode_fec(&packet).unwrap().len(), FRAME_SAMPLES);
            assert_eq!(dec.conceal().unwrap().len(), FRAME_SAMPLES);
            let played = dec.play(&Playout::Conceal { seq: 0 }).unwrap();
            assert_eq!(played.len(), FRAME_SAMPLES);
        }
    }

    #[test]
    fn wrong_sizes_and_garbage_are_errors_not_panics() {
        let mut enc = Encoder::new(DEFAULT_BITRATE).unwrap();
        assert!(matches!(
            enc.encode(&[0.0; 100]),
            Err(AudioError::FrameSize { got: 100, .. })
        ));
        let mut dec = Decoder::new().unwrap();
        let garbage = [0xffu8; 7];
        assert!(dec.decode(&garbage).is_err());
        let played = dec.play(&Playout::Frame {
            seq: 1,
            payload: garbage.to_vec(),
        });
        assert_eq!(played.unwrap().len(), FRAME_SAMPLES);
        // A valid 40 ms packet is refused, not truncated.
        let mut long = opus::Encoder::new(48_000, Channels::Mono, Application::Voip).unwrap();
        let packet = long.encode_vec_float(&tone(2), 4_000).unwrap();
        assert!(matches!(
            dec.decode(&packet),
            Err(AudioError::FrameSize { got: 1920, .. })
        ));
    }

    #[test]
    fn bitrate_and_loss_settings_are_accepted() {
        let mut enc = Encoder::new(1).unwrap();
        enc.set_bitrate(i32::MAX).unwrap();
        enc.set_bitrate(16_000).unwrap();
        enc.set_expected_loss(255).unwrap();
        enc.set_expected_loss(0).unwrap();
        assert!(enc.encode(&tone(1)).is_ok());
    }
}
