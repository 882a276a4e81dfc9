//! Measuring a client's upload, for the default `--relay-kbps` of a promoted client
//! (issue 10; docs/architecture.md, "The upload measurement").
//!
//! Once before promotion (and again after a network change) the client opens a stream
//! on its attachment to a supernode and sends [`UploadProbe`] followed by at most
//! `max_bytes` bytes of padding; the supernode counts what arrives for at most
//! [`UploadLimits::duration`] ([`UploadMeter`]), stops the stream and answers
//! [`UploadReply::Measured`] with a few timed samples of the running byte count. The
//! client turns them into a rate ([`UploadReport::kbps`]: the slope after the first
//! quarter of the burst, so QUIC's slow start does not count) and its default relay
//! budget into a documented share of it ([`default_relay_kbps`]: 25 %, at least one
//! relayed call's 512, at most 8,192).
//!
//! The supernode bounds what a probe can cost it ([`UploadGuard`]): bytes per probe,
//! probes per client key and per IP per hour, never over the TCP tunnel.
//!
//! Units: "kbps" here is the unit of `--relay-kbps`, 1,024 bit/s (a relayed leg's cap
//! is 32 KiB/s = 256 of them, `relay::peer::PEER_LEG_RATE`).
//!
//! Wire: two new envelope kinds (0x35, 0x36); nothing existing changed shape, and a
//! supernode that predates them refuses the probe as malformed (the client then has no
//! measurement: see `promotion`).

use crate::codec::{DecodeError, WireMessage};
use crate::messages::{Refusal, RefusalCode};
use crate::quota::{KeyedQuota, Quota};
use crate::time::Mono;
use crate::PeerId;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// The most bytes a client asks to send in one probe, and the most a supernode
/// accepts by default: 4 MiB (2 s at 16 Mbit/s; a slower link sends less in 2 s).
pub const MAX_PROBE_BYTES: u32 = 4 * 1024 * 1024;
/// How often the meter writes down the running count: every 25 ms.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(25);
/// The most samples a report carries (2 s at 25 ms, plus first and last, fit).
pub const MAX_SAMPLES: usize = 128;
/// The fewest bytes a measurement is made from (fewer say nothing about a rate).
pub const MIN_MEASURED_BYTES: u32 = 64 * 1024;
/// The share of the measured upload a promoted client gives to relaying by default.
pub const RELAY_SHARE_PERCENT: u32 = 25;
/// One relayed call's need: two legs at 256 (`relay::peer::peer_config`'s minimum).
pub const MIN_RELAY_KBPS: u32 = 512;
/// The most a measured default gives to relaying: 8,192 (32 legs, 16 calls); more
/// takes `--relay-kbps`.
pub const MAX_DEFAULT_RELAY_KBPS: u32 = 8_192;

/// Client → an attached supernode (kind 0x35), the first frame of a stream that then
/// carries at most `max_bytes` bytes of padding and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadProbe {
    /// How much padding follows at most (≤ the supernode's limit, or it is refused).
    pub max_bytes: u32,
}

/// One point of the running count: `bytes` had arrived `micros` after the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Microseconds since the header was read.
    pub micros: u32,
    /// Padding bytes received by then.
    pub bytes: u32,
}

/// What the supernode saw: samples in time order, the last one at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReport {
    /// At most [`MAX_SAMPLES`], non-decreasing in both fields.
    pub samples: Vec<Sample>,
}

/// The supernode's answer (kind 0x36).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadReply {
    /// Counted.
    Measured(UploadReport),
    /// Refused (quota, too large, over TCP, malformed).
    Refused(Refusal),
}

impl WireMessage for UploadProbe {
    const KIND: u8 = 0x35;
}
impl WireMessage for UploadReply {
    const KIND: u8 = 0x36;
}

impl UploadReply {
    /// [`WireMessage::decode`] plus the report's own rules ([`UploadReport::check`]).
    pub fn decode_checked(bytes: &[u8]) -> Result<UploadReply, DecodeError> {
        let reply = UploadReply::decode(bytes)?;
        if let UploadReply::Measured(report) = &reply {
            report.check().map_err(DecodeError::Malformed)?;
        }
        Ok(reply)
    }
}

impl UploadReport {
    /// At most [`MAX_SAMPLES`] samples, time and count never going back, and no more
    /// than [`MAX_PROBE_BYTES`] counted.
    pub fn check(&self) -> Result<(), String> {
        if self.samples.len() > MAX_SAMPLES {
            return Err(format!(
                "{} samples (at most {MAX_SAMPLES})",
                self.samples.len()
            ));
        }
        let ordered = self
            .samples
            .windows(2)
            .all(|w| w[0].micros <= w[1].micros && w[0].bytes <= w[1].bytes);
        if !ordered {
            return Err("samples out of order".into());
        }
        match self.samples.last() {
            Some(s) if s.bytes > MAX_PROBE_BYTES => Err(format!(
                "{} bytes counted (at most {MAX_PROBE_BYTES})",
                s.bytes
            )),
            _ => Ok(()),
        }
    }

