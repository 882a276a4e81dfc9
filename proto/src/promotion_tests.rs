//! [`Promotion`] on a virtual clock: who is promoted, when, and on what proof.

use super::*;
use crate::Identity;

fn at(s: u64) -> Mono {
    Mono(s * 1000)
}

fn contact(addr: &str) -> Contact {
    Contact {
        id: Identity::generate().peer_id(),
        addr: addr.parse().expect("addr"),
    }
}

/// With `--relay-kbps 2048` (no measurement: the tests of the measurement build
/// their own config).
fn config(mode: ServeMode) -> PromotionConfig {
    PromotionConfig {
        mode,
        relay_kbps: Some(2048),
        ..PromotionConfig::default()
    }
}

fn measured(mode: ServeMode) -> PromotionConfig {
    PromotionConfig {
        mode,
        ..PromotionConfig::default()
    }
}

/// The promotion `config` leads to.
fn promote(prober: PeerId) -> Action {
    Action::Promote {
        prober,
        budget: RelayBudget {
            kbps: 2048,
            source: BudgetSource::Flag,
            upload_kbps: None,
        },
    }
}

fn drain(m: &mut Promotion) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

/// Runs the machine's timers up to `until` (one nonce per second).
fn run(m: &mut Promotion, until: Mono) -> Vec<Action> {
    let mut out = Vec::new();
    while let Some(t) = m.poll_timeout() {
        if t > until {
            break;
        }
        m.handle_timeout(t, Nonce([(t.0 / 1000) as u8; 16]));
        out.extend(drain(m));
    }
    out
}

fn asked(actions: &[Action]) -> Vec<(Contact, Nonce)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::AskDialBack { via, nonce } => Some((*via, *nonce)),
            _ => None,
        })
        .collect()
}

