//! The harness of the media engine's tests (`session_tests`): whole calls on a virtual
//! clock, two [`MediaSession`]s joined by seeded impaired links (one per direction and
//! path), with a stand-in codec whose packets carry the frame number, so what each side
//! played can be checked frame by frame.

use super::impair::{ImpairConfig, Impairment};
use super::session::*;
use super::{PathKind, Playout};
use crate::call::e2e::{initiate, prologue, respond};
use crate::call::media::MediaCrypto;
use crate::time::Timestamp;
use crate::Identity;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub(super) const T0: u64 = 1_000_000;

/// Packets carry the frame's first sample; rebuilt frames play -1, concealed ones -2.
pub(super) struct FakeCodec {
    pub(super) targets: Vec<EncoderTarget>,
}

impl MediaCodec for FakeCodec {
    fn encode(&mut self, pcm: &[f32]) -> Result<Vec<u8>, HostError> {
        Ok(pcm[0].to_be_bytes().to_vec())
    }
    fn decode(&mut self, playout: &Playout) -> Result<(Vec<f32>, Decoded), HostError> {
        let (v, how) = match playout {
            Playout::Frame { payload, .. } | Playout::Redundant { payload, .. } => (
                payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map(f32::from_be_bytes)
                    .unwrap_or(-3.0),
                Decoded::Packet,
            ),
            Playout::Fec { .. } => (-1.0, Decoded::Fec),
            Playout::Recover { .. } => (-1.0, Decoded::Dred),
            Playout::Conceal { .. } => (-2.0, Decoded::Concealed),
        };
        Ok((vec![v; FRAME_SAMPLES], how))
    }
    fn set_target(&mut self, target: &EncoderTarget) -> Result<(), HostError> {
        self.targets.push(*target);
        Ok(())
    }
}

/// Captures frames numbered 1..=frames (then ends, if `ends`), records what it plays.
pub(super) struct Port {
    pub(super) next: u32,
    pub(super) frames: u32,
    pub(super) ends: bool,
    pub(super) played: Vec<(Timestamp, PlayKind, f32)>,
    pub(super) clock: Timestamp,
}

impl AudioPort for Port {
    fn capture(&mut self) -> Option<Vec<f32>> {
        if self.next >= self.frames {
            return (!self.ends).then(|| vec![0.0; FRAME_SAMPLES]);
        }
        self.next += 1;
        Some(vec![self.next as f32; FRAME_SAMPLES])
    }
    fn play(&mut self, pcm: &[f32], kind: PlayKind) -> Result<(), HostError> {
        self.played.push((self.clock, kind, pcm[0]));
        Ok(())
    }
}

pub(super) type Session = MediaSession<FakeCodec, Port>;

pub(super) fn crypto_pair() -> (MediaCrypto, MediaCrypto) {
    let (a, b) = (Identity::generate(), Identity::generate());
    let p = prologue(&[7; 16], &a.peer_id(), &b.peer_id());
    let (pending, m1) = initiate(&a, &b.peer_id(), &p).expect("initiate");
    let (kb, m2) = respond(&b, &a.peer_id(), &p, &m1).expect("respond");
    let ka = pending.finish(&m2).expect("finish");
    (MediaCrypto::new(ka), MediaCrypto::new(kb))
}

pub(super) fn session(
    crypto: MediaCrypto,
    config: SessionConfig,
    frames: u32,
    ends: bool,
) -> Session {
    let port = Port {
        next: 0,
        frames,
        ends,
        played: Vec::new(),
        clock: Timestamp(T0),
    };
    let codec = FakeCodec {
        targets: Vec::new(),
    };
    MediaSession::new(config, crypto, codec, port, Timestamp(T0)).expect("session")
}

/// A datagram on its way: arrival, order sent, receiving side, path, bytes.
pub(super) type Flight = Reverse<(Timestamp, u64, usize, PathKind, Vec<u8>)>;

/// One direction of one path.
pub(super) struct Link {
    pub(super) channel: Impairment,
    pub(super) alive: bool,
}

