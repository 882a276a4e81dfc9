//! File transfers yield to calls: while a call is in progress, transfers are paced by a
//! delay-based rate controller whose signal is the **call's own round-trip time**, so a
//! transfer sharing a bottleneck with the call backs off before the call's audio queues
//! behind it ("a call's audio always wins", issue 17).
//!
//! The idea is LEDBAT's (RFC 6817, the controller behind BitTorrent's µTP): measure the
//! queuing delay as the current delay minus the smallest delay seen recently (the base),
//! and steer the sending rate so that the queuing delay stays at a small target, below
//! which the link is left to interactive traffic. Differences, and why:
//! - The delay is the call's RTT (its probes, every 160 ms), not one-way delay of the
//!   transfer's own packets: what must stay low is the call's delay, and the call is
//!   what crosses the user's uplink and downlink at once. LEDBAT++
//!   (draft-irtf-iccrg-ledbat-plus-plus) also uses RTT.
//! - It sets a *rate* for the shell's token bucket rather than a congestion window: the
//!   transfer runs over QUIC, whose own congestion control stays in charge of loss; this
//!   only holds the transfer below what the call can live with.
//! - Updates are multiplicative per sample (up by at most 4 % with no queue, down by up
//!   to half at twice the target), so it reacts within a few probes; LEDBAT's additive
//!   window growth would take seconds per step at the rates a home uplink has.
//! - A call starting resets the rate to a low start value, so a queue the transfer built
//!   before the call drains and the call's base RTT is measured on a quiet link
//!   (LEDBAT's "latecomer" problem).
//!
//! With no call in progress, transfers are not paced at all. Sans-IO: the shell reports
//! calls starting and ending, RTT samples, and asks before sending or reading each piece.
//!
//! **Windows.** Pacing what is handed to the transport is not enough: QUIC keeps what
//! was written until it is acknowledged (quinn: up to 10 MB a connection) and sends that
//! backlog at its congestion controller's pace whatever the application does next, and a
//! receiver's flow-control credit once granted cannot be taken back. Measured in the
//! NAT lab, a 300 ms uplink queue took 4 s to drain after a call started. So
//! [`CallYield::windows`] also bounds, in *time*, how much a transfer connection may
//! hold: ~300 ms of the transfers' measured throughput with no call (enough for full
//! speed on paths up to that RTT), ~100 ms of the pace while a call runs, so a call
//! starting mid-transfer waits at most that long for the backlog to clear.

use crate::time::Mono;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Tunables; [`Default`] gives the values above.
#[derive(Clone, Debug, PartialEq)]
pub struct YieldConfig {
    /// Queuing delay the call may see from transfers (ms-scale; RFC 6817 allows ≤ 100 ms,
    /// a call wants far less).
    pub target_delay: Duration,
    /// Transfer rate when a call starts, bytes/s.
    pub start_rate: u64,
    /// Never below this while a call runs, bytes/s (the transfer goes on, slowly).
    pub min_rate: u64,
    /// Never above this while a call runs, bytes/s.
    pub max_rate: u64,
    /// The base RTT is the smallest seen within this window.
    pub base_window: Duration,
    /// Depth of the token bucket, as time at the current rate.
    pub burst: Duration,
    /// Window of a transfer connection with no call: this much time of the measured
    /// throughput, within `min_idle_window..=max_window` bytes.
    pub idle_window: Duration,
    /// Window while a call runs: this much time at the pace, at least `min_call_window`.
    pub call_window: Duration,
    /// Bytes.
    pub min_idle_window: u64,
    /// Bytes. Small: the peer may send a whole window at once, and on a 2 Mbit/s uplink
    /// 32 KiB is a 130 ms queue spike (seen in the benchmark); 8 KiB is 33 ms.
    pub min_call_window: u64,
    /// Bytes (quinn's default send window).
    pub max_window: u64,
}

