//! The shell of a connected call's media: the async loop that moves bytes for the
//! sans-IO media engine (`parley_proto::media::MediaSession`), which owns the 20 ms
//! cadence, reports, probes, path choice, Bye and timeouts (no media path, a stalled
//! and a lost peer). Here: wake the engine when it asks, hand it the datagrams the paths
//! receive and the paths coming up or failing, send what it transmits (through
//! `PARLEY_IMPAIR` if set), and print its events. Mute and hang-up from outside reach
//! the call through its audio source (`super::audio::Controlled`).

mod impair;

use super::media_paths::{read_datagrams, Arrival, MediaPaths, PathKind};
use super::paths::PathEvent;
use super::stats::CallStats;
use crate::output::Printer;
use crate::transfer::pace::CallPacing;
use anyhow::{anyhow, Result};
use impair::Outbox;
use parley_audio::{FrameSink, FrameSource, OpusCodec};
use parley_proto::call::media::MediaCrypto;
use parley_proto::media::rate::RateConfig;
use parley_proto::media::{
    AudioPort, EncoderTarget, EndReason, HostError, MediaEvent, MediaSession, PlayKind,
    SessionConfig, TransmitKind,
};
use parley_proto::{PeerId, Timestamp};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The reason a relay path fails when the call was granted none (`paths::establish`).
pub const NO_RELAY: &str = "no relay was granted";

/// Stats go out once a second.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// What the loop needs besides its inputs.
pub struct MediaParams {
    pub crypto: MediaCrypto,
    pub source: Box<dyn FrameSource>,
    pub sink: Box<dyn FrameSink>,
    pub bitrate: i32,
    pub duration: Option<Duration>,
    /// When the user dialed (or the call arrived): setup time is measured from here.
    pub dialed_at: Instant,
    /// The paths being brought up (`super::paths::establish`): once every one has
    /// failed with none up, the call has no media path and ends at once.
    pub paths_tried: Vec<PathKind>,
    /// The input is a file: hold it (send silence) until the first media path is up,
    /// as a person starts talking once the call connects. A device is live and is
    /// read throughout (what is said before a path is up is lost, as on any phone).
    pub hold_input_until_path: bool,
    /// Hosting a conference: the member lists to share with this leg's participant.
    pub roster: watch::Receiver<Vec<PeerId>>,
    /// This side and the peer: a member list shown must name both.
    pub ends: (PeerId, PeerId),
    /// Names for the members of a list.
    pub contacts: crate::contacts::Contacts,
    pub out: Printer,
}

/// The call's audio input and output as the engine sees them.
struct Port {
    source: Box<dyn FrameSource>,
    sink: Box<dyn FrameSink>,
    /// Whether anything has been played yet: before, the output stays empty.
    started: bool,
    /// A file input waits for the first media path (see `MediaParams`).
    held: bool,
}

impl AudioPort for Port {
    fn capture(&mut self) -> Option<Vec<f32>> {
        if self.held {
            return Some(vec![0.0; parley_audio::FRAME_SAMPLES]);
        }
        self.source.next_frame()
    }

    fn play(&mut self, pcm: &[f32], kind: PlayKind) -> Result<(), HostError> {
        if kind == PlayKind::Silence && !self.started {
            return Ok(());
        }
        self.started = true;
        self.sink.play(pcm).map_err(|e| HostError(e.to_string()))
    }
}

/// A monotonic millisecond clock for the engine, starting at 1.
#[derive(Clone, Copy)]
struct Clock(tokio::time::Instant);

impl Clock {
    fn now(self) -> Timestamp {
        Timestamp(1 + self.0.elapsed().as_millis() as u64)
    }
    fn instant(self, t: Timestamp) -> tokio::time::Instant {
        self.0 + Duration::from_millis(t.0.saturating_sub(1))
    }
}

