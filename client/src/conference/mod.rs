//! Conference calls (issue 16): `parley call A B ...` and `parley add C`. The caller
//! hosts: it holds one ordinary two-party call (a *leg*: Noise IK, paths, relay, jitter
//! buffer, loss recovery, all as in `crate::call`) with each participant, and mixes at
//! its end (`bus`, over `parley_proto::media::mix`). Participants run an unchanged
//! two-party call with the host. Why this topology: docs/architecture.md, "Conference
//! calls".
//!
//! - A leg's own events become the conference's: `connected` → `participant_joined`,
//!   `call_end` → `participant_left`; `ringing` and path events pass with the `peer`
//!   they are about; per-leg `stats` only feed `status`.
//! - Any participant may leave (their `hangup` ends their leg); the others go on. The
//!   host leaving (`hangup`, end of its input, `--duration`, going offline) ends every
//!   leg: the call ends cleanly for everyone (no hand-over).
//! - The conference ends when nobody is left in it (or nobody ever answered).

pub mod bus;
pub mod command;

use crate::call::audio::CallControl;
use crate::call::place::{self, PlaceCall};
use crate::call::{AudioIo, CallOptions};
use crate::home::Home;
use crate::output::{
    exit_code_of, Local, Printer, EXIT_FAILED, EXIT_NOT_CONNECTED, EXIT_OK, EXIT_USAGE,
};
use crate::session::SessionHandle;
use bus::{Bus, SharedBus};
use parley_proto::media::group::group_safety_code;
use parley_proto::media::mix::MemberId;
use parley_proto::media::mix_roster::{self, Ended, Refusal};
use parley_proto::PeerId;
use quinn::Connection;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

pub use parley_proto::media::mix_roster::MAX_PEOPLE;

/// How long the host waits for its legs to say Bye when the conference ends.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Someone to call into the conference.
#[derive(Clone, Debug)]
pub struct Invitee {
    pub peer: PeerId,
    /// The contact name we call them by, if any.
    pub contact: Option<String>,
}

/// One participant as `status` shows them.
#[derive(Clone, Debug)]
pub struct Participant {
    pub peer: PeerId,
    pub label: String,
    /// `calling`, `ringing`, `connected`.
    pub state: &'static str,
    pub safety_code: Option<String>,
    pub joined: Option<Instant>,
    /// The leg's latest `stats` event.
    pub stats: Option<Value>,
}

/// The answer to `parley add`: joined, or why not (exit code, message).
pub type AddResult = Result<(), (i32, String)>;

enum Ask {
    Add(Invitee, oneshot::Sender<AddResult>),
}

type Listing = Arc<Mutex<BTreeMap<MemberId, Participant>>>;

/// Where each participant's direct dial goes: their leg.
type Routes = Arc<Mutex<HashMap<PeerId, mpsc::Sender<(PeerId, Connection)>>>>;

/// A running conference, as the running client steers it.
#[derive(Clone)]
pub struct Handle {
    asks: mpsc::UnboundedSender<Ask>,
    roster: Listing,
    bus: Arc<Mutex<Option<SharedBus>>>,
}

