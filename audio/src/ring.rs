//! A bounded, lock-free sample queue between a sound-card callback and the call's 20 ms
//! clock: a single-producer single-consumer ring (`rtrb`), so the audio thread never
//! takes a lock, never allocates and never blocks.
//!
//! The two sides run on different clocks, so the queue absorbs the difference: when it
//! is full the newest samples are dropped and counted (an SPSC producer cannot drop the
//! oldest; either way a full queue means the reader fell behind), and the playback side
//! waits until a cushion of samples has built up before it starts reading, and again
//! after it ran dry, so a small timing mismatch costs one short gap instead of constant
//! crackle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Default)]
struct Counters {
    dropped: AtomicU64,
    underruns: AtomicU64,
}

/// The writing end.
pub(crate) struct RingWriter {
    inner: rtrb::Producer<f32>,
    capacity: usize,
    counters: Arc<Counters>,
}

/// The reading end.
pub(crate) struct RingReader {
    inner: rtrb::Consumer<f32>,
    cushion: usize,
    /// The reader may read (the cushion was reached and the queue has not run dry).
    primed: bool,
    counters: Arc<Counters>,
}

/// A queue holding at most `capacity` samples; [`RingReader::pop_into`] starts handing
/// them out once `cushion` samples are queued.
pub(crate) fn ring(capacity: usize, cushion: usize) -> (RingWriter, RingReader) {
    let capacity = capacity.max(1);
    let (inner_w, inner_r) = rtrb::RingBuffer::new(capacity);
    let counters = Arc::new(Counters::default());
    (
        RingWriter {
            inner: inner_w,
            capacity,
            counters: counters.clone(),
        },
        RingReader {
            inner: inner_r,
            cushion: cushion.min(capacity),
            primed: cushion == 0,
            counters,
        },
    )
}

impl RingWriter {
    /// Appends samples; those that do not fit are dropped and counted. Wait-free.
    pub(crate) fn push(&mut self, samples: impl IntoIterator<Item = f32>) {
        let mut dropped = 0;
        for s in samples {
            if self.inner.push(s).is_err() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Samples queued.
    pub(crate) fn len(&self) -> usize {
        self.capacity - self.inner.slots()
    }

    /// Samples dropped on overflow, and times the reader ran dry, so far.
    pub(crate) fn counters(&self) -> (u64, u64) {
        (
            self.counters.dropped.load(Ordering::Relaxed),
            self.counters.underruns.load(Ordering::Relaxed),
        )
    }
}

impl RingReader {
    /// Fills `out` from the queue (once primed), silence for whatever is missing. Returns
    /// how many samples were real. Wait-free, no allocation: safe in an audio callback.
    pub(crate) fn pop_into(&mut self, out: &mut [f32]) -> usize {
        let available = self.inner.slots();
        if !self.primed && available >= self.cushion.max(1) {
            self.primed = true;
        }
        let n = if self.primed {
            out.len().min(available)
        } else {
            0
        };
        for slot in out[..n].iter_mut() {
            *slot = self.inner.pop().unwrap_or(0.0);
        }
        out[n..].fill(0.0);
        if self.primed && n < out.len() && self.cushion > 0 {
            self.primed = false;
            self.counters.underruns.fetch_add(1, Ordering::Relaxed);
        }
        n
    }

    /// Takes everything queued, ignoring the cushion (the call side of a capture).
    pub(crate) fn drain_all(&mut self, out: &mut Vec<f32>) {
        while let Ok(s) = self.inner.pop() {
            out.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_drops_and_counts() {
        let (mut w, mut r) = ring(4, 0);
        w.push([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let mut out = Vec::new();
        r.drain_all(&mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(w.counters(), (2, 0));
    }

    #[test]
    fn reader_waits_for_the_cushion_and_again_after_running_dry() {
        let (mut w, mut r) = ring(100, 3);
        let mut out = [9.0; 2];
        w.push([1.0, 2.0]);
        assert_eq!(r.pop_into(&mut out), 0);
        assert_eq!(out, [0.0, 0.0]);
        w.push([3.0]);
        assert_eq!(r.pop_into(&mut out), 2);
        assert_eq!(out, [1.0, 2.0]);
        assert_eq!(r.pop_into(&mut out), 1);
        assert_eq!(out, [3.0, 0.0]);
        w.push([4.0]);
        assert_eq!(r.pop_into(&mut out), 0, "re-priming after the underrun");
        assert_eq!(w.len(), 1);
        assert_eq!(w.counters(), (0, 1));
    }

    #[test]
    fn the_two_ends_work_from_two_threads() {
        let (mut w, mut r) = ring(1_000, 0);
        let writer = std::thread::spawn(move || {
            for i in 0..10_000 {
                while w.len() > 900 {
                    std::thread::yield_now();
                }
                w.push([i as f32]);
            }
        });
        let mut got = Vec::new();
        while got.len() < 10_000 {
            r.drain_all(&mut got);
            std::thread::yield_now();
        }
        writer.join().expect("writer");
        assert!(got.iter().enumerate().all(|(i, s)| *s == i as f32));
    }
}
