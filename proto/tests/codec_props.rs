//! Property tests for every decoder in the wire format.
//!
//! * Round trips: any value of every [`WireMessage`] type, and any [`SignedPresence`],
//!   encodes and decodes back to itself.
//! * Strictness: truncated, extended, mis-versioned, mis-kinded and oversized inputs
//!   are the documented errors; arbitrary bytes never panic any decoder.
//! * Framing: `frame_body_len` and `encode_frame` agree.

use parley_proto::codec::{
    frame_body_len, DecodeError, WireMessage, MAX_MESSAGE_LEN, PROTOCOL_VERSION,
};
use parley_proto::messages::{
    ClientToSupernode, Refusal, RefusalCode, ServerEndpoints, SupernodeReply, SupernodeToClient,
    SupernodeToSupernode, MAX_CONTACTS,
};
use parley_proto::presence::{
    AddressKind, CandidateAddr, Contact, NatType, PresenceRecord, SignedPresence, MAX_ADDRESSES,
    MAX_DISPLAY_NAME, MAX_SUPERNODES, MAX_TTL,
};
use parley_proto::upload::{UploadProbe, UploadReply};
use parley_proto::{Identity, NodeId, PeerId, Timestamp};
use proptest::prelude::*;
use std::fmt::Debug;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn identity() -> impl Strategy<Value = Identity> {
    any::<[u8; 32]>().prop_map(|seed| Identity::from_seed(&seed))
}

fn peer_id() -> impl Strategy<Value = PeerId> {
    identity().prop_map(|id| id.peer_id())
}

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 32]>().prop_map(NodeId)
}

/// v4 and v6 addresses. The wire format carries only ip and port (serde drops a v6
/// address's flowinfo and scope id), so generated v6 addresses have both at zero; see
/// `v6_flowinfo_and_scope_id_are_not_carried`.
fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            0,
            0
        ))),
    ]
}

fn contact() -> impl Strategy<Value = Contact> {
    (peer_id(), socket_addr()).prop_map(|(id, addr)| Contact { id, addr })
}

fn address_kind() -> impl Strategy<Value = AddressKind> {
    prop_oneof![Just(AddressKind::Local), Just(AddressKind::Observed)]
}

fn candidate_addr() -> impl Strategy<Value = CandidateAddr> {
    (address_kind(), socket_addr()).prop_map(|(kind, addr)| CandidateAddr { kind, addr })
}

fn nat_type() -> impl Strategy<Value = NatType> {
    prop_oneof![
        Just(NatType::Unknown),
        Just(NatType::Open),
        Just(NatType::FullCone),
        Just(NatType::RestrictedCone),
        Just(NatType::PortRestrictedCone),
        Just(NatType::Symmetric),
        Just(NatType::UdpBlocked),
    ]
}

/// Any printable text of at most `MAX_DISPLAY_NAME` bytes (16 chars of at most 4 bytes).
fn display_name() -> impl Strategy<Value = String> {
    "\\PC{0,16}".prop_map(|s: String| {
        assert!(s.len() <= MAX_DISPLAY_NAME);
        s
    })
}

