//! Unit tests of the rate controller (a child module of `rate`, so they may look at its
//! private state).

use super::*;
use rand::{Rng, SeedableRng};

const T0: u64 = 1_700_000_000_000;

/// A virtual call: the receiver reports once a second on 50 frames a second, each
/// lost with `loss(second)`; a ping every second echoes `rtt(second)`.
struct Sim {
    rc: RateController,
    rng: rand::rngs::StdRng,
    t: u64,
    received: u64,
    lost: u64,
}

impl Sim {
    fn new(config: RateConfig) -> Sim {
        Sim {
            rc: RateController::new(config),
            rng: rand::rngs::StdRng::seed_from_u64(11),
            t: 0,
            received: 0,
            lost: 0,
        }
    }

    /// Runs `seconds` with loss fraction `loss` and round-trip time `rtt_ms`;
    /// returns the bitrate after each second.
    fn run(&mut self, seconds: u64, loss: f64, rtt_ms: u64) -> Vec<i32> {
        let mut out = Vec::new();
        for _ in 0..seconds {
            for _ in 0..50 {
                if self.rng.gen_bool(loss) {
                    self.lost += 1;
                } else {
                    self.received += 1;
                }
            }
            self.t += 1_000;
            let now = Timestamp(T0 + self.t);
            self.rc.on_rtt(now, Duration::from_millis(rtt_ms));
            self.rc.on_report(now, self.received, self.lost);
            out.push(self.rc.target().bitrate_bps);
        }
        out
    }
}

#[test]
fn sustained_loss_lowers_the_bitrate_and_raises_expected_loss() {
    let mut sim = Sim::new(RateConfig::default());
    let clean = sim.run(20, 0.0, 40);
    assert!(clean.iter().all(|&b| b >= 32_000), "{clean:?}");
    let clean_loss = sim.rc.target().expected_loss_percent;
    assert_eq!(clean_loss, 0, "no FEC on a clean path");
    assert_eq!(dred_frames_for(sim.rc.measured_loss()), 0, "nor DRED");

    let lossy = sim.run(30, 0.10, 40);
    let t = sim.rc.target();
    assert!(lossy[9] < 32_000, "dropped within 10 s: {lossy:?}");
    assert_eq!(t.bitrate_bps, 20_000, "settles on the FEC floor: {lossy:?}");
    assert!(
        (8..=16).contains(&t.expected_loss_percent),
        "expected loss follows the measured 10 %: {t:?}"
    );
    // Multiplicative steps, at most one per DECREASE_HOLD.
    let drops: Vec<_> = lossy.windows(2).filter(|w| w[1] < w[0]).collect();
    assert!(drops.len() >= 3, "{lossy:?}");
    assert!(drops
        .iter()
        .all(|w| f64::from(w[1]) >= f64::from(w[0]) * DECREASE_FACTOR - 1.0));
    assert!(lossy.iter().all(|&b| b >= 20_000));
}

