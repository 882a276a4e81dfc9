//! A whole call on a virtual clock: two of the client's media engines
//! (`parley_proto::media::MediaSession`, with the client's Opus codec) joined by the
//! seeded impairment model instead of sockets; and the "Opus ceiling", the codec alone.
//!
//! The engines run exactly as in the client — the same cadence, jitter buffer, reports,
//! probes, rate controller, FEC and DRED decisions — only the clock is virtual and the
//! network simulated. Timeline (ms after `T0`): the sender's engine starts at 20, so its
//! period `i` (at `20·(i+1)`) captures, encodes and sends frame `i`, which holds
//! reference samples `960·i .. 960·(i+1)` (one frame of capture buffering). The
//! impairment model decides when (and whether) each datagram arrives. The receiver's
//! engine starts at `phase` and plays one period every 20 ms of its own clock into output
//! samples `960·k .. 960·(k+1)` (silence while there is nothing to play). So output
//! sample `j` is heard at `phase + j/48`: if the output lags the reference by `lag`
//! samples, the capture-to-playout delay is `phase + lag/48` ms.

use anyhow::{Context, Result};
use parley_audio::{Decoder, Encoder, OpusCodec, FRAME_SAMPLES, SAMPLE_RATE};
use parley_proto::call::e2e::{initiate, prologue, respond};
use parley_proto::call::media::MediaCrypto;
use parley_proto::media::impair::{ImpairConfig, Impairment};
use parley_proto::media::rate::RateConfig;
use parley_proto::media::{
    AudioPort, EncoderTarget, HostError, JitterConfig, JitterStats, MediaSession, PathKind,
    PlayKind, Recovery, SessionConfig, TransmitKind,
};
use parley_proto::{Identity, Timestamp};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Duration of one frame, in milliseconds.
pub const FRAME_MS: u64 = 20;
/// Start of the virtual clock (any time will do; this one is recognisable in logs).
const T0: u64 = 1_700_000_000_000;
/// After the input ends the sender goes on this long before hanging up, so that the
/// receiver's jitter buffer (at most 300 ms deep) plays everything out.
const TAIL: Duration = Duration::from_millis(800);

/// Samples per millisecond at the pipeline's rate.
pub const SAMPLES_PER_MS: f64 = SAMPLE_RATE as f64 / 1000.0;

/// How the sender sets its encoder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateMode {
    /// The configured bitrate throughout; FEC sized for this loss (percent) and DRED
    /// for the same loss (`parley_proto::media::rate::dred_frames_for`).
    Fixed {
        /// Expected loss handed to the encoder, percent.
        expected_loss_pct: u8,
        /// Copies of the previous frames in each datagram.
        redundant_frames: u8,
    },
    /// The client's adaptive controller, starting at (and capped by) the configured
    /// bitrate, fed by receiver reports and pings that cross the same impaired network.
    Adaptive,
}

/// The network and codec settings of one simulated call.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// Encoder bitrate, bits per second.
    pub bitrate: i32,
    /// Fixed encoder settings or the adaptive controller.
    pub rate: RateMode,
    /// Whether the encoder may add DRED when the engine asks for it.
    pub dred: bool,
    /// What the network does to the packets (seeded).
    pub impair: ImpairConfig,
    /// Offset of the receiver's clock from the sender's, ms (`0..20`).
    pub phase_ms: u64,
    /// The receiver's jitter buffer.
    pub jitter: JitterConfig,
}

