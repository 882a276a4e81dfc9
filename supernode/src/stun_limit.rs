//! Admission for STUN requests (issue 11 item 9): a token bucket per source IP and one
//! for the whole service, so the responder cannot be used as a reflector.
//!
//! STUN over UDP has no handshake: a request with a spoofed source makes the supernode
//! send its (2.6–3.2× larger) answer to a victim. Each source IP gets
//! [`StunLimits::per_ip_rate`] answers per second after a burst of
//! [`StunLimits::per_ip_burst`]; all sources together get [`StunLimits::total_rate`].
//! The table of sources is bounded ([`StunLimits::max_sources`]): idle entries are
//! forgotten first, and when it is full of active sources a new source is refused
//! rather than remembered. Pure: the caller passes a monotonic `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The limits; [`Default`] lets ordinary use through (a household behind one NAT
/// address, or twenty test clients on 127.0.0.1, each running NAT discovery at once).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StunLimits {
    /// Sustained answers per second to one source IP. Default 50.
    pub per_ip_rate: f64,
    /// Answers one quiet source IP may get at once. Default 200.
    pub per_ip_burst: f64,
    /// Sustained answers per second to all sources together. Default 5000.
    pub total_rate: f64,
    /// Source IPs remembered at once. Default 10 000.
    pub max_sources: usize,
}

impl Default for StunLimits {
    fn default() -> StunLimits {
        StunLimits {
            per_ip_rate: 50.0,
            per_ip_burst: 200.0,
            total_rate: 5000.0,
            max_sources: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    level: f64,
    last: Instant,
}

impl Bucket {
    fn full(depth: f64, now: Instant) -> Bucket {
        Bucket {
            level: depth,
            last: now,
        }
    }

    /// Refills at `rate` per second up to `depth`, then takes one token if there is one.
    fn take(&mut self, now: Instant, rate: f64, depth: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + elapsed * rate).min(depth);
        self.last = now;
        if self.level >= 1.0 {
            self.level -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full again by `now` (its source has been quiet).
    fn refilled(&self, now: Instant, rate: f64, depth: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.level + elapsed * rate >= depth
    }
}

/// Per-source and total token buckets for STUN answers.
#[derive(Debug)]
pub struct StunLimiter {
    limits: StunLimits,
    sources: HashMap<IpAddr, Bucket>,
    total: Bucket,
    /// Requests refused since start.
    pub refused: u64,
}

impl StunLimiter {
    /// A limiter with full buckets at `now`.
    pub fn new(limits: StunLimits, now: Instant) -> StunLimiter {
        StunLimiter {
            limits,
            sources: HashMap::new(),
            // One second's worth of the total rate may go out at once.
            total: Bucket::full(limits.total_rate, now),
            refused: 0,
        }
    }

    /// Whether a request from `source` (an IP; the port is the attacker's choice) may be
    /// answered now. Each `true` spends one token of the source's and the total bucket.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        let source = source.to_canonical();
        let l = self.limits;
        if !self.sources.contains_key(&source) && self.sources.len() >= l.max_sources {
            self.sources
                .retain(|_, b| !b.refilled(now, l.per_ip_rate, l.per_ip_burst));
            if self.sources.len() >= l.max_sources {
                self.refused += 1;
                return false;
            }
        }
        let bucket = self
            .sources
            .entry(source)
            .or_insert_with(|| Bucket::full(l.per_ip_burst, now));
        // The source's bucket first: a flooding source must not drain the total.
        let ok = bucket.take(now, l.per_ip_rate, l.per_ip_burst)
            && self.total.take(now, l.total_rate, l.total_rate);
        if !ok {
            self.refused += 1;
        }
        ok
    }

    /// Source IPs remembered now.
    #[cfg(test)]
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

/// How long an idle source is remembered at most, for the docs: a full bucket refills
/// in `burst / rate` seconds (4 s with the defaults).
#[allow(dead_code)]
pub fn refill_time(limits: &StunLimits) -> Duration {
    Duration::from_secs_f64(limits.per_ip_burst / limits.per_ip_rate.max(f64::MIN_POSITIVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_flooding_source_is_cut_to_its_rate_and_others_still_get_answers() {
        let t0 = Instant::now();
        let mut l = StunLimiter::new(StunLimits::default(), t0);
        let answered = (0..1000).filter(|_| l.admit(ip(1), t0)).count();
        assert_eq!(answered, 200, "the burst, then nothing");
        // One second later: 50 more.
        let t1 = t0 + Duration::from_secs(1);
        let answered = (0..1000).filter(|_| l.admit(ip(1), t1)).count();
        assert_eq!(answered, 50);
        // A bystander is untouched.
        assert!(l.admit(ip(2), t1));
        assert_eq!(l.refused, 800 + 950);
    }

    #[test]
    fn twenty_clients_behind_one_address_all_run_nat_discovery() {
        // NAT discovery sends about ten requests; twenty clients start at once.
        let t0 = Instant::now();
        let mut l = StunLimiter::new(StunLimits::default(), t0);
        assert!((0..200).all(|_| l.admit(ip(1), t0)));
    }

    #[test]
    fn spoofing_many_sources_is_capped_in_total_and_in_memory() {
        let limits = StunLimits {
            total_rate: 100.0,
            max_sources: 50,
            ..StunLimits::default()
        };
        let t0 = Instant::now();
        let mut l = StunLimiter::new(limits, t0);
        let answered = (0..=255u8)
            .flat_map(|a| (0..4u8).map(move |b| IpAddr::from([10, a, b, 1])))
            .filter(|&src| l.admit(src, t0))
            .count();
        assert_eq!(answered, 50, "one per remembered source, within the total");
        assert!(l.sources() <= 50);
        // Once the remembered sources have been quiet long enough, new ones get room.
        let later = t0 + refill_time(&limits) + Duration::from_secs(1);
        assert!(l.admit(IpAddr::from([192, 0, 2, 1]), later));
        assert!(l.sources() <= 50);
    }

    #[test]
    fn mapped_v6_and_v4_are_one_source() {
        let t0 = Instant::now();
        let limits = StunLimits {
            per_ip_burst: 2.0,
            ..StunLimits::default()
        };
        let mut l = StunLimiter::new(limits, t0);
        let v4: IpAddr = "192.0.2.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert!(l.admit(v4, t0));
        assert!(l.admit(mapped, t0));
        assert!(!l.admit(v4, t0));
    }
}
