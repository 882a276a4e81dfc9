//! Parley's audio: the Opus codec, WAV files, sound devices, and a speech-similarity
//! measure that tests use to prove a call carried speech.
//!
//! Everything speaks one format: 48 kHz mono `f32` samples in [-1, 1], in frames of
//! 20 ms ([`FRAME_SAMPLES`] samples). A call takes frames from a [`FrameSource`]
//! (microphone or WAV file), [`Encoder::encode`]s them, and on the other side feeds the
//! packets through `parley_proto::media::JitterBuffer` into [`Decoder::play`] and on to
//! a [`FrameSink`] (speakers or WAV file). [`open_source`] and [`open_sink`] pick a file
//! if one is given, else a device; on a machine without sound hardware they fail with
//! [`AudioError::NoDevice`], whose message tells the user to pass a WAV file instead.
#![deny(missing_docs)]

mod codec;
mod device;
mod engine;
mod error;
mod io;
mod packet;
mod resample;
mod ring;
mod similarity;
mod stream;
mod wav;

pub use codec::{
    Decoder, Encoder, BITRATE_RANGE, DECODER_COMPLEXITY, DEFAULT_BITRATE, DEFAULT_EXPECTED_LOSS,
    DRED_MAX_10MS, FRAME_SAMPLES, RECOVER_MAX_FRAMES, SAMPLE_RATE,
};
pub use device::{list_devices, DeviceInfo, DeviceSink, DeviceSource};
pub use engine::OpusCodec;
pub use error::{AudioError, Direction};
pub use io::{
    is_missing_device, open_sink, open_source, FrameSink, FrameSource, WavSink, WavSource,
};
pub use packet::{inspect as inspect_packet, PacketInfo};
pub use resample::resample;
pub use similarity::{align_and_correlate, align_segments, pearson_at, Similarity};
pub use wav::{read_wav_48k_mono, WavWriter, SUPPORTED_RATES};

use std::path::PathBuf;

/// A short recording of English speech (about 7 s, 16 kHz mono 16-bit) for tests and
/// demos. See `audio/fixtures/README.md` for how it was made.
pub fn speech_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("speech.wav")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_move_to_the_call_thread() {
        fn send<T: Send>() {}
        send::<Encoder>();
        send::<Decoder>();
        send::<DeviceSource>();
        send::<DeviceSink>();
        send::<WavSource>();
        send::<WavSink>();
        send::<AudioError>();
        assert!(speech_fixture().is_file());
    }
}
