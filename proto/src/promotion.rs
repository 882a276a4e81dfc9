//! [`Promotion`]: whether a running client serves the overlay as a supernode and relay
//! (issue 10; docs/architecture.md, "Promotion"). Sans-IO: the shell passes monotonic
//! time and fresh random nonces, performs the [`Action`]s and reports what happened.
//!
//! A client is promoted only when all of these hold:
//! - `--serve` is not `never`;
//! - it is not behind a symmetric NAT and its UDP is not blocked (a mapping that changes
//!   per destination cannot be advertised; over TCP nobody can reach it);
//! - it has been online `promote_after` (`auto`, default 30 min) or at all (`always`);
//! - a reachability dial-back passed ([`crate::reach`]): a probe carrying the nonce of
//!   the current check arrived at its serving socket over a connection whose key and
//!   address are not those of the supernode it asked;
//! - it has bandwidth to spare: `--relay-kbps` given, or its upload measured
//!   ([`crate::upload`], against the asked supernode, once per network) and, in `auto`,
//!   a quarter of it at least one relayed call (512 kbit/s). A client with no
//!   measurement is never promoted in `auto` on a made-up figure; in `always` it serves
//!   at the minimum (512, one call) when the measurement fails.
//!
//! A failed check (no probe within `probe_timeout`, or the supernode said it failed or
//! refused) is retried after `retry_every`, through the next attached supernode.
//! Promoted, it demotes on quit, when its network changes (the proven address is no
//! longer its own: checked again on the new network after `retry_every`), or when it
//! has been overloaded for `overload_for` (then it waits `promote_after`, at least
//! `retry_every`, before checking again).

use crate::presence::{Contact, NatType};
use crate::reach::Nonce;
use crate::time::Mono;
use crate::upload::{default_relay_kbps, spares_a_call, MIN_RELAY_KBPS};
use crate::PeerId;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// `--serve`: whether the client may serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeMode {
    /// Promote once online `promote_after` and the reachability check passes.
    Auto,
    /// Promote as soon as the reachability check passes (tests, power users).
    Always,
    /// Never serve.
    Never,
}

/// The machine's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromotionConfig {
    /// `--serve`.
    pub mode: ServeMode,
    /// `--promote-after`: how long `auto` waits online before checking (default 30 min:
    /// Skype measurements found supernode value in long sessions; a client that comes
    /// and goes would churn the overlay).
    pub promote_after: Duration,
    /// How long a probe may take to arrive once asked for: 10 s.
    pub probe_timeout: Duration,
    /// Pause between two checks after a failure: 30 s.
    pub retry_every: Duration,
    /// How long the serving roles may stay over their caps before the client demotes
    /// itself: 5 min.
    pub overload_for: Duration,
    /// `--relay-kbps`, if given: the relay budget, and no upload measurement.
    pub relay_kbps: Option<u32>,
    /// How long an upload measurement may take once asked for: 15 s.
    pub measure_timeout: Duration,
    /// After `auto` measured too little upload to spare a call, how long before it
    /// checks (and measures) again: 1 h (a busy link measures low).
    pub remeasure_after: Duration,
}

impl Default for PromotionConfig {
    fn default() -> PromotionConfig {
        PromotionConfig {
            mode: ServeMode::Auto,
            promote_after: Duration::from_secs(30 * 60),
            probe_timeout: Duration::from_secs(10),
            retry_every: Duration::from_secs(30),
            overload_for: Duration::from_secs(5 * 60),
            relay_kbps: None,
            measure_timeout: Duration::from_secs(15),
            remeasure_after: Duration::from_secs(60 * 60),
        }
    }
}

/// Why the client stopped serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoteReason {
    /// The user quit.
    Quit,
    /// Over the caps for `overload_for`.
    Overloaded,
    /// The address it proved is no longer ours (another network, a new IP).
    NetworkChanged,
}

impl DemoteReason {
    /// The `reason` field of the `demoted` event.
    pub fn as_str(self) -> &'static str {
        match self {
            DemoteReason::Quit => "quit",
            DemoteReason::Overloaded => "overloaded",
            DemoteReason::NetworkChanged => "network_changed",
        }
    }
}

