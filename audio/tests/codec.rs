//! Opus on real speech: quality through the codec, and FEC rebuilding a lost frame.

use parley_audio::{
    align_and_correlate, pearson_at, read_wav_48k_mono, speech_fixture, Decoder, Encoder,
    FrameSource, WavSource, DEFAULT_BITRATE, FRAME_SAMPLES,
};
use parley_proto::media::Playout;

fn speech_frames() -> Vec<Vec<f32>> {
    let speech = read_wav_48k_mono(speech_fixture()).expect("fixture");
    assert!(
        speech.len() > 6 * 48_000,
        "fixture is {} samples",
        speech.len()
    );
    // The same framing a call uses: 20 ms frames, the last one zero-padded.
    let mut source = WavSource::from_samples(speech);
    std::iter::from_fn(|| source.next_frame()).collect()
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt()
}

#[test]
fn speech_survives_opus_at_the_default_bitrate() {
    let frames = speech_frames();
    let mut enc = Encoder::new(DEFAULT_BITRATE).unwrap();
    let mut dec = Decoder::new().unwrap();
    let mut decoded = Vec::new();
    let mut bytes = 0;
    for frame in &frames {
        let packet = enc.encode(frame).unwrap();
        bytes += packet.len();
        decoded.extend(dec.decode(&packet).unwrap());
    }
    let sent: Vec<f32> = frames.concat();
    let sim = align_and_correlate(&sent, &decoded, 4_800);
    let kbps = bytes as f64 * 8.0 / (frames.len() as f64 * 0.02) / 1000.0;
    eprintln!("opus: {sim:?}, {kbps:.1} kbit/s");
    assert!(sim.correlation >= 0.9, "{sim:?}");
    // libopus' look-ahead at 48 kHz is 312 samples (6.5 ms).
    assert!((0..=960).contains(&sim.lag_samples), "{sim:?}");
    assert!(kbps < 45.0, "{kbps} kbit/s");
}

/// Losing frame `k` of a speech stream: rebuilding it from frame `k + 1`'s FEC data must
/// beat plain concealment, judged against what decoding frame `k` itself would give.
#[test]
fn fec_from_the_next_packet_beats_concealment() {
    let frames = speech_frames();
    let mut enc = Encoder::new(DEFAULT_BITRATE).unwrap();
    enc.set_expected_loss(10).unwrap();
    let packets: Vec<Vec<u8>> = frames.iter().map(|f| enc.encode(f).unwrap()).collect();

    let mut reference = Decoder::new().unwrap();
    let clean: Vec<Vec<f32>> = packets
        .iter()
        .map(|p| reference.decode(p).unwrap())
        .collect();

    let (mut fec_total, mut plc_total, mut tried) = (0.0, 0.0, 0);
    // Lose a frame every 150 ms wherever there is speech (skipping the first second).
    for k in (50..packets.len() - 1).step_by(7) {
        if rms(&clean[k]) < 0.03 {
            continue;
        }
        let mut with_fec = Decoder::new().unwrap();
        let mut with_plc = Decoder::new().unwrap();
        for p in &packets[..k] {
            with_fec.decode(p).unwrap();
            with_plc.decode(p).unwrap();
        }
        let fec = with_fec.decode_fec(&packets[k + 1]).unwrap();
        let plc = with_plc.conceal().unwrap();
        assert_eq!((fec.len(), plc.len()), (FRAME_SAMPLES, FRAME_SAMPLES));
        assert!(rms(&fec) > 0.01, "FEC output is silent at frame {k}");
        // The next packet still decodes normally after FEC.
        assert_eq!(
            with_fec.decode(&packets[k + 1]).unwrap().len(),
            FRAME_SAMPLES
        );
        fec_total += pearson_at(&clean[k], &fec, 0);
        plc_total += pearson_at(&clean[k], &plc, 0);
        tried += 1;
    }
    assert!(tried >= 10, "only {tried} speech frames");
    let (fec_mean, plc_mean) = (fec_total / tried as f32, plc_total / tried as f32);
    eprintln!("{tried} lost frames: FEC correlation {fec_mean:.3}, concealment {plc_mean:.3}");
    assert!(
        fec_mean > plc_mean + 0.1,
        "FEC {fec_mean} vs PLC {plc_mean}"
    );
    assert!(fec_mean > 0.6, "FEC {fec_mean}");
}

#[test]
fn play_dispatches_on_the_jitter_buffer_output() {
    let frames = speech_frames();
    let mut enc = Encoder::new(DEFAULT_BITRATE).unwrap();
    let packets: Vec<Vec<u8>> = frames[..20]
        .iter()
        .map(|f| enc.encode(f).unwrap())
        .collect();
    let mut dec = Decoder::new().unwrap();
    for (seq, p) in packets.iter().enumerate() {
        let seq = seq as u64;
        let playout = match seq % 5 {
            3 => Playout::Fec {
                seq,
                next_payload: p.clone(),
            },
            4 => Playout::Conceal { seq },
            _ => Playout::Frame {
                seq,
                payload: p.clone(),
            },
        };
        assert_eq!(dec.play(&playout).unwrap().0.len(), FRAME_SAMPLES);
    }
}
