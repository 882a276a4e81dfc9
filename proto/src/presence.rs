//! Signed presence records: where a user can be reached, signed by the user's key.
//!
//! The signature covers `"parley-presence-v1\0"` followed by the postcard encoding of
//! the [`PresenceRecord`], so a presence signature can never be mistaken for a
//! signature over any other Parley message.

use crate::identity::{NodeId, PeerId};
use crate::time::{check_expiry, ExpiryFault, Timestamp, MAX_CLOCK_SKEW};
use crate::Identity;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

const SIGNING_DOMAIN: &[u8] = b"parley-presence-v1\0";

/// Longest display name, in bytes of UTF-8.
pub const MAX_DISPLAY_NAME: usize = 64;
/// Most supernodes a record may name.
pub const MAX_SUPERNODES: usize = 4;
/// Most addresses a record may carry.
pub const MAX_ADDRESSES: usize = 8;
/// Furthest in the future a record may expire: records cannot be made to live forever.
pub const MAX_TTL: Duration = Duration::from_secs(60 * 60);

/// A server (supernode or relay) as others reach it: its key and its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Contact {
    /// The server's identity, proven by QUIC's handshake.
    pub id: PeerId,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Contact {
    /// The supernode's position in the key space: its key's hash with a BEP 42
    /// prefix from its IP ([`NodeId::of_supernode`]; the key's hash alone for a
    /// non-routable IP). Not a record key: that is [`PeerId::record_key`].
    ///
    /// [`PeerId::record_key`]: crate::identity::PeerId::record_key
    pub fn node_id(&self) -> NodeId {
        NodeId::of_supernode(&self.id, self.addr.ip())
    }
}

/// How an address was learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AddressKind {
    /// Bound on the client's own interface.
    Local,
    /// Seen by a supernode as the packet's source (server-reflexive).
    Observed,
}

/// One address a client may be reachable at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CandidateAddr {
    /// How it was learned.
    pub kind: AddressKind,
    /// The address.
    pub addr: SocketAddr,
}

/// The client's NAT behaviour, as far as it knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NatType {
    /// Not measured yet.
    #[default]
    Unknown,
    /// A public address: no NAT.
    Open,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// Endpoint-dependent mapping.
    Symmetric,
    /// No UDP gets through.
    UdpBlocked,
}

/// What a client says about itself. Only meaningful inside a [`SignedPresence`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// Whose record this is; the signature must be by this key.
    pub id: PeerId,
    /// A name for people; not unique, not verified.
    pub display_name: String,
    /// The supernodes the client is attached to: where call signalling reaches it.
    pub supernodes: Vec<Contact>,
    /// Addresses the client may be reachable at.
    pub addresses: Vec<CandidateAddr>,
    /// NAT behaviour.
    pub nat: NatType,
    /// Increases with every new record by this client; older ones are refused.
    pub seq: u64,
    /// After this the record is dropped.
    pub expires_at: Timestamp,
}

/// A presence record with its owner's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPresence {
    /// The record.
    pub record: PresenceRecord,
    /// ed25519 signature by `record.id` over the domain-separated record.
    #[serde(with = "signature_bytes")]
    pub signature: [u8; 64],
}

