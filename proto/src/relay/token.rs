//! Relay tokens: a supernode's short-lived, signed permission for two parties to meet
//! on one relay for one call.
//!
//! The signature covers `"parley-relay-token-v1\0"` followed by the postcard encoding
//! of the [`RelayToken`], so it can never be mistaken for a signature over any other
//! Parley message (presence records, call offers...).
//!
//! A token binds everything a relay needs to decide on its own, without asking anyone:
//! which call, which two keys may join it, which relay it is for (a token leaked from
//! one relay is useless on another), who vouches for it, and until when it may be
//! used to join. The expiry only limits *joining*: a call that started may run for the
//! relay's maximum call length.

use crate::identity::{Identity, PeerId};
use crate::time::{check_expiry, ExpiryFault, Timestamp, MAX_CLOCK_SKEW};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use thiserror::Error;

const SIGNING_DOMAIN: &[u8] = b"parley-relay-token-v1\0";

/// The longest a token may be valid for, counted from the moment it is checked: a
/// stolen token is worth little, and a relay cannot be handed tokens that never die.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// A call's identity: 16 random bytes chosen by the caller.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct CallId(pub [u8; 16]);

impl CallId {
    /// A fresh, random call id.
    pub fn random() -> CallId {
        CallId(rand::random())
    }
}

impl fmt::Display for CallId {
    /// Lowercase hex, 32 characters: what logs and refusal messages show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

/// What a supernode allows: `parties` may meet on `relay` for `call_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayToken {
    /// The call.
    pub call_id: CallId,
    /// The two keys that may join; each leg must be one of them (proven by QUIC's TLS).
    pub parties: [PeerId; 2],
    /// The relay this token is for.
    pub relay: PeerId,
    /// The supernode that issued and signed the token.
    pub issuer: PeerId,
    /// After this, the token no longer admits a leg.
    pub expires_at: Timestamp,
}

/// A [`RelayToken`] with its issuer's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRelayToken {
    /// The token.
    pub token: RelayToken,
    /// ed25519 signature by `token.issuer` over the domain-separated token (64 raw
    /// bytes in postcard, like every Parley signature).
    #[serde(with = "crate::presence::signature_bytes")]
    pub signature: [u8; 64],
}

/// Why a relay refuses a token.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// The issuer is not one of the supernodes this relay was told to trust.
    #[error("relay token issued by {issuer}, a key this relay does not trust (start the relay with --trust for it)")]
    UntrustedIssuer {
        /// Who claims to have issued it (printable id; ids are kept as text so the
        /// error stays small: a `PeerId` holds a decompressed curve point).
        issuer: String,
    },
    /// The signature is not the issuer's over this token: forged or modified.
    #[error("relay token signature does not verify (forged or modified token)")]
    BadSignature,
    /// The token names another relay.
    #[error("relay token is for relay {named}, not this relay ({this})")]
    WrongRelay {
        /// The relay the token names (printable id).
        named: String,
        /// This relay (printable id).
        this: String,
    },
    /// The token expired.
    #[error(
        "relay token expired at {expires_at} (now {now}, even allowing {} s of clock skew); ask \
         the supernode for a new one; if it was just issued, the issuing supernode's clock is \
         about {} s behind this relay's",
        MAX_CLOCK_SKEW.as_secs(),
        now.since(*expires_at).as_secs() + MAX_TOKEN_LIFETIME.as_secs()
    )]
    Expired {
        /// When it expired.
        expires_at: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The expiry is further out than [`MAX_TOKEN_LIFETIME`].
    #[error(
        "relay token expires at {expires_at}, more than {} s after now ({now}, even allowing {} \
         s of clock skew); the issuing supernode's clock is about {} s ahead of this relay's",
        MAX_TOKEN_LIFETIME.as_secs(),
        MAX_CLOCK_SKEW.as_secs(),
        expires_at.since(*now).as_secs().saturating_sub(MAX_TOKEN_LIFETIME.as_secs())
    )]
    LifetimeTooLong {
        /// When it says it expires.
        expires_at: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// Both parties are the same key: a call needs two.
    #[error("relay token names the same key twice as the call's parties")]
    SameParties,
}

