//! The one place the shells read clocks, in the protocol's time forms.
//!
//! - [`now`]: wall time ([`Timestamp`]), only for what is signed or compared across
//!   machines: expiries written into records and tokens, `sent_at`, freshness checks.
//! - [`mono`]: monotonic time ([`Mono`]) for every timer, deadline, rate and idle check.
//!
//! Test hook: `PARLEY_CLOCK_OFFSET_S` (a signed number of seconds, read once) shifts
//! this process's wall clock, so tests can run processes whose clocks disagree by
//! minutes. `PARLEY_CLOCK_OFFSET_FILE` names a file holding such a number, re-read at
//! most every 100 ms, so a test can step a running process's wall clock backwards and
//! forwards. Neither touches [`mono`]. Both are for tests; do not set them in
//! production.

use parley_proto::time::Now;
use parley_proto::{Mono, Timestamp};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock time as milliseconds since the Unix epoch (plus the test offset, if set).
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp(ms.saturating_add(offset_ms()).max(0) as u64)
}

/// How long from `now()` until `at` (zero if it has passed).
pub fn until(at: Timestamp) -> std::time::Duration {
    at.since(now())
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Monotonic milliseconds since this process first asked.
pub fn mono() -> Mono {
    Mono(origin().elapsed().as_millis() as u64)
}

/// Both clocks at once, for machines that time on one and sign with the other.
pub fn both() -> Now {
    Now {
        mono: mono(),
        wall: now(),
    }
}

/// How long from `mono()` until `at` (zero if it has passed).
pub fn mono_until(at: Mono) -> std::time::Duration {
    at.since(mono())
}

/// The test hook's offset in milliseconds (0 when unset).
fn offset_ms() -> i64 {
    static FIXED: OnceLock<i64> = OnceLock::new();
    static FILE: OnceLock<Option<String>> = OnceLock::new();
    static CACHED: AtomicI64 = AtomicI64::new(0);
    static READ_AT: AtomicU64 = AtomicU64::new(u64::MAX);
    let fixed = *FIXED.get_or_init(|| {
        std::env::var("PARLEY_CLOCK_OFFSET_S")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(|s| (s * 1000.0) as i64)
            .unwrap_or(0)
    });
    let Some(path) = FILE.get_or_init(|| std::env::var("PARLEY_CLOCK_OFFSET_FILE").ok()) else {
        return fixed;
    };
    let t = mono().0;
    let last = READ_AT.load(Ordering::Relaxed);
    if last == u64::MAX || t.saturating_sub(last) >= 100 {
        READ_AT.store(t, Ordering::Relaxed);
        if let Some(s) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
        {
            CACHED.store((s * 1000.0) as i64, Ordering::Relaxed);
        }
    }
    fixed.saturating_add(CACHED.load(Ordering::Relaxed))
}