/// What the receiver played, and how the call fared.
#[derive(Debug)]
pub struct CallOutput {
    /// 48 kHz output, starting at the receiver's first period (`phase_ms`).
    pub pcm: Vec<f32>,
    /// The receiver's first period, in ms after the first sample was captured.
    pub phase_ms: u64,
    /// Mean one-way network delay of the audio packets that arrived, in ms.
    pub mean_network_ms: f64,
    /// Mean time from a frame's capture start to the start of its playout, over the
    /// frames played as received, in ms (excludes codec look-ahead).
    pub mean_frame_delay_ms: f64,
    /// Frames sent.
    pub frames: usize,
    /// Audio packets the network lost.
    pub network_lost: usize,
    /// The receiver's jitter-buffer counters at the end of the call.
    pub jitter: JitterStats,
    /// Periods played from a later packet's redundancy (FEC or DRED), up to the last
    /// sent frame played.
    pub recovered: u64,
    /// Periods concealed up to the last sent frame played.
    pub concealed: u64,
    /// How the receiver played each period, up to the last sent frame played (what the
    /// codec really did: a copy, FEC, DRED, or concealment).
    pub recovery: Recovery,
    /// Copies of earlier frames per datagram, averaged over the frames sent.
    pub mean_redundant_frames: f64,
    /// Bits actually sent for audio (Opus packets, FEC and DRED included), per second.
    pub mean_bitrate_bps: f64,
    /// Expected loss handed to the encoder, averaged over the frames sent, percent.
    pub mean_expected_loss_pct: f64,
    /// DRED depth the encoder was asked for, averaged over the frames sent, ms.
    pub mean_dred_ms: f64,
}

/// The sender's audio: the reference, frame by frame, then the end of input.
struct Reference {
    frames: Vec<Vec<f32>>,
    next: usize,
}

impl AudioPort for Reference {
    fn capture(&mut self) -> Option<Vec<f32>> {
        let f = self.frames.get(self.next).cloned();
        self.next += 1;
        f
    }
    fn play(&mut self, _: &[f32], _: PlayKind) -> Result<(), HostError> {
        Ok(())
    }
}

/// The receiver's audio: silence in, everything played recorded with its kind.
#[derive(Default)]
struct Recorder {
    pcm: Vec<f32>,
    kinds: Vec<PlayKind>,
}

impl AudioPort for Recorder {
    fn capture(&mut self) -> Option<Vec<f32>> {
        Some(vec![0.0; FRAME_SAMPLES])
    }
    fn play(&mut self, pcm: &[f32], kind: PlayKind) -> Result<(), HostError> {
        self.pcm.extend_from_slice(pcm);
        self.kinds.push(kind);
        Ok(())
    }
}

/// Splits `pcm` into whole frames, padding the last one with silence.
fn frames(pcm: &[f32]) -> Vec<Vec<f32>> {
    pcm.chunks(FRAME_SAMPLES)
        .map(|c| {
            let mut f = c.to_vec();
            f.resize(FRAME_SAMPLES, 0.0);
            f
        })
        .collect()
}

fn crypto_pair() -> Result<(MediaCrypto, MediaCrypto)> {
    let (a, b) = (Identity::generate(), Identity::generate());
    let p = prologue(&[0; 16], &a.peer_id(), &b.peer_id());
    let (pending, m1) = initiate(&a, &b.peer_id(), &p).context("handshake")?;
    let (kb, m2) = respond(&b, &a.peer_id(), &p, &m1).context("handshake")?;
    let ka = pending.finish(&m2).context("handshake")?;
    Ok((MediaCrypto::new(ka), MediaCrypto::new(kb)))
}

fn session_config(config: &CallConfig) -> SessionConfig {
    let fixed = |loss: u8, redundant_frames: u8| EncoderTarget {
        bitrate_bps: config.bitrate,
        expected_loss_percent: loss,
        dred_10ms: parley_proto::media::rate::dred_frames_for(f64::from(loss) / 100.0),
        redundant_frames,
    };
    let (rate, fixed_target) = match config.rate {
        RateMode::Fixed {
            expected_loss_pct,
            redundant_frames,
        } => (None, fixed(expected_loss_pct, redundant_frames)),
        RateMode::Adaptive => (Some(RateConfig::capped_at(config.bitrate)), fixed(0, 0)),
    };
    SessionConfig {
        jitter: config.jitter.clone(),
        rate,
        fixed_target,
        input_tail: TAIL,
        ..SessionConfig::default()
    }
}

