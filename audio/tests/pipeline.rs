//! The receive pipeline end to end, on a virtual clock: speech → Opus → a network with
//! jitter and loss → jitter buffer → decoder → compared with what was sent.

use parley_audio::{
    align_and_correlate, read_wav_48k_mono, speech_fixture, Decoder, Encoder, DEFAULT_BITRATE,
    FRAME_SAMPLES,
};
use parley_proto::media::{JitterBuffer, JitterConfig, JitterStats};
use parley_proto::Timestamp;
use std::time::Instant;

/// About 10 s of speech: the fixture, a pause, the fixture again (different gain).
fn ten_seconds_of_speech() -> Vec<f32> {
    let speech = read_wav_48k_mono(speech_fixture()).expect("fixture");
    let mut out = speech.clone();
    out.extend(std::iter::repeat_n(0.0, 48_000 / 2));
    out.extend(speech.iter().map(|s| s * 0.7));
    out.truncate(10 * 48_000);
    out
}

/// Tiny deterministic PRNG so the network is reproducible without extra crates.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Sends `sent` through the pipeline; returns what was heard and the buffer's stats.
fn call(sent: &[f32], loss: f64, max_jitter_ms: u64, seed: u64) -> (Vec<f32>, JitterStats) {
    let mut rng = Lcg(seed);
    let mut enc = Encoder::new(DEFAULT_BITRATE).expect("encoder");
    let mut arrivals = Vec::new();
    for (seq, frame) in sent.chunks(FRAME_SAMPLES).enumerate() {
        let mut frame = frame.to_vec();
        frame.resize(FRAME_SAMPLES, 0.0);
        let packet = enc.encode(&frame).expect("encode");
        if rng.next() < loss {
            continue;
        }
        let delay = 30 + (rng.next() * max_jitter_ms as f64) as u64;
        arrivals.push((seq as u64 * 20 + delay, seq as u64, packet));
    }
    arrivals.sort_by_key(|a| a.0);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut dec = Decoder::new().expect("decoder");
    let mut heard = Vec::new();
    let mut due = arrivals.into_iter().peekable();
    let end = (sent.len() / FRAME_SAMPLES) as u64 * 20 + 2_000;
    for t in (0..end).step_by(20) {
        while let Some((at, seq, packet)) = due.next_if(|(at, _, _)| *at <= t) {
            jb.insert(Timestamp(at), seq, packet);
        }
        match jb.pop(Timestamp(t)) {
            Some(playout) => heard.extend(dec.play(&playout).expect("play").0),
            None => heard.extend([0.0; FRAME_SAMPLES]),
        }
    }
    (heard, jb.stats())
}

#[test]
fn clean_call_carries_speech() {
    let sent = ten_seconds_of_speech();
    let (heard, stats) = call(&sent, 0.0, 0, 1);
    let sim = align_and_correlate(&sent, &heard, 48_000);
    eprintln!("clean: {sim:?} {stats:?}");
    assert!(sim.correlation >= 0.9, "{sim:?}");
    assert_eq!(stats.lost, 0);
}

#[test]
fn call_with_loss_and_jitter_still_carries_speech() {
    let sent = ten_seconds_of_speech();
    let (heard, stats) = call(&sent, 0.03, 40, 2);
    let sim = align_and_correlate(&sent, &heard, 48_000);
    eprintln!("3% loss, 40 ms jitter: {sim:?} {stats:?}");
    assert!(stats.fec_recovered > 0, "{stats:?}");
    assert!(sim.correlation >= 0.6, "{sim:?}");
}

#[test]
fn aligning_ten_seconds_is_fast() {
    let sent = ten_seconds_of_speech();
    let mut heard = vec![0.0; 12_345];
    heard.extend(sent.iter().map(|s| s * 0.5));
    let start = Instant::now();
    let sim = align_and_correlate(&sent, &heard, 48_000);
    let took = start.elapsed();
    eprintln!("align_and_correlate on 10 s + 10 s: {took:?}");
    assert_eq!(sim.lag_samples, 12_345);
    assert!(sim.correlation > 0.999);
    assert!(took.as_secs_f64() < 5.0, "{took:?}");
}
