//! The envelope every control message travels in, and stream framing.
//!
//! ```text
//! frame    = length:u32be envelope            (length counts the envelope only)
//! envelope = version:u8 kind:u8 body          (body: postcard encoding of the message)
//! ```
//! The decoder is strict: an unknown version, a kind that is not the one expected, a
//! truncated or oversized input, or trailing bytes after the body are errors.

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// The only protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// The largest envelope anyone may send: control messages are small.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Why bytes could not be decoded into a message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty message")]
    Empty,
    /// A version this build does not speak.
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION}); upgrade the older side")]
    UnsupportedVersion(u8),
    /// A message of another kind than the one expected on this channel.
    #[error("unexpected message kind {got:#04x} (expected {expected:#04x})")]
    WrongKind {
        /// What the channel carries.
        expected: u8,
        /// What arrived.
        got: u8,
    },
    /// Larger than [`MAX_MESSAGE_LEN`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit")]
    TooLarge(usize),
    /// The body does not parse (truncated, bad tag, out-of-range value, invalid key...).
    #[error("malformed message body: {0}")]
    Malformed(String),
    /// Bytes left over after a complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// A control message with a fixed kind byte in the envelope.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// The envelope's kind byte for this message type.
    const KIND: u8;

    /// The envelope bytes (no length prefix).
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_VERSION, Self::KIND];
        // Serializing into a Vec cannot fail for these types (no maps with
        // non-string keys, no unsized sequences), so an error here is a bug.
        let body = postcard::to_stdvec(self).expect("postcard serialization of a wire message");
        out.extend_from_slice(&body);
        out
    }

    /// Parses envelope bytes strictly.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let (&kind, body) = rest
            .split_first()
            .ok_or_else(|| DecodeError::Malformed("missing kind byte".into()))?;
        if kind != Self::KIND {
            return Err(DecodeError::WrongKind {
                expected: Self::KIND,
                got: kind,
            });
        }
        let (msg, left) =
            postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !left.is_empty() {
            return Err(DecodeError::TrailingBytes(left.len()));
        }
        Ok(msg)
    }

    /// The envelope with its u32 big-endian length prefix, ready for a stream.
    fn encode_frame(&self) -> Vec<u8> {
        let envelope = self.encode();
        let mut out = Vec::with_capacity(4 + envelope.len());
        out.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
        out.extend_from_slice(&envelope);
        out
    }
}

/// Validates a frame's length prefix before the body is read.
pub fn frame_body_len(prefix: [u8; 4]) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    if len > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLarge(len));
    }
    Ok(len)
}
