//! The load generator both relays get: plain UDP sockets, one per leg, 50 datagrams/s
//! per direction per call, 80–120 bytes, timestamped so the receiver measures the
//! one-way latency through the relay. Only the framing differs: a Parley channel
//! datagram or a TURN ChannelData message around the same payload.
//!
//! Senders are 20 tasks, one per millisecond slot of the 20 ms frame, each sending for
//! its share of the legs per tick; receivers are one task per leg socket. Counting is
//! by measurement window: datagrams sent while a window is open carry its number, and
//! only those count as sent and, when they arrive within the window plus a tail, as
//! received with their latency.

use parley_proto::relay::channel::{decode_relay, encode_data, ChannelKey, RelayDatagram};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Datagrams per second per direction per call.
pub const RATE: u64 = 50;
/// Payload sizes, inclusive.
pub const SIZES: (usize, usize) = (80, 120);
const SLOTS: usize = 20;
/// Latency histogram resolution and range.
const BIN_US: u64 = 10;
const BINS: usize = 20_000;

/// How a leg frames its payload for the relay under test.
pub enum Framing {
    /// A Parley channel: tagged DATA datagrams.
    Parley {
        /// The channel key.
        key: ChannelKey,
        /// The channel number.
        channel: u32,
        /// The next counter.
        counter: AtomicU64,
    },
    /// TURN ChannelData on a bound channel number (RFC 8656 §12.4).
    Turn {
        /// The channel number (0x4000..).
        channel: u16,
    },
}

/// One leg: a socket, the relay address it sends to, its framing.
pub struct Leg {
    /// The leg's socket (its address is the one the relay knows).
    pub socket: Arc<UdpSocket>,
    /// The relay's address for this leg's datagrams.
    pub to: SocketAddr,
    /// The framing.
    pub framing: Framing,
}

/// Counters of the current measurement window.
pub struct Meter {
    /// Window number stamped on datagrams now (0: not measuring).
    stamp: AtomicU8,
    /// Window number received datagrams count for (stays open for the tail).
    counting: AtomicU8,
    sent: AtomicU64,
    received: AtomicU64,
    hist: Vec<AtomicU32>,
    epoch: Instant,
}

/// A window's result.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    /// Datagrams sent in the window.
    pub sent: u64,
    /// Of those, received.
    pub received: u64,
    /// Median one-way latency, ms.
    pub p50_ms: f64,
    /// 99th percentile one-way latency, ms.
    pub p99_ms: f64,
}

impl Window {
    /// Lost share, percent.
    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            return 100.0;
        }
        100.0 * self.sent.saturating_sub(self.received) as f64 / self.sent as f64
    }
}

/// The generator: legs by send slot, and the meter.
pub struct Load {
    slots: Vec<RwLock<Vec<Arc<Leg>>>>,
    meter: Arc<Meter>,
    next_slot: AtomicU64,
    stop: std::sync::atomic::AtomicBool,
}

