//! The call's authenticated key exchange: Noise IK (`Noise_IK_25519_ChaChaPoly_BLAKE2s`,
//! via the `snow` crate) with each party's X25519 key derived from its ed25519 identity
//! (the standard birational map, as libsodium's `crypto_sign_ed25519_*_to_curve25519`).
//!
//! The caller knows the callee's identity from its signed presence record, so the
//! first message is encrypted to the callee and carries the caller's static key; the
//! callee checks that key is the caller the signed offer names. A supernode that swaps
//! identities in the offer therefore fails either the offer's signature or this check,
//! and cannot complete the handshake for someone else's key. The prologue binds the
//! call id and both identities. Both ends derive the same handshake hash, shown to the
//! users as a safety code.

use crate::identity::{Identity, PeerId};
use snow::{HandshakeState, StatelessTransportState};
use thiserror::Error;

const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE_DOMAIN: &[u8] = b"parley-call-v1\0";
/// Largest handshake message we produce or accept.
pub const MAX_HANDSHAKE_LEN: usize = 256;

/// Why the key exchange failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum E2eError {
    /// The handshake message is malformed or does not decrypt: tampered, or not for us.
    #[error("the call's key exchange failed: {0}")]
    Handshake(String),
    /// The caller's key in the handshake is not the identity the offer names.
    #[error("the caller's key does not match the identity in the offer (man in the middle?); call refused")]
    KeyMismatch,
}

fn noise_err(e: snow::Error) -> E2eError {
    E2eError::Handshake(e.to_string())
}

fn x25519_public(peer: &PeerId) -> [u8; 32] {
    peer.verifying_key().to_montgomery().to_bytes()
}

fn x25519_secret(identity: &Identity) -> [u8; 32] {
    identity.signing_key().to_scalar_bytes()
}

/// The prologue both sides must agree on.
pub fn prologue(call_id: &[u8; 16], caller: &PeerId, callee: &PeerId) -> Vec<u8> {
    let mut p = PROLOGUE_DOMAIN.to_vec();
    p.extend_from_slice(call_id);
    p.extend_from_slice(caller.as_bytes());
    p.extend_from_slice(callee.as_bytes());
    p
}

fn builder<'a>(secret: &'a [u8; 32], prologue: &'a [u8]) -> Result<snow::Builder<'a>, E2eError> {
    let params = NOISE_PARAMS
        .parse()
        .map_err(|e: snow::Error| E2eError::Handshake(e.to_string()))?;
    snow::Builder::new(params)
        .local_private_key(secret)
        .map_err(noise_err)?
        .prologue(prologue)
        .map_err(noise_err)
}

/// The caller's half-finished handshake, waiting for the callee's answer.
pub struct PendingHandshake {
    state: HandshakeState,
}

/// The established keys of a call, and its safety code.
pub struct SessionKeys {
    /// Stateless transport: each message's nonce is given explicitly (the frame's
    /// sequence number), so lost and reordered datagrams decrypt independently.
    pub transport: StatelessTransportState,
    /// Identical on both ends exactly when no one is in the middle.
    pub handshake_hash: Vec<u8>,
}

impl SessionKeys {
    /// A short code both users can read to each other: 12 digits in three groups.
    pub fn safety_code(&self) -> String {
        code_digits(&self.handshake_hash)
    }
}

/// A code people read to each other: the first 8 bytes of `hash` (big-endian) modulo
/// 10¹², as 12 digits in three groups of four (`"0412 9931 5520"`). The pairwise call
/// code and the conference's group code (`crate::media::group`) are both shown this way.
pub fn code_digits(hash: &[u8]) -> String {
    let mut n: u64 = 0;
    for b in hash.iter().take(8) {
        n = (n << 8) | u64::from(*b);
    }
    let digits = format!("{:012}", n % 1_000_000_000_000);
    format!("{} {} {}", &digits[0..4], &digits[4..8], &digits[8..12])
}

/// Caller: starts the handshake to `callee`; the returned bytes go in the offer.
pub fn initiate(
    me: &Identity,
    callee: &PeerId,
    prologue: &[u8],
) -> Result<(PendingHandshake, Vec<u8>), E2eError> {
    let secret = x25519_secret(me);
    let remote = x25519_public(callee);
    let mut state = builder(&secret, prologue)?
        .remote_public_key(&remote)
        .map_err(noise_err)?
        .build_initiator()
        .map_err(noise_err)?;
    let mut msg = vec![0u8; MAX_HANDSHAKE_LEN];
    let n = state.write_message(&[], &mut msg).map_err(noise_err)?;
    msg.truncate(n);
    Ok((PendingHandshake { state }, msg))
}

