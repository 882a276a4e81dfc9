//! The one place the shells read the wall clock, in the protocol's time form.

use parley_proto::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time as milliseconds since the Unix epoch.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp(ms)
}

/// How long from `now()` until `at` (zero if it has passed).
pub fn until(at: Timestamp) -> std::time::Duration {
    at.since(now())
}
