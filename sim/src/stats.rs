//! The simulation's counters: RPCs, lookups and their outcomes, publications.

use crate::phase::Phase;

/// Counters.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// DHT RPCs sent by supernodes.
    pub rpcs: u64,
    /// Messages lost on the network.
    pub lost: u64,
    /// Records refused by overlays (`RecordRefused` events).
    pub refused: u64,
    /// Lookups started, and lookups not started because the client was offline or
    /// had no confirmed publication.
    pub lookups_started: u64,
    /// See `lookups_started`.
    pub lookups_skipped: [u64; 2],
    /// Lookups finished.
    pub lookups: u64,
    /// Lookups that found the client's current record.
    pub found: u64,
    /// Hop counts of the lookups that found it.
    pub hops: Vec<u8>,
    /// Publications finished, and their replica counts summed.
    pub published: u64,
    /// Sum of replicas over `published`.
    pub replicas: u64,
    /// Publications a supernode refused at once.
    pub publish_refused: u64,
    /// Supernodes replaced under churn.
    pub replaced: u64,
    /// `Store` requests delivered to honest and to malicious supernodes.
    pub stores: [u64; 2],
    /// Lookups that found nothing, and that found an older record than current.
    pub missed: [u64; 2],
    /// Lookups of the Sybils' target clients (see `sybil`) that finished, and that
    /// found the current record.
    pub targeted: [u64; 2],
    /// RPCs sent, by [`Phase`] and by request kind (`Ping`, `FindNode`,
    /// `FindValue`, `Store`): where the run's work goes.
    pub by_phase: [[u64; 4]; Phase::COUNT],
}
