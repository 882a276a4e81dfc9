//! Unit tests of the jitter buffer (a child module of `jitter`, so they may look at its
//! private state).

use super::*;
use rand::{Rng, SeedableRng};

const T0: u64 = 1_700_000_000_000;

fn payload(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// A virtual call: `arrivals` are `(ms after T0, seq)`; every 20 ms from T0 until
/// `until_ms` the frames due are inserted (at their own arrival times), then one pop.
fn run(
    jb: &mut JitterBuffer,
    mut arrivals: Vec<(u64, u64)>,
    until_ms: u64,
) -> Vec<(u64, Option<Playout>)> {
    arrivals.sort_by_key(|&(t, _)| t);
    let mut due = arrivals.into_iter().peekable();
    let mut out = Vec::new();
    for t in (0..until_ms).step_by(20) {
        while let Some(&(at, seq)) = due.peek() {
            if at > t {
                break;
            }
            jb.insert(Timestamp(T0 + at), seq, payload(seq));
            due.next();
        }
        out.push((t, jb.pop(Timestamp(T0 + t))));
    }
    out
}

fn steady(seqs: impl Iterator<Item = u64>) -> Vec<(u64, u64)> {
    seqs.map(|s| (s * 20, s)).collect()
}

fn played(out: &[(u64, Option<Playout>)]) -> Vec<u64> {
    out.iter()
        .filter_map(|(_, p)| match p {
            Some(Playout::Frame { seq, .. }) => Some(*seq),
            _ => None,
        })
        .collect()
}

/// Playouts up to and including the last real frame (the tail after it is the
/// expected concealment while the buffer notices the stream ended).
fn until_last_frame(out: &[(u64, Option<Playout>)]) -> Vec<Playout> {
    let last = out
        .iter()
        .rposition(|(_, p)| matches!(p, Some(Playout::Frame { .. })))
        .expect("some frame played");
    out[..=last].iter().filter_map(|(_, p)| p.clone()).collect()
}

#[test]
fn in_order_stream_plays_every_frame_then_ends() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let out = run(&mut jb, steady(0..500), 500 * 20 + 2_000);
    assert_eq!(played(&out), (0..500).collect::<Vec<_>>());
    assert!(until_last_frame(&out)
        .iter()
        .all(|p| matches!(p, Playout::Frame { .. })));
    // Prebuffering: nothing at t=0, the first frame once 40 ms are buffered.
    assert_eq!(out[0].1, None);
    assert!(matches!(out[1].1, Some(Playout::Frame { seq: 0, .. })));
    // The stream ended: the buffer went quiet again.
    assert_eq!(out.last().map(|(_, p)| p.clone()), Some(None));
    let s = jb.stats();
    assert_eq!((s.received, s.lost, s.late, s.duplicates), (500, 0, 0, 0));
    assert_eq!((s.fec_recovered, s.discarded, s.buffered), (0, 0, 0));
    assert_eq!(s.target_delay_ms, 40);
}

#[test]
fn reordered_frames_play_in_order() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // Pairs swapped: 1, 0, 3, 2, ... each 20 ms apart.
    let arrivals = (0..200).map(|s| ((s ^ 1) * 20, s)).collect();
    let out = run(&mut jb, arrivals, 200 * 20 + 2_000);
    assert_eq!(played(&out), (0..200).collect::<Vec<_>>());
    let s = jb.stats();
    assert_eq!((s.lost, s.late, s.fec_recovered), (0, 0, 0));
}

#[test]
fn single_loss_yields_fec_from_the_next_frame() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let out = run(
        &mut jb,
        steady((0..200).filter(|&s| s != 50)),
        200 * 20 + 2_000,
    );
    let seq = until_last_frame(&out);
    let i = seq
        .iter()
        .position(|p| matches!(p, Playout::Fec { .. }))
        .expect("an FEC playout");
    assert_eq!(
        seq[i],
        Playout::Fec {
            seq: 50,
            next_payload: payload(51)
        }
    );
    assert_eq!(
        seq[i + 1],
        Playout::Frame {
            seq: 51,
            payload: payload(51)
        }
    );
    assert_eq!(seq.len(), 200, "every period answered, nothing concealed");
    let s = jb.stats();
    assert_eq!((s.lost, s.fec_recovered, s.late), (1, 1, 0));
}

#[test]
fn burst_loss_is_concealed() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let lost = 50..53;
    let out = run(
        &mut jb,
        steady((0..200).filter(|s| !lost.contains(s))),
        200 * 20 + 2_000,
    );
    let seq = until_last_frame(&out);
    // The buffer (40 ms) runs dry at frame 50: periods concealed while waiting. Frame 53
    // then arrives on time, so the frames before it were lost, not late: those periods
    // stood in for them, and the playout point moves on (the delay does not grow).
    let i = seq
        .iter()
        .rposition(|p| *p == Playout::Conceal { seq: 50 })
        .expect("an underrun at 50");
    assert!(matches!(
        seq[i + 1],
        Playout::Recover { later_seq: 53, .. } | Playout::Fec { seq: 52, .. }
    ));
    assert!(seq.contains(&Playout::Fec {
        seq: 52,
        next_payload: payload(53)
    }));
    let frames = played(&out);
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "in order");
    let s = jb.stats();
    assert_eq!((s.lost, s.fec_recovered, s.late), (3, 1, 0));
    assert!((1..=2).contains(&s.stall_skipped), "{s:?}");
    // No frame is skipped later to bring the delay back down: it never grew.
    assert_eq!(s.discarded, 0, "{s:?}");
    assert_eq!(frames.len() as u64 + 3, 200);
}

