//! A STUN Binding responder (RFC 8489): tells a client the address its packets come
//! from, so it can learn its server-reflexive address and classify its NAT.
//!
//! Only Binding requests are answered; everything else on the socket is dropped
//! without a reply. No authentication: the answer reveals nothing the requester does
//! not already know. [`answer_binding`] is pure (bytes in, bytes out) and never
//! panics; [`serve`] is the socket loop around it.
//!
//! For NAT behaviour discovery (RFC 5780 §4, §7) the service answers on up to four
//! sockets ([`Layout`], [`Slot`]): the primary IP and port, an alternate port, and with
//! `--stun-alternate-ip` an alternate IP on both ports. RESPONSE-PORT sends the answer
//! to that port *at the requester's own IP* (so it cannot be aimed at anyone else);
//! CHANGE-REQUEST sends it from the socket with the other IP and/or port; every success
//! carries RESPONSE-ORIGIN (the socket it leaves from) and, when there is an alternate
//! IP, OTHER-ADDRESS (the socket with both the other IP and the other port), which is
//! what standard clients (`turnutils_natdiscovery`, stuntman) need to classify mapping
//! and filtering against one server. A change the layout cannot make (change-IP
//! without an alternate IP) is not answered, so the client learns nothing false.
//!
//! Admission (a rate limit per source) is the socket loop's job (`stun_service.rs`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use stun_rs::attributes::discovery::{
    ChangeRequest, ChangeRequestFlags, OtherAddress, ResponseOrigin, ResponsePort,
};
use stun_rs::attributes::stun::{
    ErrorCode, Fingerprint, Software, UnknownAttributes, XorMappedAddress,
};
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunAttribute, StunMessage,
    StunMessageBuilder, MAGIC_COOKIE, MESSAGE_HEADER_SIZE,
};

/// The SOFTWARE attribute of every answer.
const SOFTWARE: &str = "parley-supernode";

/// Longest request answered. Binding requests are a few dozen bytes (a few hundred
/// with credentials); RFC 8489 keeps STUN over UDP under the path MTU. The cap also
/// bounds decoder work: stun-rs deduplicates some list attributes in quadratic time.
pub const MAX_REQUEST_LEN: usize = 1500;

/// One of the STUN service's sockets: on the primary or the alternate IP, on the
/// primary or the alternate port (RFC 5780 §4.1's four address combinations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    /// On the alternate IP (`--stun-alternate-ip`).
    pub alt_ip: bool,
    /// On the alternate port.
    pub alt_port: bool,
}

impl Slot {
    /// The primary IP and port (`--stun-listen`).
    pub const PRIMARY: Slot = Slot {
        alt_ip: false,
        alt_port: false,
    };
    /// All four, primary first.
    pub const ALL: [Slot; 4] = [
        Slot::PRIMARY,
        Slot {
            alt_ip: false,
            alt_port: true,
        },
        Slot {
            alt_ip: true,
            alt_port: false,
        },
        Slot {
            alt_ip: true,
            alt_port: true,
        },
    ];
}

/// Where the STUN service answers: the primary address, the alternate port (on both
/// IPs) and the alternate IP (on both ports), when there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The primary IP and port.
    pub primary: SocketAddr,
    /// The second port, if there is one.
    pub alt_port: Option<u16>,
    /// The second IP, if there is one.
    pub alt_ip: Option<IpAddr>,
}

impl Layout {
    /// A layout that knows nothing of its own addresses: no RESPONSE-ORIGIN, no
    /// OTHER-ADDRESS, no changes (what [`answer_binding`] uses).
    pub const UNKNOWN: Layout = Layout {
        primary: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        alt_port: None,
        alt_ip: None,
    };

    /// The address of `slot`, if the layout has it.
    pub fn addr(&self, slot: Slot) -> Option<SocketAddr> {
        let ip = if slot.alt_ip {
            self.alt_ip?
        } else {
            self.primary.ip()
        };
        let port = if slot.alt_port {
            self.alt_port?
        } else {
            self.primary.port()
        };
        Some(SocketAddr::new(ip, port))
    }

    /// OTHER-ADDRESS for a request received on `slot` (RFC 5780 §7.3): the socket with
    /// the other IP and the other port. Only with an alternate IP.
    pub fn other_address(&self, slot: Slot) -> Option<SocketAddr> {
        self.alt_ip?;
        self.addr(Slot {
            alt_ip: !slot.alt_ip,
            alt_port: !slot.alt_port,
        })
        .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
    }
}

/// The answer to one datagram: the encoded response if `request` is a well-formed
/// STUN Binding request, otherwise `None` (garbage, truncated or padded datagrams,
/// responses, indications, other methods, a wrong FINGERPRINT).
///
/// A success response carries XOR-MAPPED-ADDRESS = `from` (an IPv4-mapped IPv6
/// source, as seen on a dual-stack socket, is reported as the IPv4 address it is)
/// and SOFTWARE. A request with comprehension-required attributes this responder
/// does not understand gets a 420 (Unknown Attribute) error response listing them,
/// as RFC 8489 §6.3.1.1 requires. The response has the request's transaction id, and
/// a FINGERPRINT when the request had one.
#[allow(dead_code)] // the tests' and the fuzz target's entry point
pub fn answer_binding(request: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    answer(request, from, &Layout::UNKNOWN, Slot::PRIMARY).map(|a| a.bytes)
}

