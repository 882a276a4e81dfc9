//! A call's audio ends, as the user's options and the machine allow, and the controls a
//! running call obeys.
//!
//! - No microphone (and no `--input`): the call joins muted, sending silence, with a
//!   warning. No speaker (and no `--output`): what arrives is discarded, with a warning.
//!   A named device that does not exist, or an input file that cannot be read or is
//!   empty, is an error: the user asked for something specific.
//! - [`Controlled`] wraps the source of a running call: `mute` sends silence, `hangup`
//!   ends the input, which ends the call the way the end of a WAV file does (the media
//!   loop sends its Bye after a short tail; `talk` reports it as a local hang-up).
//! - [`echo_pair`]: a sink whose frames come back out of a source (`online --echo`).

use super::{AudioIo, CallOptions};
use crate::output::{Failure, Printer};
use parley_audio::{FrameSink, FrameSource, WavSource, FRAME_SAMPLES};
use parley_proto::PeerId;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How a running call is steered from outside its task (control socket, terminal UI).
pub struct CallControl {
    hangup: watch::Sender<bool>,
    muted: AtomicBool,
    /// Peak level of the last frame sent and played (f32 bits, 0.0..=1.0).
    level_in: AtomicU32,
    level_out: AtomicU32,
    /// Hosting a conference: its members, for this leg's participant (empty: none).
    roster: watch::Sender<Vec<PeerId>>,
}

impl Default for CallControl {
    fn default() -> Self {
        CallControl {
            hangup: watch::channel(false).0,
            muted: AtomicBool::new(false),
            level_in: AtomicU32::new(0),
            level_out: AtomicU32::new(0),
            roster: watch::channel(Vec::new()).0,
        }
    }
}

impl CallControl {
    /// Ends the call (or stops ringing).
    pub fn hang_up(&self) {
        self.hangup.send_replace(true);
    }

    /// Whether [`hang_up`](Self::hang_up) was called.
    pub fn hung_up(&self) -> bool {
        *self.hangup.borrow()
    }

    /// Resolves once the call is hung up.
    pub async fn wait_hangup(&self) {
        let mut rx = self.hangup.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Hosting a conference: tells this leg's participant who is in it (us included),
    /// inside the encrypted call (`parley_proto::media::group`).
    pub fn share_roster(&self, members: Vec<PeerId>) {
        self.roster.send_replace(members);
    }

    /// The member lists [`share_roster`](Self::share_roster) sets, for the media loop.
    pub fn roster_updates(&self) -> watch::Receiver<Vec<PeerId>> {
        self.roster.subscribe()
    }

    /// Mutes (sends silence) or unmutes.
    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::SeqCst);
    }

    /// Whether the microphone is muted.
    pub fn muted(&self) -> bool {
        self.muted.load(Ordering::SeqCst)
    }

    /// Peak levels (0.0..=1.0) of the last frame sent and the last frame played.
    pub fn levels(&self) -> (f32, f32) {
        (
            f32::from_bits(self.level_in.load(Ordering::Relaxed)),
            f32::from_bits(self.level_out.load(Ordering::Relaxed)),
        )
    }
}

fn peak(frame: &[f32]) -> f32 {
    frame.iter().fold(0.0f32, |m, s| m.max(s.abs())).min(1.0)
}

/// A source steered by a [`CallControl`]: silence while muted, the end once hung up.
pub struct Controlled {
    pub inner: Box<dyn FrameSource>,
    pub control: Arc<CallControl>,
}

impl FrameSource for Controlled {
    fn next_frame(&mut self) -> Option<Vec<f32>> {
        if self.control.hung_up() {
            return None;
        }
        let frame = self.inner.next_frame()?;
        if self.control.muted() {
            self.control.level_in.store(0, Ordering::Relaxed);
            return Some(vec![0.0; FRAME_SAMPLES]);
        }
        self.control
            .level_in
            .store(peak(&frame).to_bits(), Ordering::Relaxed);
        Some(frame)
    }
}

/// A sink that measures what it plays for a [`CallControl`]'s level meter.
pub struct Metered {
    pub inner: Box<dyn FrameSink>,
    pub control: Arc<CallControl>,
}

impl FrameSink for Metered {
    fn play(&mut self, frame: &[f32]) -> Result<(), parley_audio::AudioError> {
        self.control
            .level_out
            .store(peak(frame).to_bits(), Ordering::Relaxed);
        self.inner.play(frame)
    }

    fn finish(&mut self) -> Result<(), parley_audio::AudioError> {
        self.inner.finish()
    }
}

