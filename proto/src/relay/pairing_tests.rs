//! [`RelayCore`] on a virtual clock: every refusal and every limit.

use crate::relay::messages::RelayRefusalCode as Code;
use crate::relay::pairing::{LegId, RelayConfig, RelayCore, Verdict};
use crate::relay::rate::RateLimit;
use crate::relay::stats::{CloseReason, DropReason};
use crate::relay::token::{CallId, RelayToken, SignedRelayToken};
use crate::time::MAX_CLOCK_SKEW as CLOCK_SKEW;
use crate::{Identity, PeerId, Timestamp};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Wall time at [`t0`]; the wall clock advances with the monotonic one in these tests.
const WALL0: Timestamp = Timestamp(1_700_000_000_000);

/// The monotonic start of every test.
fn t0() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn wall(now: Instant) -> Timestamp {
    WALL0 + now.duration_since(t0())
}
const CALL_X: CallId = CallId([0xaa; 16]);
const CALL_Y: CallId = CallId([0xbb; 16]);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct World {
    supernode: Identity,
    relay: PeerId,
    alice: PeerId,
    bob: PeerId,
    carol: PeerId,
    /// Where every leg joins from.
    ip: std::net::IpAddr,
    core: RelayCore,
}

fn world_with(config: RelayConfig) -> World {
    let supernode = Identity::generate();
    let relay = Identity::generate().peer_id();
    let core = RelayCore::new(relay, vec![supernode.peer_id()], config, t0());
    World {
        supernode,
        relay,
        alice: Identity::generate().peer_id(),
        bob: Identity::generate().peer_id(),
        carol: Identity::generate().peer_id(),
        ip: std::net::IpAddr::from([192, 0, 2, 1]),
        core,
    }
}

fn world() -> World {
    world_with(RelayConfig::default())
}

impl World {
    fn raw_token(&self, call: CallId, parties: [PeerId; 2]) -> RelayToken {
        RelayToken {
            call_id: call,
            parties,
            relay: self.relay,
            issuer: self.supernode.peer_id(),
            expires_at: WALL0 + secs(300),
        }
    }

    fn token(&self, call: CallId, parties: [PeerId; 2]) -> SignedRelayToken {
        self.raw_token(call, parties).sign(&self.supernode)
    }

    fn ab(&self) -> SignedRelayToken {
        self.token(CALL_X, [self.alice, self.bob])
    }

    fn join(
        &mut self,
        now: Instant,
        leg: u64,
        peer: PeerId,
        token: &SignedRelayToken,
    ) -> Result<Option<LegId>, Code> {
        let join = self
            .core
            .verifier()
            .verify(wall(now), token)
            .map_err(|r| r.code)?;
        self.core
            .handle_join(now, LegId(leg), peer, self.ip, &join, None)
            .map(|o| o.paired_with)
            .map_err(|r| r.code)
    }

    /// Alice on leg 1, Bob on leg 2, paired.
    fn paired(&mut self, now: Instant) {
        let t = self.ab();
        assert_eq!(self.join(now, 1, self.alice, &t), Ok(None));
        assert_eq!(self.join(now, 2, self.bob, &t), Ok(Some(LegId(1))));
    }

    fn send(&mut self, now: Instant, leg: u64, len: usize) -> Verdict {
        self.core.handle_datagram(now, LegId(leg), len)
    }

    fn closes(&mut self) -> Vec<(LegId, CloseReason)> {
        std::iter::from_fn(|| self.core.poll_close()).collect()
    }
}

fn to(leg: u64) -> Verdict {
    Verdict::Forward { to: LegId(leg) }
}

#[test]
fn two_legs_pair_and_datagrams_cross_both_ways() {
    let mut w = world();
    let t = w.ab();
    assert_eq!(w.join(t0(), 1, w.alice, &t), Ok(None));
    assert_eq!(w.send(t0(), 1, 100), Verdict::Drop(DropReason::NotPaired));
    assert_eq!(w.join(t0(), 2, w.bob, &t), Ok(Some(LegId(1))));
    assert_eq!(w.send(t0(), 1, 100), to(2));
    assert_eq!(w.send(t0(), 2, 80), to(1));
    assert_eq!(w.core.partner_of(LegId(1)), Some(LegId(2)));
    let stats = w.core.stats();
    assert_eq!((stats.forwarded_packets, stats.forwarded_bytes), (2, 180));
    assert_eq!(stats.drops(DropReason::NotPaired), 1);
    let load = w.core.load();
    assert_eq!((load.calls, load.legs), (1, 2));
}

