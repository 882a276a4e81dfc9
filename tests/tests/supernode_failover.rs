//! A client whose supernode dies re-attaches to another within 5 s and can still be
//! called.

use parley_e2e::calls::{answering, call_end, calling, loopback};
use parley_e2e::Supernode;
use std::time::{Duration, Instant};

#[test]
fn a_client_re_attaches_within_five_seconds_and_can_still_be_called() {
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
    let bob_proc = &mut bob.proc;
    for addr in [&s2, &s3] {
        bob_proc
            .wait_for(Duration::from_secs(20), |l| {
                l.contains("\"event\":\"attached\"") && l.contains(addr.as_str())
            })
            .unwrap();
    }

    let killed = Instant::now();
    sn2.proc.kill();
    bob_proc
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("\"event\":\"detached\"") && l.contains(&s2)
        })
        .unwrap();
    bob_proc
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("\"event\":\"attached\"") && l.contains(&s1)
        })
        .unwrap();
    let reattached = killed.elapsed();
    eprintln!(
        "re-attached {:.2} s after the supernode died",
        reattached.as_secs_f64()
    );
    assert!(
        reattached < Duration::from_secs(5),
        "re-attaching took {reattached:?}"
    );

    let mut alice = calling(
        &loopback,
        "alice",
        dir.path(),
        &bob.home.id,
        &["--supernode", &s1, "--duration", "2"],
    )
    .unwrap();
    let v = call_end(&mut alice, Duration::from_secs(40)).unwrap();
    assert!(v["frames_received"].as_u64().unwrap() > 50, "{v}");
}
