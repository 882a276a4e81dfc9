//! A bounded sample queue between a sound-card callback and the call's 20 ms clock.
//!
//! The two sides run on different clocks, so the queue absorbs the difference: when it
//! is full the oldest samples are dropped (the reader fell behind: drop latency, not
//! the newest audio), and the playback side waits until a cushion of samples has built
//! up before it starts reading, and again after it ran dry, so a small timing mismatch
//! costs one short gap instead of constant crackle.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// A bounded FIFO of mono samples shared by a producer and a consumer thread.
pub(crate) struct Ring {
    state: Mutex<State>,
    capacity: usize,
    cushion: usize,
}

struct State {
    samples: VecDeque<f32>,
    /// The consumer may read (the cushion was reached and the queue has not run dry).
    primed: bool,
    dropped: u64,
    underruns: u64,
}

impl Ring {
    /// A queue holding at most `capacity` samples; [`pop_into`](Self::pop_into) starts
    /// handing them out once `cushion` samples are queued.
    pub(crate) fn new(capacity: usize, cushion: usize) -> Ring {
        let capacity = capacity.max(1);
        Ring {
            state: Mutex::new(State {
                samples: VecDeque::with_capacity(capacity),
                primed: false,
                dropped: 0,
                underruns: 0,
            }),
            capacity,
            cushion: cushion.min(capacity),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves only samples behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends samples, dropping the oldest ones if the queue would overflow.
    pub(crate) fn push(&self, samples: impl IntoIterator<Item = f32>) {
        let mut state = self.lock();
        for s in samples {
            if state.samples.len() == self.capacity {
                state.samples.pop_front();
                state.dropped += 1;
            }
            state.samples.push_back(s);
        }
        if state.samples.len() >= self.cushion {
            state.primed = true;
        }
    }

    /// Fills `out` from the queue (once primed), silence for whatever is missing. Returns
    /// how many samples were real.
    pub(crate) fn pop_into(&self, out: &mut [f32]) -> usize {
        let mut state = self.lock();
        let n = if state.primed {
            out.len().min(state.samples.len())
        } else {
            0
        };
        for (slot, s) in out.iter_mut().zip(state.samples.drain(..n)) {
            *slot = s;
        }
        out[n..].fill(0.0);
        if state.primed && n < out.len() {
            state.primed = false;
            state.underruns += 1;
        }
        n
    }

    /// Takes everything queued, ignoring the cushion.
    pub(crate) fn drain_all(&self, out: &mut Vec<f32>) {
        out.extend(self.lock().samples.drain(..));
    }

    /// Samples queued.
    pub(crate) fn len(&self) -> usize {
        self.lock().samples.len()
    }

    /// Samples dropped on overflow, and times the reader ran dry, so far.
    pub(crate) fn counters(&self) -> (u64, u64) {
        let state = self.lock();
        (state.dropped, state.underruns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_drops_the_oldest() {
        let ring = Ring::new(4, 0);
        ring.push([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let mut out = Vec::new();
        ring.drain_all(&mut out);
        assert_eq!(out, [3.0, 4.0, 5.0, 6.0]);
        assert_eq!(ring.counters(), (2, 0));
    }

    #[test]
    fn reader_waits_for_the_cushion_and_again_after_running_dry() {
        let ring = Ring::new(100, 3);
        let mut out = [9.0; 2];
        ring.push([1.0, 2.0]);
        assert_eq!(ring.pop_into(&mut out), 0);
        assert_eq!(out, [0.0, 0.0]);
        ring.push([3.0]);
        assert_eq!(ring.pop_into(&mut out), 2);
        assert_eq!(out, [1.0, 2.0]);
        assert_eq!(ring.pop_into(&mut out), 1);
        assert_eq!(out, [3.0, 0.0]);
        ring.push([4.0]);
        assert_eq!(ring.pop_into(&mut out), 0, "re-priming after the underrun");
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.counters(), (0, 1));
    }
}