#[test]
fn a_leg_that_has_not_joined_gets_nothing_forwarded() {
    let mut w = world();
    w.paired(t0());
    assert_eq!(w.send(t0(), 9, 100), Verdict::Drop(DropReason::NotJoined));
    assert_eq!(w.core.stats().drops(DropReason::NotJoined), 1);
    assert!(!w.core.is_joined(LegId(9)));
}

#[test]
fn datagrams_go_to_the_own_call_only() {
    let mut w = world();
    w.paired(t0());
    let cd = w.token(CALL_Y, [w.carol, w.alice]);
    assert_eq!(w.join(t0(), 3, w.carol, &cd), Ok(None));
    assert_eq!(w.join(t0(), 4, w.alice, &cd), Ok(Some(LegId(3))));
    assert_eq!(w.send(t0(), 1, 10), to(2));
    assert_eq!(w.send(t0(), 2, 10), to(1));
    assert_eq!(w.send(t0(), 3, 10), to(4));
    assert_eq!(w.send(t0(), 4, 10), to(3));
    assert_eq!(w.core.load().calls, 2);
}

#[test]
fn tokens_for_different_calls_do_not_pair() {
    let mut w = world();
    let x = w.token(CALL_X, [w.alice, w.bob]);
    let y = w.token(CALL_Y, [w.alice, w.bob]);
    assert_eq!(w.join(t0(), 1, w.alice, &x), Ok(None));
    assert_eq!(w.join(t0(), 2, w.bob, &y), Ok(None));
    assert_eq!(w.send(t0(), 1, 10), Verdict::Drop(DropReason::NotPaired));
    assert_eq!(w.send(t0(), 2, 10), Verdict::Drop(DropReason::NotPaired));
}

#[test]
fn bad_tokens_are_refused_with_their_code() {
    let mut w = world();
    // Untrusted issuer.
    let mallory = Identity::generate();
    let mut raw = w.raw_token(CALL_X, [w.alice, w.bob]);
    raw.issuer = mallory.peer_id();
    assert_eq!(
        w.join(t0(), 1, w.alice, &raw.sign(&mallory)),
        Err(Code::UntrustedIssuer)
    );
    // Forged: names the trusted issuer, signed by another key.
    let forged = SignedRelayToken {
        token: w.raw_token(CALL_X, [w.alice, w.bob]),
        signature: mallory.sign(b"x"),
    };
    assert_eq!(w.join(t0(), 1, w.alice, &forged), Err(Code::BadToken));
    // Another relay.
    let mut raw = w.raw_token(CALL_X, [w.alice, w.bob]);
    raw.relay = Identity::generate().peer_id();
    assert_eq!(
        w.join(t0(), 1, w.alice, &raw.sign(&w.supernode)),
        Err(Code::WrongRelay)
    );
    // Expired.
    let t = w.ab();
    // Expired by more than the tolerated skew.
    assert_eq!(
        w.join(t0() + secs(300) + CLOCK_SKEW, 1, w.alice, &t),
        Err(Code::Expired)
    );
    // Within the skew tolerance it still counts (checked on a fresh relay).
    let mut w2 = world();
    let t2 = w2.ab();
    assert!(w2
        .join(t0() + secs(300) + CLOCK_SKEW - secs(1), 1, w2.alice, &t2)
        .is_ok());
    // Valid too long.
    let mut raw = w.raw_token(CALL_X, [w.alice, w.bob]);
    raw.expires_at = WALL0 + CLOCK_SKEW + secs(10 * 60 + 1);
    assert_eq!(
        w.join(t0(), 1, w.alice, &raw.sign(&w.supernode)),
        Err(Code::BadToken)
    );
    // The same key twice.
    let same = w.token(CALL_X, [w.alice, w.alice]);
    assert_eq!(w.join(t0(), 1, w.alice, &same), Err(Code::BadToken));
    // Nothing was admitted along the way.
    assert_eq!(w.core.load().legs, 0);
}