impl Default for YieldConfig {
    fn default() -> Self {
        YieldConfig {
            target_delay: Duration::from_millis(25),
            start_rate: 64_000,
            min_rate: 8_000,
            max_rate: 1_000_000_000,
            base_window: Duration::from_secs(60),
            burst: Duration::from_millis(50),
            idle_window: Duration::from_millis(300),
            call_window: Duration::from_millis(100),
            min_idle_window: 128 * 1024,
            min_call_window: 8 * 1024,
            max_window: 10_000_000,
        }
    }
}

/// Rate growth per sample with no queuing delay (fraction): ×1.27 a second at the
/// probes' 160 ms. 10 % (×1.8 a second) overshot into 100 ms queue spikes in the NAT-lab
/// benchmark, each one a jitter-buffer stretch the call's listener hears.
const UP: f64 = 0.04;
/// Rate cut per sample at twice the target delay (fraction; half as much at 1.5×).
const DOWN: f64 = 0.5;
/// The base window is kept as minima of slots this long (RFC 6817 keeps per-minute
/// minima; finer here because calls are short).
const SLOT: Duration = Duration::from_secs(10);

/// One call's recent RTT minima.
#[derive(Debug, Default)]
struct BaseDelay {
    /// (slot start, smallest RTT in it), oldest first.
    slots: VecDeque<(Mono, Duration)>,
}

impl BaseDelay {
    fn add(&mut self, now: Mono, rtt: Duration, window: Duration) -> Duration {
        match self.slots.back_mut() {
            Some((start, min)) if now.since(*start) < SLOT => *min = (*min).min(rtt),
            _ => self.slots.push_back((now, rtt)),
        }
        while self
            .slots
            .front()
            .is_some_and(|(start, _)| now.since(*start) > window)
        {
            self.slots.pop_front();
        }
        self.slots.iter().map(|s| s.1).min().unwrap_or(rtt)
    }
}

/// How much a transfer connection may hold (see the module docs), bytes; powers of two,
/// so that they change only when the rates move by a factor of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Data written and not yet acknowledged (quinn's send window).
    pub send: u64,
    /// Credit granted to the peer; None: no limit.
    pub receive: Option<u64>,
}

/// Throughput of everything [`CallYield::take`] saw, averaged over 1 s periods.
#[derive(Debug, Default)]
struct Meter {
    start: Option<Mono>,
    bytes: u64,
    /// Bytes/s, the latest full period's (0 before one ended).
    rate: f64,
}

impl Meter {
    fn add(&mut self, now: Mono, bytes: usize) {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.since(start);
        if elapsed >= Duration::from_secs(1) {
            self.rate = self.bytes as f64 / elapsed.as_secs_f64();
            self.start = Some(now);
            self.bytes = 0;
        }
        self.bytes += bytes as u64;
    }
}

/// The controller: calls in progress, the current rate and the shell's token bucket.
#[derive(Debug)]
pub struct CallYield {
    config: YieldConfig,
    calls: BTreeMap<u64, BaseDelay>,
    /// Bytes/s while a call runs.
    rate: f64,
    /// Bytes that may go now (negative: owed).
    tokens: f64,
    refilled: Option<Mono>,
    meter: Meter,
}

impl CallYield {
    /// A controller with no call in progress.
    pub fn new(config: YieldConfig) -> CallYield {
        let rate = config.start_rate as f64;
        CallYield {
            config,
            calls: BTreeMap::new(),
            rate,
            tokens: 0.0,
            refilled: None,
            meter: Meter::default(),
        }
    }

    /// Call `call` (any id unique in this process) is now in progress.
    pub fn call_started(&mut self, now: Mono, call: u64) {
        if self.calls.is_empty() {
            self.rate = self.config.start_rate as f64;
            self.tokens = 0.0;
            self.refilled = Some(now);
        }
        self.calls.insert(call, BaseDelay::default());
    }

