//! WAV reading at any common format, conversion to 48 kHz mono, and writing.

use parley_audio::{align_and_correlate, read_wav_48k_mono, AudioError, WavWriter};
use std::f64::consts::PI;
use std::path::Path;

/// A linear chirp from 100 Hz to 1 kHz, amplitude 0.5.
fn chirp(rate: u32, secs: f64) -> Vec<f64> {
    let n = (f64::from(rate) * secs) as usize;
    let (f0, f1) = (100.0, 1_000.0);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            0.5 * (2.0 * PI * (f0 * t + (f1 - f0) * t * t / (2.0 * secs))).sin()
        })
        .collect()
}

fn write(path: &Path, spec: hound::WavSpec, samples: &[f64]) {
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    let full = (1i64 << (spec.bits_per_sample - 1)) as f64;
    for &s in samples {
        for ch in 0..spec.channels {
            // Right channel quieter: the downmix must average, not pick one.
            let s = if ch == 1 { s * 0.5 } else { s };
            match spec.sample_format {
                hound::SampleFormat::Float => w.write_sample(s as f32).expect("write"),
                hound::SampleFormat::Int => w
                    .write_sample((s * (full - 1.0)).round() as i32)
                    .expect("write"),
            }
        }
    }
    w.finalize().expect("finalize");
}

fn spec(rate: u32, channels: u16, bits: u16, float: bool) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    }
}

fn check_chirp_survives(path: &Path, rate: u32, channels: u16) {
    let got = read_wav_48k_mono(path).expect("read");
    assert!(
        got.len().abs_diff(48_000) <= 1,
        "{rate} Hz: {} samples",
        got.len()
    );
    let gain = if channels == 2 { 0.75 } else { 1.0 };
    let want: Vec<f32> = chirp(48_000, 1.0)
        .iter()
        .map(|&s| (s * gain) as f32)
        .collect();
    let sim = align_and_correlate(&want, &got, 100);
    assert!(sim.lag_samples.abs() <= 1, "{rate} Hz: {sim:?}");
    assert!(sim.correlation > 0.99, "{rate} Hz: {sim:?}");
    let peak = got.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    assert!(
        (peak - 0.5 * gain as f32).abs() < 0.03,
        "{rate} Hz: peak {peak}"
    );
}

#[test]
fn stereo_16khz_reads_as_48khz_mono_with_the_chirp_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chirp.wav");
    write(&path, spec(16_000, 2, 16, false), &chirp(16_000, 1.0));
    check_chirp_survives(&path, 16_000, 2);
}

#[test]
fn every_sample_format_and_common_rate_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (8_000, 1, 8, false),
        (22_050, 1, 16, false),
        (24_000, 2, 24, false),
        (32_000, 1, 32, false),
        (44_100, 2, 32, true),
        (48_000, 1, 16, false),
    ];
    for (rate, channels, bits, float) in cases {
        let path = dir.path().join(format!("{rate}-{channels}-{bits}.wav"));
        write(&path, spec(rate, channels, bits, float), &chirp(rate, 1.0));
        check_chirp_survives(&path, rate, channels);
    }
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wav");
    let e = read_wav_48k_mono(&missing).unwrap_err();
    assert!(matches!(e, AudioError::WavRead { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.wav"), "{e}");

    let odd_rate = dir.path().join("odd-rate.wav");
    write(&odd_rate, spec(12_345, 1, 16, false), &chirp(12_345, 0.1));
    let e = read_wav_48k_mono(&odd_rate).unwrap_err();
    assert!(matches!(e, AudioError::WavUnsupported { .. }), "{e:?}");
    assert!(
        e.to_string().contains("odd-rate.wav") && e.to_string().contains("12345"),
        "{e}"
    );

    let not_wav = dir.path().join("not.wav");
    std::fs::write(&not_wav, b"this is not a RIFF file at all").unwrap();
    let e = read_wav_48k_mono(&not_wav).unwrap_err();
    assert!(e.to_string().contains("not.wav"), "{e}");
}

#[test]
fn writer_round_trips_through_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.wav");
    let signal: Vec<f32> = chirp(48_000, 0.5).iter().map(|&s| s as f32).collect();
    let mut writer = WavWriter::create(&path).unwrap();
    for frame in signal.chunks(960) {
        writer.write(frame).unwrap();
    }
    writer.write(&[2.0, -2.0]).unwrap(); // clipped, not wrapped
    writer.finish().unwrap();
    writer.finish().unwrap();
    let spec = hound::WavReader::open(&path).unwrap().spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (48_000, 1, 16)
    );
    let back = read_wav_48k_mono(&path).unwrap();
    assert_eq!(back.len(), signal.len() + 2);
    let err = signal
        .iter()
        .zip(&back)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < 1e-4, "{err}");
    assert!(back[signal.len()] > 0.999 && back[signal.len() + 1] < -0.999);

    let e = WavWriter::create(dir.path().join("no-such-dir/out.wav"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("no-such-dir"), "{e}");
}
