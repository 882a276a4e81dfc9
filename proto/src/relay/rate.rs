//! Per-leg rate caps: two token buckets, packets and bytes, that must both have room.
//!
//! Levels are kept in milli-tokens so that refilling at `rate` tokens per second over
//! whole milliseconds (the protocol clock's resolution) is exact integer arithmetic:
//! one millisecond adds exactly `rate` milli-tokens, and nothing is lost to rounding.
//!
//! Time is milliseconds on the relay's monotonic clock (see [`super::pairing`]): a
//! wall-clock step can neither freeze nor refill the buckets.

use crate::quota::{KeyedQuota, Quota};
use crate::time::Mono;
use std::time::Duration;

/// A leg's allowance: sustained rates, and how long a burst at zero may last before
/// the buckets are empty (the bucket depth, as a time at the sustained rate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained datagrams per second.
    pub packets_per_sec: u32,
    /// Sustained datagram payload bytes per second.
    pub bytes_per_sec: u32,
    /// Bucket depth: a leg that was quiet may send this long's worth at once. Jitter
    /// buffers and network hiccups deliver audio in bursts; one second absorbs them.
    pub burst: Duration,
}

impl Default for RateLimit {
    /// 100 packets/s and 64 kB/s: twice what one Opus stream at 20 ms frames needs in
    /// packets, and several times its bytes, so honest clients never hit the cap.
    fn default() -> RateLimit {
        RateLimit {
            packets_per_sec: 100,
            bytes_per_sec: 64 * 1024,
            burst: Duration::from_secs(1),
        }
    }
}

const MILLI: u64 = 1000;

#[derive(Clone, Debug)]
struct Bucket {
    /// Milli-tokens available.
    level: u64,
    /// Milli-tokens added per millisecond (= tokens per second).
    rate: u64,
    /// Most milli-tokens the bucket holds.
    depth: u64,
}

impl Bucket {
    fn full(per_sec: u32, burst: Duration) -> Bucket {
        let rate = u64::from(per_sec);
        let depth = rate.saturating_mul(burst.as_millis().min(u64::MAX as u128) as u64);
        Bucket {
            level: depth,
            rate,
            depth,
        }
    }

    fn refill(&mut self, elapsed_ms: u64) {
        self.level = self
            .level
            .saturating_add(elapsed_ms.saturating_mul(self.rate))
            .min(self.depth);
    }

    fn has(&self, tokens: u64) -> bool {
        self.level >= tokens.saturating_mul(MILLI)
    }

    fn take(&mut self, tokens: u64) {
        self.level = self.level.saturating_sub(tokens.saturating_mul(MILLI));
    }
}

/// One leg's buckets.
#[derive(Clone, Debug)]
pub(crate) struct Limiter {
    packets: Bucket,
    bytes: Bucket,
    /// Monotonic milliseconds of the last refill.
    last: u64,
}

impl Limiter {
    /// Full buckets at `now`: a new leg may burst at once.
    pub(crate) fn new(limit: &RateLimit, now: u64) -> Limiter {
        Limiter {
            packets: Bucket::full(limit.packets_per_sec, limit.burst),
            bytes: Bucket::full(limit.bytes_per_sec, limit.burst),
            last: now,
        }
    }

    /// Takes one datagram of `len` bytes if both buckets have room; otherwise takes
    /// nothing (a dropped datagram must not eat the allowance of the next ones).
    pub(crate) fn admit(&mut self, now: u64, len: usize) -> bool {
        // Monotonic input never goes back; if it did, it would add nothing.
        let elapsed = now.saturating_sub(self.last);
        if elapsed > 0 {
            self.packets.refill(elapsed);
            self.bytes.refill(elapsed);
            self.last = now;
        }
        let len = len as u64;
        if self.packets.has(1) && self.bytes.has(len) {
            self.packets.take(1);
            self.bytes.take(len);
            true
        } else {
            false
        }
    }
}

