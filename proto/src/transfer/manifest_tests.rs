use super::*;
use proptest::prelude::*;

fn alice() -> Identity {
    Identity::from_seed(&[0x11; 32])
}

/// `len` bytes of a fixed pattern.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Re-signs a body the tests have changed, as a hostile sender could.
fn resign(mut m: SignedManifest, id: &Identity) -> Vec<u8> {
    m.signature = id.sign(&signed_bytes(&m.body));
    let mut out = vec![MANIFEST_VERSION];
    out.extend(postcard::to_stdvec(&m).expect("encode"));
    out
}

#[test]
fn a_manifest_describes_its_chunks() {
    let file = data(2 * CHUNK_SIZE as usize + 10, 1);
    let m = Manifest::for_bytes(&alice(), "f.bin", &file).expect("manifest");
    assert_eq!(m.chunk_count(), 3);
    assert_eq!(m.size(), file.len() as u64);
    assert_eq!(m.chunk_len(2), 10);
    assert_eq!(m.chunk_len(3), 0);
    assert_eq!(m.chunk_offset(2), 2 * CHUNK_SIZE as u64);
    let last = &file[2 * CHUNK_SIZE as usize..];
    assert!(m.verify_chunk(2, last));
    assert!(!m.verify_chunk(1, last), "another chunk's bytes");
    assert!(!m.verify_chunk(3, last), "past the end");
    let mut bad = last.to_vec();
    bad[0] ^= 1;
    assert!(!m.verify_chunk(2, &bad));
    assert_eq!(m.sender(), alice().peer_id());
    assert_eq!(Manifest::decode(&m.encode()), Ok(m));
}

#[test]
fn an_empty_file_has_no_chunks() {
    let m = Manifest::for_bytes(&alice(), "empty", &[]).expect("manifest");
    assert_eq!(m.chunk_count(), 0);
    assert_eq!(Manifest::decode(&m.encode()), Ok(m));
}

#[test]
fn the_builder_refuses_short_chunks_in_the_middle_and_bad_names() {
    let mut b = ManifestBuilder::new("x");
    b.push_chunk(&[1; 10]).expect("a short last chunk");
    assert!(matches!(
        b.push_chunk(&[1; 10]),
        Err(ManifestError::ChunkLength { index: 1, len: 10 })
    ));
    assert!(matches!(
        ManifestBuilder::new("x").push_chunk(&[]),
        Err(ManifestError::ChunkLength { .. })
    ));
    assert!(matches!(
        Manifest::for_bytes(&alice(), "../x", b"hi"),
        Err(ManifestError::Name(NameError::Separator))
    ));
}

#[test]
fn decoding_is_strict() {
    let m = Manifest::for_bytes(&alice(), "f", &data(300_000, 2)).expect("manifest");
    let bytes = m.encode();
    assert_eq!(Manifest::decode(&[]), Err(ManifestError::Empty));
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(
        Manifest::decode(&v2),
        Err(ManifestError::UnsupportedVersion(2))
    );
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        Manifest::decode(&long),
        Err(ManifestError::TrailingBytes(1))
    );
    assert!(matches!(
        Manifest::decode(&bytes[..bytes.len() - 1]),
        Err(ManifestError::Malformed(_))
    ));
    let huge = vec![MANIFEST_VERSION; MAX_MANIFEST_LEN + 1];
    assert_eq!(
        Manifest::decode(&huge),
        Err(ManifestError::TooLarge(MAX_MANIFEST_LEN + 1))
    );
}

#[test]
fn every_flipped_bit_is_refused() {
    let m = Manifest::for_bytes(&alice(), "a.txt", b"hello world").expect("manifest");
    let bytes = m.encode();
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 0x80 >> (i % 8);
        assert!(
            Manifest::decode(&b).is_err(),
            "bit {i} flipped still decodes"
        );
    }
}

