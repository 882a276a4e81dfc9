//! A reference receiver for comparison with the adaptive jitter buffer: every frame is
//! played a fixed time after it was sent, no adaptation, no waiting. What arrives by
//! then is played; a missing frame is rebuilt from the next one's FEC if that is already
//! here, else concealed. It shows what the same packets would sound like if the playout
//! delay never moved, separating the jitter buffer's own cost (delay changes, skipped
//! frames) from the codec's (FEC and concealment quality).

use parley_proto::media::{JitterStats, Playout};
use std::collections::BTreeMap;

/// Fixed-delay playout of a stream of 20 ms frames.
pub struct FixedPlayout {
    /// Playout period at which frame 0 is played.
    offset: u64,
    /// Next frame to play.
    next: u64,
    frames: BTreeMap<u64, Vec<u8>>,
    stats: JitterStats,
}

impl FixedPlayout {
    /// Frame `n` is played at playout period `n + offset`.
    pub fn new(offset: u64) -> FixedPlayout {
        FixedPlayout {
            offset,
            next: 0,
            frames: BTreeMap::new(),
            stats: JitterStats::default(),
        }
    }

    /// Frame `seq` arrived.
    pub fn insert(&mut self, seq: u64, payload: Vec<u8>) {
        self.stats.received += 1;
        if seq < self.next {
            self.stats.late += 1;
        } else if self.frames.insert(seq, payload).is_some() {
            self.stats.duplicates += 1;
        }
    }

    /// What to play in playout period `k`.
    pub fn pop(&mut self, k: u64) -> Option<Playout> {
        let seq = k.checked_sub(self.offset)?;
        self.next = seq + 1;
        if let Some(payload) = self.frames.remove(&seq) {
            return Some(Playout::Frame { seq, payload });
        }
        self.stats.lost += 1;
        if let Some(next_payload) = self.frames.get(&(seq + 1)).cloned() {
            self.stats.fec_recovered += 1;
            return Some(Playout::Fec { seq, next_payload });
        }
        self.stats.concealed += 1;
        Some(Playout::Conceal { seq })
    }

    /// Counters, in the jitter buffer's terms.
    pub fn stats(&self) -> JitterStats {
        JitterStats {
            buffered: self.frames.len(),
            ..self.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plays_on_schedule_uses_fec_and_drops_late_frames() {
        let mut p = FixedPlayout::new(2);
        assert_eq!(p.pop(0), None);
        p.insert(0, vec![0]);
        p.insert(2, vec![2]);
        assert_eq!(p.pop(1), None);
        assert_eq!(
            p.pop(2),
            Some(Playout::Frame {
                seq: 0,
                payload: vec![0]
            })
        );
        let fec = Some(Playout::Fec {
            seq: 1,
            next_payload: vec![2],
        });
        assert_eq!(p.pop(3), fec);
        p.insert(1, vec![1]); // too late
        assert_eq!(
            p.pop(4),
            Some(Playout::Frame {
                seq: 2,
                payload: vec![2]
            })
        );
        assert_eq!(p.pop(5), Some(Playout::Conceal { seq: 3 }));
        let s = p.stats();
        assert_eq!(
            (s.received, s.late, s.lost, s.fec_recovered, s.concealed),
            (3, 1, 2, 1, 1)
        );
    }
}
