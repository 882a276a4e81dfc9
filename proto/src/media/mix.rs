//! The mixing bus of a conference hosted by one participant (see docs/architecture.md,
//! "Conference calls"): every member (the host's own microphone and speaker, and one
//! two-party call per other participant) pushes the 20 ms frames it says and pulls the
//! frames it hears; a member hears the sum of the *selected* other members, never
//! itself.
//!
//! Sans-IO and clock-free like the rest of the media engine: the shell calls
//! [`MixBus::push`] with each frame a member said and [`MixBus::pull`] once per period a
//! member plays, at each member's own cadence (every leg runs its own media clock), and
//! drains [`MixBus::poll_event`] after each call.
//!
//! - **Who is heard** (active-speaker selection, as conference bridges do since the
//!   G.7xx MCUs): a member is *talking* while its frames are louder than
//!   [`MixConfig::speech_dbfs`], and for [`MixConfig::hold_frames`] after (so words are
//!   not cut between syllables). At most [`MixConfig::max_active`] talking members are
//!   mixed, the loudest by short-term level; one that is mixed stays mixed while it
//!   talks unless a member louder by [`MixConfig::preempt_db`] needs its place. Members
//!   not selected are silent in the mix: eight open microphones add one or two noise
//!   floors, not eight.
//! - **Gains** move linearly across one frame (no clicks when a speaker comes and goes).
//! - **Limiter** (per listener): a sum above [`MixConfig::ceiling`] is scaled down at
//!   once for the whole frame (no clipping), and the gain recovers by
//!   [`MixConfig::release_db_per_frame`] per frame afterwards.
//! - **Timing**: frames wait per (listener, speaker) in a queue of at most
//!   [`MixConfig::queue_frames`] (oldest dropped: stale audio is worthless). Every leg
//!   runs its own 20 ms clock, so a listener's pulls and a speaker's pushes interleave
//!   in no fixed order, and with timer jitter the order flips from one period to the
//!   next. A queue therefore starts being heard only once it holds [`PRIME_FRAMES`]
//!   frames (one frame of slack) and primes again after running dry; a queue that never
//!   drained below [`PRIME_FRAMES`] + 1 over [`TRIM_WINDOW`] pulls (one second) drops
//!   one frame. The bus adds one to two frames (20–40 ms) of delay.

use std::collections::{BTreeMap, VecDeque};

use super::FRAME_SAMPLES;

/// Pulls over which a queue's lowest length is watched before trimming it.
pub const TRIM_WINDOW: u32 = 50;

/// Frames a queue must hold before it is heard (again).
pub const PRIME_FRAMES: usize = 2;

/// A member of the bus, named by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u32);

/// Tunables of a [`MixBus`]; the defaults suit 20 ms frames of speech at 48 kHz.
#[derive(Clone, Debug, PartialEq)]
pub struct MixConfig {
    /// Most members mixed at once (default 3).
    pub max_active: usize,
    /// A frame louder than this (RMS, dBFS) is speech (default −45 dBFS: above a quiet
    /// microphone's noise, below soft speech at −30).
    pub speech_dbfs: f32,
    /// Frames a member stays talking after its last loud frame (default 25 = 500 ms).
    pub hold_frames: u32,
    /// How much louder (smoothed level, dB) a talking member must be to take a mixed
    /// member's place when all places are taken (default 6 dB).
    pub preempt_db: f32,
    /// Largest sample magnitude a listener gets (default 0.9, about −1 dBFS).
    pub ceiling: f32,
    /// How fast the limiter's gain recovers, dB per frame (default 1 dB: 20 dB in
    /// 400 ms).
    pub release_db_per_frame: f32,
    /// Most frames waiting per (listener, speaker) (default 5 = 100 ms).
    pub queue_frames: usize,
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig {
            max_active: 3,
            speech_dbfs: -45.0,
            hold_frames: 25,
            preempt_db: 6.0,
            ceiling: 0.9,
            release_db_per_frame: 1.0,
            queue_frames: 5,
        }
    }
}

/// What the bus reports.
#[derive(Clone, Debug, PartialEq)]
pub enum MixEvent {
    /// A member entered (`true`) or left (`false`) the mix: it is heard now, or no more.
    Speaking {
        /// The member.
        member: MemberId,
        /// Whether it is mixed from now on.
        speaking: bool,
    },
}