    /// Call `call` ended; with none left, transfers run unpaced.
    pub fn call_ended(&mut self, call: u64) {
        self.calls.remove(&call);
    }

    /// An RTT sample of call `call` (its media probes'); ignored for unknown calls.
    pub fn handle_rtt(&mut self, now: Mono, call: u64, rtt: Duration) {
        let window = self.config.base_window;
        let Some(base) = self.calls.get_mut(&call).map(|b| b.add(now, rtt, window)) else {
            return;
        };
        let target = self.config.target_delay.as_secs_f64().max(1e-3);
        let queuing = rtt.saturating_sub(base).as_secs_f64();
        let off = ((target - queuing) / target).clamp(-1.0, 1.0);
        let factor = if off >= 0.0 {
            1.0 + UP * off
        } else {
            1.0 + DOWN * off
        };
        self.rate = (self.rate * factor).clamp(
            self.config.min_rate as f64,
            self.config.max_rate.max(self.config.min_rate) as f64,
        );
    }

    /// The pace for transfers now, bytes/s; None while no call is in progress.
    pub fn rate(&self) -> Option<u64> {
        (!self.calls.is_empty()).then_some(self.rate as u64)
    }

    /// The shell is about to send (or has just read) `bytes` of transfer data: returns
    /// how long to wait first (None: go now). The bytes are charged either way.
    pub fn take(&mut self, now: Mono, bytes: usize) -> Option<Duration> {
        self.meter.add(now, bytes);
        if self.calls.is_empty() {
            return None;
        }
        let since = self.refilled.map_or(Duration::ZERO, |t| now.since(t));
        self.refilled = Some(now);
        let depth = (self.rate * self.config.burst.as_secs_f64()).max(bytes as f64);
        self.tokens = (self.tokens + self.rate * since.as_secs_f64()).min(depth);
        self.tokens -= bytes as f64;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

impl CallYield {
    /// The windows transfer connections should have now.
    pub fn windows(&self) -> Windows {
        let c = &self.config;
        let pow2 = |w: u64| w.next_power_of_two().min(c.max_window.max(1));
        match self.rate() {
            Some(rate) => {
                let w = (rate as f64 * c.call_window.as_secs_f64()) as u64;
                let w = pow2(w.max(c.min_call_window));
                Windows {
                    send: w,
                    receive: Some(w),
                }
            }
            None => {
                let w = (self.meter.rate * c.idle_window.as_secs_f64()) as u64;
                Windows {
                    send: pow2(w.max(c.min_idle_window)),
                    receive: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Mono {
        Mono(1_000_000 + ms)
    }

    #[test]
    fn without_a_call_nothing_is_paced() {
        let mut y = CallYield::new(YieldConfig::default());
        assert_eq!(y.rate(), None);
        assert_eq!(y.take(at(0), 10_000_000), None);
        y.call_started(at(0), 1);
        assert_eq!(y.rate(), Some(64_000));
        y.call_ended(1);
        assert_eq!(y.take(at(10), 10_000_000), None);
    }

    #[test]
    fn a_quiet_path_lets_the_rate_grow_and_a_queue_cuts_it() {
        let mut y = CallYield::new(YieldConfig::default());
        y.call_started(at(0), 7);
        // 100 probes at the base RTT: the rate grows, bounded by 4 % a sample.
        for i in 0..100 {
            y.handle_rtt(at(i * 160), 7, Duration::from_millis(40));
        }
        let grown = y.rate().unwrap();
        assert!(grown > 64_000 * 40, "{grown}");
        assert!(grown as f64 <= 64_000.0 * 1.04f64.powi(100) + 1.0);
        // The queue reaches twice the target: halved each sample, down to the floor.
        y.handle_rtt(at(16_000), 7, Duration::from_millis(90));
        assert_eq!(y.rate().unwrap(), grown / 2);
        for i in 0..200 {
            y.handle_rtt(at(16_160 + i * 160), 7, Duration::from_millis(300));
        }
        assert_eq!(y.rate(), Some(8_000));
        // At the target exactly, the rate holds.
        let before = y.rate();
        y.handle_rtt(at(60_000), 7, Duration::from_millis(65));
        assert_eq!(y.rate(), before);
    }

    #[test]
    fn the_base_is_the_smallest_rtt_of_the_last_minute() {
        let mut y = CallYield::new(YieldConfig::default());
        y.call_started(at(0), 1);
        y.handle_rtt(at(0), 1, Duration::from_millis(20));
        let r = y.rate().unwrap();
        // 70 ms later in the same minute: 50 ms of queue, cut.
        y.handle_rtt(at(1_000), 1, Duration::from_millis(70));
        assert!(y.rate().unwrap() < r);
        // Two minutes on, the path's RTT is 70 ms for good: that is the new base.
        y.handle_rtt(at(120_000), 1, Duration::from_millis(70));
        let r = y.rate().unwrap();
        y.handle_rtt(at(120_160), 1, Duration::from_millis(70));
        assert!(y.rate().unwrap() > r, "no queue any more");
    }

    #[test]
    fn the_bucket_paces_at_the_rate() {
        let mut y = CallYield::new(YieldConfig::default());
        y.call_started(at(0), 1);
        // 64 kB/s: 16 KiB pieces leave every 256 ms on average.
        let mut t = 0.0f64;
        for _ in 0..40 {
            if let Some(wait) = y.take(at(t as u64), 16_384) {
                t += wait.as_secs_f64() * 1000.0;
            }
        }
        let secs = t / 1000.0;
        let rate = 39.0 * 16_384.0 / secs;
        assert!((60_000.0..68_000.0).contains(&rate), "{rate}");
    }

    #[test]
    fn windows_hold_a_bounded_time_of_data() {
        let mut y = CallYield::new(YieldConfig::default());
        // No traffic yet: the idle minimum, and no limit on credit.
        assert_eq!(
            y.windows(),
            Windows {
                send: 128 * 1024,
                receive: None
            }
        );
        // 250 kB/s for two seconds (a 2 Mbit/s uplink): 300 ms of it, rounded up.
        for ms in (0..2_000).step_by(64) {
            y.take(at(ms), 16_000);
        }
        assert_eq!(y.windows().send, 128 * 1024, "75 kB fits the minimum");
        // 100 MB/s (loopback): 30 MB, held at quinn's 10 MB.
        for ms in 2_000..4_100 {
            y.take(at(ms), 100_000);
        }
        assert_eq!(y.windows().send, 10_000_000);
        // A call: 100 ms at the 64 kB/s start pace (6.4 kB → the 8 KiB floor), credit
        // limited too.
        y.call_started(at(4_100), 1);
        assert_eq!(
            y.windows(),
            Windows {
                send: 8 * 1024,
                receive: Some(8 * 1024)
            }
        );
        y.call_ended(1);
        assert_eq!(y.windows().receive, None);
    }

    #[test]
    fn a_second_call_keeps_its_own_base_and_the_last_one_ending_frees_transfers() {
        let mut y = CallYield::new(YieldConfig::default());
        y.call_started(at(0), 1);
        y.call_started(at(0), 2);
        y.handle_rtt(at(0), 1, Duration::from_millis(10));
        y.handle_rtt(at(0), 2, Duration::from_millis(200));
        let r = y.rate().unwrap();
        // Call 2's path is simply long: its 200 ms is its base, not a queue.
        y.handle_rtt(at(160), 2, Duration::from_millis(200));
        assert!(y.rate().unwrap() > r);
        y.call_ended(1);
        assert!(y.rate().is_some());
        y.call_ended(2);
        assert_eq!(y.rate(), None);
        // Unknown calls' samples change nothing.
        y.handle_rtt(at(400), 9, Duration::from_secs(1));
        assert_eq!(y.rate(), None);
    }
}
