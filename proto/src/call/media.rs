//! Sealed media datagrams: the same bytes travel a direct path or a relay, and only the
//! two parties can open them.
//!
//! ```text
//! datagram  = version:u8 (=1) seq:u64be ciphertext
//! plaintext = kind:u8 body                   (sealed with ChaChaPoly, nonce = seq)
//!   kind 1 Audio: frame:u64be opus-packet
//!   kind 2 Bye                               (hang-up)
//!   kind 3 Report: received:u64be lost:u64be (receiver feedback)
//!   kind 4 Ping: t:u64be                     (sender's monotonic clock, ms; for end-to-end RTT)
//!   kind 5 Pong: t:u64be                     (the ping's t, echoed)
//!   kind 6 RedAudio: frame:u64be n:u8 n×(len:u16be opus-packet) opus-packet
//!                                            (audio with copies of frames frame-1 … frame-n,
//!                                             newest first; 1 ≤ n ≤ MAX_REDUNDANT, len ≥ 1)
//!   kind 7 Features: flags:u8                (what the sender of it accepts; bit 0: RedAudio)
//!   kind 8 Roster: epoch:u32be n:u8 n×key(32) (a conference host's member list, itself
//!                                             included: 2 ≤ n ≤ 8 distinct ed25519 keys)
//! ```
//! Kind 8 came with the group safety code (issue 16, `crate::media::group`); a peer that
//! predates it drops it as malformed, like kind 7.
//! Kinds 6 and 7 came with session 6 (RFC 2198-style redundancy, issue 13). A peer sends
//! RedAudio only to a peer whose Features said it accepts it, so a peer that predates them
//! keeps receiving plain Audio (it counts the Features datagrams as malformed and drops
//! them; nothing else changes).
//! `seq` counts datagrams per direction and never repeats; a receiver drops any `seq`
//! it has already opened (a sliding window of [`REPLAY_WINDOW`] entries) or that is
//! older than the window. Tampering with any byte fails authentication.

use crate::call::e2e::SessionKeys;
use crate::media::group::MAX_MEMBERS;
use crate::PeerId;
use thiserror::Error;

const VERSION: u8 = 1;
const HEADER_LEN: usize = 9;
const TAG_LEN: usize = 16;
/// How many sequence numbers back a late datagram is still accepted.
pub const REPLAY_WINDOW: u64 = 128;
/// Largest datagram we seal or open (fits any QUIC path MTU we use).
pub const MAX_DATAGRAM: usize = 1200;
/// Most earlier frames one [`MediaFrame::RedAudio`] may carry.
pub const MAX_REDUNDANT: usize = 3;
/// [`MediaFrame::Features`] bit: the sender of it accepts [`MediaFrame::RedAudio`].
pub const FEATURE_RED_AUDIO: u8 = 1;

/// What a media datagram carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaFrame {
    /// One 20 ms Opus frame with its frame number.
    Audio {
        /// Frame number: consecutive frames are 20 ms apart.
        frame: u64,
        /// The Opus packet.
        opus: Vec<u8>,
    },
    /// The other side hung up.
    Bye,
    /// Receiver feedback: totals so far.
    Report {
        /// Frames received.
        received: u64,
        /// Frames lost.
        lost: u64,
    },
    /// Please echo `t` back.
    Ping(u64),
    /// The echo of a ping's `t`.
    Pong(u64),
    /// Frame `frame` plus exact copies of the frames before it (RFC 2198-style
    /// redundancy): `older[i]` is frame `frame - 1 - i`. Sent on a lossy path only, and
    /// only to a peer whose [`MediaFrame::Features`] include [`FEATURE_RED_AUDIO`].
    RedAudio {
        /// Frame number of `opus`.
        frame: u64,
        /// The Opus packet of frame `frame`.
        opus: Vec<u8>,
        /// Copies of the packets of frames `frame - 1`, `frame - 2`, … (1 to
        /// [`MAX_REDUNDANT`], none empty).
        older: Vec<Vec<u8>>,
    },
    /// What the sender of this accepts: [`FEATURE_RED_AUDIO`]; other bits are reserved
    /// (sent as 0, ignored on receipt).
    Features(u8),
    /// A conference host's member list (itself included), numbered by `epoch` so that a
    /// late copy of an older list is recognised ([`crate::media::group`]).
    Roster {
        /// Increases with every change of the list.
        epoch: u32,
        /// 2 to [`MAX_MEMBERS`](crate::media::group::MAX_MEMBERS) distinct keys.
        members: Vec<PeerId>,
    },
}

/// Why a datagram was dropped.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MediaError {
    /// Too short, too long, unknown version or kind.
    #[error("malformed media datagram")]
    Malformed,
    /// Authentication failed: tampered, corrupted, or not for this call.
    #[error("media datagram failed authentication")]
    Forged,
    /// A sequence number already seen, or older than the replay window.
    #[error("replayed media datagram")]
    Replayed,
}

