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

/// A call signalling frame: the envelope checks of [`wire_message`], then every
/// signed part it carries is verified (offers, answers, declines, relay grants); none
/// of that may panic, and verification must agree between the decoded and the
/// re-encoded copy.
pub fn call_signal(data: &[u8]) {
    use parley_proto::call::signal::CallSignal;
    wire_message::<CallSignal>(data);
    let Ok(signal) = CallSignal::decode(data) else {
        return;
    };
    let again = CallSignal::decode(&signal.encode()).expect("re-encoded signal decodes");
    let check = |s: &CallSignal| -> Vec<bool> {
        let mut out = Vec::new();
        match s {
            CallSignal::Place { offer, .. }
            | CallSignal::Deliver { offer, .. }
            | CallSignal::Incoming { offer, .. } => {
                let callee = offer.offer.callee;
                out.push(offer.verify(NOW, &callee).is_ok());
                if let CallSignal::Deliver { relays, .. } | CallSignal::Incoming { relays, .. } = s
                {
                    for g in relays {
                        out.push(g.verify(&offer.offer, None));
                        out.push(g.verify(&offer.offer, Some(&g.token.token.issuer)));
                    }
                }
            }
            CallSignal::RelayGranted(grants) => {
                for g in grants {
                    out.push(g.token.signature_valid());
                }
            }
            CallSignal::Accept(answer) => out.push(answer.signature_valid()),
            CallSignal::Declined(d) => out.push(d.signature_valid()),
            _ => {}
        }
        out
    };
    assert_eq!(check(&signal), check(&again));
}

/// The relay's four message types on one input (only the matching kind decodes).
pub fn relay_messages(data: &[u8]) {
    use parley_proto::relay::messages::{
        ClientToRelay, RelayToClient, RelayToSupernode, SupernodeToRelay,
    };
    wire_message::<ClientToRelay>(data);
    wire_message::<RelayToClient>(data);
    wire_message::<RelayToSupernode>(data);
    wire_message::<SupernodeToRelay>(data);
}

/// A bare postcard `SignedRelayToken`, verified at [`NOW`] as the relay would
/// (its own id: the token's relay; trusted issuers: the token's issuer).
pub fn relay_token(data: &[u8]) {
    use parley_proto::relay::SignedRelayToken;
    let Ok((token, _rest)) = postcard::take_from_bytes::<SignedRelayToken>(data) else {
        return;
    };
    let encoded = postcard::to_stdvec(&token).expect("a decoded token encodes");
    let again: SignedRelayToken = postcard::from_bytes(&encoded).expect("re-encoded token");
    assert_eq!(again, token);
    let t = &token.token;
    let a = token.verify(NOW, &t.relay, &[t.issuer]).map(|_| ());
    let b = again.verify(NOW, &t.relay, &[t.issuer]).map(|_| ());
    assert_eq!(a, b);
    assert_eq!(token.signature_valid(), again.signature_valid());
}

/// Media datagrams: the plaintext parser on the input, with a seal/open round trip for
/// whatever parses, and the full `open` (header, length, replay, AEAD) on the input as
/// a received datagram.
pub fn media_frame(data: &[u8]) {
    use parley_proto::call::media::{MediaCrypto, MediaFrame};
    use std::sync::{Mutex, OnceLock};
    static PAIR: OnceLock<Mutex<(MediaCrypto, MediaCrypto)>> = OnceLock::new();
    let pair = PAIR.get_or_init(|| {
        use parley_proto::call::e2e::{initiate, prologue, respond};
        let (a, b) = (
            parley_proto::Identity::generate(),
            parley_proto::Identity::generate(),
        );
        let pro = prologue(&[9; 16], &a.peer_id(), &b.peer_id());
        let (pending, m1) = initiate(&a, &b.peer_id(), &pro).expect("initiate");
        let (kb, m2) = respond(&b, &a.peer_id(), &pro, &m1).expect("respond");
        let ka = pending.finish(&m2).expect("finish");
        Mutex::new((MediaCrypto::new(ka), MediaCrypto::new(kb)))
    });
    let mut pair = pair.lock().unwrap_or_else(|p| p.into_inner());
    let (a, b) = &mut *pair;
    let _ = b.open(data);
    if let Ok(frame) = MediaFrame::parse_plain(data) {
        let sealed = a.seal(&frame);
        // `seal` does not refuse oversize frames; `open` does (found by this target,
        // see proto/tests/fuzz_regressions.rs).
        match b.open(&sealed) {
            Ok((_, opened)) => assert_eq!(opened, frame),
            Err(e) => assert!(
                sealed.len() > parley_proto::call::media::MAX_DATAGRAM,
                "a {}-byte sealed frame does not open: {e}",
                sealed.len()
            ),
        }
    }
}

/// A TCP tunnel byte stream: frames are read until the end or an error; each frame
/// re-encodes to exactly the bytes it was read from.
pub fn tunnel_frames(data: &[u8]) {
    use parley_net::tcp_tunnel::{read_frame, write_frame};
    use std::sync::OnceLock;
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    rt.block_on(async {
        let mut rest = data;
        let mut rebuilt = Vec::new();
        loop {
            let before = rest.len();
            match read_frame(&mut rest).await {
                Ok(Some(frame)) => {
                    assert!(!frame.is_empty() && frame.len() <= usize::from(u16::MAX));
                    let mut out = Vec::new();
                    write_frame(&mut out, &frame).await.expect("re-encode");
                    assert_eq!(out.len(), before - rest.len());
                    rebuilt.extend_from_slice(&out);
                }
                Ok(None) | Err(_) => break,
            }
        }
        assert_eq!(&data[..rebuilt.len()], &rebuilt[..]);
    });
}
