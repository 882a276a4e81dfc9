//! Sound devices through cpal: listing them, and capture and playback streams that
//! speak 48 kHz mono whatever the hardware runs at.
//!
//! Each stream lives on a thread of its own that owns the cpal stream (see
//! `stream.rs`), so the handles here are `Send` on every platform. The sound card's
//! callback and the call's 20 ms clock meet in a bounded [`Ring`]; sample-rate
//! conversion happens on the call's side, so the callbacks only copy samples.
//!
//! A machine without sound hardware is normal (servers, CI): opening the default
//! device then fails with [`AudioError::NoDevice`], never a panic.

use crate::codec::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::error::{AudioError, Direction};
use crate::io::{FrameSink, FrameSource};
use crate::resample::Resampler;
use crate::ring::{RingReader, RingWriter};
use crate::stream::CallEnd;
use crate::stream::StreamThread;
use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{SampleFormat, SupportedStreamConfig};
use std::thread;
use std::time::{Duration, Instant};
/// Most 48 kHz samples a capture source keeps ready: older ones are dropped.
const MAX_CAPTURED: usize = 4 * FRAME_SAMPLES;

/// A sound device as [`list_devices`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to pass to [`crate::open_source`] / [`crate::open_sink`] (cpal's device id,
    /// such as `alsa:default`).
    pub name: String,
    /// A human-readable description, when the system has one.
    pub description: String,
    /// It can capture.
    pub is_input: bool,
    /// It can play.
    pub is_output: bool,
    /// It is the system's default for capture or playback.
    pub default: bool,
}

/// Every device of the default audio host. An empty list is a normal answer.
pub fn list_devices() -> Result<Vec<DeviceInfo>, AudioError> {
    let host = cpal::default_host();
    let default_ids: Vec<String> = [host.default_input_device(), host.default_output_device()]
        .into_iter()
        .flatten()
        .map(|d| device_name(&d))
        .collect();
    let devices = host.devices().map_err(|e| AudioError::Host {
        detail: e.to_string(),
    })?;
    Ok(devices
        .map(|d| {
            let name = device_name(&d);
            DeviceInfo {
                description: d
                    .description()
                    .map(|desc| desc.name().to_string())
                    .unwrap_or_default(),
                is_input: d.supports_input(),
                is_output: d.supports_output(),
                default: default_ids.contains(&name),
                name,
            }
        })
        .collect())
}

pub(crate) fn device_name(device: &cpal::Device) -> String {
    match device.id() {
        Ok(id) => id.to_string(),
        Err(_) => device.to_string(),
    }
}

/// The device called `name` (its id or its description; a unique case-insensitive
/// part of either will do), or the default one.
pub(crate) fn find_device(
    host: &cpal::Host,
    direction: Direction,
    name: Option<&str>,
) -> Result<cpal::Device, AudioError> {
    let Some(wanted) = name else {
        let default = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return default.ok_or(AudioError::NoDevice { direction });
    };
    let devices = match direction {
        Direction::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        Direction::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    }
    .map_err(|e| AudioError::Host {
        detail: e.to_string(),
    })?;
    let labels: Vec<(String, String)> = devices
        .iter()
        .map(|d| (device_name(d), d.to_string()))
        .collect();
    let exact = labels
        .iter()
        .position(|(id, desc)| id == wanted || desc == wanted);
    let lower = wanted.to_lowercase();
    let partial: Vec<usize> = labels
        .iter()
        .enumerate()
        .filter(|(_, (id, desc))| {
            id.to_lowercase().contains(&lower) || desc.to_lowercase().contains(&lower)
        })
        .map(|(i, _)| i)
        .collect();
    let index = exact.or(match partial[..] {
        [only] => Some(only),
        _ => None,
    });
    match index {
        Some(i) => Ok(devices
            .into_iter()
            .nth(i)
            .ok_or(AudioError::NoDevice { direction })?),
        None => Err(AudioError::DeviceNotFound {
            direction,
            name: wanted.to_string(),
            available: labels.into_iter().map(|(id, _)| id).collect(),
        }),
    }
}

/// The device's best configuration for us: 48 kHz if it can, mono if it can, float if
/// it can; else its default configuration.
pub(crate) fn choose_config(
    device: &cpal::Device,
    direction: Direction,
) -> Result<SupportedStreamConfig, cpal::Error> {
    let ranges: Vec<_> = match direction {
        Direction::Input => device.supported_input_configs()?.collect(),
        Direction::Output => device.supported_output_configs()?.collect(),
    };
    let format_rank = |f: SampleFormat| match f {
        SampleFormat::F32 => 0,
        SampleFormat::I16 => 1,
        SampleFormat::I32 => 2,
        _ => 3,
    };
    let best = ranges
        .into_iter()
        .filter(|r| is_supported_format(r.sample_format()))
        .filter_map(|r| r.try_with_sample_rate(SAMPLE_RATE))
        .min_by_key(|c| (c.channels(), format_rank(c.sample_format())));
    match (best, direction) {
        (Some(config), _) => Ok(config),
        (None, Direction::Input) => device.default_input_config(),
        (None, Direction::Output) => device.default_output_config(),
    }
}

