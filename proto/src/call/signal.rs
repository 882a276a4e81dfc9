//! Call signalling: the signed offer and answer, and the frames that carry them.
//!
//! A call's signalling is one chain of QUIC streams: caller → caller's supernode →
//! callee's supernode → callee. The first frame on each hop is a [`CallSignal`]
//! (`Place`, `Deliver`, `Incoming`); after it, frames flow both ways along the chain
//! until the call is answered or abandoned. Supernodes read only what they route on:
//! the offer and answer are signed by the parties, and their key-exchange messages
//! are opaque to everyone else.
//!
//! An offer says what it is for ([`OfferPurpose`]): a call, or a file the caller
//! sends ([`FileOffer`], issue 17). A file offer travels the same chain and is
//! answered the same way; the answer's candidates are then dialed with the file
//! ALPN instead of the call's. Adding the purpose changed the offer's encoding, so
//! the signalling kind byte moved from 0x20 (version 1, retired) to 0x21.

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
    /// What the offer is for.
    pub purpose: OfferPurpose,
}

/// What an offer is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferPurpose {
    /// A voice call.
    Call,
    /// A file the caller sends (issue 17).
    File(FileOffer),
}

/// The most recipients one file offer may name.
pub const MAX_RECIPIENTS: usize = 16;

/// A file the caller offers: what the receiver needs to decide before any byte moves.
/// The signed manifest (`crate::transfer::Manifest`) comes later over the transfer's
/// own connection and must match these fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOffer {
    /// The manifest's root hash: the transfer's id.
    pub root: [u8; 32],
    /// The sender's file name (checked by the receiver, [`crate::transfer::check_file_name`]).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Everyone the file goes to, the callee among them, in the sender's order: the
    /// recipients connect to each other so the swarm runs between all of them.
    pub recipients: Vec<PeerId>,
    /// The sender connects through the offer's relay grant instead of directly (it
    /// was asked to, or its direct dial failed): the receiver joins the relay too.
    pub relayed: bool,
}

impl FileOffer {
    /// The checks a receiver makes before accepting: a plain file name, a size a
    /// manifest can describe, at most [`MAX_RECIPIENTS`] distinct recipients that
    /// include `me` and not the sender.
    pub fn check(&self, sender: &PeerId, me: &PeerId) -> Result<(), FileOfferError> {
        crate::transfer::check_file_name(&self.name).map_err(FileOfferError::Name)?;
        if self.size > crate::transfer::manifest::MAX_FILE_SIZE {
            return Err(FileOfferError::TooLarge(self.size));
        }
        let r = &self.recipients;
        if r.len() > MAX_RECIPIENTS
            || r.iter().enumerate().any(|(i, p)| r[..i].contains(p))
            || !r.contains(me)
            || r.contains(sender)
        {
            return Err(FileOfferError::Recipients);
        }
        Ok(())
    }
}

/// Why a receiver refuses a file offer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FileOfferError {
    /// The file name is not one plain, portable name.
    #[error("file name refused: {0}")]
    Name(crate::transfer::NameError),
    /// Over the largest file a manifest may describe.
    #[error("file of {0} bytes is over the {max} byte limit", max = crate::transfer::manifest::MAX_FILE_SIZE)]
    TooLarge(u64),
    /// Too many, repeated, or not including us.
    #[error(
        "bad recipient list (at most {MAX_RECIPIENTS}, distinct, including us, not the sender)"
    )]
    Recipients,
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
        let file_too_large = match &o.purpose {
            OfferPurpose::Call => false,
            OfferPurpose::File(f) => {
                f.name.len() > crate::transfer::name::MAX_NAME_LEN
                    || f.recipients.len() > MAX_RECIPIENTS
            }
        };
        if o.caller_name.len() > MAX_DISPLAY_NAME
            || o.candidates.len() > MAX_ADDRESSES
            || o.handshake.len() > crate::call::e2e::MAX_HANDSHAKE_LEN
            || file_too_large
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

/// Kind 0x20 was version 1 (offers without a purpose); it is refused now.
impl WireMessage for CallSignal {
    const KIND: u8 = 0x21;
}

/// Bounds on `Place.via`.
pub const MAX_VIA: usize = MAX_SUPERNODES;
/// Most relays granted to one call (a primary and a standby).
pub const MAX_RELAYS: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;

    fn file_offer(recipients: Vec<PeerId>) -> FileOffer {
        FileOffer {
            root: [7; 32],
            name: "report.pdf".into(),
            size: 1 << 20,
            recipients,
            relayed: false,
        }
    }

    #[test]
    fn a_file_offer_is_checked_before_it_is_accepted() {
        let ids: Vec<PeerId> = (1..=3)
            .map(|i| Identity::from_seed(&[i; 32]).peer_id())
            .collect();
        let (sender, me, other) = (ids[0], ids[1], ids[2]);
        assert_eq!(file_offer(vec![me, other]).check(&sender, &me), Ok(()));
        assert_eq!(
            file_offer(vec![other]).check(&sender, &me),
            Err(FileOfferError::Recipients)
        );
        assert_eq!(
            file_offer(vec![me, me]).check(&sender, &me),
            Err(FileOfferError::Recipients)
        );
        assert_eq!(
            file_offer(vec![me, sender]).check(&sender, &me),
            Err(FileOfferError::Recipients)
        );
        for hostile in ["../x", "/etc/passwd", "NUL.txt", "a\\b"] {
            let mut f = file_offer(vec![me]);
            f.name = hostile.into();
            assert!(
                matches!(f.check(&sender, &me), Err(FileOfferError::Name(_))),
                "{hostile}"
            );
        }
        let mut f = file_offer(vec![me]);
        f.size = crate::transfer::manifest::MAX_FILE_SIZE + 1;
        assert!(matches!(
            f.check(&sender, &me),
            Err(FileOfferError::TooLarge(_))
        ));
    }

    #[test]
    fn the_purpose_is_signed_and_bounded() {
        let caller = Identity::from_seed(&[1; 32]);
        let me = Identity::from_seed(&[2; 32]).peer_id();
        let now = Timestamp(1_700_000_000_000);
        let offer = CallOffer {
            call_id: CallId([0; 16]),
            caller: caller.peer_id(),
            callee: me,
            caller_name: String::new(),
            candidates: vec![],
            handshake: vec![],
            sent_at: now,
            purpose: OfferPurpose::File(file_offer(vec![me])),
        };
        let signed = offer.clone().sign(&caller);
        assert!(signed.verify(now, &me).is_ok());
        let mut tampered = signed.clone();
        if let OfferPurpose::File(f) = &mut tampered.offer.purpose {
            f.name = "other.pdf".into();
        }
        assert_eq!(
            tampered.verify(now, &me),
            Err(SignalError::BadSignature("offer"))
        );
        let mut crowd = offer;
        crowd.purpose = OfferPurpose::File(file_offer(vec![me; MAX_RECIPIENTS + 1]));
        assert_eq!(
            crowd.sign(&caller).verify(now, &me),
            Err(SignalError::TooLarge("offer"))
        );
        // A version-1 frame (kind 0x20) is refused by kind.
        let mut old = CallSignal::Ringing.encode();
        old[1] = 0x20;
        assert!(matches!(
            CallSignal::decode(&old),
            Err(crate::codec::DecodeError::WrongKind { got: 0x20, .. })
        ));
    }
}
