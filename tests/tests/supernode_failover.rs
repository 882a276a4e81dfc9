//! Issue 9, acceptance 3: a supernode killed while a client is attached to two. A call
//! in progress goes on; a call placed during the outage (while the client's record
//! still names the dead supernode, before the client has noticed) connects through
//! the other attachment; the client re-attaches to a live supernode within 60 s; and
//! it can be called after that.
//!
//! The keep-alive and dead-after intervals are the product's own (no test hooks), so
//! the test takes up to about a minute.

use parley_e2e::calls::{answering, call_end, calling, loopback};
use parley_e2e::Supernode;
use std::time::{Duration, Instant};

fn completed(v: &serde_json::Value, min_frames: u64) {
    assert_eq!(v["outcome"], "completed", "{v}");
    assert!(v["frames_received"].as_u64().unwrap() > min_frames, "{v}");
}

#[test]
fn a_client_whose_supernode_dies_stays_callable_and_re_attaches_within_a_minute() {
    let sn1 = Supernode::start("sn1", &[]).unwrap();
    let mut sn2 = Supernode::start("sn2", &[sn1.quic]).unwrap();
    let sn3 = Supernode::start("sn3", &[sn1.quic]).unwrap();
    let (s1, s2, s3) = (
        sn1.quic.to_string(),
        sn2.quic.to_string(),
        sn3.quic.to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut bob = answering(
        &loopback,
        "bob",
        dir.path(),
        &["--supernode", &s2, "--supernode", &s3],
    )
    .unwrap();
    for addr in [&s2, &s3] {
        bob.proc
            .wait_for(Duration::from_secs(20), |l| {
                l.contains("\"event\":\"attached\"") && l.contains(addr.as_str())
            })
            .unwrap();
    }
    let detached = |l: &str| l.contains("\"event\":\"detached\"") && l.contains(&s2);

    // A call in progress when the supernode dies.
    let mut during = calling(
        &loopback,
        "alice1",
        dir.path(),
        &bob.home.id,
        &["--supernode", &s1, "--duration", "5"],
    )
    .unwrap();
    during
        .proc
        .wait_for(Duration::from_secs(30), |l| {
            l.contains("\"event\":\"connected\"")
        })
        .unwrap();
    let killed = Instant::now();
    sn2.proc.kill();
    completed(
        &call_end(&mut during, Duration::from_secs(30)).unwrap(),
        150,
    );

    // A call placed during the outage: bob has not noticed yet, and his record names
    // the dead supernode besides the live one.
    assert!(
        bob.proc.wait_for(Duration::ZERO, detached).is_err(),
        "bob noticed within {:?}: the call below would not test the outage",
        killed.elapsed()
    );
    let placed = killed.elapsed();
    let mut outage = calling(
        &loopback,
        "alice2",
        dir.path(),
        &bob.home.id,
        &["--supernode", &s1, "--duration", "2"],
    )
    .unwrap();
    completed(&call_end(&mut outage, Duration::from_secs(40)).unwrap(), 50);
    eprintln!(
        "a call placed {:.1} s into the outage connected",
        placed.as_secs_f64()
    );

    // Noticed, and replaced by a live supernode within 60 s of the kill.
    bob.proc
        .wait_for(Duration::from_secs(60), detached)
        .unwrap();
    let noticed = killed.elapsed();
    let left = Duration::from_secs(60).saturating_sub(killed.elapsed());
    bob.proc
        .wait_for(left, |l| {
            l.contains("\"event\":\"attached\"") && l.contains(&s1)
        })
        .unwrap();
    let reattached = killed.elapsed();
    eprintln!(
        "noticed {:.1} s and re-attached {:.1} s after the supernode died",
        noticed.as_secs_f64(),
        reattached.as_secs_f64()
    );
    assert!(reattached < Duration::from_secs(60), "{reattached:?}");

    let mut after = calling(
        &loopback,
        "alice3",
        dir.path(),
        &bob.home.id,
        &["--supernode", &s1, "--duration", "2"],
    )
    .unwrap();
    completed(&call_end(&mut after, Duration::from_secs(40)).unwrap(), 50);
}
