//! DRED on real speech: a burst of lost frames rebuilt from the deep redundancy in the
//! first packet after it must come closer to the frames themselves than deep PLC does,
//! and a stream without DRED must fall back to concealment, never fail.

use parley_audio::{
    pearson_at, read_wav_48k_mono, speech_fixture, Decoder, Encoder, FrameSource, WavSource,
    DEFAULT_BITRATE,
};

fn speech_frames() -> Vec<Vec<f32>> {
    let speech = read_wav_48k_mono(speech_fixture()).expect("fixture");
    let mut source = WavSource::from_samples(speech);
    std::iter::from_fn(|| source.next_frame()).collect()
}

/// Over bursts of `burst` frames lost every 25 frames, rebuilt with DRED (`dred`) or
/// concealed: the correlation with the clean decode, and the rebuilt frames' energy as a
/// fraction of the clean frames' (concealment fades out over a long burst; a rebuild
/// from redundancy keeps the speech's level).
fn burst_score(packets: &[Vec<u8>], clean: &[Vec<f32>], burst: usize, dred: bool) -> (f64, f64) {
    let (mut got, mut want) = (Vec::new(), Vec::new());
    let mut dec = Decoder::new().expect("decoder");
    let mut k = 0;
    while k < packets.len() {
        if k >= 50 && k % 25 == 0 && k + burst < packets.len() {
            let later = (k + burst) as u64;
            for (lost, clean_frame) in clean.iter().enumerate().skip(k).take(burst) {
                let pcm = if dred {
                    dec.recover(lost as u64, later, &packets[k + burst])
                } else {
                    dec.conceal()
                }
                .expect("rebuild");
                got.extend(pcm);
                want.extend(clean_frame);
            }
            k += burst;
        } else {
            dec.decode(&packets[k]).expect("decode");
            k += 1;
        }
    }
    let energy = |x: &[f32]| x.iter().map(|s| f64::from(*s) * f64::from(*s)).sum::<f64>();
    (
        f64::from(pearson_at(&want, &got, 0)),
        energy(&got) / energy(&want).max(1e-9),
    )
}

#[test]
fn dred_rebuilds_bursts_better_than_deep_plc() {
    let frames = speech_frames();
    let mut enc = Encoder::new(DEFAULT_BITRATE).expect("encoder");
    enc.set_expected_loss(20).expect("loss");
    enc.set_dred(20).expect("dred");
    let packets: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| enc.encode(f).expect("encode"))
        .collect();
    let mut reference = Decoder::new().expect("decoder");
    let clean: Vec<Vec<f32>> = packets
        .iter()
        .map(|p| reference.decode(p).expect("decode"))
        .collect();
    // Two frames: close enough in phase that the waveforms correlate.
    let (dred, plc) = (
        burst_score(&packets, &clean, 2, true),
        burst_score(&packets, &clean, 2, false),
    );
    eprintln!("burst 2: DRED {dred:?}, deep PLC {plc:?}");
    assert!(
        dred.0 > plc.0 + 0.05,
        "burst 2: DRED {dred:?} vs PLC {plc:?}"
    );
    // Five frames (100 ms): a vocoder's phase is its own, so judge the level instead.
    let (dred, plc) = (
        burst_score(&packets, &clean, 5, true),
        burst_score(&packets, &clean, 5, false),
    );
    eprintln!("burst 5: DRED {dred:?}, deep PLC {plc:?}");
    assert!(dred.1 > plc.1, "burst 5: DRED {dred:?} vs PLC {plc:?}");
    assert!(
        (0.2..5.0).contains(&dred.1),
        "burst 5: DRED energy {dred:?}"
    );
}

#[test]
fn without_dred_data_recovery_conceals() {
    let frames = speech_frames();
    let mut enc = Encoder::new(DEFAULT_BITRATE).expect("encoder");
    let packets: Vec<Vec<u8>> = frames[..60]
        .iter()
        .map(|f| enc.encode(f).expect("encode"))
        .collect();
    let mut dec = Decoder::new().expect("decoder");
    for p in &packets[..40] {
        dec.decode(p).expect("decode");
    }
    for lost in 40..43 {
        let pcm = dec.recover(lost, 43, &packets[43]).expect("recover");
        assert_eq!(pcm.len(), 960);
    }
    // Garbage as the later packet, and absurd distances, are concealed too.
    assert_eq!(dec.recover(50, 52, &[0xff; 5]).expect("garbage").len(), 960);
    assert_eq!(
        dec.recover(60, 60 + 10_000, &packets[0])
            .expect("far")
            .len(),
        960
    );
}

/// What `Decoder::play` says it did is what the packets allowed: DRED for a burst whose
/// later packet carries it (the burst's last frame too, from the same rebuild, rather
/// than decoding that packet's FEC on top), FEC from a packet with LBRR, concealment
/// from one with neither.
#[test]
fn play_reports_how_each_lost_frame_came_back() {
    use parley_proto::media::{Decoded, Playout};
    let frames = speech_frames();
    let mut enc = Encoder::new(DEFAULT_BITRATE).expect("encoder");
    let plain: Vec<Vec<u8>> = frames[..60]
        .iter()
        .map(|f| enc.encode(f).expect("encode"))
        .collect();
    enc.set_expected_loss(20).expect("loss");
    enc.set_dred(20).expect("dred");
    let rich: Vec<Vec<u8>> = frames[60..160]
        .iter()
        .map(|f| enc.encode(f).expect("encode"))
        .collect();
    let packets: Vec<Vec<u8>> = plain.into_iter().chain(rich).collect();
    let mut dec = Decoder::new().expect("decoder");
    let mut how = Vec::new();
    let play = |dec: &mut Decoder, p: Playout| {
        let (pcm, h) = dec.play(&p).expect("play");
        assert_eq!(pcm.len(), parley_audio::FRAME_SAMPLES);
        h
    };
    for (seq, p) in packets.iter().enumerate() {
        let seq = seq as u64;
        let payload = |s: u64| packets[s as usize].clone();
        let h = match seq {
            // Without FEC or DRED: frame 30 lost, 31 here; 40–41 lost, 42 here.
            30 => play(
                &mut dec,
                Playout::Fec {
                    seq,
                    next_payload: payload(31),
                },
            ),
            40 => play(
                &mut dec,
                Playout::Recover {
                    seq,
                    later_seq: 42,
                    later_payload: payload(42),
                },
            ),
            41 => play(
                &mut dec,
                Playout::Fec {
                    seq,
                    next_payload: payload(42),
                },
            ),
            // With both: 120–122 lost, 123 here; 140 lost, 141 here.
            120 | 121 => play(
                &mut dec,
                Playout::Recover {
                    seq,
                    later_seq: 123,
                    later_payload: payload(123),
                },
            ),
            122 => play(
                &mut dec,
                Playout::Fec {
                    seq,
                    next_payload: payload(123),
                },
            ),
            140 => play(
                &mut dec,
                Playout::Fec {
                    seq,
                    next_payload: payload(141),
                },
            ),
            _ => play(
                &mut dec,
                Playout::Frame {
                    seq,
                    payload: p.clone(),
                },
            ),
        };
        how.push(h);
    }
    assert_eq!(how[30], Decoded::Concealed);
    assert_eq!((how[40], how[41]), (Decoded::Concealed, Decoded::Concealed));
    assert_eq!(&how[120..123], &[Decoded::Dred; 3]);
    assert_eq!(how[140], Decoded::Fec);
    assert_eq!(how.iter().filter(|h| **h == Decoded::Packet).count(), 153);
}
