use super::*;
use crate::Identity;

/// Feeds `meter` a virtual link of `rate` bytes/s in 1,200-byte packets, starting at
/// `t0`, whose first `ramp` runs at a quarter of the rate (QUIC's slow start), until
/// the meter is done. Returns the time it stopped.
fn feed(meter: &mut UploadMeter, t0: Duration, rate: f64, ramp: Duration) -> Duration {
    let mut t = t0;
    while !meter.is_done(t) {
        let r = if t - t0 < ramp { rate / 4.0 } else { rate };
        t += Duration::from_secs_f64(1200.0 / r);
        meter.handle_data(t, 1200);
    }
    t
}

fn mbit(kbps: u32) -> f64 {
    f64::from(kbps) * 1024.0 / 1e6
}

#[test]
fn an_8_mbit_link_measures_8_mbit_despite_slow_start() {
    let t0 = Duration::from_secs(100);
    let mut m = UploadMeter::new(t0, MAX_PROBE_BYTES, Duration::from_secs(2));
    let end = feed(&mut m, t0, 1e6, Duration::from_millis(300));
    // 2 s at 1 MB/s is less than 4 MiB: the deadline ends it.
    assert!(end >= t0 + Duration::from_secs(2));
    let report = m.report(end);
    assert!(report.check().is_ok());
    assert!(report.samples.len() <= MAX_SAMPLES);
    assert!(report.bytes() < 2_000_000, "{}", report.bytes());
    let kbps = report.kbps().expect("a rate");
    assert!((7.9..=8.1).contains(&mbit(kbps)), "{} Mbit/s", mbit(kbps));
    // Over the whole burst the ramp would have pulled it down by about 11 %.
    let whole = u64::from(report.bytes()) * 8 / 2;
    assert!(whole < 7_300_000, "{whole}");
    assert_eq!(default_relay_kbps(kbps), kbps / 4);
}

#[test]
fn a_fast_link_ends_at_the_byte_limit_and_is_measured_from_microseconds() {
    let t0 = Duration::ZERO;
    let max = 1024 * 1024;
    let mut m = UploadMeter::new(t0, max, Duration::from_secs(2));
    // 1 Gbit/s: 1 MiB in about 8 ms, sampled every 25 ms (first and last only).
    let end = feed(&mut m, t0, 125e6, Duration::ZERO);
    assert!(end < Duration::from_millis(10));
    assert_eq!(m.wanted(), 0);
    let report = m.report(end);
    assert_eq!(report.bytes(), max);
    assert_eq!(report.samples.len(), 2);
    let kbps = report.kbps().expect("a rate");
    assert!((990.0..=1010.0).contains(&mbit(kbps)), "{}", mbit(kbps));
}

#[test]
fn bytes_past_the_limit_or_the_deadline_are_not_counted() {
    let t0 = Duration::ZERO;
    let mut m = UploadMeter::new(t0, 100_000, Duration::from_secs(2));
    m.handle_data(Duration::from_millis(1), 60_000);
    m.handle_data(Duration::from_millis(2), 60_000);
    assert!(m.is_done(Duration::from_millis(2)));
    m.handle_data(Duration::from_millis(3), 60_000);
    assert_eq!(m.clone().report(Duration::from_millis(4)).bytes(), 100_000);

    let mut late = UploadMeter::new(t0, 1_000_000, Duration::from_secs(2));
    late.handle_data(Duration::from_millis(10), 70_000);
    assert!(!late.is_done(Duration::from_millis(1999)));
    assert!(late.is_done(Duration::from_secs(2)));
    late.handle_data(Duration::from_secs(3), 500_000);
    let r = late.report(Duration::from_secs(3));
    assert_eq!(r.bytes(), 70_000);
    // The end is the last counted byte's arrival, not the deadline.
    assert_eq!(r.samples.last().map(|s| s.micros), Some(10_000));
    let mut two = UploadMeter::new(t0, 1_000_000, Duration::from_secs(2));
    two.handle_data(Duration::from_millis(1), 70_000);
    two.handle_data(Duration::from_millis(2), 70_000);
    two.handle_end(Duration::from_millis(900));
    let r = two.report(Duration::from_secs(1));
    assert_eq!(
        r.samples.last(),
        Some(&Sample {
            micros: 2_000,
            bytes: 140_000
        })
    );
}

