//! Internet-scale simulation of the Parley overlay.
//!
//! `overlay-sim` runs thousands of supernodes and up to millions of clients in one
//! process, on a virtual clock, over a seeded network model with real-world-shaped
//! round-trip times (10–300 ms) and message loss. The supernodes are the real
//! [`parley_proto::overlay::Overlay`] machines, fed exactly as the supernode shell
//! feeds them. What the simulator adds to make the scale reachable, without
//! changing the overlay logic: every overlay shares one verified copy of each record
//! ([`parley_proto::overlay::VerifiedRecords`]), clients' first records are signed
//! and verified on every core before the event loop needs them, and messages move
//! through an O(1) timing wheel.
//!
//! Modules: `latency` (RTT and loss model), `queue` (event queues), `batch` (one
//! millisecond's messages delivered on every core), `world` (the
//! supernodes, the network and the clock), `phase` (the parts of a run, for counting RPCs), `clients` (attach, publish, refresh,
//! re-attach), `churn` (heavy-tailed sessions), `peers` (promoted peers: an operator
//! tier plus peers that are demoted or crash and are replaced), `malice` (colluding liars),
//! `sybil` (Sybils minted next to target clients' keys),
//! `scenario` (the runs and their report), `memory` (refusing a run that cannot fit).
//!
//! `relay_choice` (binary `relay-choice`) measures how close the relay a call picks by
//! Vivaldi coordinates, pings and load comes to the best one, on the same latency model.
//!
//! `capacity` is a different kind of measurement: `supernode-bench` attaches real
//! clients over QUIC to one real `supernode` process and reads its memory and CPU.

pub mod batch;
pub mod capacity;
pub mod churn;
pub mod clients;
pub mod latency;
pub mod malice;
pub mod memory;
pub mod misses;
pub mod peers;
pub mod phase;
pub mod queue;
pub mod relay_choice;
pub mod scenario;
pub mod stats;
pub mod sybil;
pub mod world;

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`), or 0 if
/// it cannot be read.
pub fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib / 1024)
        .unwrap_or(0)
}

/// CPU time this process has used so far (user + system, all threads), in seconds
/// (Linux `/proc/self/stat`, at the kernel's usual 100 ticks a second), or 0 if it
/// cannot be read. On a shared machine wall time says little; this says what the run
/// cost.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) as f64 / 100.0,
        _ => 0.0,
    }
}
