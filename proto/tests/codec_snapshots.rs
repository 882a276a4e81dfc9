//! Wire format snapshots: fixed messages built from fixed seeds, compared byte for byte
//! with committed hex, so an accidental change to the wire format fails loudly.
//!
//! If a test here fails, the bytes on the wire changed. If that was not the intent,
//! find the change (field order, a new enum variant in the middle, a serde attribute,
//! a dependency upgrade...). If it was, the new format cannot talk to old peers: bump
//! `PROTOCOL_VERSION`, update the hex below (the failure message prints it), and
//! regenerate the fuzz seeds:
//!
//! ```text
//! PARLEY_WRITE_FUZZ_SEEDS=1 cargo test -p parley-proto --test codec_snapshots
//! ```

use parley_proto::codec::WireMessage;
use parley_proto::messages::{
    ClientToSupernode, Refusal, RefusalCode, SupernodeReply, SupernodeToClient,
    SupernodeToSupernode,
};
use parley_proto::presence::{
    AddressKind, CandidateAddr, Contact, NatType, PresenceRecord, SignedPresence,
};
use parley_proto::{Identity, NodeId, PeerId, Timestamp};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

fn alice() -> Identity {
    Identity::from_seed(&[0x11; 32])
}

fn supernode_a() -> Identity {
    Identity::from_seed(&[0x22; 32])
}

fn supernode_b() -> Identity {
    Identity::from_seed(&[0x33; 32])
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a valid socket address literal")
}

fn contact_a() -> Contact {
    Contact {
        id: supernode_a().peer_id(),
        addr: addr("198.51.100.1:7000"),
    }
}

fn contact_b() -> Contact {
    Contact {
        id: supernode_b().peer_id(),
        addr: addr("[2001:db8::2]:7001"),
    }
}

/// A record using every field, signed by alice (ed25519 signatures are deterministic).
fn presence() -> SignedPresence {
    PresenceRecord {
        id: alice().peer_id(),
        display_name: "Alice".into(),
        supernodes: vec![contact_a()],
        addresses: vec![
            CandidateAddr {
                kind: AddressKind::Local,
                addr: addr("192.168.1.20:40000"),
            },
            CandidateAddr {
                kind: AddressKind::Observed,
                addr: addr("[2001:db8::20]:40001"),
            },
        ],
        nat: NatType::PortRestrictedCone,
        seq: 7,
        expires_at: Timestamp(1_700_000_000_000),
    }
    .sign(&alice())
}

/// The smallest record: no supernodes, no addresses, empty name.
fn minimal_presence() -> SignedPresence {
    PresenceRecord {
        id: alice().peer_id(),
        display_name: String::new(),
        supernodes: vec![],
        addresses: vec![],
        nat: NatType::Unknown,
        seq: 0,
        expires_at: Timestamp(0),
    }
    .sign(&alice())
}

fn refusal() -> Refusal {
    Refusal {
        code: RefusalCode::Stale,
        message: "old".into(),
    }
}

fn client_to_supernode() -> Vec<(&'static str, ClientToSupernode)> {
    vec![
        ("hello", ClientToSupernode::Hello),
        ("publish", ClientToSupernode::Publish(presence())),
        ("lookup", ClientToSupernode::Lookup(alice().peer_id())),
        ("supernodes", ClientToSupernode::Supernodes),
    ]
}

fn supernode_to_client() -> Vec<(&'static str, SupernodeToClient)> {
    vec![
        (
            "welcome",
            SupernodeToClient::Welcome {
                supernode: supernode_a().peer_id(),
                observed: addr("203.0.113.7:4000"),
                endpoints: Default::default(),
            },
        ),
        ("published", SupernodeToClient::Published { replicas: 300 }),
        ("found", SupernodeToClient::Found(minimal_presence())),
        ("not_found", SupernodeToClient::NotFound),
        (
            "supernodes",
            SupernodeToClient::Supernodes(vec![contact_a(), contact_b()]),
        ),
        ("refused", SupernodeToClient::Refused(refusal())),
    ]
}

fn supernode_to_supernode() -> Vec<(&'static str, SupernodeToSupernode)> {
    vec![
        ("ping", SupernodeToSupernode::Ping),
        (
            "find_node",
            SupernodeToSupernode::FindNode(alice().peer_id().record_key()),
        ),
        (
            "find_value",
            SupernodeToSupernode::FindValue(NodeId([0xab; 32])),
        ),
        (
            "store",
            SupernodeToSupernode::Store(minimal_presence().into()),
        ),
    ]
}

