//! Tests of the STUN responder (`stun.rs`).

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use stun_rs::attributes::stun::UserName;
use stun_rs::{MessageDecoder, TransactionId};

const TX: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

fn encode_request(builder: StunMessageBuilder) -> Vec<u8> {
    let mut buffer = [0u8; 512];
    let len = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buffer, &builder.build())
        .expect("encode a request");
    buffer[..len].to_vec()
}

fn binding(class: MessageClass) -> StunMessageBuilder {
    StunMessageBuilder::new(BINDING, class).with_transaction_id(TransactionId::from(TX))
}

fn request() -> Vec<u8> {
    encode_request(binding(MessageClass::Request))
}

fn decode(bytes: &[u8]) -> StunMessage {
    let (msg, len) = MessageDecoder::default()
        .decode(bytes)
        .expect("decode a response");
    assert_eq!(len, bytes.len());
    msg
}

/// Checks a success response and returns its mapped address.
fn mapped(response: &[u8]) -> SocketAddr {
    let msg = decode(response);
    assert_eq!(msg.method(), BINDING);
    assert_eq!(msg.class(), MessageClass::SuccessResponse);
    assert_eq!(msg.transaction_id().as_bytes(), &TX);
    let software = msg
        .get::<Software>()
        .expect("SOFTWARE")
        .as_software()
        .expect("a Software attribute");
    let software: &str = software.as_ref();
    assert_eq!(software, SOFTWARE);
    *msg.get::<XorMappedAddress>()
        .expect("XOR-MAPPED-ADDRESS")
        .as_xor_mapped_address()
        .expect("an XorMappedAddress attribute")
        .socket_address()
}

#[test]
fn answers_v4_binding_requests() {
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 40_000);
    let response = answer_binding(&request(), from).expect("an answer");
    assert_eq!(mapped(&response), from);
}

#[test]
fn answers_v6_binding_requests() {
    let from = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xdead, 0xbeef)),
        65_535,
    );
    let response = answer_binding(&request(), from).expect("an answer");
    assert_eq!(mapped(&response), from);
}

#[test]
fn reports_v4_mapped_v6_sources_as_v4() {
    let v4 = Ipv4Addr::new(198, 51, 100, 9);
    let from = SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), 1234);
    let response = answer_binding(&request(), from).expect("an answer");
    assert_eq!(mapped(&response), SocketAddr::new(IpAddr::V4(v4), 1234));
}

#[test]
fn answers_requests_with_known_attributes_and_echoes_the_fingerprint() {
    let from: SocketAddr = "192.0.2.1:32853".parse().expect("addr");
    let req = encode_request(
        binding(MessageClass::Request)
            .with_attribute(UserName::new("alice").expect("username"))
            .with_attribute(Software::new("test client").expect("software"))
            .with_attribute(Fingerprint::default()),
    );
    let response = answer_binding(&req, from).expect("an answer");
    assert_eq!(mapped(&response), from);
    let msg = decode(&response);
    let fingerprint = msg
        .get::<Fingerprint>()
        .expect("FINGERPRINT")
        .as_fingerprint()
        .expect("a Fingerprint attribute");
    let input = stun_rs::get_input_text::<Fingerprint>(&response).expect("input text");
    assert!(fingerprint.validate(&input));
    // Without a FINGERPRINT in the request, none in the response.
    let plain = decode(&answer_binding(&request(), from).expect("an answer"));
    assert!(plain.get::<Fingerprint>().is_none());
}

#[test]
fn refuses_a_wrong_fingerprint() {
    let from: SocketAddr = "192.0.2.1:1".parse().expect("addr");
    let mut req =
        encode_request(binding(MessageClass::Request).with_attribute(Fingerprint::default()));
    let last = req.len() - 1;
    req[last] ^= 1;
    assert_eq!(answer_binding(&req, from), None);
}