/// Wraps a call's audio in the controls.
pub fn controlled(audio: AudioIo, control: &Arc<CallControl>) -> AudioIo {
    let (source, sink) = audio;
    (
        Box::new(Controlled {
            inner: source,
            control: control.clone(),
        }),
        Box::new(Metered {
            inner: sink,
            control: control.clone(),
        }),
    )
}

/// Endless silence: the microphone of a machine without one.
pub struct Silence;

impl FrameSource for Silence {
    fn next_frame(&mut self) -> Option<Vec<f32>> {
        Some(vec![0.0; FRAME_SAMPLES])
    }
}

/// Plays nothing: the speaker of a machine without one.
pub struct Discard;

impl FrameSink for Discard {
    fn play(&mut self, _frame: &[f32]) -> Result<(), parley_audio::AudioError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), parley_audio::AudioError> {
        Ok(())
    }
}

/// Which ends of a call fell back because the machine has no such device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fallbacks {
    /// No microphone: sending silence.
    pub muted: bool,
    /// No speaker: discarding what arrives.
    pub deaf: bool,
}

/// Checks the files a call names before anything goes online: the input must be a
/// readable WAV with some audio in it, the output's directory must exist. Relative paths
/// become absolute (a call run by the running client resolves them against its own
/// directory otherwise).
pub fn validate_files(opts: &mut CallOptions) -> anyhow::Result<()> {
    if let Some(input) = &opts.input {
        let source = WavSource::open(input).map_err(|e| Failure::usage(e.to_string()))?;
        if source.frames_left() == 0 {
            return Err(Failure::usage(format!(
                "{} holds no audio: nothing to send",
                input.display()
            )));
        }
        opts.input = Some(absolute(input)?);
    }
    if let Some(output) = &opts.output {
        let output = absolute(output)?;
        let dir = output.parent().unwrap_or(Path::new("/"));
        if !dir.is_dir() {
            return Err(Failure::usage(format!(
                "cannot write {}: {} is not a directory",
                output.display(),
                dir.display()
            )));
        }
        if output.is_dir() {
            return Err(Failure::usage(format!(
                "cannot write {}: it is a directory",
                output.display()
            )));
        }
        opts.output = Some(output);
    }
    Ok(())
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(p)?)
}

/// Opens a call's audio: files and named devices must work; a missing default device
/// falls back (see the module docs) with a warning printed once.
pub fn open(
    opts: &CallOptions,
    output: Option<PathBuf>,
    out: Printer,
) -> anyhow::Result<(AudioIo, Fallbacks)> {
    let (source, sink, fallbacks) = open_quiet(opts, output)?;
    if fallbacks.muted {
        out.warning(
            "no microphone: joining muted, sending silence (pass --input FILE.wav to send a file)",
        );
    }
    if fallbacks.deaf {
        out.warning("no speaker: discarding what you hear (pass --output FILE.wav to record it)");
    }
    Ok(((source, sink), fallbacks))
}

type Ends = (Box<dyn FrameSource>, Box<dyn FrameSink>, Fallbacks);

/// Set (to anything) to act as a machine without sound devices: a testing aid, since
/// most machines have at least ALSA's null device.
pub const NO_DEVICES_ENV: &str = "PARLEY_NO_AUDIO_DEVICES";

fn open_source(opts: &CallOptions) -> Result<Box<dyn FrameSource>, parley_audio::AudioError> {
    if opts.input.is_none() && std::env::var_os(NO_DEVICES_ENV).is_some() {
        return Err(parley_audio::AudioError::NoDevice {
            direction: parley_audio::Direction::Input,
        });
    }
    parley_audio::open_source(opts.input.as_deref(), opts.input_device.as_deref())
}

fn open_sink(
    opts: &CallOptions,
    output: Option<&Path>,
) -> Result<Box<dyn FrameSink>, parley_audio::AudioError> {
    if output.is_none() && std::env::var_os(NO_DEVICES_ENV).is_some() {
        return Err(parley_audio::AudioError::NoDevice {
            direction: parley_audio::Direction::Output,
        });
    }
    parley_audio::open_sink(output, opts.output_device.as_deref())
}

fn open_quiet(opts: &CallOptions, output: Option<PathBuf>) -> anyhow::Result<Ends> {
    let mut fallbacks = Fallbacks::default();
    let source: Box<dyn FrameSource> = match open_source(opts) {
        Ok(s) => s,
        Err(e)
            if opts.input.is_none()
                && opts.input_device.is_none()
                && parley_audio::is_missing_device(&e) =>
        {
            fallbacks.muted = true;
            Box::new(Silence)
        }
        Err(e) => return Err(e.into()),
    };
    let sink: Box<dyn FrameSink> = match open_sink(opts, output.as_deref()) {
        Ok(s) => s,
        Err(e)
            if output.is_none()
                && opts.output_device.is_none()
                && parley_audio::is_missing_device(&e) =>
        {
            fallbacks.deaf = true;
            Box::new(Discard)
        }
        Err(e) => return Err(e.into()),
    };
    Ok((source, sink, fallbacks))
}

