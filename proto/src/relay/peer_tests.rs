//! A peer relay ([`peer_config`], its own key the only issuer) on a virtual clock:
//! issue 10, acceptance 2.

use super::*;
use crate::relay::messages::RelayRefusalCode as Code;
use crate::relay::pairing::{LegId, RelayCore, Verdict};
use crate::relay::stats::DropReason;
use crate::relay::token::{CallId, RelayToken, SignedRelayToken};
use crate::{Identity, PeerId, Timestamp};
use std::net::IpAddr;
use std::time::Instant;

const WALL: Timestamp = Timestamp(1_700_000_000_000);

/// The promoted peer: one key for its supernode role and its relay.
struct Peer {
    key: Identity,
    core: RelayCore,
    t0: Instant,
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([198, 51, 100, last])
}

fn id() -> PeerId {
    Identity::generate().peer_id()
}

impl Peer {
    fn new(kbps: u32) -> Peer {
        let key = Identity::generate();
        let me = key.peer_id();
        let config = peer_config(kbps).expect("a budget for one call");
        let t0 = Instant::now();
        Peer {
            core: RelayCore::new(me, vec![me], config, t0),
            key,
            t0,
        }
    }

    /// A token for `parties` signed by `issuer` (the peer's own key unless given).
    fn token(&self, call: u8, parties: [PeerId; 2], issuer: Option<&Identity>) -> SignedRelayToken {
        let issuer = issuer.unwrap_or(&self.key);
        RelayToken {
            call_id: CallId([call; 16]),
            parties,
            relay: self.key.peer_id(),
            issuer: issuer.peer_id(),
            expires_at: WALL + Duration::from_secs(600),
        }
        .sign(issuer)
    }

    fn join(
        &mut self,
        leg: u64,
        peer: PeerId,
        from: IpAddr,
        token: &SignedRelayToken,
    ) -> Result<Option<LegId>, (Code, String)> {
        let join = self
            .core
            .verifier()
            .verify(WALL, token)
            .map_err(|r| (r.code, r.message))?;
        self.core
            .handle_join(self.t0, LegId(leg), peer, from, &join, None)
            .map(|o| o.paired_with)
            .map_err(|r| (r.code, r.message))
    }
}

#[test]
fn the_budget_sets_hard_limits() {
    let c = peer_config(TYPICAL_RELAY_KBPS).expect("config");
    assert_eq!(c.max_legs, 8);
    // Every leg at its cap together stays within the budget.
    let total_kbps = u64::from(c.max_legs) * u64::from(c.rate.bytes_per_sec) * 8 / 1024;
    assert!(total_kbps <= u64::from(TYPICAL_RELAY_KBPS), "{total_kbps}");
    assert_eq!(peer_config(511), None);
    assert_eq!(peer_config(512).map(|c| c.max_legs), Some(2));
}

#[test]
fn a_leg_of_a_call_the_peer_did_not_grant_is_refused() {
    let mut p = Peer::new(TYPICAL_RELAY_KBPS);
    let (alice, bob, mallory) = (id(), id(), id());
    // Another supernode's token (any key can be a supernode): not trusted.
    let stranger = Identity::generate();
    let foreign = p.token(1, [alice, bob], Some(&stranger));
    assert_eq!(
        p.join(1, alice, ip(1), &foreign).map_err(|e| e.0),
        Err(Code::UntrustedIssuer)
    );
    // The peer's own token, presented by a key that is not a party.
    let granted = p.token(2, [alice, bob], None);
    assert_eq!(
        p.join(2, mallory, ip(3), &granted).map_err(|e| e.0),
        Err(Code::NotAParty)
    );
    // A second token for the same call id cannot slip a third key in.
    let sneaky = p.token(2, [alice, mallory], None);
    assert_eq!(p.join(3, alice, ip(1), &granted), Ok(None));
    assert_eq!(
        p.join(4, mallory, ip(3), &sneaky).map_err(|e| e.0),
        Err(Code::NotAParty)
    );
    // The granted parties pair.
    assert_eq!(p.join(5, bob, ip(2), &granted), Ok(Some(LegId(3))));
}