#[test]
fn always_checks_at_once_and_a_probe_from_another_supernode_promotes() {
    let (s1, s2) = (contact("127.0.0.1:4433"), contact("127.0.0.1:4443"));
    let mut m = Promotion::new(config(ServeMode::Always), NatType::Open, at(0));
    m.handle_attached(vec![s1, s2]);
    let a = run(&mut m, at(0));
    let [(via, nonce)] = asked(&a)[..] else {
        panic!("one dial-back expected: {a:?}")
    };
    assert_eq!(via, s1);
    // A probe with another nonce is neither acknowledged nor counted.
    assert!(!m.handle_probe(at(0), Nonce([9; 16]), s2.id, s2.addr));
    // The asked supernode's own dial is acknowledged but proves nothing.
    assert!(m.handle_probe(at(0), nonce, s1.id, s1.addr));
    assert!(!m.is_promoted());
    assert!(m.handle_probe(at(0), nonce, s2.id, s2.addr));
    assert!(m.is_promoted());
    assert_eq!(drain(&mut m), vec![promote(s2.id)]);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn auto_waits_promote_after_before_checking() {
    let s1 = contact("127.0.0.1:4433");
    let mut m = Promotion::new(config(ServeMode::Auto), NatType::FullCone, at(0));
    m.handle_attached(vec![s1]);
    assert!(asked(&run(&mut m, at(30 * 60 - 1))).is_empty());
    assert_eq!(asked(&run(&mut m, at(30 * 60))).len(), 1);
}

#[test]
fn never_symmetric_nat_and_blocked_udp_are_not_promoted() {
    let s1 = contact("127.0.0.1:4433");
    let mut never = Promotion::new(config(ServeMode::Never), NatType::Open, at(0));
    never.handle_attached(vec![s1]);
    assert!(run(&mut never, at(100_000)).is_empty());
    for nat in [NatType::Symmetric, NatType::UdpBlocked] {
        let mut m = Promotion::new(config(ServeMode::Always), nat, at(0));
        m.handle_attached(vec![s1]);
        let a = drain(&mut m);
        assert!(
            matches!(&a[..], [Action::Ineligible(why)] if why.contains("not serving")),
            "{nat:?}: {a:?}"
        );
        assert!(run(&mut m, at(100_000)).is_empty());
        assert!(!m.is_promoted());
    }
}

#[test]
fn a_check_without_a_probe_fails_and_is_retried_through_the_next_supernode() {
    let (s1, s2) = (contact("127.0.0.1:4433"), contact("127.0.0.1:4443"));
    let mut m = Promotion::new(config(ServeMode::Always), NatType::Unknown, at(0));
    // Nobody attached yet: nothing asked, checked again a second later.
    assert!(run(&mut m, at(0)).is_empty());
    m.handle_attached(vec![s1, s2]);
    let a = run(&mut m, at(1));
    let [(first, old)] = asked(&a)[..] else {
        panic!("{a:?}")
    };
    let a = run(&mut m, at(11));
    assert!(
        matches!(&a[..], [Action::CheckFailed(why)] if why.contains("no probe")),
        "{a:?}"
    );
    // A late probe of the failed check counts for nothing.
    assert!(!m.handle_probe(at(0), old, s2.id, s2.addr));
    let a = run(&mut m, at(41));
    let [(second, _)] = asked(&a)[..] else {
        panic!("{a:?}")
    };
    assert_eq!((first, second), (s1, s2));
    // A refusal ends the check at once.
    let nonce = asked(&a)[0].1;
    m.handle_reply(at(42), nonce, Some("too many dial-back requests".into()));
    assert!(matches!(&drain(&mut m)[..], [Action::CheckFailed(_)]));
    assert_eq!(m.poll_timeout(), Some(at(72)));
}

#[test]
fn quit_demotes_a_promoted_client_and_a_long_overload_demotes_it_for_a_while() {
    let (s1, s2) = (contact("127.0.0.1:4433"), contact("127.0.0.1:4443"));
    let mut m = Promotion::new(config(ServeMode::Always), NatType::Open, at(0));
    m.handle_attached(vec![s1, s2]);
    let nonce = asked(&run(&mut m, at(0)))[0].1;
    assert!(m.handle_probe(at(0), nonce, s2.id, s2.addr));
    drain(&mut m);
    // Overloaded for less than overload_for: nothing; relieved: the clock restarts.
    m.handle_load(at(10), true);
    m.handle_load(at(200), false);
    m.handle_load(at(250), true);
    assert!(run(&mut m, at(549)).is_empty());
    let a = run(&mut m, at(550));
    assert_eq!(a, vec![Action::Demote(DemoteReason::Overloaded)]);
    assert!(!m.is_promoted());
    // It checks again only after promote_after (30 min).
    assert!(asked(&run(&mut m, at(550 + 1799))).is_empty());
    let again = asked(&run(&mut m, at(550 + 1800)));
    let [(via, nonce)] = again[..] else {
        panic!("{again:?}")
    };
    assert_eq!(via, s2, "the next check asks the next supernode");
    assert!(m.handle_probe(at(0), nonce, s1.id, s1.addr));
    assert_eq!(drain(&mut m), vec![promote(s1.id)]);
    // Promoted then quit: demoted once, and never checks again.
    let mut p = Promotion::new(config(ServeMode::Always), NatType::Open, at(0));
    p.handle_attached(vec![s1, s2]);
    let nonce = asked(&run(&mut p, at(0)))[0].1;
    assert!(p.handle_probe(at(0), nonce, s2.id, s2.addr));
    drain(&mut p);
    p.handle_quit(at(5));
    assert_eq!(drain(&mut p), vec![Action::Demote(DemoteReason::Quit)]);
    assert_eq!(p.poll_timeout(), None);
    assert!(run(&mut p, at(100_000)).is_empty());
}

#[test]
fn a_network_change_demotes_and_a_new_check_follows_on_the_new_network() {
    let (s1, s2) = (contact("127.0.0.1:4433"), contact("127.0.0.1:4443"));
    let mut m = Promotion::new(config(ServeMode::Auto), NatType::Open, at(0));
    m.handle_attached(vec![s1, s2]);
    let nonce = asked(&run(&mut m, at(1800)))[0].1;
    // During a check: the check fails.
    m.handle_network_changed(at(1801));
    assert!(matches!(&drain(&mut m)[..], [Action::CheckFailed(_)]));
    let again = asked(&run(&mut m, at(1831)));
    let [(_, nonce2)] = again[..] else {
        panic!("{again:?}")
    };
    assert_ne!(nonce, nonce2);
    assert!(m.handle_probe(at(0), nonce2, s1.id, s1.addr));
    assert_eq!(drain(&mut m), vec![promote(s1.id)]);
    // Promoted: demoted, and checked again 30 s later (not another 30 min).
    m.handle_network_changed(at(2000));
    assert_eq!(
        drain(&mut m),
        vec![Action::Demote(DemoteReason::NetworkChanged)]
    );
    assert_eq!(m.poll_timeout(), Some(at(2030)));
    assert_eq!(asked(&run(&mut m, at(2030))).len(), 1);
}

fn measure_asked(actions: &[Action]) -> Vec<Contact> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::MeasureUpload { via } => Some(*via),
            _ => None,
        })
        .collect()
}

/// Runs a check due at `t` and proves it with a probe from `by`; returns what followed.
fn pass_check(m: &mut Promotion, t: Mono, by: Contact) -> Vec<Action> {
    let a = run(m, t);
    let [(_, nonce)] = asked(&a)[..] else {
        panic!("one dial-back expected: {a:?}")
    };
    assert!(m.handle_probe(t, nonce, by.id, by.addr));
    drain(m)
}