/// Runs the call until it ends, then returns its statistics. A call that never had a
/// working media path is an error naming why each path failed.
pub async fn run(p: MediaParams, mut path_events: mpsc::Receiver<PathEvent>) -> Result<CallStats> {
    let MediaParams {
        crypto,
        source,
        sink,
        bitrate,
        duration,
        dialed_at,
        paths_tried,
        hold_input_until_path,
        mut roster,
        ends,
        contacts,
        out,
    } = p;
    let clock = Clock(tokio::time::Instant::now());
    let config = SessionConfig {
        rate: Some(RateConfig::capped_at(bitrate)),
        duration,
        ..SessionConfig::default()
    };
    let codec = OpusCodec::new(bitrate)?;
    let port = Port {
        source,
        sink,
        started: false,
        held: hold_input_until_path,
    };
    let mut session = MediaSession::new(config, crypto, codec, port, clock.now())
        .map_err(|e| anyhow!("audio: {e}"))?;
    session.expect_paths(&paths_tried);
    // A list the host shared before this loop subscribed counts as a change.
    roster.mark_changed();
    // File transfers of this client keep to the call's pace while it runs.
    let pacing = crate::transfer::pace::CallPacing::start();
    let mut stats = CallStats::default();
    let mut outbox = Outbox::from_env(out)?;
    let mut paths = MediaPaths::default();
    let (dgram_tx, mut dgram_rx) = mpsc::channel::<Arrival>(512);
    let started = Instant::now();
    let mut next_stats = started + STATS_EVERY;
    let mut stop = std::pin::pin!(parley_net::shutdown_signal());
    // One timer for the engine, moved only when its deadline moves (not a new one per
    // datagram).
    let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));

    let ended = loop {
        flush(&mut session, &paths, &mut outbox);
        if let Some(why) = drain_events(
            &mut session,
            &mut stats,
            out,
            dialed_at,
            ends,
            &pacing,
            &contacts,
        ) {
            break why;
        }
        if Instant::now() >= next_stats {
            next_stats += STATS_EVERY;
            stats.duration = started.elapsed();
            stats.absorb(&session.stats());
            if out.json {
                out.event("stats", stats.to_json(), "");
            } else {
                eprintln!("{}", stats.status_line());
            }
        }
        let Some(wake) = session.poll_timeout() else {
            continue;
        };
        let deadline = clock.instant(wake);
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        // Biased: what arrived is read before the engine's timer is served, so a stall of
        // this process is not taken for a silent peer.
        tokio::select! {
            biased;
            _ = &mut stop => session.hang_up(clock.now()),
            Ok(()) = roster.changed() => {
                let members = roster.borrow_and_update().clone();
                if !members.is_empty() {
                    session.set_roster(clock.now(), members);
                }
            }
            Some(event) = path_events.recv() => match event {
                PathEvent::Up(kind, conn) => {
                    // A second connection of an open path (both ends' punches came
                    // through) is the same path to the engine.
                    let was_open = paths.is_open(kind);
                    let serial = paths.add(kind, conn.clone());
                    read_datagrams(kind, serial, conn, dgram_tx.clone());
                    if was_open {
                        tracing::debug!(path = kind.name(), "another connection of an open path");
                    } else {
                        session.path_up(clock.now(), kind);
                        session.audio_mut().held = false;
                        let on = session.current_path(clock.now());
                        out.event("path", json!({"path": kind.name(), "sending_on": on.map(PathKind::name)}),
                            format!("{} path up; sending on {}", kind.name(), on.map(PathKind::name).unwrap_or("none")));
                    }
                }
                PathEvent::Failed(kind, why) => {
                    // No relay at all is how calls go where supernodes know none: say
                    // so without "failed" (the call fails, naming it, if nothing else works).
                    let text = if why == NO_RELAY {
                        "no relay for this call (the supernodes know none)".to_string()
                    } else {
                        format!("{} path failed: {why}", kind.name())
                    };
                    out.event("path_failed", json!({"path": kind.name(), "error": why}), text);
                    session.path_failed(clock.now(), kind, why);
                }
            },
            Some((kind, serial, datagram)) = dgram_rx.recv() => match datagram {
                Some(d) => {
                    paths.heard(serial);
                    session.handle_datagram(clock.now(), kind, &d);
                }
                None if !paths.is_open(kind) => session.path_down(clock.now(), kind),
                None => {}
            },
            _ = &mut timer => {
                session.handle_timeout(clock.now()).map_err(|e| anyhow!("audio: {e}"))?;
            }
        }
    };
    // The Byes the engine queued on ending.
    flush(&mut session, &paths, &mut outbox);
    // Give the Byes a moment to leave before the connections close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    paths.close_all(b"call ended");
    session.audio_mut().sink.finish()?;
    stats.duration = started.elapsed();
    stats.absorb(&session.stats());
    stats.ended_by = ended.to_string();
    stats.dropped = matches!(ended, EndReason::PeerLost { .. });
    if stats.media.rtt.is_none() {
        stats.media.rtt = stats.path().and_then(|k| paths.transport_rtt(k));
    }
    if ended.is_failure() {
        // Never a "completed" call of silence: the caller ends it with `call_end`
        // `failed` and this reason (`no media path: …`), and exits non-zero.
        return Err(anyhow!("{ended}"));
    }
    Ok(stats)
}

