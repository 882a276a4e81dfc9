//! Clock drift: the sender's 20 ms is not the receiver's 20 ms. A sound card a tenth of a
//! percent fast or slow is normal, and over a long call that is seconds of audio. The
//! jitter buffer must absorb it by inserting (concealing) or skipping the odd frame, about
//! one per thousand, without its delay or its memory creeping up.

use super::{JitterBuffer, JitterConfig, Playout};
use crate::time::Timestamp;
use rand::{Rng, SeedableRng};

const T0: u64 = 1_700_000_000_000;
/// Ten minutes of 20 ms frames.
const FRAMES: u64 = 30_000;

/// What one simulated call did to the buffer.
#[derive(Debug)]
struct DriftRun {
    /// Frames that came out as [`Playout::Frame`].
    played: u64,
    /// Underrun concealments: periods filled in without a frame being lost.
    inserted: u64,
    /// Frames thrown away to bring the delay back down.
    skipped: u64,
    lost: u64,
    max_buffered: usize,
    /// Largest time from a frame's sending (in receiver time) to its playout, in ms,
    /// for each minute of the call.
    max_delay_ms: Vec<f64>,
}

/// Frame `k` leaves the sender at `k · period_ms` of receiver time and arrives up to
/// `jitter_ms` later (uniformly); the receiver pops every 20 ms of its own clock.
fn simulate(period_ms: f64, jitter_ms: f64, seed: u64) -> DriftRun {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let sent_at = |k: u64| k as f64 * period_ms;
    let mut arrivals: Vec<(u64, u64)> = (0..FRAMES)
        .map(|k| {
            let at = sent_at(k) + rng.gen_range(0.0..=jitter_ms);
            (at.floor() as u64, k)
        })
        .collect();
    arrivals.sort_by_key(|&(t, k)| (t, k));
    let last_at = arrivals.last().map_or(0, |&(t, _)| t);
    let end_ms = (sent_at(FRAMES) + 1_000.0) as u64;
    let mut due = arrivals.into_iter().peekable();
    let mut run = DriftRun {
        played: 0,
        inserted: 0,
        skipped: 0,
        lost: 0,
        max_buffered: 0,
        max_delay_ms: vec![0.0; (end_ms / 60_000 + 1) as usize],
    };
    for t in (0..end_ms).step_by(20) {
        while let Some(&(at, seq)) = due.peek() {
            if at > t {
                break;
            }
            jb.insert(Timestamp(T0 + at), seq, seq.to_be_bytes().to_vec());
            due.next();
        }
        let lost_before = jb.stats().lost;
        match jb.pop(Timestamp(T0 + t)) {
            Some(Playout::Frame { seq, .. }) => {
                run.played += 1;
                let delay = t as f64 - sent_at(seq);
                let minute = &mut run.max_delay_ms[(t / 60_000) as usize];
                *minute = minute.max(delay);
            }
            // After the last arrival the buffer conceals until it notices the end: that
            // tail is not drift.
            Some(Playout::Conceal { .. }) if jb.stats().lost == lost_before && t < last_at => {
                run.inserted += 1
            }
            _ => {}
        }
        run.max_buffered = run.max_buffered.max(jb.stats().buffered);
    }
    let s = jb.stats();
    run.skipped = s.discarded;
    run.lost = s.lost;
    assert_eq!(s.received, FRAMES);
    assert_eq!(s.buffered, 0, "everything played or dropped by the end");
    run
}

/// Bounds shared by every run: memory and delay stay put for ten minutes, and nothing is
/// lost (in the old buffer a slow sender with 60 ms of jitter lost ~0.4 % of its frames:
/// the delay sank into the jitter and frames arrived after their turn).
fn check_bounded(run: &DriftRun, jitter_ms: f64) {
    let config = JitterConfig::default();
    let frame_ms = config.frame.as_millis() as f64;
    let window = (config.max_delay.as_millis() as f64 / frame_ms) as usize + 1;
    // What the jitter calls for (at least the minimum delay), plus a few frames of slack.
    let enough_ms = jitter_ms.max(config.min_delay.as_millis() as f64) + 3.0 * frame_ms;
    assert!(run.max_buffered <= window, "{run:?}");
    assert!(
        run.max_buffered as f64 <= enough_ms / frame_ms + 1.0,
        "{run:?}"
    );
    let worst = run.max_delay_ms.iter().copied().fold(0.0, f64::max);
    assert!(worst <= jitter_ms + enough_ms, "{run:?}");
    // No creeping: the last full minute is no worse than the second one (the first
    // holds the start-up) by more than a frame.
    let (second, last) = (run.max_delay_ms[1], run.max_delay_ms[9]);
    assert!(last <= second + frame_ms, "{run:?}");
    assert!(run.lost <= 5, "frames lost to drift: {run:?}");
    assert_eq!(run.played + run.skipped + run.lost, FRAMES, "{run:?}");
}

