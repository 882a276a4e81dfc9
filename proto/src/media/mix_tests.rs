//! The mixing bus, frame by frame: who hears whom, who is selected, the limiter, the
//! queues.

use super::*;

const A: MemberId = MemberId(0);
const B: MemberId = MemberId(1);
const C: MemberId = MemberId(2);

/// A frame of a sine at `amp` (a loud, speech-level signal at 0.1: about −23 dBFS).
fn tone(amp: f32, hz: f32) -> Vec<f32> {
    (0..FRAME_SAMPLES)
        .map(|i| amp * (i as f32 * hz * std::f32::consts::TAU / 48_000.0).sin())
        .collect()
}

fn bus(n: u32) -> MixBus {
    let mut bus = MixBus::new(MixConfig::default());
    for i in 0..n {
        bus.add(MemberId(i));
    }
    bus
}

fn events(bus: &mut MixBus) -> Vec<MixEvent> {
    std::iter::from_fn(|| bus.poll_event()).collect()
}

fn peak(f: &[f32]) -> f32 {
    f.iter().fold(0.0, |p, s| p.max(s.abs()))
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

#[test]
fn nobody_hears_themselves_and_the_others_hear_them_exactly() {
    let mut bus = bus(3);
    let a = tone(0.1, 440.0);
    for _ in 0..3 {
        bus.push(A, &a);
        bus.push(B, &[0.0; FRAME_SAMPLES]);
        bus.push(C, &[0.0; FRAME_SAMPLES]);
        assert_eq!(peak(&bus.pull(A)), 0.0, "A hears itself");
        bus.pull(B);
        bus.pull(C);
    }
    bus.push(A, &a);
    bus.push(B, &[0.0; FRAME_SAMPLES]);
    // Past the first frame's fade-in, a lone speaker is heard unchanged.
    assert!(close(&bus.pull(B), &a));
    assert!(close(&bus.pull(C), &a));
    assert_eq!(peak(&bus.pull(A)), 0.0);
}

#[test]
fn two_speakers_each_hear_the_other_and_a_third_hears_both() {
    let mut bus = bus(3);
    let (a, b) = (tone(0.1, 440.0), tone(0.1, 700.0));
    let mut heard = (vec![], vec![], vec![]);
    for _ in 0..3 {
        bus.push(A, &a);
        bus.push(B, &b);
        bus.push(C, &[0.0; FRAME_SAMPLES]);
        heard = (bus.pull(A), bus.pull(B), bus.pull(C));
    }
    assert!(close(&heard.0, &b));
    assert!(close(&heard.1, &a));
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert!(close(&heard.2, &sum));
    assert_eq!(bus.speaking(), vec![A, B]);
}

#[test]
fn the_first_frame_fades_in_so_a_speaker_does_not_click_in() {
    let mut bus = bus(2);
    bus.push(A, &[0.5; FRAME_SAMPLES]);
    // Not heard until a frame of slack is queued.
    assert_eq!(peak(&bus.pull(B)), 0.0);
    bus.push(A, &[0.5; FRAME_SAMPLES]);
    let heard = bus.pull(B);
    assert!(heard[0] < 0.01, "starts near silence: {}", heard[0]);
    assert!((heard[FRAME_SAMPLES - 1] - 0.5).abs() < 1e-3);
    assert!(heard.windows(2).all(|w| w[1] >= w[0]));
}

#[test]
fn quiet_open_microphones_are_not_mixed() {
    // Seven microphones with noise at about −60 dBFS and one speaker: the listeners
    // hear the speaker alone, not the speaker over seven noise floors.
    let mut bus = bus(8);
    let noise = tone(0.0014, 3000.0);
    let speech = tone(0.1, 440.0);
    let mut heard = vec![];
    for _ in 0..5 {
        bus.push(A, &speech);
        for i in 1..8 {
            bus.push(MemberId(i), &noise);
        }
        heard = bus.pull(MemberId(7));
        for i in 0..7 {
            bus.pull(MemberId(i));
        }
    }
    assert!(close(&heard, &speech));
    assert_eq!(bus.speaking(), vec![A]);
}

#[test]
fn at_most_max_active_are_mixed_and_the_loudest_are_chosen() {
    let mut bus = bus(8);
    // Five talk at −37 dBFS, three (who push last) 20 dB louder.
    let frames: Vec<Vec<f32>> = (0..8)
        .map(|i| tone(if i < 5 { 0.02 } else { 0.2 }, 300.0 + 50.0 * i as f32))
        .collect();
    let mut heard = vec![];
    for _ in 0..10 {
        for (i, f) in frames.iter().enumerate() {
            bus.push(MemberId(i as u32), f);
        }
        for i in 0..8 {
            heard = bus.pull(MemberId(i));
        }
    }
    assert_eq!(bus.speaking(), vec![MemberId(5), MemberId(6), MemberId(7)]);
    // Member 7 hears 5 and 6 only.
    let sum: Vec<f32> = frames[5]
        .iter()
        .zip(&frames[6])
        .map(|(x, y)| x + y)
        .collect();
    assert!(close(&heard, &sum));
}

#[test]
fn a_much_louder_talker_takes_the_place_of_the_quietest() {
    let mut bus = bus(5);
    let soft = tone(0.03, 300.0);
    for _ in 0..5 {
        for i in 0..3 {
            bus.push(MemberId(i), &soft);
        }
    }
    assert_eq!(bus.speaking(), vec![MemberId(0), MemberId(1), MemberId(2)]);
    events(&mut bus);
    // Member 3, as loud as the others: no place for it.
    for _ in 0..5 {
        for i in 0..4 {
            bus.push(MemberId(i), &soft);
        }
    }
    assert!(!bus.speaking().contains(&MemberId(3)));
    // Member 4, 20 dB louder: it takes a place.
    for _ in 0..5 {
        for i in 0..4 {
            bus.push(MemberId(i), &soft);
        }
        bus.push(MemberId(4), &tone(0.3, 500.0));
    }
    assert!(bus.speaking().contains(&MemberId(4)));
    assert_eq!(bus.speaking().len(), 3);
    let ev = events(&mut bus);
    assert!(ev.contains(&MixEvent::Speaking {
        member: MemberId(4),
        speaking: true
    }));
}

#[test]
fn a_talker_stays_mixed_through_a_pause_shorter_than_the_hold() {
    let mut bus = bus(2);
    bus.push(A, &tone(0.1, 440.0));
    assert_eq!(
        events(&mut bus),
        vec![MixEvent::Speaking {
            member: A,
            speaking: true
        }]
    );
    let hold = MixConfig::default().hold_frames;
    for _ in 0..hold - 1 {
        bus.push(A, &[0.0; FRAME_SAMPLES]);
    }
    assert_eq!(bus.speaking(), vec![A], "cut inside the hold");
    bus.push(A, &[0.0; FRAME_SAMPLES]);
    assert!(bus.speaking().is_empty());
    assert_eq!(
        events(&mut bus),
        vec![MixEvent::Speaking {
            member: A,
            speaking: false
        }]
    );
}

#[test]
fn the_limiter_scales_a_loud_sum_instead_of_clipping_it() {
    let mut bus = bus(3);
    let (a, b) = (tone(0.8, 440.0), tone(0.8, 440.0));
    let mut heard = vec![];
    for _ in 0..3 {
        bus.push(A, &a);
        bus.push(B, &b);
        heard = bus.pull(C);
    }
    let ceiling = MixConfig::default().ceiling;
    assert!(peak(&heard) <= ceiling + 1e-6);
    assert!(peak(&heard) > ceiling * 0.99, "{}", peak(&heard));
    // The shape is kept: every sample is the sum times one gain (no flat tops).
    let gain = heard[100] / (a[100] + b[100]);
    for i in 0..FRAME_SAMPLES {
        assert!((heard[i] - gain * (a[i] + b[i])).abs() < 1e-4, "sample {i}");
    }
    assert!(bus.stats().limited > 0);
    // Then it recovers, by at most 1 dB per frame, up to unity.
    let soft = tone(0.1, 440.0);
    let mut gains = vec![];
    for _ in 0..40 {
        bus.push(A, &soft);
        bus.push(B, &[0.0; FRAME_SAMPLES]);
        let h = bus.pull(C);
        if peak(&h) < 0.2 {
            gains.push(h[FRAME_SAMPLES - 1] / soft[FRAME_SAMPLES - 1]);
        }
    }
    assert!(gains[0] < 0.7, "{gains:?}");
    for w in gains.windows(2) {
        assert!(
            w[1] >= w[0] - 1e-4 && w[1] <= w[0] * 10f32.powf(1.0 / 20.0) + 1e-3,
            "{gains:?}"
        );
    }
    assert!((gains.last().unwrap() - 1.0).abs() < 1e-3, "{gains:?}");
}

#[test]
fn a_listener_that_falls_behind_loses_the_oldest_frames_not_the_newest() {
    let mut bus = bus(2);
    let limit = MixConfig::default().queue_frames;
    for i in 0..limit + 3 {
        bus.push(A, &[0.01 * (i + 1) as f32; FRAME_SAMPLES]);
    }
    assert_eq!(bus.stats().dropped_full, 3);
    // The oldest three were dropped: the next one heard is the fourth.
    let heard = bus.pull(B);
    assert!(
        (heard[FRAME_SAMPLES - 1] - 0.04).abs() < 1e-5,
        "{}",
        heard[FRAME_SAMPLES - 1]
    );
}

#[test]
fn a_standing_backlog_is_trimmed_by_one_frame_per_window() {
    let mut bus = bus(2);
    let f = tone(0.1, 440.0);
    // Three frames ahead, then one push per pull: a standing delay of 60 ms.
    for _ in 0..3 {
        bus.push(A, &f);
    }
    let mut trims = vec![];
    for _ in 0..5 {
        for _ in 0..TRIM_WINDOW {
            bus.push(A, &f);
            bus.pull(B);
        }
        trims.push(bus.stats().dropped_trim);
    }
    // One frame per window until one frame of slack is left.
    assert_eq!(trims, vec![1, 2, 2, 2, 2]);
    assert_eq!(bus.stats().underruns, 0);
}

#[test]
fn a_member_who_leaves_is_no_longer_heard_nor_listed() {
    let mut bus = bus(3);
    bus.push(A, &tone(0.1, 440.0));
    events(&mut bus);
    bus.remove(A);
    assert_eq!(
        events(&mut bus),
        vec![MixEvent::Speaking {
            member: A,
            speaking: false
        }]
    );
    assert_eq!(bus.members(), vec![B, C]);
    assert_eq!(peak(&bus.pull(B)), 0.0);
    // Pushing or pulling for a member who left is harmless.
    bus.push(A, &tone(0.1, 440.0));
    assert_eq!(peak(&bus.pull(A)), 0.0);
    // Joining again starts afresh.
    bus.add(A);
    bus.add(A);
    assert_eq!(bus.members(), vec![A, B, C]);
}

#[test]
fn frame_level_is_rms_in_dbfs() {
    assert!((frame_dbfs(&[1.0; 960]) - 0.0).abs() < 1e-3);
    assert!((frame_dbfs(&[0.1; 960]) + 20.0).abs() < 1e-3);
    assert_eq!(frame_dbfs(&[0.0; 960]), -120.0);
    assert_eq!(frame_dbfs(&[]), -120.0);
}

#[test]
fn jittered_cadences_neither_skip_nor_repeat_a_frame() {
    // Speaker and listener on separate 20 ms clocks at the same phase: in each period
    // the push comes before or after the pull at random (seeded).
    let mut bus = bus(2);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut coin = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed & 1 == 1
    };
    let mut heard = vec![];
    for i in 0..1000 {
        let frame = [0.1 + i as f32 * 1e-4; FRAME_SAMPLES];
        if coin() {
            bus.push(A, &frame);
            heard.push(bus.pull(B)[FRAME_SAMPLES - 1]);
        } else {
            heard.push(bus.pull(B)[FRAME_SAMPLES - 1]);
            bus.push(A, &frame);
        }
    }
    let stats = bus.stats();
    assert_eq!((stats.underruns, stats.dropped_full), (0, 0), "{stats:?}");
    // After priming, each period plays the next frame: a step of 1e-4 every time.
    let start = heard.iter().position(|h| *h > 0.0).unwrap();
    assert!(start <= 2, "{start}");
    for w in heard[start + 1..].windows(2) {
        assert!((w[1] - w[0] - 1e-4).abs() < 2e-5, "{w:?}");
    }
}

#[test]
fn a_speaker_that_stalls_and_catches_up_gaps_once_not_at_every_stall() {
    // Every 25 periods the speaker's leg stalls for 40 ms and then catches up with
    // three frames at once (a starved process); the listener pulls every period.
    let mut bus = bus(2);
    let f = tone(0.1, 440.0);
    for period in 0..1000 {
        match period % 25 {
            23 | 24 => {}
            0 if period > 0 => {
                for _ in 0..3 {
                    bus.push(A, &f);
                }
            }
            _ => bus.push(A, &f),
        }
        bus.pull(B);
    }
    // The first stall gaps; its catch-up leaves two frames of slack (the windows with
    // a stall in them never trim it), which carries the 39 stalls after it.
    let stats = bus.stats();
    assert_eq!((stats.underruns, stats.dropped_trim), (1, 0), "{stats:?}");
}
