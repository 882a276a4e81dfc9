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
/// signed part it carries is verified (offers, answers, declines, relay grants), and
/// a file offer's purpose is checked as a receiver would; none
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
                // A file offer's receiver-side checks (name, size, recipients).
                if let parley_proto::call::signal::OfferPurpose::File(f) = &offer.offer.purpose {
                    out.push(f.check(&offer.offer.caller, &callee).is_ok());
                }
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

/// The reachability dial-back messages (issue 10), each as [`wire_message`].
pub fn reach_messages(data: &[u8]) {
    use parley_proto::reach::{DialBack, Probe, ProbeAck, ProbeOrder, ProbeReply};
    wire_message::<DialBack>(data);
    wire_message::<ProbeReply>(data);
    wire_message::<ProbeOrder>(data);
    wire_message::<Probe>(data);
    wire_message::<ProbeAck>(data);
}

/// The upload probe messages (issue 10, kinds 0x35-0x36): each as [`wire_message`];
/// a reply the checked decoder accepts passes its own check and yields a rate without
/// panicking (no overflow, no division by zero).
pub fn upload_messages(data: &[u8]) {
    use parley_proto::upload::{UploadProbe, UploadReply};
    wire_message::<UploadProbe>(data);
    wire_message::<UploadReply>(data);
    if let Ok(UploadReply::Measured(report)) = UploadReply::decode_checked(data) {
        assert!(report.check().is_ok());
        let _ = report.kbps();
    }
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

/// A file-transfer manifest (`Manifest::decode`): never panics; whatever decodes
/// re-encodes to bytes that decode to the same manifest, no longer than the input,
/// and its chunk geometry adds up to its size.
pub fn transfer_manifest(data: &[u8]) {
    use parley_proto::transfer::{check_file_name, Manifest};
    let Ok(m) = Manifest::decode(data) else { return };
    let encoded = m.encode();
    assert!(encoded.len() <= data.len(), "re-encoding grew the manifest");
    assert_eq!(Manifest::decode(&encoded).as_ref(), Ok(&m));
    assert!(check_file_name(m.name()).is_ok());
    let total: u64 = (0..m.chunk_count()).map(|i| m.chunk_len(i) as u64).sum();
    assert_eq!(total, m.size());
    assert!(!m.verify_chunk(m.chunk_count(), &[]));
}

/// Peer messages of a transfer, decoded and fed to a recipient's `Swarm` machine.
///
/// The input is a sequence of `peer:u8 length:u8 message` records (peer: one of three
/// remote peers, the sender among them; length: message bytes). Every record's
/// message must decode or be refused without panicking, and a decoded one must
/// re-encode to exactly its bytes; the machine must never panic, never report a chunk
/// verified that does not match the manifest, and never count more verified bytes
/// than the file has.
pub fn transfer_peer_messages(data: &[u8]) {
    use parley_proto::transfer::swarm::{Swarm, SwarmConfig, SwarmEvent};
    use parley_proto::transfer::{Bitfield, Manifest, PeerMessage};
    use parley_proto::{Identity, Mono};
    use std::sync::OnceLock;
    // A 3-chunk file whose last chunk is 5 bytes (chunks 0 and 1 are all zeros).
    static FILE: OnceLock<(Manifest, Identity)> = OnceLock::new();
    let (manifest, sender) = FILE.get_or_init(|| {
        let sender = Identity::from_seed(&[7; 32]);
        let mut bytes = vec![0u8; 2 * parley_proto::transfer::CHUNK_SIZE as usize];
        bytes.extend_from_slice(b"tail!");
        let m = Manifest::for_bytes(&sender, "f.bin", &bytes).expect("manifest");
        (m, sender)
    });
    let me = Identity::from_seed(&[8; 32]).peer_id();
    let peers = [
        sender.peer_id(),
        Identity::from_seed(&[9; 32]).peer_id(),
        Identity::from_seed(&[10; 32]).peer_id(),
    ];
    let n = manifest.chunk_count();
    let mut swarm = Swarm::new(
        Mono(0),
        manifest.clone(),
        me,
        Bitfield::empty(n),
        SwarmConfig::default(),
        1,
    );
    for p in &peers {
        swarm.add_peer(Mono(0), *p).expect("add");
    }
    let mut rest = data;
    let mut now = 0u64;
    while let [who, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (bytes, after) = tail.split_at(len);
        rest = after;
        now += 500;
        let peer = peers[usize::from(*who) % peers.len()];
        if *who >= 0xf0 {
            // Now and then: time passes (choking rounds, request timeouts).
            swarm.handle_timeout(Mono(now * 100));
        }
        if let Ok(msg) = PeerMessage::decode(bytes) {
            assert_eq!(msg.encode(), bytes, "re-encoding changed the message");
            swarm.handle_message(Mono(now), peer, msg);
        }
        while let Some(ev) = swarm.poll_event() {
            match ev {
                SwarmEvent::ChunkVerified { index, data } => {
                    assert!(manifest.verify_chunk(index, &data), "unverified chunk stored")
                }
                SwarmEvent::ReadChunk { peer, index } => {
                    assert!(swarm.have().get(index), "asked to serve a chunk it lacks");
                    let len = manifest.chunk_len(index);
                    let chunk = if index == n - 1 { b"tail!".to_vec() } else { vec![0; len] };
                    swarm.serve_chunk(Mono(now), peer, index, chunk);
                }
                _ => {}
            }
        }
        while swarm.poll_transmit().is_some() {}
        assert!(swarm.stats().verified <= manifest.size());
    }
}
