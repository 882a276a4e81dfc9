//! The messages peers of one transfer exchange, and their strict codec.
//!
//! The message set and type numbers are BitTorrent's (BEP 3), with whole chunks in
//! place of BEP 3's (index, begin, length) blocks, since a 256 KiB chunk is one
//! request:
//!
//! ```text
//! frame   = length:u32be message          (length counts the message; 2..=MAX_PEER_MESSAGE_LEN)
//! message = version:u8 (= 1) type:u8 payload
//!   0 choke | 1 unchoke | 2 interested | 3 not interested     (no payload)
//!   4 have      index:u32be
//!   5 bitfield  bits: ceil(chunks / 8) bytes, chunk 0 = high bit of the first byte
//!   6 request   index:u32be
//!   7 piece     index:u32be data: 1..=CHUNK_SIZE bytes
//!   8 cancel    index:u32be
//! ```
//!
//! Hand-written rather than postcard: a piece is 256 KiB that should be copied once,
//! not visited byte by byte through serde, and the layout is BEP 3's. The decoder is
//! strict: unknown version or type, a payload of the wrong length, or an oversized
//! frame is an error. Index ranges and bitfield lengths depend on the manifest and
//! are checked by the [`Swarm`](super::Swarm).

use super::manifest::{CHUNK_SIZE, MAX_CHUNKS};
use thiserror::Error;

/// The peer wire version this build speaks.
pub const PEER_WIRE_VERSION: u8 = 1;
/// The largest message: a piece of [`CHUNK_SIZE`] bytes with its header.
pub const MAX_PEER_MESSAGE_LEN: usize = CHUNK_SIZE as usize + 6;
/// The largest bitfield: one bit for each of [`MAX_CHUNKS`] chunks.
pub const MAX_BITFIELD_LEN: usize = MAX_CHUNKS as usize / 8;

/// One message between two peers of a transfer.
#[derive(Clone, PartialEq, Eq)]
pub enum PeerMessage {
    /// The sender will not serve requests; pending ones are dropped.
    Choke,
    /// The sender will serve requests.
    Unchoke,
    /// The sender wants chunks the receiver has.
    Interested,
    /// The sender wants nothing the receiver has.
    NotInterested,
    /// The sender has verified chunk `0`.
    Have(u32),
    /// Every chunk the sender has; the first message on a connection.
    Bitfield(Vec<u8>),
    /// Please send chunk `0`.
    Request(u32),
    /// Chunk `index`'s bytes.
    Piece {
        /// Which chunk.
        index: u32,
        /// Its bytes, to be verified against the manifest.
        data: Vec<u8>,
    },
    /// Never mind the request for chunk `0`.
    Cancel(u32),
}

impl std::fmt::Debug for PeerMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerMessage::Choke => write!(f, "Choke"),
            PeerMessage::Unchoke => write!(f, "Unchoke"),
            PeerMessage::Interested => write!(f, "Interested"),
            PeerMessage::NotInterested => write!(f, "NotInterested"),
            PeerMessage::Have(i) => write!(f, "Have({i})"),
            PeerMessage::Bitfield(b) => write!(f, "Bitfield({} bytes)", b.len()),
            PeerMessage::Request(i) => write!(f, "Request({i})"),
            PeerMessage::Piece { index, data } => write!(f, "Piece({index}, {} bytes)", data.len()),
            PeerMessage::Cancel(i) => write!(f, "Cancel({i})"),
        }
    }
}

/// Why bytes are not a peer message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PeerDecodeError {
    /// Fewer than the two header bytes.
    #[error("peer message shorter than its 2-byte header")]
    Truncated,
    /// A version this build does not speak.
    #[error("unsupported peer wire version {0} (this build speaks {PEER_WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// A type outside 0..=8.
    #[error("unknown peer message type {0}")]
    UnknownType(u8),
    /// A payload of the wrong length for its type.
    #[error("peer message type {ty} with a {len}-byte payload")]
    PayloadLength {
        /// The type.
        ty: u8,
        /// The payload's length.
        len: usize,
    },
    /// Larger than [`MAX_PEER_MESSAGE_LEN`].
    #[error("peer message of {0} bytes exceeds the {MAX_PEER_MESSAGE_LEN}-byte limit")]
    TooLarge(usize),
}

