//! Whole calls on a virtual clock (harness: `session_harness`).

use super::impair::{GilbertElliott, ImpairConfig};
use super::session::*;
use super::session_harness::*;
use super::PathKind;
use crate::call::media::MediaFrame;
use crate::time::Timestamp;
use crate::Identity;
use std::time::Duration;

#[test]
fn clean_call_plays_every_frame_in_order_at_the_minimum_delay() {
    let mut call = Call::new(SessionConfig::default(), 250, ImpairConfig::default());
    call.run(20_000, |_| {});
    assert_eq!(call.s[0].ended(), Some(&EndReason::InputEnded));
    assert_eq!(call.s[1].ended(), Some(&EndReason::PeerHangup));
    let played = call.played_by_b();
    let values = frames_in_order(&played);
    assert_eq!(values, (1..=250).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(call.s[1].stats().jitter.lost, 0);
    let last = played
        .iter()
        .rposition(|p| matches!(p.1, PlayKind::Frame(_)))
        .unwrap_or(0);
    assert!(
        played[..last]
            .iter()
            .all(|p| matches!(p.1, PlayKind::Frame(_))),
        "nothing concealed while the stream ran"
    );
    // Frame n is captured at tick n-1 (T0 + 20·(n-1)) and played 40 ms later.
    let (at, _, v) = played[0];
    assert_eq!(at.0 - T0 - 20 * (v as u64 - 1), 40);
    // A clean path: no FEC and no DRED asked of the encoder.
    let a = call.s[0].stats();
    assert_eq!(
        a.target.map(|t| (t.expected_loss_percent, t.dred_10ms)),
        Some((0, 0))
    );
    assert_eq!(a.path, Some(PathKind::Direct));
}

#[test]
fn loss_bursts_are_rebuilt_from_later_packets_and_turn_redundancy_on() {
    let impair = ImpairConfig {
        burst: Some(GilbertElliott::with_mean(0.10, 3.0)),
        jitter: Duration::from_millis(30),
        seed: 11,
        ..ImpairConfig::default()
    };
    let mut call = Call::new(SessionConfig::default(), 1_500, impair);
    call.run(40_000, |_| {});
    assert_eq!(call.s[0].ended(), Some(&EndReason::InputEnded));
    let played = call.played_by_b();
    let values = frames_in_order(&played);
    assert!(values.windows(2).all(|w| w[0] < w[1]), "in order");
    let b = call.s[1].stats();
    assert!(b.jitter.lost > 50, "{b:?}");
    let recovered = played
        .iter()
        .filter(|p| matches!(p.1, PlayKind::Recovered(_)))
        .count();
    assert!(
        recovered as u64 >= b.jitter.lost / 2,
        "{recovered} of {}",
        b.jitter.lost
    );
    // The sender heard about the loss and that the peer accepts copies: two copies of
    // the previous frames in every datagram, no FEC or DRED (the copies make them moot),
    // and the bitrate held (loss without a queue is not congestion).
    let a = call.s[0].stats();
    let t = a.target.expect("target");
    assert!(a.peer_accepts_redundancy, "{a:?}");
    assert_eq!(
        (t.redundant_frames, t.expected_loss_percent, t.dred_10ms),
        (2, 0, 0),
        "{t:?}"
    );
    assert_eq!(t.bitrate_bps, 32_000, "{t:?}");
    assert!(a.redundant_bytes_sent > a.bytes_sent / 2, "{a:?}");
    // Most lost frames were played from a copy, and the counters add up.
    let r = b.recovery;
    assert!(r.redundant > b.jitter.lost / 2, "{r:?} {b:?}");
    assert_eq!(r.redundant, b.jitter.redundant_recovered);
    let periods = played.iter().filter(|p| p.1 != PlayKind::Silence).count() as u64;
    assert_eq!(
        r.received + r.redundant + r.fec + r.dred + r.concealed,
        periods
    );
}

#[test]
fn a_clean_call_sends_no_fec_and_copies_only_at_the_start() {
    let mut call = Call::new(SessionConfig::default(), 600, ImpairConfig::default());
    call.run(20_000, |_| {});
    let a = call.s[0].stats();
    assert!(a.peer_accepts_redundancy, "{a:?}");
    // One copy only until the first report said the path is clean (about 0.5 s of 12).
    assert!(a.redundant_bytes_sent > 0, "{a:?}");
    assert!(a.redundant_bytes_sent * 15 < a.bytes_sent, "{a:?}");
    let t = a.target.expect("target");
    assert_eq!((t.redundant_frames, t.expected_loss_percent), (0, 0));
    let r = call.s[1].stats().recovery;
    assert_eq!((r.redundant, r.fec, r.dred), (0, 0, 0), "{r:?}");
}

#[test]
fn reordering_and_duplicates_change_nothing_heard() {
    let impair = ImpairConfig {
        jitter: Duration::from_millis(10),
        reorder: 0.1,
        duplicate: 0.2,
        seed: 5,
        ..ImpairConfig::default()
    };
    let mut call = Call::new(SessionConfig::default(), 500, impair);
    call.run(30_000, |_| {});
    let values = frames_in_order(&call.played_by_b());
    assert!(values.windows(2).all(|w| w[0] < w[1]), "in order");
    let b = call.s[1].stats();
    // Network duplicates are the same sealed datagram: the replay window drops them.
    assert!(b.replayed > 50, "{b:?}");
    assert!(values.len() >= 480, "{}", values.len());
}

#[test]
fn clock_drift_is_absorbed_without_growing_the_delay() {
    for period_us in [19_980, 20_020] {
        // b's sound card runs 0.1 % fast or slow against a's.
        let cb = SessionConfig {
            frame: Duration::from_micros(period_us),
            ..SessionConfig::default()
        };
        let mut call =
            Call::with_configs(SessionConfig::default(), cb, 3_000, ImpairConfig::default());
        call.run(80_000, |_| {});
        let played = call.played_by_b();
        let values = frames_in_order(&played);
        assert!(values.len() >= 2_990, "{period_us}: {}", values.len());
        let delay = |p: &(Timestamp, PlayKind, f32)| p.0 .0 - T0 - 20 * (p.2 as u64 - 1);
        let late: Vec<u64> = played.iter().filter(|p| p.2 > 0.0).map(delay).collect();
        let last = late[late.len() - 1];
        assert!(
            (1..=80).contains(&last),
            "{period_us}: delay ended at {last} ms"
        );
        assert_eq!(call.s[1].stats().jitter.lost, 0, "{period_us}");
    }
}

#[test]
fn a_path_dying_mid_burst_moves_the_call_to_the_other_path() {
    let impair = ImpairConfig {
        burst: Some(GilbertElliott::with_mean(0.10, 3.0)),
        seed: 3,
        ..ImpairConfig::default()
    };
    let mut call = Call::new(SessionConfig::default(), 1_000, impair);
    let mut killed_at = None;
    call.run(40_000, |c| {
        // From 8 s on, in the middle of a loss burst on the direct path (a's last audio
        // packet on it was lost and the channel is still in its bad state), that path
        // dies both ways.
        if killed_at.is_none() && c.now.0 >= T0 + 8_000 && c.links[0][0].channel.in_burst() {
            c.links[0][0].alive = false;
            c.links[1][0].alive = false;
            killed_at = Some(c.now);
        }
    });
    let killed_at = killed_at.expect("a burst after 8 s");
    assert!(killed_at.0 - T0 < 12_000, "{killed_at:?}");
    assert_eq!(call.s[0].ended(), Some(&EndReason::InputEnded));
    assert_eq!(call.s[0].stats().path, Some(PathKind::Relay(0)));
    let switches: Vec<_> = call
        .events(0)
        .into_iter()
        .filter(|e| matches!(e, MediaEvent::PathSwitch { from: Some(_), .. }))
        .collect();
    assert_eq!(switches.len(), 1, "{switches:?}");
    // The gap in what b played is bounded by the dead-path detection.
    let played = call.played_by_b();
    let frames: Vec<_> = played.iter().filter(|p| p.2 > 0.0).collect();
    let gap = frames
        .windows(2)
        .map(|w| w[1].2 - w[0].2)
        .fold(0.0, f32::max);
    assert!(gap <= 40.0, "largest jump {gap} frames");
    assert!(frames.len() > 800, "{}", frames.len());
    // And after the switch the loss bursts on the relay path are still rebuilt.
    let after = played
        .iter()
        .filter(|p| p.0 > killed_at + Duration::from_secs(1))
        .filter(|p| matches!(p.1, PlayKind::Recovered(_)))
        .count();
    assert!(after > 0, "nothing rebuilt after the switch");
}

/// Runs `call` to its end (or `limit_ms`) with every link down from `down_at` (ms after
/// the start) until `up_at` (if any); returns each side's events with when they came.
fn run_with_outage(
    call: &mut Call,
    limit_ms: u64,
    down_at: u64,
    up_at: Option<u64>,
) -> [Vec<(u64, MediaEvent)>; 2] {
    let mut seen: [Vec<(u64, MediaEvent)>; 2] = [Vec::new(), Vec::new()];
    call.run(limit_ms, |c| {
        let t = c.now.0 - T0;
        if t == down_at || Some(t) == up_at {
            for l in c.links.iter_mut().flatten() {
                l.alive = t != down_at;
            }
        }
        for (i, events) in seen.iter_mut().enumerate() {
            events.extend(c.events(i).into_iter().map(|e| (t, e)));
        }
    });
    seen
}

#[test]
fn a_silent_peer_is_reported_within_two_seconds_and_lost_after_ten() {
    let mut call = Call::new(SessionConfig::default(), 5_000, ImpairConfig::default());
    let seen = run_with_outage(&mut call, 60_000, 5_000, None);
    for (s, events) in call.s.iter().zip(&seen) {
        let stalls: Vec<_> = events
            .iter()
            .filter_map(|(t, e)| match e {
                MediaEvent::Stalled {
                    silent_ms,
                    gives_up_after_ms,
                } => Some((*t, *silent_ms, *gives_up_after_ms)),
                _ => None,
            })
            .collect();
        assert_eq!(stalls.len(), 1, "{events:?}");
        let (at, silent_ms, gives_up) = stalls[0];
        // On the first period past 2 s of silence (the last datagram left just before
        // the links died).
        assert!((2_000..2_040).contains(&silent_ms), "{silent_ms}");
        assert!((7_000..7_060).contains(&at), "stalled at {at}");
        assert_eq!(gives_up, 10_000);
        assert!(!events
            .iter()
            .any(|(_, e)| matches!(e, MediaEvent::Resumed { .. })));
        match s.ended() {
            Some(why @ EndReason::PeerLost { silent_ms }) => {
                assert!((10_000..10_040).contains(silent_ms), "{silent_ms}");
                assert_eq!(why.to_string(), "connection lost");
                assert!(!why.is_failure());
            }
            other => panic!("{other:?}"),
        }
    }
    let ended = call.now.0 - T0;
    assert!((15_000..15_100).contains(&ended), "ended at {ended}");
}

#[test]
fn a_peer_heard_again_after_a_stall_resumes_the_call() {
    let mut call = Call::new(SessionConfig::default(), 600, ImpairConfig::default());
    let seen = run_with_outage(&mut call, 60_000, 5_000, Some(8_000));
    for events in &seen {
        let kinds: Vec<_> = events
            .iter()
            .filter(|(_, e)| matches!(e, MediaEvent::Stalled { .. } | MediaEvent::Resumed { .. }))
            .collect();
        assert_eq!(kinds.len(), 2, "{events:?}");
        assert!(matches!(kinds[0].1, MediaEvent::Stalled { .. }));
        match kinds[1] {
            (at, MediaEvent::Resumed { silent_ms }) => {
                assert!((2_950..3_100).contains(silent_ms), "{silent_ms}");
                assert!((8_000..8_100).contains(at), "resumed at {at}");
            }
            other => panic!("{other:?}"),
        }
    }
    // The call went on to its natural end: a's input ran out, b heard the Bye.
    assert_eq!(call.s[0].ended(), Some(&EndReason::InputEnded));
    assert_eq!(call.s[1].ended(), Some(&EndReason::PeerHangup));
}

#[test]
fn no_media_path_fails_at_once_when_every_path_failed_and_after_the_timeout_otherwise() {
    let (ka, _) = crypto_pair();
    let mut s = session(ka, SessionConfig::default(), 100, true);
    s.expect_paths(&[PathKind::Relay(0)]);
    s.handle_timeout(Timestamp(T0)).expect("tick");
    s.path_failed(
        Timestamp(T0 + 5),
        PathKind::Relay(0),
        "relay 10.0.0.1:3478: no relay was granted",
    );
    let why = s.ended().cloned().expect("ended");
    assert!(why.is_failure());
    assert_eq!(
        why.to_string(),
        "no media path: relay path: relay 10.0.0.1:3478: no relay was granted"
    );
    assert_eq!(s.poll_timeout(), None);

    // A path that comes up but never carries anything from the peer.
    let (ka, _) = crypto_pair();
    let mut s = session(ka, SessionConfig::default(), 10_000, true);
    s.path_up(Timestamp(T0), PathKind::Relay(0));
    let mut t = Timestamp(T0);
    while let Some(next) = s.poll_timeout() {
        t = next;
        s.handle_timeout(t).expect("tick");
        while s.poll_transmit().is_some() {}
    }
    assert!(
        matches!(s.ended(), Some(EndReason::NoMediaPath { waited_ms, .. }) if *waited_ms == 8_000)
    );
    let why = s.ended().map(ToString::to_string).unwrap_or_default();
    assert_eq!(
        why,
        "no media path: nothing came from the peer within 8.0 s"
    );
    assert!(t.0 - T0 <= 8_000);
}

#[test]
fn mute_sends_silence_and_keeps_the_stream() {
    let mut call = Call::new(SessionConfig::default(), 300, ImpairConfig::default());
    call.run(40_000, |c| {
        if c.now.0 == T0 + 2_000 {
            c.s[0].set_muted(true);
        }
        if c.now.0 == T0 + 4_000 {
            c.s[0].set_muted(false);
        }
    });
    let played = call.played_by_b();
    let silent = played
        .iter()
        .filter(|p| matches!(p.1, PlayKind::Frame(_)) && p.2 == 0.0)
        .count();
    assert!((95..=105).contains(&silent), "{silent} muted frames");
    let values = frames_in_order(&played);
    assert!(values.contains(&250.0) && !values.contains(&150.0));
    assert_eq!(call.s[1].stats().jitter.lost, 0);
}

#[test]
fn garbage_is_counted_and_never_ends_the_call() {
    let (ka, _) = crypto_pair();
    let mut s = session(ka, SessionConfig::default(), 10, true);
    for len in 0..300 {
        s.handle_datagram(Timestamp(T0), PathKind::Direct, &vec![1u8; len]);
        s.handle_datagram(Timestamp(T0), PathKind::Direct, &vec![0u8; len]);
    }
    let st = s.stats();
    assert!(st.forged + st.malformed > 0);
    assert!(s.ended().is_none());
}

#[test]
fn dred_depth_follows_every_report_even_when_bitrate_and_fec_hold() {
    // Light loss (1–3 %): the bitrate holds and the expected loss stays on its 5 % floor,
    // but the DRED depth (10 + loss·100, in 10 ms) moves with the smoothed loss. It used
    // to be re-applied only when bitrate or expected loss changed, so it went stale.
    let (ka, mut kb) = crypto_pair();
    let mut s = session(ka, SessionConfig::default(), 10_000, true);
    s.path_up(Timestamp(T0), PathKind::Direct);
    let (mut received, mut lost) = (0u64, 0u64);
    let mut seen = Vec::new();
    for (i, l) in [2u64, 2, 4, 4].into_iter().enumerate() {
        received += 100 - l;
        lost += l;
        let at = Timestamp(T0 + 1_000 * (i as u64 + 1));
        let report = kb.seal(&MediaFrame::Report { received, lost });
        s.handle_datagram(at, PathKind::Direct, &report);
        let t = s.stats().target.expect("target");
        seen.push((t.bitrate_bps, t.expected_loss_percent, t.dred_10ms));
    }
    // Smoothed loss 1 %, 1.5 %, 2.75 %, 3.4 %: depths 11, 12, 13, 13.
    assert_eq!(
        seen,
        vec![
            (32_000, 5, 11),
            (32_000, 5, 12),
            (32_000, 5, 13),
            (32_000, 5, 13)
        ]
    );
    let dred_events = std::iter::from_fn(|| s.poll_event())
        .filter(|e| matches!(e, MediaEvent::Target(_)))
        .count();
    assert_eq!(dred_events, 3, "one event per change");
}

#[test]
fn everything_at_once_bursts_reordering_duplicates_and_drift() {
    // b's clock 0.1 % slow against a's, bursty loss (10 %, mean burst 3), 30 ms of
    // jitter, 5 % of packets held back behind later ones, 5 % duplicated: two minutes.
    let impair = ImpairConfig {
        burst: Some(GilbertElliott::with_mean(0.10, 3.0)),
        jitter: Duration::from_millis(30),
        reorder: 0.05,
        duplicate: 0.05,
        seed: 21,
        ..ImpairConfig::default()
    };
    let cb = SessionConfig {
        frame: Duration::from_micros(20_020),
        ..SessionConfig::default()
    };
    let mut call = Call::with_configs(SessionConfig::default(), cb, 6_000, impair);
    call.run(200_000, |_| {});
    assert_eq!(call.s[0].ended(), Some(&EndReason::InputEnded));
    assert_eq!(call.s[1].ended(), Some(&EndReason::PeerHangup));
    let played = call.played_by_b();
    let values = frames_in_order(&played);
    assert!(values.windows(2).all(|w| w[0] < w[1]), "in order");
    let b = call.s[1].stats();
    assert!(b.replayed > 100, "duplicates dropped: {b:?}");
    // About 10 % lost, most of it rebuilt from later packets (FEC or DRED).
    assert!((400..=900).contains(&b.jitter.lost), "{b:?}");
    let recovered = played
        .iter()
        .filter(|p| matches!(p.1, PlayKind::Recovered(_)))
        .count() as u64;
    assert!(recovered * 2 >= b.jitter.lost, "{recovered} of {b:?}");
    // The delay stays bounded over the two minutes: the last minute's playout delay is
    // within the jitter buffer's ceiling (300 ms) plus the network's 30 ms and a frame.
    let delay = |p: &(Timestamp, PlayKind, f32)| p.0 .0 - T0 - 20 * (p.2 as u64 - 1);
    let delays: Vec<u64> = played.iter().filter(|p| p.2 > 0.0).map(delay).collect();
    let (early, late) = delays.split_at(delays.len() / 2);
    let max = |d: &[u64]| d.iter().copied().max().unwrap_or(0);
    assert!(max(late) <= 350, "late max delay {}", max(late));
    // (Not asserted: the second minute's worst delay, 302 ms, is above the first's,
    // 210 ms; loss bursts push the buffer up to its ceiling. See docs/performance.md.)
    assert!(max(early) <= 350, "early max delay {}", max(early));
}

#[test]
fn a_hosts_roster_reaches_the_participant_despite_loss_and_each_change_shows_once() {
    let mut call = Call::new(SessionConfig::default(), 400, ImpairConfig::default());
    let members: Vec<_> = (0..3).map(|_| Identity::generate().peer_id()).collect();
    // The first copy is lost: every link is down when the host sets the list.
    call.run(100, |_| {});
    for l in call.links.iter_mut().flatten() {
        l.alive = false;
    }
    call.s[0].set_roster(call.now, members[..2].to_vec());
    call.run(50, |_| {});
    for l in call.links.iter_mut().flatten() {
        l.alive = true;
    }
    call.run(1_500, |_| {});
    let rosters = |events: Vec<MediaEvent>| {
        events
            .into_iter()
            .filter_map(|e| match e {
                MediaEvent::Roster(m) => Some(m),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rosters(call.events(1)),
        vec![members[..2].to_vec()],
        "repeated, shown once"
    );
    call.s[0].set_roster(call.now, members.clone());
    call.run(2_500, |_| {});
    assert_eq!(rosters(call.events(1)), vec![members.clone()]);
    assert!(
        rosters(call.events(0)).is_empty(),
        "the host hears no roster"
    );
}
