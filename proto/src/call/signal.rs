//! Call signalling: the signed offer and answer, and the frames that carry them.
//!
//! A call's signalling is one chain of QUIC streams: caller → caller's supernode →
//! callee's supernode → callee. The first frame on each hop is a [`CallSignal`]
//! (`Place`, `Deliver`, `Incoming`); after it, frames flow both ways along the chain
//! until the call is answered or abandoned. Supernodes read only what they route on:
//! the offer and answer are signed by the parties, and their key-exchange messages
//! are opaque to everyone else.

use crate::codec::WireMessage;
use crate::identity::{Identity, PeerId};
use crate::presence::{CandidateAddr, Contact, MAX_ADDRESSES, MAX_DISPLAY_NAME, MAX_SUPERNODES};
use crate::relay::token::{CallId, SignedRelayToken};
use crate::time::{skew_secs, Timestamp, MAX_CLOCK_SKEW};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

const OFFER_DOMAIN: &[u8] = b"parley-call-offer-v1\0";
const ANSWER_DOMAIN: &[u8] = b"parley-call-answer-v1\0";
const DECLINE_DOMAIN: &[u8] = b"parley-call-decline-v1\0";
/// How old an offer may be, by the caller's clock as corrected by [`MAX_CLOCK_SKEW`]:
/// ringing plus answering. Replayed older offers are refused.
pub const OFFER_FRESHNESS: Duration = Duration::from_secs(120);

/// The caller's proposal, signed by the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallOffer {
    /// Random, unique per call.
    pub call_id: CallId,
    /// Who calls; signs the offer.
    pub caller: PeerId,
    /// Who is called.
    pub callee: PeerId,
    /// The caller's display name (not verified).
    pub caller_name: String,
    /// Where the caller may be reached directly.
    pub candidates: Vec<CandidateAddr>,
    /// The first Noise IK message (see [`crate::call::e2e`]).
    pub handshake: Vec<u8>,
    /// When the offer was made.
    pub sent_at: Timestamp,
}

/// The callee's acceptance, signed by the callee.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallAnswer {
    /// The call answered.
    pub call_id: CallId,
    /// Who answers; signs the answer.
    pub callee: PeerId,
    /// Where the callee may be reached directly.
    pub candidates: Vec<CandidateAddr>,
    /// The second Noise IK message.
    pub handshake: Vec<u8>,
}

/// The callee's refusal (declined, or busy in another call), signed by the callee so
/// that nobody on the signalling chain can end someone else's call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallDecline {
    /// The call refused.
    pub call_id: CallId,
    /// Who refuses; signs the refusal.
    pub callee: PeerId,
    /// `true`: busy in another call; `false`: declined.
    pub busy: bool,
}

macro_rules! signed {
    ($name:ident, $inner:ident, $field:ident, $domain:expr, $signer:ident) => {
        #[doc = concat!("A [`", stringify!($inner), "`] with its signature.")]
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            #[doc = "The signed content."]
            pub $field: $inner,
            #[doc = "ed25519 over the domain-separated content."]
            #[serde(with = "crate::presence::signature_bytes")]
            pub signature: [u8; 64],
        }

        impl $inner {
            #[doc = "Signs with the party's own identity."]
            pub fn sign(self, identity: &Identity) -> $name {
                let signature = identity.sign(&signed_bytes($domain, &self));
                $name {
                    $field: self,
                    signature,
                }
            }
        }

        impl $name {
            #[doc = "Whether the signature is the signer's over this content (no other check)."]
            pub fn signature_valid(&self) -> bool {
                self.$field
                    .$signer
                    .verify(&signed_bytes($domain, &self.$field), &self.signature)
            }
        }
    };
}

signed!(SignedOffer, CallOffer, offer, OFFER_DOMAIN, caller);
signed!(SignedAnswer, CallAnswer, answer, ANSWER_DOMAIN, callee);
signed!(SignedDecline, CallDecline, decline, DECLINE_DOMAIN, callee);

fn signed_bytes<T: Serialize>(domain: &[u8], value: &T) -> Vec<u8> {
    let mut out = domain.to_vec();
    // Plain data; postcard cannot fail on it.
    out.extend(postcard::to_stdvec(value).expect("postcard serialization of a call message"));
    out
}

/// Why an offer or answer was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignalError {
    /// Not signed by the party it names: tampered on the way.
    #[error("call {0} refused: its signature does not verify (tampered in transit)")]
    BadSignature(&'static str),
    /// Too old or from the future, beyond what clock skew explains.
    #[error(
        "call offer refused: it was made {0} s from now by the caller's clock (more than the \
         {max} s clock skew allowed); the caller's or this machine's clock is wrong",
        max = MAX_CLOCK_SKEW.as_secs()
    )]
    Stale(i64),
    /// Over a size limit.
    #[error("call {0} refused: a field is over its limit")]
    TooLarge(&'static str),
    /// An answer for another call or from someone else.
    #[error("answer does not belong to this call")]
    Mismatch,
}

