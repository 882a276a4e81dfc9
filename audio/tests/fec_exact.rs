//! FEC, exactly: a lost frame that the jitter buffer hands out as `Playout::Fec` must come
//! out of `Decoder::play` bit for bit as libopus' own FEC decoding of the next packet
//! would give it, in a stream with losses, with nothing added, skipped or reordered.
//! And the packets must carry FEC data wherever the sender's rate controller may take
//! the encoder, or "FEC recoveries" would only be concealment under another name.

use opusic_c::{Channels, SampleRate};
use parley_audio::{
    read_wav_48k_mono, speech_fixture, Decoder, Encoder, FrameSource, WavSource,
    DECODER_COMPLEXITY, DEFAULT_BITRATE, FRAME_SAMPLES,
};
use parley_proto::media::rate::{RateConfig, EXPECTED_LOSS_CEILING, EXPECTED_LOSS_FLOOR};
use parley_proto::media::{JitterBuffer, JitterConfig, Playout};
use parley_proto::time::Timestamp;
use std::time::Duration;

fn speech_frames() -> Vec<Vec<f32>> {
    let speech = read_wav_48k_mono(speech_fixture()).expect("fixture");
    // The same framing a call uses: 20 ms frames, the last one zero-padded.
    let mut source = WavSource::from_samples(speech);
    std::iter::from_fn(|| source.next_frame()).collect()
}

fn encode(frames: &[Vec<f32>], bps: i32, expected_loss: u8) -> Vec<Vec<u8>> {
    let mut enc = Encoder::new(bps).expect("encoder");
    enc.set_expected_loss(expected_loss).expect("expected loss");
    frames
        .iter()
        .map(|f| enc.encode(f).expect("encode"))
        .collect()
}

fn bits(pcm: &[f32]) -> Vec<u32> {
    pcm.iter().map(|s| s.to_bits()).collect()
}

/// What a receiver that knows which packets arrived gets from a fresh libopus decoder:
/// decode what arrived; for a lost packet whose successor arrived, decode the successor
/// with `decode_fec = 1` into a buffer of one frame; otherwise conceal (no data).
fn libopus_reference(packets: &[Vec<u8>], arrived: &[bool]) -> Vec<Vec<f32>> {
    let mut dec = opusic_c::Decoder::new(Channels::Mono, SampleRate::Hz48000).expect("decoder");
    dec.set_complexity(DECODER_COMPLEXITY).expect("complexity");
    (0..packets.len())
        .map(|k| {
            let mut pcm = vec![0.0f32; FRAME_SAMPLES];
            let n = if arrived[k] {
                dec.decode_float_to_slice(&packets[k], &mut pcm, false)
            } else if arrived.get(k + 1) == Some(&true) {
                dec.decode_float_to_slice(&packets[k + 1], &mut pcm, true)
            } else {
                dec.decode_float_to_slice(&[], &mut pcm, false)
            }
            .expect("libopus decode");
            assert_eq!(n, FRAME_SAMPLES);
            pcm
        })
        .collect()
}

