//! The relay's media channel: the datagrams a joined leg exchanges with the relay's
//! data port, outside QUIC. See docs/protocol.md ("Relay channels").
//!
//! A leg joins over QUIC as before and is given a channel number; both ends then derive
//! a per-leg key from the join's TLS session (RFC 5705 / RFC 8446 §7.5 exporter, label
//! [`EXPORTER_LABEL`], context the channel number) so that only the party that proved its
//! key in that handshake can send on the channel. The relay checks a 64-bit SipHash-2-4
//! tag and a counter per datagram and forwards with a table lookup; the media inside is
//! already end-to-end encrypted, so nothing is decrypted on the way.
//!
//! Client to relay (all integers big-endian):
//!
//! ```text
//! DATA  0x01 | channel u32 | counter u64 | payload (1..=MAX_PAYLOAD) | tag u64
//! BIND  0x02 | channel u32 | counter u64 | [cookie u64]              | tag u64
//! ```
//!
//! `tag` = SipHash-2-4 under the channel key over every byte before it. `counter` starts
//! at 1 and grows by one per datagram (DATA and BIND share it). A BIND without cookie
//! asks the relay to prove the sender's address; with the cookie of a CHALLENGE it
//! completes the proof.
//!
//! Relay to client (never larger than the datagram that caused it, except DATA, which
//! only goes to a proven address):
//!
//! ```text
//! DATA      0x81 | channel u32 | payload      (the partner's payload, verbatim)
//! BOUND     0x82 | channel u32 | counter u64  (the BIND's counter)
//! CHALLENGE 0x83 | channel u32 | cookie u64
//! ```

use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use thiserror::Error;

/// TLS exporter label of the channel key.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-parley-relay-channel";
/// Bytes of exported keying material a channel key is made from.
pub const KEY_LEN: usize = 16;
/// Largest payload a channel carries: a media datagram fits in one Ethernet-sized UDP
/// packet with room for IPv6, UDP and the header.
pub const MAX_PAYLOAD: usize = 1200;
/// Header before the payload of a client's datagram.
pub const CLIENT_HEADER: usize = 1 + 4 + 8;
/// Tag after the payload of a client's datagram.
pub const TAG_LEN: usize = 8;
/// Header before the payload of a relay's DATA datagram.
pub const RELAY_HEADER: usize = 1 + 4;
/// The largest datagram on the channel, either way.
pub const MAX_DATAGRAM: usize = CLIENT_HEADER + MAX_PAYLOAD + TAG_LEN;

const DATA: u8 = 0x01;
const BIND: u8 = 0x02;
const RELAY_DATA: u8 = 0x81;
const BOUND: u8 = 0x82;
const CHALLENGE: u8 = 0x83;

/// A channel number, as the relay hands it out in `Joined`.
pub type ChannelId = u32;

/// A channel's MAC key (from the TLS exporter).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChannelKey(pub [u8; KEY_LEN]);

impl std::fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelKey(..)")
    }
}

impl ChannelKey {
    /// The 64-bit SipHash-2-4 tag of `bytes` under this key.
    pub fn tag(&self, bytes: &[u8]) -> u64 {
        let (k0, k1) = self.0.split_at(8);
        let mut h = SipHasher24::new_with_keys(be64(k0), be64(k1));
        h.write(bytes);
        h.finish()
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// Why a channel datagram could not be read.
#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum ChannelError {
    /// Shorter than its kind's header (and tag), or longer than [`MAX_DATAGRAM`].
    #[error("channel datagram of {0} bytes has an impossible length")]
    Length(usize),
    /// The first byte is not a kind this direction uses.
    #[error("unknown channel datagram kind 0x{0:02x}")]
    Kind(u8),
}

/// What a client sent, parsed but not yet authenticated.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct ClientDatagram<'a> {
    /// The channel it claims.
    pub channel: ChannelId,
    /// Its counter.
    pub counter: u64,
    /// DATA or BIND.
    pub kind: ClientKind,
    /// Every byte the tag covers.
    pub signed: &'a [u8],
    /// The tag.
    pub tag: u64,
}

/// The two kinds of client datagram.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum ClientKind {
    /// Media for the partner: the payload is at `CLIENT_HEADER..len - TAG_LEN`.
    Data,
    /// An address proof request, with the cookie of a challenge when answering one.
    Bind {
        /// The cookie from the relay's CHALLENGE, if this answers one.
        cookie: Option<u64>,
    },
}