type Flight = Reverse<(Timestamp, u64, usize, Vec<u8>)>;

/// Runs `reference` (48 kHz mono) through a whole call from a sender to a receiver.
pub fn simulate_call(reference: &[f32], config: &CallConfig) -> Result<CallOutput> {
    let frames = frames(reference);
    let n_frames = frames.len();
    let (ka, kb) = crypto_pair()?;
    let sc = session_config(config);
    let codec = |dred: bool| -> Result<OpusCodec> {
        let c = OpusCodec::new(config.bitrate).context("codec")?;
        Ok(if dred { c } else { c.without_dred() })
    };
    let mut a = MediaSession::new(
        sc.clone(),
        ka,
        codec(config.dred)?,
        Reference { frames, next: 0 },
        Timestamp(T0 + FRAME_MS),
    )
    .map_err(|e| anyhow::anyhow!("sender: {e}"))?;
    let mut b = MediaSession::new(
        sc,
        kb,
        codec(config.dred)?,
        Recorder::default(),
        Timestamp(T0 + config.phase_ms),
    )
    .map_err(|e| anyhow::anyhow!("receiver: {e}"))?;
    a.path_up(Timestamp(T0), PathKind::Direct);
    b.path_up(Timestamp(T0), PathKind::Direct);
    // Channels: [from][audio, control]. Audio from the sender has the call's own seed,
    // so its packets meet the same fate whatever the controller does.
    let channel = |n: u64| {
        Impairment::new(ImpairConfig {
            seed: if n == 0 {
                config.impair.seed
            } else {
                config.impair.seed ^ (n << 56)
            },
            ..config.impair
        })
    };
    let mut channels = [[channel(0), channel(1)], [channel(3), channel(2)]];
    let mut in_flight: BinaryHeap<Flight> = BinaryHeap::new();
    let mut order = 0u64;
    let (mut network_ms, mut delivered, mut network_lost) = (0u64, 0u64, 0usize);
    let (mut loss_sum, mut dred_sum, mut copies_sum, mut ticks) = (0f64, 0f64, 0f64, 0u64);
    let mut recovery = Recovery::default();
    let limit = Timestamp(T0 + (n_frames as u64 + 200) * FRAME_MS);
    let mut now = Timestamp(T0);
    while now < limit && (a.ended().is_none() || b.ended().is_none()) {
        // The sender's period, then what has arrived by now (its frame included, if the
        // network is that fast), then the receiver's period: as in the client, a frame
        // that arrives in time for a period is played in it.
        if a.poll_timeout().is_some_and(|t| t <= now) {
            a.handle_timeout(now)
                .map_err(|e| anyhow::anyhow!("sender: {e}"))?;
            if let Some(t) = a.stats().target {
                loss_sum += f64::from(t.expected_loss_percent);
                dred_sum += f64::from(t.dred_10ms) * 10.0;
                if a.stats().peer_accepts_redundancy {
                    copies_sum += f64::from(t.redundant_frames);
                }
                ticks += 1;
            }
        }
        #[allow(clippy::needless_range_loop)] // `step` is the sending side, not an index.
        for step in 0..2 {
            let transmits: Vec<_> = if step == 0 {
                std::iter::from_fn(|| a.poll_transmit()).collect()
            } else {
                std::iter::from_fn(|| b.poll_transmit()).collect()
            };
            for t in transmits {
                let audio = t.kind == TransmitKind::Audio;
                let arrivals = channels[step][usize::from(!audio)].send(now);
                if step == 0 && audio {
                    if arrivals.is_empty() {
                        network_lost += 1;
                    }
                    for at in &arrivals {
                        network_ms += at.0 - now.0;
                        delivered += 1;
                    }
                }
                for at in arrivals {
                    order += 1;
                    in_flight.push(Reverse((at, order, 1 - step, t.bytes.clone())));
                }
            }
            while in_flight.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
                if let Some(Reverse((_, _, to, bytes))) = in_flight.pop() {
                    if to == 0 {
                        a.handle_datagram(now, PathKind::Direct, &bytes);
                    } else {
                        b.handle_datagram(now, PathKind::Direct, &bytes);
                    }
                }
            }
            if step == 0 && b.poll_timeout().is_some_and(|t| t <= now) {
                b.handle_timeout(now)
                    .map_err(|e| anyhow::anyhow!("receiver: {e}"))?;
                // Counted up to the last period that played a sent frame (after it, the
                // buffer conceals while it notices that the stream ended).
                let last = b.audio_mut().kinds.last().copied();
                if matches!(last, Some(PlayKind::Frame(_) | PlayKind::Recovered(_))) {
                    recovery = b.stats().recovery;
                }
            }
        }
        // Next thing to happen.
        let next = [
            a.poll_timeout(),
            b.poll_timeout(),
            in_flight.peek().map(|r| r.0 .0),
        ]
        .into_iter()
        .flatten()
        .min();
        now = match next {
            Some(t) if t > now => t,
            _ => Timestamp(now.0 + 1),
        };
    }
    let sent = a.stats();
    let jitter = b.stats().jitter;
    let rec = b.audio_mut();
    // Counters up to the last period that played a sent frame: after it, the buffer is
    // noticing that the stream ended.
    let last = rec
        .kinds
        .iter()
        .rposition(|k| matches!(k, PlayKind::Frame(_) | PlayKind::Recovered(_)))
        .unwrap_or(0);
    let kinds = &rec.kinds[..=last.min(rec.kinds.len().saturating_sub(1))];
    let recovered = kinds
        .iter()
        .filter(|k| matches!(k, PlayKind::Recovered(_)))
        .count() as u64;
    let concealed = kinds.iter().filter(|k| **k == PlayKind::Concealed).count() as u64;
    let (mut frame_delay, mut played) = (0u64, 0u64);
    for (k, kind) in rec.kinds.iter().enumerate() {
        if let PlayKind::Frame(seq) = kind {
            let at = config.phase_ms + FRAME_MS * k as u64;
            frame_delay += at.saturating_sub(FRAME_MS * seq);
            played += 1;
        }
    }
    let secs = (n_frames.max(1) as f64) * FRAME_MS as f64 / 1000.0;
    Ok(CallOutput {
        pcm: std::mem::take(&mut rec.pcm),
        phase_ms: config.phase_ms,
        mean_network_ms: network_ms as f64 / delivered.max(1) as f64,
        mean_frame_delay_ms: frame_delay as f64 / played.max(1) as f64,
        frames: n_frames,
        network_lost,
        jitter,
        recovered,
        concealed,
        recovery,
        mean_redundant_frames: copies_sum / ticks.max(1) as f64,
        mean_bitrate_bps: sent.bytes_sent as f64 * 8.0 / secs,
        mean_expected_loss_pct: loss_sum / ticks.max(1) as f64,
        mean_dred_ms: dred_sum / ticks.max(1) as f64,
    })
}