#[test]
fn after_an_underrun_a_delay_spike_keeps_its_frames() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // From frame 50 on, everything is held up 100 ms (a queue): the frames after the
    // underrun are late, not lost, and all of them play.
    let arrivals = steady(0..200)
        .into_iter()
        .map(|(t, s)| if s >= 50 { (t + 100, s) } else { (t, s) })
        .collect();
    let out = run(&mut jb, arrivals, 200 * 20 + 2_000);
    let frames = played(&out);
    assert!(frames.contains(&50) && frames.contains(&52), "{frames:?}");
    let s = jb.stats();
    assert_eq!((s.lost, s.stall_skipped), (0, 0), "{s:?}");
}

#[test]
fn duplicates_and_late_frames_are_dropped_and_counted() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut arrivals = steady((0..200).filter(|&s| s != 30));
    arrivals.push((10 * 20, 10)); // duplicate while buffered
    arrivals.push((60 * 20, 5)); // duplicate of a frame already played
    arrivals.push((33 * 20, 30)); // after frame 30's playout time
    let out = run(&mut jb, arrivals, 200 * 20 + 2_000);
    let frames = played(&out);
    assert_eq!(frames.len(), 199);
    assert!(!frames.contains(&30));
    let s = jb.stats();
    assert_eq!((s.received, s.duplicates, s.late), (202, 2, 1));
    assert_eq!((s.lost, s.fec_recovered), (1, 1));
}

#[test]
fn memory_is_bounded_under_a_flood_of_random_sequence_numbers() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut t = T0;
    for i in 0..50_000u64 {
        let seq = match i % 4 {
            0 => rng.gen(),
            1 => u64::MAX - rng.gen_range(0..4),
            _ => rng.gen_range(0..1_000),
        };
        jb.insert(Timestamp(t), seq, payload(seq));
        if i % 3 == 0 {
            t += 20;
            let _ = jb.pop(Timestamp(t));
        }
        assert!(jb.frames.len() as u64 <= jb.capacity);
        assert!(jb.pending.len() < RESYNC_RUN);
    }
    assert!(jb.capacity <= 16);
    // A real stream afterwards is picked up.
    let base = 5_000_000u64;
    let mut frames = Vec::new();
    for k in 0..100u64 {
        t += 20;
        jb.insert(Timestamp(t), base + k, payload(base + k));
        if let Some(Playout::Frame { seq, .. }) = jb.pop(Timestamp(t)) {
            frames.push(seq);
        }
    }
    assert!(frames.len() > 80, "{frames:?}");
    assert!(frames.iter().all(|&s| s >= base));
}

#[test]
fn sequence_jump_resynchronises_without_losing_the_new_frames() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let arrivals = (0..200u64)
        .map(|i| (i * 20, if i < 100 { i } else { 1_000_000 + i }))
        .collect();
    let out = run(&mut jb, arrivals, 200 * 20 + 2_000);
    let frames = played(&out);
    let new: Vec<u64> = frames.iter().copied().filter(|&s| s >= 1_000_000).collect();
    // The jump is confirmed only by its third frame, so the delay briefly grows by
    // two frames; at most one frame is skipped later to bring it back down.
    assert!(new.windows(2).all(|w| w[0] < w[1]), "{new:?}");
    assert!(new.len() >= 99 && new.last() == Some(&1_000_199), "{new:?}");
    assert!(frames.len() >= 199, "{}", frames.len());
    assert!(jb.stats().discarded <= 1, "{:?}", jb.stats());
}

#[test]
fn restarts_after_the_stream_ended() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // 1 s of frames, 2 s of nothing, then the sender resumes 100 frames later.
    let mut arrivals = steady(0..50);
    arrivals.extend((150..200).map(|s| (s * 20, s)));
    let out = run(&mut jb, arrivals, 200 * 20 + 2_000);
    assert!(out[50 * 20 / 20 + 40].1.is_none(), "ended during the pause");
    let frames = played(&out);
    let expected: Vec<u64> = (0..50).chain(150..200).collect();
    assert_eq!(frames, expected);
    assert_eq!(jb.stats().lost, 0);
}