/// `parley call` with neither a file nor a device on either side has nothing to do: an
/// error before anything goes online. Opens (and closes) the devices to find out.
pub fn check_call_audio(opts: &CallOptions) -> anyhow::Result<()> {
    if opts.input.is_some() || opts.output.is_some() {
        return Ok(());
    }
    let (_source, _sink, fallbacks) = open_quiet(opts, None)?;
    check_fallbacks(fallbacks)
}

/// The error for a call with no audio at either end.
pub fn check_fallbacks(fallbacks: Fallbacks) -> anyhow::Result<()> {
    if fallbacks.muted && fallbacks.deaf {
        return Err(Failure::usage(
            "no audio at all: this machine has no microphone and no speaker; pass --input \
             FILE.wav and/or --output FILE.wav",
        ));
    }
    Ok(())
}

/// Frames in flight from the echo's sink to its source.
const ECHO_QUEUE_FRAMES: usize = 50;

/// A sink and a source joined: every frame played comes out of the source (after the
/// jitter buffer's delay); silence while nothing is queued. The source never ends.
pub fn echo_pair() -> AudioIo {
    let queue: Arc<Mutex<VecDeque<Vec<f32>>>> = Arc::default();
    (
        Box::new(EchoSource(queue.clone())),
        Box::new(EchoSink(queue)),
    )
}

struct EchoSource(Arc<Mutex<VecDeque<Vec<f32>>>>);
struct EchoSink(Arc<Mutex<VecDeque<Vec<f32>>>>);

impl FrameSource for EchoSource {
    fn next_frame(&mut self) -> Option<Vec<f32>> {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Some(q.pop_front().unwrap_or_else(|| vec![0.0; FRAME_SAMPLES]))
    }
}

impl FrameSink for EchoSink {
    fn play(&mut self, frame: &[f32]) -> Result<(), parley_audio::AudioError> {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= ECHO_QUEUE_FRAMES {
            q.pop_front();
        }
        q.push_back(frame.to_vec());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), parley_audio::AudioError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controlled_source_mutes_and_ends_on_hangup() {
        let control = Arc::new(CallControl::default());
        let mut s = Controlled {
            inner: Box::new(WavSource::from_samples(vec![0.5; FRAME_SAMPLES * 10])),
            control: control.clone(),
        };
        assert_eq!(s.next_frame(), Some(vec![0.5; FRAME_SAMPLES]));
        assert_eq!(control.levels().0, 0.5);
        control.set_muted(true);
        assert_eq!(s.next_frame(), Some(vec![0.0; FRAME_SAMPLES]));
        control.set_muted(false);
        assert_eq!(s.next_frame(), Some(vec![0.5; FRAME_SAMPLES]));
        control.hang_up();
        assert_eq!(s.next_frame(), None);
    }

    #[test]
    fn echo_returns_what_was_played_in_order_and_is_bounded() {
        let (mut source, mut sink) = echo_pair();
        assert_eq!(source.next_frame(), Some(vec![0.0; FRAME_SAMPLES]));
        for i in 0..(ECHO_QUEUE_FRAMES + 5) {
            sink.play(&vec![i as f32; FRAME_SAMPLES]).unwrap();
        }
        // The oldest five were dropped to keep the delay bounded.
        assert_eq!(source.next_frame(), Some(vec![5.0; FRAME_SAMPLES]));
        assert_eq!(source.next_frame(), Some(vec![6.0; FRAME_SAMPLES]));
    }

    #[test]
    fn an_empty_or_missing_input_file_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        hound::WavWriter::create(&empty, spec)
            .unwrap()
            .finalize()
            .unwrap();
        let mut opts = CallOptions::for_test();
        opts.input = Some(empty);
        let e = validate_files(&mut opts).unwrap_err();
        assert_eq!(crate::output::exit_code_of(&e), crate::output::EXIT_USAGE);
        assert!(e.to_string().contains("no audio"), "{e}");
        opts.input = Some(dir.path().join("missing.wav"));
        assert!(validate_files(&mut opts).is_err());
        opts.input = None;
        opts.output = Some(dir.path().join("no/such/dir/heard.wav"));
        assert!(validate_files(&mut opts).is_err());
        opts.output = Some(dir.path().join("heard.wav"));
        validate_files(&mut opts).unwrap();
    }
}