/// Two sessions, `a` (index 0) and `b` (1), and the links between them.
pub(super) struct Call {
    pub(super) s: [Session; 2],
    /// links[from][path index]: 0 direct, 1 relay 0.
    pub(super) links: [[Link; 2]; 2],
    pub(super) in_flight: BinaryHeap<Flight>,
    pub(super) order: u64,
    pub(super) now: Timestamp,
}

pub(super) fn link(config: ImpairConfig) -> Link {
    Link {
        channel: Impairment::new(config),
        alive: true,
    }
}

pub(super) fn path_index(p: PathKind) -> usize {
    match p {
        PathKind::Direct => 0,
        PathKind::Relay(_) => 1,
    }
}

impl Call {
    /// `a` sends `frames` then ends; `b` sends silence. Both paths up, same impairment
    /// on every link (each with its own seed).
    pub(super) fn new(config: SessionConfig, frames: u32, impair: ImpairConfig) -> Call {
        Call::with_configs(config.clone(), config, frames, impair)
    }

    pub(super) fn with_configs(
        ca: SessionConfig,
        cb: SessionConfig,
        frames: u32,
        impair: ImpairConfig,
    ) -> Call {
        let (ka, kb) = crypto_pair();
        let mut s = [session(ka, ca, frames, true), session(kb, cb, 0, false)];
        for x in &mut s {
            x.expect_paths(&[PathKind::Direct, PathKind::Relay(0)]);
            x.path_up(Timestamp(T0), PathKind::Direct);
            x.path_up(Timestamp(T0), PathKind::Relay(0));
        }
        let seeded = |n: u64| {
            link(ImpairConfig {
                seed: impair.seed.wrapping_add(n),
                ..impair
            })
        };
        Call {
            s,
            links: [[seeded(1), seeded(2)], [seeded(3), seeded(4)]],
            in_flight: BinaryHeap::new(),
            order: 0,
            now: Timestamp(T0),
        }
    }

    /// Runs until both sessions ended or `limit_ms` passed; after each ms, `each`.
    pub(super) fn run(&mut self, limit_ms: u64, mut each: impl FnMut(&mut Call)) {
        let end = Timestamp(self.now.0 + limit_ms);
        while self.now < end && self.s.iter().any(|s| s.ended().is_none()) {
            let now = self.now;
            while self
                .in_flight
                .peek()
                .is_some_and(|Reverse((at, ..))| *at <= now)
            {
                if let Some(Reverse((_, _, to, path, bytes))) = self.in_flight.pop() {
                    self.s[to].handle_datagram(now, path, &bytes);
                }
            }
            for i in 0..2 {
                self.s[i].audio_mut().clock = now;
                if self.s[i].poll_timeout().is_some_and(|t| t <= now) {
                    self.s[i].handle_timeout(now).expect("tick");
                }
                while let Some(t) = self.s[i].poll_transmit() {
                    let l = &mut self.links[i][path_index(t.path)];
                    if !l.alive {
                        continue;
                    }
                    for at in l.channel.send(now) {
                        self.order += 1;
                        self.in_flight.push(Reverse((
                            at,
                            self.order,
                            1 - i,
                            t.path,
                            t.bytes.clone(),
                        )));
                    }
                }
            }
            each(self);
            self.now = Timestamp(now.0 + 1);
        }
    }

    /// What `b` played: (time, kind, value) for the periods after its first frame.
    pub(super) fn played_by_b(&mut self) -> Vec<(Timestamp, PlayKind, f32)> {
        let played = &self.s[1].audio_mut().played;
        let first = played
            .iter()
            .position(|p| matches!(p.1, PlayKind::Frame(_)))
            .unwrap_or(played.len());
        played[first..].to_vec()
    }

    pub(super) fn events(&mut self, i: usize) -> Vec<MediaEvent> {
        std::iter::from_fn(|| self.s[i].poll_event()).collect()
    }
}

pub(super) fn frames_in_order(played: &[(Timestamp, PlayKind, f32)]) -> Vec<f32> {
    played.iter().map(|p| p.2).filter(|v| *v > 0.0).collect()
}