#[test]
fn target_delay_rises_under_jitter_and_falls_back_after() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // 10 s clean, 10 s with 0-120 ms of random extra delay, 30 s clean.
    let mut arrivals: Vec<(u64, u64)> = (0..2_500u64)
        .map(|s| {
            let extra = if (500..1_000).contains(&s) {
                rng.gen_range(0..120)
            } else {
                0
            };
            (s * 20 + extra, s)
        })
        .collect();
    arrivals.sort_by_key(|&(t, _)| t);
    let mut due = arrivals.into_iter().peekable();
    let mut samples = Vec::new();
    let (mut playable, mut jittery_pops) = (0, 0);
    for t in (0..2_500 * 20).step_by(20) {
        while let Some(&(at, seq)) = due.peek() {
            if at > t {
                break;
            }
            jb.insert(Timestamp(T0 + at), seq, payload(seq));
            due.next();
        }
        let p = jb.pop(Timestamp(T0 + t));
        if (12_000..20_000).contains(&t) {
            jittery_pops += 1;
            if matches!(p, Some(Playout::Frame { .. }) | Some(Playout::Fec { .. })) {
                playable += 1;
            }
        }
        if t % 1_000 == 0 {
            samples.push(jb.stats().target_delay_ms);
        }
    }
    assert_eq!(samples[9], 40, "clean network: minimum delay {samples:?}");
    let peak = samples[10..21].iter().copied().max().unwrap_or(0);
    assert!(peak >= 100, "delay rose under jitter {samples:?}");
    assert!(samples[12] >= 100, "rose fast: {samples:?}");
    assert!(samples[22] > 60, "fell slowly: {samples:?}");
    assert!(
        *samples.last().unwrap_or(&0) <= 45,
        "fell back: {samples:?}"
    );
    assert!(
        playable * 100 >= jittery_pops * 90,
        "under jitter {playable}/{jittery_pops} periods played real audio"
    );
}

#[test]
fn a_backlog_found_at_the_start_is_skipped_at_once_not_compressed_for_seconds() {
    // Twelve frames a transport queued before the call read them all arrive at t = 0,
    // then the stream goes on at its own pace.
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut arrivals: Vec<(u64, u64)> = (0..12).map(|seq| (0, seq)).collect();
    arrivals.extend((12..300).map(|seq| ((seq - 11) * 20, seq)));
    let out = run(&mut jb, arrivals, 300 * 20);
    let played = played(&out);
    // Play starts at the newest target's worth (40 ms = 2 frames) of the backlog...
    assert_eq!(played.first(), Some(&10), "{played:?}");
    // ...and from then on every frame plays in turn: no skipping spread over seconds.
    assert_eq!(
        played,
        (10..played[played.len() - 1] + 1).collect::<Vec<_>>()
    );
    assert_eq!(jb.stats().discarded, 10);
}

#[test]
fn a_redundant_copy_stands_in_for_a_lost_frame_and_counts_as_lost() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let at = |ms: u64| Timestamp(T0 + ms);
    // Before playing starts a copy is not kept (nothing to measure it against).
    jb.insert_redundant(0, payload(0));
    assert_eq!(jb.stats().buffered, 0);
    jb.insert(at(0), 0, payload(0));
    jb.insert(at(20), 1, payload(1));
    assert!(matches!(
        jb.pop(at(40)),
        Some(Playout::Frame { seq: 0, .. })
    ));
    // Frame 2's datagram is lost; frame 3's carries copies of 2 and 1 (1 already played:
    // ignored).
    jb.insert(at(60), 3, payload(3));
    jb.insert_redundant(2, payload(2));
    jb.insert_redundant(1, payload(1));
    // Frame 4 and a late copy of 3 (here already: ignored, not a duplicate).
    jb.insert(at(80), 4, payload(4));
    jb.insert_redundant(3, payload(3));
    assert!(matches!(
        jb.pop(at(60)),
        Some(Playout::Frame { seq: 1, .. })
    ));
    assert_eq!(
        jb.pop(at(80)),
        Some(Playout::Redundant {
            seq: 2,
            payload: payload(2)
        })
    );
    // Frame 2's own datagram, late: a duplicate of what was played.
    jb.insert(at(85), 2, payload(2));
    assert!(matches!(
        jb.pop(at(100)),
        Some(Playout::Frame { seq: 3, .. })
    ));
    // A copy that arrives before the frame's own datagram is replaced by it.
    jb.insert_redundant(5, payload(5));
    jb.insert(at(110), 5, payload(5));
    assert!(matches!(
        jb.pop(at(120)),
        Some(Playout::Frame { seq: 4, .. })
    ));
    assert!(matches!(
        jb.pop(at(140)),
        Some(Playout::Frame { seq: 5, .. })
    ));
    let s = jb.stats();
    assert_eq!((s.lost, s.redundant_recovered, s.fec_recovered), (1, 1, 0));
    assert_eq!(s.received, 6, "copies are not counted as received");
    assert_eq!(s.duplicates, 1);
    assert_eq!(s.received_in_time() + s.lost, 6, "frames 0–5, each once");
}

#[test]
fn while_frames_are_lost_the_target_keeps_two_frames_above_the_minimum() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // Every fifth frame lost, no jitter: the frame after a loss (and its copy) must be
    // in the buffer by the time the lost one is due.
    let arrivals: Vec<_> = steady(0..200)
        .into_iter()
        .filter(|&(_, s)| s % 5 != 2)
        .collect();
    run(&mut jb, arrivals, 3_000);
    assert_eq!(jb.stats().target_delay_ms, 80, "{:?}", jb.stats());
}