impl Load {
    /// Starts the 20 sender tasks (idle until legs are added).
    pub fn start() -> Arc<Load> {
        let load = Arc::new(Load {
            slots: (0..SLOTS).map(|_| RwLock::new(Vec::new())).collect(),
            meter: Arc::new(Meter {
                stamp: AtomicU8::new(0),
                counting: AtomicU8::new(0),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                hist: (0..BINS).map(|_| AtomicU32::new(0)).collect(),
                epoch: Instant::now(),
            }),
            next_slot: AtomicU64::new(0),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        for slot in 0..SLOTS {
            let load = load.clone();
            tokio::spawn(async move {
                let frame = Duration::from_millis(1000 / RATE);
                let mut tick =
                    tokio::time::interval_at(start + Duration::from_millis(slot as u64), frame);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut seq: u32 = 0;
                let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ slot as u64;
                let mut payload = [0u8; SIZES.1];
                let mut out = Vec::with_capacity(256);
                while !load.stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    seq = seq.wrapping_add(1);
                    let legs: Vec<Arc<Leg>> = match load.slots[slot].read() {
                        Ok(l) => l.clone(),
                        Err(_) => return,
                    };
                    let stamp = load.meter.stamp.load(Ordering::Relaxed);
                    for leg in &legs {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let size = SIZES.0 + (rng % (SIZES.1 - SIZES.0 + 1) as u64) as usize;
                        let t = load.meter.epoch.elapsed().as_micros() as u64;
                        payload[0] = stamp;
                        payload[1..5].copy_from_slice(&seq.to_be_bytes());
                        payload[5..13].copy_from_slice(&t.to_be_bytes());
                        frame_into(&mut out, &leg.framing, &payload[..size]);
                        // A datagram that cannot even leave counts as sent and lost.
                        let _ = leg.socket.try_send_to(&out, leg.to);
                        if stamp != 0 {
                            load.meter.sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        load
    }

    /// Stops sending (for good).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Adds a leg: it sends from its slot and receives on its own task.
    pub fn add(&self, leg: Leg) {
        let leg = Arc::new(leg);
        let slot = (self.next_slot.fetch_add(1, Ordering::Relaxed) as usize) % SLOTS;
        if let Ok(mut l) = self.slots[slot].write() {
            l.push(leg.clone());
        }
        let meter = self.meter.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok(n) = leg.socket.recv(&mut buf).await {
                if let Some(p) = unframe(&leg.framing, &buf[..n]) {
                    meter.record(p);
                }
            }
        });
    }

    /// Sends and counts for `secs`, waits a tail for stragglers, returns the window.
    pub async fn measure(&self, id: u8, secs: u64) -> Window {
        let m = &self.meter;
        m.sent.store(0, Ordering::Relaxed);
        m.received.store(0, Ordering::Relaxed);
        for b in &m.hist {
            b.store(0, Ordering::Relaxed);
        }
        m.counting.store(id, Ordering::Relaxed);
        m.stamp.store(id, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        m.stamp.store(0, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        m.counting.store(0, Ordering::Relaxed);
        let received = m.received.load(Ordering::Relaxed);
        let hist: Vec<u64> = m
            .hist
            .iter()
            .map(|b| u64::from(b.load(Ordering::Relaxed)))
            .collect();
        Window {
            sent: m.sent.load(Ordering::Relaxed),
            received,
            p50_ms: percentile(&hist, received, 0.50),
            p99_ms: percentile(&hist, received, 0.99),
        }
    }
}

impl Meter {
    fn record(&self, payload: &[u8]) {
        if payload.len() < 13 {
            return;
        }
        let id = payload[0];
        if id == 0 || id != self.counting.load(Ordering::Relaxed) {
            return;
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&payload[5..13]);
        let sent = u64::from_be_bytes(t);
        let now = self.epoch.elapsed().as_micros() as u64;
        let bin = ((now.saturating_sub(sent)) / BIN_US).min(BINS as u64 - 1) as usize;
        self.hist[bin].fetch_add(1, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
    }
}

fn percentile(hist: &[u64], total: u64, p: f64) -> f64 {
    if total == 0 {
        return f64::INFINITY;
    }
    let want = (total as f64 * p).ceil() as u64;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= want {
            return (i as u64 * BIN_US + BIN_US) as f64 / 1000.0;
        }
    }
    f64::INFINITY
}

fn frame_into(out: &mut Vec<u8>, framing: &Framing, payload: &[u8]) {
    match framing {
        Framing::Parley {
            key,
            channel,
            counter,
        } => {
            let ctr = counter.fetch_add(1, Ordering::Relaxed) + 1;
            encode_data(out, key, *channel, ctr, payload);
        }
        Framing::Turn { channel } => {
            out.clear();
            out.extend_from_slice(&channel.to_be_bytes());
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            out.extend_from_slice(payload);
            // ChannelData over UDP need not be padded (RFC 8656 §12.5).
        }
    }
}

fn unframe<'a>(framing: &Framing, bytes: &'a [u8]) -> Option<&'a [u8]> {
    match framing {
        Framing::Parley { .. } => match decode_relay(bytes) {
            Ok(RelayDatagram::Data { payload, .. }) => Some(payload),
            _ => None,
        },
        Framing::Turn { .. } => {
            if bytes.len() < 4 || !(0x40..0x80).contains(&bytes[0]) {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
            bytes.get(4..4 + len)
        }
    }
}
