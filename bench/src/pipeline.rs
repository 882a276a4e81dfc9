//! The send and receive halves of a call, joined by a simulated network instead of
//! sockets, on a virtual clock; and the "Opus ceiling", the codec alone.
//!
//! Timeline (all in milliseconds after `T0`): frame `i` holds reference samples
//! `960·i .. 960·(i+1)`, so it is complete, encoded and sent at `20·(i+1)` (the capture
//! buffering is one frame). The impairment model decides when (and whether) it arrives;
//! the receiver inserts it into the jitter buffer at that time. The receiver's playout
//! clock ticks every 20 ms at `phase + 20·k`, independent of the sender's, and each tick
//! pops one playout from the jitter buffer and decodes it into output samples
//! `960·k .. 960·(k+1)` (silence while the buffer has nothing to play). So output sample
//! `j` is heard at `phase + j/48`: if the output lags the reference by `lag` samples, the
//! capture-to-playout delay is `phase + lag/48` ms.

use crate::fixed::FixedPlayout;
use crate::sender::{Control, RateMode, Sender};
use anyhow::{Context, Result};
use parley_audio::{Decoder, Encoder, FRAME_SAMPLES, SAMPLE_RATE};
use parley_proto::media::impair::{ImpairConfig, Impairment};
use parley_proto::media::{JitterBuffer, JitterConfig, JitterStats, Playout};
use parley_proto::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Duration of one frame, in milliseconds.
pub const FRAME_MS: u64 = 20;
/// Start of the virtual clock (any time will do; this one is recognisable in logs).
const T0: u64 = 1_700_000_000_000;
/// Playout periods run after the last frame was sent, so that the jitter buffer (at
/// most 300 ms deep) plays everything out.
const TAIL_PERIODS: u64 = 40;
/// Like the client: a receiver report every 50 periods (offset by 25), a ping every 50.
const REPORT_EVERY: u64 = 50;
const REPORT_OFFSET: u64 = 25;
const PING_EVERY: u64 = 50;

/// Samples per millisecond at the pipeline's rate.
pub const SAMPLES_PER_MS: f64 = SAMPLE_RATE as f64 / 1000.0;

/// The network and codec settings of one simulated call.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// Encoder bitrate, bits per second.
    pub bitrate: i32,
    /// Fixed encoder settings or the adaptive controller.
    pub rate: RateMode,
    /// What the network does to the packets (seeded).
    pub impair: ImpairConfig,
    /// Offset of the receiver's playout clock from the sender's capture clock, in
    /// milliseconds (`0..20`: the two clocks are not in phase in a real call).
    pub phase_ms: u64,
    /// How the receiver times its playout.
    pub receiver: ReceiverMode,
}

/// How the receiver times its playout.
#[derive(Clone, Debug)]
pub enum ReceiverMode {
    /// The adaptive jitter buffer, as in the client.
    JitterBuffer(JitterConfig),
    /// For comparison: every frame played this many ms after it was sent (rounded up to
    /// the receiver's next tick), see [`FixedPlayout`].
    Fixed {
        /// Send-to-playout delay, ms.
        delay_ms: u64,
    },
}

/// The receiver's playout timing, either kind.
enum Receiver {
    Adaptive(Box<JitterBuffer>),
    Fixed(FixedPlayout),
}

impl Receiver {
    fn new(mode: &ReceiverMode, phase_ms: u64) -> Receiver {
        match mode {
            ReceiverMode::JitterBuffer(c) => {
                Receiver::Adaptive(Box::new(JitterBuffer::new(c.clone())))
            }
            // Frame 0 is sent at 20 ms; tick k is at phase + 20·k.
            ReceiverMode::Fixed { delay_ms } => Receiver::Fixed(FixedPlayout::new(
                (FRAME_MS + delay_ms)
                    .saturating_sub(phase_ms)
                    .div_ceil(FRAME_MS),
            )),
        }
    }

    fn insert(&mut self, now: Timestamp, seq: u64, payload: Vec<u8>) {
        match self {
            Receiver::Adaptive(b) => b.insert(now, seq, payload),
            Receiver::Fixed(f) => f.insert(seq, payload),
        }
    }

    fn pop(&mut self, now: Timestamp, k: u64) -> Option<Playout> {
        match self {
            Receiver::Adaptive(b) => b.pop(now),
            Receiver::Fixed(f) => f.pop(k),
        }
    }

    fn stats(&self) -> JitterStats {
        match self {
            Receiver::Adaptive(b) => b.stats(),
            Receiver::Fixed(f) => f.stats(),
        }
    }
}