/// Sliding-window replay protection over 64-bit sequence numbers.
#[derive(Debug, Default)]
pub struct ReplayWindow {
    highest: Option<u64>,
    /// Bit i set: `highest - i` has been seen.
    seen: u128,
}

impl ReplayWindow {
    /// Whether `seq` would be fresh; does not record it.
    pub fn check(&self, seq: u64) -> bool {
        match self.highest {
            None => true,
            Some(h) if seq > h => true,
            Some(h) => {
                let back = h - seq;
                back < REPLAY_WINDOW && self.seen & (1u128 << back) == 0
            }
        }
    }

    /// Records `seq` as seen (call only after authentication succeeded).
    pub fn record(&mut self, seq: u64) {
        match self.highest {
            None => {
                self.highest = Some(seq);
                self.seen = 1;
            }
            Some(h) if seq > h => {
                let shift = seq - h;
                self.seen = if shift >= 128 { 0 } else { self.seen << shift };
                self.seen |= 1;
                self.highest = Some(seq);
            }
            Some(h) => {
                let back = h - seq;
                if back < REPLAY_WINDOW {
                    self.seen |= 1u128 << back;
                }
            }
        }
    }
}

/// Seals outgoing and opens incoming media datagrams of one call.
pub struct MediaCrypto {
    keys: SessionKeys,
    next_seq: u64,
    replay: ReplayWindow,
}

impl MediaCrypto {
    /// Wraps the call's established keys.
    pub fn new(keys: SessionKeys) -> MediaCrypto {
        MediaCrypto {
            keys,
            next_seq: 0,
            replay: ReplayWindow::default(),
        }
    }

    /// The safety code of the underlying handshake.
    pub fn safety_code(&self) -> String {
        self.keys.safety_code()
    }