#[test]
fn auto_measures_the_upload_once_per_network_and_serves_a_quarter_of_it() {
    let (s1, s2) = (contact("127.0.0.1:4433"), contact("127.0.0.1:4443"));
    let mut m = Promotion::new(measured(ServeMode::Auto), NatType::Open, at(0));
    m.handle_attached(vec![s1, s2]);
    // Reachable, but nothing measured: measure through the asked supernode first.
    let a = pass_check(&mut m, at(1800), s2);
    assert_eq!(measure_asked(&a), vec![s1]);
    assert!(!m.is_promoted());
    assert_eq!(m.poll_timeout(), Some(at(1815)));
    // 8 Mbit/s (7,812 kbit/s of 1,024 bit): a quarter of it.
    m.handle_upload(at(1803), Ok(7_812));
    let budget = RelayBudget {
        kbps: 1_953,
        source: BudgetSource::Measured,
        upload_kbps: Some(7_812),
    };
    let promoted = Action::Promote {
        prober: s2.id,
        budget,
    };
    assert_eq!(drain(&mut m), vec![promoted]);
    // A late or repeated report changes nothing.
    m.handle_upload(at(1804), Ok(100_000));
    assert!(drain(&mut m).is_empty());
    // Demoted for overload and promoted again: the same network, no new measurement.
    m.handle_load(at(1900), true);
    assert_eq!(
        run(&mut m, at(2200)),
        vec![Action::Demote(DemoteReason::Overloaded)]
    );
    let a = pass_check(&mut m, at(2200 + 1800), s1);
    assert_eq!(
        a,
        vec![Action::Promote {
            prober: s1.id,
            budget
        }]
    );
    // A new network: measured again.
    m.handle_network_changed(at(4100));
    assert_eq!(
        drain(&mut m),
        vec![Action::Demote(DemoteReason::NetworkChanged)]
    );
    let a = pass_check(&mut m, at(4130), s2);
    assert_eq!(measure_asked(&a).len(), 1, "{a:?}");
}

#[test]
fn auto_is_never_promoted_without_a_measurement_that_spares_a_call() {
    let (s1, s2) = (contact("127.0.0.1:4433"), contact("127.0.0.1:4443"));
    let mut m = Promotion::new(measured(ServeMode::Auto), NatType::Open, at(0));
    m.handle_attached(vec![s1, s2]);
    // The supernode refused (or predates the probe): the check fails, retried in 30 s.
    pass_check(&mut m, at(1800), s2);
    m.handle_upload(at(1801), Err("refused: too many upload probes".into()));
    let a = drain(&mut m);
    assert!(
        matches!(&a[..], [Action::CheckFailed(why)] if why.contains("upload measurement failed")),
        "{a:?}"
    );
    assert!(!m.is_promoted());
    assert_eq!(m.poll_timeout(), Some(at(1831)));
    // No answer within 15 s: the same.
    let a = pass_check(&mut m, at(1831), s1);
    assert_eq!(measure_asked(&a).len(), 1);
    let a = run(&mut m, at(1846));
    assert!(
        matches!(&a[..], [Action::CheckFailed(why)] if why.contains("no upload measurement")),
        "{a:?}"
    );
    // Measured, but too little: a quarter of 2,000 is under one call; an hour's wait.
    pass_check(&mut m, at(1876), s2);
    m.handle_upload(at(1878), Ok(2_000));
    let a = drain(&mut m);
    assert!(
        matches!(&a[..], [Action::CheckFailed(why)] if why.contains("less than one relayed call")),
        "{a:?}"
    );
    assert!(!m.is_promoted());
    assert_eq!(m.poll_timeout(), Some(at(1878 + 3600)));
    // ...and then it measures again (a busy link measures low).
    let a = pass_check(&mut m, at(1878 + 3600), s1);
    assert_eq!(measure_asked(&a).len(), 1, "{a:?}");
    m.handle_upload(at(1878 + 3601), Ok(2_048));
    assert!(m.is_promoted());
}

#[test]
fn always_serves_at_the_minimum_when_the_measurement_fails_or_is_small() {
    let (s1, s2) = (contact("127.0.0.1:4433"), contact("127.0.0.1:4443"));
    let mut m = Promotion::new(measured(ServeMode::Always), NatType::Open, at(0));
    m.handle_attached(vec![s1, s2]);
    pass_check(&mut m, at(0), s2);
    m.handle_upload(at(1), Err("the supernode refused".into()));
    let minimum = RelayBudget {
        kbps: 512,
        source: BudgetSource::Minimum,
        upload_kbps: None,
    };
    assert_eq!(
        drain(&mut m),
        vec![Action::Promote {
            prober: s2.id,
            budget: minimum
        }]
    );
    let mut small = Promotion::new(measured(ServeMode::Always), NatType::Open, at(0));
    small.handle_attached(vec![s1, s2]);
    pass_check(&mut small, at(0), s2);
    small.handle_upload(at(1), Ok(1_000));
    let a = drain(&mut small);
    assert!(
        matches!(&a[..], [Action::Promote { budget, .. }] if budget.kbps == 512 && budget.source == BudgetSource::Measured && budget.upload_kbps == Some(1_000)),
        "{a:?}"
    );
    // With --relay-kbps nothing is measured.
    let mut flag = Promotion::new(config(ServeMode::Always), NatType::Open, at(0));
    flag.handle_attached(vec![s1, s2]);
    assert_eq!(pass_check(&mut flag, at(0), s2), vec![promote(s2.id)]);
}