fn supernode_reply() -> Vec<(&'static str, SupernodeReply)> {
    vec![
        ("pong", SupernodeReply::Pong),
        ("nodes", SupernodeReply::Nodes(vec![contact_b()])),
        ("value", SupernodeReply::Value(minimal_presence().into())),
        ("stored", SupernodeReply::Stored),
        (
            "refused",
            SupernodeReply::Refused(Refusal {
                code: RefusalCode::Overloaded,
                message: String::new(),
            }),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Expected bytes
// ---------------------------------------------------------------------------------------

/// Alice's public key (seed 0x11 * 32).
const ALICE_KEY: &str = "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737";

/// Supernode A's public key (seed 0x22 * 32).
const SUPERNODE_A_KEY: &str = "a09aa5f47a6759802ff955f8dc2d2a14a5c99d23be97f864127ff9383455a4f0";

/// Supernode A at 198.51.100.1:7000.
const CONTACT_A: &str = concat!(
    "a09aa5f47a6759802ff955f8dc2d2a14a5c99d23be97f864127ff9383455a4f0", // id
    "00",                                                               // SocketAddr::V4
    "c6336401",                                                         // 198.51.100.1
    "d836",                                                             // port 7000, varint
);

/// Supernode B at [2001:db8::2]:7001.
const CONTACT_B: &str = concat!(
    "17cb79fb2b4120f2b1ec65e4198d6e08b28e813feb01e4a400839b85e18080ce", // id
    "01",                                                               // SocketAddr::V6
    "20010db8000000000000000000000002",                                 // 2001:db8::2
    "d936",                                                             // port 7001
);

/// `presence()`, field by field.
const FULL_PRESENCE: &str = concat!(
    "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737", // id
    "05416c696365",                                                     // "Alice"
    "01",                                                               // 1 supernode:
    "a09aa5f47a6759802ff955f8dc2d2a14a5c99d23be97f864127ff9383455a4f0", //   id
    "00c6336401d836",                                                   //   198.51.100.1:7000
    "02",                                                               // 2 addresses:
    "00",                                                               //   Local
    "00c0a80114c0b802",                                                 //   192.168.1.20:40000
    "01",                                                               //   Observed
    "0120010db8000000000000000000000020c1b802",                         //   [2001:db8::20]:40001
    "04",                                                               // PortRestrictedCone
    "07",                                                               // seq 7
    "80d095ffbc31",                                                     // expires_at, varint
    "39f21a92506624700c476378f82fd95f3caa16fa9a0f4faba79179727043d6fc", // signature, as
    "f5e2141d512e33375608b161f75648de906b90574234bb3b629f482ad4e3c90b", // two 32-byte halves
);

/// `minimal_presence()`: id; empty name, no supernodes, no addresses, `Unknown` NAT,
/// seq 0 and expiry 0 (one zero byte each); signature.
const MINIMAL_PRESENCE: &str = concat!(
    "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737",
    "000000000000",
    "c7979b2ae124545274c091e5d94f4250429740f717435568639339db360e5f3d",
    "713d0acd2a62d0b622d991d3f1d586a543afa3acc211a2a9048ca7745316e40f",
);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[track_caller]
fn assert_snapshot(what: &str, bytes: &[u8], expected: &str) {
    let got = hex(bytes);
    assert!(
        got == expected,
        "the wire encoding of {what} changed.\n  expected: {expected}\n  got:      {got}\n\
         If this is intended, bump PROTOCOL_VERSION and update the snapshot \
         (see the top of proto/tests/codec_snapshots.rs)."
    );
}

fn check<M: WireMessage + Debug + PartialEq>(what: &str, msg: &M, expected: &str) {
    let bytes = msg.encode();
    assert_snapshot(what, &bytes, expected);
    assert_eq!(
        M::decode(&bytes).as_ref(),
        Ok(msg),
        "{what} must decode back"
    );
}

#[test]
fn identity_snapshots() {
    let alice = alice().peer_id();
    assert_snapshot("alice's key", alice.as_bytes(), ALICE_KEY);
    assert_eq!(
        alice.to_string(),
        "2bflemtufo2kwoqtnc6umfpe43icesvxdiawxl4fecrtfslxq435i57hqm",
        "printed ids changed"
    );
    assert_snapshot(
        "alice's record key",
        &alice.record_key().0,
        "5a93b2355c98b107f8387c09ab50e53187e7ab56ae64162e5a368eba8335a737",
    );
    // As a supernode at a public IP (BEP 42): the first 21 bits change, the rest is
    // the record key's; at a private IP it is the record key.
    let public = Contact {
        id: alice,
        addr: "203.0.113.7:7000".parse().unwrap(),
    };
    assert_snapshot(
        "alice's position at 203.0.113.7",
        &public.node_id().0,
        "8340aa355c98b107f8387c09ab50e53187e7ab56ae64162e5a368eba8335a737",
    );
    let private = Contact {
        id: alice,
        addr: "10.0.0.7:7000".parse().unwrap(),
    };
    assert_eq!(private.node_id(), alice.record_key());
}

#[test]
fn presence_snapshots() {
    let p = presence();
    assert!(p.verify(Timestamp(1_700_000_000_000 - 1000)).is_ok());
    assert_snapshot(
        "a full presence record",
        &postcard::to_stdvec(&p).expect("encode"),
        FULL_PRESENCE,
    );
    assert_snapshot(
        "a minimal presence record",
        &postcard::to_stdvec(&minimal_presence()).expect("encode"),
        MINIMAL_PRESENCE,
    );
}

#[test]
fn client_to_supernode_snapshots() {
    let expected = [
        "010100".to_string(),
        format!("010101{FULL_PRESENCE}"),
        format!("010102{ALICE_KEY}"),
        "010103".to_string(),
    ];
    for ((name, msg), hex) in client_to_supernode().iter().zip(&expected) {
        check(name, msg, hex);
    }
}

#[test]
fn supernode_to_client_snapshots() {
    let expected = [
        // Welcome: supernode key, SocketAddr::V4, 203.0.113.7, port 4000 (varint).
        // Endpoints: three absent options.
        format!("010200{SUPERNODE_A_KEY}00cb007107a01f000000"),
        // Published: 300 as a varint.
        "010201ac02".to_string(),
        format!("010202{MINIMAL_PRESENCE}"),
        "010203".to_string(),
        format!("01020402{CONTACT_A}{CONTACT_B}"),
        // Refused: code 1 (Stale), "old".
        "01020501036f6c64".to_string(),
    ];
    for ((name, msg), hex) in supernode_to_client().iter().zip(&expected) {
        check(name, msg, hex);
    }
}

#[test]
fn supernode_to_supernode_snapshots() {
    let expected = [
        "010300".to_string(),
        "0103015a93b2355c98b107f8387c09ab50e53187e7ab56ae64162e5a368eba8335a737".to_string(),
        format!("010302{}", "ab".repeat(32)),
        format!("010303{MINIMAL_PRESENCE}"),
    ];
    for ((name, msg), hex) in supernode_to_supernode().iter().zip(&expected) {
        check(name, msg, hex);
    }
}

#[test]
fn supernode_reply_snapshots() {
    let expected = [
        "010400".to_string(),
        format!("01040101{CONTACT_B}"),
        format!("010402{MINIMAL_PRESENCE}"),
        "010403".to_string(),
        // Refused: code 5 (Overloaded), empty message.
        "0104040500".to_string(),
    ];
    for ((name, msg), hex) in supernode_reply().iter().zip(&expected) {
        check(name, msg, hex);
    }
}

#[test]
fn frame_snapshot() {
    let frame = SupernodeToClient::Published { replicas: 300 }.encode_frame();
    // u32 big-endian length 5, then the envelope.
    assert_snapshot("a framed message", &frame, "00000005010201ac02");
}

// ---------------------------------------------------------------------------------------
// Fuzz seeds (fuzz/corpus/<target>/seed-*)
// ---------------------------------------------------------------------------------------

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

/// Every seed, as (target, file name, bytes).
fn fuzz_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    fn wire<M: WireMessage>(
        target: &'static str,
        msgs: Vec<(&'static str, M)>,
    ) -> impl Iterator<Item = (&'static str, String, Vec<u8>)> {
        msgs.into_iter()
            .map(move |(name, m)| (target, format!("seed-{name}"), m.encode()))
    }
    let mut seeds = Vec::new();
    seeds.extend(wire("decode_client_to_supernode", client_to_supernode()));
    seeds.extend(wire("decode_supernode_to_client", supernode_to_client()));
    seeds.extend(wire(
        "decode_supernode_to_supernode",
        supernode_to_supernode(),
    ));
    seeds.extend(wire("decode_supernode_reply", supernode_reply()));
    for (name, p) in [("full", presence()), ("minimal", minimal_presence())] {
        let bytes = postcard::to_stdvec(&p).expect("encode");
        seeds.push(("decode_presence", format!("seed-{name}"), bytes));
    }
    let id = alice().peer_id().to_string();
    let dashed: String = id
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join("-")
        .to_uppercase();
    let mut typo = id.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    for (name, text) in [
        ("id", id.into_bytes()),
        ("dashed", dashed.into_bytes()),
        ("typo", typo),
    ] {
        seeds.push(("parse_peer_id", format!("seed-{name}"), text));
    }
    seeds
}

/// The committed seeds are the ones the current code produces: stale seeds would only
/// exercise error paths.
/// With `PARLEY_WRITE_FUZZ_SEEDS=1` it writes them instead (after an intended wire change).
#[test]
fn fuzz_seeds_are_current() {
    let write = std::env::var_os("PARLEY_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in fuzz_seeds() {
        let path = corpus_dir().join(target).join(&name);
        if write {
            std::fs::create_dir_all(path.parent().expect("a corpus directory"))
                .expect("create the corpus directory");
            std::fs::write(&path, &bytes).expect("write a seed");
            continue;
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read fuzz seed {}: {e}; run with PARLEY_WRITE_FUZZ_SEEDS=1",
                path.display()
            )
        });
        assert!(
            committed == bytes,
            "fuzz seed {} is stale; run: PARLEY_WRITE_FUZZ_SEEDS=1 \
             cargo test -p parley-proto --test codec_snapshots",
            path.display()
        );
    }
    // The printed-id seeds parse, except the deliberate typo.
    let dir = corpus_dir().join("parse_peer_id");
    for (name, ok) in [
        ("seed-id", true),
        ("seed-dashed", true),
        ("seed-typo", false),
    ] {
        let text = std::fs::read_to_string(dir.join(name)).expect("read seed");
        assert_eq!(text.parse::<PeerId>().is_ok(), ok, "{name}");
    }
}
