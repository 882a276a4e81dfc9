//! A cpal stream on a thread of its own.
//!
//! cpal's `Stream` is not `Send` on every platform, so a dedicated thread finds the
//! device, builds and starts the stream, owns it, and drops it when told to stop. The
//! callbacks only move samples between the sound card and a lock-free ring
//! ([`crate::ring`]): no lock, no allocation, no blocking on the audio thread. The
//! call's side does mixing and rate conversion.

use crate::device::{choose_config, device_name, find_device};
use crate::error::{AudioError, Direction};
use crate::ring::{ring, RingReader, RingWriter};
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{ErrorKind, FromSample, Sample, SampleFormat, SizedSample, SupportedStreamConfig};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long a device may take to start.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a stream thread reports once its stream runs.
pub(crate) struct Opened {
    /// The call's end of the queue shared with the callback (device rate, mono).
    pub(crate) end: CallEnd,
    /// The device's sample rate.
    pub(crate) rate: u32,
    /// The device's name.
    pub(crate) name: String,
}

/// The thread that owns a cpal stream; dropping this stops the stream.
pub(crate) struct StreamThread {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl StreamThread {
    /// Opens the device `name` (or the default one) for `direction` and starts it.
    pub(crate) fn spawn(
        direction: Direction,
        name: Option<&str>,
    ) -> Result<(StreamThread, Opened), AudioError> {
        let (result_tx, result_rx) = mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let wanted = name.map(str::to_string);
        let label = name.unwrap_or("default").to_string();
        let handle = thread::Builder::new()
            .name(format!("parley-audio-{direction}"))
            .spawn(move || match open_stream(direction, wanted.as_deref()) {
                Ok((stream, opened)) => {
                    let _ = result_tx.send(Ok(opened));
                    // Runs until the handle is dropped.
                    let _ = stop_rx.recv();
                    drop(stream);
                }
                Err(e) => {
                    let _ = result_tx.send(Err(e));
                }
            })
            .map_err(|e| AudioError::Device {
                direction,
                name: label.clone(),
                detail: format!("cannot start audio thread: {e}"),
            })?;
        let opened = match result_rx.recv_timeout(OPEN_TIMEOUT * 2) {
            Ok(result) => result?,
            Err(_) => {
                return Err(AudioError::Device {
                    direction,
                    name: label,
                    detail: "timed out starting the stream".into(),
                })
            }
        };
        let thread = StreamThread {
            stop: Some(stop_tx),
            handle: Some(handle),
        };
        Ok((thread, opened))
    }
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Runs on the stream thread: finds the device, builds and starts the stream.
fn open_stream(
    direction: Direction,
    name: Option<&str>,
) -> Result<(cpal::Stream, Opened), AudioError> {
    let host = cpal::default_host();
    let device = find_device(&host, direction, name)?;
    let label = device_name(&device);
    let failed = |e: cpal::Error| {
        // Without a name we tried the system default: if it cannot even be queried or
        // opened, the machine has no usable device of this kind.
        let busy = matches!(
            e.kind(),
            ErrorKind::DeviceBusy | ErrorKind::PermissionDenied
        );
        if name.is_none() && !busy {
            tracing::debug!(device = %label, error = %e, "default audio device unusable");
            AudioError::NoDevice { direction }
        } else {
            AudioError::Device {
                direction,
                name: label.clone(),
                detail: e.to_string(),
            }
        }
    };
    let config = choose_config(&device, direction).map_err(failed)?;
    let rate = config.sample_rate();
    let (stream, end) = match direction {
        Direction::Input => {
            // Half a second of capture before samples are dropped.
            let (w, r) = ring(rate as usize / 2, 0);
            (
                build_stream(&device, &config, Callback::Capture(w)),
                CallEnd::Capture(r),
            )
        }
        Direction::Output => {
            // 200 ms of playback queue; start playing once 40 ms are queued.
            let (w, r) = ring(rate as usize / 5, rate as usize / 25);
            (
                build_stream(&device, &config, Callback::Play(r)),
                CallEnd::Play(w),
            )
        }
    };
    let stream = stream.map_err(failed)?;
    stream.play().map_err(failed)?;
    tracing::info!(device = %label, %direction, rate, channels = config.channels(), format = ?config.sample_format(), "audio stream started");
    Ok((
        stream,
        Opened {
            end,
            rate,
            name: label,
        },
    ))
}

/// The call's end of a stream's queue.
pub(crate) enum CallEnd {
    /// Captured samples to read.
    Capture(RingReader),
    /// Where to write samples to play.
    Play(RingWriter),
}

/// The callback's end.
enum Callback {
    Capture(RingWriter),
    Play(RingReader),
}

fn build_stream(
    device: &cpal::Device,
    config: &SupportedStreamConfig,
    end: Callback,
) -> Result<cpal::Stream, cpal::Error> {
    macro_rules! build {
        ($t:ty) => {
            match end {
                Callback::Capture(w) => build_input::<$t>(device, config, w),
                Callback::Play(r) => build_output::<$t>(device, config, r),
            }
        };
    }
    match config.sample_format() {
        SampleFormat::F32 => build!(f32),
        SampleFormat::F64 => build!(f64),
        SampleFormat::I8 => build!(i8),
        SampleFormat::I16 => build!(i16),
        SampleFormat::I32 => build!(i32),
        SampleFormat::U8 => build!(u8),
        SampleFormat::U16 => build!(u16),
        SampleFormat::U32 => build!(u32),
        other => Err(cpal::Error::with_message(
            ErrorKind::UnsupportedConfig,
            format!("sample format {other:?} is not supported"),
        )),
    }
}

fn build_input<T>(
    device: &cpal::Device,
    config: &SupportedStreamConfig,
    mut ring: RingWriter,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels().max(1));
    device.build_input_stream::<T, _, _>(
        config.config(),
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            ring.push(data.chunks(channels).map(|frame| {
                frame.iter().map(|&s| s.to_sample::<f32>()).sum::<f32>() / channels as f32
            }));
        },
        |e| tracing::warn!(error = %e, "audio capture error"),
        Some(OPEN_TIMEOUT),
    )
}

fn build_output<T>(
    device: &cpal::Device,
    config: &SupportedStreamConfig,
    mut ring: RingReader,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels().max(1));
    // A fixed buffer: the callback never allocates.
    let mut mono = [0.0f32; 512];
    device.build_output_stream::<T, _, _>(
        config.config(),
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
            for chunk in data.chunks_mut(channels * mono.len()) {
                let frames = chunk.len() / channels;
                ring.pop_into(&mut mono[..frames]);
                for (frame, &s) in chunk.chunks_mut(channels).zip(&mono[..frames]) {
                    frame.fill(s.to_sample::<T>());
                }
            }
        },
        |e| tracing::warn!(error = %e, "audio playback error"),
        Some(OPEN_TIMEOUT),
    )
}