#[test]
fn a_clean_path_brings_the_start_bitrate_back() {
    let config = RateConfig {
        max_bps: 32_000,
        ..RateConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.run(30, 0.10, 40);
    assert_eq!(sim.rc.target().bitrate_bps, 20_000);
    let changes = sim.rc.bitrate_changes();
    let after = sim.run(45, 0.0, 40);
    // The average loss decays (≈ 12 s), then nothing for CLEAN_HOLD, then +1 kbit/s a
    // second: 12 steps back to 32 kbit/s.
    assert_eq!(after[10], 20_000, "waits for a clean stretch: {after:?}");
    assert_eq!(after.last(), Some(&32_000), "{after:?}");
    let back = after
        .iter()
        .position(|&b| b == 32_000)
        .unwrap_or(usize::MAX);
    assert!(
        (24..=34).contains(&back),
        "recovered in {back} s: {after:?}"
    );
    assert!(after.windows(2).all(|w| w[1] - w[0] <= INCREASE_STEP_BPS));
    assert_eq!(sim.rc.bitrate_changes(), changes + 12);
    assert_eq!(
        sim.rc.target().expected_loss_percent,
        0,
        "clean again: FEC off"
    );
}

#[test]
fn moderate_loss_holds_the_bitrate() {
    let mut sim = Sim::new(RateConfig::default());
    // 3 % is neither clean nor lossy enough to act on (two-second windows of 100
    // frames rarely stray past 5 % at this rate, so allow one step at most).
    let out = sim.run(60, 0.03, 40);
    let lowest = out.iter().copied().min().unwrap_or(0);
    assert!(lowest >= 27_000, "{out:?}");
    assert!(out.iter().all(|&b| b <= 32_000), "no increase: {out:?}");
}

#[test]
fn an_rtt_spike_lowers_the_bitrate_below_the_fec_floor_and_it_recovers() {
    let mut sim = Sim::new(RateConfig {
        max_bps: 32_000,
        ..RateConfig::default()
    });
    sim.run(20, 0.0, 50);
    let spike = sim.run(20, 0.0, 400);
    assert!(spike[2] < 32_000, "reacts within seconds: {spike:?}");
    assert_eq!(sim.rc.target().bitrate_bps, 12_000, "{spike:?}");
    // A rise smaller than 100 ms over a small baseline is not a queue.
    let mut calm = Sim::new(RateConfig::default());
    calm.run(20, 0.0, 5);
    let wobble = calm.run(20, 0.0, 80);
    assert!(wobble.iter().all(|&b| b >= 32_000), "{wobble:?}");
    // Once the RTT is back near its baseline, the rate climbs back.
    let after = sim.run(40, 0.0, 50);
    assert_eq!(after.last(), Some(&32_000), "{after:?}");
}

#[test]
fn bounds_hold_whatever_the_reports_say() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for config in [
        RateConfig::default(),
        RateConfig {
            min_bps: 6_000,
            max_bps: 16_000,
            start_bps: 16_000,
            fec_floor_bps: 10_000,
        },
        // Inconsistent bounds are widened to include the start.
        RateConfig {
            min_bps: 40_000,
            max_bps: 8_000,
            start_bps: 24_000,
            fec_floor_bps: 0,
        },
    ] {
        let mut rc = RateController::new(config);
        let c = rc.config().clone();
        assert!(
            c.min_bps <= c.start_bps && c.start_bps <= c.max_bps,
            "{c:?}"
        );
        let (mut received, mut lost) = (0u64, 0u64);
        for s in 0..2_000u64 {
            let now = Timestamp(T0 + s * 500);
            match rng.gen_range(0..4) {
                0 => rc.on_rtt(now, Duration::from_millis(rng.gen_range(0..2_000))),
                1 => rc.on_report(now, rng.gen(), rng.gen()),
                _ => {
                    received += rng.gen_range(0..60);
                    lost += rng.gen_range(0..30);
                    rc.on_report(now, received, lost);
                }
            }
            let t = rc.target();
            assert!((c.min_bps..=c.max_bps).contains(&t.bitrate_bps), "{t:?}");
            assert!(
                t.expected_loss_percent == 0
                    || (EXPECTED_LOSS_FLOOR..=EXPECTED_LOSS_CEILING)
                        .contains(&t.expected_loss_percent),
                "{t:?}"
            );
            assert!(dred_frames_for(rc.measured_loss()) <= DRED_MAX_10MS);
        }
    }
}