fn is_supported_format(format: SampleFormat) -> bool {
    matches!(
        format,
        SampleFormat::F32
            | SampleFormat::F64
            | SampleFormat::I8
            | SampleFormat::I16
            | SampleFormat::I32
            | SampleFormat::U8
            | SampleFormat::U16
            | SampleFormat::U32
    )
}

/// Captures from a sound device: each [`FrameSource::next_frame`] returns the oldest
/// 20 ms captured and not yet taken, or silence if less than that is waiting. Never ends.
pub struct DeviceSource {
    ring: RingReader,
    resampler: Resampler,
    captured: Vec<f32>,
    scratch: Vec<f32>,
    name: String,
    _thread: StreamThread,
}

impl DeviceSource {
    /// Opens the capture device `name`, or the default one.
    pub fn open(name: Option<&str>) -> Result<DeviceSource, AudioError> {
        let (thread, opened) = StreamThread::spawn(Direction::Input, name)?;
        let resampler = Resampler::new(opened.rate, SAMPLE_RATE, opened.rate as usize / 100)?;
        let CallEnd::Capture(ring) = opened.end else {
            return Err(AudioError::NoDevice {
                direction: Direction::Input,
            });
        };
        Ok(DeviceSource {
            ring,
            resampler,
            captured: Vec::with_capacity(2 * MAX_CAPTURED),
            scratch: Vec::new(),
            name: opened.name,
            _thread: thread,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FrameSource for DeviceSource {
    fn next_frame(&mut self) -> Option<Vec<f32>> {
        self.scratch.clear();
        self.ring.drain_all(&mut self.scratch);
        if let Err(e) = self.resampler.process(&self.scratch, &mut self.captured) {
            tracing::warn!(error = %e, "capture resampling failed");
        }
        if self.captured.len() > MAX_CAPTURED {
            let excess = self.captured.len() - MAX_CAPTURED;
            self.captured.drain(..excess);
        }
        if self.captured.len() < FRAME_SAMPLES {
            return Some(vec![0.0; FRAME_SAMPLES]);
        }
        Some(self.captured.drain(..FRAME_SAMPLES).collect())
    }
}

/// Plays to a sound device: [`FrameSink::play`] queues the frame for the sound card
/// (dropping the oldest queued audio if the card has fallen 200 ms behind).
pub struct DeviceSink {
    ring: RingWriter,
    resampler: Resampler,
    rate: u32,
    scratch: Vec<f32>,
    name: String,
    thread: Option<StreamThread>,
}

impl DeviceSink {
    /// Opens the playback device `name`, or the default one.
    pub fn open(name: Option<&str>) -> Result<DeviceSink, AudioError> {
        let (thread, opened) = StreamThread::spawn(Direction::Output, name)?;
        let resampler = Resampler::new(SAMPLE_RATE, opened.rate, FRAME_SAMPLES / 2)?;
        let CallEnd::Play(ring) = opened.end else {
            return Err(AudioError::NoDevice {
                direction: Direction::Output,
            });
        };
        Ok(DeviceSink {
            ring,
            resampler,
            rate: opened.rate,
            scratch: Vec::new(),
            name: opened.name,
            thread: Some(thread),
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FrameSink for DeviceSink {
    fn play(&mut self, frame: &[f32]) -> Result<(), AudioError> {
        self.scratch.clear();
        self.resampler.process(frame, &mut self.scratch)?;
        self.ring.push(self.scratch.iter().copied());
        Ok(())
    }

    /// Lets the queued audio play out (at most the queue's length plus a margin), then
    /// stops the stream.
    fn finish(&mut self) -> Result<(), AudioError> {
        if self.thread.is_none() {
            return Ok(());
        }
        // Flush the resampler and push the tail past the start-up cushion.
        self.scratch.clear();
        self.resampler.flush(&mut self.scratch)?;
        self.scratch
            .resize(self.scratch.len() + self.rate as usize / 25, 0.0);
        self.ring.push(self.scratch.iter().copied());
        let queued = Duration::from_secs_f64(self.ring.len() as f64 / f64::from(self.rate));
        let deadline = Instant::now() + queued + Duration::from_millis(200);
        while self.ring.len() > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let (dropped, underruns) = self.ring.counters();
        tracing::debug!(dropped, underruns, "audio playback finished");
        self.thread = None;
        Ok(())
    }
}