/// A record within every limit, owned by `owner`.
fn record_of(owner: Identity) -> impl Strategy<Value = (Identity, PresenceRecord)> {
    (
        display_name(),
        prop::collection::vec(contact(), 0..=MAX_SUPERNODES),
        prop::collection::vec(candidate_addr(), 0..=MAX_ADDRESSES),
        nat_type(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            move |(display_name, supernodes, addresses, nat, seq, expires_at)| {
                let record = PresenceRecord {
                    id: owner.peer_id(),
                    display_name,
                    supernodes,
                    addresses,
                    nat,
                    seq,
                    expires_at: Timestamp(expires_at),
                };
                (owner.clone(), record)
            },
        )
}

/// A record signed by its owner.
fn signed_presence() -> impl Strategy<Value = SignedPresence> {
    identity()
        .prop_flat_map(record_of)
        .prop_map(|(owner, record)| record.sign(&owner))
}

/// Either a properly signed record or one with an arbitrary (invalid) signature: the
/// codec must carry both unchanged.
fn any_presence() -> impl Strategy<Value = SignedPresence> {
    prop_oneof![
        3 => signed_presence(),
        1 => (signed_presence(), any::<[[u8; 32]; 2]>()).prop_map(|(mut p, [a, b])| {
            p.signature[..32].copy_from_slice(&a);
            p.signature[32..].copy_from_slice(&b);
            p
        }),
    ]
}

fn refusal_code() -> impl Strategy<Value = RefusalCode> {
    prop_oneof![
        Just(RefusalCode::BadRecord),
        Just(RefusalCode::Stale),
        Just(RefusalCode::Expired),
        Just(RefusalCode::NotYours),
        Just(RefusalCode::Malformed),
        Just(RefusalCode::Overloaded),
    ]
}

fn refusal() -> impl Strategy<Value = Refusal> {
    (refusal_code(), ".{0,80}").prop_map(|(code, message)| Refusal { code, message })
}

fn contacts() -> impl Strategy<Value = Vec<Contact>> {
    prop::collection::vec(contact(), 0..=MAX_CONTACTS)
}

fn client_to_supernode() -> impl Strategy<Value = ClientToSupernode> {
    prop_oneof![
        Just(ClientToSupernode::Hello),
        any_presence().prop_map(ClientToSupernode::Publish),
        peer_id().prop_map(ClientToSupernode::Lookup),
        Just(ClientToSupernode::Supernodes),
        Just(ClientToSupernode::Endpoints),
    ]
}

fn supernode_to_client() -> impl Strategy<Value = SupernodeToClient> {
    prop_oneof![
        (
            peer_id(),
            socket_addr(),
            proptest::option::of(socket_addr())
        )
            .prop_map(|(supernode, observed, tcp)| SupernodeToClient::Welcome {
                supernode,
                observed,
                endpoints: ServerEndpoints {
                    quic: Some(observed),
                    tcp,
                    stun: None,
                },
            }),
        proptest::option::of(socket_addr()).prop_map(|stun| SupernodeToClient::Endpoints(
            ServerEndpoints {
                quic: None,
                tcp: None,
                stun
            }
        )),
        any::<u16>().prop_map(|replicas| SupernodeToClient::Published { replicas }),
        any_presence().prop_map(SupernodeToClient::Found),
        Just(SupernodeToClient::NotFound),
        contacts().prop_map(SupernodeToClient::Supernodes),
        refusal().prop_map(SupernodeToClient::Refused),
    ]
}

fn supernode_to_supernode() -> impl Strategy<Value = SupernodeToSupernode> {
    prop_oneof![
        Just(SupernodeToSupernode::Ping),
        node_id().prop_map(SupernodeToSupernode::FindNode),
        node_id().prop_map(SupernodeToSupernode::FindValue),
        any_presence().prop_map(|p| SupernodeToSupernode::Store(p.into())),
    ]
}

fn supernode_reply() -> impl Strategy<Value = SupernodeReply> {
    prop_oneof![
        Just(SupernodeReply::Pong),
        contacts().prop_map(SupernodeReply::Nodes),
        any_presence().prop_map(|p| SupernodeReply::Value(p.into())),
        Just(SupernodeReply::Stored),
        refusal().prop_map(SupernodeReply::Refused),
    ]
}

// ---------------------------------------------------------------------------------------
// Generic properties, checked for each message type below
// ---------------------------------------------------------------------------------------

fn check_round_trip<M: WireMessage + Debug + PartialEq>(msg: &M) -> Result<(), TestCaseError> {
    let bytes = msg.encode();
    prop_assert_eq!(bytes[0], PROTOCOL_VERSION);
    prop_assert_eq!(bytes[1], M::KIND);
    prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
    let back = M::decode(&bytes);
    prop_assert_eq!(back.as_ref(), Ok(msg));
    // Encoding is a function of the value: the decoded copy encodes to the same bytes.
    prop_assert_eq!(back.map(|m| m.encode()), Ok(bytes));
    Ok(())
}

fn check_frame<M: WireMessage + Debug + PartialEq>(msg: &M) -> Result<(), TestCaseError> {
    let envelope = msg.encode();
    let frame = msg.encode_frame();
    prop_assert_eq!(frame.len(), envelope.len() + 4);
    let prefix: [u8; 4] = frame[..4].try_into().expect("4 bytes");
    prop_assert_eq!(frame_body_len(prefix), Ok(envelope.len()));
    prop_assert_eq!(&frame[4..], &envelope[..]);
    let back = M::decode(&frame[4..]);
    prop_assert_eq!(back.as_ref(), Ok(msg));
    Ok(())
}

/// Every proper prefix of a valid encoding is an error (postcard is self-delimiting,
/// so no prefix can be a complete message), and never a panic.
fn check_truncations<M: WireMessage + Debug>(msg: &M) -> Result<(), TestCaseError> {
    let bytes = msg.encode();
    for cut in 0..bytes.len() {
        let err = M::decode(&bytes[..cut]);
        if cut == 0 {
            prop_assert_eq!(err.err(), Some(DecodeError::Empty));
        } else {
            prop_assert!(
                matches!(err, Err(DecodeError::Malformed(_))),
                "cut {cut}: {err:?}"
            );
        }
    }
    Ok(())
}

fn check_trailing<M: WireMessage + Debug>(msg: &M, extra: &[u8]) -> Result<(), TestCaseError> {
    prop_assume!(!extra.is_empty());
    let mut bytes = msg.encode();
    bytes.extend_from_slice(extra);
    prop_assert_eq!(
        M::decode(&bytes).err(),
        Some(DecodeError::TrailingBytes(extra.len()))
    );
    Ok(())
}

fn check_version<M: WireMessage + Debug>(msg: &M, version: u8) -> Result<(), TestCaseError> {
    prop_assume!(version != PROTOCOL_VERSION);
    let mut bytes = msg.encode();
    bytes[0] = version;
    prop_assert_eq!(
        M::decode(&bytes).err(),
        Some(DecodeError::UnsupportedVersion(version))
    );
    Ok(())
}

fn check_kind<M: WireMessage + Debug>(msg: &M, kind: u8) -> Result<(), TestCaseError> {
    prop_assume!(kind != M::KIND);
    let mut bytes = msg.encode();
    bytes[1] = kind;
    prop_assert_eq!(
        M::decode(&bytes).err(),
        Some(DecodeError::WrongKind {
            expected: M::KIND,
            got: kind
        })
    );
    Ok(())
}

/// Any input over the limit is refused by its length alone, even when it starts with a
/// valid message.
fn check_too_large<M: WireMessage + Debug>(msg: &M, over: usize) -> Result<(), TestCaseError> {
    let mut bytes = msg.encode();
    let len = MAX_MESSAGE_LEN + 1 + over;
    bytes.resize(len, 0);
    prop_assert_eq!(M::decode(&bytes).err(), Some(DecodeError::TooLarge(len)));
    Ok(())
}

/// Flipping bytes of a valid encoding never panics; whatever still decodes must survive
/// a second round trip.
fn check_mutation<M: WireMessage + Debug + PartialEq>(
    msg: &M,
    flips: &[(prop::sample::Index, u8)],
) -> Result<(), TestCaseError> {
    let mut bytes = msg.encode();
    for (at, xor) in flips {
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
    }
    if let Ok(decoded) = M::decode(&bytes) {
        prop_assert_eq!(M::decode(&decoded.encode()), Ok(decoded));
    }
    Ok(())
}

/// Decodes `bytes` as every message type (and as a bare presence record); returns
/// nothing, the point is that nothing panics and successes re-encode.
fn decode_everything(bytes: &[u8]) -> Result<(), TestCaseError> {
    fn one<M: WireMessage + Debug + PartialEq>(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(m) = M::decode(bytes) {
            prop_assert_eq!(M::decode(&m.encode()), Ok(m));
        }
        Ok(())
    }
    one::<ClientToSupernode>(bytes)?;
    one::<SupernodeToClient>(bytes)?;
    one::<SupernodeToSupernode>(bytes)?;
    one::<SupernodeReply>(bytes)?;
    one::<UploadProbe>(bytes)?;
    one::<UploadReply>(bytes)?;
    if let Ok(UploadReply::Measured(r)) = UploadReply::decode_checked(bytes) {
        prop_assert!(r.check().is_ok());
        let _ = r.kbps();
    }
    if let Ok(p) = postcard::from_bytes::<SignedPresence>(bytes) {
        let again = postcard::to_stdvec(&p).expect("encode");
        prop_assert_eq!(
            postcard::from_bytes::<SignedPresence>(&again),
            Ok(p.clone())
        );
        // Verification of arbitrary records must not panic either.
        let _ = p.verify(Timestamp(0));
        let _ = p.verify(p.record.expires_at);
    }
    Ok(())
}

fn flips() -> impl Strategy<Value = Vec<(prop::sample::Index, u8)>> {
    prop::collection::vec((any::<prop::sample::Index>(), 1..=u8::MAX), 1..4)
}

macro_rules! wire_message_props {
    ($module:ident, $ty:ty, $strategy:expr) => {
        mod $module {
            use super::*;

            proptest! {
                #[test]
                fn round_trips(msg in $strategy) {
                    check_round_trip::<$ty>(&msg)?;
                }

                #[test]
                fn frames_agree_with_envelopes(msg in $strategy) {
                    check_frame::<$ty>(&msg)?;
                }

                #[test]
                fn every_truncation_is_an_error(msg in $strategy) {
                    check_truncations::<$ty>(&msg)?;
                }

                #[test]
                fn appended_bytes_are_trailing(
                    msg in $strategy,
                    extra in prop::collection::vec(any::<u8>(), 1..64),
                ) {
                    check_trailing::<$ty>(&msg, &extra)?;
                }

                #[test]
                fn other_versions_are_unsupported(msg in $strategy, version in any::<u8>()) {
                    check_version::<$ty>(&msg, version)?;
                }

                #[test]
                fn other_kinds_are_refused(msg in $strategy, kind in any::<u8>()) {
                    check_kind::<$ty>(&msg, kind)?;
                }

                #[test]
                fn oversized_inputs_are_too_large(msg in $strategy, over in 0usize..4096) {
                    check_too_large::<$ty>(&msg, over)?;
                }

                #[test]
                fn mutated_encodings_never_panic(msg in $strategy, flips in flips()) {
                    check_mutation::<$ty>(&msg, &flips)?;
                }

                #[test]
                fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
                    let mut bytes = vec![PROTOCOL_VERSION, <$ty as WireMessage>::KIND];
                    bytes.extend_from_slice(&body);
                    decode_everything(&bytes)?;
                }
            }
        }
    };
}