#[test]
fn unknown_comprehension_required_attributes_get_a_420() {
    let from: SocketAddr = "192.0.2.1:1".parse().expect("addr");
    // Type 0x7f01 (comprehension-required, unassigned) twice, and 0xff01
    // (comprehension-optional, ignored), each with 4 bytes of value.
    let mut req = request();
    for attr_type in [0x7f01u16, 0xff01, 0x7f01] {
        req.extend_from_slice(&attr_type.to_be_bytes());
        req.extend_from_slice(&4u16.to_be_bytes());
        req.extend_from_slice(&[0xaa; 4]);
    }
    let len = u16::try_from(req.len() - MESSAGE_HEADER_SIZE).expect("small");
    req[2..4].copy_from_slice(&len.to_be_bytes());
    let msg = decode(&answer_binding(&req, from).expect("an answer"));
    assert_eq!(msg.class(), MessageClass::ErrorResponse);
    assert_eq!(msg.method(), BINDING);
    assert_eq!(msg.transaction_id().as_bytes(), &TX);
    let error = msg
        .get::<ErrorCode>()
        .expect("ERROR-CODE")
        .as_error_code()
        .expect("an ErrorCode attribute");
    assert_eq!(error.error_code().error_code(), 420);
    let unknown = msg
        .get::<UnknownAttributes>()
        .expect("UNKNOWN-ATTRIBUTES")
        .as_unknown_attributes()
        .expect("an UnknownAttributes attribute");
    assert_eq!(unknown.attributes(), &[0x7f01]);
    assert!(msg.get::<XorMappedAddress>().is_none());

    // Only comprehension-optional unknowns: a normal answer.
    let mut req = request();
    req.extend_from_slice(&[0xff, 0x01, 0x00, 0x00]);
    req[2..4].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(
        mapped(&answer_binding(&req, from).expect("an answer")),
        from
    );
}

/// RFC 5769 §2.1: a Binding request from an ICE agent (SOFTWARE, PRIORITY,
/// ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT). stun-rs is built
/// without its `ice` feature, so PRIORITY (0x0024, comprehension-required) is
/// unknown here and the answer is a 420 naming it. ICE connectivity checks go
/// between peers; requests to a STUN server carry no PRIORITY.
#[test]
fn rfc5769_sample_request() {
    let req = hex_bytes(concat!(
        "000100582112a442b7e7a701bc34d686fa87dfae",
        "802200105354554e207465737420636c69656e74",
        "002400046e0001ff",
        "80290008932ff9b151263b36",
        "000600096576746a3a68367659202020",
        "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2",
        "80280004e57a3bcf",
    ));
    let from: SocketAddr = "192.0.2.1:32853".parse().expect("addr");
    let answer = answer_binding(&req, from).expect("an answer");
    let msg = decode(&answer);
    assert_eq!(msg.class(), MessageClass::ErrorResponse);
    assert_eq!(msg.transaction_id().as_bytes(), &req[8..20]);
    let unknown = msg
        .get::<UnknownAttributes>()
        .expect("UNKNOWN-ATTRIBUTES")
        .as_unknown_attributes()
        .expect("an UnknownAttributes attribute");
    assert_eq!(unknown.attributes(), &[0x0024]);
    assert!(msg.get::<Fingerprint>().is_some());
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The fuzz seeds in fuzz/corpus/stun_answer (made by hand) are all answered, so
/// the fuzzer starts from inputs that reach the response path.
#[test]
fn fuzz_seeds_are_answered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/stun_answer");
    let from: SocketAddr = "192.0.2.1:1".parse().expect("addr");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("the stun_answer seed corpus") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("seed-") {
            let bytes = std::fs::read(&path).expect("read a seed");
            assert!(answer_binding(&bytes, from).is_some(), "{name}");
            seeds += 1;
        }
    }
    assert!(seeds >= 3, "seeds missing from {}", dir.display());
}

#[test]
fn ignores_everything_but_binding_requests() {
    let from: SocketAddr = "192.0.2.1:1".parse().expect("addr");
    for class in [
        MessageClass::Indication,
        MessageClass::SuccessResponse,
        MessageClass::ErrorResponse,
    ] {
        let msg = encode_request(binding(class));
        assert_eq!(answer_binding(&msg, from), None, "{class:?}");
    }
    // Another method (0x003 is TURN Allocate).
    let other = stun_rs::MessageMethod::try_from(0x003).expect("method");
    let msg = encode_request(
        StunMessageBuilder::new(other, MessageClass::Request)
            .with_transaction_id(TransactionId::from(TX)),
    );
    assert_eq!(answer_binding(&msg, from), None);
    // Our own answer is not answered (no ping-pong between responders).
    let answer = answer_binding(&request(), from).expect("an answer");
    assert_eq!(answer_binding(&answer, from), None);
}

