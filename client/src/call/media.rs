//! The media loop of a connected call: every 20 ms capture, encode, seal and send one
//! frame ([`sender`]), and play one frame out of the jitter buffer ([`receiver`]); in
//! between, open what arrives. Once a second each side reports what it received, and
//! the other adapts its bitrate and FEC to it. It does not know which path a datagram
//! took: [`MediaPaths`] chooses.

mod impair;
mod receiver;
mod sender;

use super::media_paths::{read_datagrams, MediaPaths, PathKind, Received, PROBE_INTERVAL};
use super::paths::PathEvent;
use super::stats::CallStats;
use crate::output::Printer;
use anyhow::Result;
use impair::Outbox;
use parley_audio::{FrameSink, FrameSource};
use parley_net::clock::mono;
use parley_proto::call::media::{MediaCrypto, MediaError, MediaFrame};
use receiver::Receiver;
use sender::Sender;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

const FRAME: Duration = Duration::from_millis(20);
/// A call that hears nothing at all for this long has lost its peer.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(10);
/// Nothing heard for this long (no audio, no probe answer, on any path) is reported at
/// once as `media_stalled`: the peer or every path is gone. The call keeps trying
/// (a path may come back, a relay leg rejoins) until [`MEDIA_TIMEOUT`].
const STALL_AFTER: Duration = Duration::from_secs(2);
/// Byes are sent a few times: they are datagrams and may be lost.
const BYE_COPIES: usize = 3;
/// Stats go out once a second.
const STATS_EVERY_TICKS: u64 = 50;
/// Receiver reports go out once a second too, half a second after the pings.
const REPORT_EVERY_TICKS: u64 = 50;
const REPORT_OFFSET_TICKS: u64 = 25;
/// Every path is probed this often (in frame periods).
const PROBE_EVERY_TICKS: u64 = (PROBE_INTERVAL.as_millis() / FRAME.as_millis()) as u64;
/// After the input ends, how long to keep going so the last frames are played out there.
const INPUT_TAIL: Duration = Duration::from_millis(400);
/// A call with no media path up this long after it connected has none: it fails (with
/// the reasons the paths gave) instead of playing silence. (It fails sooner when every
/// path tried has already failed.)
const NO_PATH_TIMEOUT: Duration = Duration::from_secs(8);

/// What the loop needs besides its inputs.
pub struct MediaParams {
    pub crypto: MediaCrypto,
    pub source: Box<dyn FrameSource>,
    pub sink: Box<dyn FrameSink>,
    pub bitrate: i32,
    pub duration: Option<Duration>,
    /// When the user dialed (or the call arrived): setup time is measured from here.
    pub dialed_at: Instant,
    /// How many paths are being brought up: once that many have failed with none up,
    /// the call has no media path and ends at once.
    pub paths_tried: usize,
    pub out: Printer,
}

