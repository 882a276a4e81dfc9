//! Time as the protocol sees it: milliseconds since the Unix epoch.
//!
//! One type serves both for timers and for expiries written into signed records, so
//! a simulation can run every machine on one virtual clock.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Milliseconds since the Unix epoch. Supplied by the caller; never read from the OS here.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturates at the far future instead of overflowing.
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Monotonic time: milliseconds since an origin the shell fixes once (its process start).
///
/// Use it for every timer, deadline, rate and idle check: it never goes backwards and
/// does not jump when the wall clock is stepped (NTP, a user, a suspended laptop).
/// It means nothing outside the process that made it: never put it on the wire or in
/// a signature (that is what [`Timestamp`] is for: `sent_at` and signed expiries).
/// The shells read it with `parley_net::clock::mono()`; tests and simulations make
/// their own, e.g. `Mono(0)` and `Mono(0) + Duration::from_millis(20)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mono(pub u64);

impl Mono {
    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: Mono) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Milliseconds since the shell's origin.
    pub fn as_millis(self) -> u64 {
        self.0
    }
}

impl std::ops::Add<Duration> for Mono {
    type Output = Mono;
    /// Saturates at the far future instead of overflowing.
    fn add(self, d: Duration) -> Mono {
        Mono(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }
}

/// Both clocks read at one instant, for machines that time things (on [`Mono`]) and
/// sign things (with [`Timestamp`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// For timers and deadlines.
    pub mono: Mono,
    /// For what is signed: expiries, sequence numbers.
    pub wall: Timestamp,
}

impl std::ops::Add<Duration> for Now {
    type Output = Now;
    /// Both clocks `d` later.
    fn add(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall: self.wall + d,
        }
    }
}

/// How far apart two honest machines' wall clocks may be: every signed expiry and
/// freshness check (presence records, relay tokens, call offers) allows this much in
/// either direction. Fifteen minutes covers a machine without NTP for weeks, a wrong time
/// zone setting does not (that is hours: it is refused, and the user told which clock
/// and by how much).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a signed expiry is out of the window [`check_expiry`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryFault {
    /// Passed, even allowing [`MAX_CLOCK_SKEW`].
    Lapsed,
    /// Further out than the longest lifetime plus [`MAX_CLOCK_SKEW`].
    TooFar,
}

/// The one clock-skew rule for signed expiries (presence records, relay tokens): valid
/// until `expires_at` + [`MAX_CLOCK_SKEW`], and never more than `max_lifetime` +
/// [`MAX_CLOCK_SKEW`] after `now` (the signer's clock may be off that much either way).
pub fn check_expiry(
    expires_at: Timestamp,
    now: Timestamp,
    max_lifetime: Duration,
) -> Result<(), ExpiryFault> {
    if expires_at + MAX_CLOCK_SKEW <= now {
        Err(ExpiryFault::Lapsed)
    } else if expires_at > now + max_lifetime + MAX_CLOCK_SKEW {
        Err(ExpiryFault::TooFar)
    } else {
        Ok(())
    }
}

/// The signed difference `theirs - ours` in whole seconds, for telling a user how far a
/// clock is off ("ahead by 660 s" when positive).
pub fn skew_secs(theirs: Timestamp, ours: Timestamp) -> i64 {
    (theirs.0 as i128 - ours.0 as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64 / 1000
}
