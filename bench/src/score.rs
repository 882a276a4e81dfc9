//! Scoring what a call played: line it up with the reference, bring it to 16 kHz, and
//! have wideband PESQ (ITU-T P.862.2, the PyPI package `pesq`, through
//! `bench/pesq_score.py`) rate it.

use anyhow::{bail, ensure, Context, Result};
use parley_audio::{align_and_correlate, read_wav_48k_mono, resample, SAMPLE_RATE};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The rate wideband PESQ works at, and of the reference voices.
pub const PESQ_RATE: u32 = 16_000;
/// Largest delay searched for when lining the output up with the reference, in 48 kHz
/// samples (1 s: the jitter buffer holds at most 300 ms, the network adds at most 60).
const MAX_LAG: usize = SAMPLE_RATE as usize;

/// A reference recording.
pub struct Voice {
    /// File name without the extension.
    pub name: String,
    /// The 16 kHz file itself: PESQ's reference.
    pub path: PathBuf,
    /// The same speech at 48 kHz, as the call sends it.
    pub pcm48: Vec<f32>,
    /// Length of the 16 kHz file, in samples.
    pub len16: usize,
}

impl Voice {
    /// Reads a 16 kHz mono WAV file.
    pub fn load(path: &Path) -> Result<Voice> {
        let spec = hound::WavReader::open(path)
            .with_context(|| format!("reading {}", path.display()))?
            .spec();
        ensure!(
            spec.sample_rate == PESQ_RATE && spec.channels == 1,
            "{}: {} Hz, {} channels; wideband PESQ needs 16 kHz mono references",
            path.display(),
            spec.sample_rate,
            spec.channels
        );
        let pcm48 = read_wav_48k_mono(path).with_context(|| format!("{}", path.display()))?;
        let len16 = (pcm48.len() as u64 * u64::from(PESQ_RATE) / u64::from(SAMPLE_RATE)) as usize;
        let name = path
            .file_stem()
            .map_or_else(|| "voice".into(), |s| s.to_string_lossy().into_owned());
        Ok(Voice {
            name,
            path: path.to_path_buf(),
            pcm48,
            len16,
        })
    }

    /// Every `*.wav` in `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Voice>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
            .collect();
        paths.sort();
        ensure!(!paths.is_empty(), "no .wav files in {}", dir.display());
        paths.iter().map(|p| Voice::load(p)).collect()
    }
}

/// How the output lined up with the reference.
#[derive(Clone, Copy, Debug)]
pub struct Alignment {
    /// Output sample `i + lag` corresponds to reference sample `i` (48 kHz samples).
    pub lag_samples: isize,
    /// Pearson correlation of the aligned signals (the repo's similarity measure).
    pub correlation: f32,
}

/// Lines `out48` up with the voice and writes the aligned part, the reference's length,
/// as 16 kHz 16-bit mono WAV at `path`, ready for PESQ. The lag searched is up to 1 s.
pub fn write_degraded(voice: &Voice, out48: &[f32], path: &Path) -> Result<Alignment> {
    write_degraded_within(voice, out48, path, MAX_LAG)
}

