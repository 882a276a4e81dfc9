//! The scoring half of the audio-quality benchmark (`quality`), as a library so that the
//! end-to-end call tests score real calls exactly as the benchmark scores simulated ones:
//! the same alignment, resampling and wideband PESQ (ITU-T P.862.2) helper. See the
//! "Audio quality" section of `docs/performance.md`.
#![deny(missing_docs)]

pub mod score;