impl SignedOffer {
    /// Checks the caller's signature, freshness and limits, for the callee `me`.
    pub fn verify(&self, now: Timestamp, me: &PeerId) -> Result<&CallOffer, SignalError> {
        let o = &self.offer;
        if o.caller_name.len() > MAX_DISPLAY_NAME
            || o.candidates.len() > MAX_ADDRESSES
            || o.handshake.len() > crate::call::e2e::MAX_HANDSHAKE_LEN
        {
            return Err(SignalError::TooLarge("offer"));
        }
        if !self.signature_valid() {
            return Err(SignalError::BadSignature("offer"));
        }
        if o.callee != *me {
            return Err(SignalError::Mismatch);
        }
        // Up to MAX_CLOCK_SKEW from the future, and up to OFFER_FRESHNESS + skew old.
        let too_new = o.sent_at > now + MAX_CLOCK_SKEW;
        let too_old = now.since(o.sent_at) > OFFER_FRESHNESS + MAX_CLOCK_SKEW;
        if too_new || too_old {
            return Err(SignalError::Stale(skew_secs(o.sent_at, now)));
        }
        Ok(o)
    }
}

impl SignedAnswer {
    /// Checks the callee's signature and that it answers `offer`.
    pub fn verify(&self, offer: &CallOffer) -> Result<&CallAnswer, SignalError> {
        let a = &self.answer;
        if a.candidates.len() > MAX_ADDRESSES
            || a.handshake.len() > crate::call::e2e::MAX_HANDSHAKE_LEN
        {
            return Err(SignalError::TooLarge("answer"));
        }
        if !self.signature_valid() {
            return Err(SignalError::BadSignature("answer"));
        }
        if a.call_id != offer.call_id || a.callee != offer.callee {
            return Err(SignalError::Mismatch);
        }
        Ok(a)
    }
}

impl SignedDecline {
    /// Checks the callee's signature and that it refuses `offer`.
    pub fn verify(&self, offer: &CallOffer) -> Result<&CallDecline, SignalError> {
        if !self.signature_valid() {
            return Err(SignalError::BadSignature("decline"));
        }
        let d = &self.decline;
        if d.call_id != offer.call_id || d.callee != offer.callee {
            return Err(SignalError::Mismatch);
        }
        Ok(d)
    }
}

impl RelayGrant {
    /// Checks what a party can check of a grant for `offer`: the token is signed by
    /// the issuer it names, is for this call and these two parties, names the relay
    /// it is offered for, and (when `issuer` is given: the caller knows its own
    /// supernode) was issued by `issuer`. Expiry is the relay's to judge.
    pub fn verify(&self, offer: &CallOffer, issuer: Option<&PeerId>) -> bool {
        let t = &self.token.token;
        t.call_id == offer.call_id
            && t.parties == [offer.caller, offer.callee]
            && t.relay == self.relay.id
            && issuer.is_none_or(|i| *i == t.issuer)
            && self.token.signature_valid()
    }
}

/// A relay the caller's supernode chose for the call, with the token for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayGrant {
    /// The relay.
    pub relay: Contact,
    /// The relay's TCP fallback (QUIC over TCP), for a party whose UDP is blocked;
    /// `None` if the relay has none.
    pub tcp: Option<SocketAddr>,
    /// The token both legs present.
    pub token: SignedRelayToken,
}

/// A frame on a call's signalling chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallSignal {
    /// Caller → its supernode: deliver this offer through the callee's supernodes.
    Place {
        /// The offer.
        offer: SignedOffer,
        /// The callee's supernodes, from its presence record.
        via: Vec<Contact>,
    },
    /// Caller's supernode → callee's supernode.
    Deliver {
        /// The offer.
        offer: SignedOffer,
        /// Relays for the call, preferred first (at most [`MAX_RELAYS`]).
        relays: Vec<RelayGrant>,
    },
    /// Callee's supernode → callee, over the callee's attachment.
    Incoming {
        /// The offer.
        offer: SignedOffer,
        /// Relays for the call, preferred first.
        relays: Vec<RelayGrant>,
    },
    /// Caller's supernode → caller, first: relays for the call, preferred first. The
    /// second is a standby both parties join too, so a relay's death costs no set-up.
    RelayGranted(Vec<RelayGrant>),
    /// Callee → caller: the callee is being alerted.
    Ringing,
    /// Callee → caller: accepted.
    Accept(SignedAnswer),
    /// Unsigned refusal (anyone on the chain could forge it): ignored by callers;
    /// see [`CallSignal::Declined`].
    Reject,
    /// Unsigned "busy": ignored by callers; see [`CallSignal::Declined`].
    Busy,
    /// Caller → callee: gave up before an answer.
    Cancel,
    /// A supernode → caller: the offer could not be delivered. Unsigned: believed only
    /// before the callee has rung.
    Unreachable(String),
    /// Callee → caller: declined or busy, signed. Replaces the unsigned `Reject` and
    /// `Busy`, which are kept for the wire format but ignored by callers.
    Declined(SignedDecline),
}

impl WireMessage for CallSignal {
    const KIND: u8 = 0x20;
}

/// Bounds on `Place.via`.
pub const MAX_VIA: usize = MAX_SUPERNODES;
/// Most relays granted to one call (a primary and a standby).
pub const MAX_RELAYS: usize = 2;