/// A response and where it goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The encoded response.
    pub bytes: Vec<u8>,
    /// Where to send it: the requester, or its RESPONSE-PORT at the same IP.
    pub to: SocketAddr,
    /// The socket to send it from (the receiving one, or another for CHANGE-REQUEST).
    pub from_slot: Slot,
}

/// Like [`answer_binding`] for a request that arrived on the socket `received_on` of
/// `layout`: also honours RESPONSE-PORT and CHANGE-REQUEST and adds RESPONSE-ORIGIN
/// and OTHER-ADDRESS (RFC 5780 §6, §7). `None` for anything not answered, including a
/// change the layout cannot make.
pub fn answer(
    request: &[u8],
    from: SocketAddr,
    layout: &Layout,
    received_on: Slot,
) -> Option<Answer> {
    if !plausible_request_header(request) {
        return None;
    }
    let (msg, consumed) = MessageDecoderBuilder::default()
        .build()
        .decode(request)
        .ok()?;
    if consumed != request.len() || msg.method() != BINDING || msg.class() != MessageClass::Request
    {
        return None;
    }
    let has_fingerprint = match msg.get::<Fingerprint>() {
        None => false,
        // A wrong FINGERPRINT means the datagram is not STUN after all (§7.3).
        Some(attr) => {
            let fingerprint = attr.as_fingerprint().ok()?;
            let input = stun_rs::get_input_text::<Fingerprint>(request)?;
            if !fingerprint.validate(&input) {
                return None;
            }
            true
        }
    };

    let mut unknown: Vec<u16> = msg
        .attributes()
        .iter()
        .filter_map(|attr| match attr {
            StunAttribute::Unknown(u) if u.attribute_type().is_comprehension_required() => {
                Some(u.attribute_type().as_u16())
            }
            _ => None,
        })
        .collect();
    unknown.sort_unstable();
    unknown.dedup();

    let mut to = SocketAddr::new(from.ip().to_canonical(), from.port());
    if let Some(port) = msg
        .get::<ResponsePort>()
        .and_then(|a| a.as_response_port().ok())
    {
        to.set_port(port.as_u16());
    }
    let mut from_slot = received_on;
    if let Some(change) = msg
        .get::<ChangeRequest>()
        .and_then(|a| a.as_change_request().ok())
    {
        if change.flags().contains(ChangeRequestFlags::ChangeIp) {
            from_slot.alt_ip = !from_slot.alt_ip;
        }
        if change.flags().contains(ChangeRequestFlags::ChangePort) {
            from_slot.alt_port = !from_slot.alt_port;
        }
        if from_slot != received_on && layout.addr(from_slot).is_none() {
            return None;
        }
    }

    let builder = if unknown.is_empty() {
        let mapped = SocketAddr::new(from.ip().to_canonical(), from.port());
        let mut b = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
            .with_attribute(XorMappedAddress::from(mapped));
        if let Some(origin) = layout
            .addr(from_slot)
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
        {
            b = b.with_attribute(ResponseOrigin::from(origin));
        }
        if let Some(other) = layout.other_address(received_on) {
            b = b.with_attribute(OtherAddress::from(other));
        }
        b
    } else {
        let error = stun_rs::ErrorCode::new(420, "Unknown Attribute").ok()?;
        StunMessageBuilder::new(BINDING, MessageClass::ErrorResponse)
            .with_attribute(ErrorCode::from(error))
            .with_attribute(UnknownAttributes::from(unknown.as_slice()))
    };
    let mut builder = builder
        .with_transaction_id(*msg.transaction_id())
        .with_attribute(Software::new(SOFTWARE).ok()?);
    if has_fingerprint {
        builder = builder.with_attribute(Fingerprint::default());
    }
    let bytes = encode(&builder.build(), 160 + 2 * unknown.len())?;
    Some(Answer {
        bytes,
        to,
        from_slot,
    })
}

/// The cheap checks of RFC 8489 §6.3 before the decoder runs: a complete header, the
/// two leading zero bits, the magic cookie, a length that is a multiple of 4 and
/// accounts for exactly the rest of the datagram, and the request class.
fn plausible_request_header(request: &[u8]) -> bool {
    let Some(header) = request.get(..MESSAGE_HEADER_SIZE) else {
        return false;
    };
    if request.len() > MAX_REQUEST_LEN {
        return false;
    }
    let msg_type = u16::from_be_bytes([header[0], header[1]]);
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    // Class bits C1 (0x0100) and C0 (0x0010) are both zero for a request.
    msg_type & 0xC000 == 0
        && msg_type & 0x0110 == 0
        && cookie == MAGIC_COOKIE.as_u32()
        && length % 4 == 0
        && MESSAGE_HEADER_SIZE + length == request.len()
}

fn encode(msg: &StunMessage, capacity: usize) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; capacity];
    let len = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buffer, msg)
        .ok()?;
    buffer.truncate(len);
    Some(buffer)
}

#[cfg(test)]
#[path = "stun_tests.rs"]
mod tests;