#[test]
fn stale_and_empty_reports_are_ignored_and_lost_ones_merge() {
    let mut rc = RateController::new(RateConfig::default());
    let at = |s: u64| Timestamp(T0 + s * 1_000);
    rc.on_report(at(1), 50, 0);
    rc.on_report(at(2), 100, 0);
    // A reordered older report and a repeat change nothing.
    rc.on_report(at(3), 60, 0);
    rc.on_report(at(3), 100, 0);
    assert_eq!(rc.last_report.received, 100);
    assert_eq!(rc.intervals.len(), 2);
    // Two seconds in one report (the one between was lost): 20 % loss over 100.
    rc.on_report(at(5), 180, 20);
    let newest = rc.intervals.back().copied().unwrap_or_default();
    assert_eq!((newest.received, newest.lost), (80, 20));
    assert!(rc.target().expected_loss_percent >= 10);
}

#[test]
fn poll_target_reports_changes_once() {
    let mut rc = RateController::new(RateConfig::default());
    assert_eq!(
        rc.poll_target(),
        Some(RateTarget {
            bitrate_bps: 32_000,
            expected_loss_percent: INITIAL_EXPECTED_LOSS,
            redundant_frames: 0,
        })
    );
    assert_eq!(rc.poll_target(), None);
    rc.on_report(Timestamp(T0 + 1_000), 50, 0);
    assert_eq!(rc.poll_target(), None, "still clean");
    rc.on_report(Timestamp(T0 + 2_000), 90, 10);
    let t = rc.poll_target().expect("loss turns FEC on");
    assert!(t.expected_loss_percent >= EXPECTED_LOSS_FLOOR, "{t:?}");
    assert_eq!(rc.poll_target(), None);
}

#[test]
fn with_a_peer_that_takes_copies_loss_brings_copies_and_the_bitrate_holds() {
    let mut sim = Sim::new(RateConfig::capped_at(32_000));
    sim.rc.set_redundancy_available(true);
    assert_eq!(
        sim.rc.target().redundant_frames,
        1,
        "one until the first report"
    );
    let clean = sim.run(10, 0.0, 40);
    assert_eq!(sim.rc.target().redundant_frames, 0, "none on a clean path");
    assert!(clean.iter().all(|&b| b == 32_000));
    let lossy = sim.run(30, 0.10, 40);
    let t = sim.rc.target();
    assert_eq!(t.redundant_frames, 2, "{t:?}");
    assert_eq!(t.expected_loss_percent, 0, "copies make FEC moot: {t:?}");
    assert!(lossy.iter().all(|&b| b == 32_000), "{lossy:?}");
    let mild = sim.run(40, 0.03, 40);
    assert_eq!(sim.rc.target().redundant_frames, 1, "{mild:?}");
    // A queue still lowers it: congestion is the delay rule's.
    let queue = sim.run(10, 0.10, 400);
    assert!(queue.last().is_some_and(|&b| b < 32_000), "{queue:?}");
    // And a peer that stops taking copies gets FEC again.
    sim.rc.set_redundancy_available(false);
    let t = sim.rc.target();
    assert_eq!(t.redundant_frames, 0);
    assert!(t.expected_loss_percent >= EXPECTED_LOSS_FLOOR, "{t:?}");
}

#[test]
fn redundancy_follows_loss() {
    assert_eq!(redundancy_for(0.0), 0);
    assert_eq!(redundancy_for(f64::NAN), 0);
    assert_eq!(redundancy_for(0.019), 0);
    assert_eq!(redundancy_for(0.02), 1);
    assert_eq!(redundancy_for(0.079), 1);
    assert_eq!(redundancy_for(0.08), 2);
    assert_eq!(redundancy_for(0.5), 2);
}

#[test]
fn dred_depth_follows_loss_and_is_off_when_clean() {
    assert_eq!(dred_frames_for(0.0), 0);
    assert_eq!(dred_frames_for(0.004), 0);
    assert_eq!(dred_frames_for(f64::NAN), 0);
    assert_eq!(dred_frames_for(0.05), 15);
    assert_eq!(dred_frames_for(0.10), 20);
    assert_eq!(dred_frames_for(0.20), 30);
    assert_eq!(dred_frames_for(0.9), DRED_MAX_10MS);
}