#[test]
fn quotas_per_key_per_ip_and_in_total_refuse_with_a_reason() {
    let mut p = Peer::new(TYPICAL_RELAY_KBPS);
    let alice = id();
    // Per key: two legs (one call and a rejoin), whatever the IP.
    assert!(p
        .join(1, alice, ip(1), &p.token(1, [alice, id()], None))
        .is_ok());
    assert!(p
        .join(2, alice, ip(2), &p.token(2, [alice, id()], None))
        .is_ok());
    let (code, why) = p
        .join(3, alice, ip(3), &p.token(3, [alice, id()], None))
        .expect_err("a third leg for one key");
    assert_eq!(code, Code::TooManyLegs);
    assert!(why.contains("limit per key"), "{why}");
    // Per IP: four legs, whatever the keys.
    for leg in 10..14u64 {
        let k = id();
        assert!(p
            .join(leg, k, ip(9), &p.token(leg as u8, [k, id()], None))
            .is_ok());
    }
    let k = id();
    let (code, why) = p
        .join(14, k, ip(9), &p.token(14, [k, id()], None))
        .expect_err("a fifth leg from one IP");
    assert_eq!(code, Code::TooManyLegs);
    assert!(why.contains("limit per IP"), "{why}");
    // In total: the budget's 8 legs (6 so far).
    for leg in 20..22u64 {
        let k = id();
        assert!(p
            .join(leg, k, ip(leg as u8), &p.token(leg as u8, [k, id()], None))
            .is_ok());
    }
    let k = id();
    let (code, _) = p
        .join(22, k, ip(22), &p.token(22, [k, id()], None))
        .expect_err("over the budget");
    assert_eq!(code, Code::Overloaded);
    // A leg that leaves frees its key's and IP's places.
    p.core.handle_closed(p.t0, LegId(1));
    assert!(p
        .join(23, alice, ip(1), &p.token(23, [alice, id()], None))
        .is_ok());
}

#[test]
fn media_goes_only_between_the_proven_legs_within_the_leg_cap() {
    let mut p = Peer::new(TYPICAL_RELAY_KBPS);
    let (alice, bob) = (id(), id());
    let t = p.token(1, [alice, bob], None);
    assert_eq!(p.join(1, alice, ip(1), &t), Ok(None));
    // Unpaired: nowhere to go. A connection that never joined: dropped.
    assert_eq!(
        p.core.handle_datagram(p.t0, LegId(1), 100),
        Verdict::Drop(DropReason::NotPaired)
    );
    assert_eq!(
        p.core.handle_datagram(p.t0, LegId(7), 100),
        Verdict::Drop(DropReason::NotJoined)
    );
    assert_eq!(p.join(2, bob, ip(2), &t), Ok(Some(LegId(1))));
    assert_eq!(
        p.core.handle_datagram(p.t0, LegId(1), 100),
        Verdict::Forward { to: LegId(2) }
    );
    assert_eq!(
        p.core.handle_datagram(p.t0, LegId(2), 100),
        Verdict::Forward { to: LegId(1) }
    );
    // The per-leg cap (32 kB/s, a one-second burst): 1,200-byte datagrams, 27 pass
    // at once (two already went), then the cap drops the rest.
    let passed = (0..100)
        .filter(|_| {
            matches!(
                p.core.handle_datagram(p.t0, LegId(1), 1_200),
                Verdict::Forward { .. }
            )
        })
        .count();
    assert_eq!(passed, (32 * 1024 - 100) / 1_200);
    assert_eq!(
        p.core.handle_datagram(p.t0, LegId(1), 1_200),
        Verdict::Drop(DropReason::RateLimited)
    );
}