/// Where a promoted client's relay budget came from (the `relay_kbps_source` field
/// of the `promoted` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetSource {
    /// `--relay-kbps`.
    Flag,
    /// [`default_relay_kbps`] of the measured upload.
    Measured,
    /// `--serve always` whose measurement failed: one relayed call.
    Minimum,
}

impl BudgetSource {
    /// `"flag"`, `"measured"`, `"minimum"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetSource::Flag => "flag",
            BudgetSource::Measured => "measured",
            BudgetSource::Minimum => "minimum",
        }
    }
}

/// The upload a promoted client gives to relaying, and how it was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayBudget {
    /// kbit/s (1,024 bit/s), as `--relay-kbps`.
    pub kbps: u32,
    /// Where it came from.
    pub source: BudgetSource,
    /// The measured upload (kbit/s), if it was measured.
    pub upload_kbps: Option<u32>,
}

/// What the shell must do, or report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a [`crate::reach::DialBack`] with `nonce` to the attached supernode `via`.
    AskDialBack {
        /// The supernode to ask.
        via: Contact,
        /// The check's nonce.
        nonce: Nonce,
    },
    /// Measure the upload against the attached supernode `via`
    /// ([`crate::upload`]) and report it with
    /// [`handle_upload`](Promotion::handle_upload).
    MeasureUpload {
        /// The supernode to send the probe to.
        via: Contact,
    },
    /// The check passed: start serving.
    Promote {
        /// The supernode whose probe proved it.
        prober: PeerId,
        /// The relay's budget.
        budget: RelayBudget,
    },
    /// Stop serving.
    Demote(DemoteReason),
    /// A check failed (reported, retried later).
    CheckFailed(String),
    /// The client will not be promoted in this session (reported once).
    Ineligible(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not checking; check at `at`.
    Waiting {
        at: Mono,
    },
    /// Asked `via` for a probe with `nonce`; give up at `deadline`.
    Checking {
        via: Contact,
        nonce: Nonce,
        deadline: Mono,
    },
    /// Reachable (proved by `prober`); measuring the upload through `via`.
    Measuring {
        via: Contact,
        prober: PeerId,
        deadline: Mono,
    },
    Promoted {
        overloaded_since: Option<Mono>,
    },
    /// Never again in this session (ineligible, or quit).
    Done,
}

/// The promotion machine. See the module documentation.
#[derive(Debug)]
pub struct Promotion {
    config: PromotionConfig,
    state: State,
    attached: Vec<Contact>,
    /// Round-robin over the attached supernodes across checks.
    next_via: usize,
    /// The upload measured on this network (kbit/s).
    upload: Option<u32>,
    actions: VecDeque<Action>,
}

impl Promotion {
    /// A client online since `now` whose NAT discovery said `nat` (`Unknown` when it
    /// could not tell: the dial-back decides).
    pub fn new(config: PromotionConfig, nat: NatType, now: Mono) -> Promotion {
        let mut m = Promotion {
            config,
            state: State::Done,
            attached: Vec::new(),
            next_via: 0,
            upload: None,
            actions: VecDeque::new(),
        };
        let blocker = match (config.mode, nat) {
            (ServeMode::Never, _) => None,
            (_, NatType::Symmetric) => Some("behind a symmetric NAT (its mapping changes per destination, so no address can be advertised)"),
            (_, NatType::UdpBlocked) => Some("UDP is blocked here"),
            _ => {
                let wait = match config.mode {
                    ServeMode::Always => Duration::ZERO,
                    _ => config.promote_after,
                };
                m.state = State::Waiting { at: now + wait };
                None
            }
        };
        if let Some(why) = blocker {
            m.actions
                .push_back(Action::Ineligible(format!("not serving: {why}")));
        }
        m
    }

    /// The supernodes the client is attached to now (where dial-backs are asked).
    pub fn handle_attached(&mut self, attached: Vec<Contact>) {
        self.attached = attached;
    }