/// Parses a datagram a client sent to the relay's data port.
pub fn decode_client(packet: &[u8]) -> Result<ClientDatagram<'_>, ChannelError> {
    let len = packet.len();
    if !(CLIENT_HEADER + TAG_LEN..=MAX_DATAGRAM).contains(&len) {
        return Err(ChannelError::Length(len));
    }
    let body = len - TAG_LEN;
    let kind = match packet[0] {
        DATA if body > CLIENT_HEADER => ClientKind::Data,
        BIND if body == CLIENT_HEADER => ClientKind::Bind { cookie: None },
        BIND if body == CLIENT_HEADER + 8 => ClientKind::Bind {
            cookie: Some(be64(&packet[CLIENT_HEADER..])),
        },
        DATA | BIND => return Err(ChannelError::Length(len)),
        other => return Err(ChannelError::Kind(other)),
    };
    Ok(ClientDatagram {
        channel: be32(&packet[1..]),
        counter: be64(&packet[5..]),
        kind,
        signed: &packet[..body],
        tag: be64(&packet[body..]),
    })
}

fn seal(out: &mut Vec<u8>, key: &ChannelKey) {
    let tag = key.tag(out);
    out.extend_from_slice(&tag.to_be_bytes());
}

/// Writes a client DATA datagram for `payload` into `out` (cleared first).
pub fn encode_data(
    out: &mut Vec<u8>,
    key: &ChannelKey,
    channel: ChannelId,
    counter: u64,
    payload: &[u8],
) {
    out.clear();
    out.push(DATA);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(payload);
    seal(out, key);
}

/// Writes a client BIND datagram into `out` (cleared first).
pub fn encode_bind(
    out: &mut Vec<u8>,
    key: &ChannelKey,
    channel: ChannelId,
    counter: u64,
    cookie: Option<u64>,
) {
    out.clear();
    out.push(BIND);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    if let Some(c) = cookie {
        out.extend_from_slice(&c.to_be_bytes());
    }
    seal(out, key);
}

/// What the relay sent to a client.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RelayDatagram<'a> {
    /// The partner's payload.
    Data {
        /// The receiving leg's channel.
        channel: ChannelId,
        /// The payload, verbatim.
        payload: &'a [u8],
    },
    /// The address is proven for the channel (answers the BIND with `counter`).
    Bound {
        /// The channel.
        channel: ChannelId,
        /// The BIND's counter.
        counter: u64,
    },
    /// Prove the address: send a BIND with this cookie from it.
    Challenge {
        /// The channel.
        channel: ChannelId,
        /// The cookie to echo.
        cookie: u64,
    },
}

/// Parses a datagram from the relay's data port.
pub fn decode_relay(packet: &[u8]) -> Result<RelayDatagram<'_>, ChannelError> {
    let len = packet.len();
    if !(RELAY_HEADER..=MAX_DATAGRAM).contains(&len) {
        return Err(ChannelError::Length(len));
    }
    let channel = be32(&packet[1..]);
    match packet[0] {
        RELAY_DATA if len > RELAY_HEADER => Ok(RelayDatagram::Data {
            channel,
            payload: &packet[RELAY_HEADER..],
        }),
        BOUND if len == RELAY_HEADER + 8 => Ok(RelayDatagram::Bound {
            channel,
            counter: be64(&packet[RELAY_HEADER..]),
        }),
        CHALLENGE if len == RELAY_HEADER + 8 => Ok(RelayDatagram::Challenge {
            channel,
            cookie: be64(&packet[RELAY_HEADER..]),
        }),
        RELAY_DATA | BOUND | CHALLENGE => Err(ChannelError::Length(len)),
        other => Err(ChannelError::Kind(other)),
    }
}

/// Writes a relay datagram into `out` (cleared first); the relay's hot path rewrites
/// DATA in place instead (see [`rewrite_for_partner`]).
pub fn encode_relay(out: &mut Vec<u8>, d: &RelayDatagram<'_>) {
    out.clear();
    let (kind, channel) = match d {
        RelayDatagram::Data { channel, .. } => (RELAY_DATA, channel),
        RelayDatagram::Bound { channel, .. } => (BOUND, channel),
        RelayDatagram::Challenge { channel, .. } => (CHALLENGE, channel),
    };
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    match d {
        RelayDatagram::Data { payload, .. } => out.extend_from_slice(payload),
        RelayDatagram::Bound { counter: v, .. } | RelayDatagram::Challenge { cookie: v, .. } => {
            out.extend_from_slice(&v.to_be_bytes())
        }
    }
}