/// Why a record was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// The signature is not by the key the record names.
    #[error("presence record signature does not verify (forged or corrupted record)")]
    BadSignature,
    /// The record has expired.
    #[error(
        "presence record expired at {expires_at} (now {now}, even allowing {} s of clock \
         skew); if it was just made with the usual {} s lifetime, the signing machine's clock \
         is about {} s behind this one",
        MAX_CLOCK_SKEW.as_secs(),
        crate::attach::DEFAULT_RECORD_TTL.as_secs(),
        now.since(*expires_at).as_secs() + crate::attach::DEFAULT_RECORD_TTL.as_secs()
    )]
    Expired {
        /// When it expired.
        expires_at: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The expiry is further out than [`MAX_TTL`] (+ [`MAX_CLOCK_SKEW`]).
    #[error(
        "presence record expires at {expires_at}, more than {} s after now ({now}, even \
         allowing {} s of clock skew); if it was just made with the usual {} s lifetime, the \
         signing machine's clock is about {} s ahead of this one",
        MAX_TTL.as_secs(),
        MAX_CLOCK_SKEW.as_secs(),
        crate::attach::DEFAULT_RECORD_TTL.as_secs(),
        expires_at.since(*now).as_secs().saturating_sub(crate::attach::DEFAULT_RECORD_TTL.as_secs())
    )]
    ExpiryTooFar {
        /// When it expires.
        expires_at: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// A field is over its limit.
    #[error("presence record field over its limit: {0}")]
    FieldTooLarge(&'static str),
    /// A record with this sequence number or a higher one is already held.
    #[error("stale presence record: seq {got} but seq {held} is already held")]
    Stale {
        /// The sequence number offered.
        got: u64,
        /// The sequence number held.
        held: u64,
    },
}

fn signed_bytes(record: &PresenceRecord) -> Vec<u8> {
    let mut out = SIGNING_DOMAIN.to_vec();
    // A record is plain data; postcard cannot fail on it.
    out.extend(postcard::to_stdvec(record).expect("postcard serialization of a record"));
    out
}

impl PresenceRecord {
    /// Signs the record with `identity`, which must be the record's own key.
    pub fn sign(self, identity: &Identity) -> SignedPresence {
        debug_assert_eq!(identity.peer_id(), self.id);
        let signature = identity.sign(&signed_bytes(&self));
        SignedPresence {
            record: self,
            signature,
        }
    }

    fn check_limits(&self) -> Result<(), RecordError> {
        if self.display_name.len() > MAX_DISPLAY_NAME {
            return Err(RecordError::FieldTooLarge("display_name"));
        }
        if self.supernodes.len() > MAX_SUPERNODES {
            return Err(RecordError::FieldTooLarge("supernodes"));
        }
        if self.addresses.len() > MAX_ADDRESSES {
            return Err(RecordError::FieldTooLarge("addresses"));
        }
        Ok(())
    }
}

impl PresenceRecord {
    /// When this record stops being served, by the reader's clock: `expires_at` plus
    /// [`MAX_CLOCK_SKEW`], because the owner's clock may be that far behind ours.
    pub fn lapses_at(&self) -> Timestamp {
        self.expires_at + MAX_CLOCK_SKEW
    }
}

impl SignedPresence {
    /// Checks signature, limits and expiry at time `now`.
    pub fn verify(&self, now: Timestamp) -> Result<&PresenceRecord, RecordError> {
        self.record.check_limits()?;
        if !self
            .record
            .id
            .verify(&signed_bytes(&self.record), &self.signature)
        {
            return Err(RecordError::BadSignature);
        }
        self.check_time(now)?;
        Ok(&self.record)
    }

    /// The time-dependent part of [`SignedPresence::verify`]: not lapsed at `now` (its
    /// expiry plus [`MAX_CLOCK_SKEW`], see [`PresenceRecord::lapses_at`]) and not expiring
    /// more than [`MAX_TTL`] + [`MAX_CLOCK_SKEW`] after it.
    pub fn check_time(&self, now: Timestamp) -> Result<(), RecordError> {
        let expires_at = self.record.expires_at;
        check_expiry(expires_at, now, MAX_TTL).map_err(|fault| match fault {
            ExpiryFault::Lapsed => RecordError::Expired { expires_at, now },
            ExpiryFault::TooFar => RecordError::ExpiryTooFar { expires_at, now },
        })
    }

    /// Whether this record may replace `held`: a strictly higher sequence number, or the
    /// very same record again (republishing is idempotent).
    pub fn supersedes(&self, held: &SignedPresence) -> Result<(), RecordError> {
        if self.record.seq > held.record.seq || self == held {
            Ok(())
        } else {
            Err(RecordError::Stale {
                got: self.record.seq,
                held: held.record.seq,
            })
        }
    }
}

/// Serde for 64-byte signatures (serde's arrays stop at 32).
pub(crate) mod signature_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let (a, b) = sig.split_at(32);
        let a: &[u8; 32] = a.try_into().map_err(serde::ser::Error::custom)?;
        let b: &[u8; 32] = b.try_into().map_err(serde::ser::Error::custom)?;
        (a, b).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let (a, b) = <([u8; 32], [u8; 32])>::deserialize(d)?;
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&a);
        out[32..].copy_from_slice(&b);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(identity: &Identity, seq: u64, expires_at: u64) -> PresenceRecord {
        PresenceRecord {
            id: identity.peer_id(),
            display_name: "alice".into(),
            supernodes: vec![],
            addresses: vec![CandidateAddr {
                kind: AddressKind::Observed,
                addr: "203.0.113.7:4000".parse().unwrap(),
            }],
            nat: NatType::Unknown,
            seq,
            expires_at: Timestamp(expires_at),
        }
    }

    #[test]
    fn a_signed_record_verifies() {
        let alice = Identity::generate();
        let signed = record(&alice, 1, 60_000).sign(&alice);
        assert!(signed.verify(Timestamp(1_000)).is_ok());
    }

    #[test]
    fn a_record_signed_by_another_key_is_forged() {
        let alice = Identity::generate();
        let mallory = Identity::generate();
        let mut forged = record(&mallory, 1, 60_000).sign(&mallory);
        forged.record.id = alice.peer_id();
        assert_eq!(forged.verify(Timestamp(0)), Err(RecordError::BadSignature));
    }

    #[test]
    fn a_modified_record_fails_its_signature() {
        let alice = Identity::generate();
        let mut signed = record(&alice, 1, 60_000).sign(&alice);
        signed.record.seq = 2;
        assert_eq!(signed.verify(Timestamp(0)), Err(RecordError::BadSignature));
    }

    #[test]
    fn expired_and_far_future_records_are_refused() {
        let alice = Identity::generate();
        let signed = record(&alice, 1, 60_000).sign(&alice);
        // MAX_CLOCK_SKEW of clock skew is forgiven, not more.
        let skew = MAX_CLOCK_SKEW.as_millis() as u64;
        assert!(signed.verify(Timestamp(60_000 + skew - 1)).is_ok());
        assert!(matches!(
            signed.verify(Timestamp(60_000 + skew)),
            Err(RecordError::Expired { .. })
        ));
        let far = record(&alice, 1, 10 * 60 * 60 * 1000).sign(&alice);
        let err = far.verify(Timestamp(0)).unwrap_err();
        assert!(matches!(err, RecordError::ExpiryTooFar { .. }));
        // The message names the clock that is off and by how much (10 h minus the
        // usual record lifetime).
        let ahead = 10 * 60 * 60 - crate::attach::DEFAULT_RECORD_TTL.as_secs();
        assert!(
            err.to_string()
                .contains(&format!("about {ahead} s ahead of this one")),
            "{err}"
        );
    }

    #[test]
    fn older_sequence_numbers_do_not_supersede() {
        let alice = Identity::generate();
        let one = record(&alice, 1, 60_000).sign(&alice);
        let two = record(&alice, 2, 60_000).sign(&alice);
        assert!(two.supersedes(&one).is_ok());
        assert!(one.supersedes(&one).is_ok());
        assert_eq!(
            one.supersedes(&two),
            Err(RecordError::Stale { got: 1, held: 2 })
        );
    }
}