    /// Whether the client serves now.
    pub fn is_promoted(&self) -> bool {
        matches!(self.state, State::Promoted { .. })
    }

    /// Starts a check when one is due; gives up a check past its deadline; demotes
    /// after a long overload. `fresh` is a new random nonce, used if a check starts.
    pub fn handle_timeout(&mut self, now: Mono, fresh: Nonce) {
        match self.state {
            State::Waiting { at } if now >= at => {
                if self.attached.is_empty() {
                    // Nothing to ask yet: look again shortly.
                    self.state = State::Waiting {
                        at: now + Duration::from_secs(1),
                    };
                    return;
                }
                let via = self.attached[self.next_via % self.attached.len()];
                self.next_via = self.next_via.wrapping_add(1);
                self.state = State::Checking {
                    via,
                    nonce: fresh,
                    deadline: now + self.config.probe_timeout,
                };
                self.actions
                    .push_back(Action::AskDialBack { via, nonce: fresh });
            }
            State::Checking { deadline, via, .. } if now >= deadline => {
                self.fail(
                    now,
                    format!(
                        "no probe arrived within {} s of asking {}",
                        self.config.probe_timeout.as_secs(),
                        via.addr
                    ),
                );
            }
            State::Measuring { deadline, .. } if now >= deadline => {
                let why = format!(
                    "no upload measurement within {} s",
                    self.config.measure_timeout.as_secs()
                );
                self.handle_upload(now, Err(why));
            }
            State::Promoted {
                overloaded_since: Some(since),
            } if now.since(since) >= self.config.overload_for => {
                self.demote(now, DemoteReason::Overloaded);
            }
            _ => {}
        }
    }

    fn promote(&mut self, prober: PeerId, budget: RelayBudget) {
        self.state = State::Promoted {
            overloaded_since: None,
        };
        self.actions.push_back(Action::Promote { prober, budget });
    }

    /// The budget known without measuring: the flag's, or the measured one's.
    fn known_budget(&self) -> Option<RelayBudget> {
        if let Some(kbps) = self.config.relay_kbps {
            return Some(RelayBudget {
                kbps,
                source: BudgetSource::Flag,
                upload_kbps: None,
            });
        }
        self.upload.map(|up| RelayBudget {
            kbps: default_relay_kbps(up),
            source: BudgetSource::Measured,
            upload_kbps: Some(up),
        })
    }

    /// The upload measurement asked for with [`Action::MeasureUpload`] ended: the rate
    /// in kbit/s, or why there is none. `auto` promotes only when a quarter of it
    /// spares a relayed call (else checks again after `remeasure_after`), and fails
    /// the check without a rate (retried after `retry_every`); `always` promotes
    /// either way, at the minimum budget without a rate.
    pub fn handle_upload(&mut self, now: Mono, measured: Result<u32, String>) {
        let State::Measuring { prober, .. } = self.state else {
            return;
        };
        let always = self.config.mode == ServeMode::Always;
        match measured {
            Ok(up) if always || spares_a_call(up) => {
                self.upload = Some(up);
                let budget = self.known_budget().expect("measured");
                self.promote(prober, budget);
            }
            Ok(up) => {
                self.state = State::Waiting {
                    at: now + self.config.remeasure_after,
                };
                self.actions.push_back(Action::CheckFailed(format!(
                    "upload measured at {up} kbit/s: a quarter of it is less than one relayed call ({MIN_RELAY_KBPS}); measuring again in {} min",
                    self.config.remeasure_after.as_secs() / 60
                )));
            }
            // The shell reports the failure itself as it happens.
            Err(_) if always => {
                self.promote(
                    prober,
                    RelayBudget {
                        kbps: MIN_RELAY_KBPS,
                        source: BudgetSource::Minimum,
                        upload_kbps: None,
                    },
                );
            }
            Err(why) => self.fail(now, format!("upload measurement failed: {why}")),
        }
    }

    fn fail(&mut self, now: Mono, why: String) {
        self.state = State::Waiting {
            at: now + self.config.retry_every,
        };
        self.actions.push_back(Action::CheckFailed(why));
    }