#[test]
fn a_key_not_named_by_the_token_is_not_a_party() {
    let mut w = world();
    let t = w.ab();
    assert_eq!(w.join(t0(), 1, w.carol, &t), Err(Code::NotAParty));
}

#[test]
fn a_second_token_cannot_change_a_calls_parties() {
    let mut w = world();
    let ab = w.ab();
    assert_eq!(w.join(t0(), 1, w.alice, &ab), Ok(None));
    // Carol holds a genuine token for the same call id, naming her instead of Bob.
    let ac = w.token(CALL_X, [w.alice, w.carol]);
    assert_eq!(w.join(t0(), 2, w.carol, &ac), Err(Code::NotAParty));
    // Bob still gets in, in either order of parties.
    let ba = w.token(CALL_X, [w.bob, w.alice]);
    assert_eq!(w.join(t0(), 3, w.bob, &ba), Ok(Some(LegId(1))));
}

#[test]
fn a_call_takes_one_leg_per_party() {
    let mut w = world();
    w.paired(t0());
    let t = w.ab();
    // Alice again on a third connection: her slot is taken (and so both are).
    assert_eq!(w.join(t0(), 3, w.alice, &t), Err(Code::CallFull));
    // A third key is not a party at all.
    assert_eq!(w.join(t0(), 4, w.carol, &t), Err(Code::NotAParty));
    // A party's second leg is refused even before the other party arrives.
    let mut w = world();
    let t = w.ab();
    assert_eq!(w.join(t0(), 1, w.alice, &t), Ok(None));
    assert_eq!(w.join(t0(), 2, w.alice, &t), Err(Code::CallFull));
}

#[test]
fn one_connection_is_one_leg() {
    let mut w = world();
    let t = w.ab();
    assert_eq!(w.join(t0(), 1, w.alice, &t), Ok(None));
    let other = w.token(CALL_Y, [w.alice, w.carol]);
    assert_eq!(w.join(t0(), 1, w.alice, &other), Err(Code::CallFull));
}

#[test]
fn legs_per_key_are_capped() {
    let mut w = world_with(RelayConfig {
        max_legs_per_key: 2,
        ..RelayConfig::default()
    });
    for (leg, call) in [(1, 1u8), (2, 2)] {
        let t = w.token(CallId([call; 16]), [w.alice, w.bob]);
        assert_eq!(w.join(t0(), leg, w.alice, &t), Ok(None));
    }
    let third = w.token(CallId([3; 16]), [w.alice, w.bob]);
    assert_eq!(w.join(t0(), 3, w.alice, &third), Err(Code::TooManyLegs));
    // Bob's count is his own.
    assert_eq!(w.join(t0(), 4, w.bob, &third), Ok(None));
    // A leg that ends frees its place.
    w.core.handle_closed(t0(), LegId(1));
    assert_eq!(w.join(t0(), 3, w.alice, &third), Ok(Some(LegId(4))));
}

#[test]
fn the_relay_refuses_legs_over_its_total() {
    let mut w = world_with(RelayConfig {
        max_legs: 2,
        ..RelayConfig::default()
    });
    w.paired(t0());
    let t = w.token(CALL_Y, [w.carol, w.alice]);
    assert_eq!(w.join(t0(), 3, w.carol, &t), Err(Code::Overloaded));
}

#[test]
fn the_packet_rate_is_capped_per_leg() {
    let mut w = world();
    w.paired(t0());
    // The bucket holds one second at 100/s: a burst of 150 forwards 100.
    let forwarded = (0..150).filter(|_| w.send(t0(), 1, 100) == to(2)).count();
    assert_eq!(forwarded, 100);
    assert_eq!(w.core.stats().drops(DropReason::RateLimited), 50);
    // The other leg has its own bucket.
    assert_eq!(w.send(t0(), 2, 100), to(1));
    // 10 ms later there is room for one more.
    assert_eq!(w.send(t0() + Duration::from_millis(10), 1, 100), to(2));
    assert_eq!(
        w.send(t0() + Duration::from_millis(10), 1, 100),
        Verdict::Drop(DropReason::RateLimited)
    );
}