/// [`write_degraded`] searching lags up to `max_lag` 48 kHz samples (a real call's
/// recording may start long before the peer's speech reaches it).
pub fn write_degraded_within(
    voice: &Voice,
    out48: &[f32],
    path: &Path,
    max_lag: usize,
) -> Result<Alignment> {
    let s = align_and_correlate(&voice.pcm48, out48, max_lag);
    let aligned: Vec<f32> = (0..voice.pcm48.len() as isize)
        .map(|i| {
            usize::try_from(i + s.lag_samples)
                .ok()
                .and_then(|j| out48.get(j))
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    let mut pcm16 = resample(&aligned, SAMPLE_RATE, PESQ_RATE).context("resampling to 16 kHz")?;
    pcm16.resize(voice.len16, 0.0);
    write_wav16(path, &pcm16)?;
    Ok(Alignment {
        lag_samples: s.lag_samples,
        correlation: s.correlation,
    })
}

fn write_wav16(path: &Path, pcm: &[f32]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: PESQ_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let context = || format!("writing {}", path.display());
    let mut w = hound::WavWriter::create(path, spec).with_context(context)?;
    for &s in pcm {
        let v = (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16;
        w.write_sample(v).with_context(context)?;
    }
    w.finalize().with_context(context)
}

/// `pesq_score.py`, next to this crate's manifest.
pub fn default_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pesq_score.py")
}

/// Wideband PESQ (MOS-LQO) of a recording `heard` (any WAV; read as 48 kHz mono) against
/// the 16 kHz mono `reference`, scored as the benchmark scores a call: one alignment lag
/// (up to `max_lag_s` seconds), cut to the reference's length, resampled to 16 kHz, then
/// `pesq_score.py` run by `python3` (`$PYTHON` if set). Errors: unreadable files, no
/// Python with `pesq`, or PESQ unable to score (no speech heard).
pub fn pesq_of_recording(
    reference: &Path,
    heard: &Path,
    max_lag_s: f64,
) -> Result<(f64, Alignment)> {
    let voice = Voice::load(reference)?;
    let out48 = read_wav_48k_mono(heard).with_context(|| format!("{}", heard.display()))?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let degraded = dir.path().join("degraded.wav");
    let max_lag = (max_lag_s * f64::from(SAMPLE_RATE)) as usize;
    let alignment = write_degraded_within(&voice, &out48, &degraded, max_lag)?;
    let scorer = Scorer {
        python: std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()),
        script: default_script(),
        jobs: 1,
    };
    scorer.check()?;
    let score = scorer.score(&[(reference.to_path_buf(), degraded)])?;
    let mos = score.first().copied().unwrap_or(f64::NAN);
    ensure!(mos.is_finite(), "PESQ could not score {}", heard.display());
    Ok((mos, alignment))
}

/// Runs `pesq_score.py` with a Python that has `pesq`, `numpy` and `soundfile`.
pub struct Scorer {
    /// The Python interpreter.
    pub python: String,
    /// Path of `pesq_score.py`.
    pub script: PathBuf,
    /// Scoring processes run at once.
    pub jobs: usize,
}

impl Scorer {
    /// Fails early, with the fix, if the Python side is missing.
    pub fn check(&self) -> Result<()> {
        ensure!(
            self.script.is_file(),
            "PESQ helper {} not found",
            self.script.display()
        );
        let out = Command::new(&self.python)
            .args(["-c", "import pesq, numpy, soundfile"])
            .output()
            .with_context(|| format!("running {}", self.python))?;
        if !out.status.success() {
            bail!(
                "{} cannot import pesq/numpy/soundfile ({}); run: {} -m pip install pesq numpy soundfile",
                self.python,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.python
            );
        }
        Ok(())
    }

    /// Wideband PESQ MOS-LQO of each `(reference, degraded)` pair, in order; NaN for a
    /// pair PESQ could not score (its reason goes to stderr).
    pub fn score(&self, pairs: &[(PathBuf, PathBuf)]) -> Result<Vec<f64>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let chunk = pairs.len().div_ceil(self.jobs.max(1));
        let results: Vec<Result<Vec<f64>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = pairs
                .chunks(chunk)
                .map(|part| scope.spawn(move || self.score_in_one_process(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("scoring thread panicked")))
                })
                .collect()
        });
        let mut scores = Vec::with_capacity(pairs.len());
        for r in results {
            scores.extend(r?);
        }
        Ok(scores)
    }

    fn score_in_one_process(&self, pairs: &[(PathBuf, PathBuf)]) -> Result<Vec<f64>> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script);
        for (reference, degraded) in pairs {
            cmd.arg(reference).arg(degraded);
        }
        let out = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running {} {}", self.python, self.script.display()))?;
        ensure!(
            out.status.success(),
            "{} failed ({})",
            self.script.display(),
            out.status
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let scores = text
            .lines()
            .map(|l| {
                l.trim()
                    .parse::<f64>()
                    .with_context(|| format!("unexpected PESQ output {l:?}"))
            })
            .collect::<Result<Vec<f64>>>()?;
        ensure!(
            scores.len() == pairs.len(),
            "PESQ scored {} of {} pairs",
            scores.len(),
            pairs.len()
        );
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_file_is_aligned_and_as_long_as_the_reference() {
        let voice = Voice::load(&parley_audio::speech_fixture()).expect("fixture");
        let mut heard = vec![0.0; 2_000];
        heard.extend(voice.pcm48.iter().map(|s| 0.5 * s));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deg.wav");
        let a = write_degraded(&voice, &heard, &path).expect("write");
        assert_eq!(a.lag_samples, 2_000);
        assert!(a.correlation > 0.999, "{a:?}");
        let reader = hound::WavReader::open(&path).expect("read back");
        assert_eq!(reader.spec().sample_rate, PESQ_RATE);
        assert_eq!(reader.duration() as usize, voice.len16);
    }
}
