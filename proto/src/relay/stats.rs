//! Why a relay dropped a datagram or closed a leg, and the counters it keeps of both.
//!
//! Under pressure a relay drops rather than blocks; every drop is counted under a
//! typed reason so an operator can tell abuse (rate limits) from overload (congested
//! partners) from client bugs (datagrams before joining).

use super::RelayRefusalCode;
use std::fmt;

/// Why a datagram was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The connection has not joined a call (no valid token yet).
    NotJoined,
    /// The leg joined, but the other party's leg is not there.
    NotPaired,
    /// Over the leg's packet or byte rate cap.
    RateLimited,
    /// The call has run for the maximum call length.
    CallTooLong,
    /// Larger than the partner's connection can carry in one datagram.
    TooLarge,
    /// The partner's send buffer is full: it cannot keep up, newer audio is worth more.
    Congested,
    /// The partner's connection is gone or does not take datagrams.
    Undeliverable,
    /// A channel datagram too short, of an unknown kind, or otherwise not well formed.
    Malformed,
    /// A channel datagram naming a channel that is not open (or no longer is).
    UnknownChannel,
    /// A channel datagram whose MAC does not verify under its channel's key: a spoofed
    /// or corrupted packet.
    BadMac,
    /// A channel datagram whose counter was already seen or is older than the replay
    /// window.
    Replayed,
    /// A channel datagram with a valid MAC from an address the channel has not proven
    /// (the sender must answer a challenge there first).
    UnprovenAddress,
    /// A datagram from (or to) the relay's own address, port 0 or an unspecified IP:
    /// a reflection loop or a forged source.
    Reflection,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 13] = [
        DropReason::NotJoined,
        DropReason::NotPaired,
        DropReason::RateLimited,
        DropReason::CallTooLong,
        DropReason::TooLarge,
        DropReason::Congested,
        DropReason::Undeliverable,
        DropReason::Malformed,
        DropReason::UnknownChannel,
        DropReason::BadMac,
        DropReason::Replayed,
        DropReason::UnprovenAddress,
        DropReason::Reflection,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// A short snake_case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotJoined => "not_joined",
            DropReason::NotPaired => "not_paired",
            DropReason::RateLimited => "rate_limited",
            DropReason::CallTooLong => "call_too_long",
            DropReason::TooLarge => "too_large",
            DropReason::Congested => "congested",
            DropReason::Undeliverable => "undeliverable",
            DropReason::Malformed => "malformed",
            DropReason::UnknownChannel => "unknown_channel",
            DropReason::BadMac => "bad_mac",
            DropReason::Replayed => "replayed",
            DropReason::UnprovenAddress => "unproven_address",
            DropReason::Reflection => "reflection",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the relay ended a leg on its own initiative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// A paired leg sent no datagram for the idle timeout.
    IdleTimeout,
    /// The call reached the maximum call length.
    CallTooLong,
    /// The other party never joined within the pairing timeout.
    NotPaired,
    /// The other party left and did not come back within the rejoin grace period.
    PartnerLeft,
}

impl CloseReason {
    /// Every reason.
    pub const ALL: [CloseReason; 4] = [
        CloseReason::IdleTimeout,
        CloseReason::CallTooLong,
        CloseReason::NotPaired,
        CloseReason::PartnerLeft,
    ];

    /// The QUIC application error code the shell closes the connection with. 0 is
    /// left for "normal shutdown"; these start at 0x100 to stay clear of it.
    pub fn code(self) -> u32 {
        match self {
            CloseReason::IdleTimeout => 0x101,
            CloseReason::CallTooLong => 0x102,
            CloseReason::NotPaired => 0x103,
            CloseReason::PartnerLeft => 0x104,
        }
    }

