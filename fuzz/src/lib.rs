//! Checks shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every check has the same shape: decoding arbitrary bytes must not panic, and
//! whatever decodes must survive a second trip through the encoder unchanged.

use parley_proto::codec::{frame_body_len, WireMessage, MAX_MESSAGE_LEN};
use parley_proto::presence::SignedPresence;
use parley_proto::{PeerId, Timestamp};
use std::fmt::Debug;

/// The fixed "now" at which presence records are verified.
pub const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// `M::decode` on arbitrary bytes; a success must re-encode to something that
/// decodes to the same value, frames consistently, and encodes deterministically.
pub fn wire_message<M: WireMessage + Debug + PartialEq>(data: &[u8]) {
    let Ok(msg) = M::decode(data) else { return };
    let encoded = msg.encode();
    // The encoder writes minimal varints, so it never grows what the decoder accepted.
    assert!(encoded.len() <= data.len(), "re-encoding grew the message");
    assert!(encoded.len() <= MAX_MESSAGE_LEN);
    let again = M::decode(&encoded).expect("a re-encoded message decodes");
    assert_eq!(again, msg);
    assert_eq!(again.encode(), encoded, "encoding is deterministic");
    let frame = msg.encode_frame();
    let prefix: [u8; 4] = frame[..4].try_into().expect("a frame has a 4-byte prefix");
    assert_eq!(frame_body_len(prefix), Ok(encoded.len()));
    assert_eq!(&frame[4..], &encoded[..]);
}

/// A bare postcard `SignedPresence` (as stored and replicated), then `verify` at
/// [`NOW`]: neither may panic, and verification must not depend on the encoding.
pub fn presence(data: &[u8]) {
    let Ok((record, _rest)) = postcard::take_from_bytes::<SignedPresence>(data) else {
        return;
    };
    let encoded = postcard::to_stdvec(&record).expect("a decoded record encodes");
    let again: SignedPresence =
        postcard::from_bytes(&encoded).expect("a re-encoded record decodes");
    assert_eq!(again, record);
    assert_eq!(again.verify(NOW), record.verify(NOW));
    let _ = record.supersedes(&again);
}

/// A printed peer id: parsing arbitrary text must not panic, and a parsed id prints
/// to a canonical form that parses to the same id.
pub fn peer_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(id) = text.parse::<PeerId>() else {
        return;
    };
    let printed = id.to_string();
    assert_eq!(printed.len(), 58);
    assert_eq!(printed.parse::<PeerId>(), Ok(id));
    assert_eq!(PeerId::from_bytes(&id.to_bytes()), Ok(id));
    let _ = id.short();
}