/// Callee: answers the caller's handshake message, checking that it comes from
/// `caller` (the identity named in the signed offer). The returned bytes go in the answer.
pub fn respond(
    me: &Identity,
    caller: &PeerId,
    prologue: &[u8],
    message: &[u8],
) -> Result<(SessionKeys, Vec<u8>), E2eError> {
    if message.len() > MAX_HANDSHAKE_LEN {
        return Err(E2eError::Handshake("handshake message too long".into()));
    }
    let secret = x25519_secret(me);
    let mut state = builder(&secret, prologue)?
        .build_responder()
        .map_err(noise_err)?;
    let mut payload = vec![0u8; MAX_HANDSHAKE_LEN];
    state
        .read_message(message, &mut payload)
        .map_err(noise_err)?;
    if state.get_remote_static() != Some(&x25519_public(caller)[..]) {
        return Err(E2eError::KeyMismatch);
    }
    let mut reply = vec![0u8; MAX_HANDSHAKE_LEN];
    let n = state.write_message(&[], &mut reply).map_err(noise_err)?;
    reply.truncate(n);
    let handshake_hash = state.get_handshake_hash().to_vec();
    let transport = state.into_stateless_transport_mode().map_err(noise_err)?;
    Ok((
        SessionKeys {
            transport,
            handshake_hash,
        },
        reply,
    ))
}

impl PendingHandshake {
    /// Caller: completes the handshake with the callee's answer.
    pub fn finish(mut self, message: &[u8]) -> Result<SessionKeys, E2eError> {
        if message.len() > MAX_HANDSHAKE_LEN {
            return Err(E2eError::Handshake("handshake message too long".into()));
        }
        let mut payload = vec![0u8; MAX_HANDSHAKE_LEN];
        self.state
            .read_message(message, &mut payload)
            .map_err(noise_err)?;
        let handshake_hash = self.state.get_handshake_hash().to_vec();
        let transport = self
            .state
            .into_stateless_transport_mode()
            .map_err(noise_err)?;
        Ok(SessionKeys {
            transport,
            handshake_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Identity, Identity, Vec<u8>) {
        let (a, b) = (Identity::generate(), Identity::generate());
        let p = prologue(&[7; 16], &a.peer_id(), &b.peer_id());
        (a, b, p)
    }

    #[test]
    fn both_ends_agree_and_can_talk() {
        let (alice, bob, p) = setup();
        let (pending, m1) = initiate(&alice, &bob.peer_id(), &p).unwrap();
        let (bob_keys, m2) = respond(&bob, &alice.peer_id(), &p, &m1).unwrap();
        let alice_keys = pending.finish(&m2).unwrap();
        assert_eq!(alice_keys.handshake_hash, bob_keys.handshake_hash);
        assert_eq!(alice_keys.safety_code(), bob_keys.safety_code());
        let mut ct = vec![0u8; 64];
        let n = alice_keys
            .transport
            .write_message(5, b"hello", &mut ct)
            .unwrap();
        let mut pt = vec![0u8; 64];
        let m = bob_keys
            .transport
            .read_message(5, &ct[..n], &mut pt)
            .unwrap();
        assert_eq!(&pt[..m], b"hello");
    }

    #[test]
    fn a_swapped_caller_key_is_detected() {
        let (alice, bob, _) = setup();
        let mallory = Identity::generate();
        // Mallory (say, a supernode) claims the call comes from her identity but relays
        // Alice's handshake: the static key inside does not match.
        let p = prologue(&[7; 16], &mallory.peer_id(), &bob.peer_id());
        let (_pending, m1) = initiate(&alice, &bob.peer_id(), &p).unwrap();
        assert_eq!(
            respond(&bob, &mallory.peer_id(), &p, &m1).err(),
            Some(E2eError::KeyMismatch)
        );
    }

    #[test]
    fn a_handshake_for_another_callee_fails() {
        let (alice, bob, p) = setup();
        let mallory = Identity::generate();
        let (_pending, m1) = initiate(&alice, &bob.peer_id(), &p).unwrap();
        assert!(matches!(
            respond(&mallory, &alice.peer_id(), &p, &m1),
            Err(E2eError::Handshake(_))
        ));
    }

    #[test]
    fn a_different_prologue_fails() {
        let (alice, bob, p) = setup();
        let (_pending, m1) = initiate(&alice, &bob.peer_id(), &p).unwrap();
        let other = prologue(&[8; 16], &alice.peer_id(), &bob.peer_id());
        assert!(respond(&bob, &alice.peer_id(), &other, &m1).is_err());
    }
}