    /// A sentence for the client's logs, sent as the QUIC close reason.
    pub fn message(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "relay leg idle: no media for the idle timeout",
            CloseReason::CallTooLong => "call reached the relay's maximum call length",
            CloseReason::NotPaired => "the other party did not join the relay in time",
            CloseReason::PartnerLeft => "the other party left the relay and did not come back",
        }
    }

    /// A short snake_case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::CallTooLong => "call_too_long",
            CloseReason::NotPaired => "not_paired",
            CloseReason::PartnerLeft => "partner_left",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A relay's running totals since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Datagrams forwarded.
    pub forwarded_packets: u64,
    /// Payload bytes forwarded.
    pub forwarded_bytes: u64,
    drops: [u64; DropReason::ALL.len()],
    closes: [u64; CloseReason::ALL.len()],
    refused_joins: [u64; RelayRefusalCode::ALL.len()],
}

impl RelayStats {
    /// Datagrams dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Datagrams dropped for any reason.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Legs the relay closed for `reason`.
    pub fn closes(&self, reason: CloseReason) -> u64 {
        self.closes[reason as usize]
    }

    /// Joins refused with `code` (bad tokens, rate limits, full calls, ...).
    pub fn refused_joins(&self, code: RelayRefusalCode) -> u64 {
        self.refused_joins[code as usize]
    }

    /// Adds `n` joins refused with `code`: the relay's shell refuses rate-limited and
    /// unverifiable joins before its core sees them, and counts them outside the core.
    pub fn count_refused_joins(&mut self, code: RelayRefusalCode, n: u64) {
        self.refused_joins[code as usize] += n;
    }

    /// Adds `other`'s counters to these (the relay's data-plane shards keep their own
    /// and are summed for reports).
    pub fn merge(&mut self, other: &RelayStats) {
        self.forwarded_packets += other.forwarded_packets;
        self.forwarded_bytes += other.forwarded_bytes;
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
        for (a, b) in self.closes.iter_mut().zip(other.closes) {
            *a += b;
        }
        for (a, b) in self.refused_joins.iter_mut().zip(other.refused_joins) {
            *a += b;
        }
    }

    /// A datagram counted as forwarded that the shell could not send after all: moves
    /// it from the forwarded counters to the drops under `reason`.
    pub fn count_undelivered(&mut self, reason: DropReason, len: usize) {
        self.uncount_forward(len);
        self.count_drop(reason);
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        self.closes[reason as usize] += 1;
    }

    pub(crate) fn count_forward(&mut self, len: usize) {
        self.forwarded_packets += 1;
        self.forwarded_bytes += len as u64;
    }

    /// A datagram counted as forwarded that the shell could not send after all.
    pub(crate) fn uncount_forward(&mut self, len: usize) {
        self.forwarded_packets = self.forwarded_packets.saturating_sub(1);
        self.forwarded_bytes = self.forwarded_bytes.saturating_sub(len as u64);
    }
}

impl fmt::Display for RelayStats {
    /// `forwarded=N bytes=N drops: reason=N ...` (only non-zero drop counters).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "forwarded={} bytes={}",
            self.forwarded_packets, self.forwarded_bytes
        )?;
        for reason in DropReason::ALL {
            let n = self.drops(reason);
            if n > 0 {
                write!(f, " drop.{reason}={n}")?;
            }
        }
        for reason in CloseReason::ALL {
            let n = self.closes(reason);
            if n > 0 {
                write!(f, " close.{reason}={n}")?;
            }
        }
        for code in RelayRefusalCode::ALL {
            let n = self.refused_joins(code);
            if n > 0 {
                write!(f, " refused.{}={n}", code.as_str())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_indices_match_the_all_table() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, r) in RelayRefusalCode::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn stats_print_only_what_happened() {
        let mut s = RelayStats::default();
        s.count_forward(100);
        s.count_forward(20);
        s.count_drop(DropReason::RateLimited);
        s.count_close(CloseReason::IdleTimeout);
        s.uncount_forward(20);
        s.count_refused_joins(RelayRefusalCode::BadToken, 3);
        assert_eq!(
            s.to_string(),
            "forwarded=1 bytes=100 drop.rate_limited=1 close.idle_timeout=1 refused.bad_token=3"
        );
        assert_eq!(s.total_drops(), 1);
    }
}