    /// Padding bytes counted in all.
    pub fn bytes(&self) -> u32 {
        self.samples.last().map_or(0, |s| s.bytes)
    }

    /// The upload rate in kbit/s (1,024 bit/s): the slope of the count from the first
    /// sample at or after a quarter of the burst (from the first sample to the last) to
    /// the last (the first quarter is QUIC's slow start); over the whole burst if no
    /// sample lies between. `None` when it says nothing: fewer than two samples, fewer
    /// than [`MIN_MEASURED_BYTES`] between them, or no time between them.
    pub fn kbps(&self) -> Option<u32> {
        let (first, last) = (self.samples.first()?, self.samples.last()?);
        if last.bytes.saturating_sub(first.bytes) < MIN_MEASURED_BYTES {
            return None;
        }
        let quarter = first.micros + last.micros.saturating_sub(first.micros) / 4;
        let from = self
            .samples
            .iter()
            .find(|s| s.micros >= quarter && s.micros < last.micros)
            .unwrap_or(first);
        let bytes = last.bytes.saturating_sub(from.bytes);
        let micros = last.micros.saturating_sub(from.micros);
        if micros == 0 {
            return None;
        }
        // bytes × 8 bits / (micros / 1e6 s) / 1024, in u64 (4 MiB × 8e6 fits).
        let kbps = u64::from(bytes) * 8 * 1_000_000 / u64::from(micros) / 1024;
        Some(kbps.min(u64::from(u32::MAX)) as u32)
    }
}

/// The default relay budget for a measured upload of `upload_kbps`:
/// [`RELAY_SHARE_PERCENT`] of it, at least [`MIN_RELAY_KBPS`], at most
/// [`MAX_DEFAULT_RELAY_KBPS`].
pub fn default_relay_kbps(upload_kbps: u32) -> u32 {
    let share = u64::from(upload_kbps) * u64::from(RELAY_SHARE_PERCENT) / 100;
    (share as u32).clamp(MIN_RELAY_KBPS, MAX_DEFAULT_RELAY_KBPS)
}

/// Whether an upload leaves one relayed call to spare at the documented share: at
/// least [`MIN_RELAY_KBPS`] × 100 / [`RELAY_SHARE_PERCENT`] (2,048). `--serve auto`
/// promotes only such a client.
pub fn spares_a_call(upload_kbps: u32) -> bool {
    u64::from(upload_kbps) * u64::from(RELAY_SHARE_PERCENT) / 100 >= u64::from(MIN_RELAY_KBPS)
}

/// Counts one probe's padding on the supernode. Sans-IO: `now` is the shell's
/// monotonic time as a [`Duration`] from any fixed origin (microseconds matter: a
/// probe on a fast link lasts milliseconds).
#[derive(Clone, Debug)]
pub struct UploadMeter {
    start: Duration,
    max_bytes: u32,
    deadline: Duration,
    received: u32,
    /// When the last counted byte arrived (the end sample's time).
    last_data: Duration,
    next_sample: Duration,
    samples: Vec<Sample>,
    ended: bool,
}

impl UploadMeter {
    /// A probe whose header arrived at `now`, announcing `max_bytes` (already
    /// admitted), counted for at most `duration`.
    pub fn new(now: Duration, max_bytes: u32, duration: Duration) -> UploadMeter {
        UploadMeter {
            start: now,
            max_bytes,
            deadline: now + duration,
            received: 0,
            last_data: now,
            next_sample: now,
            samples: Vec::new(),
            ended: false,
        }
    }

    fn sample(&mut self, now: Duration) {
        let micros = now
            .saturating_sub(self.start)
            .as_micros()
            .min(u32::MAX as u128) as u32;
        let s = Sample {
            micros,
            bytes: self.received,
        };
        if self.samples.len() + 1 >= MAX_SAMPLES {
            // Keep room for the last one: overwrite instead of growing.
            self.samples.pop();
        }
        self.samples.push(s);
    }

    /// How many more bytes to read at most (zero once done).
    pub fn wanted(&self) -> usize {
        if self.ended {
            0
        } else {
            (self.max_bytes - self.received) as usize
        }
    }