/// What [`run`] reads from its [`Handle`].
pub struct Requests(mpsc::UnboundedReceiver<Ask>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Handle {
    /// A handle and the requests end [`run`] takes.
    pub fn new() -> (Handle, Requests) {
        let (asks, rx) = mpsc::unbounded_channel();
        let handle = Handle {
            asks,
            roster: Arc::default(),
            bus: Arc::default(),
        };
        (handle, Requests(rx))
    }

    /// Calls `who` into the conference; resolves once they joined, or with why not.
    pub async fn add(&self, who: Invitee) -> AddResult {
        let (tx, rx) = oneshot::channel();
        if self.asks.send(Ask::Add(who, tx)).is_err() {
            return Err((EXIT_FAILED, "the conference has ended".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err((EXIT_FAILED, "the conference has ended".into())))
    }

    /// The participants (without the host) as JSON for `status`.
    pub fn participants(&self) -> Value {
        let speaking = lock(&self.bus)
            .as_ref()
            .map(|b| lock(b).speaking())
            .unwrap_or_default();
        let list: Vec<Value> = lock(&self.roster)
            .values()
            .map(|p| {
                json!({
                    "peer": p.peer.to_string(),
                    "display_name": p.label,
                    "state": p.state,
                    "safety_code": p.safety_code,
                    "seconds": p.joined.map(|t| (t.elapsed().as_secs_f64() * 10.0).round() / 10.0),
                    "speaking": speaking.contains(&p.peer),
                    "stats": p.stats,
                })
            })
            .collect();
        Value::Array(list)
    }
}

/// What a conference needs from the client.
pub struct Conference {
    pub session: SessionHandle,
    pub home: Home,
    /// The host's audio options (its input and output); legs use the rest.
    pub opts: CallOptions,
    pub audio: AudioIo,
    pub out: Printer,
    /// Direct connections our endpoint accepts (participants' punch-through dials).
    pub direct_in: mpsc::Receiver<(PeerId, Connection)>,
    /// The host's mute and hang-up.
    pub control: Arc<CallControl>,
}

/// A leg that joined, reported by its event task.
struct Joined {
    id: MemberId,
    peer: PeerId,
    label: String,
}

/// Shared by the conference and its leg tasks.
struct Legs {
    session: SessionHandle,
    home: Home,
    opts: CallOptions,
    out: Printer,
    bus: SharedBus,
    roster: Listing,
    routes: Routes,
    joined_tx: mpsc::UnboundedSender<Joined>,
    controls: HashMap<MemberId, Arc<CallControl>>,
    tasks: JoinSet<(MemberId, PeerId, i32)>,
}

impl Legs {
    /// Calls one invitee as member `id`; `added` hears whether they joined.
    fn start(&mut self, id: MemberId, who: Invitee, added: Option<oneshot::Sender<AddResult>>) {
        let control = Arc::new(CallControl::default());
        self.controls.insert(id, control.clone());
        let (direct_tx, direct_in) = mpsc::channel(4);
        lock(&self.routes).insert(who.peer, direct_tx);
        let label = who.contact.clone().unwrap_or_else(|| who.peer.short());
        lock(&self.roster).insert(
            id,
            Participant {
                peer: who.peer,
                label: label.clone(),
                state: "calling",
                safety_code: None,
                joined: None,
                stats: None,
            },
        );
        let (events_tx, events) = mpsc::unbounded_channel();
        let quiet = Printer {
            json: true,
            forward: None,
            local: Local::Quiet,
        };
        let (leg_out, slot) = quiet.forwarding(events_tx);
        let relay = tokio::spawn(relay_events(
            events,
            LegView {
                id,
                peer: who.peer,
                label,
                out: self.out,
                roster: self.roster.clone(),
                joined_tx: self.joined_tx.clone(),
                added,
                bus: self.bus.clone(),
            },
        ));
        let (session, home, bus) = (self.session.clone(), self.home.clone(), self.bus.clone());
        let mut opts = self.opts.clone();
        (opts.input, opts.output, opts.duration) = (None, None, None);
        self.tasks.spawn(async move {
            let call = PlaceCall {
                home: &home,
                callee: who.peer,
                contact: who.contact,
                audio: bus::leg_audio(&bus, id),
                opts: &opts,
                out: leg_out,
                direct_in,
                control,
            };
            let code = match place::run(&session, call).await {
                Ok(outcome) => outcome.exit_code(),
                Err(e) => {
                    let code = exit_code_of(&e);
                    leg_out.error(&format!("{e:#}"), code);
                    code
                }
            };
            // The leg's last event is out: let its relay finish before we say it left.
            lock(slot).take();
            let _ = relay.await;
            (id, who.peer, code)
        });
    }
}

/// Runs a conference to its end; returns the host's exit code: 0 when anyone joined,
/// else the last leg's (4 when nobody answered, see docs/user-guide.md).
pub async fn run(c: Conference, invitees: Vec<Invitee>, handle: Handle, requests: Requests) -> i32 {
    let Conference {
        session,
        home,
        opts,
        audio,
        out,
        mut direct_in,
        control,
    } = c;
    let me = session.identity.peer_id();
    let bus = Bus::shared(me, out);
    *lock(&handle.bus) = Some(bus.clone());
    let (joined_tx, mut joined_rx) = mpsc::unbounded_channel();
    let mut legs = Legs {
        session,
        home,
        opts: opts.clone(),
        out,
        bus: bus.clone(),
        roster: handle.roster.clone(),
        routes: Arc::default(),
        joined_tx,
        controls: HashMap::new(),
        tasks: JoinSet::new(),
    };
    let mut members = mix_roster::Roster::new(me, MAX_PEOPLE);
    // Each participant's direct dial goes to its own leg.
    let routes = legs.routes.clone();
    let demux = tokio::spawn(async move {
        while let Some((peer, conn)) = direct_in.recv().await {
            let tx = lock(&routes).get(&peer).cloned();
            match tx {
                Some(tx) => {
                    let _ = tx.send((peer, conn)).await;
                }
                None => conn.close(1u32.into(), b"not in this conference"),
            }
        }
    });
    let names: Vec<String> = invitees
        .iter()
        .map(|i| i.contact.clone().unwrap_or_else(|| i.peer.short()))
        .collect();
    out.event(
        "conference",
        json!({"invited": invitees.iter().map(|i| i.peer.to_string()).collect::<Vec<_>>()}),
        format!("conference call with {}", names.join(", ")),
    );
    for who in invitees {
        match members.invite(who.peer) {
            Ok(id) => legs.start(id, who, None),
            Err(why) => out.warning(&format!("{}: {why}", who.peer.short())),
        }
    }
    let mut requests = requests.0;
    let mut host_audio = None::<tokio::task::JoinHandle<Result<(), parley_audio::AudioError>>>;
    let mut audio = Some(audio);
    let mut last_code = EXIT_NOT_CONNECTED;
    let ended = loop {
        if members.seats().is_empty() {
            break Ended::NobodyAnswered;
        }
        tokio::select! {
            _ = control.wait_hangup() => break members.host_left(),
            done = async { host_audio.as_mut().expect("guarded").await }, if host_audio.is_some() => {
                host_audio = None;
                if let Ok(Err(e)) = done {
                    out.error(&format!("audio: {e}"), EXIT_FAILED);
                }
                break members.host_left();
            }
            Some(j) = joined_rx.recv() => {
                members.joined(j.id);
                lock(&bus).join(j.id, j.peer, j.label);
                share_roster(out, me, &legs.roster, &legs.controls);
                if let Some(audio) = audio.take() {
                    let (bus, control) = (bus.clone(), control.clone());
                    host_audio = Some(tokio::spawn(bus::run_host_audio(bus, audio, control, opts.duration)));
                }
            }
            Some(Ask::Add(who, reply)) = requests.recv() => match members.invite(who.peer) {
                Ok(id) => legs.start(id, who, Some(reply)),
                Err(why) => {
                    let code = if why == Refusal::Yourself { EXIT_USAGE } else { EXIT_FAILED };
                    let _ = reply.send(Err((code, why.to_string())));
                }
            },
            Some(ended) = legs.tasks.join_next() => {
                let Ok((id, peer, code)) = ended else { continue };
                lock(&bus).leave(id);
                lock(&legs.roster).remove(&id);
                lock(&legs.routes).remove(&peer);
                legs.controls.remove(&id);
                last_code = code;
                if let Some(ended) = members.left(id) {
                    break ended;
                }
                share_roster(out, me, &legs.roster, &legs.controls);
            }
        }
    };
    // Nothing is mixed any more; the host leaves: every leg says Bye.
    lock(&bus).clear();
    for c in legs.controls.values() {
        c.hang_up();
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while legs.tasks.join_next().await.is_some() {}
    })
    .await;
    legs.tasks.abort_all();
    control.hang_up();
    if let Some(task) = host_audio {
        if let Ok(Err(e)) = task.await {
            out.error(&format!("audio: {e}"), EXIT_FAILED);
        }
    }
    demux.abort();
    *lock(&handle.bus) = None;
    let ever_joined = members.ever_joined();
    let ended_by = ended.to_string();
    let code = if ever_joined > 0 { EXIT_OK } else { last_code };
    let outcome = if ever_joined > 0 {
        "completed"
    } else {
        "failed"
    };
    out.event(
        "call_end",
        json!({"outcome": outcome, "conference": true, "participants": ever_joined,
            "ended_by": ended_by, "mix": lock(&bus).stats_json()}),
        format!("conference ended ({ended_by}); {ever_joined} joined"),
    );
    code
}

/// Prints who is in the conference (`roster`: `members`, `group_safety_code`): on the
/// host when someone joins or leaves, on a participant when the host's list arrives.
/// `name` gives what we call a member (a contact's name); else its short id is shown.
pub fn show_roster(
    out: Printer,
    me: &PeerId,
    members: &[PeerId],
    name: impl Fn(&PeerId) -> Option<String>,
) {
    let code = group_safety_code(members);
    let others: Vec<String> = members
        .iter()
        .filter(|m| *m != me)
        .map(|m| parley_proto::text::printable(&name(m).unwrap_or_else(|| m.short())))
        .collect();
    out.event(
        "roster",
        json!({"members": members.iter().map(PeerId::to_string).collect::<Vec<_>>(),
            "group_safety_code": code}),
        format!(
            "in this call: you and {}. Group safety code: {code} (everyone in the call sees the same code; compare it)",
            others.join(", ")
        ),
    );
}

/// Hosting: the members now connected (us first) go to every participant, and show here.
fn share_roster(
    out: Printer,
    me: PeerId,
    listing: &Listing,
    controls: &HashMap<MemberId, Arc<CallControl>>,
) {
    let connected: Vec<(MemberId, PeerId, String)> = lock(listing)
        .iter()
        .filter(|(_, p)| p.state == "connected")
        .map(|(id, p)| (*id, p.peer, p.label.clone()))
        .collect();
    let members: Vec<PeerId> = std::iter::once(me)
        .chain(connected.iter().map(|c| c.1))
        .collect();
    for (id, ..) in &connected {
        if let Some(c) = controls.get(id) {
            c.share_roster(members.clone());
        }
    }
    let name = |p: &PeerId| connected.iter().find(|c| c.1 == *p).map(|c| c.2.clone());
    show_roster(out, &me, &members, name);
}

/// What a leg's event relay needs.
struct LegView {
    id: MemberId,
    peer: PeerId,
    label: String,
    out: Printer,
    roster: Listing,
    joined_tx: mpsc::UnboundedSender<Joined>,
    added: Option<oneshot::Sender<AddResult>>,
    bus: SharedBus,
}

/// Turns one leg's call events into the conference's (see the module docs).
async fn relay_events(mut events: mpsc::UnboundedReceiver<Value>, mut leg: LegView) {
    let peer = leg.peer.to_string();
    let mut joined = false;
    let mut left = false;
    let mut failure: Option<(i32, String)> = None;
    while let Some(mut v) = events.recv().await {
        let event = v["event"].as_str().unwrap_or_default().to_string();
        let text = v["text"].as_str().unwrap_or_default().to_string();
        if let Some(obj) = v.as_object_mut() {
            obj.remove("event");
            obj.remove("text");
            obj.insert("peer".into(), json!(peer));
        }
        let shown = parley_proto::text::printable(&leg.label);
        match event.as_str() {
            "calling" => {
                if leg.label == leg.peer.short() {
                    if let Some(name) = v["display_name"].as_str().filter(|n| !n.is_empty()) {
                        leg.label = name.to_string();
                    }
                }
                if let Some(p) = lock(&leg.roster).get_mut(&leg.id) {
                    p.label = leg.label.clone();
                }
                leg.out.event("calling", v, text);
            }
            "ringing" => {
                if let Some(p) = lock(&leg.roster).get_mut(&leg.id) {
                    p.state = "ringing";
                }
                leg.out.event("ringing", v, text);
            }
            "connected" => {
                joined = true;
                let code = v["safety_code"].as_str().map(str::to_string);
                if let Some(p) = lock(&leg.roster).get_mut(&leg.id) {
                    p.state = "connected";
                    p.safety_code = code.clone();
                    p.joined = Some(Instant::now());
                }
                let _ = leg.joined_tx.send(Joined {
                    id: leg.id,
                    peer: leg.peer,
                    label: leg.label.clone(),
                });
                leg.out.event(
                    "participant_joined",
                    json!({"peer": peer, "display_name": leg.label, "safety_code": code}),
                    format!(
                        "{shown} joined. Safety code: {} (compare it with {shown})",
                        code.as_deref().unwrap_or("-")
                    ),
                );
                if let Some(tx) = leg.added.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            "stats" => {
                if let Some(p) = lock(&leg.roster).get_mut(&leg.id) {
                    p.stats = Some(v);
                }
            }
            "call_end" => {
                // Off the bus at once: nothing more is mixed for them, nor from them.
                lock(&leg.bus).leave(leg.id);
                left = true;
                let outcome = v["outcome"].as_str().unwrap_or("failed").to_string();
                let reason = v["reason"].clone();
                leg.out.event(
                    "participant_left",
                    json!({"peer": peer, "display_name": leg.label, "outcome": outcome,
                        "reason": reason, "joined": joined, "duration_s": v["duration_s"],
                        "bytes_sent": v["bytes_sent"], "frames_received": v["frames_received"],
                        "path": v["path"]}),
                    if joined {
                        format!("{shown} left")
                    } else {
                        format!("{shown} did not join ({outcome})")
                    },
                );
                let code = match outcome.as_str() {
                    "rejected" | "busy" | "no_answer" => EXIT_NOT_CONNECTED,
                    _ => EXIT_FAILED,
                };
                let why = reason.as_str().map(str::to_string).unwrap_or(outcome);
                failure.get_or_insert((code, format!("{shown} did not join: {why}")));
            }
            "error" => {
                let e = v["error"].as_str().unwrap_or_default();
                leg.out.warning(&format!("{shown}: {e}"));
                let code = v["exit_code"].as_i64().unwrap_or(1) as i32;
                failure = Some((code, format!("{shown}: {e}")));
            }
            "warning" => {
                let w = v["warning"].as_str().unwrap_or_default();
                leg.out.warning(&format!("{shown}: {w}"));
            }
            _ => leg.out.event(&event, v, text),
        }
    }
    if !left {
        // Not found: the call never started, so it had no `call_end`.
        leg.out.event(
            "participant_left",
            json!({"peer": peer, "display_name": leg.label, "outcome": "unreachable", "joined": false}),
            format!("{} did not join", parley_proto::text::printable(&leg.label)),
        );
    }
    if let Some(tx) = leg.added.take() {
        let why = failure.unwrap_or((EXIT_FAILED, format!("{} did not join", leg.label)));
        let _ = tx.send(Err(why));
    }
}