/// A sender 0.1 % fast sends one frame per thousand more than the receiver plays:
/// 30 over ten minutes, which the buffer must skip (and not many more than that).
#[test]
fn a_fast_sender_clock_is_absorbed_by_skipping_frames() {
    for (jitter_ms, seed) in [(10.0, 1), (10.0, 2), (60.0, 3), (60.0, 4), (100.0, 5)] {
        let run = simulate(19.98, jitter_ms, seed);
        eprintln!("fast sender, jitter {jitter_ms} ms, seed {seed}: {run:?}");
        check_bounded(&run, jitter_ms);
        assert!((25..=36).contains(&run.skipped), "{run:?}");
        assert!(run.inserted <= 8, "{run:?}");
    }
}

/// A sender 0.1 % slow leaves the receiver one frame short per thousand: about 30
/// periods to fill in over ten minutes, and next to nothing skipped.
#[test]
fn a_slow_sender_clock_is_absorbed_by_inserting_frames() {
    for (jitter_ms, seed) in [(10.0, 1), (10.0, 2), (60.0, 3), (60.0, 4), (100.0, 5)] {
        let run = simulate(20.02, jitter_ms, seed);
        eprintln!("slow sender, jitter {jitter_ms} ms, seed {seed}: {run:?}");
        check_bounded(&run, jitter_ms);
        let net = run.inserted.saturating_sub(run.skipped);
        assert!((25..=36).contains(&net), "{run:?}");
        assert!(run.skipped <= 4, "{run:?}");
    }
}

/// Without drift (and the same jitter) next to nothing needs correcting: the two tests
/// above measure drift, not the buffer chasing its own noise.
#[test]
fn without_drift_almost_nothing_is_inserted_or_skipped() {
    for (jitter_ms, seed) in [(10.0, 1), (60.0, 3), (60.0, 4), (100.0, 5)] {
        let run = simulate(20.0, jitter_ms, seed);
        eprintln!("no drift, jitter {jitter_ms} ms, seed {seed}: {run:?}");
        check_bounded(&run, jitter_ms);
        assert!(run.inserted + run.skipped <= 16, "{run:?}");
    }
}

/// The playout delay itself (not just the target) follows the network: it grows within
/// a second or two of jitter starting, and comes back down once it is over.
#[test]
fn playout_delay_rises_under_jitter_and_falls_back_after() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // 20 s clean, 20 s with 0–100 ms of random extra delay, 40 s clean.
    let jittery = 1_000..2_000u64;
    let mut arrivals: Vec<(u64, u64)> = (0..4_000u64)
        .map(|k| {
            let extra = if jittery.contains(&k) {
                rng.gen_range(0..=100)
            } else {
                0
            };
            (k * 20 + extra, k)
        })
        .collect();
    arrivals.sort_unstable();
    let mut due = arrivals.into_iter().peekable();
    // Playout delay of each frame played, by the second it was played in.
    let mut by_second: Vec<Vec<u64>> = vec![Vec::new(); 81];
    for t in (0..80_000u64).step_by(20) {
        while let Some(&(at, seq)) = due.peek() {
            if at > t {
                break;
            }
            jb.insert(Timestamp(T0 + at), seq, seq.to_be_bytes().to_vec());
            due.next();
        }
        if let Some(Playout::Frame { seq, .. }) = jb.pop(Timestamp(T0 + t)) {
            by_second[(t / 1_000) as usize].push(t - seq * 20);
        }
    }
    let median = |s: usize| {
        let mut d = by_second[s].clone();
        d.sort_unstable();
        d.get(d.len() / 2).copied().unwrap_or(0)
    };
    let medians: Vec<u64> = (0..80).map(median).collect();
    assert!(medians[5..20].iter().all(|&d| d <= 40), "{medians:?}");
    assert!(
        medians[22..40].iter().all(|&d| d >= 80),
        "rose: {medians:?}"
    );
    assert!(
        medians[70..80].iter().all(|&d| d <= 40),
        "fell back: {medians:?}"
    );
    let s = jb.stats();
    assert!(
        s.lost * 100 <= 4_000,
        "lost {} of 4000 frames: {s:?}",
        s.lost
    );
}