/// What the receiver played, and how the jitter buffer fared.
#[derive(Debug)]
pub struct CallOutput {
    /// 48 kHz output, starting at the receiver's first playout tick (`phase_ms`).
    pub pcm: Vec<f32>,
    /// The receiver's first playout tick, in ms after the first sample was captured.
    pub phase_ms: u64,
    /// Mean one-way network delay of the packets that arrived, in ms.
    pub mean_network_ms: f64,
    /// Mean time from a frame's capture start to the start of its playout, over the
    /// frames played as received, in ms (excludes codec look-ahead). A cross-check of
    /// the delay measured by alignment, insensitive to mid-call delay changes.
    pub mean_frame_delay_ms: f64,
    /// Frames sent.
    pub frames: usize,
    /// Packets the network lost.
    pub network_lost: usize,
    /// The jitter buffer's counters as of the last sent frame played.
    pub jitter: JitterStats,
    /// Periods played from FEC data.
    pub fec_recovered: u64,
    /// Periods concealed, up to the last sent frame played (the concealment after it,
    /// while the buffer notices that the stream has ended, is not counted).
    pub concealed: u64,
    /// Concealed periods that did not move the playout point on (the buffer was empty:
    /// it waited for a frame that might only be late), each adding a frame of delay.
    pub underruns: u64,
    /// Encoder bitrate averaged over the frames sent, bit/s.
    pub mean_bitrate_bps: f64,
    /// Expected loss handed to the encoder, averaged over the frames sent, percent.
    pub mean_expected_loss_pct: f64,
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

/// Runs `reference` (48 kHz mono) through a whole call: encoder, network, jitter
/// buffer, decoder; and, in [`RateMode::Adaptive`], reports and pings back to the
/// sender's rate controller. Every period the receiver plays first (at
/// `phase + 20·k`), then the sender sends frame `k` (at `20·(k+1)`).
pub fn simulate_call(reference: &[f32], config: &CallConfig) -> Result<CallOutput> {
    let frames = frames(reference);
    let mut sender = Sender::new(config.bitrate, config.rate)?;
    let mut network = Impairment::new(config.impair);
    // Control traffic has channels of its own, so that the audio packets meet the same
    // fate whether or not the controller runs.
    let control = |n: u64| ImpairConfig {
        seed: config.impair.seed ^ (n << 56),
        ..config.impair
    };
    let (mut ping_path, mut back_path) = (Impairment::new(control(1)), Impairment::new(control(2)));
    let mut in_flight: BinaryHeap<Reverse<(Timestamp, u64, Vec<u8>)>> = BinaryHeap::new();
    let (mut network_ms, mut delivered, mut network_lost) = (0u64, 0u64, 0usize);
    let (mut bitrate_sum, mut expected_loss_sum) = (0f64, 0f64);

    let mut buffer = Receiver::new(&config.receiver, config.phase_ms);
    let mut decoder = Decoder::new().context("decoder")?;
    let periods = frames.len() as u64 + TAIL_PERIODS;
    let mut pcm = Vec::with_capacity(periods as usize * FRAME_SAMPLES);
    let (mut frame_delay_ms, mut frames_played) = (0u64, 0u64);
    let (mut fec_recovered, mut concealed) = (0u64, 0u64);
    // The counters as of the last period that played a sent frame (from the packet or
    // its FEC): what comes after is the buffer noticing that the stream has ended.
    let mut counted = (0u64, 0u64, buffer.stats());
    for k in 0..periods {
        // Receiver: insert what has arrived (in arrival order, ties in sending order),
        // then play one period.
        let now = Timestamp(T0 + config.phase_ms + FRAME_MS * k);
        while in_flight
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= now)
        {
            if let Some(Reverse((_, seq, payload))) = in_flight.pop() {
                buffer.insert(now, seq, payload);
            }
        }
        if sender.rate.is_some() && k % REPORT_EVERY == REPORT_OFFSET {
            let s = buffer.stats();
            if s.received > 0 {
                let received = s.received.saturating_sub(s.duplicates + s.late);
                for at in back_path.send(now) {
                    let report = Control::Report {
                        received,
                        lost: s.lost,
                    };
                    sender.inbox.push((at, report));
                }
            }
        }
        if let Some(playout) = buffer.pop(now, k) {
            pcm.extend(decoder.play(&playout).context("decode")?);
            match playout {
                Playout::Frame { seq, .. } => {
                    frame_delay_ms += now.0 - (T0 + FRAME_MS * seq);
                    frames_played += 1;
                    counted = (fec_recovered, concealed, buffer.stats());
                }
                Playout::Fec { .. } => {
                    fec_recovered += 1;
                    counted = (fec_recovered, concealed, buffer.stats());
                }
                Playout::Conceal { .. } => concealed += 1,
            }
        } else {
            pcm.extend(std::iter::repeat_n(0.0, FRAME_SAMPLES));
        }

        // Sender: take in reports and pongs, then send frame k.
        let now = Timestamp(T0 + FRAME_MS * (k + 1));
        sender.update(now)?;
        if sender.rate.is_some() && k % PING_EVERY == 0 {
            // The peer answers a ping the moment it arrives.
            for reached in ping_path.send(now) {
                for back in back_path.send(reached) {
                    sender.inbox.push((back, Control::Pong(now)));
                }
            }
        }
        let Some(frame) = frames.get(k as usize) else {
            continue;
        };
        let packet = sender.encoder.encode(frame).context("encode")?;
        bitrate_sum += f64::from(sender.target.bitrate_bps);
        expected_loss_sum += f64::from(sender.target.expected_loss_percent);
        let copies = network.send(now);
        if copies.is_empty() {
            network_lost += 1;
        }
        for at in copies {
            network_ms += at.0 - now.0;
            delivered += 1;
            in_flight.push(Reverse((at, k, packet.clone())));
        }
    }
    let (fec_recovered, concealed, jitter) = counted;
    let sent = frames.len().max(1) as f64;
    Ok(CallOutput {
        pcm,
        phase_ms: config.phase_ms,
        mean_network_ms: network_ms as f64 / delivered.max(1) as f64,
        mean_frame_delay_ms: frame_delay_ms as f64 / frames_played.max(1) as f64,
        frames: frames.len(),
        network_lost,
        fec_recovered,
        concealed,
        // Every lost frame the buffer moved past was played once, from FEC or concealed;
        // the other concealed periods were underruns.
        underruns: (fec_recovered + concealed).saturating_sub(jitter.lost),
        jitter,
        mean_bitrate_bps: bitrate_sum / sent,
        mean_expected_loss_pct: expected_loss_sum / sent,
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
            rate: RateMode::Fixed {
                expected_loss_pct: 0,
            },
            impair: parse_spec(spec).expect("spec"),
            phase_ms,
            receiver: ReceiverMode::JitterBuffer(JitterConfig::default()),
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
    fn clean_call_plays_every_frame_with_the_minimum_delay() {
        let reference = speech();
        let out = simulate_call(&reference, &config("seed=1", 0)).expect("call");
        let s = align_and_correlate(&reference, &out.pcm, 48_000);
        assert!(s.correlation > 0.9, "{s:?}");
        let j = &out.jitter;
        assert_eq!((j.lost, j.late, j.concealed, j.discarded), (0, 0, 0, 0));
        assert_eq!(j.received as usize, out.frames);
        // Frame 0 is sent at 20 ms and played once two frames (40 ms) are buffered.
        assert_eq!(out.mean_frame_delay_ms, 40.0);
        let total_ms = out.phase_ms as f64 + s.lag_samples as f64 / SAMPLES_PER_MS;
        assert!((40.0..50.0).contains(&total_ms), "{total_ms}");
    }

    #[test]
    fn adaptive_controller_backs_off_under_loss_and_sizes_fec() {
        let mut reference = speech();
        reference.extend(speech());
        let c = CallConfig {
            rate: RateMode::Adaptive,
            ..config("loss=15,seed=3", 5)
        };
        let out = simulate_call(&reference, &c).expect("call");
        assert!(out.mean_bitrate_bps < 32_000.0, "{}", out.mean_bitrate_bps);
        assert!(
            out.mean_expected_loss_pct >= 10.0,
            "{}",
            out.mean_expected_loss_pct
        );
        let clean = CallConfig {
            rate: RateMode::Adaptive,
            ..config("seed=3", 5)
        };
        let out = simulate_call(&reference, &clean).expect("call");
        assert_eq!(out.mean_bitrate_bps, 32_000.0);
        assert!(out.mean_expected_loss_pct >= 5.0, "FEC stays on");
    }

    #[test]
    fn fixed_playout_plays_at_its_delay() {
        let reference = speech();
        let c = CallConfig {
            receiver: ReceiverMode::Fixed { delay_ms: 50 },
            ..config("loss=5,jitter=30,seed=2", 7)
        };
        let out = simulate_call(&reference, &c).expect("call");
        // Frame 0 is sent at 20 ms and played at the first tick (7 + 20·k) after 70 ms.
        assert_eq!(out.mean_frame_delay_ms, 87.0);
        assert_eq!((out.jitter.late, out.underruns), (0, 0));
        assert!(out.fec_recovered > 0);
    }

    #[test]
    fn lossy_jittery_call_is_reproducible_and_counts_losses() {
        let reference = speech();
        let c = config("loss=10,jitter=30,seed=5", 7);
        let a = simulate_call(&reference, &c).expect("call");
        let b = simulate_call(&reference, &c).expect("call");
        assert_eq!(a.pcm, b.pcm);
        assert!(a.network_lost > 0);
        assert!(a.jitter.lost > 0, "{a:?}");
        assert!(a.jitter.fec_recovered > 0);
        assert!(a.mean_network_ms > 5.0 && a.mean_network_ms < 25.0);
    }
}