#[test]
fn refuses_truncated_padded_and_malformed_requests() {
    let from: SocketAddr = "192.0.2.1:1".parse().expect("addr");
    let req = encode_request(
        binding(MessageClass::Request).with_attribute(Software::new("x").expect("software")),
    );
    assert!(answer_binding(&req, from).is_some());
    for cut in 0..req.len() {
        assert_eq!(answer_binding(&req[..cut], from), None, "cut at {cut}");
    }
    let mut padded = req.clone();
    padded.extend_from_slice(&[0; 4]);
    assert_eq!(answer_binding(&padded, from), None);
    let mut bad_cookie = req.clone();
    bad_cookie[4] ^= 0xff;
    assert_eq!(answer_binding(&bad_cookie, from), None);
    let mut top_bits = req.clone();
    top_bits[0] |= 0x80;
    assert_eq!(answer_binding(&top_bits, from), None);
    // The header's length claims more attributes than there are.
    let mut long = req.clone();
    long[3] += 4;
    assert_eq!(answer_binding(&long, from), None);
    // An attribute whose length runs past the end of the message.
    let mut overrun = req.clone();
    overrun[MESSAGE_HEADER_SIZE + 3] = 0xff;
    assert_eq!(answer_binding(&overrun, from), None);
    // Too big to be a real request, even though it is well formed: the body is
    // attributes of type 0x0000, length 0. At the limit it is answered (with a 420,
    // 0x0000 being an unknown comprehension-required type); one word over, not.
    for (len, answered) in [(MAX_REQUEST_LEN, true), (MAX_REQUEST_LEN + 4, false)] {
        let mut big = request();
        big.resize(len, 0);
        let body = u16::try_from(len - MESSAGE_HEADER_SIZE).expect("small");
        big[2..4].copy_from_slice(&body.to_be_bytes());
        assert_eq!(
            answer_binding(&big, from).is_some(),
            answered,
            "{len} bytes"
        );
    }
}

/// xorshift64*: deterministic noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_bytes_get_no_answer() {
    let from: SocketAddr = "192.0.2.1:1".parse().expect("addr");
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = noise.below(600);
        let bytes = noise.bytes(len);
        assert_eq!(answer_binding(&bytes, from), None, "{bytes:02x?}");
    }
}

/// Random bytes behind a valid header reach the attribute decoders; mutations of
/// valid requests reach everything else. Nothing panics, and every answer is a
/// response to the same transaction.
#[test]
fn noisy_requests_never_panic() {
    let from: SocketAddr = "[2001:db8::1]:9".parse().expect("addr");
    let mut noise = Noise(0x0123_4567_89ab_cdef);
    let seeds = [
        request(),
        encode_request(
            binding(MessageClass::Request)
                .with_attribute(UserName::new("bob").expect("username"))
                .with_attribute(Fingerprint::default()),
        ),
    ];
    let mut answered = 0;
    for round in 0..20_000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        if round % 2 == 0 {
            // Random attributes behind a valid header.
            let words = noise.below(40);
            let body = noise.bytes(4 * words);
            bytes.truncate(MESSAGE_HEADER_SIZE);
            bytes.extend_from_slice(&body);
            let len = u16::try_from(body.len()).expect("small");
            bytes[2..4].copy_from_slice(&len.to_be_bytes());
        } else {
            let flips = 1 + noise.below(4);
            for _ in 0..flips {
                let at = noise.below(bytes.len());
                bytes[at] ^= 1 << noise.below(8);
            }
        }
        if let Some(answer) = answer_binding(&bytes, from) {
            answered += 1;
            let msg = decode(&answer);
            assert_eq!(msg.transaction_id().as_bytes(), &bytes[8..20]);
            assert!(matches!(
                msg.class(),
                MessageClass::SuccessResponse | MessageClass::ErrorResponse
            ));
        }
    }
    assert!(answered > 0, "the noise never produced a valid request");
}