#[test]
fn a_hostile_sender_cannot_sign_an_inconsistent_manifest() {
    let mallory = Identity::from_seed(&[0x66; 32]);
    let good = Manifest::for_bytes(&mallory, "f", &data(CHUNK_SIZE as usize + 1, 3))
        .expect("manifest")
        .0;
    let mut m = good.clone();
    m.body.name = "../../.bashrc".into();
    assert_eq!(
        Manifest::decode(&resign(m, &mallory)),
        Err(ManifestError::Name(NameError::Separator))
    );
    let mut m = good.clone();
    m.body.size += CHUNK_SIZE as u64;
    assert!(matches!(
        Manifest::decode(&resign(m, &mallory)),
        Err(ManifestError::ChunkCount {
            expected: 3,
            got: 2,
            ..
        })
    ));
    let mut m = good.clone();
    m.body.chunk_size = 1024;
    assert_eq!(
        Manifest::decode(&resign(m, &mallory)),
        Err(ManifestError::ChunkSize(1024))
    );
    let mut m = good.clone();
    m.body.chunks[0][0] ^= 1;
    assert_eq!(
        Manifest::decode(&resign(m, &mallory)),
        Err(ManifestError::Root)
    );
    let mut m = good.clone();
    m.body.size = MAX_FILE_SIZE + 1;
    assert_eq!(
        Manifest::decode(&resign(m, &mallory)),
        Err(ManifestError::FileTooLarge(MAX_FILE_SIZE + 1))
    );
    // Someone else's key on mallory's manifest.
    let mut m = good;
    m.body.sender = alice().peer_id();
    assert_eq!(
        Manifest::decode(&resign(m, &mallory)),
        Err(ManifestError::BadSignature)
    );
}

/// The wire format cannot change by accident: a fixed manifest, byte for byte. If
/// this fails and the change was intended, bump [`MANIFEST_VERSION`] and paste the
/// printed hex.
#[test]
fn manifest_hex_snapshot() {
    let m = Manifest::for_bytes(&alice(), "hello.txt", b"hello, world\n").expect("manifest");
    let hex = data_encoding::HEXLOWER.encode(&m.encode());
    assert_eq!(
        hex, SNAPSHOT,
        "manifest wire format changed; new hex:\n{hex}"
    );
}

/// version 01 | sender | name "hello.txt" | size 13 | chunk size 262144 (varint) |
/// 1 chunk hash | root | signature.
const SNAPSHOT: &str = concat!(
    "01d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787",
    "370968656c6c6f2e7478740d80801001853ff93762a06ddbf722c4ebe9ddd66d",
    "8f63ddaea97f521c3ecc20da7c976020d7bce487d344504520f070b488ddbe5a",
    "0d26078ea794659e952287e997134d6bd6cf5b5e8666b216e23595a6b581aeb0",
    "1685d43fb364510c6bf6dccc8b2cb882e575fb16b622128b464bb3db8bcca03a",
    "e70a3649c9f763f7411c82c016ad5b00",
);

fn name_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9 _.,()é€-]{0,40}[a-zA-Z0-9_)]"
        .prop_filter("a valid name", |n| check_file_name(n).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn manifests_round_trip(
        seed in any::<[u8; 32]>(),
        name in name_strategy(),
        len in 0usize..(3 * CHUNK_SIZE as usize),
        fill in any::<u8>(),
    ) {
        let id = Identity::from_seed(&seed);
        let file = data(len, fill);
        let m = Manifest::for_bytes(&id, &name, &file).expect("manifest");
        let bytes = m.encode();
        let again = Manifest::decode(&bytes).expect("decodes");
        prop_assert_eq!(again.encode(), bytes);
        prop_assert_eq!(&again, &m);
        for (i, chunk) in file.chunks(CHUNK_SIZE as usize).enumerate() {
            prop_assert!(again.verify_chunk(i as u32, chunk));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Manifest::decode(&bytes);
    }
}