type Session = MediaSession<OpusCodec, Port>;

/// Sends what the engine transmits: hang-ups straight to the path (never impaired: a
/// test call must end when it says it does), the rest through the outbox.
fn flush(session: &mut Session, paths: &MediaPaths, outbox: &mut Outbox) {
    while let Some(t) = session.poll_transmit() {
        let Some(conn) = paths.get(t.path) else {
            continue;
        };
        match t.kind {
            TransmitKind::Bye => {
                let _ = conn.send_datagram(t.bytes.into());
            }
            TransmitKind::Audio | TransmitKind::Control => {
                outbox.send(conn, t.bytes);
            }
        }
    }
}

/// Shows the engine's events; the reason once the call ended.
fn drain_events(
    session: &mut Session,
    stats: &mut CallStats,
    out: Printer,
    dialed_at: Instant,
    (me, peer): (PeerId, PeerId),
    pacing: &CallPacing,
    contacts: &crate::contacts::Contacts,
) -> Option<EndReason> {
    let mut ended = None;
    while let Some(event) = session.poll_event() {
        match event {
            MediaEvent::FirstAudio => {
                stats.setup.get_or_insert(dialed_at.elapsed());
            }
            MediaEvent::PathSwitch { from, to } => {
                if from.is_some() {
                    out.event(
                        "path_switch",
                        json!({"path": to.name()}),
                        format!("now sending on the {} path", to.name()),
                    );
                }
            }
            MediaEvent::Target(t) => bitrate_event(out, &t),
            MediaEvent::Stalled {
                silent_ms,
                gives_up_after_ms,
            } => out.event(
                "media_stalled",
                json!({"silent_ms": silent_ms, "gives_up_after_ms": gives_up_after_ms}),
                format!(
                    "nothing from the peer for {:.1} s: reconnecting (the call ends after {} s)",
                    silent_ms as f64 / 1000.0,
                    gives_up_after_ms / 1000
                ),
            ),
            MediaEvent::Resumed { silent_ms } => out.event(
                "media_resumed",
                json!({"silent_ms": silent_ms}),
                format!(
                    "the peer is back after {:.1} s of silence",
                    silent_ms as f64 / 1000.0
                ),
            ),
            MediaEvent::Roster(members) if members.contains(&me) && members.contains(&peer) => {
                let name = |p: &PeerId| contacts.name_of(p).map(str::to_string);
                crate::conference::show_roster(out, &me, &members, name);
            }
            MediaEvent::Roster(_) => {
                out.warning("the host sent a member list that leaves out you or itself; not shown")
            }
            MediaEvent::Rtt(rtt) => pacing.rtt(rtt),
            MediaEvent::Ended(why) => ended = Some(why),
        }
    }
    ended
}

fn bitrate_event(out: Printer, t: &EncoderTarget) {
    let bps = t.bitrate_bps;
    let dred_ms = u32::from(t.dred_10ms) * 10;
    out.event(
        "bitrate",
        json!({"bitrate_bps": bps, "expected_loss_percent": t.expected_loss_percent, "dred_ms": dred_ms}),
        format!(
            "bitrate now {:.1} kbit/s (FEC sized for {} % loss, {} ms of DRED)",
            f64::from(bps) / 1000.0,
            t.expected_loss_percent,
            dred_ms
        ),
    );
}