impl PeerMessage {
    fn type_byte(&self) -> u8 {
        match self {
            PeerMessage::Choke => 0,
            PeerMessage::Unchoke => 1,
            PeerMessage::Interested => 2,
            PeerMessage::NotInterested => 3,
            PeerMessage::Have(_) => 4,
            PeerMessage::Bitfield(_) => 5,
            PeerMessage::Request(_) => 6,
            PeerMessage::Piece { .. } => 7,
            PeerMessage::Cancel(_) => 8,
        }
    }

    /// Bytes of payload a piece carries (0 for every other message).
    pub fn piece_len(&self) -> usize {
        match self {
            PeerMessage::Piece { data, .. } => data.len(),
            _ => 0,
        }
    }

    /// The message bytes (no length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(6 + self.piece_len());
        out.push(PEER_WIRE_VERSION);
        out.push(self.type_byte());
        match self {
            PeerMessage::Have(i) | PeerMessage::Request(i) | PeerMessage::Cancel(i) => {
                out.extend_from_slice(&i.to_be_bytes())
            }
            PeerMessage::Bitfield(bits) => out.extend_from_slice(bits),
            PeerMessage::Piece { index, data } => {
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(data);
            }
            _ => {}
        }
        out
    }

    /// The message with its u32 big-endian length prefix.
    pub fn encode_frame(&self) -> Vec<u8> {
        let body = self.encode();
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses message bytes strictly.
    pub fn decode(bytes: &[u8]) -> Result<PeerMessage, PeerDecodeError> {
        if bytes.len() > MAX_PEER_MESSAGE_LEN {
            return Err(PeerDecodeError::TooLarge(bytes.len()));
        }
        let [version, ty, payload @ ..] = bytes else {
            return Err(PeerDecodeError::Truncated);
        };
        if *version != PEER_WIRE_VERSION {
            return Err(PeerDecodeError::UnsupportedVersion(*version));
        }
        let ty = *ty;
        let bad_len = || PeerDecodeError::PayloadLength {
            ty,
            len: payload.len(),
        };
        let index = || -> Result<u32, PeerDecodeError> {
            let b: [u8; 4] = payload.try_into().map_err(|_| bad_len())?;
            Ok(u32::from_be_bytes(b))
        };
        let empty = |m: PeerMessage| {
            if payload.is_empty() {
                Ok(m)
            } else {
                Err(bad_len())
            }
        };
        match ty {
            0 => empty(PeerMessage::Choke),
            1 => empty(PeerMessage::Unchoke),
            2 => empty(PeerMessage::Interested),
            3 => empty(PeerMessage::NotInterested),
            4 => Ok(PeerMessage::Have(index()?)),
            5 if payload.len() <= MAX_BITFIELD_LEN => Ok(PeerMessage::Bitfield(payload.to_vec())),
            5 => Err(bad_len()),
            6 => Ok(PeerMessage::Request(index()?)),
            7 if payload.len() > 4 => Ok(PeerMessage::Piece {
                index: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                data: payload[4..].to_vec(),
            }),
            7 => Err(bad_len()),
            8 => Ok(PeerMessage::Cancel(index()?)),
            other => Err(PeerDecodeError::UnknownType(other)),
        }
    }
}

