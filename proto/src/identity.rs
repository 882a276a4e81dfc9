//! Identities: an ed25519 key pair is a user's (or a server's) identity.
//!
//! The printable id is the public key followed by a 4-byte checksum, in lowercase
//! base32 without padding (58 characters). A mistyped id fails the checksum and is an
//! error, never a different user.

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

const ID_CHECKSUM_DOMAIN: &[u8] = b"parley-id-checksum-v1";
const NODE_ID_DOMAIN: &[u8] = b"parley-node-id-v1";
const CHECKSUM_LEN: usize = 4;

/// Why a printed id or raw key could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    /// Not base32, or the wrong length.
    #[error(
        "not a Parley id: expected 58 base32 characters (a-z, 2-7); check for a copy-paste mistake"
    )]
    Malformed,
    /// The checksum does not match: a typo.
    #[error("this Parley id has a typo: its checksum does not match")]
    BadChecksum,
    /// 32 bytes that are not an ed25519 public key.
    #[error("not a valid ed25519 public key")]
    InvalidKey,
}

/// The curve's identity point, compressed: a valid key that verifies nothing
/// (strict verification refuses small-order keys).
const IDENTITY_POINT: [u8; 32] = {
    let mut p = [0u8; 32];
    p[0] = 1;
    p
};

/// A public identity: an ed25519 verifying key.
///
/// Held as its 32 compressed bytes, checked to be a valid point when made: ids are
/// copied, hashed and compared far more often than they verify signatures (every
/// contact in every DHT reply carries one), and the decompressed key is six times
/// the size. [`PeerId::verify`] decompresses on use.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// From the 32 raw key bytes; refuses bytes that are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PeerId, IdError> {
        VerifyingKey::from_bytes(bytes)
            .map(|_| PeerId(*bytes))
            .map_err(|_| IdError::InvalidKey)
    }

    /// The 32 raw key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The DHT key a record of this identity is stored under: `SHA-256(domain ‖
    /// key)`. A *supernode's* position is not this but [`Contact::node_id`], which
    /// also depends on the IP it is reached at (BEP 42, see
    /// [`crate::overlay::position`]).
    ///
    /// [`Contact::node_id`]: crate::presence::Contact::node_id
    pub fn record_key(&self) -> NodeId {
        NodeId::of(self)
    }

    /// Checks `signature` over `message` (callers add their own domain separation).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.verifying_key()
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    /// The underlying dalek key (decompressed on each call).
    pub fn verifying_key(&self) -> VerifyingKey {
        // Checked to decompress when the id was made; the fallback is unreachable
        // and verifies nothing.
        VerifyingKey::from_bytes(&self.0).unwrap_or_else(|_| {
            VerifyingKey::from_bytes(&IDENTITY_POINT).expect("the identity point decompresses")
        })
    }

    /// The first characters of the printable id: enough for logs.
    pub fn short(&self) -> String {
        self.to_string()[..10].to_string()
    }
}

