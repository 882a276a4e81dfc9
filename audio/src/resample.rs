//! Band-limited sample-rate conversion (rubato's synchronous FFT resampler), for WAV
//! files and for sound devices that do not run at 48 kHz.

use crate::error::AudioError;
use rubato::{FftFixedInOut, Resampler as _};

/// A streaming mono resampler between two fixed rates. Feed it any number of samples at
/// a time; it hands back whatever output is ready. Output lags input by
/// [`delay`](Self::delay) samples (zero when the rates are equal).
pub(crate) struct Resampler {
    from: u32,
    to: u32,
    inner: Option<FftFixedInOut<f32>>,
    pending: Vec<f32>,
    out: Vec<Vec<f32>>,
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz working in chunks of about `chunk` input
    /// samples: longer chunks give a sharper anti-aliasing filter, shorter ones less delay.
    pub(crate) fn new(from: u32, to: u32, chunk: usize) -> Result<Resampler, AudioError> {
        if from == 0 || to == 0 {
            return Err(AudioError::Resample {
                from,
                to,
                detail: "a sample rate of zero".into(),
            });
        }
        let inner = if from == to {
            None
        } else {
            // rubato rounds the chunk up to a multiple of `from / gcd`. Keep it even: the
            // filter is centred on sample `chunk / 2`, so only an even chunk makes the
            // delay a whole number of output samples (and `output_delay` exact).
            let unit = (from / gcd(from, to)) as usize;
            let mut units = chunk.max(1).div_ceil(unit);
            if (units * unit) % 2 == 1 {
                units += 1;
            }
            let resampler = FftFixedInOut::new(from as usize, to as usize, units * unit, 1)
                .map_err(|e| AudioError::Resample {
                    from,
                    to,
                    detail: e.to_string(),
                })?;
            Some(resampler)
        };
        let out = match &inner {
            Some(r) => r.output_buffer_allocate(true),
            None => Vec::new(),
        };
        Ok(Resampler {
            from,
            to,
            inner,
            pending: Vec::new(),
            out,
        })
    }

    /// Output samples by which the output lags the input.
    pub(crate) fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Converts `input`, appending the output that is ready to `output`.
    pub(crate) fn process(
        &mut self,
        input: &[f32],
        output: &mut Vec<f32>,
    ) -> Result<(), AudioError> {
        let Some(inner) = self.inner.as_mut() else {
            output.extend_from_slice(input);
            return Ok(());
        };
        self.pending.extend_from_slice(input);
        let need = inner.input_frames_next();
        let mut start = 0;
        while self.pending.len() - start >= need {
            let chunk = [&self.pending[start..start + need]];
            let (_, produced) = inner
                .process_into_buffer(&chunk, &mut self.out, None)
                .map_err(|e| AudioError::Resample {
                    from: self.from,
                    to: self.to,
                    detail: e.to_string(),
                })?;
            output.extend_from_slice(&self.out[0][..produced]);
            start += need;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// Pushes silence through so that everything fed in so far comes out.
    pub(crate) fn flush(&mut self, output: &mut Vec<f32>) -> Result<(), AudioError> {
        let Some(inner) = self.inner.as_ref() else {
            return Ok(());
        };
        let need = inner.input_frames_next();
        let delay_in = (self.delay() as u64 * u64::from(self.from)).div_ceil(u64::from(self.to));
        let padding = need - self.pending.len() % need + delay_in as usize + need;
        self.process(&vec![0.0; padding], output)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}

/// Converts a whole mono signal from `from` Hz to `to` Hz. The output is aligned with the
/// input (the resampler's delay is removed) and `len · to / from` samples long.
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to {
        return Ok(input.to_vec());
    }
    // About 20 ms of input per chunk: a filter long enough for clean speech.
    let mut resampler = Resampler::new(from, to, (from as usize / 50).max(256))?;
    let expected = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let delay = resampler.delay();
    let mut output = Vec::with_capacity(expected + 2 * delay);
    resampler.process(input, &mut output)?;
    resampler.flush(&mut output)?;
    let start = delay.min(output.len());
    let end = (start + expected).min(output.len());
    Ok(output[start..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, secs: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * hz / rate as f32).sin())
            .collect()
    }

    #[test]
    fn common_rates_keep_length_and_alignment() {
        for rate in [
            8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 96_000,
        ] {
            let input = sine(rate, 300.0, 1.0);
            let out = resample(&input, rate, 48_000).unwrap();
            assert_eq!(out.len(), 48_000, "{rate}");
            let reference = sine(48_000, 300.0, 1.0);
            // Compare away from the edges: same phase, same amplitude.
            let err: f32 = (2_000..46_000)
                .map(|i| (out[i] - reference[i]).abs())
                .fold(0.0, f32::max);
            assert!(err < 0.02, "{rate} Hz: max error {err}");
        }
    }

    #[test]
    fn downsampling_removes_what_cannot_be_represented() {
        // 20 kHz at 48 kHz cannot exist at 16 kHz: it must vanish, not alias to 4 kHz.
        let input = sine(48_000, 20_000.0, 1.0);
        let out = resample(&input, 48_000, 16_000).unwrap();
        let rms = (out[1_000..15_000].iter().map(|x| x * x).sum::<f32>() / 14_000.0).sqrt();
        assert!(rms < 0.01, "aliased energy {rms}");
    }

    #[test]
    fn zero_rates_are_errors() {
        assert!(resample(&[0.0; 10], 0, 48_000).is_err());
        assert!(Resampler::new(48_000, 0, 100).is_err());
    }

    #[test]
    fn streaming_matches_whole_buffer() {
        let input = sine(44_100, 440.0, 0.5);
        let mut r = Resampler::new(44_100, 48_000, 441).unwrap();
        let mut streamed = Vec::new();
        for chunk in input.chunks(333) {
            r.process(chunk, &mut streamed).unwrap();
        }
        r.flush(&mut streamed).unwrap();
        assert!(streamed.len() >= 24_000 + r.delay());
    }
}