#[test]
fn the_byte_rate_is_capped_per_leg() {
    let rate = RateLimit {
        packets_per_sec: 1_000,
        bytes_per_sec: 10_000,
        burst: secs(1),
    };
    let mut w = world_with(RelayConfig {
        rate,
        ..RelayConfig::default()
    });
    w.paired(t0());
    let forwarded = (0..20).filter(|_| w.send(t0(), 1, 1_000) == to(2)).count();
    assert_eq!(forwarded, 10);
    // A steady 20 ms audio stream of 100 bytes (5 kB/s) is never limited afterwards.
    let later = t0() + secs(1);
    for i in 0..500u64 {
        assert_eq!(w.send(later + Duration::from_millis(20 * i), 1, 100), to(2));
    }
}

#[test]
fn an_idle_leg_is_closed_and_its_partner_after_the_grace() {
    let mut w = world();
    w.paired(t0());
    // Alice keeps talking, Bob says nothing.
    let mut now = t0();
    while now < t0() + secs(29) {
        now += Duration::from_millis(20);
        assert_eq!(w.send(now, 1, 90), to(2));
    }
    assert!(w.core.poll_timeout().is_some_and(|t| t <= t0() + secs(30)));
    w.core.handle_timeout(t0() + Duration::from_millis(29_999));
    assert!(w.closes().is_empty());
    w.core.handle_timeout(t0() + secs(30));
    assert_eq!(w.closes(), vec![(LegId(2), CloseReason::IdleTimeout)]);
    // Alice now waits for Bob to come back.
    assert_eq!(
        w.send(t0() + secs(31), 1, 90),
        Verdict::Drop(DropReason::NotPaired)
    );
    let next = w.core.poll_timeout().expect("grace timer");
    assert!(next <= t0() + secs(40));
    w.core.handle_timeout(t0() + secs(40));
    assert_eq!(w.closes(), vec![(LegId(1), CloseReason::PartnerLeft)]);
    assert_eq!(w.core.load().calls, 0);
    assert_eq!(w.core.stats().closes(CloseReason::IdleTimeout), 1);
    assert_eq!(w.core.poll_timeout(), None);
}

#[test]
fn idle_time_counts_from_pairing_not_from_joining() {
    let mut w = world();
    let t = w.ab();
    assert_eq!(w.join(t0(), 1, w.alice, &t), Ok(None));
    let later = t0() + secs(50);
    assert_eq!(w.join(later, 2, w.bob, &t), Ok(Some(LegId(1))));
    w.core.handle_timeout(later + secs(29));
    assert!(w.closes().is_empty());
}

#[test]
fn a_partner_that_never_comes_is_given_up_on() {
    let mut w = world();
    let t = w.ab();
    assert_eq!(w.join(t0(), 1, w.alice, &t), Ok(None));
    assert_eq!(w.core.poll_timeout(), Some(t0() + secs(60)));
    w.core.handle_timeout(t0() + secs(59));
    assert!(w.closes().is_empty());
    w.core.handle_timeout(t0() + secs(60));
    assert_eq!(w.closes(), vec![(LegId(1), CloseReason::NotPaired)]);
    assert_eq!(w.core.load().legs, 0);
}

#[test]
fn a_party_that_drops_can_rejoin_within_the_grace() {
    let mut w = world();
    w.paired(t0());
    w.core.handle_closed(t0() + secs(5), LegId(2));
    assert_eq!(
        w.send(t0() + secs(6), 1, 10),
        Verdict::Drop(DropReason::NotPaired)
    );
    // Bob is back on a new connection with the same token.
    let t = w.ab();
    assert_eq!(w.join(t0() + secs(8), 3, w.bob, &t), Ok(Some(LegId(1))));
    assert_eq!(w.send(t0() + secs(9), 1, 10), to(3));
    assert_eq!(w.send(t0() + secs(9), 3, 10), to(1));
    // The grace deadline has no effect any more.
    w.core.handle_timeout(t0() + secs(20));
    assert!(w.closes().is_empty());
}