    fn demote(&mut self, now: Mono, reason: DemoteReason) {
        self.state = match reason {
            DemoteReason::Quit => State::Done,
            DemoteReason::Overloaded => State::Waiting {
                at: now + self.config.promote_after.max(self.config.retry_every),
            },
            // A new network needs a new proof; the time online still counts.
            DemoteReason::NetworkChanged => State::Waiting {
                at: now + self.config.retry_every,
            },
        };
        self.actions.push_back(Action::Demote(reason));
    }

    /// A probe connection arrived on the serving socket, from key `prober` at `from`,
    /// carrying `nonce`. Returns whether to acknowledge it (it is the current check's).
    /// It proves reachability only if it is not the asked supernode's own dial.
    ///
    /// Without a known budget (no `--relay-kbps`, nothing measured on this network)
    /// it asks for [`Action::MeasureUpload`] through the same supernode before promoting.
    pub fn handle_probe(
        &mut self,
        now: Mono,
        nonce: Nonce,
        prober: PeerId,
        from: SocketAddr,
    ) -> bool {
        let State::Checking {
            via, nonce: want, ..
        } = self.state
        else {
            return false;
        };
        if nonce != want {
            return false;
        }
        if prober == via.id || from == via.addr {
            // The asked supernode dialing itself proves nothing about other networks.
            return true;
        }
        match self.known_budget() {
            Some(budget) => self.promote(prober, budget),
            None => {
                self.state = State::Measuring {
                    via,
                    prober,
                    deadline: now + self.config.measure_timeout,
                };
                self.actions.push_back(Action::MeasureUpload { via });
            }
        }
        true
    }

    /// The asked supernode's answer to the dial-back for `nonce`: a success only
    /// confirms what [`handle_probe`](Self::handle_probe) decides; a failure or refusal
    /// ends the check now (retried after `retry_every`).
    pub fn handle_reply(&mut self, now: Mono, nonce: Nonce, failure: Option<String>) {
        let State::Checking { nonce: want, .. } = self.state else {
            return;
        };
        if nonce == want {
            if let Some(why) = failure {
                self.fail(now, why);
            }
        }
    }

    /// Whether the serving roles are over their caps now.
    pub fn handle_load(&mut self, now: Mono, overloaded: bool) {
        let State::Promoted { overloaded_since } = &mut self.state else {
            return;
        };
        let since = match (overloaded, *overloaded_since) {
            (false, _) => None,
            (true, Some(since)) => Some(since),
            (true, None) => Some(now),
        };
        *overloaded_since = since;
        if since.is_some_and(|s| now.since(s) >= self.config.overload_for) {
            self.demote(now, DemoteReason::Overloaded);
        }
    }

    /// The address the check proved is no longer ours (the supernodes see us at another
    /// IP, or the local IP changed): demote if serving, and check again on the new
    /// network after `retry_every`; a check in progress fails, and the upload is
    /// measured again.
    pub fn handle_network_changed(&mut self, now: Mono) {
        // Another network's upload is another upload.
        self.upload = None;
        match self.state {
            State::Promoted { .. } => self.demote(now, DemoteReason::NetworkChanged),
            State::Checking { .. } | State::Measuring { .. } => {
                self.fail(now, "the network changed during the check".into())
            }
            _ => {}
        }
    }

    /// The user quits: demote if serving; never promote again.
    pub fn handle_quit(&mut self, now: Mono) {
        if self.is_promoted() {
            self.demote(now, DemoteReason::Quit);
        }
        self.state = State::Done;
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    pub fn poll_timeout(&self) -> Option<Mono> {
        match self.state {
            State::Waiting { at } => Some(at),
            State::Checking { deadline, .. } | State::Measuring { deadline, .. } => Some(deadline),
            State::Promoted {
                overloaded_since: Some(since),
            } => Some(since + self.config.overload_for),
            State::Promoted { .. } | State::Done => None,
        }
    }

    /// The next thing to do or report.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
#[path = "promotion_tests.rs"]
mod tests;