#[test]
fn fec_playout_matches_libopus_fec_decoding_bit_for_bit() {
    let frames = speech_frames();
    let packets = encode(&frames, DEFAULT_BITRATE, 10);
    let n = packets.len();
    // Single losses (rebuilt from FEC) every 9 frames. (Longer bursts go to DRED:
    // `dred.rs`.)
    let arrived: Vec<bool> = (0..n)
        .map(|k| !(k >= 20 && k + 2 < n && k % 9 == 0))
        .collect();

    // Our path: steady arrivals through the jitter buffer, one pop per 20 ms, `play`.
    // Four frames of delay, so that the frame after a pair of losses is already here
    // (with less, the buffer would first wait a period for it: right for a call, but
    // then the stream is no longer the same frame for frame), and no more: under loss the
    // buffer would otherwise stretch its delay two frames further, inserting periods.
    let t0 = 1_700_000_000_000u64;
    let mut jb = JitterBuffer::new(JitterConfig {
        min_delay: Duration::from_millis(80),
        max_delay: Duration::from_millis(80),
        ..JitterConfig::default()
    });
    let mut dec = Decoder::new().unwrap();
    let mut ours: Vec<(u64, Vec<f32>)> = Vec::new();
    let mut kinds = (0, 0);
    for tick in 0..(n as u64 + 50) {
        let now = Timestamp(t0 + tick * 20);
        if (tick as usize) < n && arrived[tick as usize] {
            jb.insert(now, tick, packets[tick as usize].clone());
        }
        let Some(playout) = jb.pop(now) else { continue };
        let seq = match &playout {
            Playout::Frame { seq, .. }
            | Playout::Redundant { seq, .. }
            | Playout::Fec { seq, .. }
            | Playout::Conceal { seq }
            | Playout::Recover { seq, .. } => *seq,
        };
        if seq as usize >= n {
            break; // The stream ended: the tail is concealment of nothing.
        }
        match playout {
            Playout::Fec { .. } => kinds.0 += 1,
            Playout::Conceal { .. } | Playout::Recover { .. } => kinds.1 += 1,
            Playout::Frame { .. } | Playout::Redundant { .. } => {}
        }
        ours.push((seq, dec.play(&playout).unwrap().0));
    }
    let seqs: Vec<u64> = ours.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (0..n as u64).collect::<Vec<_>>(),
        "one playout per frame"
    );
    let lost = arrived.iter().filter(|a| !**a).count();
    assert_eq!(kinds, (lost, 0), "every loss rebuilt from FEC");

    let reference = libopus_reference(&packets, &arrived);
    for (k, ((_, got), want)) in ours.iter().zip(&reference).enumerate() {
        assert!(bits(got) == bits(want), "frame {k} differs from libopus");
    }
    // That these packets carry FEC data at all (FEC output is not just concealment) is
    // the next test's business.
}

/// Fraction of speech frames whose FEC rebuild differs from plain concealment from the
/// same decoder state, i.e. whose successor carried FEC data.
fn fec_presence(frames: &[Vec<f32>], bps: i32, expected_loss: u8) -> f64 {
    let packets = encode(frames, bps, expected_loss);
    let (mut with, mut tried) = (0, 0);
    for k in (50..packets.len() - 1).step_by(11) {
        let mut a = Decoder::new().expect("decoder");
        let mut b = Decoder::new().expect("decoder");
        for p in &packets[..k] {
            a.decode(p).expect("decode");
            b.decode(p).expect("decode");
        }
        tried += 1;
        let fec = a.decode_fec(&packets[k + 1]).expect("FEC decode");
        if bits(&fec) != bits(&b.conceal().expect("conceal")) {
            with += 1;
        }
    }
    f64::from(with) / f64::from(tried)
}

/// Where the rate controller takes the encoder under loss (its FEC floor, expected loss
/// above 5 %) and where a clean call sits (the default bitrate, expected loss at its
/// floor), the packets carry FEC. libopus decides this itself: at 5 % it adds FEC only if
/// the bitrate affords it at full audio bandwidth; above 5 % it narrows the bandwidth to
/// make room, down to a bitrate below which it gives up (about 16 kbit/s at 10 %).
#[test]
fn packets_carry_fec_wherever_the_rate_controller_goes() {
    let frames = speech_frames();
    let floor = RateConfig::default().fec_floor_bps;
    for (bps, loss) in [
        (floor, EXPECTED_LOSS_FLOOR + 1),
        (floor, 10),
        (floor, EXPECTED_LOSS_CEILING),
        (DEFAULT_BITRATE, EXPECTED_LOSS_FLOOR),
    ] {
        let present = fec_presence(&frames, bps, loss);
        eprintln!("{bps} bit/s, expected loss {loss} %: FEC in {present:.2} of frames");
        // Silent frames carry no FEC worth the name; the fixture is ~80 % speech.
        assert!(
            present >= 0.7,
            "{bps} bit/s at {loss} %: FEC in {present:.2}"
        );
    }
}