#[test]
fn a_call_ends_at_the_maximum_length() {
    let config = RelayConfig {
        max_call_length: secs(100),
        ..RelayConfig::default()
    };
    let mut w = world_with(config);
    w.paired(t0());
    let mut now = t0();
    while now < t0() + secs(100) {
        assert_eq!(w.send(now, 1, 90), to(2));
        assert_eq!(w.send(now, 2, 90), to(1));
        now += Duration::from_millis(20);
    }
    // Between the deadline and the shell's timer, datagrams are already dropped.
    assert_eq!(w.send(now, 1, 90), Verdict::Drop(DropReason::CallTooLong));
    w.core.handle_timeout(now);
    assert_eq!(
        w.closes(),
        vec![
            (LegId(1), CloseReason::CallTooLong),
            (LegId(2), CloseReason::CallTooLong)
        ]
    );
    assert_eq!(w.core.load().calls, 0);
}

#[test]
fn the_call_clock_survives_a_rejoin() {
    let config = RelayConfig {
        max_call_length: secs(100),
        ..RelayConfig::default()
    };
    let mut w = world_with(config);
    w.paired(t0());
    w.core.handle_closed(t0() + secs(50), LegId(2));
    let t = w.ab();
    assert_eq!(w.join(t0() + secs(55), 3, w.bob, &t), Ok(Some(LegId(1))));
    assert_eq!(
        w.send(t0() + secs(100), 3, 10),
        Verdict::Drop(DropReason::CallTooLong)
    );
}

#[test]
fn undelivered_datagrams_are_counted_as_drops() {
    let mut w = world();
    w.paired(t0());
    assert_eq!(w.send(t0(), 1, 100), to(2));
    w.core.handle_undelivered(DropReason::Congested, 100);
    let stats = w.core.stats();
    assert_eq!((stats.forwarded_packets, stats.forwarded_bytes), (0, 0));
    assert_eq!(stats.drops(DropReason::Congested), 1);
}

#[test]
fn poll_timeout_is_never_late() {
    let mut w = world();
    w.paired(t0());
    let t = w.token(CALL_Y, [w.carol, w.bob]);
    assert_eq!(w.join(t0() + secs(1), 3, w.carol, &t), Ok(None));
    // Carol's pairing deadline (61 s) is later than the pair's idle deadline (30 s).
    assert_eq!(w.core.poll_timeout(), Some(t0() + secs(30)));
    // Activity pushes deadlines out; the cached wake-up stays early and is recomputed.
    w.send(t0() + secs(20), 1, 10);
    w.send(t0() + secs(20), 2, 10);
    w.core.handle_timeout(t0() + secs(30));
    assert!(w.closes().is_empty());
    assert_eq!(w.core.poll_timeout(), Some(t0() + secs(50)));
    w.core.handle_closed(t0() + secs(31), LegId(1));
    assert_eq!(w.core.poll_timeout(), Some(t0() + secs(41)));
}

#[test]
fn a_party_rejoins_its_call_after_its_token_expired_and_no_one_else_does() {
    let mut w = world();
    let t = w.ab();
    w.paired(t0());
    // Media keeps the legs alive well past the token's expiry (300 s + skew).
    let mut now = t0();
    while now < t0() + secs(20 * 60) {
        now += secs(10);
        assert_eq!(w.send(now, 1, 10), to(2));
        assert_eq!(w.send(now, 2, 10), to(1));
        w.core.handle_timeout(now);
    }
    // Bob's leg is lost (network change); he comes back with the same token.
    w.core.handle_closed(now, LegId(2));
    assert_eq!(w.join(now + secs(2), 3, w.bob, &t), Ok(Some(LegId(1))));
    assert_eq!(w.send(now + secs(3), 1, 10), to(3));
    // An expired token does not open a new call, nor seat a party that never joined.
    let cd = w.token(CALL_Y, [w.carol, w.alice]);
    w.core.handle_closed(now, LegId(3));
    assert_eq!(w.join(now + secs(4), 4, w.carol, &cd), Err(Code::Expired));
}
