//! Opus for calls: 48 kHz mono, 20 ms frames, tuned for voice, with three ways to
//! survive loss, all from libopus 1.6 (bundled by `opusic-sys`, bound by `opusic-c` with
//! its `dred` and `osce` features):
//!
//! - **In-band FEC** works one frame back: when the encoder expects loss, each packet
//!   also carries a low-bitrate copy of the *previous* frame. A receiver that lost frame
//!   `n` but has frame `n + 1` calls [`Decoder::decode_fec`] with packet `n + 1`.
//! - **DRED** (deep redundancy, libopus 1.5+): each packet carries up to about a second
//!   of very-low-bitrate history (neural features), so a burst of lost frames is rebuilt
//!   from the first packet after it ([`Decoder::recover`]). [`Encoder::set_dred`] sets
//!   the depth; zero (the default) adds none.
//! - **Deep PLC**: with decoder complexity [`DECODER_COMPLEXITY`] (5) libopus conceals
//!   with a neural model instead of repeating pitch. OSCE (the low-bitrate speech
//!   enhancer, complexity 6–7) is compiled in but left off: it quadruples the decoder's
//!   cost (0.19 → 0.87 ms a frame on the 2-core VM) for a gain only below ~20 kbit/s.

use crate::error::AudioError;
use crate::packet::inspect;
use opusic_c::{dred::Dred, Application, Bitrate, Channels, InbandFec, SampleRate, Signal};
use parley_proto::media::{Decoded, Playout};
use std::collections::VecDeque;

/// Sample rate of all PCM in Parley, in Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE`], mono (the media engine's own constant).
pub use parley_proto::media::FRAME_SAMPLES;
/// Default encoder bitrate, in bits per second.
pub const DEFAULT_BITRATE: i32 = 32_000;
/// Default expected packet loss, in percent: none (no FEC until loss is measured).
pub const DEFAULT_EXPECTED_LOSS: u8 = 0;
/// Lowest and highest bitrates Opus accepts, in bits per second.
pub const BITRATE_RANGE: std::ops::RangeInclusive<i32> = 6_000..=510_000;
/// Decoder complexity: 5 and up turn on deep PLC (6: OSCE LACE, 7: NoLACE; see the
/// module docs for why not).
pub const DECODER_COMPLEXITY: u8 = 5;
/// Deepest DRED history the encoder accepts, in 10 ms units (libopus: 100, one second).
pub const DRED_MAX_10MS: u8 = 100;
/// Most frames one [`Decoder::recover`] rebuilds at once (1 s, the DRED maximum).
pub const RECOVER_MAX_FRAMES: u64 = 50;

/// Largest packet the encoder may produce (libopus' recommended buffer size).
const MAX_PACKET: usize = 4_000;
/// Room for the longest Opus packet (120 ms), so a wrong-sized packet is reported, not
/// truncated.
const MAX_DECODED: usize = 5_760;

/// Encodes 20 ms frames of 48 kHz mono PCM into Opus packets.
pub struct Encoder {
    inner: opusic_c::Encoder,
}

impl Encoder {
    /// A voice encoder at `bitrate_bps` (clamped to [`BITRATE_RANGE`]) with in-band FEC
    /// allowed, [`DEFAULT_EXPECTED_LOSS`] and no DRED.
    pub fn new(bitrate_bps: i32) -> Result<Encoder, AudioError> {
        let setup = AudioError::codec("encoder setup");
        let inner = opusic_c::Encoder::new(Channels::Mono, SampleRate::Hz48000, Application::Voip)
            .map_err(setup)?;
        let mut encoder = Encoder { inner };
        encoder
            .inner
            .set_signal(Signal::Voice)
            .map_err(AudioError::codec("encoder setup"))?;
        encoder
            .inner
            .set_inband_fec(InbandFec::Mode1)
            .map_err(AudioError::codec("encoder setup"))?;
        encoder.set_bitrate(bitrate_bps)?;
        encoder.set_expected_loss(DEFAULT_EXPECTED_LOSS)?;
        Ok(encoder)
    }

