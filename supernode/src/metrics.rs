//! The supernode's metrics (`--metrics ADDR`, served by `parley_net::metrics_http`).
//! Names are part of the interface: docs/operator-guide.md lists them.
//!
//! Without `--metrics` no recorder is installed and every call here is a no-op.

/// Gauge: client attachments (QUIC connections with ALPN `parley-client/1`) open now.
pub const CLIENTS: &str = "parley_supernode_clients";
/// Gauge: presence records held in this supernode's store.
pub const RECORDS: &str = "parley_supernode_records";
/// Counter: lookups asked by attached clients.
pub const LOOKUPS: &str = "parley_supernode_lookups_total";
/// Counter: calls placed through this supernode by its attached clients.
pub const CALLS: &str = "parley_supernode_calls_total";

/// A client attached (`+1`) or left (`-1`).
pub fn client_attached(attached: bool) {
    let gauge = metrics::gauge!(CLIENTS);
    if attached {
        gauge.increment(1.0);
    } else {
        gauge.decrement(1.0);
    }
}

/// The store now holds `n` records.
pub fn records(n: usize) {
    metrics::gauge!(RECORDS).set(n as f64);
}

/// A client asked for a lookup.
pub fn lookup() {
    metrics::counter!(LOOKUPS).increment(1);
}

/// A client placed a call.
pub fn call_placed() {
    metrics::counter!(CALLS).increment(1);
}

/// Registers every metric at zero, so a scrape before any activity lists them all.
pub fn describe() {
    metrics::describe_gauge!(CLIENTS, "client attachments open now");
    metrics::describe_gauge!(RECORDS, "presence records held");
    metrics::describe_counter!(LOOKUPS, "lookups asked by attached clients");
    metrics::describe_counter!(CALLS, "calls placed by attached clients");
    metrics::gauge!(CLIENTS).increment(0.0);
    metrics::gauge!(RECORDS).increment(0.0);
    metrics::counter!(LOOKUPS).increment(0);
    metrics::counter!(CALLS).increment(0);
}
