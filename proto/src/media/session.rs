//! The media engine of one call, sans-IO: [`MediaSession`].
//!
//! It owns everything about a connected call's media that is a decision rather than a
//! byte moved: the 20 ms cadence (capture, encode, seal, send; pop, decode, play), the
//! receiver reports and the sender's rate controller they feed, per-path probes and the
//! path choice ([`PathSet`]), mute, hang-up (Bye) and the timeouts: a call with no
//! working media path fails, a silent peer is reported as stalled after
//! [`STALL_AFTER`] and the call ends as lost after [`PEER_TIMEOUT`]. The shell (the
//! client's async loop, the quality benchmark's virtual network) only moves datagrams
//! and calls:
//!
//! - [`MediaSession::handle_timeout`] at (or after) [`MediaSession::poll_timeout`];
//! - [`MediaSession::handle_datagram`] for every datagram that arrives on a path;
//! - [`MediaSession::path_up`] / [`MediaSession::path_down`] / [`MediaSession::path_failed`];
//! - then drains [`MediaSession::poll_transmit`] and [`MediaSession::poll_event`].
//!
//! Time is a monotonic millisecond clock ([`Timestamp`]) supplied by the caller. Audio is
//! reached through two small traits so that this crate stays free of libopus and sound
//! devices: [`MediaCodec`] (encode, decode a [`Playout`], apply an [`EncoderTarget`]) and
//! [`AudioPort`] (capture one frame, play one frame).

use super::group::RosterSync;
use super::paths::{PathKind, PathSet};
use super::rate::{RateController, RateTarget};
pub use super::session_config::{
    SessionConfig, PEER_TIMEOUT, SETUP_TIMEOUT, STALL_AFTER, STALL_GRACE,
};
pub use super::session_io::{
    AudioPort, Decoded, EncoderTarget, EndReason, HostError, MediaCodec, MediaEvent, PlayKind,
    Recovery, SessionStats, Transmit, TransmitKind, FRAME_SAMPLES,
};
use super::{JitterBuffer, Playout};
use crate::call::media::{
    MediaCrypto, MediaError, MediaFrame, FEATURE_RED_AUDIO, MAX_DATAGRAM, MAX_REDUNDANT,
};
use crate::time::Timestamp;
use std::collections::VecDeque;
use std::time::Duration;

/// The media engine of one call; see the module docs.
pub struct MediaSession<C, A> {
    config: SessionConfig,
    crypto: MediaCrypto,
    codec: C,
    audio: A,
    jitter: JitterBuffer,
    rate: Option<RateController>,
    target: EncoderTarget,
    paths: PathSet,
    start: Timestamp,
    next_tick: Timestamp,
    ticks: u64,
    frame_no: u64,
    muted: bool,
    /// The packets of the last frames sent, newest first (for redundant copies).
    history: VecDeque<Vec<u8>>,
    played_audio: bool,
    input_done_at: Option<Timestamp>,
    first_heard: Option<Timestamp>,
    last_heard: Option<Timestamp>,
    last_audio: Option<Timestamp>,
    /// Whether [`MediaEvent::Stalled`] was reported for the current silence.
    stalled: bool,
    /// When `handle_timeout` last ran, and when it last resumed after a stall.
    last_wake: Option<Timestamp>,
    resumed_at: Timestamp,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MediaEvent>,
    ended: Option<EndReason>,
    stats: SessionStats,
    /// The conference member list sent (host) or last shown (participant).
    roster: RosterSync,
}

impl<C: MediaCodec, A: AudioPort> MediaSession<C, A> {
    /// A call starting at `now`; the first period is at `now`.
    pub fn new(
        config: SessionConfig,
        crypto: MediaCrypto,
        mut codec: C,
        audio: A,
        now: Timestamp,
    ) -> Result<Self, HostError> {
        let rate = config.rate.clone().map(RateController::new);
        let target = match &rate {
            Some(r) => from_rate(r.target(), r.measured_loss()),
            None => config.fixed_target,
        };
        codec.set_target(&target)?;
        let stats = SessionStats {
            target: Some(target),
            bitrate_min_bps: target.bitrate_bps,
            bitrate_max_bps: target.bitrate_bps,
            ..SessionStats::default()
        };
        Ok(MediaSession {
            jitter: JitterBuffer::new(config.jitter.clone()),
            config,
            crypto,
            codec,
            audio,
            rate,
            target,
            paths: PathSet::default(),
            start: now,
            next_tick: now,
            ticks: 0,
            frame_no: 0,
            muted: false,
            history: VecDeque::with_capacity(MAX_REDUNDANT),
            played_audio: false,
            input_done_at: None,
            first_heard: None,
            last_heard: None,
            last_audio: None,
            stalled: false,
            last_wake: None,
            resumed_at: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ended: None,
            stats,
            roster: RosterSync::default(),
        })
    }