    /// `n` padding bytes arrived at `now` (more than [`wanted`](Self::wanted) are not
    /// counted; data after the deadline is not counted).
    pub fn handle_data(&mut self, now: Duration, n: usize) {
        if self.ended || now > self.deadline {
            self.handle_end(now.min(self.deadline));
            return;
        }
        let n = n.min(self.wanted()) as u32;
        self.received += n;
        self.last_data = now;
        if now >= self.next_sample {
            self.sample(now);
            self.next_sample = now + SAMPLE_EVERY;
        }
        if self.received >= self.max_bytes {
            self.handle_end(now);
        }
    }

    /// The stream ended (the client finished, or the shell stops reading at the
    /// deadline) at `now`: the last sample is the last counted byte's arrival.
    pub fn handle_end(&mut self, _now: Duration) {
        if self.ended {
            return;
        }
        self.ended = true;
        let last_at = self.samples.last().map(|s| s.bytes);
        if last_at != Some(self.received) {
            self.sample(self.last_data);
        }
    }

    /// Whether counting is over (all bytes in, the stream ended, or past the deadline).
    pub fn is_done(&self, now: Duration) -> bool {
        self.ended || now >= self.deadline
    }

    /// When the shell must stop reading.
    pub fn poll_timeout(&self) -> Duration {
        self.deadline
    }

    /// The report (ends the count at `now` if it had not ended).
    pub fn report(mut self, now: Duration) -> UploadReport {
        self.handle_end(now.min(self.deadline));
        UploadReport {
            samples: self.samples,
        }
    }
}

/// A supernode's limits on upload probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadLimits {
    /// Bytes per probe: [`MAX_PROBE_BYTES`] (4 MiB); a larger announcement is refused.
    pub max_bytes: u32,
    /// How long one probe is counted (then the stream is stopped): 2 s.
    pub duration: Duration,
    /// Probes per client key: 2 at once, 4 an hour (a client measures once before
    /// promotion and after a network change).
    pub per_key: Quota,
    /// Probes per client IP: 4 at once, 8 an hour (a household's few clients).
    /// Loopback is not limited (it cannot be reached from outside).
    pub per_ip: Quota,
    /// Most keys and IPs each quota tracks.
    pub max_keys: usize,
}

impl Default for UploadLimits {
    fn default() -> UploadLimits {
        UploadLimits {
            max_bytes: MAX_PROBE_BYTES,
            duration: Duration::from_secs(2),
            per_key: Quota::hourly(2, 4),
            per_ip: Quota::hourly(4, 8),
            max_keys: 4096,
        }
    }
}

/// The supernode's admission of upload probes: at most 8 an hour per IP × 4 MiB is
/// 32 MiB an hour that one address can make a supernode receive this way.
#[derive(Debug)]
pub struct UploadGuard {
    limits: UploadLimits,
    per_key: KeyedQuota<PeerId>,
    per_ip: KeyedQuota<IpAddr>,
}

fn refused(code: RefusalCode, message: String) -> Refusal {
    Refusal { code, message }
}

impl UploadGuard {
    /// A guard with `limits`.
    pub fn new(limits: UploadLimits) -> UploadGuard {
        UploadGuard {
            limits,
            per_key: KeyedQuota::new(limits.per_key, limits.max_keys),
            per_ip: KeyedQuota::new(limits.per_ip, limits.max_keys),
        }
    }

    /// The limits it enforces.
    pub fn limits(&self) -> UploadLimits {
        self.limits
    }

    /// May client `key`, seen at `ip` (`tunnelled`: over the TCP fallback), run
    /// `probe` now? On success, the meter to count it with (started at `at`, the
    /// shell's clock).
    pub fn admit(
        &mut self,
        now: Mono,
        at: Duration,
        key: PeerId,
        ip: IpAddr,
        tunnelled: bool,
        probe: &UploadProbe,
    ) -> Result<UploadMeter, Refusal> {
        if tunnelled {
            return Err(refused(
                RefusalCode::Malformed,
                "an upload probe over the TCP fallback measures the tunnel, not your upload".into(),
            ));
        }
        if probe.max_bytes == 0 || probe.max_bytes > self.limits.max_bytes {
            return Err(refused(
                RefusalCode::Malformed,
                format!(
                    "an upload probe carries 1 to {} bytes, not {}",
                    self.limits.max_bytes, probe.max_bytes
                ),
            ));
        }
        let ip = ip.to_canonical();
        if !ip.is_loopback() && !self.per_ip.allows(&ip, now) {
            return Err(refused(
                RefusalCode::Overloaded,
                format!("too many upload probes from {ip}; try again later"),
            ));
        }
        if !self.per_key.take(&key, now) {
            return Err(refused(
                RefusalCode::Overloaded,
                "too many upload probes from your key; try again later".into(),
            ));
        }
        if !ip.is_loopback() {
            self.per_ip.take(&ip, now);
        }
        Ok(UploadMeter::new(at, probe.max_bytes, self.limits.duration))
    }
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