/// Counters of a [`MixBus`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MixStats {
    /// Frames dropped because a listener's queue was full (it pulled too slowly).
    pub dropped_full: u64,
    /// Frames dropped to cut standing delay (see [`TRIM_WINDOW`]).
    pub dropped_trim: u64,
    /// Pulls that found a heard queue empty (its speaker pushed late: a 20 ms gap).
    pub underruns: u64,
    /// Frames the limiter turned down.
    pub limited: u64,
}

/// Frames from one speaker waiting for one listener.
#[derive(Default)]
struct Inbox {
    frames: VecDeque<Vec<f32>>,
    /// Gain applied at the end of the last frame mixed from it.
    gain: f32,
    /// Lowest queue length seen at a pull in this window, and pulls so far.
    low: usize,
    pulls: u32,
    /// Whether it is being heard (it held [`PRIME_FRAMES`] since it last ran dry).
    primed: bool,
}

struct Member {
    /// Smoothed level, dBFS.
    level_db: f32,
    /// Frames of talking left (0: silent).
    hold: u32,
    active: bool,
    /// Frames from every other member, waiting for this one.
    inboxes: BTreeMap<MemberId, Inbox>,
    /// The limiter's gain at the end of the last frame.
    limiter: f32,
}

/// The mixing bus: see the module docs.
pub struct MixBus {
    config: MixConfig,
    members: BTreeMap<MemberId, Member>,
    events: VecDeque<MixEvent>,
    stats: MixStats,
}

/// Level of a frame, dBFS RMS (−120 for silence).
pub fn frame_dbfs(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return -120.0;
    }
    let power = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
    (10.0 * (power + 1e-12).log10()).max(-120.0)
}

impl MixBus {
    /// An empty bus.
    pub fn new(config: MixConfig) -> MixBus {
        MixBus {
            config,
            members: BTreeMap::new(),
            events: VecDeque::new(),
            stats: MixStats::default(),
        }
    }

    /// Adds a member (silent, hearing what is said from now on). Adding one twice
    /// changes nothing.
    pub fn add(&mut self, id: MemberId) {
        if self.members.contains_key(&id) {
            return;
        }
        let others: Vec<MemberId> = self.members.keys().copied().collect();
        for m in self.members.values_mut() {
            m.inboxes.insert(id, Inbox::default());
        }
        self.members.insert(
            id,
            Member {
                level_db: -120.0,
                hold: 0,
                active: false,
                inboxes: others.into_iter().map(|o| (o, Inbox::default())).collect(),
                limiter: 1.0,
            },
        );
    }

    /// Removes a member and whatever it said that was not heard yet.
    pub fn remove(&mut self, id: MemberId) {
        let Some(gone) = self.members.remove(&id) else {
            return;
        };
        if gone.active {
            self.events.push_back(MixEvent::Speaking {
                member: id,
                speaking: false,
            });
        }
        for m in self.members.values_mut() {
            m.inboxes.remove(&id);
        }
        self.select();
    }

    /// The members, in order.
    pub fn members(&self) -> Vec<MemberId> {
        self.members.keys().copied().collect()
    }

