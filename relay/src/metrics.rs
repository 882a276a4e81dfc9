//! The relay's metrics (`--metrics ADDR`, served by `parley_net::metrics_http`).
//! Names are part of the interface: docs/operator-guide.md lists them.
//!
//! [`observe`] reads the relay's own counters ([`Bound::stats`], [`Bound::load`]) at
//! scrape time, so the data plane carries no metrics code of its own.

use crate::server::Bound;
use parley_proto::relay::{DropReason, RelayRefusalCode};

/// Gauge: calls with at least one leg on the relay now.
pub const CALLS: &str = "parley_relay_calls";
/// Gauge: legs (joined connections) on the relay now.
pub const LEGS: &str = "parley_relay_legs";
/// Counter: datagrams forwarded since start.
pub const FORWARDED: &str = "parley_relay_forwarded_datagrams_total";
/// Counter: payload bytes forwarded since start.
pub const FORWARDED_BYTES: &str = "parley_relay_forwarded_bytes_total";
/// Counter with label `reason` ([`DropReason::as_str`]): datagrams dropped since start.
pub const DROPPED: &str = "parley_relay_dropped_datagrams_total";
/// Counter with label `reason` ([`RelayRefusalCode::as_str`]): joins refused since start.
pub const REFUSED_JOINS: &str = "parley_relay_refused_joins_total";

/// Copies the relay's counters into the metrics recorder (a no-op without one).
pub fn observe(relay: &Bound) {
    let stats = relay.stats();
    let load = relay.load();
    metrics::gauge!(CALLS).set(f64::from(load.calls));
    metrics::gauge!(LEGS).set(f64::from(load.legs));
    metrics::counter!(FORWARDED).absolute(stats.forwarded_packets);
    metrics::counter!(FORWARDED_BYTES).absolute(stats.forwarded_bytes);
    for reason in DropReason::ALL {
        metrics::counter!(DROPPED, "reason" => reason.as_str()).absolute(stats.drops(reason));
    }
    for code in RelayRefusalCode::ALL {
        metrics::counter!(REFUSED_JOINS, "reason" => code.as_str())
            .absolute(stats.refused_joins(code));
    }
}