fn checksum(key: &[u8; 32]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::new()
        .chain_update(ID_CHECKSUM_DOMAIN)
        .chain_update(key)
        .finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.to_bytes();
        let mut buf = [0u8; 32 + CHECKSUM_LEN];
        buf[..32].copy_from_slice(&key);
        buf[32..].copy_from_slice(&checksum(&key));
        f.write_str(&BASE32_NOPAD.encode(&buf).to_ascii_lowercase())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

impl std::str::FromStr for PeerId {
    type Err = IdError;

    /// Accepts any case, and ignores spaces and dashes people add when they copy ids.
    fn from_str(s: &str) -> Result<PeerId, IdError> {
        let cleaned: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = BASE32_NOPAD
            .decode(cleaned.as_bytes())
            .map_err(|_| IdError::Malformed)?;
        if bytes.len() != 32 + CHECKSUM_LEN {
            return Err(IdError::Malformed);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[..32]);
        if checksum(&key) != bytes[32..] {
            return Err(IdError::BadChecksum);
        }
        PeerId::from_bytes(&key)
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_bytes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        let bytes = <[u8; 32]>::deserialize(d)?;
        PeerId::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// A private identity: the ed25519 signing key. Never leaves the machine that made it.
#[derive(Clone)]
pub struct Identity(SigningKey);

impl Identity {
    /// A fresh identity from the OS random source.
    pub fn generate() -> Identity {
        Identity(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// From a 32-byte secret seed (key files store exactly this).
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        Identity(SigningKey::from_bytes(seed))
    }

    /// The 32-byte secret seed.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.0.verifying_key().to_bytes())
    }

    /// Signs `message` (callers add their own domain separation).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The underlying dalek key, for TLS configuration.
    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.peer_id().short())
    }
}

/// A 256-bit position in the DHT's key space: a record's key ([`NodeId::of`]) or a
/// supernode's position ([`NodeId::of_supernode`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The record key of an identity: SHA-256 over a domain and the key. Also the
    /// position of a supernode reached at a non-routable address.
    pub fn of(peer: &PeerId) -> NodeId {
        let digest = Sha256::new()
            .chain_update(NODE_ID_DOMAIN)
            .chain_update(peer.as_bytes())
            .finalize();
        let mut out = [0u8; 32];
        out.copy_from_slice(&digest);
        NodeId(out)
    }

    /// XOR distance to `other`; compare distances with `Ord` (big-endian).
    pub fn distance(&self, other: &NodeId) -> [u8; 32] {
        let mut d = [0u8; 32];
        for (i, byte) in d.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        d
    }

    /// Index of the k-bucket `other` falls in: 255 minus the length of the common prefix,
    /// or `None` when the two are equal.
    pub fn bucket_index(&self, other: &NodeId) -> Option<usize> {
        let d = self.distance(other);
        for (i, byte) in d.iter().enumerate() {
            if *byte != 0 {
                let prefix = i * 8 + byte.leading_zeros() as usize;
                return Some(255 - prefix);
            }
        }
        None
    }
}

/// All 32 bytes in lowercase hex (64 characters), as operators see a supernode's
/// position (`supernode ready ... position=`).
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NodeId({})",
            data_encoding::HEXLOWER.encode(&self.0[..6])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_id_round_trips() {
        let id = Identity::generate().peer_id();
        let text = id.to_string();
        assert_eq!(text.len(), 58);
        assert_eq!(text.parse::<PeerId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<PeerId>().unwrap(), id);
    }

    #[test]
    fn a_node_id_prints_as_64_hex_digits() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x05;
        let text = NodeId(bytes).to_string();
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("ab00") && text.ends_with("0005"), "{text}");
    }

    #[test]
    fn a_typo_is_an_error_not_another_user() {
        let text = Identity::generate().peer_id().to_string();
        let mut chars: Vec<char> = text.chars().collect();
        for i in [0, 10, 30, 57] {
            let original = chars[i];
            chars[i] = if original == 'a' { 'b' } else { 'a' };
            let typo: String = chars.iter().collect();
            let err = typo.parse::<PeerId>().unwrap_err();
            assert!(matches!(
                err,
                IdError::BadChecksum | IdError::Malformed | IdError::InvalidKey
            ));
            chars[i] = original;
        }
        assert_eq!("hello".parse::<PeerId>().unwrap_err(), IdError::Malformed);
    }

    #[test]
    fn signatures_verify_only_with_the_right_key() {
        let a = Identity::generate();
        let b = Identity::generate();
        let sig = a.sign(b"msg");
        assert!(a.peer_id().verify(b"msg", &sig));
        assert!(!b.peer_id().verify(b"msg", &sig));
        assert!(!a.peer_id().verify(b"msh", &sig));
    }

    #[test]
    fn bucket_index_is_prefix_based() {
        let a = NodeId([0u8; 32]);
        let mut b = [0u8; 32];
        b[0] = 0x80;
        assert_eq!(a.bucket_index(&NodeId(b)), Some(255));
        let mut c = [0u8; 32];
        c[31] = 1;
        assert_eq!(a.bucket_index(&NodeId(c)), Some(0));
        assert_eq!(a.bucket_index(&a), None);
    }
}