    /// The paths the shell is bringing up: once every one has failed (and none is up),
    /// the call ends at once with [`EndReason::NoMediaPath`]. Without this call only the
    /// setup timeout ends such a call.
    pub fn expect_paths(&mut self, kinds: &[PathKind]) {
        self.paths.expect(kinds);
    }

    /// A path is up and may be sent on (it is probed from the next period).
    pub fn path_up(&mut self, _now: Timestamp, kind: PathKind) {
        self.paths.up(kind);
    }

    /// A path's connection closed.
    pub fn path_down(&mut self, now: Timestamp, kind: PathKind) {
        self.paths.down(kind);
        self.check_no_path(now);
    }

    /// A path could not be brought up, and why (shown if the call ends for lack of one).
    pub fn path_failed(&mut self, now: Timestamp, kind: PathKind, why: impl Into<String>) {
        self.paths.failed(kind, why.into());
        self.check_no_path(now);
    }

    /// Mutes (sends silence, keeps the stream and its timing) or unmutes.
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
        self.stats.muted = muted;
    }

    /// Hosting a conference: its members are now `members` (this side included). Sent to
    /// the peer at once and repeated about once a second, so a lost datagram costs at
    /// most a second ([`crate::media::group`]).
    pub fn set_roster(&mut self, now: Timestamp, members: Vec<crate::PeerId>) {
        let frame = self.roster.set(members);
        if let Some(path) = self.current_path(now) {
            self.send(path, &frame, TransmitKind::Control);
        }
    }

    /// Whether sending is muted.
    pub fn is_muted(&self) -> bool {
        self.muted
    }

    /// Hangs up: queues the Byes and ends the call.
    pub fn hang_up(&mut self, now: Timestamp) {
        self.end(now, EndReason::LocalHangup);
    }

    /// The reason the call ended, once it has.
    pub fn ended(&self) -> Option<&EndReason> {
        self.ended.as_ref()
    }

    /// The path sends use now.
    pub fn current_path(&self, now: Timestamp) -> Option<PathKind> {
        self.paths.current(now, self.config.path_dead_after)
    }

    /// The paths that are up, preferred first.
    pub fn open_paths(&self) -> Vec<PathKind> {
        self.paths.open().collect()
    }

    /// Counters, as of now.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            jitter: self.jitter.stats(),
            ..self.stats.clone()
        }
    }

    /// The audio port (to finish a recording after the call).
    pub fn audio_mut(&mut self) -> &mut A {
        &mut self.audio
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next: the next frame
    /// period. `None` once the call has ended.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.ended.is_none().then_some(self.next_tick)
    }

    /// Runs every period due by `now` (a late shell catches up, as a sound card would
    /// demand), and the timeouts.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Result<(), HostError> {
        // Woken much later than asked (this process stalled): what the peer sent
        // meanwhile may still be queued unread, so silence is not judged for a moment.
        if self
            .last_wake
            .is_some_and(|t| now.since(t) > self.config.frame * 5)
        {
            self.resumed_at = now;
        }
        self.last_wake = Some(now);
        while self.ended.is_none() && self.next_tick <= now {
            let at = self.next_tick;
            self.tick(at)?;
            self.ticks += 1;
            self.next_tick = self.start + self.config.frame * (self.ticks as u32);
        }
        Ok(())
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the shell.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// A datagram arrived on `path`. Forged, replayed and malformed ones are counted and
    /// dropped; nothing here panics on network input.
    pub fn handle_datagram(&mut self, now: Timestamp, path: PathKind, bytes: &[u8]) {
        if self.ended.is_some() {
            return;
        }
        let frame = match self.crypto.open(bytes) {
            Ok((_, frame)) => frame,
            Err(MediaError::Forged) => return self.stats.forged += 1,
            Err(MediaError::Replayed) => return self.stats.replayed += 1,
            Err(MediaError::Malformed) => return self.stats.malformed += 1,
        };
        self.first_heard.get_or_insert(now);
        if self.stalled {
            self.stalled = false;
            let silent_ms = self
                .last_heard
                .map_or(0, |t| now.since(t).as_millis() as u64);
            self.events.push_back(MediaEvent::Resumed { silent_ms });
        }
        self.last_heard = Some(now);
        match frame {
            MediaFrame::Audio { frame, opus } => self.on_audio(now, path, frame, opus, Vec::new()),
            MediaFrame::RedAudio { frame, opus, older } => {
                self.on_audio(now, path, frame, opus, older)
            }
            MediaFrame::Features(flags) => {
                let accepts = flags & FEATURE_RED_AUDIO != 0;
                if accepts != self.stats.peer_accepts_redundancy {
                    self.stats.peer_accepts_redundancy = accepts;
                    if let Some(rate) = &mut self.rate {
                        rate.set_redundancy_available(accepts);
                    }
                    self.apply_rate();
                }
            }
            MediaFrame::Roster { epoch, members } => {
                if let Some(members) = self.roster.receive(epoch, members) {
                    self.events.push_back(MediaEvent::Roster(members));
                }
            }
            MediaFrame::Bye => self.end(now, EndReason::PeerHangup),
            // Probes are answered on the path they came in on: that proves the path.
            MediaFrame::Ping(t) => self.send(path, &MediaFrame::Pong(t), TransmitKind::Control),
            MediaFrame::Pong(t) => {
                self.paths.answered(path, now);
                if self.current_path(now) == Some(path) {
                    let rtt = now.since(Timestamp(t));
                    self.stats.rtt = Some(rtt);
                    self.events.push_back(MediaEvent::Rtt(rtt));
                    if let Some(rate) = &mut self.rate {
                        rate.on_rtt(now, rtt);
                    }
                    self.apply_rate();
                }
            }
            MediaFrame::Report { received, lost } => {
                self.stats.reports_received += 1;
                self.stats.peer_received = received;
                self.stats.peer_lost = lost;
                if let Some(rate) = &mut self.rate {
                    rate.on_report(now, received, lost);
                }
                self.apply_rate();
            }
        }
    }

    /// Audio frame `frame` arrived on `path`, with copies of the frames before it.
    fn on_audio(
        &mut self,
        now: Timestamp,
        path: PathKind,
        frame: u64,
        opus: Vec<u8>,
        older: Vec<Vec<u8>>,
    ) {
        if let Some(last) = self.last_audio.replace(now) {
            self.stats.max_gap = self.stats.max_gap.max(now.since(last));
        }
        match path {
            PathKind::Direct => self.stats.frames_received_direct += 1,
            PathKind::Relay(_) => self.stats.frames_received_relay += 1,
        }
        // The peer sends audio only on a path its own probes found working both ways:
        // as good as an answer, and 8 times as frequent, so a lossy stretch that eats a
        // few probes in a row does not move the call.
        self.paths.answered(path, now);
        self.jitter.insert(now, frame, opus);
        for (back, copy) in (1..).zip(older) {
            if let Some(seq) = frame.checked_sub(back) {
                self.jitter.insert_redundant(seq, copy);
            }
        }
    }

    fn tick(&mut self, now: Timestamp) -> Result<(), HostError> {
        self.update_path(now);
        // Send: one captured frame.
        if self.input_done_at.is_none() {
            match self.audio.capture() {
                Some(mut pcm) => {
                    if self.muted {
                        pcm.iter_mut().for_each(|s| *s = 0.0);
                    }
                    self.send_audio(now, &pcm)?;
                }
                None => self.input_done_at = Some(now),
            }
        }
        // Play: one period.
        let (pcm, kind) = match self.jitter.pop(now) {
            Some(playout) => {
                let kind = match &playout {
                    Playout::Frame { seq, .. } => PlayKind::Frame(*seq),
                    Playout::Redundant { seq, .. }
                    | Playout::Fec { seq, .. }
                    | Playout::Recover { seq, .. } => {
                        self.stats.recovered += 1;
                        PlayKind::Recovered(*seq)
                    }
                    Playout::Conceal { .. } => PlayKind::Concealed,
                };
                let (pcm, how) = self.codec.decode(&playout)?;
                let r = &mut self.stats.recovery;
                match (how, &playout) {
                    (Decoded::Packet, Playout::Redundant { .. }) => r.redundant += 1,
                    (Decoded::Packet, _) => r.received += 1,
                    (Decoded::Fec, _) => r.fec += 1,
                    (Decoded::Dred, _) => r.dred += 1,
                    (Decoded::Concealed, _) => r.concealed += 1,
                }
                (pcm, kind)
            }
            None => (vec![0.0; FRAME_SAMPLES], PlayKind::Silence),
        };
        if matches!(kind, PlayKind::Frame(_)) && !self.played_audio {
            self.played_audio = true;
            self.events.push_back(MediaEvent::FirstAudio);
        }
        self.audio.play(&pcm, kind)?;
        // Reports (half a report interval after the probes line up) and probes.
        let frame_us = self.config.frame.as_micros().max(1);
        let per = |d: Duration| (d.as_micros() / frame_us).max(1) as u64;
        let report_every = per(self.config.report_every);
        let probe_every = per(self.config.probe_every);
        if self.ticks % report_every == report_every / 2 {
            if let (Some(roster), Some(path)) = (self.roster.repeat(), self.current_path(now)) {
                self.send(path, &roster, TransmitKind::Control);
            }
            let s = self.jitter.stats();
            if s.received > 0 {
                let report = MediaFrame::Report {
                    received: s.received_in_time(),
                    lost: s.lost,
                };
                if let Some(path) = self.current_path(now) {
                    self.send(path, &report, TransmitKind::Control);
                    // What we accept rides along (a datagram of its own, so that a peer
                    // that predates it still reads the report).
                    let features = MediaFrame::Features(FEATURE_RED_AUDIO);
                    self.send(path, &features, TransmitKind::Control);
                }
            }
        }
        if self.ticks % probe_every == 0 {
            for path in self.open_paths() {
                self.send(
                    path,
                    &MediaFrame::Ping(now.as_millis()),
                    TransmitKind::Control,
                );
                // What we accept, from the first period (with the reports later), so
                // that copies can start before the first report.
                if self.ticks < report_every {
                    let features = MediaFrame::Features(FEATURE_RED_AUDIO);
                    self.send(path, &features, TransmitKind::Control);
                }
            }
        }
        self.check_timeouts(now);
        Ok(())
    }

    fn send_audio(&mut self, now: Timestamp, pcm: &[f32]) -> Result<(), HostError> {
        let opus = self.codec.encode(pcm)?;
        let frame = self.frame_no;
        self.frame_no += 1;
        let older = self.redundant_copies(opus.len());
        if self.history.len() == MAX_REDUNDANT {
            self.history.pop_back();
        }
        self.history.push_front(opus.clone());
        if let Some(path) = self.current_path(now) {
            let copies: u64 = older.iter().map(|c| c.len() as u64).sum();
            self.stats.frames_sent += 1;
            self.stats.bytes_sent += opus.len() as u64 + copies;
            self.stats.redundant_bytes_sent += copies;
            let media = if older.is_empty() {
                MediaFrame::Audio { frame, opus }
            } else {
                MediaFrame::RedAudio { frame, opus, older }
            };
            self.send(path, &media, TransmitKind::Audio);
        }
        Ok(())
    }

    /// The copies of earlier frames the next datagram carries: as many as the target
    /// asks for (and the history holds, and the peer accepts), fewest first dropped so
    /// that the datagram stays within [`MAX_DATAGRAM`].
    fn redundant_copies(&self, primary: usize) -> Vec<Vec<u8>> {
        if !self.stats.peer_accepts_redundancy {
            return Vec::new();
        }
        // version, seq, kind, frame, count, AEAD tag.
        const OVERHEAD: usize = 9 + 1 + 8 + 1 + 16;
        let mut size = OVERHEAD + primary;
        let want = usize::from(self.target.redundant_frames).min(MAX_REDUNDANT);
        let mut older = Vec::with_capacity(want);
        for copy in self.history.iter().take(want) {
            size += 2 + copy.len();
            if size > MAX_DATAGRAM || copy.is_empty() || copy.len() > usize::from(u16::MAX) {
                break;
            }
            older.push(copy.clone());
        }
        older
    }

    fn send(&mut self, path: PathKind, frame: &MediaFrame, kind: TransmitKind) {
        let bytes = self.crypto.seal(frame);
        self.transmits.push_back(Transmit { path, bytes, kind });
    }

    fn update_path(&mut self, now: Timestamp) {
        let on = self.current_path(now);
        if let Some(to) = on {
            if on != self.stats.path {
                if self.stats.path.is_some() {
                    self.stats.path_switches += 1;
                }
                self.events.push_back(MediaEvent::PathSwitch {
                    from: self.stats.path,
                    to,
                });
                self.stats.path = on;
            }
        }
    }

    fn apply_rate(&mut self) {
        let Some(rate) = &mut self.rate else {
            return;
        };
        // Every time, not only when the controller's bitrate or expected loss moved: the
        // DRED depth follows the smoothed loss on its own (a stale depth was a bug).
        let target = from_rate(rate.target(), rate.measured_loss());
        self.stats.bitrate_changes = rate.bitrate_changes();
        if target == self.target {
            return;
        }
        match self.codec.set_target(&target) {
            Ok(()) => {
                self.target = target;
                self.stats.target = Some(target);
                self.stats.bitrate_min_bps = self.stats.bitrate_min_bps.min(target.bitrate_bps);
                self.stats.bitrate_max_bps = self.stats.bitrate_max_bps.max(target.bitrate_bps);
                self.events.push_back(MediaEvent::Target(target));
            }
            Err(e) => tracing::warn!(error = %e, "encoder refused new settings"),
        }
    }

    fn check_timeouts(&mut self, now: Timestamp) {
        if let Some(d) = self.config.duration {
            if now.since(self.start) >= d {
                return self.end(now, EndReason::DurationReached);
            }
        }
        if self
            .input_done_at
            .is_some_and(|t| now.since(t) >= self.config.input_tail)
        {
            return self.end(now, EndReason::InputEnded);
        }
        match self.last_heard {
            None if now.since(self.start) >= self.config.setup_timeout => {
                let reasons = self.paths.failures();
                let waited_ms = now.since(self.start).as_millis() as u64;
                self.end(now, EndReason::NoMediaPath { waited_ms, reasons });
            }
            Some(t) if now.since(self.resumed_at) >= STALL_GRACE => {
                let silent = now.since(t);
                let silent_ms = silent.as_millis() as u64;
                if silent >= self.config.peer_timeout {
                    self.end(now, EndReason::PeerLost { silent_ms });
                } else if silent >= self.config.stall_after && !self.stalled {
                    self.stalled = true;
                    self.events.push_back(MediaEvent::Stalled {
                        silent_ms,
                        gives_up_after_ms: self.config.peer_timeout.as_millis() as u64,
                    });
                }
            }
            _ => self.check_no_path(now),
        }
    }

    fn check_no_path(&mut self, now: Timestamp) {
        if self.ended.is_none() && self.last_heard.is_none() && self.paths.exhausted() {
            let reasons = self.paths.failures();
            if !reasons.is_empty() {
                self.end(
                    now,
                    EndReason::NoMediaPath {
                        waited_ms: 0,
                        reasons,
                    },
                );
            }
        }
    }

    fn end(&mut self, now: Timestamp, why: EndReason) {
        if self.ended.is_some() {
            return;
        }
        let bye = !matches!(why, EndReason::PeerHangup | EndReason::NoMediaPath { .. });
        if bye {
            // On the current path, or on every open one if none is known to work.
            let paths = match self.current_path(now) {
                Some(p) => vec![p],
                None => self.open_paths(),
            };
            for path in paths {
                for _ in 0..self.config.bye_copies {
                    self.send(path, &MediaFrame::Bye, TransmitKind::Bye);
                }
            }
        }
        self.events.push_back(MediaEvent::Ended(why.clone()));
        self.ended = Some(why);
    }
}

/// The controller's target plus the DRED depth its measured loss calls for.
fn from_rate(t: RateTarget, measured_loss: f64) -> EncoderTarget {
    EncoderTarget {
        bitrate_bps: t.bitrate_bps,
        expected_loss_percent: t.expected_loss_percent,
        // libopus budgets DRED from the expected loss: none without it.
        dred_10ms: if t.expected_loss_percent == 0 {
            0
        } else {
            super::rate::dred_frames_for(measured_loss)
        },
        redundant_frames: t.redundant_frames,
    }
}