/// Runs the call until someone hangs up, then returns its statistics.
pub async fn run(p: MediaParams, mut path_events: mpsc::Receiver<PathEvent>) -> Result<CallStats> {
    let MediaParams {
        mut crypto,
        mut source,
        sink,
        bitrate,
        duration,
        dialed_at,
        paths_tried,
        out,
    } = p;
    let mut stats = CallStats::default();
    let mut sender = Sender::new(bitrate, Outbox::from_env(out)?, out, &mut stats)?;
    let mut receiver = Receiver::new(sink)?;
    let mut paths = MediaPaths::default();
    let (dgram_tx, mut dgram_rx) = mpsc::channel::<Received>(512);
    let started = Instant::now();
    let mut last_heard = Instant::now();
    let mut last_audio: Option<Instant> = None;
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut ticks: u64 = 0;
    let mut input_done = false;
    let mut input_done_at: Option<Instant> = None;
    let mut path_failures: Vec<String> = Vec::new();
    // Whether `media_stalled` has been reported for the current silence.
    let mut stalled = false;
    let mut stop = std::pin::pin!(parley_net::shutdown_signal());
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let sleep_until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let mut sleep_until_deadline = std::pin::pin!(sleep_until_deadline);

    let ended_by = loop {
        tokio::select! {
            _ = &mut stop => break "local hang-up",
            _ = &mut sleep_until_deadline => break "duration reached",
            Some(event) = path_events.recv() => match event {
                PathEvent::Up(kind, conn) => {
                    read_datagrams(kind, conn.clone(), dgram_tx.clone());
                    // Both punches of a direct path can succeed: the second connection
                    // replaces the first without a second "path up".
                    let was_up = paths.open().any(|(k, _)| k == kind);
                    paths.add(kind, conn);
                    let now_on = paths.current().map(|(k, _)| k);
                    if was_up {
                        tracing::debug!(path = kind.name(), "path replaced by a newer connection");
                    } else {
                        out.event("path", json!({"path": kind.name(), "sending_on": now_on.map(PathKind::name)}),
                            format!("{} path up; sending on {}", kind.name(), now_on.map(PathKind::name).unwrap_or("none")));
                    }
                    last_heard = Instant::now();
                }
                PathEvent::Failed(kind, why) => {
                    out.event("path_failed", json!({"path": kind.name(), "error": why}),
                        format!("{} path failed: {why}", kind.name()));
                    path_failures.push(format!("{} path: {why}", kind.name()));
                }
            },
            Some((kind, conn_id, datagram)) = dgram_rx.recv() => {
                let opened = crypto.open(&datagram);
                if opened.is_ok() {
                    paths.heard_on(kind, conn_id);
                    // Only the peer's own (authenticated) datagrams prove it is there.
                    if stalled {
                        stalled = false;
                        let ms = last_heard.elapsed().as_millis() as u64;
                        out.event("media_resumed", json!({"silent_ms": ms}),
                            format!("the peer is back after {:.1} s of silence", ms as f64 / 1000.0));
                    }
                    last_heard = Instant::now();
                }
                match opened {
                    Ok((_, MediaFrame::Audio { frame, opus })) => {
                        let arrived = Instant::now();
                        if let Some(last) = last_audio.replace(arrived) {
                            stats.max_gap = stats.max_gap.max(arrived - last);
                        }
                        match kind {
                            PathKind::Direct => stats.frames_received_direct += 1,
                            PathKind::Relay(_) => stats.frames_received_relay += 1,
                        }
                        receiver.on_audio(frame, opus);
                    }
                    Ok((_, MediaFrame::Bye)) => break "peer hung up",
                    // Probes are answered on the path they came in on: that proves the path.
                    Ok((_, MediaFrame::Ping(t))) => {
                        paths.send_on(kind, crypto.seal(&MediaFrame::Pong(t)));
                    }
                    Ok((_, MediaFrame::Pong(t))) => {
                        paths.answered(kind);
                        if paths.current().is_some_and(|(k, _)| k == kind) {
                            // Our own monotonic clock, echoed: a wall-clock step cannot fake an RTT.
                            let rtt = Duration::from_millis(mono().as_millis().saturating_sub(t));
                            sender.on_rtt(rtt, &mut stats)?;
                        }
                    }
                    Ok((_, MediaFrame::Report { received, lost })) => {
                        sender.on_report(received, lost, &mut stats)?;
                    }
                    Err(MediaError::Forged) => stats.forged += 1,
                    Err(MediaError::Replayed) => stats.replayed += 1,
                    Err(MediaError::Malformed) => stats.malformed += 1,
                }
            }
            _ = tick.tick() => {
                ticks += 1;
                if !input_done {
                    match source.next_frame() {
                        Some(pcm) => sender.send_audio(&pcm, &mut crypto, &paths, &mut stats)?,
                        None => {
                            input_done = true;
                            input_done_at = Some(Instant::now());
                        }
                    }
                }
                if receiver.play_one()? && stats.setup.is_none() {
                    stats.setup = Some(dialed_at.elapsed());
                }
                if ticks % REPORT_EVERY_TICKS == REPORT_OFFSET_TICKS {
                    if let Some(report) = receiver.report() {
                        sender.send_control(&report, &mut crypto, &paths);
                    }
                }
                if ticks % PROBE_EVERY_TICKS == 0 {
                    let mut open: Vec<PathKind> = paths.open().map(|(k, _)| k).collect();
                    // One probe per path, on the connection it sends on.
                    open.dedup();
                    for kind in open {
                        paths.send_on(kind, crypto.seal(&MediaFrame::Ping(mono().as_millis())));
                    }
                }
                if ticks % STATS_EVERY_TICKS == 0 {
                    stats.duration = started.elapsed();
                    receiver.update_stats(&mut stats);
                    if out.json {
                        out.event("stats", stats.to_json(), "");
                    } else {
                        eprintln!("{}", stats.status_line());
                    }
                }
                let on = paths.current().map(|(k, _)| k);
                if on.is_some() && on != stats.path {
                    if stats.path.is_some() {
                        stats.path_switches += 1;
                        out.event("path_switch", json!({"path": on.map(PathKind::name)}),
                            format!("now sending on the {} path", on.map(PathKind::name).unwrap_or("none")));
                    }
                    stats.path = on;
                }
                // The last frames need a moment to reach the peer before we say Bye.
                if input_done_at.is_some_and(|t| t.elapsed() >= INPUT_TAIL) {
                    break "input ended";
                }
                let all_failed = path_failures.len() >= paths_tried && paths.current().is_none();
                if stats.path.is_none() && (all_failed || started.elapsed() >= NO_PATH_TIMEOUT) {
                    break "no media path";
                }
                if !stalled && stats.path.is_some() && last_heard.elapsed() >= STALL_AFTER {
                    stalled = true;
                    let ms = last_heard.elapsed().as_millis() as u64;
                    out.event("media_stalled", json!({"silent_ms": ms, "gives_up_after_ms": MEDIA_TIMEOUT.as_millis() as u64}),
                        format!("nothing from the peer for {:.1} s: reconnecting (the call ends after {} s)",
                            ms as f64 / 1000.0, MEDIA_TIMEOUT.as_secs()));
                }
                if last_heard.elapsed() >= MEDIA_TIMEOUT {
                    break "connection lost";
                }
            }
        }
    };
    if ended_by != "peer hung up" {
        // Straight to the path, never through PARLEY_IMPAIR: a test call must end when
        // it says it does.
        for _ in 0..BYE_COPIES {
            paths.send(crypto.seal(&MediaFrame::Bye));
        }
    }
    if stats.path.is_none() && paths.current().is_none() {
        // Never connected media: a failure, never a "completed" call of silence.
        paths.close_all(b"no media path");
        let why = if path_failures.is_empty() {
            format!("no path came up within {} s", NO_PATH_TIMEOUT.as_secs())
        } else {
            path_failures.join("; ")
        };
        anyhow::bail!("no media path: {why}");
    }
    // Give the Byes a moment to leave before the connections close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    paths.close_all(b"call ended");
    receiver.finish()?;
    stats.duration = started.elapsed();
    receiver.update_stats(&mut stats);
    stats.path = stats.path.or(paths.current().map(|(k, _)| k));
    stats.ended_by = ended_by.to_string();
    if stats.rtt.is_none() {
        stats.rtt = paths.transport_rtt();
    }
    Ok(stats)
}