    /// Encodes one frame: `pcm` must hold exactly [`FRAME_SAMPLES`] samples in [-1, 1].
    pub fn encode(&mut self, pcm: &[f32]) -> Result<Vec<u8>, AudioError> {
        check_frame(pcm.len())?;
        let mut out = Vec::with_capacity(MAX_PACKET);
        self.inner
            .encode_float_to_vec(pcm, &mut out)
            .map_err(AudioError::codec("encode"))?;
        Ok(out)
    }

    /// Changes the target bitrate (clamped to [`BITRATE_RANGE`]).
    pub fn set_bitrate(&mut self, bps: i32) -> Result<(), AudioError> {
        let bps = bps.clamp(*BITRATE_RANGE.start(), *BITRATE_RANGE.end());
        self.inner
            .set_bitrate(Bitrate::Value(bps as u32))
            .map_err(AudioError::codec("set bitrate"))
    }

    /// Tells the encoder how much loss to expect (0–100 %): the more, the more bits go to
    /// FEC (and the more DRED, if on). Zero turns FEC off.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), AudioError> {
        self.inner
            .set_packet_loss(percent.min(100))
            .map_err(AudioError::codec("set expected loss"))
    }

    /// Sets the DRED depth, in 10 ms units (0: none; clamped to [`DRED_MAX_10MS`]).
    /// libopus takes DRED's bits from the bitrate and sizes them by the expected loss.
    pub fn set_dred(&mut self, depth_10ms: u8) -> Result<(), AudioError> {
        self.inner
            .set_dred_duration(depth_10ms.min(DRED_MAX_10MS))
            .map_err(AudioError::codec("set DRED duration"))
    }
}

/// Decodes Opus packets into 20 ms frames of 48 kHz mono PCM, and stands in for lost
/// ones: in-band FEC, DRED, or deep PLC.
///
/// Every method returns exactly [`FRAME_SAMPLES`] samples.
pub struct Decoder {
    inner: Dred,
    /// Frames rebuilt ahead by the last [`recover`](Self::recover): (seq, pcm), and
    /// whether the packet they came from carried DRED.
    rebuilt: VecDeque<(u64, Vec<f32>)>,
    rebuilt_from_dred: bool,
}

impl Decoder {
    /// A fresh decoder at [`DECODER_COMPLEXITY`].
    pub fn new() -> Result<Decoder, AudioError> {
        let mut plain = opusic_c::Decoder::new(Channels::Mono, SampleRate::Hz48000)
            .map_err(AudioError::codec("decoder setup"))?;
        plain
            .set_complexity(DECODER_COMPLEXITY)
            .map_err(AudioError::codec("decoder setup"))?;
        let inner = Dred::new(plain).map_err(AudioError::codec("DRED decoder setup"))?;
        Ok(Decoder {
            inner,
            rebuilt: VecDeque::new(),
            rebuilt_from_dred: false,
        })
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
            .decoder_mut()
            .decode_float_to_slice(packet, &mut pcm, false)
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
            .decoder_mut()
            .decode_float_to_slice(next_packet, &mut pcm, true)
            .map_err(AudioError::codec("FEC decode"))?;
        check_frame(n)?;
        Ok(pcm)
    }

    /// Rebuilds lost frame `seq` from the DRED history in `later_packet` (frame
    /// `later_seq`, `later_seq - seq` frames on). All the frames from `seq` up to the
    /// later one are rebuilt in one go (libopus decodes the redundancy once); the next
    /// calls for `seq + 1`, … with the same later packet return them from memory. Where
    /// the packet carries no DRED reaching back that far, libopus conceals (deep PLC).
    pub fn recover(
        &mut self,
        seq: u64,
        later_seq: u64,
        later_packet: &[u8],
    ) -> Result<Vec<f32>, AudioError> {
        if let Some(pcm) = self.take_rebuilt(seq) {
            return Ok(pcm);
        }
        self.rebuilt.clear();
        let ahead = later_seq.saturating_sub(seq);
        self.rebuilt_from_dred = inspect(later_packet).is_some_and(|i| i.padding > 0);
        if ahead == 0 || ahead > RECOVER_MAX_FRAMES || later_packet.is_empty() {
            self.rebuilt_from_dred = false;
            return self.conceal();
        }
        let mut pcm = vec![0.0; FRAME_SAMPLES * ahead as usize];
        match self.inner.decode_float_to_slice(later_packet, &mut pcm) {
            Ok(n) if n == pcm.len() => {}
            // A corrupt later packet: nothing to rebuild from.
            _ => {
                self.rebuilt_from_dred = false;
                return self.conceal();
            }
        }
        let mut frames = pcm.chunks(FRAME_SAMPLES).map(<[f32]>::to_vec);
        let first = frames.next().unwrap_or_else(|| vec![0.0; FRAME_SAMPLES]);
        self.rebuilt = (seq + 1..).zip(frames).collect();
        Ok(first)
    }

