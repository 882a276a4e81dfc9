//! WAV files in and out: any common PCM or float WAV in, 48 kHz mono 16-bit out.

use crate::codec::SAMPLE_RATE;
use crate::error::AudioError;
use crate::resample::resample;
use hound::{SampleFormat, WavReader, WavSpec};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Sample rates [`read_wav_48k_mono`] accepts, in Hz.
pub const SUPPORTED_RATES: [u32; 11] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000,
];

/// Reads a whole WAV file as 48 kHz mono samples in [-1, 1].
///
/// Takes 8-, 16-, 24- and 32-bit integer PCM and 32-bit float, at any of
/// [`SUPPORTED_RATES`], with one or more channels (averaged to mono). Other rates are
/// converted with a band-limited resampler.
pub fn read_wav_48k_mono(path: impl AsRef<Path>) -> Result<Vec<f32>, AudioError> {
    let path = path.as_ref();
    let read_err = |source| AudioError::WavRead {
        path: path.to_path_buf(),
        source,
    };
    let unsupported = |detail: String| AudioError::WavUnsupported {
        path: path.to_path_buf(),
        detail,
    };
    let mut reader = WavReader::open(path).map_err(|e| match e {
        hound::Error::Unsupported => unsupported("an encoding other than PCM or float".into()),
        e => read_err(e),
    })?;
    let spec = reader.spec();
    if !SUPPORTED_RATES.contains(&spec.sample_rate) {
        return Err(unsupported(format!("sample rate {} Hz", spec.sample_rate)));
    }
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(unsupported("no channels".into()));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(read_err)?,
        (SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            reader
                .samples::<i32>()
                .map(|s| s.map(|s| (f64::from(s) * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(read_err)?
        }
        (format, bits) => {
            let kind = match format {
                SampleFormat::Float => "float",
                SampleFormat::Int => "integer",
            };
            return Err(unsupported(format!("{bits}-bit {kind} samples")));
        }
    };
    let mono: Vec<f32> = if channels == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect()
    };
    resample(&mono, spec.sample_rate, SAMPLE_RATE)
}

/// Writes 48 kHz mono 16-bit WAV, one frame at a time.
pub struct WavWriter {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
}

impl WavWriter {
    /// Creates (or truncates) the file.
    pub fn create(path: impl AsRef<Path>) -> Result<WavWriter, AudioError> {
        let path = path.as_ref().to_path_buf();
        let spec = WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let writer =
            hound::WavWriter::create(&path, spec).map_err(|source| AudioError::WavWrite {
                path: path.clone(),
                source,
            })?;
        Ok(WavWriter {
            path,
            writer: Some(writer),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends samples (any count; values outside [-1, 1] are clipped).
    pub fn write(&mut self, frame: &[f32]) -> Result<(), AudioError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        for &s in frame {
            let s = (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16;
            writer
                .write_sample(s)
                .map_err(|source| AudioError::WavWrite {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Completes the file's header. Further writes are ignored; a second call does nothing.
    pub fn finish(&mut self) -> Result<(), AudioError> {
        match self.writer.take() {
            Some(writer) => writer.finalize().map_err(|source| AudioError::WavWrite {
                path: self.path.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

impl Drop for WavWriter {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!(error = %e, "finishing WAV file");
        }
    }
}