/// Validates a frame's length prefix before its body is read.
pub fn peer_frame_len(prefix: [u8; 4]) -> Result<usize, PeerDecodeError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len < 2 {
        return Err(PeerDecodeError::Truncated);
    }
    if len > MAX_PEER_MESSAGE_LEN {
        return Err(PeerDecodeError::TooLarge(len));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn every_kind() -> Vec<PeerMessage> {
        vec![
            PeerMessage::Choke,
            PeerMessage::Unchoke,
            PeerMessage::Interested,
            PeerMessage::NotInterested,
            PeerMessage::Have(7),
            PeerMessage::Bitfield(vec![0xa0]),
            PeerMessage::Request(0x01020304),
            PeerMessage::Piece {
                index: 2,
                data: vec![0xde, 0xad],
            },
            PeerMessage::Cancel(u32::MAX),
        ]
    }

    /// The wire format cannot change by accident.
    #[test]
    fn peer_messages_hex_snapshot() {
        let hex: Vec<String> = every_kind()
            .iter()
            .map(|m| data_encoding::HEXLOWER.encode(&m.encode_frame()))
            .collect();
        assert_eq!(
            hex,
            [
                "000000020100",
                "000000020101",
                "000000020102",
                "000000020103",
                "00000006010400000007",
                "000000030105a0",
                "00000006010601020304",
                "00000008010700000002dead",
                "000000060108ffffffff",
            ]
        );
    }

    #[test]
    fn decoding_is_strict() {
        use PeerDecodeError::*;
        assert_eq!(PeerMessage::decode(&[1]), Err(Truncated));
        assert_eq!(PeerMessage::decode(&[2, 0]), Err(UnsupportedVersion(2)));
        assert_eq!(PeerMessage::decode(&[1, 9]), Err(UnknownType(9)));
        assert_eq!(
            PeerMessage::decode(&[1, 0, 0]),
            Err(PayloadLength { ty: 0, len: 1 })
        );
        assert_eq!(
            PeerMessage::decode(&[1, 4, 0, 0, 0]),
            Err(PayloadLength { ty: 4, len: 3 })
        );
        assert_eq!(
            PeerMessage::decode(&[1, 6, 0, 0, 0, 0, 0]),
            Err(PayloadLength { ty: 6, len: 5 })
        );
        assert_eq!(
            PeerMessage::decode(&[1, 7, 0, 0, 0, 0]),
            Err(PayloadLength { ty: 7, len: 4 }),
            "a piece with no data"
        );
        let mut big_piece = vec![1, 7, 0, 0, 0, 0];
        big_piece.resize(MAX_PEER_MESSAGE_LEN + 1, 0);
        assert_eq!(
            PeerMessage::decode(&big_piece),
            Err(TooLarge(MAX_PEER_MESSAGE_LEN + 1))
        );
        big_piece.pop();
        assert_eq!(
            PeerMessage::decode(&big_piece).map(|m| m.piece_len()),
            Ok(CHUNK_SIZE as usize)
        );
        let mut big_bits = vec![1, 5];
        big_bits.resize(2 + MAX_BITFIELD_LEN + 1, 0);
        assert_eq!(
            PeerMessage::decode(&big_bits),
            Err(PayloadLength {
                ty: 5,
                len: MAX_BITFIELD_LEN + 1
            })
        );
        assert_eq!(peer_frame_len([0, 0, 0, 1]), Err(Truncated));
        assert_eq!(peer_frame_len([0, 0, 0, 2]), Ok(2));
        assert_eq!(peer_frame_len([0, 4, 0, 7]), Err(TooLarge(0x0004_0007)));
    }

    fn message() -> impl Strategy<Value = PeerMessage> {
        prop_oneof![
            Just(PeerMessage::Choke),
            Just(PeerMessage::Unchoke),
            Just(PeerMessage::Interested),
            Just(PeerMessage::NotInterested),
            any::<u32>().prop_map(PeerMessage::Have),
            any::<u32>().prop_map(PeerMessage::Request),
            any::<u32>().prop_map(PeerMessage::Cancel),
            proptest::collection::vec(any::<u8>(), 0..=MAX_BITFIELD_LEN)
                .prop_map(PeerMessage::Bitfield),
            (
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 1..2048)
            )
                .prop_map(|(index, data)| PeerMessage::Piece { index, data }),
        ]
    }

    proptest! {
        #[test]
        fn messages_round_trip(m in message()) {
            let frame = m.encode_frame();
            let len = peer_frame_len(frame[..4].try_into().expect("4 bytes")).expect("a valid prefix");
            prop_assert_eq!(len, frame.len() - 4);
            prop_assert_eq!(PeerMessage::decode(&frame[4..]), Ok(m));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(m) = PeerMessage::decode(&bytes) {
                prop_assert_eq!(m.encode(), bytes);
            }
        }
    }
}
