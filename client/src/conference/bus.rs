//! The host's mixing bus as the calls see it: each leg (one two-party call) gets a
//! [`LegSource`] (what that participant hears: the bus's mix for it) and a [`LegSink`]
//! (what they say, pushed into the bus), and the host's own microphone and speaker are
//! driven by [`run_host_audio`]. The decisions (who is mixed, gains, limiter) are
//! `parley_proto::media::mix::MixBus`'s; here frames only move, and its events become
//! `speaking` events.

use crate::call::audio::{CallControl, Controlled, Metered};
use crate::call::AudioIo;
use crate::output::Printer;
use parley_audio::{AudioError, FrameSink, FrameSource};
use parley_proto::media::mix::{MemberId, MixBus, MixConfig, MixEvent};
use parley_proto::PeerId;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use parley_proto::media::mix_roster::HOST;

/// The bus with the names its events are reported under.
pub struct Bus {
    mix: MixBus,
    who: BTreeMap<MemberId, (PeerId, String)>,
    out: Printer,
}

/// The bus, shared by every leg's media loop and the host's audio task.
pub type SharedBus = Arc<Mutex<Bus>>;

fn lock(bus: &SharedBus) -> std::sync::MutexGuard<'_, Bus> {
    bus.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bus {
    /// A bus with the host on it.
    pub fn shared(host: PeerId, out: Printer) -> SharedBus {
        let mut bus = Bus {
            mix: MixBus::new(MixConfig::default()),
            who: BTreeMap::new(),
            out,
        };
        bus.join(HOST, host, "you".into());
        Arc::new(Mutex::new(bus))
    }

    /// Puts a participant on the bus: they hear, and are heard, from now on.
    pub fn join(&mut self, id: MemberId, peer: PeerId, label: String) {
        self.who.insert(id, (peer, label));
        self.mix.add(id);
        self.report();
    }

    /// Takes a participant off the bus.
    pub fn leave(&mut self, id: MemberId) {
        self.mix.remove(id);
        self.report();
        self.who.remove(&id);
    }

    /// Takes everyone off the bus (the conference is over).
    pub fn clear(&mut self) {
        for id in self.mix.members() {
            self.leave(id);
        }
    }

    /// Who is mixed now (their ids).
    pub fn speaking(&self) -> Vec<PeerId> {
        self.mix
            .speaking()
            .iter()
            .filter_map(|m| self.who.get(m).map(|w| w.0))
            .collect()
    }

    /// The bus's counters, for the conference's `call_end`.
    pub fn stats_json(&self) -> serde_json::Value {
        let s = self.mix.stats();
        json!({"underruns": s.underruns, "dropped_full": s.dropped_full,
            "dropped_trim": s.dropped_trim, "limited": s.limited})
    }

    fn push(&mut self, id: MemberId, frame: &[f32]) {
        self.mix.push(id, frame);
        self.report();
    }

    fn pull(&mut self, id: MemberId) -> Vec<f32> {
        let frame = self.mix.pull(id);
        self.report();
        frame
    }

    fn report(&mut self) {
        while let Some(MixEvent::Speaking { member, speaking }) = self.mix.poll_event() {
            let Some((peer, label)) = self.who.get(&member) else {
                continue;
            };
            let shown = parley_proto::text::printable(label);
            self.out.event(
                "speaking",
                json!({"peer": peer.to_string(), "display_name": label, "speaking": speaking}),
                if speaking && label == "you" {
                    "you are speaking".to_string()
                } else if speaking {
                    format!("{shown} is speaking")
                } else {
                    format!("{shown} stopped speaking")
                },
            );
        }
    }
}

/// What one participant hears: the bus's mix for them, one frame per period of their
/// call. Never ends by itself (the leg's `CallControl` ends it).
pub struct LegSource {
    pub bus: SharedBus,
    pub id: MemberId,
}

impl FrameSource for LegSource {
    fn next_frame(&mut self) -> Option<Vec<f32>> {
        Some(lock(&self.bus).pull(self.id))
    }
}

/// What one participant says, into the bus.
pub struct LegSink {
    pub bus: SharedBus,
    pub id: MemberId,
}

impl FrameSink for LegSink {
    fn play(&mut self, frame: &[f32]) -> Result<(), AudioError> {
        lock(&self.bus).push(self.id, frame);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
}

/// A leg's audio ends.
pub fn leg_audio(bus: &SharedBus, id: MemberId) -> AudioIo {
    (
        Box::new(LegSource {
            bus: bus.clone(),
            id,
        }),
        Box::new(LegSink {
            bus: bus.clone(),
            id,
        }),
    )
}

/// The host's microphone into the bus and the bus's mix for the host to its speaker,
/// every 20 ms, until the microphone ends (a file played out, `hangup`, `--duration`).
pub async fn run_host_audio(
    bus: SharedBus,
    audio: AudioIo,
    control: Arc<CallControl>,
    duration: Option<Duration>,
) -> Result<(), AudioError> {
    let (source, sink) = audio;
    let mut source = Controlled {
        inner: source,
        control: control.clone(),
    };
    let mut sink = Metered {
        inner: sink,
        control,
    };
    let period = Duration::from_millis(20);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let Some(said) = source.next_frame() else {
            break;
        };
        let heard = {
            let mut bus = lock(&bus);
            bus.push(HOST, &said);
            bus.pull(HOST)
        };
        sink.play(&heard)?;
    }
    sink.finish()
}