/// Joins per source IP: each costs the relay an ed25519 verification, so a flood of
/// them is capped before any is verified (issue 11, item 5). A [`KeyedQuota`] per IP
/// (bursts of three seconds' worth), on a monotonic clock from `epoch`.
#[derive(Debug)]
pub struct JoinLimiter {
    epoch: std::time::Instant,
    per_ip: KeyedQuota<std::net::IpAddr>,
}

impl JoinLimiter {
    /// Default: 20 joins/s per IP with a burst of 60 (three seconds' worth): a NAT with
    /// dozens of clients or a test starting twenty parties is never slowed.
    pub const DEFAULT_PER_SEC: u32 = 20;
    /// Default bound on the IPs tracked at once.
    pub const DEFAULT_MAX_IPS: usize = 4096;

    /// A limiter allowing `per_sec` joins per IP (bursts of three seconds' worth),
    /// tracking at most `max_ips` addresses, on a monotonic clock from `epoch`.
    pub fn new(per_sec: u32, max_ips: usize, epoch: std::time::Instant) -> JoinLimiter {
        let quota = Quota::new(per_sec.saturating_mul(3), per_sec.saturating_mul(60));
        JoinLimiter {
            epoch,
            per_ip: KeyedQuota::new(quota, max_ips),
        }
    }

    /// Whether a join from `ip` at `now` may go on to verification. A full table whose
    /// addresses have not refilled (under attack) refuses new addresses.
    pub fn admit(&mut self, now: std::time::Instant, ip: std::net::IpAddr) -> bool {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.per_ip.take(&ip, Mono(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(pps: u32, bps: u32) -> RateLimit {
        RateLimit {
            packets_per_sec: pps,
            bytes_per_sec: bps,
            burst: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_full_bucket_allows_one_burst_then_the_sustained_rate() {
        let mut l = Limiter::new(&limit(100, 1_000_000), 0);
        let admitted = (0..150).filter(|_| l.admit(0, 100)).count();
        assert_eq!(admitted, 100);
        // 100 packets/s is one every 10 ms.
        assert!(!l.admit(9, 100));
        assert!(l.admit(10, 100));
        assert!(!l.admit(10, 100));
        // Over a long run the rate converges to the cap.
        let mut ok = 0;
        for ms in 11..=10_010u64 {
            if l.admit(ms, 100) {
                ok += 1;
            }
        }
        assert_eq!(ok, 1000);
    }

    #[test]
    fn joins_are_capped_per_ip_and_the_table_is_bounded() {
        let t0 = std::time::Instant::now();
        let mut j = JoinLimiter::new(20, 2, t0);
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        let c: std::net::IpAddr = "192.0.2.3".parse().unwrap();
        assert_eq!((0..100).filter(|_| j.admit(t0, a)).count(), 60);
        // Another address is not affected.
        assert!(j.admit(t0, b));
        // A third while both are busy: refused, the table stays bounded.
        assert!(!j.admit(t0, c));
        // 50 ms later one more join from `a` fits.
        assert!(j.admit(t0 + Duration::from_millis(50), a));
        // Once the others' allowance has refilled, new addresses get in.
        assert!(j.admit(t0 + Duration::from_secs(10), c));
    }

    #[test]
    fn the_byte_bucket_caps_large_datagrams() {
        let mut l = Limiter::new(&limit(1_000, 10_000), 0);
        let admitted = (0..20).filter(|_| l.admit(0, 1_000)).count();
        assert_eq!(admitted, 10);
        // After 100 ms there are 1,000 bytes again: one more fits, a small one does not.
        assert!(l.admit(100, 1_000));
        assert!(!l.admit(100, 1));
    }

    #[test]
    fn a_refused_datagram_takes_nothing() {
        let mut l = Limiter::new(&limit(10, 1_000), 0);
        assert!(!l.admit(0, 2_000));
        // The packet allowance is intact.
        assert_eq!((0..20).filter(|_| l.admit(0, 1)).count(), 10);
    }

    #[test]
    fn time_going_back_adds_nothing() {
        let mut l = Limiter::new(&limit(1, 1_000), 10_000);
        assert!(l.admit(10_000, 1));
        assert!(!l.admit(5_000, 1));
        assert!(l.admit(11_000, 1));
    }
}