/// The codec alone: every frame encoded and decoded at once, no network, no jitter
/// buffer. The output lags the input by the codec's look-ahead only.
pub fn opus_ceiling(reference: &[f32], bitrate: i32, expected_loss_pct: u8) -> Result<Vec<f32>> {
    let mut encoder = Encoder::new(bitrate).context("encoder")?;
    encoder
        .set_expected_loss(expected_loss_pct)
        .context("encoder")?;
    let mut decoder = Decoder::new().context("decoder")?;
    let mut pcm = Vec::with_capacity(reference.len() + 2 * FRAME_SAMPLES);
    // Two frames of silence after the end flush the look-ahead out.
    let mut frames = frames(reference);
    frames.extend([vec![0.0; FRAME_SAMPLES], vec![0.0; FRAME_SAMPLES]]);
    for frame in &frames {
        let packet = encoder.encode(frame).context("encode")?;
        pcm.extend(decoder.decode(&packet).context("decode")?);
    }
    Ok(pcm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_audio::align_and_correlate;
    use parley_proto::media::impair::parse_spec;

    fn speech() -> Vec<f32> {
        parley_audio::read_wav_48k_mono(parley_audio::speech_fixture()).expect("fixture")
    }

    fn config(spec: &str, phase_ms: u64) -> CallConfig {
        CallConfig {
            bitrate: 32_000,
            rate: RateMode::Adaptive,
            dred: true,
            impair: parse_spec(spec).expect("spec"),
            phase_ms,
            jitter: JitterConfig::default(),
        }
    }

    #[test]
    fn ceiling_lags_by_the_codec_lookahead_only() {
        let reference = speech();
        let out = opus_ceiling(&reference, 32_000, 0).expect("ceiling");
        let s = align_and_correlate(&reference, &out, 4_800);
        // libopus at 48 kHz: 2.5 ms CELT look-ahead plus 4 ms of SILK resampler delay.
        assert!((100..=400).contains(&s.lag_samples), "{s:?}");
        assert!(s.correlation > 0.9, "{s:?}");
    }

    #[test]
    fn clean_call_plays_every_frame_with_the_minimum_delay_and_no_redundancy() {
        let reference = speech();
        let out = simulate_call(&reference, &config("seed=1", 0)).expect("call");
        let s = align_and_correlate(&reference, &out.pcm, 48_000);
        assert!(s.correlation > 0.9, "{s:?}");
        let j = &out.jitter;
        assert_eq!((j.lost, j.late, j.discarded), (0, 0, 0));
        assert_eq!((out.recovered, out.concealed), (0, 0));
        assert_eq!(j.received as usize, out.frames);
        // Frame 0 is sent at 20 ms and played once two frames (40 ms) are buffered.
        assert_eq!(out.mean_frame_delay_ms, 40.0);
        let total_ms = out.phase_ms as f64 + s.lag_samples as f64 / SAMPLES_PER_MS;
        assert!((40.0..50.0).contains(&total_ms), "{total_ms}");
        assert_eq!((out.mean_expected_loss_pct, out.mean_dred_ms), (0.0, 0.0));
    }

    #[test]
    fn lossy_call_turns_copies_on_and_is_reproducible() {
        let reference = speech();
        let c = config("loss=10,burst=3,jitter=30,seed=5", 7);
        let a = simulate_call(&reference, &c).expect("call");
        let b = simulate_call(&reference, &c).expect("call");
        assert_eq!(a.pcm, b.pcm);
        assert!(a.network_lost > 0 && a.jitter.lost > 0, "{a:?}");
        assert!(a.recovered > 0, "{a:?}");
        // Copies of the previous frames (two at 10 %) instead of FEC and DRED, and some
        // of them used (bursts longer than two frames are concealed).
        assert!(a.mean_redundant_frames > 1.0, "{a:?}");
        assert!(a.recovery.redundant > 0 && a.recovery.fec == 0, "{a:?}");
        assert!(a.mean_bitrate_bps > 60_000.0, "{a:?}");
        let without = simulate_call(&reference, &CallConfig { dred: false, ..c }).expect("call");
        assert_eq!(without.network_lost, a.network_lost, "same packets lost");
    }

    #[test]
    fn fixed_fec_and_dred_rebuild_lost_frames_from_both() {
        let reference = speech();
        let c = CallConfig {
            rate: RateMode::Fixed {
                expected_loss_pct: 20,
                redundant_frames: 0,
            },
            ..config("loss=20,seed=3", 5)
        };
        let a = simulate_call(&reference, &c).expect("call");
        assert!(a.mean_dred_ms > 200.0, "{a:?}");
        let r = a.recovery;
        assert!(r.fec > 10 && r.dred > 2 && r.redundant == 0, "{r:?}");
        let without = simulate_call(&reference, &CallConfig { dred: false, ..c }).expect("call");
        assert_eq!(without.recovery.dred, 0, "{:?}", without.recovery);
        assert!(a.mean_bitrate_bps > without.mean_bitrate_bps + 4_000.0);
    }
}