fn signed_bytes(token: &RelayToken) -> Vec<u8> {
    let mut out = SIGNING_DOMAIN.to_vec();
    // A token is plain data; postcard cannot fail on it.
    out.extend(postcard::to_stdvec(token).expect("postcard serialization of a relay token"));
    out
}

impl RelayToken {
    /// Signs the token as `issuer`, which must be the token's `issuer` key.
    pub fn sign(self, issuer: &Identity) -> SignedRelayToken {
        debug_assert_eq!(issuer.peer_id(), self.issuer);
        let signature = issuer.sign(&signed_bytes(&self));
        SignedRelayToken {
            token: self,
            signature,
        }
    }

    /// Whether `peer` is one of the two parties.
    pub fn is_party(&self, peer: &PeerId) -> bool {
        self.parties.contains(peer)
    }
}

impl SignedRelayToken {
    /// Whether the signature is `token.issuer`'s (nothing else is checked): what a
    /// call's parties can check of a grant (see `RelayGrant::verify`).
    pub fn signature_valid(&self) -> bool {
        self.token
            .issuer
            .verify(&signed_bytes(&self.token), &self.signature)
    }

    /// Checks the token for a join on relay `relay` at time `now`, accepting only
    /// issuers in `trusted`. Cheap checks come before the signature, except that an
    /// untrusted issuer is refused first: nobody else's signature is worth checking.
    pub fn verify(
        &self,
        now: Timestamp,
        relay: &PeerId,
        trusted: &[PeerId],
    ) -> Result<&RelayToken, TokenError> {
        let token = &self.token;
        if !trusted.contains(&token.issuer) {
            return Err(TokenError::UntrustedIssuer {
                issuer: token.issuer.to_string(),
            });
        }
        if !token.issuer.verify(&signed_bytes(token), &self.signature) {
            return Err(TokenError::BadSignature);
        }
        if token.relay != *relay {
            return Err(TokenError::WrongRelay {
                named: token.relay.to_string(),
                this: relay.to_string(),
            });
        }
        // The issuer's clock may differ from ours by up to MAX_CLOCK_SKEW either way.
        let expires_at = token.expires_at;
        check_expiry(expires_at, now, MAX_TOKEN_LIFETIME).map_err(|fault| match fault {
            ExpiryFault::Lapsed => TokenError::Expired { expires_at, now },
            ExpiryFault::TooFar => TokenError::LifetimeTooLong { expires_at, now },
        })?;
        if token.parties[0] == token.parties[1] {
            return Err(TokenError::SameParties);
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct World {
        supernode: Identity,
        relay: PeerId,
        alice: PeerId,
        bob: PeerId,
    }

    fn world() -> World {
        World {
            supernode: Identity::generate(),
            relay: Identity::generate().peer_id(),
            alice: Identity::generate().peer_id(),
            bob: Identity::generate().peer_id(),
        }
    }

    const NOW: Timestamp = Timestamp(1_000_000);

    fn token(w: &World) -> RelayToken {
        RelayToken {
            call_id: CallId([7; 16]),
            parties: [w.alice, w.bob],
            relay: w.relay,
            issuer: w.supernode.peer_id(),
            expires_at: NOW + Duration::from_secs(60),
        }
    }

    fn trusted(w: &World) -> Vec<PeerId> {
        vec![Identity::generate().peer_id(), w.supernode.peer_id()]
    }

    #[test]
    fn a_good_token_verifies_and_round_trips() {
        let w = world();
        let signed = token(&w).sign(&w.supernode);
        assert_eq!(
            signed.verify(NOW, &w.relay, &trusted(&w)),
            Ok(&signed.token)
        );
        let bytes = postcard::to_stdvec(&signed).unwrap();
        let back: SignedRelayToken = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, signed);
        assert!(back.verify(NOW, &w.relay, &trusted(&w)).is_ok());
    }

    #[test]
    fn an_untrusted_issuer_is_refused() {
        let w = world();
        let mallory = Identity::generate();
        let mut t = token(&w);
        t.issuer = mallory.peer_id();
        let signed = t.sign(&mallory);
        assert_eq!(
            signed.verify(NOW, &w.relay, &trusted(&w)),
            Err(TokenError::UntrustedIssuer {
                issuer: mallory.peer_id().to_string()
            })
        );
    }

    #[test]
    fn a_forged_or_modified_token_is_refused() {
        let w = world();
        let mallory = Identity::generate();
        // Claims the trusted issuer, signed by someone else.
        let forged = SignedRelayToken {
            token: token(&w),
            signature: mallory.sign(b"x"),
        };
        assert_eq!(
            forged.verify(NOW, &w.relay, &trusted(&w)),
            Err(TokenError::BadSignature)
        );
        // Genuine, then a party swapped.
        let mut modified = token(&w).sign(&w.supernode);
        modified.token.parties[1] = mallory.peer_id();
        assert_eq!(
            modified.verify(NOW, &w.relay, &trusted(&w)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_token_for_another_relay_is_refused() {
        let w = world();
        let signed = token(&w).sign(&w.supernode);
        let other = Identity::generate().peer_id();
        assert_eq!(
            signed.verify(NOW, &other, &trusted(&w)),
            Err(TokenError::WrongRelay {
                named: w.relay.to_string(),
                this: other.to_string()
            })
        );
    }

    #[test]
    fn expiry_is_checked_both_ways() {
        let w = world();
        let signed = token(&w).sign(&w.supernode);
        let at = signed.token.expires_at;
        // The issuer's clock may be MAX_CLOCK_SKEW behind ours.
        let late = at + MAX_CLOCK_SKEW;
        assert!(signed
            .verify(Timestamp(late.0 - 1), &w.relay, &trusted(&w))
            .is_ok());
        assert_eq!(
            signed.verify(late, &w.relay, &trusted(&w)),
            Err(TokenError::Expired {
                expires_at: at,
                now: late
            })
        );
        let mut long = token(&w);
        long.expires_at = NOW + MAX_TOKEN_LIFETIME + MAX_CLOCK_SKEW + Duration::from_millis(1);
        let long = long.sign(&w.supernode);
        let err = long.verify(NOW, &w.relay, &trusted(&w)).unwrap_err();
        assert!(matches!(err, TokenError::LifetimeTooLong { .. }));
        // The refusal names the clock that is off and by how much (the skew, rounded down).
        let ahead = MAX_CLOCK_SKEW.as_secs();
        assert!(
            err.to_string()
                .contains(&format!("about {ahead} s ahead of this relay's")),
            "{err}"
        );
        // Exactly the maximum lifetime is allowed.
        let mut max = token(&w);
        max.expires_at = NOW + MAX_TOKEN_LIFETIME + MAX_CLOCK_SKEW;
        assert!(max
            .sign(&w.supernode)
            .verify(NOW, &w.relay, &trusted(&w))
            .is_ok());
    }

    #[test]
    fn the_parties_must_be_two_keys() {
        let w = world();
        let mut t = token(&w);
        t.parties = [w.alice, w.alice];
        let signed = t.sign(&w.supernode);
        assert_eq!(
            signed.verify(NOW, &w.relay, &trusted(&w)),
            Err(TokenError::SameParties)
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let w = world();
        let e = TokenError::UntrustedIssuer {
            issuer: w.alice.to_string(),
        };
        assert!(e.to_string().contains("--trust"));
        let e = TokenError::Expired {
            expires_at: Timestamp(1_000),
            now: Timestamp(2_000),
        };
        assert!(e.to_string().contains("expired at 1.000"));
    }

    #[test]
    fn call_ids_print_as_hex() {
        let id = CallId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_ne!(CallId::random(), CallId::random());
    }
}
