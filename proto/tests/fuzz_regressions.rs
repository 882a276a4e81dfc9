//! Inputs the fuzz targets (`fuzz/`) found, kept as tests.
#![allow(clippy::unwrap_used)]

use parley_proto::call::e2e::{initiate, prologue, respond};
use parley_proto::call::media::{MediaCrypto, MediaError, MediaFrame, MAX_DATAGRAM};
use parley_proto::Identity;

fn pair() -> (MediaCrypto, MediaCrypto) {
    let (a, b) = (Identity::generate(), Identity::generate());
    let pro = prologue(&[9; 16], &a.peer_id(), &b.peer_id());
    let (pending, m1) = initiate(&a, &b.peer_id(), &pro).unwrap();
    let (kb, m2) = respond(&b, &a.peer_id(), &pro, &m1).unwrap();
    let ka = pending.finish(&m2).unwrap();
    (MediaCrypto::new(ka), MediaCrypto::new(kb))
}

/// `media_frame` (fuzz/corpus/media_frame/seed-regression-oversize): an audio frame
/// whose plaintext parses, but whose sealed datagram exceeds `MAX_DATAGRAM`, is sealed
/// anyway and then refused by the receiver. The receiver must refuse it (a bounded
/// datagram), and everything up to the limit must open.
#[test]
fn media_frame_fuzz_find_oversize_frames_are_refused_and_the_limit_opens() {
    let (mut a, mut b) = pair();
    // 9-byte header + 1 kind byte + 8-byte frame number + opus + 16-byte tag.
    let largest = MAX_DATAGRAM - 9 - 1 - 8 - 16;
    let fits = MediaFrame::Audio {
        frame: 1,
        opus: vec![7; largest],
    };
    let sealed = a.seal(&fits);
    assert_eq!(sealed.len(), MAX_DATAGRAM);
    assert_eq!(b.open(&sealed).unwrap().1, fits);
    let over = MediaFrame::Audio {
        frame: 2,
        opus: vec![7; largest + 1],
    };
    let sealed = a.seal(&over);
    assert_eq!(b.open(&sealed), Err(MediaError::Malformed));
}