    /// Seals `frame` as the next datagram.
    pub fn seal(&mut self, frame: &MediaFrame) -> Vec<u8> {
        let mut plain = Vec::with_capacity(64);
        match frame {
            MediaFrame::Audio { frame, opus } => {
                plain.push(1);
                plain.extend_from_slice(&frame.to_be_bytes());
                plain.extend_from_slice(opus);
            }
            MediaFrame::Bye => plain.push(2),
            MediaFrame::Report { received, lost } => {
                plain.push(3);
                plain.extend_from_slice(&received.to_be_bytes());
                plain.extend_from_slice(&lost.to_be_bytes());
            }
            MediaFrame::Ping(t) => {
                plain.push(4);
                plain.extend_from_slice(&t.to_be_bytes());
            }
            MediaFrame::Pong(t) => {
                plain.push(5);
                plain.extend_from_slice(&t.to_be_bytes());
            }
            MediaFrame::RedAudio { frame, opus, older } => {
                plain.push(6);
                plain.extend_from_slice(&frame.to_be_bytes());
                plain.push(older.len() as u8);
                for copy in older {
                    plain.extend_from_slice(&(copy.len() as u16).to_be_bytes());
                    plain.extend_from_slice(copy);
                }
                plain.extend_from_slice(opus);
            }
            MediaFrame::Features(flags) => plain.extend_from_slice(&[7, *flags]),
            MediaFrame::Roster { epoch, members } => {
                plain.push(8);
                plain.extend_from_slice(&epoch.to_be_bytes());
                plain.push(members.len() as u8);
                for m in members {
                    plain.extend_from_slice(m.as_bytes());
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut out = vec![0u8; HEADER_LEN + plain.len() + TAG_LEN];
        out[0] = VERSION;
        out[1..HEADER_LEN].copy_from_slice(&seq.to_be_bytes());
        // Sealing into a buffer of exactly plaintext + tag cannot fail.
        let n = self
            .keys
            .transport
            .write_message(seq, &plain, &mut out[HEADER_LEN..])
            .unwrap_or(0);
        out.truncate(HEADER_LEN + n);
        out
    }

    /// Opens a received datagram: authenticates, checks replay, parses.
    pub fn open(&mut self, datagram: &[u8]) -> Result<(u64, MediaFrame), MediaError> {
        if datagram.len() < HEADER_LEN + TAG_LEN + 1 || datagram.len() > MAX_DATAGRAM {
            return Err(MediaError::Malformed);
        }
        if datagram[0] != VERSION {
            return Err(MediaError::Malformed);
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&datagram[1..HEADER_LEN]);
        let seq = u64::from_be_bytes(seq_bytes);
        if !self.replay.check(seq) {
            return Err(MediaError::Replayed);
        }
        let mut plain = vec![0u8; datagram.len()];
        let n = self
            .keys
            .transport
            .read_message(seq, &datagram[HEADER_LEN..], &mut plain)
            .map_err(|_| MediaError::Forged)?;
        self.replay.record(seq);
        plain.truncate(n);
        Ok((seq, parse(&plain)?))
    }
}

impl MediaFrame {
    /// Parses a decrypted datagram body, as [`MediaCrypto::open`] does after the AEAD
    /// (public for the fuzz target `media_frame`; nothing else needs it).
    pub fn parse_plain(plain: &[u8]) -> Result<MediaFrame, MediaError> {
        parse(plain)
    }
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn parse(plain: &[u8]) -> Result<MediaFrame, MediaError> {
    let (&kind, body) = plain.split_first().ok_or(MediaError::Malformed)?;
    match kind {
        1 => {
            let frame = be_u64(body).ok_or(MediaError::Malformed)?;
            Ok(MediaFrame::Audio {
                frame,
                opus: body[8..].to_vec(),
            })
        }
        2 if body.is_empty() => Ok(MediaFrame::Bye),
        3 if body.len() == 16 => Ok(MediaFrame::Report {
            received: be_u64(body).ok_or(MediaError::Malformed)?,
            lost: be_u64(&body[8..]).ok_or(MediaError::Malformed)?,
        }),
        4 if body.len() == 8 => Ok(MediaFrame::Ping(be_u64(body).ok_or(MediaError::Malformed)?)),
        5 if body.len() == 8 => Ok(MediaFrame::Pong(be_u64(body).ok_or(MediaError::Malformed)?)),
        6 => parse_red_audio(body).ok_or(MediaError::Malformed),
        7 if body.len() == 1 => Ok(MediaFrame::Features(body[0])),
        8 => parse_roster(body).ok_or(MediaError::Malformed),
        _ => Err(MediaError::Malformed),
    }
}

/// Kind 8 strictly: the exact length for `n`, 2 ≤ n ≤ 8, valid and distinct keys.
fn parse_roster(body: &[u8]) -> Option<MediaFrame> {
    let epoch = u32::from_be_bytes(body.get(..4)?.try_into().ok()?);
    let n = usize::from(*body.get(4)?);
    let keys = body.get(5..)?;
    if !(2..=MAX_MEMBERS).contains(&n) || keys.len() != n * 32 {
        return None;
    }
    let mut members: Vec<PeerId> = Vec::with_capacity(n);
    for key in keys.chunks_exact(32) {
        let id = PeerId::from_bytes(key.try_into().ok()?).ok()?;
        if members.contains(&id) {
            return None;
        }
        members.push(id);
    }
    Some(MediaFrame::Roster { epoch, members })
}

/// Kind 6 strictly: 1 to [`MAX_REDUNDANT`] non-empty copies that fit, of frames that exist.
fn parse_red_audio(body: &[u8]) -> Option<MediaFrame> {
    let frame = be_u64(body)?;
    let (&n, mut rest) = body.get(8..)?.split_first()?;
    let n = usize::from(n);
    if n == 0 || n > MAX_REDUNDANT || frame < n as u64 {
        return None;
    }
    let mut older = Vec::with_capacity(n);
    for _ in 0..n {
        let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
        let copy = rest.get(2..2 + len)?;
        if copy.is_empty() {
            return None;
        }
        older.push(copy.to_vec());
        rest = &rest[2 + len..];
    }
    Some(MediaFrame::RedAudio {
        frame,
        opus: rest.to_vec(),
        older,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::e2e::{initiate, prologue, respond};
    use crate::Identity;

    fn pair() -> (MediaCrypto, MediaCrypto) {
        let (a, b) = (Identity::generate(), Identity::generate());
        let p = prologue(&[1; 16], &a.peer_id(), &b.peer_id());
        let (pending, m1) = initiate(&a, &b.peer_id(), &p).unwrap();
        let (kb, m2) = respond(&b, &a.peer_id(), &p, &m1).unwrap();
        let ka = pending.finish(&m2).unwrap();
        (MediaCrypto::new(ka), MediaCrypto::new(kb))
    }

    fn audio(n: u64) -> MediaFrame {
        MediaFrame::Audio {
            frame: n,
            opus: vec![n as u8; 80],
        }
    }

    #[test]
    fn frames_round_trip_both_ways() {
        let (mut a, mut b) = pair();
        for f in [
            audio(0),
            MediaFrame::Bye,
            MediaFrame::Report {
                received: 9,
                lost: 1,
            },
            MediaFrame::Ping(77),
            MediaFrame::Pong(78),
            MediaFrame::RedAudio {
                frame: 9,
                opus: vec![9; 60],
                older: vec![vec![8; 61], vec![7; 1]],
            },
            MediaFrame::Features(FEATURE_RED_AUDIO),
            MediaFrame::Roster {
                epoch: 3,
                members: vec![
                    Identity::generate().peer_id(),
                    Identity::generate().peer_id(),
                ],
            },
        ] {
            let d = a.seal(&f);
            assert_eq!(b.open(&d).unwrap().1, f);
            let d = b.seal(&f);
            assert_eq!(a.open(&d).unwrap().1, f);
        }
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let (mut a, mut b) = pair();
        let d = a.seal(&audio(3));
        for i in 0..d.len() {
            for bit in 0..8 {
                let mut t = d.clone();
                t[i] ^= 1 << bit;
                assert!(b.open(&t).is_err(), "byte {i} bit {bit}");
            }
        }
        assert!(
            b.open(&d).is_ok(),
            "the original still opens after the forgeries"
        );
    }

    #[test]
    fn replays_are_dropped_but_reordering_is_fine() {
        let (mut a, mut b) = pair();
        let d: Vec<Vec<u8>> = (0..5).map(|i| a.seal(&audio(i))).collect();
        assert!(b.open(&d[1]).is_ok());
        assert!(b.open(&d[0]).is_ok());
        assert_eq!(b.open(&d[1]).err(), Some(MediaError::Replayed));
        assert!(b.open(&d[4]).is_ok());
        assert!(b.open(&d[3]).is_ok());
        assert_eq!(b.open(&d[3]).err(), Some(MediaError::Replayed));
    }

    #[test]
    fn the_window_holds_128_and_refuses_older() {
        let mut w = ReplayWindow::default();
        w.record(1000);
        assert!(w.check(1000 - 127));
        assert!(!w.check(1000 - 128));
        w.record(900);
        assert!(!w.check(900));
        w.record(1300);
        assert!(!w.check(1000));
        assert!(w.check(1299));
    }

    #[test]
    fn red_audio_is_parsed_strictly() {
        let ok = [6, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 1, 0xaa, 0xbb];
        assert_eq!(
            parse(&ok),
            Ok(MediaFrame::RedAudio {
                frame: 2,
                opus: vec![0xbb],
                older: vec![vec![0xaa]],
            })
        );
        let bad: [&[u8]; 6] = [
            &[6, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xbb], // no copy
            &[
                6, 0, 0, 0, 0, 0, 0, 0, 9, 4, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1,
            ], // too many
            &[6, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0xaa], // frame -1
            &[6, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0xbb], // empty copy
            &[6, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 9, 0xaa], // copy overruns
            &[7, 1, 0],                            // features too long
        ];
        for b in bad {
            assert_eq!(parse(b), Err(MediaError::Malformed), "{b:?}");
        }
    }

    #[test]
    fn rosters_are_parsed_strictly() {
        let keys: Vec<[u8; 32]> = (0..9)
            .map(|_| Identity::generate().peer_id().to_bytes())
            .collect();
        let roster = |epoch: u32, n: u8, members: &[[u8; 32]]| {
            let mut b = vec![8];
            b.extend_from_slice(&epoch.to_be_bytes());
            b.push(n);
            for m in members {
                b.extend_from_slice(m);
            }
            b
        };
        let ok = parse(&roster(7, 3, &keys[..3])).unwrap();
        let MediaFrame::Roster { epoch, members } = ok else {
            panic!("a roster")
        };
        assert_eq!((epoch, members.len()), (7, 3));
        assert!(parse(&roster(7, 8, &keys[..8])).is_ok(), "eight people");
        let mut short = roster(7, 2, &keys[..2]);
        short.pop();
        let mut long = roster(7, 2, &keys[..2]);
        long.push(0);
        // A 32-byte string that is not an ed25519 point (about half of all are not).
        let invalid = (0u8..=255)
            .map(|b| [b; 32])
            .find(|k| PeerId::from_bytes(k).is_err())
            .expect("some byte pattern is not a curve point");
        let bad: Vec<(&str, Vec<u8>)> = vec![
            ("one member", roster(7, 1, &keys[..1])),
            ("nine members", roster(7, 9, &keys[..9])),
            ("count says 3, holds 2", roster(7, 3, &keys[..2])),
            ("a byte short", short),
            ("a byte over", long),
            ("twice the same key", roster(7, 2, &[keys[0], keys[0]])),
            ("no count", vec![8, 0, 0, 0, 7]),
        ];
        for (what, b) in bad {
            assert_eq!(parse(&b), Err(MediaError::Malformed), "{what}");
        }
        assert_eq!(
            parse(&roster(7, 2, &[keys[0], invalid])),
            Err(MediaError::Malformed),
            "not a key"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let (_, mut b) = pair();
        for len in 0..200 {
            let _ = b.open(&vec![1u8; len]);
            let _ = b.open(&vec![0u8; len]);
        }
    }
}