    /// Packet-loss concealment: a plausible 20 ms continuation of what came before
    /// (deep PLC), fading to silence if called repeatedly.
    pub fn conceal(&mut self) -> Result<Vec<f32>, AudioError> {
        let mut pcm = vec![0.0; FRAME_SAMPLES];
        let n = self
            .inner
            .decoder_mut()
            .decode_float_to_slice(&[], &mut pcm, false)
            .map_err(AudioError::codec("loss concealment"))?;
        check_frame(n)?;
        Ok(pcm)
    }

    /// Turns what the jitter buffer handed out into PCM, and says how it came about
    /// (from the packet, its FEC, DRED, or concealed: read from the packets themselves,
    /// [`crate::PacketInfo`]). A packet that fails to decode (corrupt, or not 20 ms) is
    /// concealed instead, so a call never stops on bad input; only a failure of
    /// concealment itself is returned as an error.
    ///
    /// The last lost frame before a packet is rebuilt from that packet's FEC, except
    /// right after a DRED rebuild: DRED decoded it already (libopus rebuilds every frame
    /// up to the packet at once), and decoding it again would run the decoder's state a
    /// frame ahead of what is played.
    pub fn play(&mut self, playout: &Playout) -> Result<(Vec<f32>, Decoded), AudioError> {
        let (decoded, how) = match playout {
            Playout::Frame { payload, .. } | Playout::Redundant { payload, .. } => {
                self.rebuilt.clear();
                (self.decode(payload), Decoded::Packet)
            }
            Playout::Fec { seq, next_payload } => {
                if let Some(pcm) = self.take_rebuilt(*seq) {
                    return Ok((pcm, self.rebuilt_how()));
                }
                self.rebuilt.clear();
                let how = if inspect(next_payload).is_some_and(|i| i.lbrr) {
                    Decoded::Fec
                } else {
                    Decoded::Concealed
                };
                (self.decode_fec(next_payload), how)
            }
            Playout::Recover {
                seq,
                later_seq,
                later_payload,
            } => {
                let pcm = self.recover(*seq, *later_seq, later_payload);
                (pcm, self.rebuilt_how())
            }
            Playout::Conceal { .. } => {
                self.rebuilt.clear();
                return Ok((self.conceal()?, Decoded::Concealed));
            }
        };
        match decoded {
            Ok(pcm) => Ok((pcm, how)),
            Err(e) => {
                tracing::debug!(error = %e, "undecodable audio frame, concealing it");
                Ok((self.conceal()?, Decoded::Concealed))
            }
        }
    }

    /// Frame `seq` if the last DRED rebuild already produced it.
    fn take_rebuilt(&mut self, seq: u64) -> Option<Vec<f32>> {
        while self.rebuilt.front().is_some_and(|(s, _)| *s < seq) {
            self.rebuilt.pop_front();
        }
        match self.rebuilt.front() {
            Some((s, _)) if *s == seq => self.rebuilt.pop_front().map(|(_, pcm)| pcm),
            _ => None,
        }
    }

    fn rebuilt_how(&self) -> Decoded {
        if self.rebuilt_from_dred {
            Decoded::Dred
        } else {
            Decoded::Concealed
        }
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
            assert_eq!(played, (played.0.clone(), Decoded::Concealed));
            assert_eq!(played.0.len(), FRAME_SAMPLES);
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
        let (pcm, how) = played.unwrap();
        assert_eq!((pcm.len(), how), (FRAME_SAMPLES, Decoded::Concealed));
        // A valid 40 ms packet is refused, not truncated.
        let mut long =
            opusic_c::Encoder::new(Channels::Mono, SampleRate::Hz48000, Application::Voip).unwrap();
        let mut packet = Vec::with_capacity(4_000);
        long.encode_float_to_vec(&tone(2), &mut packet).unwrap();
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
