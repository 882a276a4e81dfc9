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

fn config(mode: ServeMode) -> PromotionConfig {
    PromotionConfig {
        mode,
        ..PromotionConfig::default()
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
    assert!(!m.handle_probe(Nonce([9; 16]), s2.id, s2.addr));
    // The asked supernode's own dial is acknowledged but proves nothing.
    assert!(m.handle_probe(nonce, s1.id, s1.addr));
    assert!(!m.is_promoted());
    assert!(m.handle_probe(nonce, s2.id, s2.addr));
    assert!(m.is_promoted());
    assert_eq!(drain(&mut m), vec![Action::Promote { prober: s2.id }]);
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
    assert!(!m.handle_probe(old, s2.id, s2.addr));
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
    assert!(m.handle_probe(nonce, s2.id, s2.addr));
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
    assert!(m.handle_probe(nonce, s1.id, s1.addr));
    assert_eq!(drain(&mut m), vec![Action::Promote { prober: s1.id }]);
    // Promoted then quit: demoted once, and never checks again.
    let mut p = Promotion::new(config(ServeMode::Always), NatType::Open, at(0));
    p.handle_attached(vec![s1, s2]);
    let nonce = asked(&run(&mut p, at(0)))[0].1;
    assert!(p.handle_probe(nonce, s2.id, s2.addr));
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
    assert!(m.handle_probe(nonce2, s1.id, s1.addr));
    assert_eq!(drain(&mut m), vec![Action::Promote { prober: s1.id }]);
    // Promoted: demoted, and checked again 30 s later (not another 30 min).
    m.handle_network_changed(at(2000));
    assert_eq!(
        drain(&mut m),
        vec![Action::Demote(DemoteReason::NetworkChanged)]
    );
    assert_eq!(m.poll_timeout(), Some(at(2030)));
    assert_eq!(asked(&run(&mut m, at(2030))).len(), 1);
}