/// Turns a client DATA datagram of `len` bytes in `packet` into the relay DATA
/// datagram for the partner's channel `to`, in place, and returns its byte range:
/// the header overwrites the end of the counter, the tag is cut off. No copy.
pub fn rewrite_for_partner(packet: &mut [u8], len: usize, to: ChannelId) -> std::ops::Range<usize> {
    let start = CLIENT_HEADER - RELAY_HEADER;
    packet[start] = RELAY_DATA;
    packet[start + 1..CLIENT_HEADER].copy_from_slice(&to.to_be_bytes());
    start..len - TAG_LEN
}

/// Writes a BOUND or CHALLENGE answer into the first 13 bytes of `packet` (a client
/// datagram is at least 21 bytes, so it fits; answers are never larger than what
/// caused them) and returns its length.
pub fn write_answer(packet: &mut [u8], bound: bool, channel: ChannelId, value: u64) -> usize {
    packet[0] = if bound { BOUND } else { CHALLENGE };
    packet[1..5].copy_from_slice(&channel.to_be_bytes());
    packet[5..13].copy_from_slice(&value.to_be_bytes());
    RELAY_HEADER + 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: ChannelKey = ChannelKey([7; KEY_LEN]);

    proptest! {
        #[test]
        fn data_round_trips(ch: u32, ctr: u64, payload in proptest::collection::vec(any::<u8>(), 1..=MAX_PAYLOAD)) {
            let mut out = Vec::new();
            encode_data(&mut out, &KEY, ch, ctr, &payload);
            let d = decode_client(&out).unwrap();
            prop_assert_eq!(d.channel, ch);
            prop_assert_eq!(d.counter, ctr);
            prop_assert_eq!(d.kind, ClientKind::Data);
            prop_assert_eq!(KEY.tag(d.signed), d.tag);
            prop_assert_eq!(&out[CLIENT_HEADER..out.len() - TAG_LEN], &payload[..]);
            // The relay's in-place rewrite gives what the partner decodes.
            let len = out.len();
            let range = rewrite_for_partner(&mut out, len, ch ^ 1);
            prop_assert_eq!(decode_relay(&out[range]).unwrap(), RelayDatagram::Data { channel: ch ^ 1, payload: &payload });
        }

        #[test]
        fn bind_round_trips(ch: u32, ctr: u64, cookie: Option<u64>) {
            let mut out = Vec::new();
            encode_bind(&mut out, &KEY, ch, ctr, cookie);
            let d = decode_client(&out).unwrap();
            prop_assert_eq!((d.channel, d.counter, d.kind), (ch, ctr, ClientKind::Bind { cookie }));
            prop_assert_eq!(KEY.tag(d.signed), d.tag);
        }

        #[test]
        fn relay_answers_round_trip(ch: u32, v: u64, bound: bool) {
            let mut buf = [0u8; CLIENT_HEADER + TAG_LEN];
            let n = write_answer(&mut buf, bound, ch, v);
            let want = if bound { RelayDatagram::Bound { channel: ch, counter: v } } else { RelayDatagram::Challenge { channel: ch, cookie: v } };
            prop_assert_eq!(decode_relay(&buf[..n]).unwrap(), want);
            let mut out = Vec::new();
            encode_relay(&mut out, &want);
            prop_assert_eq!(&out[..], &buf[..n]);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = decode_client(&bytes);
            let _ = decode_relay(&bytes);
        }
    }

    #[test]
    fn lengths_and_kinds_are_strict() {
        assert_eq!(decode_client(&[1; 20]), Err(ChannelError::Length(20)));
        // DATA with no payload.
        assert_eq!(decode_client(&[1; 21]), Err(ChannelError::Length(21)));
        // BIND with a stray byte.
        assert_eq!(decode_client(&[2; 22]), Err(ChannelError::Length(22)));
        assert_eq!(decode_client(&[9; 30]), Err(ChannelError::Kind(9)));
        assert_eq!(
            decode_client(&vec![1; MAX_DATAGRAM + 1]),
            Err(ChannelError::Length(MAX_DATAGRAM + 1))
        );
        assert_eq!(decode_relay(&[0x81; 5]), Err(ChannelError::Length(5)));
        assert_eq!(decode_relay(&[0x82; 12]), Err(ChannelError::Length(12)));
        assert_eq!(decode_relay(&[0x01; 12]), Err(ChannelError::Kind(1)));
    }

    #[test]
    fn a_changed_byte_changes_the_tag() {
        let mut out = Vec::new();
        encode_data(&mut out, &KEY, 5, 1, b"hello");
        let d = decode_client(&out).unwrap();
        let mut forged = d.signed.to_vec();
        forged[3] ^= 1;
        assert_ne!(KEY.tag(&forged), d.tag);
        assert_ne!(ChannelKey([8; KEY_LEN]).tag(d.signed), d.tag);
    }
}