#[test]
fn a_report_that_says_nothing_gives_no_rate() {
    let s = |micros, bytes| Sample { micros, bytes };
    let none = UploadReport { samples: vec![] };
    assert_eq!(none.kbps(), None);
    let one = UploadReport {
        samples: vec![s(0, 1_000_000)],
    };
    assert_eq!(one.kbps(), None);
    let little = UploadReport {
        samples: vec![s(0, 1_000), s(1_000_000, 50_000)],
    };
    assert_eq!(little.kbps(), None, "under 64 KiB");
    let instant = UploadReport {
        samples: vec![s(5, 0), s(5, 1_000_000)],
    };
    assert_eq!(instant.kbps(), None, "no time");
    // 1 MB in 1 s after the first sample: 7,812 kbit/s (1,024 bit/s units).
    let ok = UploadReport {
        samples: vec![s(0, 0), s(1_000_000, 1_000_000)],
    };
    assert_eq!(ok.kbps(), Some(7_812));
}

#[test]
fn the_default_budget_is_a_quarter_of_the_upload_within_bounds() {
    assert_eq!(default_relay_kbps(7_812), 1_953);
    assert_eq!(default_relay_kbps(1_000), MIN_RELAY_KBPS);
    assert_eq!(default_relay_kbps(0), MIN_RELAY_KBPS);
    assert_eq!(default_relay_kbps(100_000), MAX_DEFAULT_RELAY_KBPS);
    assert_eq!(default_relay_kbps(u32::MAX), MAX_DEFAULT_RELAY_KBPS);
    assert!(!spares_a_call(2_047));
    assert!(spares_a_call(2_048));
    // Every default is a budget a peer relay accepts.
    for up in [0, 2_048, 7_812, 1 << 20] {
        assert!(crate::relay::peer::peer_config(default_relay_kbps(up)).is_some());
    }
}

#[test]
fn the_messages_round_trip_and_decode_strictly() {
    let p = UploadProbe { max_bytes: 4096 };
    assert_eq!(UploadProbe::decode(&p.encode()), Ok(p));
    let s = |micros, bytes| Sample { micros, bytes };
    let good = UploadReply::Measured(UploadReport {
        samples: vec![s(0, 10), s(25_000, 70_000)],
    });
    assert_eq!(UploadReply::decode_checked(&good.encode()), Ok(good));
    let refused = UploadReply::Refused(Refusal {
        code: RefusalCode::Overloaded,
        message: "later".into(),
    });
    assert_eq!(UploadReply::decode_checked(&refused.encode()), Ok(refused));
    let backwards = UploadReply::Measured(UploadReport {
        samples: vec![s(25_000, 10), s(0, 70_000)],
    });
    assert!(UploadReply::decode_checked(&backwards.encode()).is_err());
    let shrinking = UploadReply::Measured(UploadReport {
        samples: vec![s(0, 70_000), s(25_000, 10)],
    });
    assert!(UploadReply::decode_checked(&shrinking.encode()).is_err());
    let many = UploadReply::Measured(UploadReport {
        samples: (0..=MAX_SAMPLES as u32).map(|i| s(i, i)).collect(),
    });
    assert!(UploadReply::decode_checked(&many.encode()).is_err());
    let huge = UploadReply::Measured(UploadReport {
        samples: vec![s(0, MAX_PROBE_BYTES + 1)],
    });
    assert!(UploadReply::decode_checked(&huge.encode()).is_err());
    // A probe is not a reply; trailing bytes are refused.
    assert!(UploadReply::decode(&p.encode()).is_err());
    let mut long = p.encode();
    long.push(0);
    assert!(UploadProbe::decode(&long).is_err());
}