    /// The members mixed now.
    pub fn speaking(&self) -> Vec<MemberId> {
        self.members
            .iter()
            .filter(|(_, m)| m.active)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Counters so far.
    pub fn stats(&self) -> MixStats {
        self.stats
    }

    /// One frame ([`FRAME_SAMPLES`] samples; shorter is padded, longer cut) that `id`
    /// said. Ignored for an unknown member.
    pub fn push(&mut self, id: MemberId, frame: &[f32]) {
        let cfg = &self.config;
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let db = frame_dbfs(frame);
        if m.hold == 0 && db > cfg.speech_dbfs {
            // Starting to talk: compared at its own level from the first frame.
            m.level_db = db;
        }
        // Fast attack, slower decay: about 60 ms up, 200 ms down.
        let alpha = if db > m.level_db { 0.3 } else { 0.1 };
        m.level_db += alpha * (db - m.level_db);
        if db > cfg.speech_dbfs {
            m.hold = cfg.hold_frames.max(1);
        } else {
            m.hold = m.hold.saturating_sub(1);
        }
        let mut owned = frame.to_vec();
        owned.resize(FRAME_SAMPLES, 0.0);
        let limit = cfg.queue_frames.max(1);
        for (listener, member) in self.members.iter_mut() {
            if *listener == id {
                continue;
            }
            if let Some(inbox) = member.inboxes.get_mut(&id) {
                if inbox.frames.len() >= limit {
                    inbox.frames.pop_front();
                    self.stats.dropped_full += 1;
                }
                inbox.frames.push_back(owned.clone());
            }
        }
        self.select();
    }

    /// What `id` hears for the next period: the selected other members' frames, summed
    /// and limited. Silence for an unknown member.
    pub fn pull(&mut self, id: MemberId) -> Vec<f32> {
        let mut out = vec![0.0f32; FRAME_SAMPLES];
        let active: BTreeMap<MemberId, bool> =
            self.members.iter().map(|(k, m)| (*k, m.active)).collect();
        let cfg = &self.config;
        let Some(me) = self.members.get_mut(&id) else {
            return out;
        };
        for (speaker, inbox) in me.inboxes.iter_mut() {
            let target = if active.get(speaker).copied().unwrap_or(false) {
                1.0
            } else {
                0.0
            };
            // Standing delay: trim one frame when the queue never ran low in a window.
            inbox.low = if inbox.pulls == 0 {
                inbox.frames.len()
            } else {
                inbox.low.min(inbox.frames.len())
            };
            inbox.pulls += 1;
            if inbox.pulls >= TRIM_WINDOW {
                if inbox.low > PRIME_FRAMES {
                    inbox.frames.pop_front();
                    self.stats.dropped_trim += 1;
                }
                inbox.pulls = 0;
            }
            if !inbox.primed && inbox.frames.len() >= PRIME_FRAMES {
                inbox.primed = true;
            }
            let next = if inbox.primed {
                inbox.frames.pop_front()
            } else {
                None
            };
            let Some(frame) = next else {
                if inbox.primed {
                    inbox.primed = false;
                    self.stats.underruns += 1;
                }
                inbox.gain = 0.0;
                continue;
            };
            let (from, step) = (inbox.gain, (target - inbox.gain) / FRAME_SAMPLES as f32);
            if from == 0.0 && target == 0.0 {
                continue;
            }
            for (i, (o, s)) in out.iter_mut().zip(&frame).enumerate() {
                *o += s * (from + step * (i + 1) as f32);
            }
            inbox.gain = target;
        }
        let peak = out.iter().fold(0.0f32, |p, s| p.max(s.abs()));
        let recovered = (me.limiter * 10f32.powf(cfg.release_db_per_frame / 20.0)).min(1.0);
        let gain = if peak * recovered > cfg.ceiling {
            self.stats.limited += 1;
            cfg.ceiling / peak
        } else {
            recovered
        };
        let from = me.limiter;
        let step = (gain - from) / FRAME_SAMPLES as f32;
        for (i, o) in out.iter_mut().enumerate() {
            // Attack at once (the whole frame at the new gain), release along a ramp.
            let g = if gain < from {
                gain
            } else {
                from + step * (i + 1) as f32
            };
            *o = (*o * g).clamp(-cfg.ceiling, cfg.ceiling);
        }
        me.limiter = gain;
        out
    }

    /// The next event, if any. Drain after every [`push`](Self::push),
    /// [`pull`](Self::pull), [`add`](Self::add) and [`remove`](Self::remove).
    pub fn poll_event(&mut self) -> Option<MixEvent> {
        self.events.pop_front()
    }

    /// Recomputes who is mixed (see the module docs).
    fn select(&mut self) {
        let cfg = &self.config;
        let mut chosen: Vec<(MemberId, f32)> = self
            .members
            .iter()
            .filter(|(_, m)| m.active && m.hold > 0)
            .map(|(id, m)| (*id, m.level_db))
            .collect();
        let mut waiting: Vec<(MemberId, f32)> = self
            .members
            .iter()
            .filter(|(_, m)| !m.active && m.hold > 0)
            .map(|(id, m)| (*id, m.level_db))
            .collect();
        // Loudest first.
        waiting.sort_by(|a, b| b.1.total_cmp(&a.1));
        for candidate in waiting {
            if chosen.len() < cfg.max_active.max(1) {
                chosen.push(candidate);
                continue;
            }
            let Some((quietest, _)) = chosen
                .iter()
                .enumerate()
                .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .map(|(i, c)| (i, c.1))
            else {
                break;
            };
            if candidate.1 > chosen[quietest].1 + cfg.preempt_db {
                chosen[quietest] = candidate;
            }
        }
        for (id, m) in self.members.iter_mut() {
            let now = chosen.iter().any(|(c, _)| c == id);
            if now != m.active {
                m.active = now;
                self.events.push_back(MixEvent::Speaking {
                    member: *id,
                    speaking: now,
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "mix_tests.rs"]
mod tests;