wire_message_props!(
    client_to_supernode_props,
    ClientToSupernode,
    client_to_supernode()
);
wire_message_props!(
    supernode_to_client_props,
    SupernodeToClient,
    supernode_to_client()
);
wire_message_props!(
    supernode_to_supernode_props,
    SupernodeToSupernode,
    supernode_to_supernode()
);
wire_message_props!(supernode_reply_props, SupernodeReply, supernode_reply());

// ---------------------------------------------------------------------------------------
// SignedPresence on its own (postcard, no envelope)
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn presence_round_trips(p in any_presence()) {
        let bytes = postcard::to_stdvec(&p).expect("encode");
        prop_assert_eq!(postcard::from_bytes::<SignedPresence>(&bytes), Ok(p));
    }

    #[test]
    fn presence_truncations_are_errors(p in any_presence()) {
        let bytes = postcard::to_stdvec(&p).expect("encode");
        for cut in 0..bytes.len() {
            prop_assert!(postcard::from_bytes::<SignedPresence>(&bytes[..cut]).is_err(), "cut {}", cut);
        }
    }

    #[test]
    fn presence_trailing_bytes_are_left_over(
        p in any_presence(),
        extra in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let mut bytes = postcard::to_stdvec(&p).expect("encode");
        bytes.extend_from_slice(&extra);
        let (back, rest) = postcard::take_from_bytes::<SignedPresence>(&bytes).expect("decode");
        prop_assert_eq!(back, p);
        prop_assert_eq!(rest, &extra[..]);
    }

    /// A record signed by its owner, within its limits and live at `now`, still
    /// verifies after a trip through the codec; any flipped signature bit breaks it.
    #[test]
    fn signed_presence_verifies_after_round_trip(
        (owner, mut record) in identity().prop_flat_map(record_of),
        now in 0u64..(u64::MAX / 2),
        ttl in 1u64..=(MAX_TTL.as_millis() as u64),
        bit in 0usize..512,
    ) {
        record.expires_at = Timestamp(now + ttl);
        let signed = record.sign(&owner);
        let bytes = postcard::to_stdvec(&signed).expect("encode");
        let back: SignedPresence = postcard::from_bytes(&bytes).expect("decode");
        prop_assert!(back.verify(Timestamp(now)).is_ok());
        let mut forged = back.clone();
        forged.signature[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(forged.verify(Timestamp(now)).is_err());
    }

    #[test]
    fn presence_mutations_never_panic(p in any_presence(), flips in flips()) {
        let mut bytes = postcard::to_stdvec(&p).expect("encode");
        for (at, xor) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        decode_everything(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------
// Arbitrary input to every decoder
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        decode_everything(&bytes)?;
    }

    #[test]
    fn arbitrary_strings_never_panic_peer_id_parsing(s in ".{0,80}") {
        if let Ok(id) = s.parse::<PeerId>() {
            prop_assert_eq!(id.to_string().parse::<PeerId>(), Ok(id));
        }
    }

    /// Base32-looking text of about the right length reaches the checksum and key checks.
    #[test]
    fn base32ish_strings_never_panic_peer_id_parsing(s in "[a-z2-7A-Z -]{50,70}") {
        if let Ok(id) = s.parse::<PeerId>() {
            prop_assert_eq!(id.to_string().parse::<PeerId>(), Ok(id));
        }
    }

    #[test]
    fn printed_peer_ids_parse_back(id in peer_id()) {
        let text = id.to_string();
        prop_assert_eq!(text.len(), 58);
        prop_assert_eq!(text.parse::<PeerId>(), Ok(id));
        prop_assert_eq!(text.to_uppercase().parse::<PeerId>(), Ok(id));
        // People add dashes and spaces when they copy ids.
        let spaced: String = text
            .as_bytes()
            .chunks(6)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect::<Vec<_>>()
            .join("- ");
        prop_assert_eq!(spaced.parse::<PeerId>(), Ok(id));
    }

    #[test]
    fn frame_body_len_follows_its_spec(len in any::<u32>()) {
        let got = frame_body_len(len.to_be_bytes());
        let len = len as usize;
        let want = if len == 0 {
            Err(DecodeError::Empty)
        } else if len > MAX_MESSAGE_LEN {
            Err(DecodeError::TooLarge(len))
        } else {
            Ok(len)
        };
        prop_assert_eq!(got, want);
    }

    /// A valid message of one type is never accepted as another type.
    #[test]
    fn messages_are_only_accepted_on_their_own_channel(msg in client_to_supernode()) {
        let bytes = msg.encode();
        prop_assert_eq!(
            SupernodeToClient::decode(&bytes).err(),
            Some(DecodeError::WrongKind { expected: SupernodeToClient::KIND, got: ClientToSupernode::KIND })
        );
        let as_overlay = SupernodeToSupernode::decode(&bytes);
        prop_assert!(matches!(as_overlay, Err(DecodeError::WrongKind { .. })), "{:?}", as_overlay);
        let as_reply = SupernodeReply::decode(&bytes);
        prop_assert!(matches!(as_reply, Err(DecodeError::WrongKind { .. })), "{:?}", as_reply);
    }
}

// ---------------------------------------------------------------------------------------
// Edge cases
// ---------------------------------------------------------------------------------------

#[test]
fn frame_body_len_edges() {
    assert_eq!(frame_body_len([0, 0, 0, 0]), Err(DecodeError::Empty));
    assert_eq!(frame_body_len([0, 0, 0, 1]), Ok(1));
    assert_eq!(
        frame_body_len((MAX_MESSAGE_LEN as u32).to_be_bytes()),
        Ok(MAX_MESSAGE_LEN)
    );
    assert_eq!(
        frame_body_len((MAX_MESSAGE_LEN as u32 + 1).to_be_bytes()),
        Err(DecodeError::TooLarge(MAX_MESSAGE_LEN + 1))
    );
    assert_eq!(
        frame_body_len([0xff; 4]),
        Err(DecodeError::TooLarge(u32::MAX as usize))
    );
    // Big-endian: a little-endian 1 is 16 MiB, over the limit.
    assert_eq!(
        frame_body_len([1, 0, 0, 0]),
        Err(DecodeError::TooLarge(1 << 24))
    );
}

#[test]
fn envelope_edges() {
    assert_eq!(ClientToSupernode::decode(&[]), Err(DecodeError::Empty));
    assert!(matches!(
        ClientToSupernode::decode(&[PROTOCOL_VERSION]),
        Err(DecodeError::Malformed(_))
    ));
    assert_eq!(
        ClientToSupernode::decode(&[0]),
        Err(DecodeError::UnsupportedVersion(0))
    );
    // The version is checked before the kind.
    assert_eq!(
        ClientToSupernode::decode(&[2, 0x7f]),
        Err(DecodeError::UnsupportedVersion(2))
    );
    // The length is checked before anything else.
    let huge = vec![0u8; MAX_MESSAGE_LEN + 1];
    assert_eq!(
        ClientToSupernode::decode(&huge),
        Err(DecodeError::TooLarge(MAX_MESSAGE_LEN + 1))
    );
    // Exactly at the limit is not "too large": this is `Hello` (variant 0) followed
    // by zeros, so it fails for its trailing bytes instead.
    let mut at_limit = vec![0u8; MAX_MESSAGE_LEN];
    at_limit[0] = PROTOCOL_VERSION;
    at_limit[1] = ClientToSupernode::KIND;
    assert_eq!(
        ClientToSupernode::decode(&at_limit),
        Err(DecodeError::TrailingBytes(MAX_MESSAGE_LEN - 3))
    );
    // An unknown enum variant is malformed, not a panic.
    assert!(matches!(
        ClientToSupernode::decode(&[PROTOCOL_VERSION, ClientToSupernode::KIND, 5]),
        Err(DecodeError::Malformed(_))
    ));
    // Hello has no body; one more byte is trailing.
    assert_eq!(
        ClientToSupernode::decode(&[PROTOCOL_VERSION, ClientToSupernode::KIND, 0, 0]),
        Err(DecodeError::TrailingBytes(1))
    );
}

/// 32 bytes that are not a curve point are refused as a peer id on the wire.
#[test]
fn invalid_keys_are_malformed() {
    // y = 2 is not the y coordinate of any point on edwards25519.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert!(PeerId::from_bytes(&not_a_point).is_err());
    let mut bytes = vec![PROTOCOL_VERSION, ClientToSupernode::KIND, 2];
    bytes.extend_from_slice(&not_a_point);
    assert!(matches!(
        ClientToSupernode::decode(&bytes),
        Err(DecodeError::Malformed(_))
    ));
}

/// The encoder does not enforce `MAX_MESSAGE_LEN`: a message with an oversized free-text
/// field encodes, and its own decoder then refuses it. Senders must keep `Refusal`
/// messages (the only unbounded field besides vectors) short.
#[test]
fn oversized_messages_encode_but_do_not_decode() {
    let msg = SupernodeReply::Refused(Refusal {
        code: RefusalCode::Overloaded,
        message: "x".repeat(MAX_MESSAGE_LEN),
    });
    let bytes = msg.encode();
    assert!(bytes.len() > MAX_MESSAGE_LEN);
    assert_eq!(
        SupernodeReply::decode(&bytes),
        Err(DecodeError::TooLarge(bytes.len()))
    );
    let frame = msg.encode_frame();
    assert_eq!(
        frame_body_len(frame[..4].try_into().expect("4 bytes")),
        Err(DecodeError::TooLarge(bytes.len()))
    );
}

/// The decoder accepts non-minimal varints (postcard does not insist on the shortest
/// form), so decoding is not injective: different bytes can mean the same message.
/// Nothing signs or hashes received bytes as such (signatures cover a re-encoding), so
/// this is harmless today; if the codec is made canonical, flip this test.
#[test]
fn non_minimal_varints_are_accepted() {
    let canonical = SupernodeToClient::Published { replicas: 0 }.encode();
    assert_eq!(canonical, [PROTOCOL_VERSION, SupernodeToClient::KIND, 1, 0]);
    let padded = [
        PROTOCOL_VERSION,
        SupernodeToClient::KIND,
        0x81,
        0x00,
        0x80,
        0x00,
    ];
    assert_eq!(
        SupernodeToClient::decode(&padded),
        Ok(SupernodeToClient::Published { replicas: 0 })
    );
}

/// serde writes a v6 socket address as (ip, port): flowinfo and scope id are dropped.
/// A scope id only means something on the host that chose it, so that is fine for
/// addresses sent to others, but a link-local candidate arrives without its scope.
#[test]
fn v6_flowinfo_and_scope_id_are_not_carried() {
    let addr = SocketAddr::V6(SocketAddrV6::new(
        "fe80::1".parse().expect("ip"),
        4000,
        7,
        3,
    ));
    let id = Identity::from_seed(&[9; 32]).peer_id();
    let msg = SupernodeToClient::Welcome {
        supernode: id,
        observed: addr,
        endpoints: ServerEndpoints::default(),
    };
    let back = SupernodeToClient::decode(&msg.encode()).expect("decode");
    let SupernodeToClient::Welcome { observed, .. } = back else {
        panic!("wrong variant: {back:?}");
    };
    assert_eq!(
        observed,
        SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().expect("ip"),
            4000,
            0,
            0
        ))
    );
}