#[test]
fn the_guard_limits_probes_per_key_per_ip_and_in_size() {
    let limits = UploadLimits::default();
    let mut g = UploadGuard::new(limits);
    let t = Mono(0);
    let at = Duration::ZERO;
    let ip: IpAddr = "198.51.100.7".parse().expect("ip");
    let probe = UploadProbe {
        max_bytes: MAX_PROBE_BYTES,
    };
    let code = |r: Result<UploadMeter, Refusal>| r.map(|_| ()).map_err(|r| r.code);
    let a = Identity::generate().peer_id();
    // Size: 1 to 4 MiB; never over TCP.
    let big = UploadProbe {
        max_bytes: MAX_PROBE_BYTES + 1,
    };
    assert_eq!(
        code(g.admit(t, at, a, ip, false, &big)),
        Err(RefusalCode::Malformed)
    );
    let empty = UploadProbe { max_bytes: 0 };
    assert_eq!(
        code(g.admit(t, at, a, ip, false, &empty)),
        Err(RefusalCode::Malformed)
    );
    assert_eq!(
        code(g.admit(t, at, a, ip, true, &probe)),
        Err(RefusalCode::Malformed)
    );
    // Per key: 2 at once, then one per 15 min.
    assert_eq!(code(g.admit(t, at, a, ip, false, &probe)), Ok(()));
    assert_eq!(code(g.admit(t, at, a, ip, false, &probe)), Ok(()));
    assert_eq!(
        code(g.admit(t, at, a, ip, false, &probe)),
        Err(RefusalCode::Overloaded)
    );
    let later = t + Duration::from_secs(15 * 60);
    assert_eq!(code(g.admit(later, at, a, ip, false, &probe)), Ok(()));
    // Per IP: 4 at once whatever the keys (a key refused by its own quota took none).
    let mut g = UploadGuard::new(limits);
    let ok = (0..10)
        .filter(|_| {
            let k = Identity::generate().peer_id();
            g.admit(t, at, k, ip, false, &probe).is_ok()
        })
        .count();
    assert_eq!(ok, 4);
    let other: IpAddr = "198.51.100.8".parse().expect("ip");
    assert!(g.admit(t, at, a, other, false, &probe).is_ok());
    // Loopback (tests, one host) is limited per key only.
    let lo: IpAddr = "127.0.0.1".parse().expect("ip");
    let ok = (0..10)
        .filter(|_| {
            let k = Identity::generate().peer_id();
            g.admit(t, at, k, lo, false, &probe).is_ok()
        })
        .count();
    assert_eq!(ok, 10);
    // The meter it hands out counts for the limit's duration.
    let m = g
        .admit(t, at, Identity::generate().peer_id(), lo, false, &probe)
        .expect("admitted");
    assert_eq!(m.poll_timeout(), limits.duration);
}

proptest::proptest! {
    /// Any report a supernode could send decodes strictly or not at all, and its rate
    /// never panics (no overflow, no division by zero) and never exceeds what its
    /// bytes over its shortest interval allow.
    #[test]
    fn any_report_is_checked_and_its_rate_never_panics(
        raw in proptest::collection::vec((0u32..5_000_000, 0u32..5_000_000), 0..140),
        sort in proptest::bool::ANY,
    ) {
        let mut samples: Vec<Sample> = raw.iter().map(|&(micros, bytes)| Sample { micros, bytes }).collect();
        if sort {
            samples.sort_by_key(|s| (s.micros, s.bytes));
            let mut top = 0;
            for s in &mut samples {
                top = top.max(s.bytes);
                s.bytes = top;
            }
        }
        let report = UploadReport { samples };
        let reply = UploadReply::Measured(report.clone());
        match UploadReply::decode_checked(&reply.encode()) {
            Ok(UploadReply::Measured(r)) => {
                proptest::prop_assert!(r.check().is_ok());
                if let Some(kbps) = r.kbps() {
                    // At most every byte in one microsecond.
                    let cap = u64::from(r.bytes()) * 8 * 1_000_000 / 1024;
                    proptest::prop_assert!(u64::from(kbps) <= cap);
                }
            }
            Ok(other) => proptest::prop_assert!(false, "{other:?}"),
            Err(_) => proptest::prop_assert!(report.check().is_err()),
        }
    }
}
